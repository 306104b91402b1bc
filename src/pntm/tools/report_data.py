"""The numbers of ``pntm report``: every finished run of a folder, read and checked, and one
aggregate per (task, model), the content of ``benchmark.json`` (:mod:`pntm.tools.report` writes
it; :mod:`pntm.tools.report_tables` renders it).

Decisions (``benchmark.json`` holds short forms of them under ``definitions``):

- A run counts once it has an ``eval.json`` (the sweep writes it last, atomically). Run folders
  without one (a ``config.yaml`` or ``error.txt`` but no ``eval.json``: still training, or
  failed) are listed as unfinished.
- Each run's summary is recomputed from its per-length rows by ``metrics.summarize``, so old and
  new runs are measured alike: ID sequence accuracy is the mean over the evaluated lengths inside
  the training range, OOD sequence / token accuracy the mean over those outside it, and the
  **longest length at ≥ 99%** is the largest evaluated length L such that *every* evaluated
  length ≤ L (in-distribution ones included) has sequence accuracy ≥ 0.99; 0 when the shortest
  evaluated length already falls below. Lengths that were not evaluated cannot break the run.
- The **selected seed** (and learning rate) of a (task, model) is chosen on the validation split
  (``eval-validation.json``), never on test: :mod:`pntm.tools.selection` holds the rules and
  tie-breaks. A (task, model) whose runs have no validation results is shown as **not
  selectable** (n/s), never silently chosen by test. ``--select test`` gives the legacy display
  (best seed by test OOD sequence accuracy), and every table then says "selected on test".
  The OOD token accuracies, ID sequence accuracy and longest length shown per (task, model) are
  the selected seed's; **mean ± std** is over the cohort (the seeds at the chosen learning
  rate), with the sample standard deviation (n − 1), undefined (null) with a single seed.
- **Seeds succeeding**: k of N seeds of the cohort whose test sequence accuracy is ≥ 99% at every
  evaluated test length (:func:`pntm.tools.selection.succeeds`; stricter than a mean of ≥ 99%).
- A model **fails out of distribution** on a task when its selected seed does not succeed in
  that sense.
- Steps and training wall time per (task, model) are means over its seeds (the JSON also holds
  the total time).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from pntm import splits, tasks
from pntm.errors import PntmError
from pntm.metrics import summarize
from pntm.provenance import provenance
from pntm.safeio import read_json
from pntm.tools import selection

THRESHOLD = selection.THRESHOLD
MODEL_ORDER = ("pntm", "ntm", "lstm", "transformer", "mamba", "deltanet", "slstm")
EVAL_FILE = "eval.json"
PROVENANCE_KEYS = ("git_commit", "git_dirty", "command", "device", "created", "machine", "torch",
                   "threads")
DEFINITIONS = {
    "id_sequence_accuracy": "mean sequence accuracy over the evaluated lengths inside "
                            "train_lengths",
    "ood_sequence_accuracy": "mean sequence accuracy over the evaluated lengths outside "
                             "train_lengths",
    "ood_token_accuracy": "mean token accuracy (EOS included) over the evaluated lengths "
                          "outside train_lengths",
    "ood_answer_token_accuracy": "mean over the evaluated lengths outside train_lengths of the "
                                 "per-length answer-token accuracy (EOS excluded; decoded "
                                 "answer cut at its first EOS, compared position by position, "
                                 "counted = max(answer length, decoded length))",
    "max_length_at_99": "the largest evaluated length L such that every evaluated length <= L "
                        "has sequence accuracy >= 0.99 (0 if the shortest one is below)",
    "selected_seed": "select=validation: the learning rate with the highest mean validation "
                     "sequence accuracy over its seeds (ties: mean validation answer-token "
                     "accuracy, then the larger lr), then its seed with the highest validation "
                     "sequence accuracy (ties: validation answer-token accuracy, then the lower "
                     "seed); runs without current validation results are never selected. "
                     "select=test (legacy): highest ood_sequence_accuracy; ties: higher "
                     "ood_token_accuracy, then higher max_length_at_99, then lower seed",
    "validation_sequence_accuracy": "mean sequence accuracy over the validation lengths "
                                    "(eval-validation.json, 41-64 by default)",
    "succeeding": "seeds of the cohort (the runs at the chosen lr) whose test sequence accuracy "
                  "is >= 0.99 at every evaluated test length",
    "std": "sample standard deviation over the cohort's seeds (n - 1); null with one seed",
    "fails_ood": "the selected seed does not succeed (null when nothing is selectable)",
}



# --------------------------------------------------------------------------- reading the runs

def _problem(data) -> str | None:
    """What makes ``data`` unusable as an eval.json, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in (("task", str), ("model", str), ("seed", int), ("train_lengths", list),
                      ("lengths", list)):
        if not isinstance(data.get(key), kind):
            return f"no valid '{key}'"
    if len(data["train_lengths"]) != 2 or not all(_is_int(n) for n in data["train_lengths"]):
        return "'train_lengths' is not [low, high] (integers)"
    if not _is_int(data["seed"]):
        return "'seed' is not an integer"
    if not data["lengths"]:
        return "no per-length rows"
    for i, row in enumerate(data["lengths"], 1):
        if not isinstance(row, dict) or not _is_int(row.get("length")) or row["length"] < 1:
            return (f"a per-length row (row {i}) lacks length, sequence_accuracy or "
                    "token_accuracy: 'length' must be an integer >= 1")
        for key in ("sequence_accuracy", "token_accuracy"):
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:  # NaN fails too: it would flow into benchmark.json
                return (f"a per-length row (row {i}) lacks length, sequence_accuracy or "
                        f"token_accuracy: '{key}' must be a number in [0, 1]")
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_eval(path: Path) -> dict:
    """One eval.json, checked; a corrupt or incomplete file raises PntmError naming it."""
    data = read_json(path)  # a regular file, JSON not nested too deeply
    problem = _problem(data)
    if problem:
        raise PntmError(f"{path} is not a usable eval.json: {problem}")
    return data


def _order_key(name: str, order) -> tuple:
    order = list(order)
    return (order.index(name) if name in order else len(order), name)


def task_key(task: str) -> tuple:
    """Tasks in the benchmark's order (``pntm tasks``), then any others by name."""
    return _order_key(task, tasks.TASKS)


def model_key(model: str) -> tuple:
    return _order_key(model, MODEL_ORDER)


def load_evals(runs_dir: str | Path) -> list[dict]:
    """Every ``eval.json`` one level below ``runs_dir`` (with ``run``: its folder's name, and
    ``validation_report``: its eval-validation.json, checked, or None), in task, model and seed
    order."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise PntmError(f"no such results folder: {runs_dir}")
    evals = []
    for path in sorted(runs_dir.glob(f"*/{EVAL_FILE}")):
        data = read_eval(path)
        data["run"] = path.parent.name
        val_path = path.parent / splits.FILES["validation"]
        data["validation_report"] = read_eval(val_path) if val_path.is_file() else None
        data["lr"] = selection.run_lr(data, path.parent)
        evals.append(data)
    if not evals:
        raise PntmError(f"no eval.json found in the run folders of {runs_dir}")
    return sorted(evals, key=lambda e: (task_key(e["task"]), model_key(e["model"]), e["seed"]))


def unfinished_runs(runs_dir: str | Path) -> list[str]:
    """Run folders (a config.yaml or error.txt) that have no eval.json yet."""
    return sorted(p.name for p in Path(runs_dir).iterdir() if p.is_dir()
                  and not (p / EVAL_FILE).exists()
                  and ((p / "config.yaml").exists() or (p / "error.txt").exists()))


# --------------------------------------------------------------------------- numbers

def run_record(e: dict) -> dict:
    """One finished run as benchmark.json holds it, its summary recomputed from its rows."""
    keep = ("length", "samples", "sequence_accuracy", "token_accuracy", "answer_token_accuracy")
    rows = sorted(({k: row[k] for k in keep if k in row} for row in e["lengths"]),
                  key=lambda r: r["length"])
    lo, hi = e["train_lengths"]
    # a run on JSONL data: ID = the lengths of its training file, OOD = the longer ones
    spec = e.get("id_lengths")
    id_lengths = tasks.parse_lengths(spec) if isinstance(spec, str) else None
    # a run re-evaluated from its weights (pntm eval FOLDER) keeps what trained it apart
    trained_by = e.get("training_provenance")
    prov = e.get("provenance") if isinstance(e.get("provenance"), dict) else {}
    evaluated_by = None
    if isinstance(trained_by, dict):
        prov, evaluated_by = trained_by, {k: prov.get(k) for k in PROVENANCE_KEYS}
    return {"run": e["run"], "task": e["task"], "model": e["model"], "seed": e["seed"],
            "lr": e.get("lr"), "train_lengths": [lo, hi],
            "summary": summarize(rows, (lo, hi), id_lengths),
            "succeeds": selection.succeeds(rows),
            "validation": selection.validation_record(e.get("validation_report"), e),
            "steps": e.get("steps"), "train_seconds": e.get("train_seconds"),
            "eval_seconds": e.get("eval_seconds"), "early_stopped": e.get("early_stopped"),
            "samples": e.get("samples"), "eval_seed": e.get("eval_seed"),
            "provenance": {k: prov.get(k) for k in PROVENANCE_KEYS},
            "evaluated_by": evaluated_by,
            "lengths": rows}


def mean_std(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the values that are not None (std: None below two
    values, mean: None with none)."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def _spread(cohort: list[dict], chosen: dict | None, key: str) -> dict:
    values = [r["summary"][key] for r in cohort if r["summary"][key] is not None]
    mean, std = mean_std(values)
    return {"selected": None if chosen is None else chosen["summary"][key], "mean": mean,
            "std": std, "min": min(values, default=None), "max": max(values, default=None)}


def aggregate(runs: list[dict], select: str = "validation") -> dict:
    """The runs of one (task, model) in one entry (the definitions: module docstring)."""
    pick = selection.choose(runs, select)
    chosen, cohort = pick["selected"], pick["cohort"]
    k, n = selection.success_count(cohort)
    steps = [r["steps"] for r in cohort if r["steps"] is not None]
    seconds = [r["train_seconds"] for r in cohort if r["train_seconds"] is not None]
    longest = [r["summary"]["max_length_at_99"] for r in cohort]
    status = [r["validation"]["status"] for r in runs]
    return {"task": runs[0]["task"], "model": runs[0]["model"], "selection": select,
            "selectable": chosen is not None,
            "seeds": [r["seed"] for r in cohort], "n_seeds": n, "succeeding": k,
            "lrs": sorted({r["lr"] for r in runs if r["lr"] is not None}),
            "selected_lr": pick["lr"], "mixed_lrs": pick["mixed_lrs"],
            "rates": pick.get("rates", []),
            "selected_seed": None if chosen is None else chosen["seed"],
            "selected_run": None if chosen is None else chosen["run"],
            "validation_missing": status.count("missing"), "validation_stale": status.count("stale"),
            "validation_sequence_accuracy": (chosen["validation"].get("sequence_accuracy")
                                             if chosen is not None else None),
            "ood_sequence_accuracy": _spread(cohort, chosen, "ood_sequence_accuracy"),
            "ood_token_accuracy": _spread(cohort, chosen, "ood_token_accuracy"),
            "ood_answer_token_accuracy": _spread(cohort, chosen, "ood_answer_token_accuracy"),
            "id_sequence_accuracy": _spread(cohort, chosen, "id_sequence_accuracy"),
            "max_length_at_99": {"selected": None if chosen is None else
                                 chosen["summary"]["max_length_at_99"],
                                 "min": min(longest), "max": max(longest)},
            "steps": {"mean": mean_std(steps)[0], "max": max(steps, default=None)},
            "train_seconds": {"mean": mean_std(seconds)[0],
                              "total": sum(seconds) if seconds else None},
            "fails_ood": None if chosen is None else not chosen["succeeds"]}


def rounded(obj, digits: int = 6):
    """``obj`` with its floats rounded to ``digits`` decimals (means need no 17 digits)."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, digits) for v in obj]
    return obj


def group_runs(runs: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Runs by (task, model), in report order (``runs`` is already sorted)."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in runs:
        groups[r["task"], r["model"]].append(r)
    return dict(groups)


def build_benchmark(runs_dir: str, evals: list[dict], unfinished: list[str],
                    command: str, select: str = "validation") -> dict:
    """The content of benchmark.json."""
    runs = [run_record(e) for e in evals]
    return {"generated_by": provenance(command), "runs_dir": runs_dir,
            "threshold": THRESHOLD, "selection": select, "definitions": DEFINITIONS,
            "aggregates": [rounded(aggregate(g, select)) for g in group_runs(runs).values()],
            "unfinished_runs": unfinished, "runs": runs}
