"""Relaxed (soft) learned write heads: the memory scan in time chunks, recomputed in backward.

A soft write head spreads its write over every cell, so the memory recurrence
``M_t = M_{t-1} ⊙ (1 - w_t e_tᵀ) + w_t a_tᵀ`` has to run over all ``N × W`` numbers for every
token. Run in one piece, autograd keeps ``α``, ``β`` and every state ``M_t``: several
``B·T·N·W`` tensors, 4.5 GB each at batch 32, length 1024, ``N = 1080``, ``W = 32``.

Here time is cut into chunks of ``chunk`` tokens. Each chunk turns its head spectra into
weightings (the inverse FFT), scans the memory from the state the previous chunk left, and
returns only its reads (contents and address tags, ``B·chunk·H·(W + A)``) and its last state
(``B·N·W``). With gradients enabled every chunk runs under ``torch.utils.checkpoint``: the
forward pass keeps only each chunk's inputs (slices of the spectra, erase and add vectors, and
the state it started from) and the backward pass recomputes one chunk at a time. Peak memory is
then that of one chunk's scan plus ``T/chunk`` states, instead of the whole ``B·T·N·W`` history,
for the price of running the forward pass twice. The result is the same scan (each chunk starts
exactly where the last one ended), so it equals the unchunked ``memory_path: scan`` forward and
backward up to rounding (tested).

Measured (one relaxed training step, forward and backward, of the bench's one-layer P-NTM with
``W = 32``, batch 32, ``N = 1080`` cells, chunks of 64; CPU, one thread, a machine shared with
other jobs; peak = growth of the process's resident-set high-water mark):

    length   chunked (memory_path: auto)     whole scan (memory_path: scan)
      64      6.3 s,  1.51 GiB                  3.3 s,  1.48 GiB
     128     13.8 s,  1.67 GiB                  7.6 s,  2.87 GiB
     256     24.7 s,  1.87 GiB                  -
    1024    132 s,    2.80 GiB                  - (α, β and the states alone: 3 x 4.5 GB)

The recomputation costs about 1.8x in time; peak memory grows by the carried states and the
head spectra only (about 0.1 GiB per 64 tokens here) instead of by the whole memory history.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from pntm.ops.scan import linear_scan


def scan_reads(reads: Tensor, memory: Tensor, start: Tensor, last_before: bool = False
               ) -> Tensor:
    """Contents ``r^h_t = Σ_i w^h_t[i] M_t[i]`` (B, T, H, W) read by weightings ``reads``
    (B, T, H, N) from the scanned memory states ``memory`` (B, T, N, W); with ``last_before``
    (``read_before_write``) the last head reads ``M_{t-1}`` instead: ``start`` (B, N, W), the
    memory before the first of these steps, then every state but the last."""
    if not last_before:
        return torch.einsum("bthn,btnw->bthw", reads, memory)
    before = torch.cat([start[:, None], memory[:, :-1]], dim=1)
    tied = torch.einsum("btn,btnw->btw", reads[:, :, -1], before)
    return torch.cat([torch.einsum("bthn,btnw->bthw", reads[:, :, :-1], memory),
                      tied[:, :, None]], dim=2)


def _chunk_reads(spectra: Tensor, erase: Tensor, add: Tensor, state: Tensor, addresses: Tensor,
                 method: str, last_before: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One chunk: weightings from the spectra (B, C, 1 + H, F), the memory scan from ``state``
    (B, N, W), the reads (the last head's from ``M_{t-1}`` with ``last_before``). Returns
    contents (B, C, H, W), tags (B, C, H, A), the last state."""
    cells = addresses.shape[0]
    weights = torch.fft.irfft(spectra, n=cells, dim=-1)      # (B, C, 1 + H, N)
    write = weights[:, :, 0, :, None]
    alpha = 1 - write * erase[:, :, None, :]
    beta = write * add[:, :, None, :]
    memory = linear_scan(alpha, beta, state, method=method)  # (B, C, N, W)
    reads = weights[:, :, 1:]
    contents = scan_reads(reads, memory, state, last_before)
    tags = torch.einsum("bthn,nw->bthw", reads, addresses)
    # a copy, not a view: a view of the last step would keep the chunk's whole (B, C, N, W)
    # memory alive for as long as the next chunk holds its starting state
    return contents, tags, memory[:, -1].clone()


def chunked_memory_reads(spectra: Tensor, erase: Tensor, add: Tensor, addresses: Tensor,
                         initial: float, chunk: int, method: str = "auto",
                         last_before: bool = False) -> tuple[Tensor, Tensor]:
    """Reads of soft heads over a memory written by a soft head, ``chunk`` tokens at a time.

    ``spectra`` (B, T, 1 + H, N//2+1) complex: the write head's (index 0) and the read heads'
    weightings in the Fourier basis; ``erase``, ``add`` (B, T, W); ``addresses`` (N, A) the
    cells' address tags; ``initial`` the constant initial memory; ``last_before``: the last read
    head reads ``M_{t-1}`` (``read_before_write``). Returns contents (B, T, H, W) and tags
    (B, T, H, A)."""
    B, T = erase.shape[:2]
    cells, width = addresses.shape[0], erase.shape[-1]
    state = torch.full((B, cells, width), initial, dtype=erase.dtype, device=erase.device)
    contents, tags = [], []
    for start in range(0, T, chunk):
        piece = slice(start, start + chunk)
        args = (spectra[:, piece], erase[:, piece], add[:, piece], state, addresses, method,
                last_before)
        if torch.is_grad_enabled():
            c, a, state = checkpoint(_chunk_reads, *args, use_reentrant=False)
        else:
            c, a, state = _chunk_reads(*args)
        contents.append(c)
        tags.append(a)
    return torch.cat(contents, 1), torch.cat(tags, 1)
