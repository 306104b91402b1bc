"""DeltaNet: both delta-rule functions equal the literal matrix recurrence (outputs, final state
and gradients), fla's reference op when installed, and β in [0, 2] really flips a state."""

import pytest
import torch
import torch.nn.functional as F

from pntm.errors import ConfigError
from pntm.models import build_model
from pntm.models.deltanet import DeltaNet, delta_rule_chunked, delta_rule_recurrent

torch.set_num_threads(1)  # tiny models; the machine is shared


def literal_delta_rule(q, k, v, beta, state):
    """``S_t = (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ`` and ``o_t = S_tᵀ q_t / sqrt(d)``
    with explicit d × d matrices, one (batch, head) at a time."""
    B, H, T, d = k.shape
    eye = torch.eye(d, dtype=k.dtype)
    outs, finals = [], []
    for b in range(B):
        for h in range(H):
            S = state[b, h]
            for t in range(T):
                kt, vt = k[b, h, t][:, None], v[b, h, t][:, None]
                S = (eye - beta[b, h, t] * kt @ kt.T) @ S + beta[b, h, t] * kt @ vt.T
                outs.append(S.T @ q[b, h, t] / d ** 0.5)
            finals.append(S)
    return (torch.stack(outs).reshape(B, H, T, -1),
            torch.stack(finals).reshape(B, H, d, -1))


def random_inputs(T=13, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 2, T, d, generator=g, dtype=torch.float64) for _ in range(3))
    k = F.normalize(k, dim=-1)
    beta = 2 * torch.rand(2, 2, T, generator=g, dtype=torch.float64)  # up to 2
    state = torch.randn(2, 2, d, d, generator=g, dtype=torch.float64)
    return [x.requires_grad_() for x in (q, k, v, beta, state)]


@pytest.mark.parametrize("fn", ["recurrent", "chunk 1", "chunk 4", "chunk 5", "chunk 64"])
def test_delta_rule_equals_the_literal_recurrence_forward_and_backward(fn):
    inputs = random_inputs()
    if fn == "recurrent":
        out, final = delta_rule_recurrent(*inputs[:4], state=inputs[4])
    else:
        out, final = delta_rule_chunked(*inputs[:4], chunk_size=int(fn.split()[1]),
                                        state=inputs[4])
    want_out, want_final = literal_delta_rule(*inputs)
    torch.testing.assert_close(out, want_out, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(final, want_final, atol=1e-10, rtol=1e-10)
    g = torch.Generator().manual_seed(1)
    w_out, w_final = torch.randn(out.shape, generator=g, dtype=out.dtype), torch.randn(
        final.shape, generator=g, dtype=out.dtype)
    got = torch.autograd.grad((out * w_out).sum() + (final * w_final).sum(), inputs)
    want = torch.autograd.grad((want_out * w_out).sum() + (want_final * w_final).sum(), inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_against_fla_reference_op():
    """fla's naive op (flash-linear-attention 0.6.0) computes in float32 and starts from 0."""
    naive = pytest.importorskip("fla.ops.delta_rule.naive",
                                reason="pip install fla-core==0.6.0 triton for this cross-check")
    q, k, v, beta, _ = (x.detach().float() for x in random_inputs(T=37, d=8, seed=3))
    want, want_state = naive.delta_rule_recurrence(q, k, v, beta)
    for out, state in (delta_rule_recurrent(q, k, v, beta), delta_rule_chunked(q, k, v, beta, 16)):
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(state, want_state, atol=1e-5, rtol=1e-5)


def test_beta_two_flips_the_state_and_beta_one_erases_it():
    """k = e1 both times: write v = a with β = 1, then v = 0 with β = 2: S = -e1 aᵀ, the
    eigenvalue 1 - β = -1 along k. With β = 1 the second token erases it instead."""
    d = 3
    e1 = torch.tensor([1.0, 0, 0], dtype=torch.float64)
    a = torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64)
    k = torch.stack((e1, e1))[None, None]
    v = torch.stack((a, torch.zeros(d, dtype=torch.float64)))[None, None]
    q = k * d ** 0.5  # o_t = S_tᵀ e1
    for beta_2, want in ((2.0, -a), (1.0, 0 * a)):
        beta = torch.tensor([[[1.0, beta_2]]], dtype=torch.float64)
        out, _ = delta_rule_chunked(q, k, v, beta)
        torch.testing.assert_close(out[0, 0, 0], a)
        torch.testing.assert_close(out[0, 0, 1], want)


@pytest.mark.parametrize("negative, top", [(True, 2.0), (False, 1.0)])
def test_negative_eigenvalues_option_sets_the_range_of_beta(negative, top):
    torch.manual_seed(0)
    model = DeltaNet(8, 2, d_model=8, layers=1, heads=2, d_ff=8, negative_eigenvalues=negative)
    mixer = model.blocks[0].mixer
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        mixer.to_beta.weight.fill_(0.0)
        mixer.to_beta.weight[:, 0] = 1e4  # β saturates high for x_0 > 0 and low for x_0 < 0
        qkv = tuple(conv(t) for conv, t in zip(mixer.convs, mixer.qkv(x).chunk(3, dim=-1)))
        beta = mixer.features(qkv, x)[3]
    assert beta.shape == (1, 2, 5)
    torch.testing.assert_close(beta[0, 0], torch.where(x[0, :, 0] > 0, top, 0.0))


@pytest.mark.parametrize("key, value", [("heads", 3), ("negative_eigenvalues", 1),
                                        ("chunk_size", 0), ("conv_size", 1.5)])
def test_bad_config_is_a_config_error(key, value):
    with pytest.raises(ConfigError, match=key):
        build_model("deltanet", 8, 2, {key: value})
