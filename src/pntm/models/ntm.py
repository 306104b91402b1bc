"""NTM baseline: the Neural Turing Machine of Graves et al. (2014), with the "stable" recipe of
Collier & Beel (2018, "Implementing Neural Turing Machines").

One step, for token ``x_t`` (B rows at once; N memory cells of width W; one write head and R
read heads, all addressed the same way)::

    h_t, c_t = LSTMCell([E x_t, r^1_{t-1}, …, r^R_{t-1}], (h_{t-1}, c_{t-1}))
    p_t      = clip(W_p h_t, -20, 20)                      # every head parameter, pre-activation

    per head:
    k   = tanh(p_k)                                         # key                 (W)
    β   = softplus(p_β)                                     # key strength        >= 0
    g   = σ(p_g)                                            # interpolation gate  (0, 1)
    s   = softmax(p_s)                                      # shift over -K..K    (2K+1)
    γ   = 1 + softplus(p_γ)                                 # sharpening          >= 1

    w^c[i] = softmax_i(β · cos(k, M_{t-1}[i]))              # content addressing
    w^g    = g w^c + (1 - g) w_{t-1}                        # interpolation
    w̃[i]   = Σ_{j=-K..K} s[j] w^g[(i - j) mod N]            # circular shift
    w[i]   = (w̃[i] + ε)^γ / Σ_n (w̃[n] + ε)^γ                # sharpening

    write:  e = σ(p_e), a = tanh(p_a)                       # erase, add          (W)
            M_t = M_{t-1} ⊙ (1 - w eᵀ) + w aᵀ
    read:   r_t = Σ_i w[i] M_t[i]                           # every read head, after the write

    logits_t = W_o [h_t, r^1_t, …, r^R_t]

Stable recipe: ``M_0`` is the constant 1e-6 in every cell; the initial read vectors ``r_0`` are
learned; the controller's outputs are clipped to ±20 before the head nonlinearities; gradient-norm
clipping and Adam at 1e-3 are in ``configs/ntm.yaml``.

Memory size is not a parameter. ``N = max(memory_cells, T)`` for a T-token input (``forward``
knows T, ``init_state`` gets it as ``max_length``), so long inputs fit and no parameter depends on
``N``. That rules out the usual learned initial weighting "softmax of a learned bias over the N
cells"; instead each head has learned logits over a fixed window of the first ``init_window``
cells, and ``w_0`` is their softmax, zero on every cell after the window. The logits start at
``init_peak`` on cell 0 and 0 elsewhere, so every head starts mostly on cell 0 (87% with the
defaults), a location it can then learn to sharpen or spread.

``forward`` (teacher-forced training) is a loop over time of the very function ``step`` runs, so
the two modes agree exactly; every step is vectorized over the batch and the heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.models.base import SequenceModel, register_model

CLIP = 20.0        # controller outputs are clipped to ±CLIP (Collier & Beel 2018)
SHARPEN_EPS = 1e-8  # keeps (w̃ + ε)^γ and its gradient finite when a cell's weight is 0
COSINE_EPS = 1e-8


# --------------------------------------------------------------------------- addressing

def content_weights(key: Tensor, strength: Tensor, memory: Tensor) -> Tensor:
    """``softmax_i(β · cos(k, M[i]))``: key (B, H, W), strength (B, H), memory (B, N, W) -> (B, H, N)."""
    dot = torch.einsum("bhw,bnw->bhn", key, memory)
    norms = key.norm(dim=-1)[:, :, None] * memory.norm(dim=-1)[:, None, :]
    return torch.softmax(strength[..., None] * dot / (norms + COSINE_EPS), dim=-1)


def interpolate(gate: Tensor, content: Tensor, previous: Tensor) -> Tensor:
    """``g w^c + (1 - g) w_{t-1}``: gate (B, H), weightings (B, H, N)."""
    g = gate[..., None]
    return g * content + (1 - g) * previous


def circular_shift(weights: Tensor, shift: Tensor) -> Tensor:
    """``w̃[i] = Σ_j s[j] w[(i - j) mod N]`` for offsets j = -K..K: weights (B, H, N), shift
    (B, H, 2K+1) with ``shift[..., K + j]`` the probability of moving by j cells."""
    K = (shift.shape[-1] - 1) // 2
    return sum(shift[..., K + j, None] * torch.roll(weights, j, dims=-1) for j in range(-K, K + 1))


def sharpen(weights: Tensor, gamma: Tensor) -> Tensor:
    """``(w̃ + ε)^γ / Σ (w̃ + ε)^γ``: weights (B, H, N), gamma (B, H) >= 1."""
    powered = (weights + SHARPEN_EPS) ** gamma[..., None]
    return powered / powered.sum(dim=-1, keepdim=True)


def write_memory(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """``M ⊙ (1 - w eᵀ) + w aᵀ``: memory (B, N, W), weights (B, N), erase and add (B, W)."""
    w = weights[:, :, None]
    return memory * (1 - w * erase[:, None, :]) + w * add[:, None, :]


# --------------------------------------------------------------------------- the model

@dataclass
class NTMState:
    """Everything one step carries to the next."""

    h: Tensor        # (B, C) controller hidden state
    c: Tensor        # (B, C) controller cell state
    memory: Tensor   # (B, N, W)
    weights: Tensor  # (B, 1 + R, N) previous weighting of every head; head 0 writes
    reads: Tensor    # (B, R, W) previous read vectors


@register_model("ntm")
class NTM(SequenceModel):
    """Neural Turing Machine with an LSTM controller (see the module docstring)."""

    @classmethod
    def default_config(cls) -> dict:
        return {
            "controller_size": 100,  # LSTM units
            "embed_dim": 16,         # token embedding fed to the controller
            "memory_cells": 128,     # N, raised to the input length when that is longer
            "memory_width": 20,      # W
            "read_heads": 1,         # R (plus one write head)
            "shift_range": 1,        # K: shifts -K..K
            "init_window": 4,        # cells covered by the learned initial weighting
            "init_peak": 3.0,        # initial logit of cell 0 in that window (others 0)
            "initial_memory": 1e-6,
        }

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.sep_id = sep_id  # unused: the recurrent controller knows where the answer starts
        C, W, R, K = cfg["controller_size"], cfg["memory_width"], cfg["read_heads"], cfg["shift_range"]
        self.width, self.read_heads, self.heads = W, R, R + 1
        self.min_cells = cfg["memory_cells"]
        self.initial_memory = cfg["initial_memory"]
        # per-head parameter layout: key W, strength 1, gate 1, shift 2K+1, sharpening 1
        self.head_sizes = [W, 1, 1, 2 * K + 1, 1]

        self.embedding = nn.Embedding(vocab_size, cfg["embed_dim"])
        self.controller = nn.LSTMCell(cfg["embed_dim"] + R * W, C)
        self.to_heads = nn.Linear(C, self.heads * sum(self.head_sizes) + 2 * W)  # + erase, add
        self.to_logits = nn.Linear(C + R * W, vocab_size)
        self.initial_reads = nn.Parameter(0.1 * torch.randn(R, W))
        window = torch.zeros(self.heads, cfg["init_window"])
        window[:, 0] = cfg["init_peak"]
        self.initial_weight_logits = nn.Parameter(window)

    # ---- state -------------------------------------------------------------------------------
    def num_cells(self, length: int) -> int:
        """Memory cells for a ``length``-token input: at least the length."""
        return max(self.min_cells, length)

    def init_state(self, batch_size: int, max_length: int, device) -> NTMState:
        cells = self.num_cells(max_length)
        dtype = self.to_logits.weight.dtype
        zeros = torch.zeros(batch_size, self.controller.hidden_size, device=device, dtype=dtype)
        memory = torch.full((batch_size, cells, self.width), self.initial_memory, device=device,
                            dtype=dtype)
        window = torch.softmax(self.initial_weight_logits[:, :cells], dim=-1)
        weights = F.pad(window, (0, cells - window.shape[-1])).expand(batch_size, -1, -1)
        reads = self.initial_reads.expand(batch_size, -1, -1)
        return NTMState(zeros, zeros, memory, weights, reads)

    # ---- one step (both modes) --------------------------------------------------------------
    def address(self, params: Tensor, state: NTMState) -> Tensor:
        """New weightings (B, H, N) of every head from its parameters (B, H, P)."""
        key, strength, gate, shift, gamma = params.split(self.head_sizes, dim=-1)
        content = content_weights(torch.tanh(key), F.softplus(strength[..., 0]), state.memory)
        gated = interpolate(torch.sigmoid(gate[..., 0]), content, state.weights)
        shifted = circular_shift(gated, torch.softmax(shift, dim=-1))
        return sharpen(shifted, 1 + F.softplus(gamma[..., 0]))

    def step(self, tokens: Tensor, state: NTMState) -> tuple[Tensor, NTMState]:
        B = tokens.shape[0]
        x = torch.cat([self.embedding(tokens), state.reads.reshape(B, -1)], dim=-1)
        h, c = self.controller(x, (state.h, state.c))
        out = self.to_heads(h).clamp(-CLIP, CLIP)
        head_params, erase, add = out.split([out.shape[-1] - 2 * self.width, self.width, self.width], -1)
        weights = self.address(head_params.view(B, self.heads, -1), state)
        memory = write_memory(state.memory, weights[:, 0], torch.sigmoid(erase), torch.tanh(add))
        reads = torch.einsum("brn,bnw->brw", weights[:, 1:], memory)
        logits = self.to_logits(torch.cat([h, reads.reshape(B, -1)], dim=-1))
        return logits, NTMState(h, c, memory, weights, reads)

    # ---- parallel mode: the same step, looped over time -------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        B, T = tokens.shape
        state = self.init_state(B, T, tokens.device)
        logits = []
        for t in range(T):
            step_logits, state = self.step(tokens[:, t], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)
