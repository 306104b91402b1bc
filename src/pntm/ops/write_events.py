"""Hard learned write heads as write events: P-NTM's fast path for a writable memory.

With the tape writer, token ``j`` writes cell ``j`` once, and ``pntm.ops.hard_heads`` reads that
tape by gathers. A *learned* write head moves like a read head (shifts ``-K..K``, jumps to the
origin), so it may stay on a cell, come back to it, or jump: cells are overwritten. The
reference path then scans the whole memory, ``M_t = M_{t-1} ⊙ (1 - w_t e_tᵀ) + w_t a_tᵀ``,
``B·T·N·W`` numbers. When every head is hard, ``w_t = δ_{c_t}`` and each token is a write event
``(t, c_t, e_t, a_t)``: only row ``c_t`` changes, by ``v ← v ⊙ (1 - e_t) + a_t``. So:

**Forward.** Positions ``c^h_t`` of all heads come from ``hard_heads.head_positions`` (head 0
writes). Per sequence, the writes and the reads are merged into one list of events sorted by
the key ``2 (c·T + t)`` for a write, ``2 (c·T + t) + 1`` for a read: by cell, then time, a
token's write before its reads (a read sees ``M_t``, after that token's write, as in the scan).
One segmented linear scan over the sorted list (``pntm.ops.scan.linear_scan``; a write has decay
``1 - e`` and input ``a``, a read decay 1 and input 0; the first event of a cell starts from
``m_0``: decay 0, input ``(1 - e) m_0 + a``) gives the cell's value after every event, and a
read's content is the value at its own place in the list. O(T·(1 + H)·log) work for the sort
and O(T·(1 + H)·W) memory per sequence, whatever ``N``: no ``B·T·N·W`` tensor exists.

**Backward.** A custom ``autograd.Function`` (the positions are integers, so the
straight-through gradients must be put in by hand). ``∂L/∂M_t[y]``, the memory adjoint
``μ_t[y]``, obeys per cell the reverse of the forward recurrence: a read adds its gradient, a
write multiplies by ``1 - e``. One reverse segmented scan over the same sorted list gives
``ν_k``, the adjoint of the cell's value just before event ``k``. Any ``(t, y)`` is then
answered by one search (``torch.searchsorted``) for the place a write at ``(t, y)`` would have
in the list: ``M_t[y]`` is the value after the last event of ``y`` before the reads at ``t``
(``m_0`` when there is none), ``M_{t-1}[y]`` the value before a write at ``(t, y)``, ``μ_t[y]``
the ``ν`` of the first event of ``y`` after it (0 when there is none). Exactly::

    ∂L/∂a_t = μ_t[c_t],      ∂L/∂e_t = -μ_t[c_t] ⊙ M_{t-1}[c_t]

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

Measured (``pntm bench --models pntm,pntm-write``, CPU, one thread (``OMP_NUM_THREADS=1``) on a
machine shared with other jobs, batch 32, one read head): a training step took 1.46x, 1.42x,
1.39x and 1.49x the tape writer's at lengths 64, 256, 1024 and 4096 (17.5, 56.7, 232 and
1634 ms). The op alone costs about 3x ``tape_read`` (it also finds the write head's gradients,
with a search per query); walking the horizon one offset per pass, it cost 4-5x.

``sequential_reference`` computes the same outputs step by step with dense weightings
(``torch.roll`` for the shifts) and a dense memory, differentiable by autograd: the test oracle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pntm.ops.hard_heads import _segment_ends, _segment_sums, _shift_gradient, head_positions
from pntm.ops.scan import linear_scan


def _rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[b, index[b, ...]]`` for a table (B, R, C) and long indices (B, ...): (B, ..., C).
    ``index_select`` on flat rows is several times faster than ``gather`` on CPU."""
    B, R, C = table.shape
    flat = index.reshape(B, -1) + torch.arange(B, device=index.device)[:, None] * R
    return table.reshape(B * R, C).index_select(0, flat.flatten()).view(*index.shape, C)


def _times(y: Tensor) -> Tensor:
    """The time of each query: its index along dim 1, broadcast to the shape of ``y``."""
    steps = torch.arange(y.shape[1], device=y.device)
    return steps.view(1, -1, *([1] * (y.dim() - 2))).expand_as(y)


class _Events:
    """The writes and reads of each sequence merged and sorted by (cell, time, write before
    read): key ``2 (c·T + t)`` for a write, ``2 (c·T + t) + 1`` for a read. The cell's value
    after every event comes from one segmented scan (a read changes nothing)."""

    def __init__(self, write_cell: Tensor, read_cell: Tensor, erase: Tensor, add: Tensor,
                 initial: float):
        B, T, W = add.shape
        self.T, self.initial = T, initial
        steps = torch.arange(T, device=add.device)
        keys = torch.cat([2 * (write_cell * T + steps),
                          (2 * (read_cell * T + steps[:, None]) + 1).flatten(1)], 1)
        # ties: reads of several heads of one cell at one time, which read the same value
        self.keys, self.order = keys.sort(dim=1)
        self.n = n = keys.shape[1]
        self.padded_keys = F.pad(self.keys, (0, 1), value=-1)
        # cell of event k at column k + 1, with -1 before the first and after the last event
        self.cell = F.pad(torch.div(self.keys, 2 * T, rounding_mode="floor"), (1, 1), value=-1)
        self.first = (self.cell[:, 1:-1] != self.cell[:, :-2])[..., None]
        reads = torch.zeros(B, n - T, W, dtype=add.dtype, device=add.device)
        keep = self._sorted(torch.cat([1 - erase, reads + 1], 1))
        added = self._sorted(torch.cat([add, reads], 1))
        after = linear_scan(torch.where(self.first, 0.0, keep),
                            torch.where(self.first, added + keep * initial, added))
        self.after = torch.cat([after, torch.full_like(after[:, :1], initial)], 1)  # row n: m_0

    def _sorted(self, x: Tensor) -> Tensor:
        """Per-event rows (B, n, W) in time order (writes, then reads (t, h)) -> key order."""
        return _rows(x, self.order)

    def position(self, index: Tensor) -> Tensor:
        """Where the events in time order (indices into writes, then reads) sit in key order."""
        inverse = torch.empty_like(self.order)
        inverse.scatter_(1, self.order, torch.arange(self.n, device=self.order.device)
                         .expand_as(self.order))
        return torch.gather(inverse, 1, index.reshape(index.shape[0], -1)).view(index.shape)

    def locate(self, time: Tensor, cell: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For (time τ, cell y) queries (B, ...): ``k0``, the first event at or after the place
        of a write at (τ, y); ``hit``, whether that is such a write; ``k1 = k0 + hit``, the first
        event of any cell after every event of (τ, y) but its reads."""
        B = cell.shape[0]
        query = (2 * (cell * self.T + time)).reshape(B, -1)
        k0 = torch.searchsorted(self.keys, query)
        hit = torch.gather(self.padded_keys, 1, k0) == query
        return k0.view(cell.shape), hit.view(cell.shape), (k0 + hit).view(cell.shape)

    def read_position(self, time: Tensor, cell: Tensor) -> Tensor:
        """``k1`` of ``locate`` alone: the first event at or after a read at (τ, y)."""
        query = (2 * (cell * self.T + time) + 1).reshape(cell.shape[0], -1)
        return torch.searchsorted(self.keys, query).view(cell.shape)

    def _cell_at(self, k: Tensor) -> Tensor:
        """The cell of event ``k`` (-1 for ``k = n``): (B, ...)."""
        return torch.gather(self.cell, 1, (k + 1).reshape(k.shape[0], -1)).view(k.shape)

    def memory(self, k1: Tensor, cell: Tensor) -> Tensor:
        """``M_τ[y]``, the value of cell ``y`` after time ``τ`` (``k1`` from ``locate``):
        after event ``k1 - 1`` if that is at ``y``, else ``m_0``. (B, ..., W)."""
        return _rows(self.after, torch.where(self._cell_at(k1 - 1) == cell, k1 - 1, self.n))

    def backward(self, grad_contents: Tensor, erase: Tensor) -> None:
        """The reverse scan ``ν_k = decay_k ν_{k+1} + input_k`` (reads add their gradient, a
        write multiplies by ``1 - e``; 0 after a cell's last event), and for every event ``k``
        the rows ``U_k = [ν_k, ν_k ⊙ M⁻_k]`` and ``V_k = [ν_{k+1}, ν_{k+1} ⊙ M⁻_k]`` (``M⁻_k``
        the cell's value before event ``k``; ``ν_{k+1} = 0`` at the cell's last event): what
        the write head's weight gradient needs after events ``k`` and at a write ``k``."""
        B, T, W = erase.shape
        n = self.n
        grads = grad_contents.reshape(B, n - T, W)
        keep = self._sorted(torch.cat([1 - erase, torch.ones_like(grads)], 1))
        inputs = self._sorted(torch.cat([torch.zeros_like(erase), grads], 1))
        last = (self.cell[:, 1:-1] != self.cell[:, 2:])[..., None]
        nu = linear_scan(keep.masked_fill(last, 0.0).flip(1), inputs.flip(1)).flip(1)
        nu_next = torch.cat([nu[:, 1:], torch.zeros_like(nu[:, :1])], 1).masked_fill(last, 0.0)
        before = torch.where(self.first, self.initial,
                             torch.cat([self.after[:, :1], self.after[:, :n - 1]], 1))
        zero = nu.new_zeros(B, 1, 2 * W)
        self.adjoint_rows = torch.cat([torch.cat([nu, nu * before], -1),
                                       torch.cat([nu_next, nu_next * before], -1), zero], 1)

    def write_rows(self, k0: Tensor, hit: Tensor, k1: Tensor, cell: Tensor) -> Tensor:
        """``[μ_τ[y], μ_τ[y] ⊙ M_{τ-1}[y]]`` (B, ..., 2W) for queries located by ``locate``: V at
        a write at (τ, y), else U at the next event of ``y`` (zeros when there is none)."""
        index = torch.where(hit, self.n + k0,
                            torch.where(self._cell_at(k1) == cell, k1, 2 * self.n))
        return _rows(self.adjoint_rows, index)


def _dot(rows: Tensor, vectors: Tensor) -> Tensor:
    """``⟨rows[b, t, h, e], vectors[b, t, h]⟩``: rows (B, T, H, *extra, C), vectors
    (B, T, H, C) -> (B, T, H, *extra), as one batched matrix product (no temporary)."""
    C = rows.shape[-1]
    reads, extra = math.prod(vectors.shape[:-1]), math.prod(rows.shape[vectors.dim() - 1:-1])
    out = torch.bmm(rows.reshape(reads, extra, C), vectors.reshape(reads, C, 1))
    return out.view(rows.shape[:-1])


class _ReadHeadGradient:
    """``G^r_t[y] = ⟨∂L/∂r_t, [M_t[y], A[y]]⟩`` for the read heads."""

    def __init__(self, events: _Events, grad_contents: Tensor, grad_tags: Tensor,
                 table: Tensor):
        self.events, self.grad_contents = events, grad_contents
        self.tag_scores = grad_tags @ table.T  # (B, T, H, L)
        self.width = grad_contents.shape[-1]   # numbers fetched per query

    def at(self, y: Tensor) -> Tensor:
        """``y``: cells (B, T, H, *extra), row ``t`` at time ``t``; returns the same shape."""
        k1 = self.events.read_position(_times(y), y)
        content = _dot(self.events.memory(k1, y), self.grad_contents)
        L = self.tag_scores.shape[-1]
        flat = (y % L).reshape(*y.shape[:3], -1)
        tags = torch.gather(self.tag_scores, 3, flat).view(y.shape)
        return content + tags


class _WriteHeadGradient:
    """``G^w_t[y] = ⟨μ_t[y], a_t - e_t ⊙ M_{t-1}[y]⟩`` for the write head."""

    def __init__(self, events: _Events, erase: Tensor, add: Tensor):
        self.events = events
        self.change = torch.cat([add, -erase], -1)  # (B, T, 2W) against [μ, μ ⊙ M_{t-1}]
        self.width = self.change.shape[-1]

    def at(self, y: Tensor) -> Tensor:
        """``y``: cells (B, T, 1, *extra), row ``t`` at time ``t``; returns the same shape."""
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
    previous = torch.cat([torch.full_like(cell[:, :1], -1), cell[:, :-1]], dim=1)
    moved = choice - K
    other = torch.remainder(torch.where(jumped, previous + moved, moved), cells)
    steps = torch.arange(T, device=cell.device).view(1, T, 1)
    end = torch.minimum(stop, steps + horizon)  # each t sums over t <= τ < end_t
    own = _segment_sums(own_now, end)
    longest = int((end - steps).max())
    block = max(1, QUERY_BUDGET // (B * T * H * head_grad.width))
    counterfactual = torch.zeros_like(own)
    for first in range(0, longest, block):
        offsets = torch.arange(first, min(first + block, longest), device=cell.device)
        counterfactual += _counterfactual(head_grad, other, cell, end, offsets, cells)
    sign = torch.where(jumped, -1.0, 1.0).to(own)
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


class _EventRead(torch.autograd.Function):
    """Reads of hard heads over a memory written by a hard learned head (module docstring)."""

    @staticmethod
    def forward(ctx, shift, jump, erase, add, table, initial, cells, horizon):
        K = (shift.shape[-1] - 1) // 2
        choice = shift.argmax(-1)                               # (B, T, 1 + H) in 0..2K
        jumped = jump > 0.5
        cell = torch.remainder(head_positions(choice - K, jumped), cells)
        B, T, heads = cell.shape
        read = cell[..., 1:]
        events = _Events(cell[..., 0], read, erase, add, initial)
        own = torch.arange(T, T * heads, device=cell.device).view(1, T, heads - 1).expand_as(read)
        contents = _rows(events.after, events.position(own))   # a read's own event: M_t[c]
        tags = table[read % table.shape[0]]
        ctx.save_for_backward(erase, add, table, choice, jumped, cell)
        ctx.events, ctx.cells, ctx.horizon, ctx.K = events, cells, horizon, K
        return contents, tags

    @staticmethod
    def backward(ctx, grad_contents, grad_tags):
        erase, add, table, choice, jumped, cell = ctx.saved_tensors
        events, cells, K = ctx.events, ctx.cells, ctx.K
        T, W = cell.shape[1], erase.shape[-1]
        horizon = T if ctx.horizon is None else min(int(ctx.horizon), T)
        write, read = cell[..., :1], cell[..., 1:]
        events.backward(grad_contents, erase)

        own = events.position(torch.arange(T, device=cell.device).expand_as(write[..., 0]))
        at_write = _rows(events.adjoint_rows, events.n + own)   # [μ_t[c_t], μ_t ⊙ M_{t-1}[c_t]]
        grad_add, grad_erase = at_write[..., :W], -at_write[..., W:]
        grad_table = torch.zeros_like(table).index_add_(
            0, (read % table.shape[0]).flatten(), grad_tags.reshape(-1, table.shape[-1]))

        reads = _ReadHeadGradient(events, grad_contents, grad_tags, table)
        writes = _WriteHeadGradient(events, erase, add)
        shift_w, jump_w = _location_gradients(writes, write, choice[..., :1], jumped[..., :1],
                                              K, cells, horizon)
        shift_r, jump_r = _location_gradients(reads, read, choice[..., 1:], jumped[..., 1:],
                                              K, cells, horizon)
        ctx.events = None
        grad_shift = torch.cat([shift_w, shift_r], dim=2)
        grad_jump = torch.cat([jump_w, jump_r], dim=2)
        return grad_shift, grad_jump, grad_erase, grad_add, grad_table, None, None, None


def event_read(shift: Tensor, jump: Tensor, erase: Tensor, add: Tensor, table: Tensor,
               initial: float, cells: int, horizon: int | None = None) -> tuple[Tensor, Tensor]:
    """Contents (B, T, H, W) and address tags (B, T, H, A) read by hard heads from a memory
    written by a hard learned head.

    ``shift`` (B, T, 1 + H, 2K+1) and ``jump`` (B, T, 1 + H) are the straight-through one-hot
    shifts and 0/1 gates (exactly hard values) of the write head (index 0) and the read heads;
    ``erase``, ``add`` (B, T, W) what each token writes; ``table`` (L, A) the address tag of each
    residue mod ``L`` (``L`` divides ``cells``); ``initial`` the constant initial memory;
    ``horizon`` the jump gradient's horizon (None: exact). Heads start on cell -1.
    """
    if shift.shape[2] == 1:  # no read head: nothing is read, so nothing to compute
        B, T = add.shape[:2]
        return add.new_zeros(B, T, 0, add.shape[-1]), table.new_zeros(B, T, 0, table.shape[-1])
    return _EventRead.apply(shift, jump, erase, add, table, initial, cells, horizon)


def written_rows(shift: Tensor, jump: Tensor, erase: Tensor, add: Tensor, table: Tensor,
                 initial: float, cells: int, horizon: int | None = None
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """What a hard learned write head leaves behind at every step, for content heads: the
    value ``M_t[c_t]`` of its cell just after the write at ``t`` (B, T, W), that cell's address
    tag (B, T, A), and the cells ``c_t`` (B, T) (long). Arguments as ``event_read``'s; only
    the write head's (index 0) moves are used.

    It is one ``event_read`` with a read head that makes the write head's own moves, so it sits
    on ``c_t`` and reads after the write: the values carry the erase/add gradients of the whole
    history of their cell, and the straight-through position gradients are those of a read at
    ``(t, c_t)`` (they reach the write head's moves, which that head shares)."""
    K = (shift.shape[-1] - 1) // 2
    writer_shift = shift[:, :, :1]
    writer_jump = jump[:, :, :1]
    contents, tags = event_read(torch.cat([writer_shift, writer_shift], 2),
                                torch.cat([writer_jump, writer_jump], 2), erase, add, table,
                                initial, cells, horizon)
    cell = torch.remainder(head_positions(writer_shift[:, :, 0].argmax(-1) - K,
                                          writer_jump[:, :, 0] > 0.5), cells)
    return contents[:, :, 0], tags[:, :, 0], cell


def live_writes(cell: Tensor) -> Tensor:
    """Which writes are still in memory at each step: ``[b, t, s]`` (B, T, T) is True when
    the write at ``s`` (to cell ``cell[b, s]``) happened at or before ``t`` and no later write
    to the same cell happened at or before ``t``. The memory at ``t`` is exactly the live
    writes' values on their cells (and ``m_0`` on cells never written). Every row has at least
    one live write, its own step's. A sort by (cell, time) finds each write's successor on its
    cell: O(T log T), then the O(T²) mask (what a content head's scores cost anyway)."""
    B, T = cell.shape
    steps = torch.arange(T, device=cell.device)
    keys, order = (cell * T + steps).sort(dim=1)
    same_cell = torch.div(keys[:, 1:], T, rounding_mode="floor") == torch.div(
        keys[:, :-1], T, rounding_mode="floor")
    successor = torch.where(same_cell, keys[:, 1:] % T, T)      # next write to the cell, or T
    successor = torch.cat([successor, successor.new_full((B, 1), T)], 1)
    overwritten_at = torch.empty_like(successor).scatter_(1, order, successor)  # time order
    t, s = steps[:, None], steps[None, :]
    return (s <= t) & (t < overwritten_at[:, None, :])


def sequential_weights(shift: Tensor, jump: Tensor, cells: int) -> Tensor:
    """Dense weightings (B, T, heads, N), one step at a time:
    ``w_t = Σ_k s_t[k] roll((1 - g_t) w_{t-1} + g_t δ_0, k)``, ``w_0 = δ_{-1}``."""
    B, _, heads, S = shift.shape
    K = (S - 1) // 2
    origin = torch.zeros(cells, dtype=shift.dtype, device=shift.device)
    origin[0] = 1.0
    w = torch.zeros(B, heads, cells, dtype=shift.dtype, device=shift.device)
    w[..., cells - 1] = 1.0
    weights = []
    for s_t, g_t in zip(shift.unbind(1), jump.unbind(1)):
        before = (1 - g_t[..., None]) * w + g_t[..., None] * origin
        w = sum(s_t[..., k, None] * torch.roll(before, k - K, dims=-1) for k in range(S))
        weights.append(w)
    return torch.stack(weights, 1)


def sequential_reads(weights: Tensor, erase: Tensor, add: Tensor, table: Tensor,
                     initial: float) -> tuple[Tensor, Tensor]:
    """Dense memory, one step at a time, written by head 0 and read by the others:
    ``M_t = M_{t-1} ⊙ (1 - w^0_t e_tᵀ) + w^0_t a_tᵀ``, ``r^h_t = Σ_i w^h_t[i] [M_t[i], A[i]]``."""
    B, _, _, cells = weights.shape
    memory = torch.full((B, cells, add.shape[-1]), initial, dtype=add.dtype, device=add.device)
    tags_of_cells = table[torch.arange(cells, device=add.device) % table.shape[0]]
    contents = []
    # unbind once: indexing step t out of the stacked tensors would cost a full-size gradient
    # per step in the backward pass (quadratic in T)
    for w, e, a in zip(weights.unbind(1), erase.unbind(1), add.unbind(1)):
        write = w[:, 0, :, None]
        memory = memory * (1 - write * e[:, None]) + write * a[:, None]
        contents.append((w[:, 1:, :, None] * memory[:, None]).sum(2))  # (bmm: slow this small)
    return torch.stack(contents, 1), weights[:, :, 1:] @ tags_of_cells


def sequential_reference(shift: Tensor, jump: Tensor, erase: Tensor, add: Tensor, table: Tensor,
                         initial: float, cells: int) -> tuple[Tensor, Tensor]:
    """``event_read`` computed step by step with dense weightings and a dense memory
    (``sequential_weights``, ``sequential_reads``), differentiable by autograd: the oracle."""
    weights = sequential_weights(shift, jump, cells)
    return sequential_reads(weights, erase, add, table, initial)


def sequential_content_reads(weights: Tensor, erase: Tensor, add: Tensor, table: Tensor,
                             initial: float, query: Tensor, strength: Tensor
                             ) -> tuple[Tensor, Tensor]:
    """Soft content heads over a hard learned writer's memory, step by step with the dense
    memory: the oracle of ``written_rows`` + ``live_writes`` + ``content_weights``. At step
    ``t`` each head takes ``softmax_i(β_t cos(q_t, M_t[i]))`` over the cells written so far and
    reads ``[M_t[i], A[i]]``. ``weights`` (B, T, 1 + H, N) from ``sequential_weights`` (head 0
    writes; only it is used), ``query`` (B, T, H_c, W), ``strength`` (B, T, H_c)."""
    B, _, _, cells = weights.shape
    memory = torch.full((B, cells, add.shape[-1]), initial, dtype=add.dtype, device=add.device)
    written = torch.zeros(B, cells, dtype=torch.bool, device=add.device)
    tags_of_cells = table[torch.arange(cells, device=add.device) % table.shape[0]]
    contents, tags = [], []
    for w, e, a, q, beta in zip(weights.unbind(1), erase.unbind(1), add.unbind(1),
                                query.unbind(1), strength.unbind(1)):
        write = w[:, 0, :, None]
        memory = memory * (1 - write * e[:, None]) + write * a[:, None]
        written = written | (w[:, 0] > 0.5)
        scores = beta[..., None] * torch.einsum("bhw,bnw->bhn", F.normalize(q, dim=-1),
                                                F.normalize(memory, dim=-1))
        p = scores.masked_fill(~written[:, None], float("-inf")).softmax(-1)
        contents.append(torch.einsum("bhn,bnw->bhw", p, memory))
        tags.append(p @ tags_of_cells)
    return torch.stack(contents, 1), torch.stack(tags, 1)
