"""Hard heads on a write-once tape as integer positions: P-NTM's fast training path.

The reference path of ``models/pntm_layer.py`` carries every head as a weighting over all ``N`` cells
(a Fourier-domain scan and an inverse FFT), so a training step moves ``B·T·H·N`` numbers, and
``N`` grows with ``T``: the cost per token grows with the length. When every head is hard (a
straight-through one-hot shift ``k_t ∈ {-K..K}`` and a 0/1 jump ``j_t``) and the write head is
the tape writer (token ``j`` on cell ``j``), the same forward pass needs only integers::

    p_t = k_t + (1 - j_t) p_{t-1},      p_0 = -1,      c_t = p_t mod N     (head positions)
    content_t = m_0 + [c_t ≤ t] v_{c_t},     v_j = a_j - m_0 e_j           (the tape's closed form)
    tag_t     = A[c_t mod L]                                               (periodic address tags)

a cumulative sum and two gathers: O(B·T·H·W) work, the same per token at every length.

The backward pass gives the straight-through gradients of the reference path. Let
``G_τ[i] = ⟨∂L/∂r_τ, [M_τ[i], A[i]]⟩`` be the gradient of the loss with respect to the read
weight of cell ``i`` at time ``τ``; the adjoint of the weighting recurrence is
``λ_t[i] = G_t[i] + (1 - j_{t+1}) λ_{t+1}[i + k_{t+1}]``. Its values at the head's own
neighbourhood, ``Λ_t(d) = λ_t[c_t + d]`` for ``|d| ≤ 2K``, satisfy the reverse scan
``Λ_t(d) = G_t[c_t + d] + (1 - j_{t+1}) Λ_{t+1}(d)``, which gives every shift gradient exactly::

    ∂L/∂s_t[k] = λ_t[c_t - k_t + k] = Λ_t(k - k_t)

The jump gate's gradient compares the head's future with the future it would have had with the
other choice, which starts at ``x_t`` (the landing ``l_t + k_t`` when ``j_t = 0``: the origin,
``l_t = 0``, or with ``jump_to: here`` the token's own cell, ``l_t = t``; the continued walk
``c_{t-1} + k_t`` when ``j_t = 1``) and makes the same moves::

    ∂L/∂g_t = ±(λ_t[x_t] - λ_t[c_t]),    λ_t[x] = Σ_{τ = t..e_t} G_τ[x + c_τ - c_t]

(``e_t`` the step before the next jump). ``λ_t[x_t]`` sits at an arbitrary distance from the
head, so it has no short recurrence: summed exactly over the whole segment it costs O(T²).
``jump_horizon = h`` sums both terms over the next ``h`` steps only (``τ < t + h``): the gate
learns from the reads its choice changes within ``h`` tokens. ``None`` is the exact reference
gradient (O(T²) for a head that never jumps; tests use it). The forward pass and all other
gradients are exact either way.

**Content landings** (``jump_to: content``). A jump may land on a cell chosen per token, the
argmax ``l_t`` of a content weighting ``w^c_t`` over the tape (straight-through, one-hot in the
forward pass): ``w_t = s_t ⊛ ((1 - g_t) w_{t-1} + g_t w^c_t)``, still affine in ``w_{t-1}``.
Its gradient is the adjoint at the cell the head would have landed on::

    ∂L/∂w^c_t[j] = j_t λ_t[j + k_t],    λ_t[y] = Σ_{τ = t..e_t} G_τ[y + c_τ - c_t]

over the same ``horizon`` as the gate's (exact with ``None``), from the dense ``G`` (B, T, H, N),
one product of the read gradients with the tape.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _steps(like: Tensor) -> Tensor:
    """The step index ``t`` along dim 1, broadcast to ``like``'s shape."""
    steps = torch.arange(like.shape[1], device=like.device)
    return steps.view(1, -1, *([1] * (like.dim() - 2))).expand_as(like)


def head_positions(shift_index: Tensor, jump: Tensor, start: int = -1,
                   here: bool = False, landing: Tensor | None = None) -> Tensor:
    """Integer positions ``p_t = k_t + (1 - j_t) p_{t-1} + j_t l_t``, ``p_0 = start`` (before
    the first token), along dim 1: a jump lands on ``l_t = 0``, the origin, or with ``here`` on
    ``l_t = t``, the tape writer's cell of that token (``jump_to: here``), or on the cells
    ``landing`` (long, ``shift_index``'s shape; ``jump_to: content``). ``shift_index``
    holds the moves ``k_t`` (long), ``jump`` the 0/1 gates (bool); any trailing shape."""
    moves = torch.cumsum(shift_index, dim=1)
    before = moves - shift_index  # Σ_{σ<t} k_σ
    steps = _steps(shift_index)
    last_jump = torch.where(jump, steps, -1).cummax(dim=1).values
    if here:
        landing = steps
    # After a jump at s the position is l_s + Σ_{s≤σ≤t} k_σ; before any: start + Σ k.
    origin = torch.gather(before if landing is None else before - landing, 1,
                          last_jump.clamp(min=0))
    return torch.where(last_jump >= 0, moves - origin, moves + start)


def is_cells(landing: Tensor) -> bool:
    """Whether content landings are given as cells (long, (B, T, H)) rather than one-hot
    weightings (B, T, H, J) (``jump_to: content``; cells when no gradient is needed)."""
    return not landing.is_floating_point()


def landing_cells(landing: Tensor | None) -> Tensor | None:
    """The cells content landings put a jump on: ``landing`` itself, or its one-hot's argmax."""
    if landing is None or is_cells(landing):
        return landing
    return landing.argmax(-1)


def hard_cells(shift: Tensor, jump: Tensor, cells: int, here: bool = False,
               landing: Tensor | None = None) -> Tensor:
    """The cells (long, (B, T, ...)) of hard heads whose one-hot shifts ``shift`` (..., 2K+1)
    and 0/1 gates ``jump`` are given: ``head_positions`` of their moves, modulo ``cells``;
    ``landing``: content landings (``landing_cells``), where a jump lands."""
    K = (shift.shape[-1] - 1) // 2
    landed = landing_cells(landing)
    return torch.remainder(head_positions(shift.argmax(-1) - K, jump > 0.5, here=here,
                                          landing=landed), cells)


class _TapeRead(torch.autograd.Function):
    """Reads of hard heads on a write-once tape (see the module docstring)."""

    @staticmethod
    def forward(ctx, shift, jump, values, table, initial, cells, horizon, here, landing):
        K = (shift.shape[-1] - 1) // 2
        choice = shift.argmax(-1)                     # (B, T, H) in 0..2K
        jumped = jump > 0.5
        landed = landing_cells(landing)
        cell = torch.remainder(head_positions(choice - K, jumped, here=here, landing=landed),
                               cells)
        contents = initial + _tape_rows(values, cell) * _written(cell)[..., None]
        tags = table[cell % table.shape[0]]
        ctx.save_for_backward(values, table, choice, jumped, cell, landed)
        ctx.initial, ctx.cells, ctx.horizon, ctx.K, ctx.here = initial, cells, horizon, K, here
        ctx.landing_cells = (None if landing is None or is_cells(landing)
                             else landing.shape[-1])
        return contents, tags

    @staticmethod
    def backward(ctx, grad_contents, grad_tags):
        values, table, choice, jumped, cell, landed = ctx.saved_tensors
        B, T, H = cell.shape
        W = values.shape[-1]
        K, cells = ctx.K, ctx.cells
        written = _written(cell)

        grad_values = torch.zeros_like(values).view(B * T, W).index_add_(
            0, _row_index(cell, T), (grad_contents * written[..., None]).reshape(-1, W)
        ).view(B, T, W)
        grad_table = torch.zeros_like(table).index_add_(
            0, (cell % table.shape[0]).flatten(), grad_tags.reshape(-1, table.shape[-1]))

        read_grad = _ReadGradient(grad_contents, grad_tags, values, table, ctx.initial)
        stop = _segment_ends(jumped)
        # G_t[c_t + d] for d = -2K..2K: the cells another shift choice would put the head on.
        offsets = torch.arange(-2 * K, 2 * K + 1, device=cell.device)
        local = read_grad.at(0, torch.remainder(cell[..., None] + offsets, cells))  # (B,T,H,D)
        grad_shift = _shift_gradient(local, stop, choice, K)
        horizon = T if ctx.horizon is None else min(int(ctx.horizon), T)
        grad_jump = _jump_gradient(read_grad, local[..., 2 * K], cell, choice, jumped, stop, K,
                                   cells, horizon, ctx.here, landed)
        grad_landing = None
        if ctx.landing_cells is not None and ctx.needs_input_grad[8]:
            grad_landing = _landing_gradient(read_grad, cell, choice, jumped, K, cells, horizon,
                                             ctx.landing_cells)
        return grad_shift, grad_jump, grad_values, grad_table, None, None, None, None, grad_landing


def _shift_gradient(local: Tensor, stop: Tensor, choice: Tensor, K: int) -> Tensor:
    """``∂L/∂s_t[k] = Λ_t(k - k_t)``, where ``Λ_t(d)`` sums ``G_τ[c_τ + d]`` over the rest of
    the head's segment (``stop``: where it ends)."""
    adjoint = _segment_sums(local, stop)
    index = torch.arange(2 * K + 1, device=local.device) - choice[..., None] + 2 * K
    return torch.gather(adjoint, -1, index)


def capturing(tensor: Tensor) -> bool:
    """Whether a CUDA graph is being captured on ``tensor``'s device. No value may be read back
    to the host then, so the loops below that end early on a data-dependent test (an
    optimization only: the skipped passes add zeros) run to their static bound instead."""
    return tensor.is_cuda and torch.cuda.is_current_stream_capturing()


def other_start(cell: Tensor, choice: Tensor, jumped: Tensor, K: int, cells: int,
                here: bool = False, landing: Tensor | None = None) -> Tensor:
    """``x_t``: where the other choice of the jump gate puts a head, with the same move: the
    continued walk ``c_{t-1} + k_t`` where it jumped, else the landing ``l_t + k_t`` (``l_t``:
    the origin, ``t`` with ``here``, or the cells ``landing``)."""
    previous = torch.cat([torch.full_like(cell[:, :1], -1), cell[:, :-1]], dim=1)
    moved = choice - K
    if here:
        landing = _steps(moved)
    landed = moved if landing is None else moved + landing
    return torch.remainder(torch.where(jumped, previous + moved, landed), cells)


def _jump_gradient(read_grad: "_ReadGradient", own_now: Tensor, cell: Tensor, choice: Tensor,
                   jumped: Tensor, stop: Tensor, K: int, cells: int, horizon: int,
                   here: bool = False, landing: Tensor | None = None) -> Tensor:
    """``∂L/∂g_t = ±(λ_t[x_t] - λ_t[c_t])`` summed over ``horizon`` steps: the other choice's
    future (starting at ``x_t``, making the same moves) against the head's own."""
    T = cell.shape[1]
    other = other_start(cell, choice, jumped, K, cells, here, landing)
    steps = torch.arange(T, device=cell.device).view(1, T, 1)
    own = _segment_sums(own_now, torch.minimum(stop, steps + horizon))
    counterfactual = torch.zeros_like(own)
    alive = torch.ones_like(cell, dtype=torch.bool)  # no jump yet between t and t + o
    for o in range(horizon):
        if o > 0:
            alive = alive[:, :-1] & ~jumped[:, o:]
            if not capturing(alive) and not alive.any():
                break
        target = torch.remainder(other[:, :T - o] + cell[:, o:] - cell[:, :T - o], cells)
        counterfactual[:, :T - o] += alive * read_grad.at(o, target)
    sign = torch.where(jumped, -1.0, 1.0).to(own)
    return sign * (counterfactual - own)


def _landing_gradient(read_grad: "_ReadGradient", cell: Tensor, choice: Tensor,
                      jumped: Tensor, K: int, cells: int, horizon: int, tape: int) -> Tensor:
    """``∂L/∂w^c_t[j] = j_t λ_t[j + k_t]`` for the ``tape`` cells ``j`` (B, T, H, tape), summed
    over ``horizon`` steps as the gate's (module docstring): the future of a head that landed
    on ``j`` and made the same moves. Zero where the head did not jump, so only the jumps are
    walked (``nonzero``: a host sync, so not inside a CUDA graph)."""
    T = cell.shape[1]
    dense = read_grad.dense(cells)                                   # G_τ[y]: (B, T, H, N)
    grad = torch.zeros(*cell.shape, tape, dtype=dense.dtype, device=cell.device)
    b, t, h = jumped.nonzero(as_tuple=True)
    start = torch.arange(tape, device=cell.device) + (choice[b, t, h] - K)[:, None]  # j + k_t
    total = torch.zeros_like(start, dtype=dense.dtype)
    alive = torch.ones_like(t, dtype=torch.bool)  # no jump yet between t and t + o
    for o in range(horizon):
        tau = (t + o).clamp(max=T - 1)
        if o > 0:
            alive = alive & (t + o < T) & ~jumped[b, tau, h]
            if not alive.any():
                break
        target = torch.remainder(start + (cell[b, tau, h] - cell[b, t, h])[:, None], cells)
        total += alive[:, None] * torch.gather(dense[b, tau, h], 1, target)
    grad[b, t, h] = total
    return grad


class _ReadGradient:
    """``G_{t+o}[y_t]``: the loss gradient of the read weight of cell ``y_t`` at time ``t + o``."""

    def __init__(self, grad_contents, grad_tags, values, table, initial):
        self.grad_contents, self.values, self.initial = grad_contents, values, initial
        self.tag_scores = grad_tags @ table.T                # (B, T, H, L): ⟨∂L/∂tag, A[r]⟩
        self.constant = initial * grad_contents.sum(-1)      # every cell holds m_0 too

    def dense(self, cells: int) -> Tensor:
        """``G_τ[y]`` for every time and every cell ``y < cells`` (B, T, H, cells)."""
        T = self.values.shape[1]
        content = torch.einsum("bthw,bjw->bthj", self.grad_contents, self.values)
        content = content * torch.ones(T, T, dtype=torch.bool,
                                       device=content.device).tril()[None, :, None]
        content = torch.nn.functional.pad(content, (0, cells - T))
        L = self.tag_scores.shape[-1]
        tags = self.tag_scores[..., torch.arange(cells, device=content.device) % L]
        return content + tags + self.constant[..., None]

    def at(self, o: int, y: Tensor) -> Tensor:
        """``y``: cells (B, T - o, H, *extra) for times ``o..T-1``; returns the same shape."""
        reads = y.shape[0] * y.shape[1] * y.shape[2]          # one per (b, t, h)
        per_read = y[0, 0, 0].numel()                         # cells asked per read
        W, L = self.values.shape[-1], self.tag_scores.shape[-1]
        rows = _tape_rows(self.values, y).view(reads, per_read, W)
        gc = self.grad_contents[:, o:].reshape(reads, W, 1)
        if per_read == 1:  # a batch of 1 x W by W x 1 products is slow as bmm
            content = (rows[:, 0] * gc[..., 0]).sum(-1)
        else:
            content = torch.bmm(rows, gc)
        content = content.view(y.shape) * _written(y, first_time=o)
        scores = self.tag_scores[:, o:].reshape(reads, L)
        tags = torch.gather(scores, 1, (y % L).view(reads, per_read)).view(y.shape)
        constant = self.constant[:, o:].reshape(*y.shape[:3], *([1] * (y.dim() - 3)))
        return content + tags + constant


def _written(cell: Tensor, first_time: int = 0) -> Tensor:
    """Whether cell ``cell[:, t]`` holds a token at time ``first_time + t`` (``c ≤ t``)."""
    times = torch.arange(first_time, first_time + cell.shape[1], device=cell.device)
    return cell <= times.view(1, -1, *([1] * (cell.dim() - 2)))


def _row_index(cell: Tensor, length: int) -> Tensor:
    """Flat row of ``values.view(B * T, W)`` holding each cell of ``cell`` (B, ...); cells past
    the tape's end are clamped to its last row (callers mask them: they are never written)."""
    batch = torch.arange(cell.shape[0], device=cell.device) * length
    return (cell.clamp(max=length - 1) + batch.view(-1, *([1] * (cell.dim() - 1)))).flatten()


def _tape_rows(values: Tensor, cell: Tensor) -> Tensor:
    """``v_cell`` for cells (B, ...): (B, ..., W), written or not. ``index_select`` on flat rows
    is several times faster than ``gather`` on CPU."""
    B, T, W = values.shape
    return values.reshape(B * T, W).index_select(0, _row_index(cell, T)).view(*cell.shape, W)


def _segment_ends(jumped: Tensor) -> Tensor:
    """For each step ``t``, the first later step with a jump (``T`` when none): the end,
    exclusive, of the stretch over which the head's moves carry ``t``'s choice forward."""
    T = jumped.shape[1]
    steps = torch.arange(T, device=jumped.device).view(1, T, *([1] * (jumped.dim() - 2)))
    at_or_after = torch.where(jumped, steps, T).flip(1).cummin(1).values.flip(1)
    return torch.cat([at_or_after[:, 1:], torch.full_like(at_or_after[:, :1], T)], dim=1)


def _segment_sums(x: Tensor, stop: Tensor) -> Tensor:
    """``Σ_{t ≤ τ < stop_t} x_τ`` along dim 1 (``x``: (B, T, H, *extra), ``stop``: (B, T, H)),
    from one suffix sum in float64, so the difference of two suffix sums loses nothing."""
    suffix = x.double().flip(1).cumsum(1).flip(1)
    suffix = torch.cat([suffix, torch.zeros_like(suffix[:, :1])], dim=1)
    end = stop.reshape(*stop.shape, *([1] * (x.dim() - stop.dim()))).expand_as(x)
    return (suffix[:, :-1] - torch.gather(suffix, 1, end)).to(x.dtype)


def tape_read(shift: Tensor, jump: Tensor, values: Tensor, table: Tensor, initial: float,
              cells: int, horizon: int | None = None, here: bool = False,
              landing: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Contents (B, T, H, W) and address tags (B, T, H, A) read by hard heads.

    ``shift`` (B, T, H, 2K+1) and ``jump`` (B, T, H) are the straight-through one-hot shifts
    and 0/1 gates (their values must be exactly hard); ``values`` (B, T, W) the tape, token ``j``
    on cell ``j``; ``table`` (L, A) the address tag of each residue mod ``L`` (``L`` divides
    ``cells``); ``initial`` the constant initial memory; ``horizon`` the jump gradient's horizon;
    ``here``: jumps land on the tape writer's cell of their token, not the origin;
    ``landing`` (B, T, H, J), ``J ≤ cells``: straight-through one-hot content weightings over
    the first ``J`` cells, whose argmax a jump lands on (``jump_to: content``), or those cells
    (B, T, H) (long; no gradient).
    """
    return _TapeRead.apply(shift, jump, values, table, initial, cells, horizon, here, landing)
