"""The checks of a run config (:mod:`pntm.config` builds it and calls them through
``validate``).

Checks: every key's type (from its default), each value's range (``_check_values``; seeds
below 2**32, a finite lr in (0, 1], training lengths up to 10**6 like evaluation lengths), each
model's own values (``pntm.models.rules``, through ``resolve_config``), and, when a run starts,
the memory one training step needs against the machine's (:func:`pntm.config.check_fits`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pntm import tasks
from pntm.errors import ConfigError

#: largest learning rate a config may ask for: AdamW moves each weight by about lr per step,
#: so anything above 1 only diverges (1e30 used to write NaN losses and go on).
MAX_LR = 1.0
#: most examples per length an evaluation or an early-stopping check may generate.
MAX_SAMPLES = 1_000_000


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


def _as_number(value: Any) -> Any:
    """PyYAML reads ``1e9`` or ``3e-4`` (no dot) as a string: such a string as a float, any other
    value as it is."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _coerce(value: Any, default: Any, path: str) -> Any:
    """``value`` converted to the type of ``default``; None defaults accept anything."""
    if default is None:
        return value
    kind = type(default)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        value = _as_number(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        value = _as_number(value)
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
    _require(train["micro_batch"] >= 0, "train.micro_batch",
             f"must be >= 0 (sequences per pass; 0: the whole batch), got "
             f"{train['micro_batch']!r}")
    _require(0 < train["lr"] <= MAX_LR, "train.lr",
             f"must be in (0, {MAX_LR:g}] (AdamW's step size), got {train['lr']!r}")
    _require(0 <= train["min_lr_ratio"] <= 1, "train.min_lr_ratio", "must be in [0, 1]")
    _require(0 <= train["schedule_steps"] <= train["steps"], "train.schedule_steps",
             f"must be in [0, train.steps = {train['steps']}] (0: train.steps), "
             f"got {train['schedule_steps']!r}")
    _require(0 <= train["lr_decay_start"] < 1, "train.lr_decay_start", "must be in [0, 1)")
    _require(0 < train["adam_beta2"] < 1, "train.adam_beta2", "must be in (0, 1)")
    for key in ("weight_decay", "grad_clip", "warmup_steps"):
        _require(0 <= train[key] < math.inf, f"train.{key}", f"must be finite and >= 0, "
                 f"got {train[key]!r}")
    _require(train["lr"] * train["weight_decay"] <= 1, "train.weight_decay",
             "times train.lr must be at most 1 (each step shrinks the weights by that fraction)")
    _require(train["snapshot_every"] >= 0, "train.snapshot_every", "must be >= 0 (0: off)")
    _require(train["lr_schedule"] in ("constant", "cosine"), "train.lr_schedule",
             "must be 'constant' or 'cosine'")
    lo_hi = train["train_lengths"]
    _require(len(lo_hi) == 2 and all(isinstance(n, int) and not isinstance(n, bool) for n in lo_hi)
             and 1 <= lo_hi[0] <= lo_hi[1] <= tasks.MAX_SPEC_LENGTH, "train.train_lengths",
             f"must be [min, max] with 1 <= min <= max <= {tasks.MAX_SPEC_LENGTH}")
    _require(0 <= train["curriculum"] < 1, "train.curriculum", "must be in [0, 1)")
    _require(es["every"] >= 0, "train.early_stop.every", "must be >= 0 (0 disables it)")
    _require(0 <= es["start"] < 1, "train.early_stop.start", "must be in [0, 1)")
    for key in ("samples", "patience"):
        _require(es[key] >= 1, f"train.early_stop.{key}", "must be a positive integer")
    _require(es["samples"] <= MAX_SAMPLES, "train.early_stop.samples", f"must be <= {MAX_SAMPLES}")
    _check_seed(es["seed"], "train.early_stop.seed")
    _require(not es["restore_best"] or es["every"] > 0, "train.early_stop.restore_best",
             "needs the checks it chooses among: train.early_stop.every > 0")
    _require(0 <= es["rollback"] < 1, "train.early_stop.rollback",
             f"must be in [0, 1) (a fraction of the best check's score; 0: off), got "
             f"{es['rollback']!r}")
    _require(not es["rollback"] or es["every"] > 0, "train.early_stop.rollback",
             "needs the checks it compares: train.early_stop.every > 0")
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


def lengths_from(spec: Any, key: str = "lengths") -> list[int]:
    """Parse a length spec (a string like "1-40,50" or a single int) into sorted lengths."""
    try:
        return tasks.parse_lengths(str(spec))
    except tasks.LengthSpecError as err:
        raise ConfigError(f"{key}: {err}") from None


def _check_seed(seed: int, key: str) -> None:
    _require(0 <= seed < 2**32, key, f"must be in [0, 2**32) (NumPy's seed range), got {seed}")


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}")
