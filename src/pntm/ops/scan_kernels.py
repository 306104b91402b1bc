"""The linear-space kernels of :mod:`pntm.ops.scan`: the loop (the reference) and its adjoint,
beside the odd/even parallel scan, and the chunked frame that the parallel and the log-space
chunks (:mod:`pntm.ops.scan_log`) run in. The methods, their costs and measurements are in
:mod:`pntm.ops.scan`'s docstring.

Plain tensor code, time axis ``d``, ``a`` broadcastable to ``b``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _sl(x: Tensor, d: int, start: int | None, stop: int | None, step: int = 1) -> Tensor:
    """View of ``x[start:stop:step]`` along dimension ``d``."""
    return x[(slice(None),) * d + (slice(start, stop, step),)]


def _sequential(a: Tensor, b: Tensor, x0: Tensor | None, d: int) -> Tensor:
    """``x_t = a_t * x_{t-1} + b_t`` by a loop over t (the reference)."""
    out = torch.empty(b.shape, dtype=b.dtype, device=b.device)
    x = x0
    # unbind makes all the per-step views in one call; each step writes straight into the
    # output (one fused addcmul, no list + stack copy).
    for o, a_t, b_t in zip(out.unbind(d), a.unbind(d), b.unbind(d)):
        if x is None:
            o.copy_(b_t)
        else:
            torch.addcmul(b_t, a_t, x, out=o)
        x = o
    return out


def _sequential_adjoint(a: Tensor, gx: Tensor, d: int) -> Tensor:
    """``g_t = conj(a_{t+1}) g_{t+1} + gx_t`` backwards from ``g_T = gx_T`` (no flips)."""
    g = torch.empty(gx.shape, dtype=gx.dtype, device=gx.device)
    gs, gxs = g.unbind(d), gx.unbind(d)
    # One conj copy up front: a lazy conj view would be cloned by every addcmul.
    ca = (a.conj().resolve_conj() if a.is_complex() else a).unbind(d)
    T = len(gs)
    gs[T - 1].copy_(gxs[T - 1])
    for t in range(T - 2, -1, -1):
        torch.addcmul(gxs[t], ca[t + 1], gs[t + 1], out=gs[t])
    return g


def _parallel(
    a: Tensor, b: Tensor, x0: Tensor | None, d: int, need_prod: bool = False
) -> tuple[Tensor | None, Tensor]:
    """Odd/even (Blelloch-style) scan along ``d``.

    Returns ``(P, X)`` with ``P_t = a_1 ... a_t`` (only if ``need_prod``) and
    ``X_t`` the states.  With pairs combined as
    ``(A'_i, B'_i) = (a_{2i} a_{2i-1}, a_{2i} b_{2i-1} + b_{2i})`` (1-based), the
    recursive scan of (A', B') gives the states at even 1-based positions, and
    ``x_{2i+1} = a_{2i+1} x_{2i} + b_{2i+1}`` gives the rest.  x0 is threaded
    through so that b is never copied to fold it in.
    """
    T = b.shape[d]
    if T == 1:
        x = b.clone() if x0 is None else a * x0.unsqueeze(d) + b
        return (a.clone() if need_prod else None), x
    n = T // 2  # number of pairs; the 0-based odd positions
    a_ev, a_od = _sl(a, d, 0, None, 2), _sl(a, d, 1, None, 2)
    b_ev, b_od = _sl(b, d, 0, None, 2), _sl(b, d, 1, None, 2)
    a_evp, b_evp = _sl(a_ev, d, 0, n), _sl(b_ev, d, 0, n)  # the first of each pair
    A2 = a_od * a_evp
    B2 = torch.addcmul(b_od, a_od, b_evp)
    P2, X2 = _parallel(A2, B2, x0, d, need_prod)
    del A2, B2

    m = T - n - 1  # even positions after the first
    X = torch.empty(b.shape, dtype=X2.dtype, device=b.device)
    _sl(X, d, 1, None, 2).copy_(X2)
    x_ev = _sl(X, d, 0, None, 2)
    if x0 is None:
        x_ev.narrow(d, 0, 1).copy_(b_ev.narrow(d, 0, 1))
    else:
        torch.addcmul(b_ev.narrow(d, 0, 1), a_ev.narrow(d, 0, 1), x0.unsqueeze(d), out=x_ev.narrow(d, 0, 1))
    if m > 0:
        torch.addcmul(b_ev.narrow(d, 1, m), a_ev.narrow(d, 1, m), X2.narrow(d, 0, m), out=x_ev.narrow(d, 1, m))
    P = None
    if need_prod:
        P = torch.empty(a.shape, dtype=a.dtype, device=a.device)
        _sl(P, d, 1, None, 2).copy_(P2)
        p_ev = _sl(P, d, 0, None, 2)
        p_ev.narrow(d, 0, 1).copy_(a_ev.narrow(d, 0, 1))
        if m > 0:
            torch.mul(a_ev.narrow(d, 1, m), P2.narrow(d, 0, m), out=p_ev.narrow(d, 1, m))
    return P, X


def _parallel_chunk(a: Tensor, b: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Zero-state scan of one chunk (batched): ``(prefix products, states)``."""
    P, X = _parallel(a, b, None, d, need_prod=True)
    return P, X


def _chunked(a: Tensor, b: Tensor, x0: Tensor | None, d: int, C: int, inner) -> Tensor:
    """Scan chunks of length C with ``inner`` (zero state), then carry between chunks.

    Chunk k (states y, prefix products p) gets ``x = y + p * s_{k-1}`` where the
    chunk-end states follow the short recurrence ``s_k = p_k[end] s_{k-1} + y_k[end]``,
    ``s_0 = x0``.
    """
    T = b.shape[d]
    if T <= C:
        P, Y = inner(a, b, d)
        if x0 is not None:
            Y = Y + P * x0.unsqueeze(d)
        return Y
    pad = (-T) % C
    if pad:
        # Identity steps (a=1, b=0) at the end leave the real states untouched.
        a = torch.cat([a, a.new_ones(a.shape[:d] + (pad,) + a.shape[d + 1 :])], d)
        b = torch.cat([b, b.new_zeros(b.shape[:d] + (pad,) + b.shape[d + 1 :])], d)
    n = (T + pad) // C
    P, Y = inner(a.unflatten(d, (n, C)), b.unflatten(d, (n, C)), d + 1)
    p_end, y_end = P.select(d + 1, C - 1), Y.select(d + 1, C - 1)
    _, S = _parallel(p_end, y_end, x0, d)  # state at the end of each chunk
    # chunk k >= 1 starts from S_{k-1}; chunk 0 from x0
    Y.narrow(d, 1, n - 1).add_(P.narrow(d, 1, n - 1) * S.narrow(d, 0, n - 1).unsqueeze(d + 1))
    if x0 is not None:
        Y.select(d, 0).add_(P.select(d, 0) * x0.unsqueeze(d))
    Y = Y.flatten(d, d + 1)
    return Y.narrow(d, 0, T) if pad else Y
