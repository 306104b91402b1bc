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
``--seed`` flags. Every key is checked against the defaults, so a typo is an error rather than
a silently ignored setting.

Checks: every key's type (from its default), each value's range (``_check_values``; seeds
below 2**32, a finite lr in (0, 1], training lengths up to 10**6 like evaluation lengths), each
model's own values (``pntm.models.rules``, through ``resolve_config``), and, when a run starts,
the memory one training step needs against the machine's (``check_fits``).

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
import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pntm import tasks
from pntm.data import format_lengths
from pntm.errors import ConfigError
from pntm.models import default_model_config, get_model_class
from pntm.splits import VALIDATION_LENGTHS

#: largest learning rate a config may ask for: AdamW moves each weight by about lr per step,
#: so anything above 1 only diverges (1e30 used to write NaN losses and go on).
MAX_LR = 1.0
#: most examples per length an evaluation or an early-stopping check may generate.
MAX_SAMPLES = 1_000_000

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
        "batch_size": 32,
        "lr": 1e-3,
        "lr_schedule": "cosine",      # or "constant"; both after the linear warm-up
        "min_lr_ratio": 0.1,          # cosine decays to lr * min_lr_ratio
        "weight_decay": 0.01,         # on matrices only, as in nanoGPT
        "grad_clip": 1.0,             # max gradient norm; 0 disables clipping
        "warmup_steps": 100,
        "train_lengths": list(tasks.DEFAULT_TRAIN_LENGTHS),  # [min, max], both included
        "curriculum": 0.0,            # fraction of steps over which max length ramps up; 0 = off
        "log_every": 50,
        "checkpoint_every": 500,
        "early_stop": {
            "every": 500,             # check every N steps; 0 disables early stopping
            "lengths": None,          # a spec within train_lengths; None = all of them
            "samples": 32,
            "patience": 2,            # stop after this many checks in a row at 100%
            "seed": 4321,             # its own examples, distinct from the eval set
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

def load_yaml(path: str | Path, what: str = "config file") -> dict:
    """A YAML mapping from ``path`` (an empty file is an empty mapping)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    if path.is_file() and path.stat().st_size > 2**24:
        raise ConfigError(f"{what} {path} is larger than 16 MiB; not a config file")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {what} {path}: {err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {_one_line(err)}") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to read") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def package_config(model: str) -> dict:
    """The shipped run config of ``model`` (``configs/{model}.yaml``), the same for every task;
    empty when the model has none."""
    ref = resources.files("pntm") / "configs" / f"{model}.yaml"
    return load_yaml(Path(str(ref)), "packaged config") if ref.is_file() else {}


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
        raise ConfigError(f"malformed value in --set '{item}': {_one_line(err)}") from None
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
    if data is None:
        task = tasks.get_task(user["task"])  # an unknown task fails here, with the list of tasks
        return validate(merge(fit_lengths(base, task), user))
    cfg = merge(base, user)
    lengths = tasks.parse_lengths(data["lengths"])
    cfg["data"] = dict(data)
    cfg["train"]["train_lengths"] = [lengths[0], lengths[-1]]
    return validate(cfg)


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


def check_task_lengths(cfg: dict) -> None:
    """A built-in task's run asks only for lengths the task can produce: its training range (and
    so its early-stopping lengths, which stay within it) and its evaluation lengths
    (:class:`~pntm.tasks.LengthSpecError` otherwise)."""
    if cfg["data"] is not None or cfg["task"] not in tasks.TASKS:
        return
    task = tasks.get_task(cfg["task"])
    lo, hi = cfg["train"]["train_lengths"]
    task.check_range(lo, hi, f"config key 'train.train_lengths' [{lo}, {hi}]")
    task.check_lengths(lengths_from(cfg["eval"]["lengths"], "eval.lengths"),
                       "config key 'eval.lengths'")


def defaults_for(model: str) -> dict:
    """``DEFAULTS`` with ``model_config`` filled from the model (an unknown model fails here)."""
    cfg = copy.deepcopy(DEFAULTS)
    cfg["model"] = model
    cfg["model_config"] = default_model_config(model)
    return cfg


def validate(cfg: dict) -> dict:
    """Check keys, types and values of a full config; returns it with types normalised."""
    if not isinstance(cfg.get("model"), str):
        raise ConfigError("config has no model")
    schema = defaults_for(cfg["model"])
    model = get_model_class(cfg["model"])
    if isinstance(cfg.get("model_config"), dict):  # a run made before a key was renamed
        cfg = {**cfg, "model_config": model.upgrade_config(cfg["model_config"])}
    nullable = {f"model_config.{key}" for key in model.nullable_config}
    cfg = _check_keys(cfg, schema, "", nullable)
    _check_values(cfg)
    model.resolve_config(cfg["model_config"])  # each key's value rule
    return cfg


def _check_keys(value: Any, default: Any, path: str, nullable: set[str] = frozenset()) -> Any:
    """Reject unknown keys and coerce each leaf to the type of its default (or keep a null
    where the key is in ``nullable``)."""
    if isinstance(default, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}' must be a mapping, got {value!r}")
        for key in value:
            if key not in default:
                where = f"'{path}.{key}'" if path else f"'{key}'"
                raise ConfigError(f"unknown config key {where} (known: {', '.join(default)})")
        return {k: _check_keys(value.get(k, v), v, f"{path}.{k}" if path else k, nullable)
                for k, v in default.items()}
    if value is None and path in nullable:
        return None
    return _coerce(value, default, path)


def _coerce(value: Any, default: Any, path: str) -> Any:
    """``value`` converted to the type of ``default``; None defaults accept anything."""
    if default is None:
        return value
    kind = type(default)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        if isinstance(value, str):  # PyYAML reads "1e9" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        if isinstance(value, str):  # PyYAML reads "3e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # e.g. eval.lengths: 41
        ok = isinstance(value, str)
    elif kind is list:
        ok = isinstance(value, list)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"config key '{path}' must be {kind.__name__}, got {value!r}")
    return value


def _check_values(cfg: dict) -> None:
    """Ranges and relations that types alone do not capture."""
    train, ev, es = cfg["train"], cfg["eval"], cfg["train"]["early_stop"]
    _require(isinstance(cfg["task"], str), "task", "must be a task name")
    _check_seed(cfg["seed"], "seed")
    for key in ("steps", "batch_size", "log_every", "checkpoint_every"):
        _require(train[key] >= 1, f"train.{key}", "must be a positive integer")
    _require(0 < train["lr"] <= MAX_LR, "train.lr",
             f"must be in (0, {MAX_LR:g}] (AdamW's step size), got {train['lr']!r}")
    _require(0 <= train["min_lr_ratio"] <= 1, "train.min_lr_ratio", "must be in [0, 1]")
    for key in ("weight_decay", "grad_clip", "warmup_steps"):
        _require(0 <= train[key] < math.inf, f"train.{key}", f"must be finite and >= 0, "
                 f"got {train[key]!r}")
    _require(train["lr"] * train["weight_decay"] <= 1, "train.weight_decay",
             "times train.lr must be at most 1 (each step shrinks the weights by that fraction)")
    _require(train["lr_schedule"] in ("constant", "cosine"), "train.lr_schedule",
             "must be 'constant' or 'cosine'")
    lo_hi = train["train_lengths"]
    _require(len(lo_hi) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in lo_hi)
             and 1 <= lo_hi[0] <= lo_hi[1] <= tasks.MAX_SPEC_LENGTH, "train.train_lengths",
             f"must be [min, max] with 1 <= min <= max <= {tasks.MAX_SPEC_LENGTH}")
    _require(0 <= train["curriculum"] < 1, "train.curriculum", "must be in [0, 1)")
    _require(es["every"] >= 0, "train.early_stop.every", "must be >= 0 (0 disables it)")
    for key in ("samples", "patience"):
        _require(es[key] >= 1, f"train.early_stop.{key}", "must be a positive integer")
    _require(es["samples"] <= MAX_SAMPLES, "train.early_stop.samples", f"must be <= {MAX_SAMPLES}")
    _check_seed(es["seed"], "train.early_stop.seed")
    if es["lengths"] is not None:
        outside = [n for n in lengths_from(es["lengths"], "train.early_stop.lengths")
                   if not lo_hi[0] <= n <= lo_hi[1]]
        _require(not outside, "train.early_stop.lengths",
                 f"must stay within train_lengths {lo_hi} (early stopping never looks out of "
                 f"distribution), got {outside[0] if outside else ''}")
    lengths_from(ev["lengths"], "eval.lengths")
    lengths_from(ev["validation_lengths"], "eval.validation_lengths")
    for key in ("samples", "batch_size"):
        _require(ev[key] >= 1, f"eval.{key}", "must be a positive integer")
    _require(ev["samples"] <= MAX_SAMPLES, "eval.samples", f"must be <= {MAX_SAMPLES}")
    _check_seed(ev["eval_seed"], "eval.eval_seed")
    if cfg["data"] is not None:
        _check_data(cfg["data"], lo_hi)
    if cfg["vocab"] is not None:
        _require(isinstance(cfg["vocab"], list) and all(isinstance(t, str) for t in cfg["vocab"]),
                 "vocab", "must be a list of token strings")
    check_task_lengths(cfg)


DATA_KEYS = {"path": str, "sha256": str, "examples": int, "lengths": str, "max_target_length": int}


def _check_data(data: Any, train_lengths: list[int]) -> None:
    """The ``data`` record of a JSONL run (written by pntm, so a failure means a damaged file)."""
    _require(isinstance(data, dict) and set(data) == set(DATA_KEYS), "data",
             f"must be a mapping with the keys {', '.join(DATA_KEYS)}")
    for key, kind in DATA_KEYS.items():
        _require(isinstance(data[key], kind) and not isinstance(data[key], bool), f"data.{key}",
                 f"must be {kind.__name__}")
    _require(Path(data["path"]).is_absolute(), "data.path",
             "must be the absolute path the run recorded")
    _require(len(data["sha256"]) == 64 and all(c in "0123456789abcdef" for c in data["sha256"]),
             "data.sha256", "must be a sha256 hex digest")
    lengths = lengths_from(data["lengths"], "data.lengths")
    _require([lengths[0], lengths[-1]] == list(train_lengths), "train.train_lengths",
             f"must span the training file's lengths {data['lengths']} in a run on JSONL data")


def training_sequence_length(cfg: dict) -> int:
    """The longest training sequence (BOS, prompt, SEP, answer, EOS) a config can draw: a
    JSONL run's longest input and target, or for a task the longest training length with the
    answer bound every built-in task keeps (at most 2 n + 1 tokens, see evaluate.answer_budget)."""
    if cfg["data"] is not None:
        longest = lengths_from(cfg["data"]["lengths"], "data.lengths")[-1]
        return longest + cfg["data"]["max_target_length"] + 3
    longest = cfg["train"]["train_lengths"][1]
    return 3 * longest + 4


def estimate_training_bytes(cfg: dict, vocab_size: int) -> int:
    """A rough lower estimate of one training step's memory: the weights with their gradients
    and AdamW moments, plus the activations of ``batch_size`` longest sequences (see
    ``pntm.models.rules.activation_floats``). Parameters are counted on torch's meta device,
    so nothing is allocated."""
    import torch

    from pntm.models import build_model
    from pntm.models.rules import activation_floats

    with torch.device("meta"):
        model = build_model(cfg["model"], vocab_size, 2, cfg["model_config"])
    params = sum(p.numel() for p in model.parameters())
    per_sequence = activation_floats(cfg["model"], model.config, training_sequence_length(cfg),
                                     vocab_size)
    return 4 * (4 * params + cfg["train"]["batch_size"] * per_sequence)


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
            f"(train.batch_size {cfg['train']['batch_size']} x sequences of up to "
            f"{training_sequence_length(cfg):,} tokens for {cfg['model']}), more than the "
            f"{have / 2**30:,.0f} GiB of this machine's {_device_name(device)}; lower "
            "train.batch_size, the training lengths (or the data's longest example) or the "
            "model's sizes")


def _device_name(device) -> str:
    return "GPU" if device is not None and str(device).startswith("cuda") else "memory"


def lengths_from(spec: Any, key: str = "lengths") -> list[int]:
    """Parse a length spec (a string like "1-40,50" or a single int) into sorted lengths."""
    try:
        return tasks.parse_lengths(str(spec))
    except tasks.LengthSpecError as err:
        raise ConfigError(f"{key}: {err}") from None


def early_stop_lengths(cfg: dict) -> list[int]:
    """The ID lengths early stopping checks: the configured spec, or the whole training range."""
    spec = cfg["train"]["early_stop"]["lengths"]
    lo, hi = cfg["train"]["train_lengths"]
    return lengths_from(spec, "train.early_stop.lengths") if spec is not None else list(range(lo, hi + 1))


def dump(cfg: dict) -> str:
    """The config as YAML text, keys in their natural order."""
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100)


def _check_seed(seed: int, key: str) -> None:
    _require(0 <= seed < 2**32, key, f"must be in [0, 2**32) (NumPy's seed range), got {seed}")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")


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


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())
