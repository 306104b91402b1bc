"""Finite-state heads: maps on a small set of states, composed by a parallel scan.

A head that only moves by shifts composes translations, an abelian group: it can count modulo
``N`` but not track a non-commutative state such as a product modulo 5 (``a * b`` is not a
translation of ``a``). A *state head* instead keeps one of ``S`` states and lets every token
choose a whole map of the states onto themselves, as the transition of a finite automaton::

    s_t = f_t(s_{t-1}),     s_0 = 0,     f_t : {0..S-1} -> {0..S-1}

Composition of maps is associative, so the states of a whole sequence come out of a prefix scan
over the maps (``F_t = f_t ∘ … ∘ f_1``, ``s_t = F_t(s_0)``) without a loop over time. Any finite
automaton with at most ``S`` states, commutative or not, is one choice of ``f``.

Two forms, each beside its sequential reference:

* **Soft** (relaxed training): row-stochastic matrices ``A_t`` (``A_t[i, j]`` = the chance that
  state ``i`` goes to ``j``) act on distributions, ``p_t = p_{t-1} A_t`` (row vectors).
  :func:`soft_states` scans the matrix products in log2 T rounds (Hillis-Steele): O(T log T S³)
  work, exact up to rounding; :func:`soft_states_reference` is the loop.
* **Hard** (straight-through): the forward pass takes ``f_t(i) = argmax_j A_t[i, j]``, so states
  are integers and a round of the scan is a gather, O(T log T S). Backward gives the gradient of
  the soft recurrence evaluated at the one-hot matrices. ``p_t`` is linear in each ``A_t``, so
  this is the exact effect of changing one token's transition row, as the shift heads'
  straight-through gradient is (``pntm.ops.hard_heads``). With ``λ_t = ∂L/∂p_t`` through every
  later step::

      λ_t[i] = g_t[i] + λ_{t+1}[f_{t+1}(i)],      ∂L/∂A_t[i, j] = [i = s_{t-1}] λ_t[j]

  (``g_t`` the direct gradient of ``p_t``). The adjoint is again a composition of maps, run as a
  reverse scan of (map, vector) pairs in log2 T gather rounds. Only the row of the state the head
  was in receives a gradient, as only the cell a hard head stands on does.

The scans are written for shapes ``(B, T, H, S)`` (maps) and ``(B, T, H, S, S)`` (matrices):
batch, time, heads, states.
"""

from __future__ import annotations

import torch
from torch import Tensor


# --------------------------------------------------------------------------- hard maps

def compose_prefix(maps: Tensor) -> Tensor:
    """Prefix compositions ``F_t = f_t ∘ … ∘ f_1`` of integer maps ``maps`` (B, T, H, S) along
    dim 1: ``F_t[i]`` is the state after step ``t`` of a head that was in ``i`` before step 1.

    Hillis-Steele: after the round with offset ``d`` entry ``t`` holds the composition of steps
    ``t-2d+1..t``; the earlier steps act first, so ``F[t] ← F[t][F[t-d]]``.
    """
    out = maps
    T, d = maps.shape[1], 1
    while d < T:
        later, earlier = out[:, d:], out[:, :-d]
        out = torch.cat([out[:, :d], torch.gather(later, -1, earlier)], dim=1)
        d *= 2
    return out


def hard_states(maps: Tensor, start: int = 0) -> Tensor:
    """States ``s_t = f_t(s_{t-1})``, ``s_0 = start``, for integer maps (B, T, H, S): (B, T, H)."""
    return compose_prefix(maps)[..., start]


def hard_states_reference(maps: Tensor, start: int = 0) -> Tensor:
    """The loop over time that :func:`hard_states` must equal."""
    B, T, H, _ = maps.shape
    state = torch.full((B, H), start, dtype=torch.long, device=maps.device)
    out = []
    for t in range(T):
        state = torch.gather(maps[:, t], -1, state[..., None])[..., 0]
        out.append(state)
    return torch.stack(out, dim=1)


def adjoint_scan(maps: Tensor, grad: Tensor, scales: Tensor | None = None) -> Tensor:
    """``λ_t[i] = g_t[i] + λ_{t+1}[f_{t+1}(i)]`` (``λ_{T+1} = 0``) for maps (B, T, H, S) and direct
    gradients ``grad`` (B, T, H, S), by a reverse Hillis-Steele scan of (map, vector) pairs.
    With ``scales`` (B, T, H, S), a scale per state, it is ``λ_t = g_t + M_{t+1} λ_{t+1}`` for
    the matrices with one nonzero per row ``M[i, f(i)] = d[i]`` (column vectors, ``(M λ)[i] =
    d[i] λ[f(i)]``): the adjoint of :func:`scaled_prefix`'s recurrence.

    Entry ``t`` holds ``v_t`` (the gradient collected from steps ``t..t+d-1``) and ``m_t`` (where
    a state at ``t`` is after step ``t+d``), with ``s_t`` (the product of the scales on that way)
    when scaled; a round adds ``v_{t+d}`` read through ``m_t`` (times ``s_t``) and extends the
    map: ``v_t ← v_t + s_t ⊙ v_{t+d}[m_t]``, ``m_t ← m_{t+d}[m_t]``, ``s_t ← s_t ⊙ s_{t+d}[m_t]``.
    """
    T = maps.shape[1]
    values = grad
    # the state at t goes to f_{t+1}(i) after step t+1; the last step has no successor
    reach = maps[:, 1:]
    scale = None if scales is None else scales[:, 1:]
    d = 1
    while d < T:
        gathered = torch.gather(values[:, d:], -1, reach[:, :T - d])   # v_{t+d}[m_t]
        if scale is not None:
            gathered = scale[:, :T - d] * gathered
        values = torch.cat([values[:, :T - d] + gathered, values[:, T - d:]], dim=1)
        if 2 * d < T:
            # m_t (t = 0..T-2d-1) now covers steps t+1..t+2d: apply m_t, then m_{t+d}
            near = reach[:, :T - 2 * d]
            if scale is not None:
                scale = scale[:, :T - 2 * d] * torch.gather(scale[:, d:T - d], -1, near)
            reach = torch.gather(reach[:, d:T - d], -1, near)
        d *= 2
    return values


class _HardStates(torch.autograd.Function):
    """One-hot states of hard maps with the straight-through gradient of the soft recurrence."""

    @staticmethod
    def forward(ctx, matrices, maps, start):
        states = hard_states(maps, start)
        ctx.save_for_backward(maps, states)
        ctx.start, ctx.S = start, maps.shape[-1]
        return torch.nn.functional.one_hot(states, ctx.S).to(matrices.dtype)

    @staticmethod
    def backward(ctx, grad):
        maps, states = ctx.saved_tensors
        lam = adjoint_scan(maps, grad)                               # (B, T, H, S)
        before = torch.cat([torch.full_like(states[:, :1], ctx.start), states[:, :-1]], dim=1)
        grad_matrices = torch.zeros(*lam.shape, ctx.S, dtype=lam.dtype, device=lam.device)
        grad_matrices.scatter_(-2, before[..., None, None].expand(*before.shape, 1, ctx.S),
                               lam[..., None, :])
        return grad_matrices, None, None


def hard_state_path(matrices: Tensor, start: int = 0) -> Tensor:
    """One-hot states (B, T, H, S) of the maps ``f_t(i) = argmax_j matrices[..., i, j]``, with
    the straight-through gradient with respect to ``matrices`` (B, T, H, S, S) (see the module
    docstring). Exact ties go to the lowest state."""
    return _HardStates.apply(matrices, matrices.argmax(-1), start)


# --------------------------------------------------------------------------- soft matrices

def soft_states(matrices: Tensor, start: int = 0) -> Tensor:
    """Distributions ``p_t = p_{t-1} A_t`` with ``p_0 = δ_start`` for matrices (B, T, H, S, S):
    (B, T, H, S). Prefix products in log2 T rounds (``P[t] ← P[t-d] P[t]``); differentiable
    by autograd."""
    out = matrices
    T, d = matrices.shape[1], 1
    while d < T:
        out = torch.cat([out[:, :d], out[:, :-d] @ out[:, d:]], dim=1)
        d *= 2
    return out[..., start, :]


def soft_states_reference(matrices: Tensor, start: int = 0) -> Tensor:
    """The loop over time that :func:`soft_states` must equal."""
    B, T, H, S, _ = matrices.shape
    p = torch.zeros(B, H, S, dtype=matrices.dtype, device=matrices.device)
    p[..., start] = 1.0
    out = []
    for t in range(T):
        p = (p[..., None, :] @ matrices[:, t])[..., 0, :]
        out.append(p)
    return torch.stack(out, dim=1)


# --------------------------------------------------------------------------- valued states

def affine_states(matrices: Tensor, offsets: Tensor, start: int = 0) -> Tensor:
    """Valued states ``x_t = x_{t-1} M_t + c_t`` with ``x_0 = δ_start`` for matrices
    (B, T, H, S, S) and offsets (B, T, H, S): (B, T, H, S).

    The pairs ``(M, c)`` compose associatively, ``(M_1, c_1)`` then ``(M_2, c_2)`` being
    ``(M_1 M_2, c_1 M_2 + c_2)``, so the prefix compositions come out of log2 T Hillis-Steele
    rounds like :func:`soft_states`; differentiable by autograd. With ``c = 0`` and
    row-stochastic ``M`` this is :func:`soft_states`.
    """
    M, c = matrices, offsets
    T, d = matrices.shape[1], 1
    while d < T:
        earlier_M, earlier_c = M[:, :-d], c[:, :-d]
        later_M, later_c = M[:, d:], c[:, d:]
        M = torch.cat([M[:, :d], earlier_M @ later_M], dim=1)
        c = torch.cat([c[:, :d], (earlier_c[..., None, :] @ later_M)[..., 0, :] + later_c], dim=1)
        d *= 2
    return M[..., start, :] + c


def affine_states_reference(matrices: Tensor, offsets: Tensor, start: int = 0) -> Tensor:
    """The loop over time that :func:`affine_states` must equal."""
    B, T, H, S, _ = matrices.shape
    x = torch.zeros(B, H, S, dtype=matrices.dtype, device=matrices.device)
    x[..., start] = 1.0
    out = []
    for t in range(T):
        x = (x[..., None, :] @ matrices[:, t])[..., 0, :] + offsets[:, t]
        out.append(x)
    return torch.stack(out, dim=1)


# --------------------------------------------------------------------------- valued hard maps

def scaled_prefix(maps: Tensor, scales: Tensor, offsets: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Prefix compositions of the affine steps ``x ↦ x M_t + c_t`` whose matrices have one
    nonzero per row, ``M_t[i, maps_t[i]] = scales_t[i]`` (a map with a scale per state), for
    maps (B, T, H, S) (long), scales and offsets (B, T, H, S). Returns the prefix maps, scales
    and offsets: entry ``t`` is the composition of steps ``1..t``, again of that form.

    ``(f_1, d_1, c_1)`` then ``(f_2, d_2, c_2)`` is ``(f_2[f_1], d_1 ⊙ d_2[f_1], c_1 M_2 + c_2)``
    with ``(c_1 M_2)[j] = Σ_{i: f_2(i) = j} c_1[i] d_2[i]`` (a scatter-add): O(S) per pair, where
    the dense matrix product of :func:`affine_states` costs O(S³).
    """
    f, d, c = maps, scales, offsets
    T, k = maps.shape[1], 1
    while k < T:
        f1, d1, c1 = f[:, :-k], d[:, :-k], c[:, :-k]
        f2, d2, c2 = f[:, k:], d[:, k:], c[:, k:]
        f = torch.cat([f[:, :k], torch.gather(f2, -1, f1)], dim=1)
        d = torch.cat([d[:, :k], d1 * torch.gather(d2, -1, f1)], dim=1)
        c = torch.cat([c[:, :k], c2.scatter_add(-1, f2, c1 * d2)], dim=1)
        k *= 2
    return f, d, c


def _scaled_states(maps: Tensor, scales: Tensor, offsets: Tensor, start: int) -> Tensor:
    """States ``x_t`` (B, T, H, S) from ``x_0 = δ_start`` of the steps :func:`scaled_prefix`
    composes: ``x_t = δ_start M_{1..t} + c_{1..t}``."""
    f, d, c = scaled_prefix(maps, scales, offsets)
    return c.scatter_add(-1, f[..., start:start + 1], d[..., start:start + 1])


def _states_before(states: Tensor, start: int) -> Tensor:
    """``x_{t-1}`` for every ``t`` (``x_0 = δ_start``): ``states`` shifted one step later."""
    first = torch.zeros_like(states[:, :1])
    first[..., start] = 1.0
    return torch.cat([first, states[:, :-1]], dim=1)


class _ScaledMapStates(torch.autograd.Function):
    """Valued states of matrices with one nonzero per row; the exact gradient of the affine
    recurrence with respect to the dense matrices and the offsets."""

    @staticmethod
    def forward(ctx, matrices, offsets, start):
        maps = matrices.abs().argmax(-1)
        scales = torch.gather(matrices, -1, maps[..., None])[..., 0]
        states = _scaled_states(maps, scales, offsets, start)
        ctx.save_for_backward(maps, scales, states)
        ctx.start = start
        return states

    @staticmethod
    def backward(ctx, grad):
        maps, scales, states = ctx.saved_tensors
        adjoint = adjoint_scan(maps, grad, scales)                  # ∂L/∂x_t, (B, T, H, S)
        before = _states_before(states, ctx.start)                   # x_{t-1}
        return before[..., :, None] * adjoint[..., None, :], adjoint, None


def scaled_map_states(matrices: Tensor, offsets: Tensor, start: int = 0) -> Tensor:
    """:func:`affine_states` for matrices (B, T, H, S, S) with exactly one nonzero entry per row
    (a hard map times a scale per state, as valued state heads have; the zeros may carry a
    straight-through gradient): the same states (B, T, H, S) and the same gradients with
    respect to ``matrices`` and ``offsets``, in O(T log T S) work instead of O(T log T S³).
    ``∂L/∂M_t = x_{t-1}ᵀ y_t`` and ``∂L/∂c_t = y_t`` with the adjoint ``y`` of
    :func:`adjoint_scan` with scales. Each row's nonzero is found as its largest magnitude.
    Valued state heads take :func:`logit_map_states`, which never builds the matrices."""
    return _ScaledMapStates.apply(matrices, offsets, start)


# --------------------------------------------------------------------------- from the logits

class _LogitMapStates(torch.autograd.Function):
    """Valued states of hard maps taken from logits, with the straight-through gradient of the
    softmax: the whole of a valued hard state head's scan in one function (see
    :func:`logit_map_states`)."""

    @staticmethod
    def forward(ctx, logits, scales, offsets, start):
        maps = logits.argmax(-1)
        states = _scaled_states(maps, scales, offsets, start)
        ctx.save_for_backward(logits, maps, scales, states)
        ctx.start = start
        return states

    @staticmethod
    def backward(ctx, grad):
        logits, maps, scales, states = ctx.saved_tensors
        adjoint = adjoint_scan(maps, grad, scales)                  # y_t = ∂L/∂x_t
        before = _states_before(states, ctx.start)                   # x_{t-1}
        # ∂L/∂P[i, j] = d[i] x_{t-1}[i] y[j]; through the softmax P = softmax(logits):
        # ∂L/∂logits[i, j] = d[i] x_{t-1}[i] P[i, j] (y[j] - Σ_k P[i, k] y[k])
        probs = logits.softmax(-1)
        mean = (probs @ adjoint[..., :, None])                       # (B, T, H, S, 1)
        grad_logits = probs.mul_(adjoint[..., None, :] - mean).mul_((scales * before)[..., None])
        grad_scales = before * torch.gather(adjoint, -1, maps)       # ∂L/∂d[i] = x_{t-1}[i] y[f(i)]
        return grad_logits, grad_scales, adjoint, None


def logit_map_states(logits: Tensor, scales: Tensor, offsets: Tensor, start: int = 0) -> Tensor:
    """Valued states ``x_t = x_{t-1} diag(d_t) A_t + c_t`` (``x_0 = δ_start``) of the hard maps
    ``f_t(i) = argmax_j logits_t[i, j]`` with ``A_t`` their one-hot matrices, straight-through
    for ``P_t = softmax(logits_t)``: logits (B, T, H, S, S), scales ``d_t`` and offsets ``c_t``
    (B, T, H, S). Returns (B, T, H, S).

    The same states and gradients (with respect to the logits, scales and offsets) as
    ``scaled_map_states(d[..., None] * (one_hot(f) + P - P.detach()), c)`` (tested), without the
    dense ``S × S`` tensors of that composition: the forward pass needs only the argmax, and the
    backward pass recomputes the softmax once and applies its Jacobian in closed form. A valued
    state head's step costs two dense passes over its ``S × S`` logits instead of about a dozen
    (the 32-state heads of the shipped config were most of its training step)."""
    return _LogitMapStates.apply(logits, scales, offsets, start)
