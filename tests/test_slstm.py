"""sLSTM (xlstm, vanilla backend): stepping beyond the lengths of the interface test, and a
state that is passed to step twice gives the same answer (xlstm rolls conv windows in place)."""

import pytest
import torch

pytest.importorskip("xlstm", reason="the slstm peer needs pip install 'pntm[peers]'")

from helpers import run_recurrent, sample_tokens  # noqa: E402
from pntm.errors import ConfigError  # noqa: E402
from pntm.models import build_model  # noqa: E402

torch.set_num_threads(1)  # tiny models; the machine is shared


def make(**config):
    torch.manual_seed(0)
    return build_model("slstm", 10, 2, {"d_model": 16, "layers": 2, "heads": 2, **config}).eval()


def test_step_matches_forward_on_a_longer_sequence():
    model = make()
    tokens = sample_tokens(2, 60, 10)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_a_state_is_not_changed_by_step():
    model = make()
    tokens = sample_tokens(2, 6, 10)
    with torch.no_grad():
        state = model.init_state(2, 6, "cpu")
        for t in range(5):
            _, state = model.step(tokens[:, t], state)
        first, _ = model.step(tokens[:, 5], state)
        again, _ = model.step(tokens[:, 5], state)
    torch.testing.assert_close(first, again, rtol=0, atol=0)


@pytest.mark.parametrize("key, value", [("heads", 3), ("proj_factor", 0), ("conv_size", 0)])
def test_bad_config_is_a_config_error(key, value):
    with pytest.raises(ConfigError, match=key):
        build_model("slstm", 8, 2, {key: value})
