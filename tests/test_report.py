"""`pntm report` builds its tables from eval.json files and keeps the prose around them."""

import json

import pytest

from pntm.cli import main
from pntm.report import markers, write_report


def fake_eval(task, seed, ood_accuracy):
    lengths = [{"length": n, "samples": 4, "token_accuracy": 1.0, "sequence_accuracy": 1.0}
               for n in (1, 40)]
    lengths += [{"length": 41, "samples": 4, "token_accuracy": 0.9,
                 "sequence_accuracy": ood_accuracy}]
    return {"task": task, "model": "pntm", "seed": seed, "train_lengths": [1, 40],
            "lengths": lengths, "steps": 500, "train_seconds": 12.4,
            "summary": {"id_sequence_accuracy": 1.0, "ood_sequence_accuracy": ood_accuracy,
                        "ood_token_accuracy": 0.9, "max_length_at_99": 40},
            "provenance": {"git_commit": "abcdef1234567", "command": "pntm train ...",
                           "created": "2026-11-26T00:00:00", "machine": "test", "torch": "x"}}


def make_results(tmp_path):
    for name, task, seed, acc in [("b", "reverse", 0, 0.25), ("a", "copy", 1, 1.0)]:
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "eval.json").write_text(json.dumps(fake_eval(task, seed, acc)))
    return tmp_path / "runs"


def test_report_tables_hold_the_eval_figures_and_keep_the_prose(tmp_path):
    runs = make_results(tmp_path)
    out = tmp_path / "RESULTS.md"
    start, end = markers(str(runs))
    out.write_text(f"# Results\n\nintro\n\n{start}\nold\n{end}\n\nafter\n")
    write_report(runs, out)
    text = out.read_text()
    assert text.startswith("# Results\n\nintro") and text.rstrip().endswith("after")
    assert "\nold\n" not in text
    rows = [line for line in text.splitlines() if line.startswith("| copy")
            or line.startswith("| reverse")]
    assert rows[0].startswith("| copy | pntm | 1 | 500 | 12 | 100.0 | 100.0 | 90.0 | 40 |")
    assert rows[1].startswith("| reverse | pntm | 0 | 500 | 12 | 100.0 | 25.0 | 90.0 | 40 |")
    assert "| copy | pntm | 1 | 100.0 |" in text   # per-length table, length 41
    assert "| reverse | pntm | 0 | 25.0 |" in text


def test_report_appends_a_block_to_a_file_without_markers(tmp_path):
    out = tmp_path / "R.md"
    runs = make_results(tmp_path)
    write_report(runs, out)
    assert out.read_text().startswith(markers(str(runs))[0])
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (runs / "a" / "eval.json").rename(other / "x" / "eval.json")
    write_report(other, out)  # a second folder gets a block of its own
    text = out.read_text()
    assert markers(str(runs))[0] in text and markers(str(other))[0] in text


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error: no such results folder") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no eval.json" in capsys.readouterr().err
