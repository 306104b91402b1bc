"""The position path of hard heads (pntm.ops.hard_heads) against the Fourier reference: positions by
hand, forward and straight-through gradients equal at long lengths with no, some and only jumps,
the jump gradient's horizon against a brute-force sum, and the O(1) recurrent step."""

import pytest
import torch
import torch.nn.functional as F

from helpers import brute_force_jump_gradient, run_recurrent, sample_tokens
from pntm.models.pntm import PNTM
from pntm.ops.hard_heads import head_positions, tape_read

SEP = 2
VOCAB = 9


def test_positions_by_hand():
    moves = torch.tensor([[1, 1, -1, 0, 1, 1, 1, -1]])
    jumps = torch.tensor([[0, 0, 0, 1, 0, 0, 1, 0]], dtype=torch.bool)
    # start at -1: 0, 1, 0, jump to 0+0, 1, 2, jump to 0+1, 0
    assert head_positions(moves, jumps).tolist() == [[0, 1, 0, 0, 1, 2, 1, 0]]
    assert head_positions(moves, torch.zeros_like(jumps), start=5).tolist() == [
        [6, 7, 6, 6, 7, 8, 9, 8]]
    assert head_positions(moves, torch.ones_like(jumps)).tolist() == [moves[0].tolist()]
    # jumps land on the token's own cell: at step 3 on cell 3 (+0), at step 6 on cell 6 (+1)
    assert head_positions(moves, jumps, here=True).tolist() == [[0, 1, 0, 3, 4, 5, 7, 6]]
    # content landings: at step 3 on cell 9 (+0), at step 6 on cell 2 (+1); others unused
    landing = torch.tensor([[5, 5, 5, 9, 5, 5, 2, 5]])
    assert head_positions(moves, jumps, landing=landing).tolist() == [[0, 1, 0, 9, 10, 11, 3, 2]]


def tokens_for(batch, length, seed=0):
    return sample_tokens(batch, length, VOCAB, seed)


def loss_and_grads(model, tokens):
    logits = model(tokens)
    (logits.sin() * torch.linspace(-1, 1, VOCAB, device=logits.device)).sum().backward()
    return logits.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                             if p.grad is not None}


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shift_range,jump_bias,length,jump_to", [
    (1, 0.0, 300, "origin"),    # jumps now and then
    (2, 0.0, 150, "origin"),
    (1, 20.0, 150, "origin"),   # a jump at every step: decay 0 everywhere
    (1, -20.0, 300, "origin"),  # never a jump: decay 1, one segment over the whole sequence
    (1, 0.0, 300, "here"),      # jumps land on the token's own cell
    (2, 20.0, 150, "here"),
    (1, 0.0, 300, "content"),   # jumps land where each head's content query points
    (2, 20.0, 150, "content"),
    (1, 0.0, 300, "content-origin"),  # ... with a logit for the origin (landing_origin 1)
])
def test_position_path_equals_the_fourier_scan_forward_and_backward(shift_range, jump_bias,
                                                                   length, jump_to, device):
    results = []
    origin = {"landing_origin": 1.0} if jump_to == "content-origin" else {}
    jump_to = jump_to.split("-")[0]
    for head_path in ("auto", "fourier"):
        torch.manual_seed(0)
        model = PNTM(VOCAB, SEP, layers=2, read_heads=3, d_model=32, d_ff=64, memory_width=8,
                     tape_writer=True, shift_range=shift_range, jump_bias=jump_bias,
                     head_path=head_path, jump_horizon=None, jump_to=jump_to,
                     **origin).to(device).train()
        results.append(loss_and_grads(model, tokens_for(2, length).to(device)))
    (fast, fast_grads), (reference, reference_grads) = results
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=1e-5)
    assert fast_grads.keys() == reference_grads.keys()
    # With content landings the per-token gate gradients agree to 5e-6 of their largest (as
    # with the origin), but the jump logits' weights sum more of them of either sign.
    atol = 1e-4 if jump_to == "content" else 2e-5
    for key, expected in reference_grads.items():
        scale = expected.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(fast_grads[key] / scale, expected / scale, atol=atol, rtol=0)


def one_hot_reads(shift, jump, values, table, initial, cells, here=False):
    """Dense reference reads with one-hot weightings that carry gradients (B, T, H, N)."""
    K = (shift.shape[-1] - 1) // 2
    cell = torch.remainder(head_positions(shift.argmax(-1) - K, jump > 0.5, here=here), cells)
    weights = F.one_hot(cell, cells).float().requires_grad_()
    T = values.shape[1]
    causal = torch.ones(T, T).tril()
    contents = torch.einsum("bthj,tj,bjw->bthw", weights[..., :T], causal, values)
    contents = contents + initial * weights.sum(-1, keepdim=True)
    tags = torch.einsum("bthn,nw->bthw", weights, table[torch.arange(cells) % table.shape[0]])
    return weights, cell, contents, tags


@pytest.mark.parametrize("horizon,here", [(1, False), (3, False), (7, False), (3, True)])
def test_jump_gradient_sums_the_next_horizon_steps(horizon, here):
    """∂L/∂g_t = ±Σ_{o<h, no jump in (t, t+o]} (G_{t+o}[x_t + c_{t+o} - c_t] - G_{t+o}[c_{t+o}]),
    summed here by brute force from the dense read gradients G."""
    torch.manual_seed(3)
    B, T, H, K, W, L, cells, m0 = 2, 40, 2, 1, 4, 6, 84, 0.1
    shift = F.one_hot(torch.randint(0, 2 * K + 1, (B, T, H)), 2 * K + 1).float().requires_grad_()
    jump = (torch.rand(B, T, H) < 0.2).float().requires_grad_()
    values, table = torch.randn(B, T, W), torch.randn(L, 3)
    grad_c, grad_t = torch.randn(B, T, H, W), torch.randn(B, T, H, 3)
    contents, tags = tape_read(shift, jump, values, table, m0, cells, horizon, here)
    torch.autograd.backward([contents, tags], [grad_c, grad_t])

    weights, cell, ref_c, ref_t = one_hot_reads(shift, jump, values, table, m0, cells, here)
    torch.testing.assert_close(contents, ref_c)
    torch.testing.assert_close(tags, ref_t)
    G, = torch.autograd.grad([ref_c, ref_t], [weights], [grad_c, grad_t])
    expected = brute_force_jump_gradient(G, shift, jump, cell, cells, horizon, here)
    torch.testing.assert_close(jump.grad, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("horizon", [1, 4, None])
def test_content_landing_gradient_is_the_adjoint_where_the_head_would_land(horizon):
    """``∂L/∂w^c_t[j] = j_t Σ_{o<h, no jump in (t, t+o]} G_{t+o}[j + k_t + c_{t+o} - c_t]``: the
    reads a head that had landed on ``j`` would have made, summed here by brute force from the
    dense read gradients G; zero where the head did not jump. The gate's gradient compares the
    landing it did not take (the argmax) with its own walk."""
    torch.manual_seed(4)
    B, T, H, K, W, L, cells, m0 = 2, 30, 2, 1, 4, 6, 66, 0.1
    shift = F.one_hot(torch.randint(0, 2 * K + 1, (B, T, H)), 2 * K + 1).float().requires_grad_()
    jump = (torch.rand(B, T, H) < 0.2).float().requires_grad_()
    landed = torch.randint(0, T, (B, T, H))
    landing = F.one_hot(landed, T).float().requires_grad_()
    values, table = torch.randn(B, T, W), torch.randn(L, 3)
    grad_c, grad_t = torch.randn(B, T, H, W), torch.randn(B, T, H, 3)
    contents, tags = tape_read(shift, jump, values, table, m0, cells, horizon, landing=landing)
    torch.autograd.backward([contents, tags], [grad_c, grad_t])

    # the dense reference: one-hot weightings on the cells the landings give
    cell = torch.remainder(head_positions(shift.argmax(-1) - K, jump > 0.5, landing=landed), cells)
    weights = F.one_hot(cell, cells).float().requires_grad_()
    causal = torch.ones(T, T).tril()
    ref_c = (torch.einsum("bthj,tj,bjw->bthw", weights[..., :T], causal, values)
             + m0 * weights.sum(-1, keepdim=True))
    ref_t = torch.einsum("bthn,nw->bthw", weights, table[torch.arange(cells) % L])
    torch.testing.assert_close(contents, ref_c)
    torch.testing.assert_close(tags, ref_t)
    G, = torch.autograd.grad([ref_c, ref_t], [weights], [grad_c, grad_t])
    jumped = jump > 0.5
    expected = torch.zeros(B, T, H, T)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                if not jumped[b, t, h]:
                    continue
                k = shift[b, t, h].argmax().item() - K
                for o in range(T if horizon is None else horizon):
                    tau = t + o
                    if tau >= T or (o > 0 and jumped[b, tau, h]):
                        break
                    moved = (cell[b, tau, h] - cell[b, t, h]).item()
                    for j in range(T):
                        expected[b, t, h, j] += G[b, tau, h, (j + k + moved) % cells]
    assert expected.abs().max() > 0
    torch.testing.assert_close(landing.grad, expected, atol=1e-5, rtol=1e-5)
    gate = brute_force_jump_gradient(G, shift, jump, cell, cells, T if horizon is None else
                                     horizon, landing=landed)
    torch.testing.assert_close(jump.grad, gate, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_recurrent_position_step_equals_the_parallel_forward(device):
    torch.manual_seed(0)
    for tape_writer, jump_to, origin in ((True, "origin", None), (False, "origin", None),
                                         (True, "here", None), (True, "content", None),
                                         (True, "content", 1.0)):
        model = PNTM(VOCAB, SEP, layers=2, read_heads=2, d_model=32, d_ff=64, memory_width=8,
                     tape_writer=tape_writer, jump_bias=0.0, jump_to=jump_to,
                     landing_origin=origin).to(device).eval()
        tokens = tokens_for(3, 200).to(device)
        state = model.init_state(3, 200, tokens.device)
        assert state["layers"][0].head_spectra is None  # O(1) state per head: a position
        with torch.no_grad():
            torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                       atol=1e-5, rtol=1e-5)


def test_head_path_and_horizon_are_checked():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="head_path"):
        PNTM(VOCAB, SEP, head_path="fast")
    with pytest.raises(ConfigError, match="jump_horizon"):
        PNTM(VOCAB, SEP, jump_horizon=0)
