"""The straight-through location gradients (shift and jump) of the heads of
:mod:`pntm.ops.write_events`, read and write heads alike, answered by searches in its event list
(:mod:`pntm.ops.write_event_list`).

The shift and jump gradients are those of the Fourier/``memory_path: scan`` path for one-hot
weightings, derived as in ``pntm.ops.hard_heads``: the gradient with respect to a head's weight on
cell ``i`` at time ``t`` is, for a read head and for the write head::

    G^r_t[i] = ⟨∂L/∂r_t, [M_t[i], A[i]]⟩
    G^w_t[i] = ⟨μ_t[i], a_t - e_t ⊙ M_{t-1}[i]⟩      (∂M_t[i]/∂w_t[i] = a_t - e_t ⊙ M_{t-1}[i])

and both heads follow the same weighting recurrence, so ``hard_heads``' shift gradient
(``Λ_t(d)``: segment sums of ``G_τ[c_τ + d]``, ``|d| ≤ 2K``) and jump gradient (the other
choice's future against the head's own over ``horizon`` steps; ``None``: exact, O(T²)) apply
with ``G^w`` in place of ``G^r``. Each ``G`` costs one search, O(log T), and a dot product of
one or two rows: per head and token ``4K + 1 + horizon`` of them, as ``tape_read`` does
gathers. ``G^w`` already carries the whole future through ``μ``: the horizon limits only how
far the write head's *location* adjoint is followed, as for read heads. The horizon's
counterfactual queries are answered for a block of offsets at once (``_counterfactual``), not
one offset per pass as in ``hard_heads``.

Where the time goes (measured 2026-12-06 on the pieces of ``_EventRead``, CPU, one thread, no
other job running: batch 32, T = 1024, W = 20, one read head, K = 1, horizon 16; medians of 5):
the sorted event list 19.5 ms, its reverse scan 21.6 ms, the local (shift) gradients 18.4 ms
(write head) and 14.8 ms (read head), the jump gradients 55.3 ms and 45.2 ms. So the
horizon's counterfactual queries are over half of the op; within the write head's, the search
(``searchsorted``, 25%), the batched dot (``bmm``, 25%), the row gather (15%) and the index
gathers (13%) share it about equally, and no one of them is the bottleneck an eager rewrite
could remove (a fused kernel could: each query is one search and one 2W-dot).

So on the CPU the queries run in such kernels (:mod:`pntm.ops.event_kernels`, C++): ``at``
answers the local queries, and ``counterfactual`` sums the other choice's future over every
offset up to ``end`` in one pass, with no (B, T, H, offsets) tensor. The eager code below stays
the definition (``eager_at``, ``_counterfactual``), the path on other devices and the fallback.
Measured on ``event_read``'s inputs captured from ``pntm bench``'s ``pntm-write`` model (CPU, one
thread, trainings paused; forward and backward, medians of 11 and 5, 2026-12-07): 24.8 ms eager
against 14.4 ms with the kernels at T = 256, 114 against 68 ms at T = 1024.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pntm.ops import event_kernels
from pntm.ops.hard_heads import (_segment_ends, _segment_sums, _shift_gradient, capturing,
                                 other_start)
from pntm.ops.write_event_list import _Events, _times


def _dot(rows: Tensor, vectors: Tensor) -> Tensor:
    """``⟨rows[b, t, h, e], vectors[b, t, h]⟩``: rows (B, T, H, *extra, C), vectors
    (B, T, H, C) -> (B, T, H, *extra), as one batched matrix product (no temporary)."""
    C = rows.shape[-1]
    reads, extra = math.prod(vectors.shape[:-1]), math.prod(rows.shape[vectors.dim() - 1:-1])
    out = torch.bmm(rows.reshape(reads, extra, C), vectors.reshape(reads, C, 1))
    return out.view(rows.shape[:-1])


class _HeadGradient:
    """``G_t[y]``, the gradient of the loss with respect to a head's weight on cell ``y`` at
    time ``t``, for any (t, y): ``at`` (local queries) and ``counterfactual`` (the other
    choice's future of the jump gradient) run in the CPU kernels of ``kind`` (``read`` or
    ``write``) where they are available, else ``eager_at``, the definition."""

    kind: str

    def _kernel_args(self) -> tuple:
        raise NotImplementedError

    def eager_at(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def at(self, y: Tensor) -> Tensor:
        """``y``: cells (B, T, H, *extra), row ``t`` at time ``t``; returns the same shape."""
        kernels = event_kernels.for_tensor(y)
        if kernels is None:
            return self.eager_at(y)
        queries = getattr(kernels, f"{self.kind}_queries")
        return queries(*self._kernel_args(), y.contiguous(), self.events.span)

    def counterfactual(self, other: Tensor, cell: Tensor, end: Tensor, cells: int) -> Tensor:
        """``_counterfactual`` over every offset up to ``end``, by the CPU kernel."""
        sums = getattr(event_kernels.kernels(), f"{self.kind}_counterfactual")
        return sums(*self._kernel_args(), other.contiguous(), cell.contiguous(),
                    end.contiguous(), self.events.span, cells)


class _ReadHeadGradient(_HeadGradient):
    """``G^r_t[y] = ⟨∂L/∂r_t, [M_t[y], A[y]]⟩`` for the read heads."""

    kind = "read"

    def __init__(self, events: _Events, grad_contents: Tensor, grad_tags: Tensor,
                 table: Tensor):
        self.events, self.grad_contents = events, grad_contents
        self.tag_scores = grad_tags @ table.T  # (B, T, H, L)
        self.width = grad_contents.shape[-1]   # numbers fetched per query

    def _kernel_args(self) -> tuple:
        e = self.events
        return (e.keys, e.cell, e.after, self.grad_contents.contiguous(),
                self.tag_scores.contiguous(), (3 - 2 * e.before.long()).contiguous())

    def eager_at(self, y: Tensor) -> Tensor:
        k1 = self.events.read_position(_times(y), y)
        content = _dot(self.events.memory(k1, y), self.grad_contents)
        L = self.tag_scores.shape[-1]
        flat = (y % L).reshape(*y.shape[:3], -1)
        tags = torch.gather(self.tag_scores, 3, flat).view(y.shape)
        return content + tags


class _WriteHeadGradient(_HeadGradient):
    """``G^w_t[y] = ⟨μ_t[y], a_t - e_t ⊙ M_{t-1}[y]⟩`` for the write head (H = 1)."""

    kind = "write"

    def __init__(self, events: _Events, erase: Tensor, add: Tensor):
        self.events = events
        self.change = torch.cat([add, -erase], -1)  # (B, T, 2W) against [μ, μ ⊙ M_{t-1}]
        self.width = self.change.shape[-1]

    def _kernel_args(self) -> tuple:
        e = self.events
        return e.keys, e.cell, e.adjoint_rows, self.change

    def eager_at(self, y: Tensor) -> Tensor:
        rows = self.events.write_rows(*self.events.locate(_times(y), y), y)
        return _dot(rows, self.change[:, :, None].expand(*y.shape[:3], self.width))


# Counterfactual queries are answered in blocks of horizon offsets of about this many numbers.
QUERY_BUDGET = 1 << 23


def _location_gradients(head_grad, cell: Tensor, choice: Tensor, jumped: Tensor, K: int,
                        cells: int, horizon: int) -> tuple[Tensor, Tensor]:
    """Straight-through shift and jump gradients of heads (B, T, H) whose weight gradients
    ``head_grad`` gives (``hard_heads``' formulas)."""
    stop = _segment_ends(jumped)
    offsets = torch.arange(-2 * K, 2 * K + 1, device=cell.device)
    local = head_grad.at(torch.remainder(cell[..., None] + offsets, cells))
    grad_shift = _shift_gradient(local, stop, choice, K)
    grad_jump = _jump_gradient(head_grad, local[..., 2 * K], cell, choice, jumped, stop, K,
                               cells, horizon)
    return grad_shift, grad_jump


def _jump_gradient(head_grad, own_now: Tensor, cell: Tensor, choice: Tensor, jumped: Tensor,
                   stop: Tensor, K: int, cells: int, horizon: int) -> Tensor:
    """``∂L/∂g_t = ±(λ_t[x_t] - λ_t[c_t])`` over the next ``horizon`` steps of the segment, as
    ``hard_heads._jump_gradient``, with the counterfactual terms queried for many offsets at
    once (blocks of ``QUERY_BUDGET`` numbers) instead of one offset per pass."""
    B, T, H = cell.shape
    other = other_start(cell, choice, jumped, K, cells)
    steps = torch.arange(T, device=cell.device).view(1, T, 1)
    end = torch.minimum(stop, steps + horizon)  # each t sums over t <= τ < end_t
    own = _segment_sums(own_now, end)
    sign = torch.where(jumped, -1.0, 1.0).to(own)
    if event_kernels.for_tensor(cell) is not None:  # every offset in one fused pass
        return sign * (head_grad.counterfactual(other, cell, end, cells) - own)
    # the longest sum; under CUDA graph capture its static bound (the extra offsets add zeros)
    longest = min(horizon, T) if capturing(end) else int((end - steps).max())
    block = max(1, QUERY_BUDGET // (B * T * H * head_grad.width))
    counterfactual = torch.zeros_like(own)
    for first in range(0, longest, block):
        offsets = torch.arange(first, min(first + block, longest), device=cell.device)
        counterfactual += _counterfactual(head_grad, other, cell, end, offsets, cells)
    return sign * (counterfactual - own)


def _counterfactual(head_grad, other: Tensor, cell: Tensor, end: Tensor, offsets: Tensor,
                    cells: int) -> Tensor:
    """``Σ_o [t + o < end_t] G_{t+o}[x_t + c_{t+o} - c_t]`` over ``offsets``: (B, T, H).

    The queries are laid out by their own time (row ``τ`` holds origin ``t = τ - o``), so each
    uses its row's gradient vectors, then gathered back to their origins."""
    B, T, H = cell.shape
    O = offsets.numel()
    tau = torch.arange(T, device=cell.device)[:, None]
    origin = (tau - offsets).clamp(min=0).view(1, T, 1, O).expand(B, T, H, O)

    def at_origin(x: Tensor) -> Tensor:
        return torch.gather(x[..., None].expand(B, T, H, O), 1, origin)

    target = torch.remainder(at_origin(other) + cell[..., None] - at_origin(cell), cells)
    alive = (tau >= offsets).view(1, T, 1, O) & (tau.view(1, T, 1, 1) < at_origin(end))
    values = head_grad.at(target) * alive                   # row τ: G_τ for origin τ - o
    back = (tau + offsets).clamp(max=T - 1).view(1, T, 1, O).expand(B, T, H, O)
    inside = (tau + offsets < T).view(1, T, 1, O)
    return (torch.gather(values, 1, back) * inside).sum(-1)
