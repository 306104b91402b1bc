"""The markdown of ``pntm report``: the tables and paragraphs of the marked block of
``RESULTS.md``, rendered from ``benchmark.json`` (:mod:`pntm.tools.report_data`), and the
one-line-per-(task, model) summary that ``pntm sweep`` prints.

Decision:

- The comparison with published numbers (:mod:`pntm.tools.published`) uses their metric, per-token
  accuracy over the answer tokens (EOS excluded), averaged over the out-of-distribution lengths
  (``ood_answer_token_accuracy``; :mod:`pntm.metrics` gives the exact definition and how our
  autoregressive decoding differs from theirs): the selected seed's, and beside it the highest
  over the cohort (their own protocol is the maximum over seeds and learning rates, i.e. chosen
  on their test numbers). A model "solves" a task there at ≥ 99%. Runs evaluated before this
  metric existed show "—" until ``pntm eval FOLDER`` re-measures them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from pntm.tools import published, selection
from pntm.tools.report_data import (THRESHOLD, group_runs, load_evals, model_key, run_record,
                                    task_key)

SELECTED_ON = {"validation": "selected on validation",
               "test": "selected on TEST (legacy display, not the protocol)"}
PROTOCOL = {
    "validation": "_Protocol: every choice (learning rate, seed) is made on the validation split "
                  "(lengths 41-64, examples of their own); the test grid is only reported._",
    "test": "_Legacy display: the best seed is chosen on the test numbers themselves, which "
            "overstates them; the protocol selects on validation (`pntm report --select "
            "validation`)._",
}


def markers(runs_dir: str, kind: str = "report") -> tuple[str, str]:
    return f"<!-- {kind} {runs_dir} -->", f"<!-- /{kind} {runs_dir} -->"


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


def _seed_list(seeds: list[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``0-2, 4``."""
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(str(start) if start == s else f"{start}-{s}")
            start = None
    return ", ".join(parts)


def rates_table(aggs: list[dict]) -> str | None:
    """The learning-rate choice of every (task, model) that ran more than one rate: what
    each rate's mean validation was over the seeds compared. None when no pair did."""
    rows = [(a, rate) for a in aggs if len(a.get("rates", [])) > 1 for rate in a["rates"]]
    if not rows:
        return None
    lines = ["| task | model | lr | seeds run | seeds compared | val seq acc (mean over them) "
             "| seeds succeeding | chosen |", "|---" * 8 + "|"]
    for a, rate in rows:
        lines.append(
            f"| {a['task']} | {a['model']} | {selection.format_lr(rate['lr'])} "
            f"| {_seed_list(rate['seeds'])} | {_seed_list(rate['compared_seeds'])} "
            f"| {100 * rate['validation_sequence_accuracy']:.2f} "
            f"| {rate['succeeding']}/{rate['n_seeds']} | {'yes' if rate['chosen'] else ''} |")
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
    ]
    rates = rates_table(aggs)
    if rates is not None:
        parts += [
            "**Learning-rate choice** (for each task and model run at more than one rate: "
            "each rate's mean validation sequence accuracy over the seeds every rate has run "
            "(its own when they share none), the number the choice compares (ties: answer-token "
            "accuracy, then the larger rate); the seeds succeeding count every run at that "
            "rate)",
            rates]
    parts += [
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


def summary_lines(runs_dir: str | Path, names: set[str] | None = None) -> list[str]:
    """One line per (task, model) of the runs of ``runs_dir`` (only those named in ``names``
    when given): what validation chose and how it did on test, or why nothing could be chosen."""
    evals = [e for e in load_evals(runs_dir) if names is None or e["run"] in names]
    runs = [run_record(e) for e in evals]
    lines = []
    for (task, model), group in group_runs(runs).items():
        pick = selection.choose(group)
        k, n = selection.success_count(pick["cohort"])
        if pick["selected"] is None:
            lines.append(f"{task} {model}: not selectable (no validation results); "
                         f"{k}/{n} seeds succeed on test")
            continue
        r = pick["selected"]
        ood = r["summary"]["ood_sequence_accuracy"]
        lines.append(f"{task} {model}: validation chose lr {selection.format_lr(pick['lr'])} seed "
                     f"{r['seed']} (val seq acc {100 * r['validation']['sequence_accuracy']:.1f}%)"
                     f"; its test OOD seq acc {percent(ood)}%; {k}/{n} seeds at that lr "
                     "succeed (>= 99% at every test length)")
    return lines
