"""The ablation table: ``pntm ablation VARIANTS_DIR --base BASE_DIR [--out RESULTS.md]``.

What is each general bias of a config worth? ``VARIANTS_DIR`` holds one folder per variant, each
a ``pntm sweep`` output made with one ``--set`` change (e.g. ``results/ablation/no-state-heads``
from ``--set model_config.state_heads=0``); ``BASE_DIR`` is the sweep of the unchanged config.
The report writes one markdown table, variants × tasks, between the markers
``<!-- ablation VARIANTS_DIR vs BASE_DIR -->`` and ``<!-- /ablation VARIANTS_DIR vs
BASE_DIR -->`` of ``--out``, and its
data to ``--json`` (default ``VARIANTS_DIR/ablation.json``).

Decisions:

- **Equal seeds.** For each task, the base row counts only the base runs whose seeds the
  variants ran for that task (the union over variants), so a variant is never compared with a
  base that had more chances. A variant's run with no base run at its task and seed is left out
  of the table and listed below it (so one folder of variants can be compared with more than
  one base, e.g. before and after a change of the shipped config); a variant with no such run
  left is listed there too.
- **One block per variants folder and base**, between ``<!-- ablation VARIANTS_DIR vs
  BASE_DIR -->`` and its closing marker.
- **What changed is read, not typed.** A variant's label is the variant folder's name; its
  *change* column is computed from the ``config.yaml`` files: every ``model_config`` or ``train``
  key whose value differs from the base run of the same task and seed (``key base → variant``).
  The column holds the differences every run of the variant has (its ``--set``); a difference
  only some of its runs have (a base run made with another setting, e.g. a run carried over
  from an earlier schedule) is listed below the table with the runs it concerns, so the column
  says what the variant changed and the note what else differs where.
  Bookkeeping keys (``BOOKKEEPING``: how often to log, checkpoint or keep snapshots) are not
  changes: they alter no number of a run. Keys
  renamed since a run was made are compared under their current names (the configs are read
  as ``RunDir.load_config`` validates them), so a rename is not a change.
- **Each cell** is what the benchmark report shows for a (task, model), under the same protocol
  (:mod:`pntm.tools.selection`): seeds succeeding k/N (≥ 99% at every test length), the
  validation-selected seed's validation sequence accuracy (what a config choice is made on),
  its test OOD sequence accuracy, and its longest length at ≥ 99%.
  A task a variant did not run is "—"; a variant's runs still training are listed below the table.
- The last column is the variant's mean number of training steps per finished run (early
  stopping ends a run once it is exact in distribution, so fewer steps is faster learning).
  Steps, not seconds: the variants and the base may run on differently loaded machines.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from pntm.errors import PntmError
from pntm.provenance import provenance
from pntm.runs import RunDir, atomic_write_json, atomic_write_text
from pntm.tools import report, report_data, report_tables

BASE_LABEL = "base"
JSON_FILE = "ablation.json"
COMPARED = ("model_config", "train")
# keys that change no number of a run (what is logged or kept, not what is trained or evaluated)
BOOKKEEPING = {"train.log_every", "train.checkpoint_every", "train.snapshot_every",
               "train.tensorboard", "train.eval_at_end"}


def _config(runs_dir: Path, run: str) -> dict:
    """The run's compared keys, from its validated config (``RunDir.load_config``: keys
    renamed since the run was made under their current names, missing ones at their
    defaults), as ``section.key``; a nested table's keys one by one (``train.early_stop.start``),
    so a change names the key that changed, not the whole table."""
    cfg = RunDir(runs_dir / run).load_config()
    return {key: v for section in COMPARED for key, v in _flat(cfg[section], section).items()
            if key not in BOOKKEEPING}


def _flat(table: dict, prefix: str) -> dict:
    out = {}
    for k, v in table.items():
        out.update(_flat(v, f"{prefix}.{k}") if isinstance(v, dict) else {f"{prefix}.{k}": v})
    return out


def config_changes(base: dict, variant: dict) -> list[str]:
    """``key base → variant`` for every compared key whose value differs (a missing key: —)."""
    changes = []
    for key in sorted(set(base) | set(variant)):
        if base.get(key) != variant.get(key):
            changes.append(f"{key.split('.', 1)[1]} {_show(base.get(key))} → "
                           f"{_show(variant.get(key))}")
    return changes


def _show(value) -> str:
    return "—" if value is None else yaml.safe_dump(value, default_flow_style=True).strip() \
        .removesuffix("...").strip()


def _records(runs_dir: Path) -> list[dict]:
    return [report_data.run_record(e) for e in report_data.load_evals(runs_dir)]


def _aggregates(runs: list[dict]) -> dict[str, dict]:
    """Per task, the aggregate of the runs (one model per ablation: the base's)."""
    return {task: report_data.rounded(report_data.aggregate(group))
            for (task, _model), group in report_data.group_runs(runs).items()}


def _mean_steps(runs: list[dict]) -> float | None:
    steps = [r["steps"] for r in runs if r["steps"] is not None]
    return sum(steps) / len(steps) if steps else None


def build_ablation(variants_dir: str, base_dir: str, command: str) -> dict:
    """Everything the table shows, checked before anything is written."""
    vdir, bdir = Path(variants_dir), Path(base_dir)
    if not vdir.is_dir():
        raise PntmError(f"no such variants folder: {variants_dir}")
    folders = sorted(p for p in vdir.iterdir() if p.is_dir() and any(p.glob("*/eval.json")))
    if not folders:
        raise PntmError(f"no variant folder with finished runs (*/eval.json) in {variants_dir}")
    base_runs = _records(bdir)
    base_by = {(r["task"], r["model"], r["seed"]): r for r in base_runs}
    variants, wanted, unmatched = [], set(), []
    for folder in folders:
        runs, changes_of = [], {}
        for r in _records(folder):
            twin = base_by.get((r["task"], r["model"], r["seed"]))
            if twin is None:
                unmatched.append(f"{folder.name}/{r['run']}")
                continue
            runs.append(r)
            wanted.add((r["task"], r["model"], r["seed"]))
            changes_of[r["run"]] = config_changes(_config(bdir, twin["run"]),
                                                  _config(folder, r["run"]))
        if not runs:
            continue
        # the variant's change: what every run has; the rest, run by run
        changes = [c for c in next(iter(changes_of.values()))
                   if all(c in other for other in changes_of.values())]
        also = {run: [c for c in found if c not in changes]
                for run, found in changes_of.items()}
        variants.append({"name": folder.name, "changes": changes,
                         "also_differs": {run: c for run, c in also.items() if c},
                         "tasks": _aggregates(runs), "mean_steps": _mean_steps(runs),
                         "unfinished_runs": report_data.unfinished_runs(folder)})
    if not variants:
        raise PntmError(f"no variant run in {variants_dir} has a run of {base_dir} at its task "
                        "and seed to be compared with")
    base = [r for r in base_runs if (r["task"], r["model"], r["seed"]) in wanted]
    base_row = {"name": BASE_LABEL, "changes": [], "also_differs": {},
                "tasks": _aggregates(base),
                "mean_steps": _mean_steps(base), "unfinished_runs": []}
    tasks = sorted({t for v in variants for t in v["tasks"]}, key=report_data.task_key)
    return {"generated_by": provenance(command), "variants_dir": variants_dir,
            "base_dir": base_dir, "tasks": tasks, "rows": [base_row] + variants,
            "without_base_run": unmatched,
            "threshold": report_data.THRESHOLD, "selection": "validation"}


def block_key(variants_dir: str, base_dir: str) -> str:
    """What the block's markers name: the variants folder and the base it is compared with."""
    return f"{variants_dir} vs {base_dir}"


def _cell(a: dict | None) -> str:
    if a is None:
        return "—"
    if not a["selectable"]:
        return f"{a['succeeding']}/{a['n_seeds']}, n/s"
    longest = a["max_length_at_99"]["selected"]
    return (f"{a['succeeding']}/{a['n_seeds']}, "
            f"val {report_tables.percent(a['validation_sequence_accuracy'])}%, "
            f"{report_tables.percent(a['ood_sequence_accuracy']['selected'])}% ({longest})")


def _also_differs(rows: list[dict]) -> list[str]:
    """The per-run differences below the table, one entry per run and difference: a base run
    that differs the same way in several variants (it is one base run) is named once, with
    the variants it concerns."""
    variants: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for row in rows:
        for run, changes in row["also_differs"].items():
            variants.setdefault((run, tuple(changes)), []).append(row["name"])
    entries = []
    for (run, changes), names in variants.items():
        where = (f"{names[0]}/{run}" if len(names) == 1
                 else f"{run} in {', '.join(names[:-1])} and {names[-1]}")
        entries.append(f"{where} (" + "; ".join(f"`{c}`" for c in changes) + ")")
    return entries


def render(ablation: dict) -> str:
    """The marked markdown block."""
    tasks = ablation["tasks"]
    lines = [f"_Generated by `{ablation['generated_by']['command']}`; each cell: seeds "
             "succeeding (≥ 99% at every test length), the validation-selected seed's validation "
             "sequence accuracy (val, what a config choice is made on), its test OOD "
             "sequence accuracy and (its longest length at ≥ 99%); base: the unchanged config "
             f"from `{ablation['base_dir']}` at the same seeds._", "",
             "| variant | change | " + " | ".join(tasks) + " | steps per run |",
             "|---|---|" + "---|" * len(tasks) + "---|"]
    for row in ablation["rows"]:
        change = "; ".join(f"`{c}`" for c in row["changes"]) or "—"
        cells = [_cell(row["tasks"].get(t)) for t in tasks]
        lines.append(f"| {row['name']} | {change} | " + " | ".join(cells)
                     + f" | {report_tables.number(row['mean_steps'])} |")
    also = _also_differs(ablation["rows"])
    if also:
        lines += ["", "Also different from their base run, beside the variant's change: "
                  + ", ".join(also) + "."]
    unfinished = [f"{row['name']}/{run}" for row in ablation["rows"]
                  for run in row["unfinished_runs"]]
    if unfinished:
        lines += ["", "Unfinished (left out): " + ", ".join(unfinished) + "."]
    if ablation["without_base_run"]:
        lines += ["", f"No run of `{ablation['base_dir']}` at the same task and seed (left out): "
                  + ", ".join(ablation["without_base_run"]) + "."]
    start, end = report_tables.markers(block_key(ablation["variants_dir"],
                                                 ablation["base_dir"]), "ablation")
    return "\n".join([start, *lines, end])


def write_ablation(variants_dir: str | Path, base_dir: str | Path,
                   out: str | Path = "RESULTS.md", *, json_path: str | Path | None = None,
                   command: str | None = None) -> dict:
    """Write ablation.json and the marked block of ``out``; returns ``{"ablation": the data,
    "block": the markdown written}``."""
    variants_dir = str(variants_dir).rstrip("/") or "/"
    base_dir = str(base_dir).rstrip("/") or "/"
    out = Path(out)
    json_path = Path(json_path) if json_path is not None else Path(variants_dir) / JSON_FILE
    command = command or shlex.join(["pntm", "ablation", variants_dir, "--base", base_dir,
                                     "--out", str(out)])
    ablation = build_ablation(variants_dir, base_dir, command)
    text = out.read_text() if out.exists() else ""
    block = render(ablation)
    atomic_write_json(json_path, ablation)
    atomic_write_text(out, report.replace_block(text, block,
                                                           block_key(variants_dir, base_dir),
                                                           "ablation"))
    return {"ablation": ablation, "block": block}
