"""Element-wise linear recurrences computed four ways (the P-NTM scan engine).

Every method computes, for ``t = 1..T``::

    x_t = a_t * x_{t-1} + b_t,        x_0 = x0 (zeros when x0 is None)

element-wise over any trailing shape, for real (float32/float64) and complex
(complex64/complex128) values, and returns all states ``x_1..x_T``.  The pairs
``(a, b)`` form a monoid under

    (a2, b2) o (a1, b1) = (a2 * a1, a2 * b1 + b2)        (apply 1, then 2)

and that associativity is what lets a whole sequence be processed without a
loop over time.

Methods (cost for T steps of a state of S elements):

``"sequential"``
    A plain loop over time.  Work O(T S), depth T, no memory beyond the
    output.  It is the reference, and ``scan_step`` is one iteration of it
    (the recurrent decoding mode).  Each step costs ~10 us of Python and
    dispatch (forward + backward) on top of the arithmetic.
``"parallel"``
    A work-efficient (Blelloch-style) scan written as odd/even reduction:
    combine neighbouring pairs, scan the half-length sequence recursively, then
    fill in the even positions from the odd ones.  Work O(T S) (about 3x the
    loop's memory traffic), depth 2 log2 T, temporaries about 2x the output
    (T/2 + T/4 + ... pairs and states).  Only the log2 T recursion levels run
    in Python; there are no divisions, so it is as stable as the loop for
    |a| <= 1.  (It forms prefix products of a: decays > 1 whose product
    overflows give inf * 0 = NaN even where the state is finite.)
``"chunked"``
    T is cut into chunks of ``chunk_size`` (default 64, the last one padded
    with identity steps).  Each chunk is scanned from a zero state with the
    parallel scan, batched over chunks; the chunk-end states are combined by a
    parallel scan over the T / C chunks, and each chunk's states get
    ``prefix_product * carry`` added.  Work O(T S) (more traffic than
    "parallel": prefix products and a carry pass come on top), depth
    2 log2 C + 2 log2(T/C), temporaries about 2x the output, like "parallel":
    the batched chunk scan does not make them smaller, it makes the
    recursion shallower and is the frame the log method runs in.
``"log"``
    Heinsen (2023): x_t = exp(A*_t) (x0 + sum_{k<=t} exp(log b_k - A*_k)) with
    A*_t = sum_{k<=t} log a_k, by ``cumsum`` and ``logcumsumexp``, run per
    chunk in the frame of "chunked".  Signed and complex values use the
    complex logarithm log z = log|z| + i arg z; its log-sum-exp is evaluated
    as real ``logcumsumexp`` of the positive and negative parts of the real
    and imaginary parts of ``b_k exp(-i Im A*_k)`` (1 to 4 of them), because
    torch's complex ``logcumsumexp`` returns NaN when two real parts differ by
    ~710-745 (torch 2.13), which a clamped log 0 hits.  Work O(T S) in float64
    with log/exp/logcumsumexp: on CPU 50-100x slower than the loop.

Measured on CPU (torch 2.13, 1 thread, the other core busy with training;
milliseconds, forward / forward+backward, a of b's shape, decays in [0.5, 1]):

    shape                       sequential  parallel   chunked      log
    (32,   64, 65) complex64       0 / 1      0 / 1      1 / 2     24 / 50
    (32,  256, 65) complex64       2 / 5      2 / 8      3 / 8    103 / 209
    (32, 1024, 65) complex64       7 / 33    10 / 27    16 / 39   443 / 1042
    (32, 4096, 65) complex64      46 / 156   61 / 319  125 / 469  4.0k / 8.7k
    (32,   64, 128, 20) float32    3 / 7      8 / 22    11 / 28   652 / 1490
    (32,  256, 128, 20) float32   36 / 102   60 / 304  146 / 518  4.7k / 9.2k
    (32, 1024, 128, 20) float32  140 / 405  395 / 1670 847 / 2754 21.7k / 42.8k
    ( 8, 4096, 128, 20) float32  156 / 438  415 / 1555 888 / 2824 19.4k / 41.0k

``"auto"`` (the default) follows ``_auto_method``: "sequential" when one time
step holds more than 4 KiB (the shapes above), "parallel" below that (e.g. a
batch-1 head), where the loop's per-step overhead dominates.

Log-space pitfalls and how ``"log"`` handles them
    * It runs per chunk relative to the chunk start and carries the state
      between chunks in linear space, so A* never grows with T,
      ``exp(-A*)`` is never formed (only inside ``logcumsumexp``), and a
      non-zero x0 never enters a logarithm.
    * The exponent arithmetic is done in float64 whatever the input
      precision: ``A*_t - A*_k`` is a difference of two running sums and loses
      ``|A*| * eps`` of relative precision (each zero adds 2000 to |A*|), which
      float32 cannot afford (float64: ~5e-13 per zero in a chunk).  Outputs are cast back.
    * ``a = 0``: log 0 = -inf would give -inf - (-inf) = NaN.  log |a| is
      clamped at -2000, far enough that exp underflows to exactly 0 in float64
      even times the largest b, so terms from before a zero get weight 0; prefix products are masked to 0 after a
      zero, and the state at a zero is set to b (what the weights give, up to
      the rounding of A*), so ``x_t == b_t`` exactly.
    * ``a = 1``: log 1 = 0 exactly; nothing special.
    * ``b = 0`` (or a zero part of b): log 0 = -inf is an empty term, which
      ``logcumsumexp`` handles; an all-empty prefix gives exp(-inf) = 0.
    * Negative real a: its phase pi is kept as an exact sign (parity of the
      negative decays so far) rather than a rounded exp(i pi k).

Gradients
    All methods share one ``torch.autograd.Function`` whose backward is the
    adjoint recurrence, itself a linear scan run backwards in time with the
    same method::

        g_t = conj(a_{t+1}) g_{t+1} + dL/dx_t     (g_{T+1} = 0)
        dL/db_t = g_t,   dL/da_t = g_t conj(x_{t-1}),   dL/dx0 = conj(a_1) g_1

    (PyTorch's convention for complex gradients; for real a the real part).
    This is needed for ``"log"``: autograd through ``log a`` gives
    0 * inf = NaN at a = 0, where the true derivative is x_{t-1}.  It also
    saves only a, x0 and the outputs instead of every intermediate: for the
    loop, forward+backward took 25 vs 41 ms on (32, 1024, 65) complex64 and
    101 vs 222 ms (peak +449 vs +777 MB) on (32, 256, 128, 20) float32,
    against plain autograd through the same loop.  The backward uses
    differentiable operations, so double backward works too.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["linear_scan", "scan_step", "METHODS"]

METHODS = ("sequential", "parallel", "log", "chunked")

DEFAULT_CHUNK = 64

# log 0 is clamped here.  The weight of a term from before a zero is at most
# exp(-2000 + log|b_k|) <= exp(-2000 + 710) in float64, which is exactly 0 (the
# smallest subnormal is exp(-744.4)): the past leaves no trace, not even a subnormal.
_LOG_ZERO = -2000.0


def scan_step(a_t: Tensor, b_t: Tensor, x_prev: Tensor | None) -> Tensor:
    """One step of the recurrence: ``x_t = a_t * x_{t-1} + b_t``.

    ``x_prev`` None means the zero state (then ``x_t = b_t``).  This is the
    recurrent (decoding) mode: O(1) state per step.
    """
    if x_prev is None:
        return b_t + torch.zeros_like(a_t)  # keep the broadcast shape
    return a_t * x_prev + b_t


# --------------------------------------------------------------------------
# helpers


def _sl(x: Tensor, d: int, start: int | None, stop: int | None, step: int = 1) -> Tensor:
    """View of ``x[start:stop:step]`` along dimension ``d``."""
    return x[(slice(None),) * d + (slice(start, stop, step),)]


def _real_dtype(dt: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dt).real.dtype if dt.is_complex else dt


# --------------------------------------------------------------------------
# forward kernels: plain tensor code, time axis d, a broadcastable to b.


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


def _signed_logsum(c: Tensor, A: Tensor, d: int) -> Tensor:
    """``exp(A_t) * sum_{k<=t} c_k exp(-A_k)`` for real signed c, in log space.

    Positive and negative parts get one ``logcumsumexp`` each (log 0 = -inf is a
    valid, empty term), so the sum is exact up to the rounding of a plain sum.
    """
    out = None
    for sign in (1.0, -1.0):
        part = (c if sign > 0 else -c).clamp_min(0)
        if not bool((part > 0).any()):
            continue
        term = torch.exp(torch.logcumsumexp(torch.log(part) - A, d) + A)
        if sign < 0:
            term = term.neg_()
        out = term if out is None else out.add_(term)
    return torch.zeros(torch.broadcast_shapes(c.shape, A.shape), dtype=c.dtype, device=c.device) if out is None else out


def _log_chunk(a: Tensor, b: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """Zero-state scan of one chunk in log space (Heinsen 2023).

    With ``log a = log|a| + i arg a`` and ``A*_t = sum_{k<=t} log a_k = R_t + i Phi_t``::

        x_t = exp(A*_t) sum_{k<=t} b_k exp(-A*_k)
            = e^{i Phi_t} exp(R_t) sum_{k<=t} (b_k e^{-i Phi_k}) exp(-R_k)

    and the last sum is taken as ``logcumsumexp(log(c_k) - R_k)`` over the positive
    and negative parts c of the real and imaginary parts of ``b_k e^{-i Phi_k}``.
    That is the complex logarithm's log-sum-exp written out in real arithmetic,
    because ``torch.logcumsumexp`` on complex input returns NaN when two real parts
    differ by about 710 to 745 (torch 2.13), which a clamped log 0 hits.  For real
    a the phase is 0 or pi and is kept as an exact sign.  Prefix products are
    ``exp(A*_t)``.  Computed in float64 (see the module docstring); returns the
    dtypes of a and b.
    """
    out_dt, a_dt = b.dtype, a.dtype
    f64, c128 = torch.float64, torch.complex128
    zero = a == 0
    # log 1 on the zeros, then the clamp: log 0 = -inf would give -inf - (-inf) = NaN.
    R = torch.log(torch.where(zero, 1.0, a.abs().to(f64))).masked_fill_(zero, _LOG_ZERO).cumsum(d)
    wb = b.to(c128 if b.is_complex() else f64)
    if a.is_complex():
        phase = torch.polar(torch.ones((), dtype=f64, device=a.device), torch.angle(a).to(f64).cumsum(d))
        wb = wb * phase.conj()
    elif bool((a < 0).any()):
        phase = 1.0 - 2.0 * torch.remainder(torch.cumsum(a < 0, d), 2).to(f64)  # exact +-1
        wb = wb * phase
    else:
        phase = None
    if wb.is_complex():
        X = torch.complex(_signed_logsum(wb.real, R, d), _signed_logsum(wb.imag, R, d))
    else:
        X = _signed_logsum(wb, R, d)
    del wb
    P = torch.exp(R)
    if phase is not None:
        X = X * phase
        P = P * phase
    # The clamp makes pre-zero weights underflow to 0 only while |a| <= 1; mask for any a.
    P = P.masked_fill(torch.cumsum(zero, d) > 0, 0)
    if X.is_complex() and not out_dt.is_complex:
        X = X.real
    # At a zero the weights give b up to rounding of A*; make it exact.
    X = torch.where(zero, b, X.to(out_dt))
    return P.to(a_dt), X


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


def _forward(a: Tensor, b: Tensor, x0: Tensor | None, d: int, method: str, C: int) -> Tensor:
    if b.shape[d] == 0:
        return torch.empty(b.shape, dtype=b.dtype, device=b.device)
    if method == "sequential":
        return _sequential(a, b, x0, d)
    if method == "parallel":
        return _parallel(a, b, x0, d)[1]
    if method == "chunked":
        return _chunked(a, b, x0, d, C, _parallel_chunk)
    if method == "log":
        return _chunked(a, b, x0, d, C, _log_chunk)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS} or 'auto'")


class _LinearScan(torch.autograd.Function):
    """Scan with the adjoint recurrence as backward (see the module docstring)."""

    @staticmethod
    def forward(ctx, a, b, x0, d, method, C):
        x = _forward(a, b, x0, d, method, C)
        ctx.save_for_backward(a, x0, x)
        ctx.d, ctx.method, ctx.C = d, method, C
        ctx.has_x0 = x0 is not None
        return x

    @staticmethod
    def backward(ctx, gx):
        a, x0, x = ctx.saved_tensors
        d, method, C = ctx.d, ctx.method, ctx.C
        T = x.shape[d]
        need_a, need_b, need_x0 = ctx.needs_input_grad[:3]
        if T == 0:
            return (torch.zeros_like(a), torch.zeros_like(gx),
                    torch.zeros_like(x0) if ctx.has_x0 else None, None, None, None)
        ca = a.conj() if a.is_complex() else a
        # Reverse time: g_t = conj(a_{t+1}) g_{t+1} + gx_t.
        if method == "sequential" and not torch.is_grad_enabled():
            g = _sequential_adjoint(a, gx, d)
        else:
            # The first reversed step has no predecessor; the identity decay keeps stray
            # values (a zero, say) out of the log path.  Through apply: double backward.
            coef = torch.cat([torch.ones_like(ca.narrow(d, 0, 1)), ca.narrow(d, 1, T - 1).flip(d)], d)
            g = _LinearScan.apply(coef, gx.flip(d), None, d, method, C).flip(d)

        ga = gb = gx0 = None
        if need_b:
            gb = g
        if need_a:
            x_last = x.narrow(d, 0, T - 1).conj()
            first = x0.unsqueeze(d).conj() if ctx.has_x0 else torch.zeros_like(x.narrow(d, 0, 1))
            if torch.is_grad_enabled():  # double backward: stay differentiable
                ga = g * torch.cat([first.expand_as(x.narrow(d, 0, 1)), x_last], d)
            else:  # no copy of the shifted states
                ga = torch.empty(x.shape, dtype=x.dtype, device=x.device)
                torch.mul(g.narrow(d, 1, T - 1), x_last, out=ga.narrow(d, 1, T - 1))
                torch.mul(g.narrow(d, 0, 1), first, out=ga.narrow(d, 0, 1))
            if not a.is_complex() and ga.is_complex():
                ga = ga.real
            ga = ga.sum_to_size(a.shape)
        if need_x0 and ctx.has_x0:
            gx0 = (ca.select(d, 0) * g.select(d, 0)).sum_to_size(x0.shape)
        return ga, gb, gx0, None, None, None


# --------------------------------------------------------------------------
# public API


# "auto" picks "parallel" when one time step's state (all of b's elements at one t) is at
# most this many bytes and T exceeds _AUTO_MIN_T; "sequential" otherwise.
_AUTO_STATE_BYTES = 4096
_AUTO_MIN_T = 64


def _auto_method(b: Tensor, d: int) -> str:
    """The method that measured fastest (forward + backward) for this shape.

    Measured on CPU (torch 2.13, 1 thread, the other core busy), ratio
    time(sequential) / time(parallel), shape (1, T, S):

        per-step state        T=64   256   1024   4096
        float32   S=512   2K  1.18  1.84  3.13  2.84
        float32   S=1024  4K  0.85  1.82  2.09  1.89
        float32   S=2048  8K  0.75  1.01  1.30  0.54
        float32   S=4096 16K  0.67  0.72  1.02  0.40
        complex64 S=256   2K  1.04  1.92  2.23  2.17
        complex64 S=512   4K  0.81  1.54  1.42  1.31
        complex64 S=1024  8K  0.77  0.92  0.98  0.66

    The loop costs about 10 us of Python and dispatch per step (forward and
    backward) whatever the state size, and touches each element once; the
    parallel scan has no per-step overhead but makes about 3x the memory
    traffic, which stops paying once a step holds more than ~4 KiB.  The
    model's shapes, (32, T, 65) complex64 (16.6 KiB) and (32, T, 128, 20)
    float32 (320 KiB) per step, are firmly sequential on CPU; batch-1 heads
    are parallel.  "chunked" and "log" were never fastest (see the module
    docstring's table).  On GPUs the loop's T kernel launches dominate, so
    "parallel" is used there: on an H200 (``pntm bench --scan --device cuda``,
    results/scan-cuda.json) it was fastest forward + backward at T >= 256 on
    both model shapes (T=1024: heads 3.6 ms vs loop 24.6, log 5.7, chunked
    4.6; memory 4.2 vs 27.9, 24.4, 6.5) and within 0.4 ms of the loop at 64.
    """
    if b.device.type != "cpu":
        return "parallel"
    T = b.shape[d]
    step_bytes = (b.numel() // max(T, 1)) * b.element_size()
    return "parallel" if step_bytes <= _AUTO_STATE_BYTES and T > _AUTO_MIN_T else "sequential"


def _result_dtype(a: Tensor, b: Tensor, x0: Tensor | None) -> torch.dtype:
    """The promoted dtype of ``a``, ``b`` and ``x0``; the default float dtype for integers."""
    dtypes = [a.dtype, b.dtype] + ([x0.dtype] if x0 is not None else [])
    out_dt = dtypes[0]
    for dt in dtypes[1:]:
        out_dt = torch.promote_types(out_dt, dt)
    if not (out_dt.is_floating_point or out_dt.is_complex):
        out_dt = torch.get_default_dtype()
    return out_dt


def linear_scan(
    a: Tensor,
    b: Tensor,
    x0: Tensor | None = None,
    *,
    dim: int = 1,
    method: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """All states of ``x_t = a_t * x_{t-1} + b_t``, ``t = 1..T``, ``x_0 = x0`` (or 0).

    Args:
        a: decays, time axis at ``dim``; broadcasts against ``b`` (e.g. a of shape
            (B, T, N, 1) with b of shape (B, T, N, W)).  Real or complex.
        b: inputs, time axis at ``dim``.  Real or complex; a real ``a`` with a
            complex ``b`` gives a complex result.
        x0: initial state with the shape of the result without the time axis
            (broadcastable); None means zeros.
        dim: the time axis, of the broadcast shape (a and b are left-padded
            with size-1 axes to the same rank first; prefer a negative dim when
            their ranks differ).
        method: one of ``METHODS`` or ``"auto"`` (see the module docstring).
        chunk_size: chunk length for ``"chunked"`` and ``"log"`` (default 64).

    Returns:
        x_1..x_T with the broadcast shape of a and b and the promoted dtype of
        a, b and x0.
    """
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS} or 'auto'")
    C = DEFAULT_CHUNK if chunk_size is None else int(chunk_size)
    if C < 1:
        raise ValueError("chunk_size must be >= 1")

    nd = max(a.dim(), b.dim())
    if not -nd <= dim < nd:
        raise IndexError(f"dim {dim} out of range for {nd}-d inputs")
    d = dim % nd
    a = a.reshape((1,) * (nd - a.dim()) + a.shape)
    b = b.reshape((1,) * (nd - b.dim()) + b.shape)
    if a.shape[d] != b.shape[d] and 1 not in (a.shape[d], b.shape[d]):
        raise ValueError(f"a has {a.shape[d]} steps on dim {dim}, b has {b.shape[d]}")
    shape = torch.broadcast_shapes(a.shape, b.shape)
    T = shape[d]

    out_dt = _result_dtype(a, b, x0)
    # A real decay stays real (cheaper products), at the result's precision.
    a_dt = out_dt if a.is_complex() else _real_dtype(out_dt)
    a = a.to(a_dt)
    if a.shape[d] != T:
        a = a.expand(a.shape[:d] + (T,) + a.shape[d + 1 :])
    b = b.to(out_dt).broadcast_to(shape)
    if x0 is not None:
        x0 = x0.to(out_dt).broadcast_to(shape[:d] + shape[d + 1 :])

    if method == "auto":
        method = _auto_method(b, d)
    return _LinearScan.apply(a, b, x0, d, method, C)
