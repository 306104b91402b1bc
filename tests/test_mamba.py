"""Mamba (mambapy): the Ā override reproduces mambapy, the parallel scan equals the sequential
recurrence forward and backward with negative transitions, and [-1, 1] does what it says."""

import math

import pytest
import torch

pytest.importorskip("mambapy", reason="the mamba peer needs pip install 'pntm[peers]'")

from mambapy.mamba import MambaBlock  # noqa: E402

from pntm.errors import ConfigError  # noqa: E402
from pntm.models import build_model  # noqa: E402
from pntm.models.mamba import Mamba  # noqa: E402

torch.set_num_threads(1)  # tiny models; the machine is shared


def block(negative, seed=0):
    torch.manual_seed(seed)
    model = Mamba(8, 2, d_model=8, layers=1, d_state=4, negative_eigenvalues=negative)
    return model.layers[0].mixer


def test_without_the_option_the_override_is_mambapy():
    ours = block(negative=False)
    stock = MambaBlock(ours.config)
    stock.load_state_dict(ours.state_dict())
    x = torch.randn(2, 11, 8)
    torch.testing.assert_close(ours(x), stock(x), rtol=0, atol=0)
    cache = (torch.randn(2, 16, 4), torch.randn(2, 16, 3))
    for a, b in zip(ours.step(x[:, 0], cache), stock.step(x[:, 0], cache)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_parallel_scan_equals_sequential_with_negative_transitions_and_gradients():
    ours = block(negative=True).double()
    with torch.no_grad():
        ours.dt_proj.bias.fill_(2.0)  # Δ ≈ 2: most transitions 2 exp(ΔA) - 1 are negative
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    grads = []
    for parallel in (True, False):
        ours.config.pscan = parallel
        out = ours(x)
        grads.append((out, *torch.autograd.grad(out.square().sum(), list(ours.parameters()))))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("negative", [True, False])
def test_hand_case_transition_sign(negative):
    """x = 0 (no input) and h = 1: one step leaves h[c, n] = Ā = exp(-softplus(5) n) for
    A[c, n] = -n, or 2 Ā - 1 with the option, which is negative (below -0.98)."""
    mixer = block(negative)
    with torch.no_grad():
        mixer.dt_proj.bias.fill_(5.0)
        y, h = mixer.ssm_step(torch.zeros(1, 16), torch.ones(1, 16, 4))
    decay = torch.exp(-math.log1p(math.exp(5.0)) * torch.arange(1.0, 5.0))
    want = 2 * decay - 1 if negative else decay
    torch.testing.assert_close(h, want.expand(1, 16, 4))
    assert (h < -0.98).all() if negative else (h > 0).all()


@pytest.mark.parametrize("key, value", [("d_state", 0), ("negative_eigenvalues", "yes"),
                                        ("parallel_scan", 1)])
def test_bad_config_is_a_config_error(key, value):
    with pytest.raises(ConfigError, match=key):
        build_model("mamba", 8, 2, {key: value})
