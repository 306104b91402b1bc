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

The linear-space kernels are in :mod:`pntm.ops.scan_kernels`, the log-space path and its
pitfalls in :mod:`pntm.ops.scan_log`; this module holds the public API and the backward.

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

from pntm.ops.scan_kernels import (_chunked, _parallel, _parallel_chunk, _sequential,
                                   _sequential_adjoint)
from pntm.ops.scan_log import _log_chunk

__all__ = ["linear_scan", "scan_step", "METHODS"]

METHODS = ("sequential", "parallel", "log", "chunked")

DEFAULT_CHUNK = 64


def scan_step(a_t: Tensor, b_t: Tensor, x_prev: Tensor | None) -> Tensor:
    """One step of the recurrence: ``x_t = a_t * x_{t-1} + b_t``.

    ``x_prev`` None means the zero state (then ``x_t = b_t``).  This is the
    recurrent (decoding) mode: O(1) state per step.
    """
    if x_prev is None:
        return b_t + torch.zeros_like(a_t)  # keep the broadcast shape
    return a_t * x_prev + b_t


def _real_dtype(dt: torch.dtype) -> torch.dtype:
    return torch.empty((), dtype=dt).real.dtype if dt.is_complex else dt


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
