"""The public API: what ``from pntm import ...`` gives, the standalone layer's contract (shapes,
memory size, relax schedule, parallel == recurrent), and the README's example, run from the
README itself so that it cannot go stale."""

import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pntm
from pntm.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"
PUBLIC = {"PNTM": "pntm.models.pntm", "PNTMLayer": "pntm.models.pntm_layer",
          "PNTMConfig": "pntm.models.pntm_config", "linear_scan": "pntm.ops.scan",
          "build_model": "pntm.models.base"}


def test_the_package_exports_the_public_names_lazily():
    for name, module in PUBLIC.items():
        assert name in pntm.__all__ and name in dir(pntm)
        assert getattr(pntm, name) is getattr(sys.modules[module], name)
    with pytest.raises(AttributeError, match="no attribute 'Layer'"):
        pntm.Layer
    # a fresh interpreter: importing the package alone loads no torch
    code = "import sys, pntm; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_signatures():
    def params(fn):
        return list(inspect.signature(fn).parameters)
    assert params(pntm.PNTMLayer.__init__) == ["self", "config", "overrides"]
    assert params(pntm.PNTMLayer.forward) == ["self", "u"]
    assert params(pntm.PNTMLayer.init_state) == ["self", "batch_size", "max_length", "device"]
    assert params(pntm.PNTMLayer.step) == ["self", "u", "state"]
    # `step` is optional (state_hard_every): one-argument calls, as below, keep working
    assert params(pntm.PNTMLayer.set_training_progress) == ["self", "fraction", "step"]
    assert params(pntm.build_model) == ["name", "vocab_size", "sep_id", "config"]


def test_the_config_is_one_frozen_place_for_defaults_and_checks():
    cfg = pntm.PNTMConfig(periods=[2, 3], relax=[0.2, 0.6])
    assert cfg.periods == (2, 3) and cfg.relax == (0.2, 0.6)
    with pytest.raises(AttributeError):
        cfg.d_model = 8  # frozen
    assert pntm.PNTM.default_config() == pntm.PNTMConfig().as_dict()
    assert cfg.as_dict()["periods"] == [2, 3] and cfg.replace(d_model=8).d_model == 8
    with pytest.raises(ConfigError, match="model_config.read_heads must be a positive integer"):
        pntm.PNTMLayer(read_heads=0)
    with pytest.raises(ConfigError, match="content_heads"):  # keys that must go together
        pntm.PNTMConfig(content_heads=1, hard=False)
    with pytest.raises(ConfigError, match="relax"):
        cfg.replace(relax=(0.7, 0.3))


def test_run_default_is_what_the_command_line_trains():
    from pntm.config import build_config
    assert pntm.PNTMConfig.run_default().as_dict() == build_config("parity", "pntm")["model_config"]
    assert pntm.PNTMConfig.run_default() != pntm.PNTMConfig()


def small_layer(**overrides):
    torch.manual_seed(0)
    config = pntm.PNTMConfig(d_model=16, d_ff=32, memory_width=8, read_heads=2)
    return pntm.PNTMLayer(config, **overrides).eval()


@pytest.mark.parametrize("length", [1, 45, 130])
def test_the_layer_maps_a_sequence_to_its_shape_and_sizes_its_memory_itself(length):
    layer = small_layer(tape_writer=True, shift_range=2)
    u = torch.randn(3, length, 16)
    assert layer(u).shape == u.shape
    model = pntm.build_model("pntm", 5, 2, {"shift_range": 2})
    assert layer.num_cells(length) == model.num_cells(length)
    assert layer.num_cells(length) >= 2 * length + 1 and layer.num_cells(length) % 60 == 0


def test_the_layer_follows_the_relax_schedule_itself():
    layer = small_layer(relax=(0.2, 0.8), relaxed_heads=1).train()
    layer.set_training_progress(0.5)
    assert layer.relaxing() and layer.temperature == pytest.approx(0.1 ** 0.5)
    layer.set_training_progress(0.9)
    assert not layer.relaxing() and layer.temperature == 1.0


@pytest.mark.parametrize("overrides", [
    {},                                            # learned hard writer: write events
    {"tape_writer": True},                         # tape writer: integer head positions
    {"hard": False},                               # soft heads: the Fourier scan
    {"tape_writer": True, "window": 2, "content_heads": 1,
     "content_match": "context", "state_heads": 1, "states": 3},
])
def test_the_standalone_layer_decodes_what_it_computes_in_parallel(overrides):
    layer = small_layer(**overrides)
    u = torch.randn(2, 70, 16)
    with torch.no_grad():
        parallel = layer(u)
        state, outputs = layer.init_state(2, 70, "cpu"), []
        for t in range(70):
            out, state = layer.step(u[:, t:t + 1], state)
            outputs.append(out)
    torch.testing.assert_close(torch.cat(outputs, dim=1), parallel, atol=1e-5, rtol=1e-5)


def readme_example() -> str:
    """The first Python block of the README's section "P-NTM in your own model"."""
    text = README.read_text()
    section = text.split("## P-NTM in your own model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README: no python block in 'P-NTM in your own model'"
    return blocks[0]


def test_the_readme_example_runs_and_decodes_what_it_trained():
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    lm, x, logits = namespace["lm"], namespace["x"], namespace["logits"]
    assert namespace["loss"].isfinite()
    assert all(p.grad is not None for p in namespace["model"].parameters())
    with torch.no_grad():
        torch.testing.assert_close(logits, lm(x)[:, -1:], atol=1e-5, rtol=1e-5)
