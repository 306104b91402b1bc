"""Choosing the learning rate and seed of each task and model on the validation split, never on
the test split; and which seeds succeed.

The protocol (``pntm report`` and the summary of ``pntm sweep``; splits: :mod:`pntm.splits`):

- A run's **validation score** is its mean sequence accuracy over the validation lengths
  (``eval-validation.json``, lengths 41-64); ties go to its mean answer-token accuracy there.
- A run is **selectable** when it has validation results for the same task, model and seed that
  record the same number of training steps as its ``eval.json`` (else they are *stale*: they
  describe other weights). A run without them (every run made before the splits existed) is
  never chosen; ``pntm eval FOLDER --split validation`` measures them from the saved weights.
- **Learning rate**: the selectable runs of a (task, model) are grouped by ``train.lr``; the
  learning rate with the highest mean validation score is chosen (ties: higher mean validation
  answer-token accuracy, then the larger learning rate). The means are taken over the seeds
  that every rate has run (paired), so that a rate run at more seeds is not judged on seeds
  the others lack; only when the rates share no seed, over each rate's own seeds. Averaging
  over seeds makes it a choice of configuration, not of a lucky seed.
- **Seed**: within that learning rate, the run with the highest validation score (ties: higher
  validation answer-token accuracy, then the lower seed).
- A (task, model) without any selectable run is **not selectable**: no seed is chosen and no
  "selected" number is shown; seeds succeeding and mean ± std are still reported.
- The **cohort** of a (task, model), over which "k of N seeds succeed" and mean ± std are
  computed, is every run at the chosen learning rate (selectable or not); when nothing is
  selectable, every run (all learning rates, flagged ``mixed_lrs`` when there are several).
- A run **succeeds** when its test sequence accuracy is ≥ 99% at *every* evaluated test length,
  in-distribution ones included. This is strict on purpose: a mean of ≥ 99% over the grid would
  pass a run that is perfect up to 400 and collapses at 500.
- ``select="test"`` is the legacy display (what the report did before the splits): the best seed
  by test OOD sequence accuracy (ties: OOD token accuracy, longest length at ≥ 99%, lower seed),
  over every run of the (task, model). Reports made that way say so on every table.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import yaml

THRESHOLD = 0.99
SELECT_MODES = ("validation", "test")


# --------------------------------------------------------------------------- per run

def succeeds(rows: list[dict]) -> bool:
    """Every evaluated test length at sequence accuracy >= 99%."""
    return bool(rows) and all(r["sequence_accuracy"] >= THRESHOLD for r in rows)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r.get(key) for r in rows]
    if not values or any(v is None for v in values):
        return None
    return statistics.fmean(values)


def validation_record(val: dict | None, test: dict) -> dict:
    """What selection needs of a run's validation results (``val``: its eval-validation.json,
    already checked, or None): ``status`` is ``ok``, ``missing`` or ``stale``."""
    if val is None:
        return {"status": "missing"}
    if (val["task"], val["model"], val["seed"]) != (test["task"], test["model"], test["seed"]):
        return {"status": "stale", "why": "another task, model or seed than eval.json"}
    if val.get("steps") != test.get("steps"):
        return {"status": "stale", "why": f"{val.get('steps')} steps, eval.json "
                                          f"{test.get('steps')}"}
    keep = ("length", "samples", "sequence_accuracy", "answer_token_accuracy")
    rows = sorted(({k: r[k] for k in keep if k in r} for r in val["lengths"]),
                  key=lambda r: r["length"])
    return {"status": "ok", "sequence_accuracy": _mean(rows, "sequence_accuracy"),
            "answer_token_accuracy": _mean(rows, "answer_token_accuracy"), "lengths": rows}


def run_lr(e: dict, run_dir: Path | None) -> float | None:
    """A run's learning rate: its eval.json's ``lr``, else its config.yaml's ``train.lr`` (runs
    evaluated before eval.json recorded it), else None."""
    if isinstance(e.get("lr"), (int, float)):
        return float(e["lr"])
    if run_dir is None:
        return None
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        return float(cfg["train"]["lr"])
    except (OSError, yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- per (task, model)

def _or(value, default):
    return default if value is None else value


def _val_rank(r: dict) -> tuple:
    v = r["validation"]
    return (v["sequence_accuracy"], _or(v["answer_token_accuracy"], -1.0), -r["seed"])


def _test_rank(r: dict) -> tuple:
    s = r["summary"]
    return (_or(s["ood_sequence_accuracy"], -1.0), _or(s["ood_token_accuracy"], -1.0),
            s["max_length_at_99"], -r["seed"])


def choose(runs: list[dict], select: str = "validation") -> dict:
    """The selection for the runs of one (task, model) (records of ``report_data.run_record``):
    ``{"selected": run or None, "lr": chosen lr or None, "cohort": runs, "mixed_lrs": bool}``."""
    if select not in SELECT_MODES:
        raise ValueError(f"select must be one of {SELECT_MODES}, got {select!r}")
    lrs = {r["lr"] for r in runs}
    if select == "test":
        best = max(runs, key=_test_rank)
        return {"selected": best, "lr": best["lr"], "cohort": runs, "mixed_lrs": len(lrs) > 1}
    ok = [r for r in runs if r["validation"]["status"] == "ok"
          and r["validation"]["sequence_accuracy"] is not None]
    if not ok:
        return {"selected": None, "lr": None, "cohort": runs, "mixed_lrs": len(lrs) > 1}
    by_lr: dict = {}
    for r in ok:
        by_lr.setdefault(r["lr"], []).append(r)

    # the seeds every rate has run: the means compare the rates on the same seeds
    common = set.intersection(*({r["seed"] for r in group} for group in by_lr.values()))

    # each rate's runs on those seeds (its own when the rates share none): what is compared
    compared = {lr: [r for r in group if r["seed"] in common] or group
                for lr, group in by_lr.items()}

    def lr_rank(lr):
        answer = [r["validation"]["answer_token_accuracy"] for r in compared[lr]]
        return (statistics.fmean(r["validation"]["sequence_accuracy"] for r in compared[lr]),
                statistics.fmean(answer) if None not in answer else -1.0, _or(lr, -1.0))

    ranks = {lr: lr_rank(lr) for lr in by_lr}
    lr = max(ranks, key=ranks.get)
    return {"selected": max(by_lr[lr], key=_val_rank), "lr": lr,
            "cohort": [r for r in runs if r["lr"] == lr], "mixed_lrs": False,
            "rates": _rates(runs, compared, ranks, lr)}


def _rates(runs: list[dict], compared: dict, ranks: dict, chosen) -> list[dict]:
    """What the learning-rate choice compared, one entry per rate with validation results:
    its seeds, the seeds the comparison used (``compared``: those every rate has run, or its
    own), its mean validation sequence accuracy over them (``ranks``' first term), its seeds
    succeeding (every run at that rate), and whether it was chosen."""
    rates = []
    for lr in sorted(compared, key=lambda x: _or(x, -1.0)):
        everyone = [r for r in runs if r["lr"] == lr]
        k, n = success_count(everyone)
        rates.append({"lr": lr, "seeds": sorted(r["seed"] for r in everyone),
                      "compared_seeds": sorted(r["seed"] for r in compared[lr]),
                      "validation_sequence_accuracy": ranks[lr][0],
                      "succeeding": k, "n_seeds": n, "chosen": lr == chosen})
    return rates


def success_count(cohort: list[dict]) -> tuple[int, int]:
    """(seeds that succeed, seeds) in ``cohort``."""
    return sum(succeeds(r["lengths"]) for r in cohort), len(cohort)


# --------------------------------------------------------------------------- the sweep's summary

def format_lr(lr: float | None) -> str:
    """``1e-3``, ``3e-4``, ``2.5e-4``: the mantissa without trailing zeros, the exponent bare."""
    if lr is None:
        return "?"
    mantissa, exponent = f"{lr:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"
