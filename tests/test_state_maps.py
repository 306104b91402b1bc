"""Finite-state heads' scans (pntm.ops.state_maps) against their loops and hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F

from pntm.models.state_heads import StateHeads
from pntm.ops.state_maps import (adjoint_scan, compose_prefix, hard_state_path, hard_states,
                             hard_states_reference, soft_states, soft_states_reference)


def multiply_mod5(factor: int) -> list[int]:
    """The map ``i -> factor * i mod 5`` on states 0..4."""
    return [(factor * i) % 5 for i in range(5)]


def test_hand_case_product_mod_5():
    # states are residues mod 5; the head starts on 1 (the empty product) and each token
    # multiplies: 1 ->2-> 2 ->3-> 1 ->4-> 4 ->0-> 0 ->3-> 0
    maps = torch.tensor([multiply_mod5(k) for k in (2, 3, 4, 0, 3)])[None, :, None]
    assert hard_states(maps, start=1)[0, :, 0].tolist() == [2, 1, 4, 0, 0]
    assert hard_states_reference(maps, start=1)[0, :, 0].tolist() == [2, 1, 4, 0, 0]


def test_non_commuting_maps_keep_their_order():
    # swap(0,1) then cycle(0->1->2->0), against the reverse order: different states
    swap, cycle = [1, 0, 2], [1, 2, 0]
    ab = torch.tensor([swap, cycle])[None, :, None]
    ba = torch.tensor([cycle, swap])[None, :, None]
    # from 0: swap -> 1, cycle -> 2;   cycle -> 1, swap -> 0
    assert hard_states(ab)[0, :, 0].tolist() == [1, 2]
    assert hard_states(ba)[0, :, 0].tolist() == [1, 0]
    # the prefix compositions as whole tables: F_2 = cycle ∘ swap maps 0->2, 1->1, 2->0
    assert compose_prefix(ab)[0, 1, 0].tolist() == [2, 1, 0]


@pytest.mark.parametrize("T", [1, 2, 3, 17, 64, 1000])
def test_hard_scan_equals_loop(T):
    g = torch.Generator().manual_seed(T)
    maps = torch.randint(0, 7, (3, T, 2, 7), generator=g)
    assert torch.equal(hard_states(maps, 3), hard_states_reference(maps, 3))


def straight_through_reference(matrices: torch.Tensor, start: int) -> torch.Tensor:
    """The soft loop run on one-hot matrices, with the gradient of the soft matrices."""
    hard = F.one_hot(matrices.argmax(-1), matrices.shape[-1]).to(matrices)
    return soft_states_reference(hard + (matrices - matrices.detach()), start)


@pytest.mark.parametrize("T", [1, 2, 5, 33, 300])
def test_hard_path_gradient_is_the_soft_recurrence_at_one_hot_matrices(T):
    g = torch.Generator().manual_seed(100 + T)
    S = 5
    logits = torch.randn(2, T, 3, S, S, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, T, 3, S, generator=g, dtype=torch.float64)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    out_a = hard_state_path(a.softmax(-1), start=2)
    out_b = straight_through_reference(b.softmax(-1), start=2)
    assert torch.equal(out_a, out_b)
    (out_a * upstream).sum().backward()
    (out_b * upstream).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_adjoint_by_hand():
    # two states, T = 3, maps: swap, stay, swap; gradients g_t
    swap, stay = [1, 0], [0, 1]
    maps = torch.tensor([swap, stay, swap])[None, :, None]
    grad = torch.tensor([[1.0, 2.0], [10.0, 20.0], [100.0, 200.0]])[None, :, None]
    # λ_3 = g_3 = [100, 200]; λ_2[i] = g_2[i] + λ_3[swap(i)] = [10+200, 20+100]
    # λ_1[i] = g_1[i] + λ_2[stay(i)] = [1+210, 2+120]
    lam = adjoint_scan(maps, grad)[0, :, 0]
    assert lam.tolist() == [[211.0, 122.0], [210.0, 120.0], [100.0, 200.0]]


@pytest.mark.parametrize("T", [1, 4, 31, 200])
def test_soft_scan_equals_loop_forward_and_backward(T):
    g = torch.Generator().manual_seed(7 * T)
    logits = torch.randn(2, T, 2, 4, 4, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, T, 2, 4, generator=g, dtype=torch.float64)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    pa, pb = soft_states(a.softmax(-1), 1), soft_states_reference(b.softmax(-1), 1)
    torch.testing.assert_close(pa, pb)
    torch.testing.assert_close(pa.sum(-1), torch.ones_like(pa[..., 0]))  # still distributions
    (pa * upstream).sum().backward()
    (pb * upstream).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_extreme_logits_stay_finite():
    logits = torch.randn(1, 500, 1, 6, 6) * 1e4
    logits.requires_grad_()
    soft_states(logits.softmax(-1)).sum().backward()
    assert torch.isfinite(logits.grad).all()
    hard = logits.detach().clone().requires_grad_()
    (hard_state_path(hard.softmax(-1)) * torch.randn(1, 500, 1, 6)).sum().backward()
    assert torch.isfinite(hard.grad).all()


def test_affine_states_by_hand():
    # one state pair, swap then stay; offsets add 1 to state 0 at step 1 and 2 to state 1 at 2
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    stay = torch.eye(2)
    M = torch.stack([swap, stay])[None, :, None]
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]])[None, :, None]
    # x_0 = [1, 0]; x_1 = [0, 1] + [1, 0] = [1, 1]; x_2 = [1, 1] + [0, 2] = [1, 3]
    from pntm.ops.state_maps import affine_states, affine_states_reference
    assert affine_states(M, c)[0, :, 0].tolist() == [[1.0, 1.0], [1.0, 3.0]]
    assert affine_states_reference(M, c)[0, :, 0].tolist() == [[1.0, 1.0], [1.0, 3.0]]


@pytest.mark.parametrize("T", [1, 3, 40, 129])
def test_affine_scan_equals_loop_forward_and_backward(T):
    from pntm.ops.state_maps import affine_states, affine_states_reference
    g = torch.Generator().manual_seed(11 * T)
    logits = torch.randn(2, T, 2, 5, 5, generator=g, dtype=torch.float64)
    decay = torch.rand(2, T, 2, 5, 1, generator=g, dtype=torch.float64)
    offsets = torch.randn(2, T, 2, 5, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, T, 2, 5, generator=g, dtype=torch.float64)
    grads = []
    for fn in (affine_states, affine_states_reference):
        a, c = logits.clone().requires_grad_(), offsets.clone().requires_grad_()
        out = fn(decay * a.softmax(-1), c, 3)
        (out * upstream).sum().backward()
        grads.append((out.detach(), a.grad, c.grad))
    for x, y in zip(*grads):
        torch.testing.assert_close(x, y)


def _scaled_hard(logits, decay):
    """Straight-through hard maps times a decay per state: one nonzero per row."""
    soft = logits.softmax(-1)
    one_hot = torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft)
    return decay[..., None] * (one_hot + soft - soft.detach())


def test_scaled_map_states_by_hand():
    # two states; step 1 swaps with scales [0.5, 2], step 2 sends both to state 1 with [3, 1]
    from pntm.ops.state_maps import scaled_map_states
    M = torch.tensor([[[0.0, 0.5], [2.0, 0.0]], [[0.0, 3.0], [0.0, 1.0]]])[None, :, None]
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]])[None, :, None]
    # x_0 = [1, 0]; x_1 = [0, 0.5] + [1, 0] = [1, 0.5]; x_2 = [0, 3 + 0.5] + [0, 2] = [0, 5.5]
    assert scaled_map_states(M, c)[0, :, 0].tolist() == [[1.0, 0.5], [0.0, 5.5]]
    # from state 1: x_1 = [2, 0] + [1, 0] = [3, 0]; x_2 = [0, 9] + [0, 2] = [0, 11]
    assert scaled_map_states(M, c, 1)[0, :, 0].tolist() == [[3.0, 0.0], [0.0, 11.0]]


@pytest.mark.parametrize("T", [1, 2, 3, 40, 129, 1000])
@pytest.mark.parametrize("path, spread", [("scaled", 1.0), ("logits", 1.0), ("logits", 60.0)])
def test_valued_hard_scans_equal_the_loop_forward_and_backward(T, path, spread):
    # the O(S) scans of valued hard heads against the dense loop over the straight-through
    # matrices: states and the gradients with respect to the map logits, the scales and the
    # offsets, from two start states. "scaled": scaled_map_states over those matrices;
    # "logits": logit_map_states from the logits (softmax Jacobian in closed form); spread 60
    # saturates the softmax
    from pntm.ops.state_maps import affine_states_reference, logit_map_states, scaled_map_states
    fast = {"scaled": lambda a, d, c, s: scaled_map_states(_scaled_hard(a, d), c, s),
            "logits": logit_map_states}[path]
    g = torch.Generator().manual_seed(7 * T)
    S = 6
    logits = spread * torch.randn(2, T, 3, S, S, generator=g, dtype=torch.float64)
    scales = torch.rand(2, T, 3, S, generator=g, dtype=torch.float64) * 0.3 + 0.75
    offsets = torch.randn(2, T, 3, S, generator=g, dtype=torch.float64)
    upstream = torch.randn(2, T, 3, S, generator=g, dtype=torch.float64)
    for start in (0, 4):
        grads = []
        for fn in (fast, lambda a, d, c, s: affine_states_reference(_scaled_hard(a, d), c, s)):
            a, d, c = (x.clone().requires_grad_() for x in (logits, scales, offsets))
            out = fn(a, d, c, start)
            (out * upstream).sum().backward()
            grads.append((out.detach(), a.grad, d.grad, c.grad))
        for x, y in zip(*grads):
            torch.testing.assert_close(x, y)


def test_logit_map_states_by_hand():
    # two states, one step from state 0 with logits [[0, log 3], [0, 0]]: f(0) = 1, P[0] =
    # [1/4, 3/4]; scale 2 on state 0, offsets 0: x_1 = [0, 2]. With upstream [0, 1] (y = [0, 1]
    # at the last step), ∂L/∂logits[0, j] = d x_0 P[0, j] (y_j - P[0]·y) = 2 [1/4 (0 - 3/4),
    # 3/4 (1 - 3/4)] = [-3/8, 3/8]; row 1 gets nothing (x_0[1] = 0); ∂L/∂d[0] = x_0 y[f(0)] = 1
    from pntm.ops.state_maps import logit_map_states
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]], dtype=torch.float64)
    logits = logits[None, None, None].requires_grad_()
    scales = torch.tensor([2.0, 1.0], dtype=torch.float64)[None, None, None].requires_grad_()
    offsets = torch.zeros(1, 1, 1, 2, dtype=torch.float64, requires_grad=True)
    out = logit_map_states(logits, scales, offsets)
    assert out[0, 0, 0].tolist() == [0.0, 2.0]
    (out * torch.tensor([0.0, 1.0], dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(logits.grad[0, 0, 0],
                               torch.tensor([[-0.375, 0.375], [0.0, 0.0]], dtype=torch.float64))
    assert scales.grad[0, 0, 0].tolist() == [1.0, 0.0]
    assert offsets.grad[0, 0, 0].tolist() == [0.0, 1.0]


def test_scaled_map_states_extreme_scales_and_exact_automaton():
    # scale 1 and no offsets (the annealed head at evaluation): the one-hot automaton exactly,
    # over 2,000 steps; tiny and large scales stay finite and match the loop
    from pntm.ops.state_maps import affine_states_reference, hard_states, scaled_map_states
    g = torch.Generator().manual_seed(3)
    maps = torch.randint(0, 5, (2, 2000, 2, 5), generator=g)
    ones = torch.nn.functional.one_hot(maps, 5).double()
    states = scaled_map_states(ones, torch.zeros(2, 2000, 2, 5, dtype=torch.float64))
    assert torch.equal(states, torch.nn.functional.one_hot(hard_states(maps), 5).double())
    for scale in (1e-6, 1.5):
        M = ones[:, :60] * scale
        c = torch.randn(2, 60, 2, 5, generator=g, dtype=torch.float64)
        out = scaled_map_states(M, c)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, affine_states_reference(M, c))


@pytest.mark.parametrize("rank", [0, 3])  # full maps, and low-rank maps (state_rank)
def test_valued_state_heads_take_the_scaled_path_with_the_dense_gradients(rank):
    # the module's hard valued heads: the O(S) scan equals the dense scan it replaced, forward
    # and backward, for every parameter
    from pntm.models.state_heads import StateHeads
    from pntm.ops.state_maps import affine_states
    torch.manual_seed(0)
    heads = StateHeads(d_ff=12, heads=2, states=8, width=4, stay_bias=2.0, values=True,
                       anneal=(0.3, 0.6), rank=rank).double()
    heads.set_training_progress(0.45)  # halfway through the anneal: decays and inputs both live
    h = torch.randn(3, 50, 12, dtype=torch.float64)
    results = []
    for dense in (False, True):
        heads.zero_grad()
        states = affine_states(*heads.affine(h, True)) if dense else heads(h, hard=True)
        (heads.read(states) ** 2).sum().backward()
        results.append([states.detach()] + [p.grad.clone() for p in heads.parameters()
                                            if p.grad is not None])
    for x, y in zip(*results):
        torch.testing.assert_close(x, y)


def test_hard_every_trains_the_exact_automaton_on_its_steps():
    # state_hard_every: λ = 0 on the steps k divides, the schedule's λ on the others; on a
    # λ = 0 step the valued head's states are the one-hot states of its hard maps
    from pntm.models.state_heads import StateHeads
    torch.manual_seed(0)
    heads = StateHeads(d_ff=12, heads=2, states=8, width=4, stay_bias=2.0, values=True,
                       anneal=(0.3, 0.6), hard_every=3)
    h = torch.randn(2, 40, 12)
    weights = []
    for step in range(1, 7):
        heads.set_training_progress(0.1, step)
        weights.append(heads.weight())
    assert weights == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    heads.set_training_progress(0.45, 4)
    assert heads.weight() == pytest.approx(0.5)
    heads.set_training_progress(0.45, 6)
    assert heads.weight() == 0.0
    states = heads(h, hard=True)
    maps = heads.logits(h).argmax(-1)
    torch.testing.assert_close(states, torch.nn.functional.one_hot(hard_states(maps), 8).float())
    heads.set_training_progress(0.45)  # no step given (a caller without steps): the schedule
    assert heads.weight() == pytest.approx(0.5)
    # without an anneal the values are on at every other step (λ = 1), not only until the first
    # step without them
    unannealed = StateHeads(d_ff=12, heads=2, states=8, width=4, stay_bias=2.0, values=True,
                            hard_every=2)
    seen = []
    for step in range(1, 6):
        unannealed.set_training_progress(step / 5, step)
        seen.append(unannealed.weight())
    assert seen == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_a_reset_sends_every_state_to_one_and_starts_as_no_reset():
    # state_resets: a score per target shared by all rows; zero at the start, and a large one
    # is a constant map, whatever the state before
    from pntm.models.state_heads import StateHeads
    torch.manual_seed(0)
    heads = StateHeads(d_ff=6, heads=1, states=5, width=3, stay_bias=2.0, resets=True)
    h = torch.randn(2, 9, 6)
    base = heads.to_maps(h).unflatten(-1, (1, 5, 5))
    torch.testing.assert_close(heads.logits(h), base)  # starts as a head without resets
    with torch.no_grad():
        heads.to_reset.weight[3, 0] = 100.0  # input feature 0 scores target state 3
    h[:, :, 0] = 0.0
    h[:, 4, 0] = 1.0                         # token 4 resets
    maps = heads.logits(h).argmax(-1)
    assert (maps[:, 4] == 3).all()           # every row goes to 3
    states = hard_states(maps)
    assert (states[:, 4] == 3).all()
    # after the reset the run does not depend on what came before it
    h2 = h.clone()
    h2[:, :4, 1:] = torch.randn(2, 4, 5)
    torch.testing.assert_close(hard_states(heads.logits(h2).argmax(-1))[:, 4:], states[:, 4:])


def test_hard_forward_runs_the_exact_automaton_with_the_values_gradient():
    # state_hard_forward: while λ > 0 the states are the one-hot automaton's, and every
    # parameter's gradient is the one the valued states would give
    from pntm.models.state_heads import StateHeads
    torch.manual_seed(0)
    kwargs = dict(d_ff=10, heads=2, states=6, width=4, stay_bias=1.0, values=True,
                  anneal=(0.3, 0.6))
    plain, surrogate = StateHeads(**kwargs), StateHeads(**kwargs, hard_forward=True)
    surrogate.load_state_dict(plain.state_dict())
    h = torch.randn(3, 30, 10)
    target = torch.randn(3, 30, 2, 4)
    grads = []
    for heads in (plain, surrogate):
        heads.set_training_progress(0.45)  # λ = 1/2: decays and inputs both live
        heads.zero_grad()
        states = heads(h, hard=True)
        (heads.read(states) * target).sum().backward()
        grads.append({n: p.grad.clone() for n, p in heads.named_parameters() if p.grad is not None})
    exact = F.one_hot(hard_states(surrogate.logits(h).argmax(-1)), 6).float()
    assert torch.equal(surrogate(h, hard=True).detach(), exact)
    assert not torch.equal(plain(h, hard=True).detach(), exact)  # the values are really on
    assert grads[0].keys() == grads[1].keys() and "to_values.weight" in grads[1]
    for name in grads[0]:
        if name != "embedding":  # the readout's gradient sees the states it reads
            torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)
    surrogate.set_training_progress(0.8)  # λ = 0: the plain path
    torch.testing.assert_close(surrogate(h, hard=True), exact)


def test_exact_automaton_step_takes_the_argmax_of_the_current_states_row():
    """Valued heads at λ = 0 (evaluation with an anneal) step a one-hot state by the argmax of
    its row of map logits alone: the same states as the S x S product of the general step,
    on random maps and states."""
    torch.manual_seed(0)
    heads = StateHeads(16, heads=3, states=6, width=4, stay_bias=0.0, values=True,
                       anneal=(0.2, 0.6)).eval()
    h = 3 * torch.randn(50, 1, 16)
    previous = F.one_hot(torch.randint(0, 6, (50, 3)), 6).float()
    fast = heads.step(h, previous, hard=True)
    logits = heads.logits(h)[:, 0]
    want = logits[torch.arange(50)[:, None], torch.arange(3), previous.argmax(-1)].argmax(-1)
    assert torch.equal(fast[:, 0].argmax(-1), want)
    matrices, inputs = heads.affine(h, True)
    general = ((previous[..., None, :] @ matrices[:, 0])[..., 0, :] + inputs[:, 0])[:, None]
    torch.testing.assert_close(fast, general)
    assert len(set(want.flatten().tolist())) > 1  # the maps do move the states
