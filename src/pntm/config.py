"""Run configuration: defaults, YAML files, ``--set key=value`` overrides, validation.

A config is a nested dict::

    task, model, seed, vocab         # vocab: the token list, filled in when a run starts
    data: None | {path, sha256, examples, lengths, max_target_length}   # a JSONL run's file
    model_config: {...}              # keys = the model's default_config()
    train: {steps, batch_size, lr, ...}
    eval:  {lengths, validation_lengths, samples, eval_seed, batch_size}

Layers, later ones winning: ``DEFAULTS`` (with the model's own defaults), the package's
``configs/{model}.yaml`` (one per model, the same for every task: no shipped config knows the
task it trains on), the user's ``--config FILE``, each ``--set``, then the ``--steps`` /
``--seed`` flags (a shipped ``schedule_steps`` keeps its share of the budget these ask for:
:func:`_schedule_for_budget`). Every key is checked against the defaults, so a typo is an error
rather than a silently ignored setting.

Checks: :mod:`pntm.config_checks` (every key's type, each value's range, each model's own
values), and, when a run starts, the memory one training step needs against the machine's
(``check_fits``).

A run on the user's own JSONL data (``pntm train --data``) has ``data`` set (see pntm.data): its
``task`` is only a name (the file's stem unless ``--task`` names it), and
``train.train_lengths`` is the range of the file's lengths, whatever was asked.

A built-in task's run asks only for lengths the task can produce: the defaults leave out those
below its ``min_length`` (``solve_equation`` trains on 3-40 and is evaluated from 3), and a
training range or evaluation length the user asks for that it cannot produce is a
:class:`~pntm.tasks.LengthSpecError` before any run directory exists.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from pntm import tasks
from pntm.config_checks import _check_keys, _check_values, lengths_from
from pntm.config_files import load_yaml, one_line, package_config
from pntm.data import format_lengths
from pntm.errors import ConfigError
from pntm.models import default_model_config, get_model_class
from pntm.splits import VALIDATION_LENGTHS

DEFAULT_EVAL_LENGTHS = "1-40,41,50,64,80,100,128,160,200,256,320,400,500"

DEFAULTS: dict[str, Any] = {
    "task": None,
    "model": None,
    "seed": 0,
    "vocab": None,
    "data": None,
    "model_config": {},
    "train": {
        "steps": 10000,
        "schedule_steps": 0,          # steps the fractional schedules span; 0 = steps (below)
        "batch_size": 32,
        "micro_batch": 0,             # sequences per forward/backward, gradients summed over
        #                               the batch (same step, less memory); 0 = the whole batch
        "lr": 1e-3,
        "lr_schedule": "cosine",      # or "constant"; both after the linear warm-up
        "min_lr_ratio": 0.1,          # cosine decays to lr * min_lr_ratio
        "lr_decay_start": 0.0,        # cosine: the rate stays at lr until this fraction of steps
        "weight_decay": 0.01,         # on matrices only, as in nanoGPT
        "adam_beta2": 0.999,          # AdamW's second-moment decay (PyTorch's default)
        "grad_clip": 1.0,             # max gradient norm; 0 disables clipping
        "warmup_steps": 100,
        "train_lengths": list(tasks.DEFAULT_TRAIN_LENGTHS),  # [min, max], both included
        "curriculum": 0.0,            # fraction of steps over which max length ramps up; 0 = off
        "log_every": 50,
        "checkpoint_every": 500,
        "snapshot_every": 0,          # also keep the weights every N steps in snapshots/; 0 = off
        "early_stop": {
            "every": 500,             # check every N steps; 0 disables early stopping
            "lengths": None,          # a spec within train_lengths; None = all of them
            "samples": 32,
            "patience": 2,            # stop after this many checks in a row at 100%
            "start": 0.0,             # no check before this fraction of the steps (e.g. the end
            #                           of a curriculum or of relaxed heads: the final model)
            "seed": 4321,             # its own examples, distinct from the eval set
            "restore_best": False,    # evaluate the weights of the best check, not the last
            "rollback": 0.0,          # a check below this fraction of the best check's score
            #                           puts the best check's weights and optimizer back; 0 = off
        },
        "eval_at_end": True,
        "tensorboard": False,         # also log metrics to RUN_DIR/tensorboard (optional extra)
    },
    "eval": {
        "lengths": DEFAULT_EVAL_LENGTHS,     # the test split (pntm.splits)
        "validation_lengths": VALIDATION_LENGTHS,  # the validation split (41-64), for choices
        "samples": 128,
        "eval_seed": 1234,
        "batch_size": 128,
    },
}


# --------------------------------------------------------------------------- reading layers

def parse_set(item: str) -> dict:
    """``"train.lr=3e-4"`` -> ``{"train": {"lr": 3e-4}}`` (the value is read as YAML)."""
    key, eq, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not eq or not key or not all(p.strip() for p in parts):
        raise ConfigError(f"malformed --set '{item}' (expected key=value, e.g. train.lr=3e-4)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"malformed value in --set '{item}': {one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"value in --set '{item[:40]}...' is nested too deeply") from None
    for part in reversed(parts):
        value = {part.strip(): value}
    return value


def merge(base: dict, override: dict) -> dict:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------- building

def build_config(task: str | None = None, model: str | None = None, *,
                 config_file: str | Path | None = None, sets: list[str] = (),
                 steps: int | None = None, seed: int | None = None,
                 data: dict | None = None) -> dict:
    """The full, validated config for a new run (see the module docstring for the layers).

    ``task`` and ``model`` may also come from the ``--config`` file or ``--set``. ``data`` is
    ``JsonlDataset.describe()`` for a run on a JSONL file; ``task`` then only names it.
    """
    user = load_yaml(config_file) if config_file else {}
    for item in sets:
        user = merge(user, parse_set(item))
    flags = {"task": task, "model": model, "seed": seed, "train": {"steps": steps}}
    user = merge(user, _drop_none(flags))
    for key in ("task", "model"):
        if not isinstance(user.get(key), str) or not user[key]:
            raise ConfigError(f"no {key} given (use --{key} or set {key} in --config)")
    base = merge(defaults_for(user["model"]), package_config(user["model"]))
    base = _schedule_for_budget(base, user.get("train"))
    user = upgraded(user)  # e.g. the config.yaml of a run made before a key was renamed
    if data is None:
        task = tasks.get_task(user["task"])  # an unknown task fails here, with the list of tasks
        return validate(merge(fit_lengths(base, task), user))
    cfg = merge(base, user)
    lengths = tasks.parse_lengths(data["lengths"])
    cfg["data"] = dict(data)
    cfg["train"]["train_lengths"] = [lengths[0], lengths[-1]]
    return validate(cfg)


def _schedule_for_budget(base: dict, user_train) -> dict:
    """``base`` with its ``train.schedule_steps`` scaled to the budget the user asks for.

    Decision: a shipped config that trains on past its schedules (``schedule_steps`` S of
    ``steps`` B) keeps that share at any other budget N asked with ``--steps`` or ``--set
    train.steps`` (S * N / B, rounded, at least 1), as its fractional schedules (curriculum,
    relax, anneal, the rate's decay start) scale with the budget; ``--steps 500`` is the same
    config on a shorter budget, not an error. A ``schedule_steps`` the user sets is kept."""
    span, budget = base["train"]["schedule_steps"], base["train"]["steps"]
    if not isinstance(user_train, dict) or "schedule_steps" in user_train or not span:
        return base
    steps = user_train.get("steps", budget)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        return base  # a bad value is validate()'s to report
    scaled = max(1, round(span * steps / budget))
    return merge(base, {"train": {"schedule_steps": scaled}})


def fit_lengths(cfg: dict, task: tasks.Task) -> dict:
    """The default training and evaluation lengths without those ``task`` cannot produce (below
    its ``min_length``: e.g. ``solve_equation`` trains on 3-40). Lengths the user asks for are
    not fitted but checked (see :func:`check_task_lengths`)."""
    cfg = copy.deepcopy(cfg)
    low = task.min_length
    lo, hi = cfg["train"]["train_lengths"]
    if lo < low <= hi:
        cfg["train"]["train_lengths"] = [low, hi]
    lengths = tasks.parse_lengths(str(cfg["eval"]["lengths"]))
    if lengths[0] < low <= lengths[-1]:
        cfg["eval"]["lengths"] = format_lengths([n for n in lengths if n >= low])
    return cfg


def defaults_for(model: str) -> dict:
    """``DEFAULTS`` with ``model_config`` filled from the model (an unknown model fails here)."""
    cfg = copy.deepcopy(DEFAULTS)
    cfg["model"] = model
    cfg["model_config"] = default_model_config(model)
    return cfg


def upgraded(cfg: dict) -> dict:
    """``cfg`` with its ``model_config`` keys renamed since (``SequenceModel.upgrade_config``)
    under their current names; one layer at a time, so that an old key given by the user
    replaces the new key of the defaults under it."""
    if not isinstance(cfg.get("model_config"), dict):
        return cfg
    model = get_model_class(cfg["model"])
    return {**cfg, "model_config": model.upgrade_config(cfg["model_config"])}


def validate(cfg: dict) -> dict:
    """Check keys, types and values of a full config; returns it with types normalised."""
    if not isinstance(cfg.get("model"), str):
        raise ConfigError("config has no model")
    schema = defaults_for(cfg["model"])
    cfg = upgraded(cfg)  # a run made before a key was renamed
    model = get_model_class(cfg["model"])
    nullable = {f"model_config.{key}" for key in model.nullable_config}
    cfg = _check_keys(cfg, schema, "", nullable)
    _check_values(cfg)
    model.resolve_config(cfg["model_config"])  # each key's value rule
    return cfg


def training_sequence_length(cfg: dict) -> int:
    """The longest training sequence (BOS, prompt, SEP, answer, EOS) a config can draw: a
    JSONL run's longest input and target, or for a task the longest training length with the
    answer bound every built-in task keeps (at most 2 n + 1 tokens, see decoding.answer_budget)."""
    if cfg["data"] is not None:
        longest = lengths_from(cfg["data"]["lengths"], "data.lengths")[-1]
        return longest + cfg["data"]["max_target_length"] + 3
    longest = cfg["train"]["train_lengths"][1]
    return 3 * longest + 4


def estimate_training_bytes(cfg: dict, vocab_size: int) -> int:
    """A rough lower estimate of one training step's memory: the weights with their gradients
    and AdamW moments, the batch's token ids (inputs and targets, int64), and the
    activations of ``batch_size`` (or ``micro_batch``, when set and smaller) longest sequences
    (see ``pntm.models.rules.activation_floats``). Parameters are counted on torch's meta
    device, so nothing is allocated."""
    import torch

    from pntm.models import build_model
    from pntm.models.rules import activation_floats

    with torch.device("meta"):
        model = build_model(cfg["model"], vocab_size, 2, cfg["model_config"])
    params = sum(p.numel() for p in model.parameters())
    length, batch = training_sequence_length(cfg), cfg["train"]["batch_size"]
    per_sequence = activation_floats(cfg["model"], model.config, length, vocab_size)
    return 4 * (4 * params + sequences_per_pass(cfg["train"]) * per_sequence) + 16 * batch * length


def sequences_per_pass(train_cfg: dict) -> int:
    """How many sequences one forward and backward holds: ``micro_batch`` when it is set and
    smaller than the batch, else ``batch_size``."""
    micro, batch = train_cfg["micro_batch"], train_cfg["batch_size"]
    return micro if 0 < micro < batch else batch


def memory_available(device=None) -> int | None:
    """Bytes of memory of ``device`` (a GPU's own, else this machine's RAM), None if unknown."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(cfg: dict, vocab_size: int, device=None) -> None:
    """Refuse a config whose training step cannot fit in the memory of ``device`` (checked when
    a run starts, before anything is written; a run that resumes is not checked again)."""
    need, have = estimate_training_bytes(cfg, vocab_size), memory_available(device)
    if have is not None and need > have:
        raise ConfigError(
            f"a training step of this config needs about {need / 2**30:,.0f} GiB "
            f"({sequences_per_pass(cfg['train'])} sequences a pass (train.batch_size, or "
            f"train.micro_batch when smaller) of up to "
            f"{training_sequence_length(cfg):,} tokens for {cfg['model']}), more than the "
            f"{have / 2**30:,.0f} GiB of this machine's {_device_name(device)}; pass fewer "
            "sequences at a time (train.micro_batch: the same step in slices), or lower "
            "train.batch_size, the training lengths (or the data's longest example) or the "
            "model's sizes")


def _device_name(device) -> str:
    return "GPU" if device is not None and str(device).startswith("cuda") else "memory"


def early_stop_lengths(cfg: dict) -> list[int]:
    """The ID lengths early stopping checks: the configured spec, or the whole training range."""
    spec = cfg["train"]["early_stop"]["lengths"]
    lo, hi = cfg["train"]["train_lengths"]
    return lengths_from(spec, "train.early_stop.lengths") if spec is not None else list(range(lo, hi + 1))


def dump(cfg: dict) -> str:
    """The config as YAML text, keys in their natural order."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100)


def _drop_none(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _drop_none(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out
