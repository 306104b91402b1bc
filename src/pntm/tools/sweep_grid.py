"""The grid of ``pntm sweep``: its comma lists parsed (tasks, models, seeds, learning rates),
one job per (task, model, lr, seed) with its validated config and run name, and a run already in
``OUT`` checked against the settings asked. Every user mistake is raised here, before anything
runs or is written."""

from __future__ import annotations

import math
from pathlib import Path

from pntm import config as config_lib
from pntm import tasks
from pntm.errors import ConfigError, PntmError

GRID_KEYS = ("task", "model", "seed")
MAX_LRS = 3


def parse_names(text: str, what: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (order kept, duplicates dropped)."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or not all(names):
        raise PntmError(f"malformed --{what} '{text}' (expected a comma list, e.g. a,b)")
    return list(dict.fromkeys(names))


def parse_tasks(text: str) -> list[str]:
    key = text.strip()
    if key == "all":
        return list(tasks.TASKS)
    if key == "required":
        return list(tasks.REQUIRED_TASKS)
    if key == "chomsky":
        return list(tasks.CHOMSKY_TASKS)
    names = parse_names(text, "tasks")
    for name in names:
        tasks.get_task(name)  # an unknown task fails here, with the list
    return names


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-2"`` (both ends included) -> ``[0, 1, 2]``."""
    seeds: list[int] = []
    for part in parse_names(text, "seeds"):
        lo, dash, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            first, last = -1, -1
        if first < 0 or last < first:
            raise PntmError(f"malformed --seeds '{text}' (expected non-negative integers "
                            f"or ranges, e.g. 0,1,2 or 0-2; bad part '{part}')")
        seeds.extend(range(first, last + 1))
    return list(dict.fromkeys(seeds))


def parse_lrs(text: str) -> list[float]:
    """``"1e-3,3e-4"`` -> ``[0.001, 0.0003]``: at most :data:`MAX_LRS` positive, finite learning
    rates (order kept, duplicates dropped)."""
    lrs = []
    for part in parse_names(text, "lrs"):
        try:
            lr = float(part)
        except ValueError:
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            raise PntmError(f"malformed --lrs '{text}' (expected positive numbers, e.g. "
                            f"1e-3,3e-4,1e-4; bad part '{part}')")
        lrs.append(lr)
    lrs = list(dict.fromkeys(lrs))
    if len(lrs) > MAX_LRS:
        raise PntmError(f"--lrs '{text}' has {len(lrs)} learning rates; at most {MAX_LRS} "
                        "(the same for every task and model)")
    names = {lr_tag(lr) for lr in lrs}
    if len(names) < len(lrs):
        raise PntmError(f"--lrs '{text}': two learning rates would get the same run name "
                        f"({', '.join(lr_tag(lr) for lr in lrs)})")
    return lrs


def lr_tag(lr: float) -> str:
    from pntm.tools.selection import format_lr
    return format_lr(lr)


def run_name(task: str, model: str, seed: int, lr: float | None = None) -> str:
    """``task-model-sSEED``, or ``task-model-lrLR-sSEED`` when the sweep tries several lrs."""
    return f"{task}-{model}-s{seed}" if lr is None else f"{task}-{model}-lr{lr_tag(lr)}-s{seed}"


def plan(task_names: list[str], models: list[str], seeds: list[int], out: str | Path, *,
         sets: list[str] = (), steps: int | None = None, command: str | None = None,
         device: str = "cpu", lrs: list[float] | None = None) -> list[dict]:
    """Every job of the grid, each with its validated config; any user mistake raises here,
    before anything runs or is written. ``device`` is where every run trains and evaluates:
    the CPU by default (one thread per worker), or ``cuda``, where the workers share the GPU
    (a GPU runs several small models at once better than one after another). ``lrs``: the
    learning rates to try (each sets ``train.lr``; run names carry it when there are several)."""
    from pntm.models import build_model
    from pntm.runs import RunDir

    for item in sets:
        key = next(iter(config_lib.parse_set(item)))
        if key in GRID_KEYS:
            raise ConfigError(f"--set {item}: the sweep sets {key} itself (use --{key}s)")
        train = config_lib.parse_set(item).get("train")
        if lrs and isinstance(train, dict) and "lr" in train:
            raise ConfigError(f"--set {item}: --lrs sets train.lr; give one or the other")
    out = Path(out)  # kept as given, so logs and records name no folder of this machine
    jobs, built = [], set()
    grid = [(lr, seed) for lr in (lrs or [None]) for seed in seeds]
    named_lr = lrs is not None and len(lrs) > 1
    for task in task_names:
        for model in models:
            for lr, seed in grid:
                lr_set = [] if lr is None else [f"train.lr={lr!r}"]
                cfg = config_lib.build_config(task, model, sets=[*sets, *lr_set], steps=steps,
                                              seed=seed)
                if (task, model) not in built:  # a setting the model rejects fails now
                    vocab = tasks.get_task(task).vocab
                    config_lib.check_fits(cfg, len(vocab), device)
                    try:
                        build_model(model, len(vocab), vocab.sep_id, cfg["model_config"])
                    except (TypeError, ValueError, RuntimeError) as err:
                        raise ConfigError(f"{model} on {task}: {err}") from None
                    built.add((task, model))
                name = run_name(task, model, seed, lr if named_lr else None)
                _check_existing(RunDir(out / name), cfg)
                jobs.append({"name": name, "task": task, "model": model, "seed": seed, "lr": lr,
                             "out": str(out / name), "cfg": cfg, "command": command,
                             "device": device})
    return jobs


def _check_existing(run, cfg: dict) -> None:
    """A run already in OUT must have been made with the same settings (a corrupt one is
    left to its worker, which records the failure)."""
    if not run.is_run():
        return
    try:
        saved = run.load_config()
    except PntmError:
        return
    key = _first_difference({**saved, "vocab": None}, {**cfg, "vocab": None})
    if key is not None:
        raise ConfigError(f"{run.path} already holds a run with another {key} "
                          f"({_at(saved, key)!r}, asked {_at(cfg, key)!r}); "
                          "use another --out or the same settings")


def _first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    return None if a == b else path


def _at(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg
