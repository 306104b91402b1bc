"""Config layering, --set parsing and validation."""

import pytest
import torch

from pntm import config as config_lib
from pntm.errors import ConfigError


def test_defaults_include_the_model_and_packaged_config():
    cfg = config_lib.build_config("parity", "lstm")
    assert cfg["model_config"] == {"d_model": 256, "num_layers": 1}
    assert cfg["train"]["train_lengths"] == [1, 40]
    assert cfg["eval"]["lengths"] == config_lib.DEFAULT_EVAL_LENGTHS
    assert cfg["eval"]["samples"] == 128 and cfg["eval"]["eval_seed"] == 1234


def test_one_shipped_config_per_model_whatever_the_task():
    """No shipped config knows its task: every built-in task resolves to the same P-NTM model
    config and training settings (apart from the lengths a task cannot produce, which
    fit_lengths leaves out), and the package holds no per-task file."""
    from importlib import resources

    from pntm import tasks

    shipped = sorted(f.name for f in (resources.files("pntm") / "configs").iterdir()
                     if f.name.endswith(".yaml"))
    assert shipped and all("-" not in name for name in shipped), shipped
    for model in ("pntm", "lstm", "transformer", "ntm"):
        seen = []
        for name in tasks.TASKS:
            cfg = config_lib.build_config(name, model)
            train = {k: v for k, v in cfg["train"].items() if k != "train_lengths"}
            seen.append((cfg["model_config"], train))
        assert all(s == seen[0] for s in seen), model
    pntm = config_lib.build_config("parity", "pntm")["model_config"]
    assert pntm["tape_writer"] and pntm["state_heads"] and pntm["periods"] == []


def test_set_parses_yaml_values_and_dotted_keys():
    cfg = config_lib.build_config("parity", "lstm", sets=[
        "model_config.d_model=64", "train.lr=3e-4", "train.train_lengths=[2, 20]",
        "train.early_stop.every=0", "eval.lengths=41"])
    assert cfg["model_config"]["d_model"] == 64
    assert cfg["train"]["lr"] == pytest.approx(3e-4) and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["train_lengths"] == [2, 20]
    assert cfg["train"]["early_stop"]["every"] == 0
    assert cfg["eval"]["lengths"] == "41"


def test_layers_in_order(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("seed: 3\ntrain:\n  lr: 0.01\n  steps: 7\n")
    cfg = config_lib.build_config("parity", "lstm", config_file=user, sets=["train.lr=0.02"],
                                  steps=9)
    assert cfg["seed"] == 3                # from the file
    assert cfg["train"]["lr"] == 0.02      # --set beats the file
    assert cfg["train"]["steps"] == 9      # --steps beats both
    assert cfg["train"]["batch_size"] == 128  # untouched: the packaged config's


def test_task_and_model_may_come_from_the_file(tmp_path):
    user = tmp_path / "c.yaml"
    user.write_text("task: copy\nmodel: lstm\n")
    cfg = config_lib.build_config(config_file=user)
    assert (cfg["task"], cfg["model"]) == ("copy", "lstm")


@pytest.mark.parametrize("item", ["seed=x", "train.eval_at_end=maybe", "train.lr_schedule=step",
                                  "train.train_lengths=[5, 2]", "model_config=3", "vocab=3"])
def test_invalid_values(item):
    with pytest.raises(ConfigError):
        config_lib.build_config("parity", "lstm", sets=[item])


@pytest.mark.parametrize("old, window", [({"token_shift": True, "shift_tokens": 3}, 3),
                                         ({"token_shift": True}, 1),
                                         ({"token_shift": False, "shift_tokens": 4}, 0)])
def test_a_run_made_before_the_window_key_reads_as_window(old, window):
    # committed runs say token_shift (on/off) and shift_tokens (how many): one key now
    cfg = config_lib.build_config("parity", "pntm")
    model_config = {k: v for k, v in cfg["model_config"].items() if k != "window"}
    saved = {**cfg, "model_config": {**model_config, **old}}
    assert config_lib.validate(saved)["model_config"]["window"] == window


def test_an_old_run_config_reruns_and_old_keys_beside_window_are_an_error(tmp_path):
    # a run's config.yaml from before the rename, given back as --config, overrides the
    # shipped window (3) with its own
    old = tmp_path / "config.yaml"
    old.write_text("model_config:\n  token_shift: true\n  shift_tokens: 2\n")
    cfg = config_lib.build_config("parity", "pntm", config_file=old)
    assert cfg["model_config"]["window"] == 2 and "token_shift" not in cfg["model_config"]
    with pytest.raises(ConfigError, match="token_shift is now window"):
        config_lib.build_config("parity", "pntm", config_file=old,
                                sets=["model_config.window=1"])


@pytest.mark.parametrize("content_match, retrieves", [("content", False), ("context", True)])
def test_the_shipped_content_head_does_not_retrieve_untrained(content_match, retrieves):
    """Issue "One P-NTM for every task": the associative-recall head must learn its retrieval.
    Untrained, the shipped config's content head (queries compared with cell contents) does
    not find the queried pair's value at the separator, in any layer; the induction head it
    replaced (``content_match: context``, built so that the same 3 inputs give the same key)
    finds it in the first layer for nearly every prompt, before any training."""
    import numpy as np

    from pntm import tasks
    from pntm.models.base import build_model
    from pntm.tools.inspection import pntm_internals

    task = tasks.get_task("associative_recall")
    cfg = config_lib.build_config("associative_recall", "pntm",
                                  sets=[f"model_config.content_match={content_match}"])
    torch.manual_seed(0)
    model = build_model("pntm", len(task.vocab), task.vocab.sep_id, cfg["model_config"]).eval()
    model.set_training_progress(1.0)
    rng = np.random.default_rng(0)
    hits, prompts = 0, 48
    for _ in range(prompts):
        n = int(rng.integers(4, 13))
        prompt = task.generate(n, rng).prompt
        query = prompt[-3:]
        q = next(i for i in range(n) if tuple(prompt[4 * i: 4 * i + 3]) == tuple(query))
        tokens = torch.tensor([[task.vocab.bos_id, *task.vocab.encode(prompt),
                                task.vocab.sep_id]])
        with torch.no_grad():
            layers = pntm_internals(model, tokens)
        value_cell, sep = 4 * q + 4, tokens.shape[1] - 1    # cell j holds fed token j
        chosen = [record["weights"][sep, -1].argmax() for record in layers]
        hits += value_cell in chosen
    if retrieves:
        assert hits >= 0.95 * prompts
    else:
        assert hits <= 0.3 * prompts, hits


def test_a_shipped_schedule_span_scales_with_the_budget_asked(monkeypatch):
    """A shipped config that trains on past its schedules keeps their share of any budget that
    --steps or --set train.steps asks for (4,000 of 8,000 -> 250 of 500); a span the user
    sets is kept, and a config without one (span 0 = steps) is untouched."""
    shipped = {"train": {"steps": 8000, "schedule_steps": 4000}}
    monkeypatch.setattr(config_lib, "package_config", lambda model: shipped)
    span = lambda **kw: config_lib.build_config("parity", "lstm", **kw)["train"]["schedule_steps"]
    assert span() == 4000
    assert span(steps=500) == 250 and span(steps=3) == 2 and span(steps=1) == 1
    assert span(sets=["train.steps=12000"]) == 6000
    assert span(steps=500, sets=["train.schedule_steps=100"]) == 100
    assert span(steps=500, sets=["train.schedule_steps=0"]) == 0
    monkeypatch.setattr(config_lib, "package_config", lambda model: {})
    assert span(steps=500) == 0
