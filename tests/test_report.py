"""`pntm report`: benchmark.json, tables and plots from a small handmade results folder.

The fake runs are trained on lengths 1-4 and evaluated at 1-4 and 8, 16, 32, with accuracies
chosen so that every aggregate can be checked by hand. Validation files (eval-validation.json,
lengths 41-43 here) are added per test, so that selection on validation can be checked against
a test split that would choose otherwise.
"""

import json
import math
import sys

import pytest

from pntm import tasks
from pntm.cli import main
from pntm.tools import published
from pntm.tools.report import markers, write_report

ID_LENGTHS, OOD_LENGTHS = (1, 2, 3, 4), (8, 16, 32)

# run folder -> (task, model, seed, sequence accuracy at 1,2,3,4,8,16,32, token accuracy at OOD)
RUNS = {
    "copy-pntm-s0": ("copy", "pntm", 0, (1, 1, 1, 1, 1.0, 0.995, 0.5), (1.0, 1.0, 0.8)),
    "copy-pntm-s1": ("copy", "pntm", 1, (1, 1, 0.98, 1, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),
    "copy-pntm-s2": ("copy", "pntm", 2, (1, 1, 1, 1, 0.25, 0.0, 0.0), (0.5, 0.25, 0.25)),
    "parity-lstm-s0": ("parity", "lstm", 0, (1, 1, 1, 0.9, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
STEPS = {"copy-pntm-s0": 100, "copy-pntm-s1": 200, "copy-pntm-s2": 600, "parity-lstm-s0": 50}


def fake_eval(task, model, seed, seq, tok, steps):
    lengths = [{"length": n, "samples": 4, "sequence_accuracy": s,
                "token_accuracy": tok[OOD_LENGTHS.index(n)] if n in OOD_LENGTHS else 1.0}
               for n, s in zip(ID_LENGTHS + OOD_LENGTHS, seq)]
    return {"task": task, "model": model, "seed": seed, "train_lengths": [1, 4],
            "lengths": lengths[::-1],  # any order: the report sorts
            "steps": steps, "train_seconds": steps / 10,
            "summary": {"id_sequence_accuracy": 0.0, "ood_sequence_accuracy": 0.0,
                        "ood_token_accuracy": 0.0, "max_length_at_99": -1},  # recomputed
            "provenance": {"git_commit": "abcdef1234567", "git_dirty": False,
                           "command": f"pntm sweep --out runs ({model})", "device": "cpu",
                           "created": f"2026-11-26T00:00:0{seed}", "machine": "test",
                           "torch": "x"}}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for name, (task, model, seed, seq, tok) in RUNS.items():
        (root / name).mkdir(parents=True)
        data = fake_eval(task, model, seed, seq, tok, STEPS[name])
        (root / name / "eval.json").write_text(json.dumps(data))
    (root / "parity-lstm-s1").mkdir()  # still training: no eval.json
    (root / "parity-lstm-s1" / "config.yaml").write_text("task: parity\n")
    return root


VALIDATION = {  # run -> sequence accuracy at the validation lengths 41, 42, 43
    "copy-pntm-s0": (1.0, 1.0, 1.0),     # the best on validation, not on test (s1 is)
    "copy-pntm-s1": (0.9, 0.9, 0.9),
    "copy-pntm-s2": (0.5, 0.5, 0.5),
    "parity-lstm-s0": (0.5, 0.5, 0.5),
}


def fake_validation(name, seq, steps=None, answer=None):
    task, model, seed = RUNS[name][:3]
    rows = [{"length": 41 + i, "samples": 4, "sequence_accuracy": a, "token_accuracy": a,
             "answer_token_accuracy": a if answer is None else answer}
            for i, a in enumerate(seq)]
    return {"task": task, "model": model, "seed": seed, "split": "validation",
            "train_lengths": [1, 4], "lengths": rows,
            "steps": STEPS[name] if steps is None else steps}


def add_validation(root, table=VALIDATION, **kwargs):
    for name, seq in table.items():
        (root / name / "eval-validation.json").write_text(
            json.dumps(fake_validation(name, seq, **kwargs)))


def report(runs, tmp_path, **kwargs):
    kwargs.setdefault("plots", False)
    return write_report(runs, tmp_path / "R.md", json_path=tmp_path / "b.json", **kwargs)


def aggregate(result, task, model):
    return next(a for a in result["benchmark"]["aggregates"]
                if (a["task"], a["model"]) == (task, model))


def test_aggregates_match_a_hand_computation(runs, tmp_path):
    result = report(runs, tmp_path, select="test")  # the legacy selection: best test seed
    summaries = {r["run"]: r["summary"] for r in result["benchmark"]["runs"]}
    # longest length at >= 99%: every evaluated length up to it must pass
    assert summaries["copy-pntm-s0"]["max_length_at_99"] == 16   # 0.995 passes, 32 fails
    assert summaries["copy-pntm-s1"]["max_length_at_99"] == 2    # 3 fails, later ones don't count
    assert summaries["copy-pntm-s2"]["max_length_at_99"] == 4
    assert summaries["copy-pntm-s0"]["ood_sequence_accuracy"] == pytest.approx(2.495 / 3)
    assert summaries["copy-pntm-s1"]["id_sequence_accuracy"] == pytest.approx(0.995)

    a = aggregate(result, "copy", "pntm")
    assert a["seeds"] == [0, 1, 2] and a["n_seeds"] == 3 and a["selected_seed"] == 1
    assert a["selection"] == "test" and a["selectable"]
    ood = [2.495 / 3, 1.0, 0.25 / 3]
    mean = sum(ood) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in ood) / 2)   # sample std, n - 1
    assert a["ood_sequence_accuracy"]["selected"] == 1.0
    assert a["ood_sequence_accuracy"]["mean"] == pytest.approx(0.638333, abs=1e-6)
    assert a["ood_sequence_accuracy"]["mean"] == pytest.approx(mean, abs=1e-6)
    assert a["ood_sequence_accuracy"]["std"] == pytest.approx(std, abs=1e-6)
    assert a["ood_sequence_accuracy"]["std"] == pytest.approx(0.487958, abs=1e-6)
    assert a["ood_token_accuracy"]["selected"] == 1.0                     # seed 1's
    assert a["ood_token_accuracy"]["min"] == pytest.approx(1 / 3)         # seed 2's
    assert a["id_sequence_accuracy"]["selected"] == pytest.approx(0.995)
    assert a["ood_answer_token_accuracy"]["selected"] is None   # not measured in these files
    assert a["max_length_at_99"] == {"selected": 2, "min": 2, "max": 16}
    assert a["steps"] == {"mean": 300, "max": 600}
    assert a["train_seconds"] == {"mean": 30.0, "total": 90.0}
    # strict success: seed 1 is at 100% out of distribution but 98% at length 3
    assert a["succeeding"] == 0 and a["fails_ood"] is True

    b = aggregate(result, "parity", "lstm")
    assert b["n_seeds"] == 1 and b["fails_ood"] is True and b["succeeding"] == 0
    assert b["ood_sequence_accuracy"]["std"] is None  # one seed: no spread
    assert b["max_length_at_99"]["selected"] == 3 and b["id_sequence_accuracy"]["mean"] == 0.975


def test_benchmark_json_holds_every_finished_run_with_its_provenance(runs, tmp_path):
    result = report(runs, tmp_path, command="pntm report runs")
    bench = json.loads((tmp_path / "b.json").read_text())
    assert bench == json.loads(json.dumps(result["benchmark"]))
    assert bench["runs_dir"] == str(runs) and bench["threshold"] == 0.99
    assert bench["generated_by"]["command"] == "pntm report runs"
    assert "git_commit" in bench["generated_by"] and "git_dirty" in bench["generated_by"]
    assert [r["run"] for r in bench["runs"]] == ["parity-lstm-s0", "copy-pntm-s0",
                                                 "copy-pntm-s1", "copy-pntm-s2"]  # task order
    assert bench["unfinished_runs"] == ["parity-lstm-s1"]
    run = bench["runs"][1]
    assert run["provenance"]["git_commit"] == "abcdef1234567"
    assert run["provenance"]["git_dirty"] is False and run["provenance"]["device"] == "cpu"
    assert run["provenance"]["command"].startswith("pntm sweep")
    assert run["steps"] == 100 and run["train_seconds"] == 10.0
    assert [r["length"] for r in run["lengths"]] == [1, 2, 3, 4, 8, 16, 32]
    assert [(a["task"], a["model"]) for a in bench["aggregates"]] == [("parity", "lstm"),
                                                                      ("copy", "pntm")]
    assert "max_length_at_99" in bench["definitions"]


def test_markdown_tables_keep_the_prose_and_compare_with_published_numbers(runs, tmp_path):
    add_validation(runs)
    out = tmp_path / "R.md"
    start, end = markers(str(runs))
    out.write_text(f"# Results\n\nintro\n\n{start}\nold\n{end}\n\nafter\n")
    block = report(runs, tmp_path)["block"]
    text = out.read_text()
    assert text.startswith("# Results\n\nintro") and text.rstrip().endswith("after")
    assert "\nold\n" not in text and block in text
    assert "_Protocol: every choice (learning rate, seed) is made on the validation split" in text
    # seed 0 is chosen on validation (100%), though seed 1 is the best on test
    assert "| copy | 83.2 ✗ (0/3) | — |" in text          # the task x model matrix
    assert "| parity | — | 50.0 ✗ (0/1) |" in text
    assert ("| copy | pntm | 0/3 | 0 | 100.0 | 83.2 | 63.8 ± 48.8 | — | 93.3 | 100.0 | 16 "
            "| 300 | 30 |" in text)
    assert "| parity | lstm | 0/1 | 0 | 50.0 | 50.0 | 50.0 (1 seed) |" in text
    assert ("`lstm` fails out of distribution on 1 of 1 tasks: parity (50.0%; not learned in "
            "distribution either: ID 97.5%)." in text)
    assert "`pntm` fails out of distribution on 1 of 1 tasks: copy (83.2%)." in text
    assert "| parity | ours | lstm | 100.0 | — | — (of 1) |" in text  # no answer-token acc
    assert "No answer-token accuracy of a selected seed yet" in text
    missing = next(line for line in text.splitlines() if "Not in this folder yet:" in line)
    assert "transformer on parity," in missing  # with the paper's own tasks (parity_check...)
    assert "lstm on parity," not in missing and "lstm on parity_check," in missing
    assert "left out: parity-lstm-s1" in text
    assert "| copy | pntm | 0 | 100.0 | 99.5 | 50.0 |" in text   # OOD lengths, selected seed
    assert "[`b.json`](b.json)" in text

    assert report(runs, tmp_path)["block"] == block   # the same data, the same block


def test_runs_without_validation_are_not_selectable_never_chosen_by_test(runs, tmp_path):
    result = report(runs, tmp_path)
    a = aggregate(result, "copy", "pntm")
    assert a["selectable"] is False and a["selected_seed"] is None and a["fails_ood"] is None
    assert a["validation_missing"] == 3 and a["ood_sequence_accuracy"]["selected"] is None
    assert a["ood_sequence_accuracy"]["mean"] == pytest.approx(0.638333, abs=1e-6)  # reported
    text = (tmp_path / "R.md").read_text()
    assert "| copy | n/s (0/3) | — |" in text
    assert "| copy | pntm | 0/3 | not selectable (3 without validation) | — | — |" in text
    assert "`pntm`: nothing selectable (copy)." in text
    legacy = report(runs, tmp_path, select="test")["block"]
    assert "selected on TEST (legacy display, not the protocol)" in legacy
    assert "| copy | 100.0 ✗ (0/3) | — |" in legacy     # seed 1, chosen on test


def test_stale_validation_is_not_used(runs, tmp_path):
    add_validation(runs, steps=1)   # other weights than those eval.json measured
    a = aggregate(report(runs, tmp_path), "copy", "pntm")
    assert a["selectable"] is False and a["validation_stale"] == 3


def test_validation_ties_go_to_answer_tokens_then_the_lower_seed(runs, tmp_path):
    add_validation(runs, {n: (0.9, 0.9, 0.9) for n in VALIDATION})
    assert aggregate(report(runs, tmp_path), "copy", "pntm")["selected_seed"] == 0
    add_validation(runs, {"copy-pntm-s2": (0.9, 0.9, 0.9)}, answer=0.95)
    a = aggregate(report(runs, tmp_path), "copy", "pntm")
    assert a["selected_seed"] == 2 and a["validation_sequence_accuracy"] == pytest.approx(0.9)


def write_lr_runs(root, table, perfect=()):
    """copy-lstm runs named by (lr, seed), each with a validation of the scores in ``table``
    (one per length) and a test that is exact only for the (lr, seed) in ``perfect``."""
    for (lr, seed), val in table.items():
        name = f"copy-lstm-lr{lr}-s{seed}"
        (root / name).mkdir(parents=True)
        seq = (1, 1, 1, 1, 1, 1, 1) if (lr, seed) in perfect else (1, 1, 1, 1, 1, 1, 0.5)
        e = fake_eval("copy", "lstm", seed, seq, (1, 1, 1), 10)
        e["lr"] = float(lr)
        (root / name / "eval.json").write_text(json.dumps(e))
        v = {**e, "split": "validation", "lengths": [
            {"length": 41 + i, "samples": 4, "sequence_accuracy": x, "token_accuracy": x,
             "answer_token_accuracy": x} for i, x in enumerate(val)]}
        (root / name / "eval-validation.json").write_text(json.dumps(v))
    return root


def test_the_learning_rate_is_chosen_on_mean_validation_then_the_seed(tmp_path):
    """lr 1e-3 has the single best validation seed (100%) but the lower mean (60%); lr 3e-4 has
    the higher mean (80%): 3e-4 is chosen, then its best seed; the cohort is its seeds."""
    table = {("1e-3", 0): (1.0, 1.0), ("1e-3", 1): (0.2, 0.2), ("3e-4", 0): (0.7, 0.7),
             ("3e-4", 1): (0.9, 0.9)}
    root = write_lr_runs(tmp_path / "runs", table, perfect=[("3e-4", 0)])
    a = aggregate(report(root, tmp_path), "copy", "lstm")
    assert a["selected_lr"] == pytest.approx(3e-4) and a["selected_seed"] == 1
    assert a["lrs"] == [pytest.approx(3e-4), pytest.approx(1e-3)]
    assert a["seeds"] == [0, 1] and a["succeeding"] == 1 and a["n_seeds"] == 2
    text = (tmp_path / "R.md").read_text()
    assert "| copy | lstm | 1/2 | 1, lr 3e-4 | 90.0 | 83.3 |" in text  # (1 + 1 + 0.5) / 3


def test_learning_rates_are_compared_on_the_seeds_they_share(tmp_path):
    """1e-3 at seeds 0-2 (100%, 100%, 10%: mean 70%) against 3e-4 at seeds 0-1 (90%, 90%):
    over their common seeds 0-1, 1e-3 has 100% against 90%, so it is chosen, though its mean
    over all its seeds is lower; its cohort is still all three seeds. Rates that share no
    seed are compared on their own seeds."""
    table = {("1e-3", 0): (1.0,), ("1e-3", 1): (1.0,), ("1e-3", 2): (0.1,),
             ("3e-4", 0): (0.9,), ("3e-4", 1): (0.9,)}
    a = aggregate(report(write_lr_runs(tmp_path / "paired", table), tmp_path), "copy", "lstm")
    assert a["selected_lr"] == pytest.approx(1e-3) and a["seeds"] == [0, 1, 2]
    slow, fast = a["rates"]
    assert (slow["seeds"], slow["compared_seeds"], slow["chosen"]) == ([0, 1], [0, 1], False)
    assert (fast["seeds"], fast["compared_seeds"], fast["chosen"]) == ([0, 1, 2], [0, 1], True)
    assert slow["validation_sequence_accuracy"] == pytest.approx(0.9)
    assert fast["validation_sequence_accuracy"] == pytest.approx(1.0)
    text = (tmp_path / "R.md").read_text()
    assert "**Learning-rate choice**" in text
    assert "| copy | lstm | 3e-4 | 0-1 | 0-1 | 90.00 | 0/2 |  |" in text
    assert "| copy | lstm | 1e-3 | 0-2 | 0-1 | 100.00 | 0/3 | yes |" in text
    table = {("1e-3", 0): (0.5,), ("3e-4", 1): (0.6,)}
    a = aggregate(report(write_lr_runs(tmp_path / "apart", table), tmp_path), "copy", "lstm")
    assert a["selected_lr"] == pytest.approx(3e-4) and a["selected_seed"] == 1
    assert [r["compared_seeds"] for r in a["rates"]] == [[1], [0]]


def test_success_needs_every_test_length_at_99_percent():
    from pntm.tools.selection import succeeds
    rows = [{"length": n, "sequence_accuracy": a} for n, a in [(1, 1.0), (41, 0.99), (500, 1.0)]]
    assert succeeds(rows)                       # 0.99 is enough
    rows[1]["sequence_accuracy"] = 0.97         # mean 0.99, but one length below
    assert not succeeds(rows) and not succeeds([])


def test_a_second_folder_gets_a_block_of_its_own(runs, tmp_path):
    out = tmp_path / "R.md"
    report(runs, tmp_path)
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (runs / "parity-lstm-s0" / "eval.json").rename(other / "x" / "eval.json")
    write_report(other, out, json_path=tmp_path / "o.json", plots=False)
    text = out.read_text()
    assert markers(str(runs))[0] in text and markers(str(other))[0] in text


def test_cli_writes_json_and_plots_inside_the_runs_folder_by_default(runs, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "R.md"
    assert main(["report", str(runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| copy | n/s (0/3) | — |" in printed and "4 runs" in printed
    for task in ("copy", "parity"):
        assert (runs / "plots" / f"{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![copy](runs/plots/copy.png)" in out.read_text()
    assert json.loads((runs / "benchmark.json").read_text())["generated_by"]["command"] \
        == f"pntm report {runs} --out {out}"
    assert main(["report", str(runs), "--out", str(out)]) == 0  # its own outputs are no runs
    assert "4 runs (2 task/model pairs, 1 unfinished)" in capsys.readouterr().out


def test_without_matplotlib_a_notice_replaces_the_plots(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    out = tmp_path / "R.md"
    assert main(["report", str(runs), "--out", str(out), "--plots", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("pntm: note: no plots: matplotlib is not installed")
    assert err.count("\n") == 1
    assert not (tmp_path / "p").exists() and "_No plots: matplotlib" in out.read_text()


@pytest.mark.parametrize("damage, message", [
    ("{not json", "cannot read"),
    ('{"task": "copy", "model": "pntm", "seed": 0, "train_lengths": [1, 4]}',
     "no valid 'lengths'"),
    ('{"task": "copy", "model": "pntm", "seed": 0, "train_lengths": [1, 4], '
     '"lengths": [{"length": 3}]}', "lacks length, sequence_accuracy"),
])
def test_a_bad_eval_json_is_a_one_line_error(runs, tmp_path, capsys, damage, message):
    (runs / "copy-pntm-s2" / "eval.json").write_text(damage)
    out = tmp_path / "R.md"
    assert main(["report", str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error:") and err.count("\n") == 1
    assert "copy-pntm-s2" in err and message in err
    assert not out.exists() and not (runs / "benchmark.json").exists()  # nothing half-written


def test_a_missing_or_empty_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error: no such results folder") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no eval.json" in capsys.readouterr().err


def test_published_numbers_are_the_quoted_ones():
    assert published.token_accuracy("parity", "transformer") == pytest.approx(0.52)
    assert published.token_accuracy("parity_check", "transformer") == pytest.approx(0.52)
    assert published.token_accuracy("reverse", "lstm") == pytest.approx(0.609)
    assert published.token_accuracy("modular_arithmetic", "transformer") == pytest.approx(0.242)
    assert published.token_accuracy("odds_first", "lstm") == pytest.approx(0.556)
    assert published.token_accuracy("copy", "lstm") is None       # not in their table
    assert published.token_accuracy("parity", "pntm") is None     # not their model
    assert published.definition("parity") == "ours"
    assert published.definition("reverse_string") == "theirs"
    # only tasks that exist are compared: our 4 variants, and those of theirs already built
    theirs = [t for t in ("parity_check", "reverse_string", "duplicate_string",
                          "modular_arithmetic_simple", "odds_first") if t in tasks.TASKS]
    assert len(published.comparable_pairs()) == 2 * (4 + len(theirs))


# --------------------------------------------------------------------------- bench JSON files

def bench_file(tmp_path, benchmark, results):
    path = tmp_path / f"{benchmark}.json"
    path.write_text(json.dumps({
        "device": "cpu (test, 1 threads)",
        "provenance": {"benchmark": benchmark, "git_commit": "abcdef1234567", "git_dirty": False,
                       "command": "pntm bench", "created": "2026-01-01", "machine": "m",
                       "torch": "2"},
        "results": results}))
    return path


def test_speed_tables_are_rendered_from_bench_json(tmp_path):
    from pntm.cli import main

    rows = [{"model": m, "length": t, "batch": 4, "step_seconds": s, "parameters": 10}
            for m, t, s in [("pntm", 64, 0.01), ("ntm", 64, 0.05), ("pntm", 256, 0.02),
                            ("ntm", 256, 0.4), ("pntm", 1024, 0.16), ("ntm", 1024, None)]]
    path = bench_file(tmp_path, "train", rows)
    out = tmp_path / "R.md"
    out.write_text("intro\n")
    assert main(["report", str(path), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("intro\n") and f"<!-- report {path} -->" in text
    assert "| 256 | 20.0 | 400.0 | 20.0× | 1.00 |" in text      # ratio; per token vs 256
    assert "| 1024 | 160.0 | skipped | – | 2.00 |" in text       # 0.16/1024 / (0.02/256) = 2
    assert "| 64 | 10.0 | 50.0 | 5.0× | – |" in text
    assert main(["report", str(path), "--out", str(out)]) == 0
    assert out.read_text() == text                               # the block is replaced


def test_step_modes_follow_their_model_and_a_failed_step_says_so(tmp_path):
    from pntm.tools.bench_report import render

    rows = [{"model": m, "length": 64, "batch": 4, "step_seconds": s, "parameters": 10}
            for m, s in [("lstm+cudagraph", 0.001), ("ntm", 0.05), ("pntm+cudagraph", 0.002),
                         ("pntm", 0.01), ("lstm", 0.004)]]
    rows.append({"model": "pntm-relaxed+cudagraph", "length": 64, "batch": 4,
                 "step_seconds": None, "parameters": 10, "skipped": True,
                 "error": "RuntimeError: capture failed"})
    text = render(json.loads(bench_file(tmp_path, "train", rows).read_text()), "x.json")
    assert text.splitlines()[0] == ("| length | pntm | pntm+cudagraph | pntm-relaxed+cudagraph "
                                    "| ntm | lstm | lstm+cudagraph | NTM / P-NTM |")
    assert "| 64 | 10.0 | 2.0 | failed | 50.0 | 4.0 | 1.0 | 5.0× |" in text
    assert ("pntm-relaxed+cudagraph: the step could not be prepared (RuntimeError: capture "
            "failed).") in text


def test_peak_memory_is_rendered_only_when_each_measurement_had_its_own(tmp_path):
    from pntm.tools.bench_report import render

    rows = [{"model": "pntm", "length": t, "batch": 4, "step_seconds": 0.01, "parameters": 10,
             "peak_memory_bytes": mib * 2**20} for t, mib in [(64, 3), (256, 1500)]]
    data = json.loads(bench_file(tmp_path, "train", rows).read_text())
    assert "Peak memory" not in render(data, "x.json")             # no kind recorded
    data["provenance"]["peak_memory"] = "cpu: growth of the process RSS high-water mark (x)"
    assert "Peak memory" not in render(data, "x.json")             # the old, order-dependent one
    data["provenance"]["peak_memory"] = "torch.cuda.max_memory_allocated"
    text = render(data, "x.json")
    assert "| 64 | 3 |" in text and "| 256 | 1,500 |" in text
    assert "Peak memory of a training step, MiB (torch.cuda.max_memory_allocated)" in text


def test_a_json_that_is_not_a_bench_file_is_a_one_line_error(tmp_path, capsys):
    from pntm.cli import main

    bad = tmp_path / "x.json"
    bad.write_text('{"results": []}')
    assert main(["report", str(bad), "--out", str(tmp_path / "R.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error:") and err.count("\n") == 1
    assert not (tmp_path / "R.md").exists()


def test_a_partly_validated_group_and_a_re_evaluated_run(runs, tmp_path):
    add_validation(runs, {"copy-pntm-s1": (0.9, 0.9, 0.9), "copy-pntm-s2": (1.0, 1.0, 1.0)})
    path = runs / "copy-pntm-s2" / "eval.json"
    e = json.loads(path.read_text())   # re-measured by `pntm eval FOLDER`: trained by a sweep
    e["training_provenance"], e["provenance"] = e["provenance"], {"command": "pntm eval runs"}
    path.write_text(json.dumps(e))
    result = report(runs, tmp_path)
    a = aggregate(result, "copy", "pntm")
    assert a["selected_seed"] == 2 and a["validation_missing"] == 1   # seed 0 has none
    assert "| copy | pntm | 0/3 | 2 (1 run without current validation) |" in result["block"]
    run = next(r for r in result["benchmark"]["runs"] if r["run"] == "copy-pntm-s2")
    assert run["provenance"]["command"] == "pntm sweep --out runs (pntm)"
    assert run["evaluated_by"]["command"] == "pntm eval runs"
