"""The benchmark report: ``pntm report RUNS_DIR [--out RESULTS.md] [--json PATH] [--plots DIR]``.

Every figure in ``RESULTS.md`` comes from an ``eval.json`` under ``results/``. The report reads
each ``RUNS_DIR/*/eval.json`` and writes three things:

- ``--json`` (default ``RUNS_DIR/benchmark.json``): one entry per finished run (per-length and
  summary metrics, steps, training wall time, provenance: commit, dirty flag, command, device),
  one aggregate per (task, model), and the command and pntm commit that produced the file.
- ``--out`` (default ``RESULTS.md``): markdown tables between the markers
  ``<!-- report RUNS_DIR -->`` and ``<!-- /report RUNS_DIR -->`` (appended if absent), so prose
  around them is kept, one file can hold the blocks of several folders, and the numbers are
  always regenerated, never typed.
- ``--plots`` (default ``RUNS_DIR/plots``): one PNG per task, sequence accuracy against length,
  when matplotlib is installed (otherwise a one-line notice, not an error).

Decisions (``benchmark.json`` holds short forms of them under ``definitions``):

- A run counts once it has an ``eval.json`` (the sweep writes it last, atomically). Run folders
  without one (a ``config.yaml`` or ``error.txt`` but no ``eval.json``: still training, or
  failed) are listed as unfinished.
- Each run's summary is recomputed from its per-length rows by ``evaluate.summarize``, so old and
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
- The JSON and the plots go inside ``RUNS_DIR`` by default, so reports of different folders
  never overwrite each other; ``make report`` names ``results/benchmark.json`` and
  ``results/plots``.
- The comparison with published numbers (:mod:`pntm.tools.published`) uses their metric, per-token
  accuracy over the answer tokens (EOS excluded), averaged over the out-of-distribution lengths
  (``ood_answer_token_accuracy``; :mod:`pntm.evaluate` gives the exact definition and how our
  autoregressive decoding differs from theirs): the selected seed's, and beside it the highest
  over the cohort (their own protocol is the maximum over seeds and learning rates, i.e. chosen
  on their test numbers). A model "solves" a task there at ≥ 99%. Runs evaluated before this
  metric existed show "—" until ``pntm eval FOLDER`` re-measures them.
"""

from __future__ import annotations

import io
import os
import shlex
import statistics
from collections import defaultdict
from pathlib import Path

from pntm import splits, tasks
from pntm.errors import PntmError
from pntm.evaluate import summarize
from pntm.provenance import provenance
from pntm.runs import atomic_write, atomic_write_json, atomic_write_text
from pntm.safeio import read_json
from pntm.tools import published, selection

THRESHOLD = selection.THRESHOLD
SELECTED_ON = {"validation": "selected on validation",
               "test": "selected on TEST (legacy display, not the protocol)"}
PROTOCOL = {
    "validation": "_Protocol: every choice (learning rate, seed) is made on the validation split "
                  "(lengths 41-64, examples of their own); the test grid is only reported._",
    "test": "_Legacy display: the best seed is chosen on the test numbers themselves, which "
            "overstates them; the protocol selects on validation (`pntm report --select "
            "validation`)._",
}
MARKERS = ("o", "s", "^", "D", "v")
LINE_WIDTHS = (5.0, 3.0, 1.6, 0.8)
MODEL_ORDER = ("pntm", "ntm", "lstm", "transformer", "mamba", "deltanet", "slstm")
EVAL_FILE, JSON_FILE, PLOTS_DIR = "eval.json", "benchmark.json", "plots"
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


def markers(runs_dir: str, kind: str = "report") -> tuple[str, str]:
    return f"<!-- {kind} {runs_dir} -->", f"<!-- /{kind} {runs_dir} -->"


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


# --------------------------------------------------------------------------- markdown pieces

def percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def mean_pm_std(spread: dict) -> str:
    if spread["mean"] is None:
        return "—"
    if spread["std"] is None:
        return f"{percent(spread['mean'])} (1 seed)"
    return f"{percent(spread['mean'])} ± {percent(spread['std'])}"


def number(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _ordered(aggs: list[dict]) -> tuple[list[str], list[str], dict]:
    by_pair = {(a["task"], a["model"]): a for a in aggs}
    task_list = sorted({a["task"] for a in aggs}, key=task_key)
    model_list = sorted({a["model"] for a in aggs}, key=model_key)
    return task_list, model_list, by_pair


def _selected_cell(a: dict) -> str:
    """The selected seed's OOD sequence accuracy with ✓ / ✗ (it succeeds or not) and k/N seeds
    succeeding; "n/s" when nothing is selectable."""
    k_of_n = f" ({a['succeeding']}/{a['n_seeds']})"
    if not a["selectable"]:
        return "n/s" + k_of_n
    mark = " ✗" if a["fails_ood"] else " ✓"
    return percent(a["ood_sequence_accuracy"]["selected"]) + mark + k_of_n


def matrix_table(aggs: list[dict]) -> str:
    """Task × model: the selected seed's OOD sequence accuracy, ✓ / ✗ and seeds succeeding."""
    task_list, model_list, by_pair = _ordered(aggs)
    lines = ["| task | " + " | ".join(model_list) + " |", "|---|" + "---|" * len(model_list)]
    for task in task_list:
        cells = [_selected_cell(by_pair[task, m]) if (task, m) in by_pair else "—"
                 for m in model_list]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _selected_label(a: dict) -> str:
    if not a["selectable"]:
        why = []
        if a["validation_missing"]:
            why.append(f"{a['validation_missing']} without validation")
        if a["validation_stale"]:
            why.append(f"{a['validation_stale']} stale")
        return f"not selectable ({', '.join(why) or 'no validation'})"
    lr = f", lr {selection.format_lr(a['selected_lr'])}" if len(a["lrs"]) > 1 else ""
    left = a["validation_missing"] + a["validation_stale"]
    left = f" ({left} run{'s' if left > 1 else ''} without current validation)" if left else ""
    return f"{a['selected_seed']}{lr}{left}"


def summary_table(aggs: list[dict]) -> str:
    lines = ["| task | model | seeds succeeding | selected seed | val seq acc | OOD seq acc "
             "(selected) | OOD seq acc (mean ± std) | OOD answer-token acc | OOD token acc "
             "| ID seq acc | longest length at ≥99% | steps | train time (s) |",
             "|---" * 13 + "|"]
    for a in aggs:
        lines.append(
            f"| {a['task']} | {a['model']} | {a['succeeding']}/{a['n_seeds']} "
            f"| {_selected_label(a)} | {percent(a['validation_sequence_accuracy'])} "
            f"| {percent(a['ood_sequence_accuracy']['selected'])} "
            f"| {mean_pm_std(a['ood_sequence_accuracy'])} "
            f"| {percent(a['ood_answer_token_accuracy']['selected'])} "
            f"| {percent(a['ood_token_accuracy']['selected'])} "
            f"| {percent(a['id_sequence_accuracy']['selected'])} "
            f"| {number(a['max_length_at_99']['selected'])} | {number(a['steps']['mean'])} "
            f"| {number(a['train_seconds']['mean'])} |")
    return "\n".join(lines)


def failures_paragraph(aggs: list[dict]) -> str:
    """Per model, the tasks it fails out of distribution, in words generated from the data."""
    task_list, model_list, by_pair = _ordered(aggs)
    lines = []
    for model in model_list:
        mine = [by_pair[t, model] for t in task_list if (t, model) in by_pair]
        failed = [f"{a['task']} ({percent(a['ood_sequence_accuracy']['selected'])}%"
                  f"{_unlearned(a)})" for a in mine if a["fails_ood"]]
        held = [a["task"] for a in mine if a["fails_ood"] is False]
        unselected = [a["task"] for a in mine if a["fails_ood"] is None]
        tail = f"; not selectable: {', '.join(unselected)}" if unselected else ""
        if not failed and held:
            lines.append(f"- `{model}` succeeds on every task it ran here with a selectable "
                         f"seed ({', '.join(held)}){tail}.")
        elif failed:
            tail = (f"; succeeds on {', '.join(held)}" if held else "") + tail
            lines.append(f"- `{model}` fails out of distribution on {len(failed)} of "
                         f"{len(mine)} tasks: {', '.join(failed)}{tail}.")
        else:
            lines.append(f"- `{model}`: nothing selectable ({', '.join(unselected)}).")
    return "\n".join(lines)


def _unlearned(a: dict) -> str:
    """A note when the selected seed did not even learn the training lengths."""
    id_accuracy = a["id_sequence_accuracy"]["selected"]
    if id_accuracy is None or id_accuracy >= THRESHOLD:
        return ""
    return f"; not learned in distribution either: ID {percent(id_accuracy)}%"


def published_rows(aggs: list[dict]) -> list[dict]:
    """(task, model) pairs that both the published table and these runs have."""
    by_pair = {(a["task"], a["model"]): a for a in aggs}
    rows = []
    for task, model in published.comparable_pairs():
        a = by_pair.get((task, model))
        if a is None:
            continue
        theirs = published.token_accuracy(task, model)
        ours = a["ood_answer_token_accuracy"]["selected"]
        rows.append({"task": task, "model": model, "published": theirs, "ours": ours,
                     "spread": a["ood_answer_token_accuracy"], "n_seeds": a["n_seeds"],
                     "definition": published.definition(task),
                     "same_verdict": None if ours is None else
                     (theirs >= THRESHOLD) == (ours >= THRESHOLD)})
    return rows


def _verdict(x: float) -> str:
    return "solves" if x >= THRESHOLD else "fails"


def published_table(rows: list[dict]) -> str:
    lines = ["| task | definition | model | published | ours: selected seed | ours: max over "
             "seeds | ours: mean ± std | verdict (≥ 99%) |", "|---" * 8 + "|"]
    for r in rows:
        if r["same_verdict"] is None:
            verdict = "— (not measured or not selectable)"
        elif r["same_verdict"]:
            verdict = f"both: {_verdict(r['ours'])}"
        else:
            verdict = f"differs: published {_verdict(r['published'])}, ours {_verdict(r['ours'])}"
        lines.append(f"| {r['task']} | {r['definition']} | {r['model']} "
                     f"| {percent(r['published'])} | {percent(r['ours'])} "
                     f"| {percent(r['spread']['max'])} (of {r['n_seeds']}) "
                     f"| {mean_pm_std(r['spread'])} | {verdict} |")
    return "\n".join(lines)


def published_paragraph(rows: list[dict], aggs: list[dict]) -> str:
    """Agreement with the published verdicts, and the comparable pairs not run yet."""
    have = {(a["task"], a["model"]) for a in aggs}
    agree = [f"{r['model']} on {r['task']}" for r in rows if r["same_verdict"]]
    differ = [f"{r['model']} on {r['task']} (published {percent(r['published'])}, ours "
              f"{percent(r['ours'])})" for r in rows if r["same_verdict"] is False]
    unknown = [f"{r['model']} on {r['task']}" for r in rows if r["same_verdict"] is None]
    missing = [f"{m} on {t}" for t, m in published.comparable_pairs() if (t, m) not in have]
    lines = []
    if agree:
        lines.append(f"- Same verdict as published: {', '.join(agree)}.")
    if differ:
        lines.append(f"- Different verdict: {', '.join(differ)}.")
    if unknown:
        lines.append(f"- No answer-token accuracy of a selected seed yet (no validation, or "
                     f"evaluated before the metric existed): {', '.join(unknown)}.")
    if missing:
        lines.append(f"- Not in this folder yet: {', '.join(missing)}.")
    return "\n".join(lines)


def length_table(runs: list[dict], title_runs: str) -> str:
    """Sequence accuracy (%) of ``runs`` at every out-of-distribution length evaluated."""
    def ood(r):
        lo, hi = r["train_lengths"]
        return [row for row in r["lengths"] if not lo <= row["length"] <= hi]
    lengths = sorted({row["length"] for r in runs for row in ood(r)})
    lines = [f"| task | model | {title_runs} | " + " | ".join(str(n) for n in lengths) + " |",
             "|---|---|---|" + "---|" * len(lengths)]
    for r in runs:
        by_length = {row["length"]: row["sequence_accuracy"] for row in ood(r)}
        cells = [percent(by_length[n]) if n in by_length else "" for n in lengths]
        lines.append(f"| {r['task']} | {r['model']} | {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _validation_cell(r: dict) -> str:
    v = r["validation"]
    return percent(v.get("sequence_accuracy")) if v["status"] == "ok" else v["status"]


def seed_table(runs: list[dict]) -> str:
    lines = ["| task | model | seed | lr | steps | train time (s) | val seq acc | ID seq acc "
             "| OOD seq acc | OOD answer-token acc | OOD token acc | longest length at ≥99% "
             "| succeeds |", "|---" * 13 + "|"]
    for r in runs:
        s = r["summary"]
        lines.append(
            f"| {r['task']} | {r['model']} | {r['seed']} | {selection.format_lr(r['lr'])} "
            f"| {number(r['steps'])} | {number(r['train_seconds'])} | {_validation_cell(r)} "
            f"| {percent(s['id_sequence_accuracy'])} | {percent(s['ood_sequence_accuracy'])} "
            f"| {percent(s['ood_answer_token_accuracy'])} | {percent(s['ood_token_accuracy'])} "
            f"| {s['max_length_at_99']} | {'yes' if r['succeeds'] else 'no'} |")
    return "\n".join(lines)


def provenance_list(runs: list[dict]) -> str:
    """Runs grouped by what produced them (command, commit, dirty flag, device, machine)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        p = r["provenance"]
        groups[p["command"], p["git_commit"], p["git_dirty"], p["device"], p["machine"],
               p["torch"]].append(r)
    lines = []
    for (command, commit, dirty, device, machine, torch), members in groups.items():
        state = {False: "clean", True: "**uncommitted changes**", None: "dirty flag unknown"}
        created = sorted(str(m["provenance"]["created"]) for m in members)
        when = created[0] if created[0] == created[-1] else f"{created[0]} to {created[-1]}"
        lines.append(f"- {len(members)} run{'s' if len(members) > 1 else ''}: "
                     f"`{command or '?'}` at commit `{str(commit or '?')[:10]}` "
                     f"({state.get(dirty, '?')}), device {device or '?'}, {machine or '?'}, "
                     f"torch {torch or '?'}, {when}")
    return "\n".join(lines)


def link(path: Path, out: Path) -> str:
    """``path`` relative to the folder of the markdown file ``out``, with forward slashes."""
    return Path(os.path.relpath(path, out.parent)).as_posix()


# --------------------------------------------------------------------------- the block

def render(bench: dict, out: Path, json_path: Path, plot_paths: dict[str, Path],
           plot_notice: str | None) -> str:
    """The marked markdown block for ``bench`` (nothing in it changes unless the data does)."""
    runs_dir, runs, aggs = bench["runs_dir"], bench["runs"], bench["aggregates"]
    start, end = markers(runs_dir)
    by_name = {r["run"]: r for r in runs}
    chosen = [by_name[a["selected_run"]] for a in aggs if a["selected_run"] is not None]
    on = SELECTED_ON[bench["selection"]]
    parts = [
        start,
        f"_Generated by `{bench['generated_by']['command']}` from the {len(runs)} `eval.json` "
        f"files of `{runs_dir}`; every run with its per-length numbers and provenance is in "
        f"[`{link(json_path, out)}`]({link(json_path, out)}). Do not edit by hand._",
    ]
    if bench["unfinished_runs"]:
        parts.append(f"_Not finished yet (no eval.json), left out: "
                     f"{', '.join(bench['unfinished_runs'])}._")
    parts += [
        PROTOCOL[bench["selection"]],
        f"**Out-of-distribution sequence accuracy (%) of the seed {on}** (✓ / ✗: it is / is "
        "not ≥ 99% at every test length; (k/N): seeds succeeding so; n/s: not selectable, no "
        "validation results; —: no finished run)",
        matrix_table(aggs),
        f"**Per task and model** (selected seed: {on}; sequence accuracy: the whole answer and "
        "its EOS right, by greedy decoding; val: mean over the validation lengths; ID / OOD: "
        "mean over the training lengths / the out-of-distribution test grid; answer-token acc: "
        "per-token accuracy on the answer tokens, EOS excluded (Delétang et al.'s metric); "
        "mean ± sample std over the seeds at the selected learning rate; steps and training "
        "time in s, evaluation excluded: means per seed; exact definitions under `definitions` "
        "in the JSON)",
        summary_table(aggs),
        f"**Which models fail out of distribution** (generated from the table above: the seed "
        f"{on} is below 99% at some test length)",
        failures_paragraph(aggs),
    ]
    parts += published_section(aggs)
    parts += plots_section(plot_paths, plot_notice, out)
    parts += [
        f"**Sequence accuracy (%) at each out-of-distribution length, seed {on}**",
        length_table(chosen, "selected seed"),
        "<details><summary>Every seed</summary>",
        seed_table(runs),
        length_table(runs, "seed"),
        "</details>",
        "**Provenance** (per run in the JSON)",
        provenance_list(runs),
        end,
    ]
    return "\n\n".join(parts)


def published_section(aggs: list[dict]) -> list[str]:
    rows = published_rows(aggs)
    head = (f"**Published vs ours** ({published.SOURCE}; ours: answer-token accuracy, EOS "
            "excluded, the mean over our out-of-distribution grid, of the selected seed and the "
            "highest of the seeds. Definition \"theirs\": our task built to their definition, "
            "digits compare (up to their non-autoregressive decoding and their every-length "
            "mean); \"ours\": our own task of that name, compare verdicts, not digits.)")
    if not rows:
        names = ", ".join(sorted({m for _, m in published.comparable_pairs()}, key=model_key))
        return [head, f"No run here of a model the published table shares with us ({names}) "
                      "on one of its tasks."]
    return [head, published_table(rows), published_paragraph(rows, aggs)]


def plots_section(plot_paths: dict[str, Path], notice: str | None, out: Path) -> list[str]:
    if notice:
        return [f"_No plots: {notice}._"]
    if not plot_paths:
        return []
    images = " ".join(f"![{task}]({link(path, out)})" for task, path in plot_paths.items())
    return ["**Sequence accuracy against length** (log scale; one line per model, its selected "
            "seed; shaded: the range over seeds; grey: the training lengths)", images]


# --------------------------------------------------------------------------- plots

def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else why not (for a one-line notice)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    return None


def seed_range(runs: list[dict]) -> tuple[list[int], list[float], list[float]]:
    """Lengths every seed evaluated, with the lowest and highest sequence accuracy there."""
    tables = [{row["length"]: row["sequence_accuracy"] for row in r["lengths"]} for r in runs]
    common = sorted(set.intersection(*(set(t) for t in tables)))
    return (common, [min(t[n] for t in tables) for n in common],
            [max(t[n] for t in tables) for n in common])


def plot_task(path: Path, task: str, groups: list[list[dict]],
              select: str = "validation") -> None:
    """Sequence accuracy against length for one task: per model its selected seed as a line
    (none when nothing is selectable), the range over its seeds shaded, the training lengths
    greyed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4))
    try:
        lo, hi = groups[0][0]["train_lengths"]
        ax.axvspan(lo, hi, color="0.85", alpha=0.5, lw=0, label=f"training lengths {lo}–{hi}")
        ax.axvline(hi, color="0.4", ls=":", lw=1)
        longest = max(row["length"] for g in groups for r in g for row in r["lengths"])
        for i, runs in enumerate(groups):
            chosen = selection.choose(runs, select)["selected"]
            model, n = runs[0]["model"], len(runs)
            color = f"C{i % 10}"
            if chosen is not None:
                xs = [row["length"] for row in chosen["lengths"]]
                ys = [100 * row["sequence_accuracy"] for row in chosen["lengths"]]
                # models often coincide at 100%: each later line thinner, with its own marker
                ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], ms=3, zorder=3 + i,
                        lw=LINE_WIDTHS[min(i, len(LINE_WIDTHS) - 1)], color=color,
                        label=f"{model} (selected on {select}, of {n} seeds)" if n > 1
                        else f"{model} (1 seed)")
            if n > 1 or chosen is None:
                common, low, high = seed_range(runs)
                ax.fill_between(common, [100 * v for v in low], [100 * v for v in high],
                                color=color, alpha=0.2, lw=0,
                                label=None if chosen is not None else
                                f"{model} (not selectable: range of {n} seeds)")
        ax.set_xscale("log")
        ax.set_xlim(lo, longest * 1.05)
        ticks = [t for t in (1, 2, 5, 10, 20, hi, 100, 200, 500, 1000, 2000) if lo <= t <= longest]
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(ticks + [longest]))))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"length (log scale; trained on {lo}–{hi})")
        ax.set_ylabel("sequence accuracy (%)")
        ax.set_title(task)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
        atomic_write(path, buffer.getvalue())
    finally:
        plt.close(fig)


def write_plots(runs: list[dict], plots_dir: Path, select: str = "validation") -> dict[str, Path]:
    """One ``plots_dir/{task}.png`` per task; returns them by task."""
    by_task: dict[str, list[list[dict]]] = defaultdict(list)
    for (task, _), group in group_runs(runs).items():
        by_task[task].append(group)
    paths = {}
    for task, groups in by_task.items():
        paths[task] = plots_dir / f"{task}.png"
        plot_task(paths[task], task, groups, select)
    return paths


# --------------------------------------------------------------------------- writing

def replace_block(text: str, block: str, runs_dir: str, kind: str = "report") -> str:
    """``text`` with its marked block (``kind``: report, ablation) for ``runs_dir`` replaced by
    ``block`` (or appended)."""
    start, end = markers(runs_dir, kind)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return (text.rstrip() + "\n\n" if text else "") + block + "\n"


def default_command(runs_dir: str, out: Path, json_path: Path, plots_dir: Path | None,
                    select: str = "validation") -> str:
    args = ["pntm", "report", runs_dir, "--out", str(out), "--json", str(json_path)]
    args += ["--plots", str(plots_dir)] if plots_dir is not None else ["--no-plots"]
    args += ["--select", select] if select != "validation" else []
    return shlex.join(args)


def write_report(runs_dir: str | Path, out: str | Path = "RESULTS.md", *,
                 json_path: str | Path | None = None, plots_dir: str | Path | None = None,
                 plots: bool = True, command: str | None = None,
                 select: str = "validation") -> dict:
    """Write benchmark.json, the plots and the marked block of ``out``; everything is read and
    checked before anything is written. Returns ``{"block", "benchmark", "json", "plots",
    "notice"}`` (``notice``: why there are no plots, or None). ``select``: ``validation`` (the
    protocol) or ``test`` (the legacy display, marked as such)."""
    if select not in selection.SELECT_MODES:
        raise PntmError(f"unknown selection {select!r}; choose one of: "
                        f"{', '.join(selection.SELECT_MODES)}")
    runs_dir = str(runs_dir).rstrip("/") or "/"
    evals = load_evals(runs_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = Path(json_path) if json_path is not None else Path(runs_dir) / JSON_FILE
    plots_dir = Path(plots_dir) if plots_dir is not None else Path(runs_dir) / PLOTS_DIR
    command = command or default_command(runs_dir, out, json_path, plots_dir if plots else None,
                                         select)
    bench = build_benchmark(runs_dir, evals, unfinished_runs(runs_dir), command, select)
    text = out.read_text() if out.exists() else ""

    notice = matplotlib_missing() if plots else None
    plot_paths = write_plots(bench["runs"], plots_dir, select) if plots and not notice else {}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, bench)
    block = render(bench, out, json_path, plot_paths, notice)
    atomic_write_text(out, replace_block(text, block, runs_dir))
    return {"block": block, "benchmark": bench, "json": json_path, "plots": plot_paths,
            "notice": notice}
