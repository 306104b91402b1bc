"""Hard learned write heads as write events: P-NTM's fast path for a writable memory.

With the tape writer, token ``j`` writes cell ``j`` once, and ``pntm.ops.hard_heads`` reads that
tape by gathers. A *learned* write head moves like a read head (shifts ``-K..K``, jumps to the
origin), so it may stay on a cell, come back to it, or jump: cells are overwritten. The
reference path then scans the whole memory, ``M_t = M_{t-1} ⊙ (1 - w_t e_tᵀ) + w_t a_tᵀ``,
``B·T·N·W`` numbers. When every head is hard, ``w_t = δ_{c_t}`` and each token is a write event
``(t, c_t, e_t, a_t)``: only row ``c_t`` changes, by ``v ← v ⊙ (1 - e_t) + a_t``. So:

**Forward.** Positions ``c^h_t`` of all heads come from ``hard_heads.head_positions`` (head 0
writes). Per sequence, the writes and the reads are merged into one list of events sorted by
cell, then time, a token's write before its reads (a read sees ``M_t``, after that token's
write, as in the scan), except for a head that reads before the write (``read_before_write``:
it sees ``M_{t-1}``); the keys are in :mod:`pntm.ops.write_event_list`.
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

The shift and jump gradients of the heads are derived in :mod:`pntm.ops.write_event_grads`;
the sorted event list, its scans and searches are :mod:`pntm.ops.write_event_list`.

Measured (``pntm bench --models pntm,pntm-write,ntm``, CPU, one thread, batch 32, one read head,
no other job running; ``results/speed-writer-kernels-cpu.json`` and ``-eager-cpu.json``, RESULTS.md
"The learned hard writer with fused CPU kernels"): with the gradient queries in the CPU kernels
of :mod:`pntm.ops.event_kernels`, a training step took 1.19x, 1.06x, 1.22x and 1.25x the tape
writer's at lengths 64, 256, 1024 and 4096 (10.6, 36.2, 179 and 1066 ms); in eager code, the
same session, 1.59x, 1.51x, 1.38x and 1.57x.

``sequential_reference`` computes the same outputs step by step with dense weightings
(``torch.roll`` for the shifts) and a dense memory, differentiable by autograd: the test oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pntm.ops.hard_heads import hard_cells, head_positions
from pntm.ops.write_event_grads import _location_gradients, _ReadHeadGradient, _WriteHeadGradient
from pntm.ops.write_event_list import _Events, _rows


class _EventRead(torch.autograd.Function):
    """Reads of hard heads over a memory written by a hard learned head (module docstring)."""

    @staticmethod
    def forward(ctx, shift, jump, erase, add, table, initial, cells, horizon, before):
        K = (shift.shape[-1] - 1) // 2
        choice = shift.argmax(-1)                               # (B, T, 1 + H) in 0..2K
        jumped = jump > 0.5
        cell = torch.remainder(head_positions(choice - K, jumped), cells)
        B, T, heads = cell.shape
        read = cell[..., 1:]
        events = _Events(cell[..., 0], read, erase, add, initial, before)
        own = torch.arange(T, T * heads, device=cell.device).view(1, T, heads - 1).expand_as(read)
        contents = _rows(events.after, events.position(own))   # a read's own event: M_t[c]
        #                                                         (M_{t-1}[c] read before)
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
        return grad_shift, grad_jump, grad_erase, grad_add, grad_table, None, None, None, None


def event_read(shift: Tensor, jump: Tensor, erase: Tensor, add: Tensor, table: Tensor,
               initial: float, cells: int, horizon: int | None = None,
               before: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Contents (B, T, H, W) and address tags (B, T, H, A) read by hard heads from a memory
    written by a hard learned head.

    ``shift`` (B, T, 1 + H, 2K+1) and ``jump`` (B, T, 1 + H) are the straight-through one-hot
    shifts and 0/1 gates (exactly hard values) of the write head (index 0) and the read heads;
    ``erase``, ``add`` (B, T, W) what each token writes; ``table`` (L, A) the address tag of each
    residue mod ``L`` (``L`` divides ``cells``); ``initial`` the constant initial memory;
    ``horizon`` the jump gradient's horizon (None: exact); ``before`` (H,) bool, or None (all
    False): the read heads that read their cell before the token's write, ``M_{t-1}[c_t]``,
    instead of after it (``read_before_write``). Heads start on cell -1.
    """
    if shift.shape[2] == 1:  # no read head: nothing is read, so nothing to compute
        B, T = add.shape[:2]
        return add.new_zeros(B, T, 0, add.shape[-1]), table.new_zeros(B, T, 0, table.shape[-1])
    return _EventRead.apply(shift, jump, erase, add, table, initial, cells, horizon, before)


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
    writer_shift = shift[:, :, :1]
    writer_jump = jump[:, :, :1]
    contents, tags = event_read(torch.cat([writer_shift, writer_shift], 2),
                                torch.cat([writer_jump, writer_jump], 2), erase, add, table,
                                initial, cells, horizon)
    cell = hard_cells(writer_shift[:, :, 0], writer_jump[:, :, 0], cells)
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


def soft_reads_over_writes(weights: Tensor, rows: Tensor, cell: Tensor, initial: float
                           ) -> Tensor:
    """Contents (B, T, H, W) read by soft heads from the memory of a hard learned writer,
    from its writes alone: the relaxed phase of a learned writer without ``B·T·N·W`` memory.

    The memory at ``t`` holds, on each written cell, the value its last write left there
    (``rows``: ``V_s = M_s[c_s]`` from ``written_rows``), and ``m_0`` on every other cell; the
    write at ``s`` is the last one on its cell at ``t`` when ``live_writes(cell)[t, s]``. So a
    soft read ``r_t = Σ_i w_t[i] M_t[i]`` is::

        r_t = m_0 Σ_i w_t[i] + Σ_s live[t, s] w_t[c_s] (V_s - m_0)

    causal attention over the writes with scores ``w_t[c_s]`` gathered from the weightings
    ``weights`` (B, T, H, N): O(T²·(H + W)) per sequence, as the tape writer's closed form
    costs, instead of a memory scan over every cell and token. ``cell`` (B, T) holds the
    writer's cells. Forward and the gradients of the weightings, the erase and add vectors are
    those of the dense recurrence (tested against ``sequential_reads``); the writer's moves get
    no gradient from these reads (which cell a write went to enters only as an index), only
    through the hard reads and ``rows``' read that follows the writer.
    """
    B, T, H, _ = weights.shape
    scores = torch.gather(weights, 3, cell[:, None, None, :].expand(B, T, H, T))  # w_t[c_s]
    scores = scores.masked_fill(~live_writes(cell)[:, :, None, :], 0.0)
    return (torch.einsum("bths,bsw->bthw", scores, rows - initial)
            + initial * weights.sum(-1, keepdim=True))


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
                     initial: float, before: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Dense memory, one step at a time, written by head 0 and read by the others:
    ``M_t = M_{t-1} ⊙ (1 - w^0_t e_tᵀ) + w^0_t a_tᵀ``, ``r^h_t = Σ_i w^h_t[i] [M_t[i], A[i]]``,
    or ``M_{t-1}`` in place of ``M_t`` for the read heads that ``before`` (H,) bool marks."""
    B, _, _, cells = weights.shape
    memory = torch.full((B, cells, add.shape[-1]), initial, dtype=add.dtype, device=add.device)
    tags_of_cells = table[torch.arange(cells, device=add.device) % table.shape[0]]
    contents = []
    # unbind once: indexing step t out of the stacked tensors would cost a full-size gradient
    # per step in the backward pass (quadratic in T)
    for w, e, a in zip(weights.unbind(1), erase.unbind(1), add.unbind(1)):
        write = w[:, 0, :, None]
        old = memory
        memory = memory * (1 - write * e[:, None]) + write * a[:, None]
        read = memory[:, None] if before is None else torch.where(
            before[None, :, None, None], old[:, None], memory[:, None])
        contents.append((w[:, 1:, :, None] * read).sum(2))  # (bmm: slow this small)
    return torch.stack(contents, 1), weights[:, :, 1:] @ tags_of_cells


def sequential_reference(shift: Tensor, jump: Tensor, erase: Tensor, add: Tensor, table: Tensor,
                         initial: float, cells: int, before: Tensor | None = None
                         ) -> tuple[Tensor, Tensor]:
    """``event_read`` computed step by step with dense weightings and a dense memory
    (``sequential_weights``, ``sequential_reads``), differentiable by autograd: the oracle."""
    weights = sequential_weights(shift, jump, cells)
    return sequential_reads(weights, erase, add, table, initial, before)


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
