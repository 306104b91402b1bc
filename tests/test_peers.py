"""The peers (mamba, deltanet, slstm, transformer with randomized positions): a few training
steps lower the loss, and a peer whose optional package is absent is one line naming the extra."""

import sys

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_user_error, sample_tokens
from pntm.errors import ConfigError
from pntm.models import MISSING_EXTRAS, MODELS, available_models, build_model, get_model_class

torch.set_num_threads(1)  # tiny models; the machine is shared

VOCAB = 10
TINY = {
    "mamba": {"d_model": 16, "layers": 1, "d_state": 4},
    "mamba-negative": {"d_model": 16, "layers": 1, "d_state": 4, "negative_eigenvalues": True},
    "deltanet": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 16},
    "deltanet-positive": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 16,
                          "negative_eigenvalues": False},
    "slstm": {"d_model": 16, "layers": 1, "heads": 2},
    "transformer-randomized": {"d_model": 16, "layers": 1, "heads": 2, "d_ff": 16,
                               "positional": "randomized", "max_position": 256},
}


def need(name):
    available_models()
    if name in MISSING_EXTRAS:
        pytest.skip(f"{name} needs the '{MISSING_EXTRAS[name]}' extra")


@pytest.mark.parametrize("variant", sorted(TINY))
def test_a_few_training_steps_lower_the_loss(variant):
    """Memorising one fixed batch: 40 Adam steps take the loss (about 2.3 nats at first) below
    70% of its start (measured: 0.2-0.4 nats, 1.4 for the randomized Transformer, whose positions
    change every step)."""
    name = variant.split("-")[0]
    need(name)
    torch.manual_seed(0)
    model = build_model(name, VOCAB, 2, TINY[variant]).train()
    tokens = sample_tokens(8, 13, VOCAB, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name, package", [("mamba", "mambapy"), ("slstm", "xlstm")])
def test_missing_extra_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, name, package):
    """Simulated absence: the package's import raises ImportError, the model module is
    re-imported, and selecting the model names the extra."""
    for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, f"pntm.models.{name}", raising=False)
    if name in MODELS:
        monkeypatch.delitem(MODELS, name)
    monkeypatch.setattr("pntm.models.base.MISSING_EXTRAS", {})
    assert name not in available_models()
    message = f"model '{name}' needs the 'peers' extra: pip install 'pntm[peers]'"
    with pytest.raises(ConfigError) as err:
        get_model_class(name)
    assert str(err.value) == message
    line = assert_user_error(capsys, ["train", "--task", "parity", "--model", name,
                                      "--steps", "1", "--out", str(tmp_path / "run")])
    assert line == f"pntm: error: {message}"
    assert "lstm" in available_models()  # the others are unaffected
