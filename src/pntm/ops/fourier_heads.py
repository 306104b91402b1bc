"""Heads as weightings over all ``N`` cells, in the Fourier basis: P-NTM's reference path.

Pure functions of tensors (no parameters), used by ``pntm.models.pntm`` whenever some head is
soft, and the reference that the fast paths are tested against (``pntm.ops.hard_heads`` for
hard heads on the tape, ``pntm.ops.write_events`` for a hard learned writer,
``pntm.ops.memory_chunks`` for a soft one). The equations, with ``s_t`` a distribution over the shifts ``-K..K`` and ``g_t`` a
jump gate back to the origin cell::

    w_t = s_t ⊛ ((1 - g_t) w_{t-1} + g_t δ_0),         w_0 = δ_{-1}
    ŵ_t[f] = ŝ_t[f] (1 - g_t) ŵ_{t-1}[f] + ŝ_t[f] g_t,  ŝ_t[f] = Σ_k s_t[k] exp(-2πi f k / N)
    M_t = M_{t-1} ⊙ (1 - w_t e_tᵀ) + w_t a_tᵀ

A jump may land elsewhere than the origin (``jump_to``): on the tape writer's cell of its token,
or on a content weighting ``w^c_t`` over the tape (``w_t = s_t ⊛ ((1 - g_t) w_{t-1} + g_t
w^c_t)``, the NTM's content-then-location addressing; still affine in ``w_{t-1}``).
``location_coefficients`` and ``memory_coefficients`` give the ``(a_t, b_t)`` of the two
recurrences for ``pntm.ops.scan.linear_scan``; ``tape_closed_form_reads`` is the memory scan
solved in closed form for a write head that is a tape (token ``j`` on cell ``j``, each cell written
once), tested against the scan forward and backward (tests/test_pntm.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def straight_through(soft: Tensor, hard: Tensor) -> Tensor:
    """The value of ``hard`` in the forward pass with the gradient of ``soft``."""
    return hard + (soft - soft.detach())


def start_spectrum(cells: int, device) -> Tensor:
    """Spectrum of ``w_0 = δ_{-1}`` over ``cells`` cells (F = cells//2 + 1 complex): heads start
    one cell left of the origin, so the first token (BOS) moved one cell forward lands on cell
    0, the jump target."""
    freqs = torch.arange(cells // 2 + 1, device=device, dtype=torch.float32)
    angle = 2 * math.pi * freqs / cells
    return torch.polar(torch.ones_like(angle), angle)


def shift_phases(shift_range: int, cells: int, device) -> Tensor:
    """``exp(-2πi f k / N)`` for f = 0..N/2 and k = -K..K: (2K+1, F) complex."""
    freqs = torch.arange(cells // 2 + 1, device=device, dtype=torch.float32)
    shifts = torch.arange(-shift_range, shift_range + 1, device=device, dtype=torch.float32)
    angle = -2 * math.pi * shifts[:, None] * freqs[None, :] / cells
    return torch.polar(torch.ones_like(angle), angle)


def cell_phases(cells_at: Tensor, cells: int) -> Tensor:
    """Spectra ``exp(-2πi f c / N)`` of ``δ_c`` for the cells ``cells_at`` (any shape, integer)
    over ``cells`` cells: (*shape, F) complex. The phase ``f c mod N`` is taken in integers,
    so the angle stays exact at any cell (``f c`` itself would lose float32 digits)."""
    freqs = torch.arange(cells // 2 + 1, device=cells_at.device)
    turns = torch.remainder(cells_at.long()[..., None] * freqs, cells).to(torch.float32)
    angle = -2 * math.pi * turns / cells
    return torch.polar(torch.ones_like(angle), angle)


def location_coefficients(shift: Tensor, jump: Tensor, phases: Tensor,
                          targets: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Fourier-domain recurrence ``ŵ_t = a_t ŵ_{t-1} + b_t`` per head, from shift distributions
    (B, T, H, 2K+1), jump gates (B, T, H) and ``shift_phases``: (B, T, H, F) each. A jump goes
    to the origin, ``δ_0``, or with ``targets`` (broadcast to (B, T, H, F)), the spectra of
    where each jump lands: ``b_t = ŝ_t g_t ŵ^c_t``: ``cell_phases`` of a cell per token
    (``jump_to: here``), or the ``rfft`` of a content weighting (``jump_to: content``)."""
    spectrum = torch.einsum("bthk,kf->bthf", shift.to(torch.complex64), phases)
    gate = jump[..., None]
    landing = spectrum * gate
    if targets is not None:
        landing = landing * targets
    return spectrum * (1 - gate), landing


def memory_coefficients(write: Tensor, erase: Tensor, add: Tensor) -> tuple[Tensor, Tensor]:
    """``α = 1 - w eᵀ`` and ``β = w aᵀ`` for write weights (B, T, N) and erase and add vectors
    (B, T, W): (B, T, N, W) each."""
    w = write[..., None]
    return 1 - w * erase[:, :, None, :], w * add[:, :, None, :]


def tape_closed_form_reads(read_weights: Tensor, values: Tensor, initial: float) -> Tensor:
    """Reads of a tape writer's memory without materializing ``M_t`` for every ``t``.

    The tape head writes token ``j`` into cell ``j`` and never comes back, so the memory scan
    has a closed form: ``M_t[j] = m_0 + [j ≤ t] v_j`` with ``v_j = a_j - m_0 e_j`` (``values``,
    (B, T, W); ``m_0 = initial`` the constant initial memory). A read is then a causally
    masked product::

        r_t = m_0 Σ_i w_t[i] + Σ_{j ≤ t} w_t[j] v_j

    for read weightings (B, T, H, N) with ``N ≥ T``: contents (B, T, H, W), in O(T²·W) work
    per read head instead of O(T·N·W) memory traffic."""
    T = values.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=values.device).tril()
    on_tape = read_weights[..., :T] * causal[None, :, None, :]  # (B, T, H, T)
    contents = torch.einsum("bthj,bjw->bthw", on_tape, values)
    return contents + initial * read_weights.sum(-1, keepdim=True)
