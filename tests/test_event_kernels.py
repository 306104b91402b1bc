"""The fused CPU kernels of the write-event path (pntm.ops.event_kernels) against the eager code
they replace: every query, every counterfactual sum, and ``event_read``'s outputs and gradients
end to end, at long lengths, with overwrites, stays, jumps, reads before the write, several read
heads and float64; the fallback to the eager code when the kernels cannot be built."""

import warnings

import pytest
import torch

from helpers import one_hot_moves, random_case
from pntm.ops import event_kernels
from pntm.ops.hard_heads import _segment_ends, head_positions, other_start
from pntm.ops.write_event_grads import _counterfactual, _ReadHeadGradient, _WriteHeadGradient
from pntm.ops.write_event_list import _Events
from pntm.ops.write_events import event_read


def test_the_kernels_build_here():
    """CI's machine has a compiler: the fast path must not be silently the eager one."""
    assert event_kernels.kernels() is not None


def heads_of(case, cells, K, before, dtype):
    """The event list of a random case and its two head gradients (after the reverse scan)."""
    shift, jump, erase, add, table = [x.detach().to(dtype) for x in case]
    choice, jumped = shift.argmax(-1), jump > 0.5
    cell = torch.remainder(head_positions(choice - K, jumped), cells)
    B, T, heads = cell.shape
    events = _Events(cell[..., 0], cell[..., 1:], erase, add, 0.1, before)
    g = torch.Generator().manual_seed(3)
    grad_contents = torch.randn(B, T, heads - 1, erase.shape[-1], generator=g, dtype=dtype)
    grad_tags = torch.randn(B, T, heads - 1, table.shape[-1], generator=g, dtype=dtype)
    events.backward(grad_contents, erase)
    reads = _ReadHeadGradient(events, grad_contents, grad_tags, table)
    writes = _WriteHeadGradient(events, erase, add)
    return reads, writes, cell, choice, jumped


CASES = [  # B, T, H, K, jump rate, reads before the write
    (2, 1, 1, 1, 0.5, [False]),
    (2, 70, 2, 1, 0.2, [False, True]),
    (1, 300, 3, 2, 0.05, [True, False, True]),
    (2, 60, 1, 1, 1.0, [True]),       # a jump at every step
    (1, 1000, 1, 1, 0.0, [False]),    # long, never a jump
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,T,H,K,jump_rate,before", CASES)
def test_queries_equal_the_eager_code(B, T, H, K, jump_rate, before, dtype):
    """G at any (t, y): cells of the heads' own paths and next to them, cells never written
    or not yet written, and every cell of the memory."""
    cells = K * T + 7
    reads, writes, cell, _, _ = heads_of(random_case(B, T, H, K, 3, seed=T, jump_rate=jump_rate),
                                         cells, K, torch.tensor(before), dtype)
    g = torch.Generator().manual_seed(T)
    for head, own in [(writes, cell[..., :1]), (reads, cell[..., 1:])]:
        near = torch.remainder(own[..., None] + torch.arange(-2 * K, 2 * K + 1), cells)
        anywhere = torch.randint(0, cells, (*own.shape, 9), generator=g)
        for y in [near, anywhere, own]:
            fast = head.at(y)
            assert fast.shape == y.shape and fast.dtype == dtype
            torch.testing.assert_close(fast, head.eager_at(y), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("horizon", [1, 5, 16, None])
@pytest.mark.parametrize("B,T,H,K,jump_rate,before", CASES)
def test_counterfactual_sums_equal_the_eager_code(B, T, H, K, jump_rate, before, horizon,
                                                  monkeypatch):
    """Σ over the horizon (cut at the next jump and at the end) of G at the other choice's
    path, against ``_counterfactual`` over every offset in eager code."""
    cells = K * T + 7
    reads, writes, cell, choice, jumped = heads_of(
        random_case(B, T, H, K, 3, seed=T + 1, jump_rate=jump_rate), cells, K,
        torch.tensor(before), torch.float64)
    steps = torch.arange(T).view(1, T, 1)
    for head, part in [(writes, slice(0, 1)), (reads, slice(1, None))]:
        c, ch, j = cell[..., part], choice[..., part], jumped[..., part]
        other = other_start(c, ch, j, K, cells)
        end = torch.minimum(_segment_ends(j), steps + (T if horizon is None else horizon))
        fast = head.counterfactual(other, c, end, cells)
        with monkeypatch.context() as m:
            m.setenv("PNTM_KERNELS", "0")
            slow = _counterfactual(head, other, c, end, torch.arange(T), cells)
        torch.testing.assert_close(fast, slow, atol=1e-9, rtol=1e-9)


def read_with_gradients(inputs, cells, horizon, before):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = event_read(*leaves, 0.1, cells, horizon, before)
    g = torch.Generator().manual_seed(7)
    torch.autograd.backward(out, [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in out])
    return [*out, *[x.grad for x in leaves]]


@pytest.mark.parametrize("horizon", [16, None])
@pytest.mark.parametrize("B,T,H,K,jump_rate,before", CASES[1:])
def test_event_read_with_and_without_kernels(B, T, H, K, jump_rate, before, horizon,
                                             monkeypatch):
    """Contents, tags and the gradients of shifts, jumps, erase, add and the tag table."""
    inputs = random_case(B, T, H, K, 4, seed=T + 2, jump_rate=jump_rate)
    args = (inputs, K * T + 7, horizon, torch.tensor(before))
    fast = read_with_gradients(*args)
    monkeypatch.setenv("PNTM_KERNELS", "0")
    slow = read_with_gradients(*args)
    names = ["contents", "tags", "shift", "jump", "erase", "add", "table"]
    for name, a, b in zip(names, fast, slow):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, atol=2e-6, rtol=0, msg=name)


def test_extreme_values_stay_equal(monkeypatch):
    """Adds of 1e6 and 1e-6, erase exactly 0 and 1, a head that stays on one cell."""
    T, K = 200, 1
    inputs = random_case(1, T, 2, K, 3, seed=9, jump_rate=0.02)
    inputs[3] = (inputs[3].detach() * torch.logspace(-6, 6, T)[None, :, None]).requires_grad_()
    moves = inputs[0].argmax(-1) - K
    moves[0, 50:120, 0] = 0
    inputs[0] = one_hot_moves(moves, K)
    fast = read_with_gradients(inputs, K * T + 7, 16, None)
    monkeypatch.setenv("PNTM_KERNELS", "0")
    slow = read_with_gradients(inputs, K * T + 7, 16, None)
    for a, b in zip(fast, slow):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, atol=1e-6, rtol=0)


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("PNTM_KERNELS", "0")
    assert event_kernels.kernels() is None
    assert event_kernels.for_tensor(torch.zeros(1)) is None


def test_a_failed_build_warns_once_and_falls_back_to_the_eager_code(monkeypatch):
    def no_compiler(**_):
        raise RuntimeError("no C++ compiler found\nmore lines")

    monkeypatch.setattr(event_kernels, "_loaded", None)
    monkeypatch.setattr(event_kernels, "_failed", False)
    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    inputs = random_case(1, 30, 1, 1, 3, seed=0, jump_rate=0.1)
    with pytest.warns(RuntimeWarning, match="could not be built .*no C\\+\\+ compiler found"):
        fallback = read_with_gradients(inputs, 37, 16, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        assert event_kernels.kernels() is None
    assert event_kernels.state() == "failed"
    monkeypatch.setenv("PNTM_KERNELS", "0")
    eager = read_with_gradients(inputs, 37, 16, None)
    for a, b in zip(fallback, eager):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_a_lock_left_by_a_killed_build_is_removed(tmp_path):
    """torch waits forever on the lock file of a build that was killed; one older than
    STALE_LOCK_SECONDS is removed, a fresh one (a build under way) is kept."""
    lock = tmp_path / "lock"
    lock.write_text("")
    assert not event_kernels.clear_stale_lock(tmp_path)
    assert lock.exists()
    later = lock.stat().st_mtime + event_kernels.STALE_LOCK_SECONDS + 1
    assert event_kernels.clear_stale_lock(tmp_path, now=later)
    assert not lock.exists()
    assert not event_kernels.clear_stale_lock(tmp_path)  # none: nothing to do


def test_the_build_folder_names_python_and_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder = event_kernels.build_directory()
    assert folder.parent == tmp_path and torch.__version__ in folder.name


def test_threads_split_the_queries_without_changing_a_bit():
    """The kernels split (b, t) over torch's threads; each output is summed by one thread in
    one order, so two threads give the same bits as one."""
    inputs = random_case(4, 300, 2, 1, 3, seed=11, jump_rate=0.05)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = read_with_gradients(inputs, 307, 16, None)
        torch.set_num_threads(2)
        two = read_with_gradients(inputs, 307, 16, None)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_no_query_asks_nothing():
    """An empty query tensor (no cells asked) returns an empty answer, not a division by zero."""
    reads, writes, cell, _, _ = heads_of(random_case(1, 5, 1, 1, 3, seed=0, jump_rate=0.0), 12,
                                         1, torch.tensor([False]), torch.float32)
    for head, own in [(writes, cell[..., :1]), (reads, cell[..., 1:])]:
        for empty in [own[..., None][..., :0], own[:, :, :0]]:  # no cell asked; no head
            assert head.at(empty).shape == empty.shape
