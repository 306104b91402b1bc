"""Tests for pntm.ops.scan: every method against a plain autograd loop, forward and backward."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

from pntm.ops.scan import METHODS, linear_scan, scan_step

ALL = METHODS + ("auto",)


def reference(a, b, x0=None, dim=1):
    """The recurrence as the obvious autograd loop, independent of pntm.ops.scan."""
    a, b = torch.broadcast_tensors(a, b)
    x = x0
    xs = []
    for t in range(b.shape[dim]):
        a_t, b_t = a.select(dim, t), b.select(dim, t)
        x = b_t if x is None else a_t * x + b_t
        xs.append(x)
    return torch.stack(xs, dim)


def wide(t):
    return t.to(torch.complex128 if t.is_complex() else torch.float64)


def decays(shape, dtype=torch.float64, complex_=False, special=True, gen=None):
    """Decays in [0, 1] (complex: times a phase) with exact 0s and 1s mixed in."""
    a = torch.rand(shape, generator=gen, dtype=torch.float64)
    if special:
        u = torch.rand(shape, generator=gen, dtype=torch.float64)
        a = torch.where(u < 0.1, 0.0, a)
        a = torch.where(u > 0.85, 1.0, a)
    if complex_:
        a = a * torch.exp(1j * 3 * torch.randn(shape, generator=gen, dtype=torch.float64))
        dtype = {torch.float32: torch.complex64, torch.float64: torch.complex128}.get(dtype, dtype)
    return a.to(dtype)


def assert_close(x, ref, rtol):
    """|x - ref| <= rtol * max|ref| (float32 errors are relative to the magnitude)."""
    assert x.shape == ref.shape
    assert torch.isfinite(x).all()
    scale = ref.abs().max().clamp_min(1e-30)
    err = (wide(x) - wide(ref)).abs().max()
    assert err <= rtol * scale, f"max error {err:.3g} vs scale {scale:.3g}"


def grads(fn, inputs, gout):
    inputs = [t.detach().clone().requires_grad_() for t in inputs]
    out = fn(*inputs)
    out.backward(gout)
    # a is unused when T = 1 and x0 is None: no grad at all means zeros
    return out.detach(), [torch.zeros_like(t) if t.grad is None else t.grad for t in inputs]


def check_against_reference(method, a, b, x0, rtol, dim=1, chunk_size=None, gen=None):
    inputs = [a, b] + ([x0] if x0 is not None else [])
    ref_in = [wide(t) for t in inputs]
    out_ref = reference(*ref_in[:2], ref_in[2] if x0 is not None else None, dim=dim)
    gout = torch.randn(out_ref.shape, generator=gen, dtype=out_ref.dtype)

    def ours(a, b, x0=None):
        return linear_scan(a, b, x0, dim=dim, method=method, chunk_size=chunk_size)

    out, g = grads(ours, inputs, gout.to(torch.promote_types(a.dtype, b.dtype)))
    out_r, g_r = grads(lambda *t: reference(*t[:2], t[2] if len(t) > 2 else None, dim=dim), ref_in, gout)
    assert out.dtype == torch.promote_types(a.dtype, b.dtype)
    assert_close(out, out_r, rtol)
    for name, gi, gr in zip("a b x0".split(), g, g_r):
        assert gi.shape == gr.shape, name
        assert_close(gi, gr, rtol)


# ---------------------------------------------------------------- hand-computed cases


@pytest.mark.parametrize("method", ALL)
def test_hand_computed(method):
    # fixed point: 0.5 * 2 + 1 = 2
    a = torch.tensor([[0.5, 0.5]])
    b = torch.tensor([[1.0, 1.0]])
    x = linear_scan(a, b, torch.tensor([2.0]), method=method)
    assert torch.equal(x, torch.tensor([[2.0, 2.0]]))
    # a = 0 resets to b
    a = torch.tensor([[0.5, 0.0, 0.5]])
    b = torch.tensor([[1.0, 3.0, 1.0]])
    x = linear_scan(a, b, torch.tensor([4.0]), method=method)
    assert torch.equal(x, torch.tensor([[3.0, 3.0, 2.5]]))
    # no x0: x_1 = b_1; negative values
    a = torch.tensor([[0.25, 2.0, 1.0]])
    b = torch.tensor([[-1.0, 0.5, -2.0]])
    x = linear_scan(a, b, method=method)
    assert torch.allclose(x, torch.tensor([[-1.0, -1.5, -3.5]]))
    # complex: a = i rotates, x = [1, 1+i, i]
    a = torch.full((1, 3), 1j, dtype=torch.complex128)
    b = torch.ones(1, 3, dtype=torch.complex128)
    x = linear_scan(a, b, method=method)
    assert torch.allclose(x, torch.tensor([[1, 1 + 1j, 1j]], dtype=torch.complex128))


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex128])
def test_zero_decay_gives_b_exactly(method, dtype):
    g = torch.Generator().manual_seed(1)
    a = decays((3, 300, 4), torch.float64, complex_=dtype.is_complex, gen=g).to(dtype)
    b = torch.randn(3, 300, 4, generator=g, dtype=dtype) * 10
    x = linear_scan(a, b, torch.randn(3, 4, generator=g, dtype=dtype), method=method, chunk_size=16)
    zero = (a == 0).expand_as(b)
    assert zero.any()
    assert torch.equal(x[zero], b[zero])


@pytest.mark.parametrize("method", ALL)
def test_zero_decay_forgets_exactly(method):
    f64 = torch.float64
    # nothing from before a zero survives, not even a trace, and x_t = b_t onwards
    a = torch.tensor([[0.5, 0.5, 0.0, 0.5, 0.5]], dtype=f64)
    b = torch.tensor([[1e3, 1e3, 0.0, 0.0, -1.0]], dtype=f64)
    x = linear_scan(a, b, torch.tensor([1e3], dtype=f64), method=method)
    assert torch.equal(x[:, 2:4], torch.zeros(1, 2, dtype=f64))
    assert torch.allclose(x, torch.tensor([[1.5e3, 1.75e3, 0.0, 0.0, -1.0]], dtype=f64), rtol=1e-12, atol=0)
    # also when decays > 1 follow the zero (they would lift a clamped log 0 back up)
    a = torch.tensor([[0.0] + [4.0] * 30], dtype=f64)
    x = linear_scan(a, torch.zeros(1, 31, dtype=f64), torch.tensor([1e300], dtype=f64), method=method)
    assert torch.equal(x, torch.zeros_like(x))


@pytest.mark.parametrize("method", ALL)
def test_scan_step_matches(method):
    g = torch.Generator().manual_seed(2)
    a = decays((2, 9, 3, 1), gen=g)
    b = torch.randn(2, 9, 3, 5, generator=g, dtype=torch.float64)
    x0 = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    x = linear_scan(a, b, x0, method=method)
    state = x0
    for t in range(9):
        state = scan_step(a[:, t], b[:, t], state)
        assert torch.allclose(x[:, t], state, rtol=1e-12, atol=1e-12)
    assert torch.equal(scan_step(a[:, 0], b[:, 0], None), b[:, 0])


@pytest.mark.parametrize("method", ["sequential", "log"])
def test_zero_then_huge_growth(method):
    # prefix products after a zero are 0 exactly, even when the later decays would lift a
    # clamped log 0 back above the underflow ("parallel" overflows here: inf * 0)
    f64 = torch.float64
    a = torch.tensor([[0.0] + [1e30] * 40], dtype=f64)
    x = linear_scan(a, torch.zeros(1, 41, dtype=f64), torch.tensor([1.0], dtype=f64), method=method)
    assert torch.equal(x, torch.zeros_like(x))


# ---------------------------------------------------------------- against the loop


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("kind", ["real", "complex", "real_a_complex_b"])
@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 65, 200])
def test_matches_reference_float64(method, kind, T):
    g = torch.Generator().manual_seed(T)
    a = decays((2, T, 3, 1), complex_=kind == "complex", gen=g)
    dt = torch.float64 if kind == "real" else torch.complex128
    b = torch.randn(2, T, 3, 4, generator=g, dtype=dt)
    x0 = torch.randn(2, 3, 4, generator=g, dtype=dt)
    check_against_reference(method, a, b, x0, rtol=1e-10, chunk_size=16, gen=g)


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_matches_reference_long_float32(method, dtype):
    # T = 4096 with strong decays: A*_t reaches about -4000, exp(-A*) would overflow.
    g = torch.Generator().manual_seed(3)
    T = 4096
    a = decays((2, T, 3), torch.float32, complex_=dtype.is_complex, gen=g)
    a = torch.where(torch.rand(2, T, 3, generator=g) < 0.2, 1 - 1e-6 * torch.rand(2, T, 3, generator=g), a)
    b = torch.randn(2, T, 3, generator=g, dtype=dtype)
    x0 = 5 * torch.randn(2, 3, generator=g, dtype=dtype)
    check_against_reference(method, a, b, x0, rtol=1e-4, gen=g)


@pytest.mark.parametrize("method", ALL)
def test_no_x0_and_broadcast_x0(method):
    g = torch.Generator().manual_seed(4)
    a = decays((2, 33, 3, 1), gen=g)
    b = torch.randn(2, 33, 3, 4, generator=g, dtype=torch.float64)
    check_against_reference(method, a, b, None, rtol=1e-10, chunk_size=8, gen=g)
    x0 = torch.randn(3, 1, dtype=torch.float64, generator=g)  # broadcast over batch and W
    x = linear_scan(a, b, x0, method=method, chunk_size=8)
    assert torch.allclose(x, reference(a, b, x0.expand(2, 3, 4)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ALL)
def test_other_dims(method):
    g = torch.Generator().manual_seed(5)
    # time first
    a = decays((40, 2, 3), gen=g)
    b = torch.randn(40, 2, 3, generator=g, dtype=torch.float64)
    check_against_reference(method, a, b, torch.randn(2, 3, generator=g, dtype=torch.float64),
                            rtol=1e-10, dim=0, chunk_size=8, gen=g)
    # time last, complex
    a = decays((2, 3, 40), complex_=True, gen=g)
    b = torch.randn(2, 3, 40, generator=g, dtype=torch.complex128)
    check_against_reference(method, a, b, torch.randn(2, 3, generator=g, dtype=torch.complex128),
                            rtol=1e-10, dim=-1, chunk_size=8, gen=g)
    # a with fewer dims than b (left-padded), negative dim
    a = decays((40, 3, 1), gen=g)
    b = torch.randn(2, 40, 3, 4, generator=g, dtype=torch.float64)
    x = linear_scan(a, b, dim=-3, method=method, chunk_size=8)
    assert torch.allclose(x, reference(a.expand(2, 40, 3, 4), b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["chunked", "log"])
@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64, 1000])
def test_chunk_sizes(method, chunk_size):
    g = torch.Generator().manual_seed(chunk_size)
    a = decays((2, 37, 3), complex_=True, gen=g)
    b = torch.randn(2, 37, 3, generator=g, dtype=torch.complex128)
    x0 = torch.randn(2, 3, generator=g, dtype=torch.complex128)
    check_against_reference(method, a, b, x0, rtol=1e-10, chunk_size=chunk_size, gen=g)


@pytest.mark.parametrize("method", ALL)
def test_inputs_not_modified(method):
    a = torch.rand(2, 10, 3)
    b = torch.randn(2, 10, 3)
    x0 = torch.randn(2, 3)
    copies = [t.clone() for t in (a, b, x0)]
    linear_scan(a, b, x0, method=method, chunk_size=1)
    linear_scan(a, b, x0, method=method, chunk_size=4)
    for t, c in zip((a, b, x0), copies):
        assert torch.equal(t, c)


def test_dtype_promotion_and_errors():
    a = torch.rand(2, 5, 3)
    b = torch.randn(2, 5, 3, dtype=torch.complex64)
    assert linear_scan(a, b).dtype == torch.complex64
    assert linear_scan(a, b.real, torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64
    assert linear_scan(a, torch.randn(2, 5, 3, dtype=torch.complex128)).dtype == torch.complex128
    empty = [t[:, :0].clone().requires_grad_() for t in (a, b)]
    x = linear_scan(*empty, torch.zeros(2, 3, requires_grad=True))
    assert x.shape == (2, 0, 3)
    x.abs().sum().backward()
    with pytest.raises(ValueError):
        linear_scan(a, b, method="nope")
    with pytest.raises(ValueError):
        linear_scan(a[:, :4], b)


# ---------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradcheck(method, dtype):
    g = torch.Generator().manual_seed(6)
    # gradcheck perturbs a by 1e-6, so keep it away from 0 here (zeros are covered above).
    a = decays((2, 7, 2, 1), complex_=dtype.is_complex, special=False, gen=g) * 0.9 + 0.05
    b = torch.randn(2, 7, 2, 3, generator=g, dtype=dtype)
    x0 = torch.randn(2, 2, 3, generator=g, dtype=dtype)
    inputs = tuple(t.requires_grad_() for t in (a, b, x0))

    def fn(a, b, x0):
        return linear_scan(a, b, x0, method=method, chunk_size=3)

    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_mixed_real_a_complex_b(method):
    g = torch.Generator().manual_seed(7)
    a = (torch.rand(2, 6, 3, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    b = torch.randn(2, 6, 3, generator=g, dtype=torch.complex128).requires_grad_()
    assert gradcheck(lambda a, b: linear_scan(a, b, method=method, chunk_size=4), (a, b))


# ---------------------------------------------------------------- long sequences stay finite


@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_finite_at_T_10000(method, dtype):
    g = torch.Generator().manual_seed(8)
    T = 10_000
    a = decays((1, T, 4), torch.float32, complex_=dtype.is_complex, gen=g)
    near_one = 1 - 10 ** (-1 - 6 * torch.rand(1, T, 4, generator=g))  # 0.9 .. 1 - 1e-7
    a = torch.where(torch.rand(1, T, 4, generator=g) < 0.3, near_one.to(a.dtype), a)
    a = a.requires_grad_()
    b = torch.randn(1, T, 4, generator=g, dtype=dtype, requires_grad=True)
    x0 = torch.randn(1, 4, generator=g, dtype=dtype, requires_grad=True)
    x = linear_scan(a, b, x0, method=method)
    assert torch.isfinite(x).all()
    (x.conj() * x).real.sum().backward()
    for t in (a, b, x0):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("method", ALL)
def test_log_pitfalls(method):
    g = torch.Generator().manual_seed(9)
    T = 500
    # all decays 0, 1, or tiny; b exactly 0 in places and negative
    a = decays((2, T, 3), gen=g)
    a = torch.where(torch.rand(2, T, 3, generator=g) < 0.1, 1e-30, a)
    b = torch.randn(2, T, 3, generator=g, dtype=torch.float64)
    b = torch.where(torch.rand(2, T, 3, generator=g) < 0.2, 0.0, b)
    check_against_reference(method, a, b, 100 * torch.randn(2, 3, generator=g, dtype=torch.float64),
                            rtol=1e-10, gen=g)
    # all zeros in b and x0: exactly zero out, zero (finite) gradients for a
    a = decays((1, T, 2), gen=g).requires_grad_()
    x = linear_scan(a, torch.zeros(1, T, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                    method=method)
    assert torch.equal(x, torch.zeros_like(x))
    x.sum().backward()
    assert torch.equal(a.grad, torch.zeros_like(a))
    # decay exactly 1 everywhere: a running sum on top of x0
    b = torch.randn(1, T, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(1, 2, generator=g, dtype=torch.float64)
    x = linear_scan(torch.ones(1, T, 2, dtype=torch.float64), b, x0, method=method)
    assert torch.allclose(x, x0[:, None] + b.cumsum(1), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- property test


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    T=st.integers(1, 70),
    method=st.sampled_from(ALL),
    kind=st.sampled_from(["real", "complex", "mixed"]),
)
def test_property_random_shapes(data, T, method, kind):
    ndim = data.draw(st.integers(1, 4), label="ndim")
    shape = data.draw(st.lists(st.integers(1, 3), min_size=ndim, max_size=ndim), label="shape")
    dim = data.draw(st.integers(-ndim, ndim - 1), label="dim")
    shape[dim] = T
    a_shape = [s if i == dim % ndim or data.draw(st.booleans()) else 1 for i, s in enumerate(shape)]
    chunk = data.draw(st.sampled_from([None, 1, 3, 8]), label="chunk")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64 if kind == "real" else torch.complex128
    a = decays(a_shape, complex_=kind == "complex", gen=g)
    b = torch.randn(shape, generator=g, dtype=dt)
    state = shape[: dim % ndim] + shape[dim % ndim + 1 :]
    x0 = torch.randn(state, generator=g, dtype=dt) if data.draw(st.booleans()) else None
    check_against_reference(method, a, b, x0, rtol=1e-10, dim=dim, chunk_size=chunk, gen=g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", ALL)
@pytest.mark.parametrize("complex_", [False, True])
def test_every_method_on_cuda_matches_the_cpu_loop(method, complex_):
    """Forward and backward on the GPU against the float64 loop on the CPU, at T = 1000 with
    decays of exactly 0 and 1 mixed in."""
    gen = torch.Generator().manual_seed(7)
    shape = (2, 1000, 3, 5)
    a = decays(shape, torch.float32, complex_=complex_, gen=gen)
    b = torch.randn(shape, generator=gen, dtype=a.dtype)
    x0 = torch.randn((2, 3, 5), generator=gen, dtype=a.dtype)
    gout = torch.randn(shape, generator=gen, dtype=a.dtype)
    out_ref, grads_ref = grads(reference, [wide(a), wide(b), wide(x0)], wide(gout))
    cuda = [t.cuda() for t in (a, b, x0)]
    out, grads_cuda = grads(lambda *x: linear_scan(*x, method=method), cuda, gout.cuda())
    assert_close(out.cpu(), out_ref, 1e-4)
    for g, g_ref in zip(grads_cuda, grads_ref):
        assert_close(g.cpu(), g_ref, 1e-4)
