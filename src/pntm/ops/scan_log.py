"""The log-space path of :mod:`pntm.ops.scan` (``method="log"``, Heinsen 2023): one chunk
scanned from a zero state in log space, run per chunk in the frame of
:func:`pntm.ops.scan_kernels._chunked`.

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
"""

from __future__ import annotations

import torch
from torch import Tensor

# log 0 is clamped here.  The weight of a term from before a zero is at most
# exp(-2000 + log|b_k|) <= exp(-2000 + 710) in float64, which is exactly 0 (the
# smallest subnormal is exp(-744.4)): the past leaves no trace, not even a subnormal.
_LOG_ZERO = -2000.0


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
