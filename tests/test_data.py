"""A user's own task as JSONL: parsing and every bad-data error, training, evaluation per length,
resuming, TensorBoard, and a 100,000-example file."""

import json
import re
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

from helpers import assert_user_error, sets
from pntm import tasks
from pntm.cli import main
from pntm.data import format_lengths, load_jsonl
from pntm.errors import DataError
from pntm.evaluate import summarize
from pntm.runs import RunDir

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["model_config.d_model=16", "model_config.num_layers=1", "train.batch_size=8",
        "train.log_every=5", "train.early_stop.every=0", "eval.samples=4"]


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def reverse_lines(lengths, per_length=3, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for n in lengths:
        for _ in range(per_length):
            bits = "".join(rng.choice(["0", "1"], size=n))
            lines.append(json.dumps({"input": bits, "target": bits[::-1]}))
    return lines


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 10-step lstm run on a reverse file with lengths 1-3 and 5 (a gap at 4)."""
    root = tmp_path_factory.mktemp("data")
    train = write_lines(root / "rev.jsonl", reverse_lines([1, 2, 3, 5], per_length=5))
    out = root / "runs" / "rev"
    assert main(["train", "--data", str(train), "--model", "lstm", "--steps", "10",
                 "--out", str(out), *sets(TINY)]) == 0
    return train, out


# --------------------------------------------------------------------------- the parser

GOOD = '{"input": "01", "target": "10"}'
BAD_LINES = {  # case: (second line, what the message says)
    "invalid JSON": ('{"input": "01", "target": }', "invalid JSON"),
    "not an object": ('["01", "10"]', "expected a JSON object"),
    "missing input": ('{"target": "1"}', 'missing field "input"'),
    "missing target": ('{"input": "01"}', 'missing field "target"'),
    "non-string token": ('{"input": ["0", 1], "target": "1"}', '"input" token 2 is not a string'),
    "number field": ('{"input": "01", "target": 7}', '"target" must be a string or a list'),
    "empty input": ('{"input": "", "target": "1"}', 'empty "input"'),
    "empty target list": ('{"input": "01", "target": []}', 'empty "target"'),
    "empty token": ('{"input": ["0", ""], "target": "1"}', '"input" token 2 is an empty string'),
    "special token": ('{"input": ["<eos>"], "target": "1"}', "reserved special token"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_parser_names_file_and_line(tmp_path, case):
    line, message = BAD_LINES[case]
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, line, GOOD])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(message)):
        load_jsonl(path)


def test_parser_empty_file_and_bad_bytes(tmp_path):
    for text in ("", "\n  \n"):
        (tmp_path / "empty.jsonl").write_text(text)
        with pytest.raises(DataError, match="empty.jsonl: no examples"):
            load_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bytes.jsonl").write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"bytes.jsonl:2: not UTF-8"):
        load_jsonl(tmp_path / "bytes.jsonl")
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_parser_tokens_vocab_and_lengths(tmp_path):
    path = write_lines(tmp_path / "sum.jsonl", [
        '{"input": ["12", "+", "7"], "target": ["19"], "id": 1}',
        "",  # blank lines are skipped, but counted
        '{"input": "ab", "target": "ba"}',
        '{"input": ["7", "+", "12", "+", "1"], "target": ["20"]}',
    ])
    data = load_jsonl(path)
    assert data.vocab.symbols == sorted(["12", "+", "7", "19", "a", "b", "1", "20"])
    assert len(data) == 3 and data.lengths == [2, 3, 5]
    assert data.example(0) == tasks.Example(("12", "+", "7"), ("19",))
    assert data.examples(data.indices(2)) == [tasks.Example(("a", "b"), ("b", "a"))]
    assert data.describe()["max_target_length"] == 2
    # the ids do not depend on the order of the lines
    reordered = write_lines(tmp_path / "re.jsonl", path.read_text().splitlines()[::-1])
    assert load_jsonl(reordered).vocab == data.vocab
    # with a fixed vocabulary (evaluation) an unknown token names its line
    bad = write_lines(tmp_path / "test.jsonl", ['{"input": "ab", "target": "ba"}',
                                                 '{"input": "ab", "target": "bz"}'])
    with pytest.raises(DataError, match=re.escape(f"{bad}:2: token 'z' in \"target\"")):
        load_jsonl(bad, vocab=data.vocab)


def test_format_lengths_round_trips():
    for lengths in ([1], [1, 2, 3, 7], [2, 4, 5, 6, 9, 10], list(range(1, 41))):
        spec = format_lengths(lengths)
        assert tasks.parse_lengths(spec) == lengths
    assert format_lengths([3, 1, 2, 7]) == "1-3,7"


def test_sampling_stays_in_range_and_bucket(tmp_path):
    data = load_jsonl(write_lines(tmp_path / "r.jsonl", reverse_lines([1, 2, 4, 8], 4)))
    rng = np.random.default_rng(0)
    drawn = {data.draw_length(1, 4, rng) for _ in range(200)}
    assert drawn == {1, 2, 4}  # only lengths present, only within the curriculum's range
    batch = data.sample(4, 16, rng)
    assert len(batch) == 16 and all(len(ex.prompt) == 4 for ex in batch)
    assert all(ex.answer == ex.prompt[::-1] for ex in batch)
    assert data.subset(8, 2, seed=1) == data.subset(8, 2, seed=1)
    assert len(data.subset(8, None, seed=1)) == 4


# --------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("case", [*BAD_LINES, "empty file"])
def test_bad_training_data_is_one_line_and_leaves_no_run_dir(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    if case == "empty file":
        path = write_lines(tmp_path / "task.jsonl", [])
        where = [f"{path}: no examples"]
    else:
        path = write_lines(tmp_path / "task.jsonl", [GOOD, BAD_LINES[case][0]])
        where = [f"pntm: error: {path}:2: ", BAD_LINES[case][1]]
    for out in ([], ["--out", str(tmp_path / "run")]):  # the default run dir too
        assert_user_error(capsys, ["train", "--data", str(path), "--model", "lstm", *out],
                              *where)
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_vocab_is_stored_with_the_run_and_used_at_eval(tmp_path, capsys):
    train = write_lines(tmp_path / "sum.jsonl", [
        json.dumps({"input": [str(a), "+", str(b)], "target": [str(a + b)]})
        for a in range(6) for b in range(6)])
    out = tmp_path / "sum-run"
    assert main(["train", "--data", str(train), "--model", "lstm", "--steps", "5", "--out",
                 str(out), *sets(TINY)]) == 0
    cfg = RunDir(out).load_config()
    symbols = sorted({str(n) for n in range(11)} | {"+"})
    assert cfg["vocab"] == list(tasks.SPECIAL_TOKENS) + symbols
    assert cfg["task"] == "sum" and cfg["data"]["examples"] == 36
    assert cfg["train"]["train_lengths"] == [3, 3]
    capsys.readouterr()
    assert main(["generate", str(out), "3 + 4"]) == 0  # whitespace-separated tokens
    assert capsys.readouterr().out.strip()
    # a test token the training file never had: file and line, exit 2, nothing written
    test = write_lines(tmp_path / "test.jsonl", ['{"input": ["1", "+", "2"], "target": ["3"]}',
                                                 '{"input": ["1", "+", "2"], "target": ["3"]}',
                                                 '{"input": ["1", "*", "2"], "target": ["2"]}'])
    report = tmp_path / "e.json"
    assert_user_error(capsys, ["eval", str(out), "--data", str(test), "--json", str(report)],
                          f"{test}:3: token '*' in \"input\" is not in the run's vocabulary")
    assert not report.exists()
    assert_user_error(capsys, ["generate", str(out), "1 * 2"], "unknown token '*'")


def test_eval_reports_per_length_with_id_and_ood(trained, tmp_path, capsys):
    train, out = trained
    test = write_lines(tmp_path / "test.jsonl", reverse_lines(range(1, 8), per_length=3, seed=5))
    report_path = tmp_path / "runs" / "rev" / "eval.json"
    report_path.parent.mkdir(parents=True)
    assert main(["eval", str(out), "--data", str(test), "--json", str(report_path)]) == 0
    assert "seq_acc" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    rows = {r["length"]: r for r in report["lengths"]}
    assert sorted(rows) == list(range(1, 8)) and all(r["samples"] == 3 for r in rows.values())
    assert report["train_lengths"] == [1, 5] and report["id_lengths"] == "1-3,5"
    assert report["data"] == {"file": str(test), "split": "test", "examples": 21}
    summary = report["summary"]
    mean = lambda ns, key: sum(rows[n][key] for n in ns) / len(ns)  # noqa: E731
    assert summary["id_sequence_accuracy"] == pytest.approx(mean([1, 2, 3, 5], "sequence_accuracy"))
    assert summary["ood_sequence_accuracy"] == pytest.approx(mean([6, 7], "sequence_accuracy"))
    assert summary["ood_token_accuracy"] == pytest.approx(mean([6, 7], "token_accuracy"))
    assert summary == summarize(report["lengths"], (1, 5), [1, 2, 3, 5])
    # the same shape as the built-in tasks': `pntm report` reads it, with the same ID and OOD
    bench = tmp_path / "bench.json"
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "R.md"), "--json",
                 str(bench), "--no-plots"]) == 0
    [run] = json.loads(bench.read_text())["runs"]
    assert run["task"] == "rev" and run["model"] == "lstm"
    for key, value in summary.items():
        assert run["summary"][key] == pytest.approx(value, abs=1e-3), key
    # --lengths selects among the file's lengths, --samples caps each
    assert main(["eval", str(out), "--data", str(test), "--lengths", "2-3,40", "--samples", "2",
                 "--json", str(tmp_path / "e2.json")]) == 0
    rows = json.loads((tmp_path / "e2.json").read_text())["lengths"]
    assert [(r["length"], r["samples"]) for r in rows] == [(2, 2), (3, 2)]
    assert_user_error(capsys, ["eval", str(out), "--data", str(test), "--lengths", "40"],
                          "no example has a length in")


def test_training_eval_and_plain_eval_use_the_training_file(trained, tmp_path):
    train, out = trained
    report = json.loads((out / "eval.json").read_text())  # written at the end of training
    assert [r["length"] for r in report["lengths"]] == [1, 2, 3, 5]
    assert report["data"]["split"] == "train" and report["summary"]["ood_sequence_accuracy"] is None
    assert report["steps"] == 10
    assert main(["eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["data"]["split"] == "train"
    # no OOD length, no OOD mean: the report still reads it
    assert main(["report", str(out.parent), "--out", str(tmp_path / "R.md"), "--json",
                 str(tmp_path / "bench.json"), "--no-plots"]) == 0
    assert "rev" in (tmp_path / "R.md").read_text()


def test_resume_rereads_the_file_and_refuses_changed_data(tmp_path, capsys):
    train = write_lines(tmp_path / "rev.jsonl", reverse_lines([1, 2, 3], per_length=4))
    out = str(tmp_path / "run")
    argv = ["train", "--data", str(train), "--model", "lstm", "--out", out, *sets(TINY)]
    assert main([*argv, "--steps", "5"]) == 0
    assert main(["train", "--out", out, "--steps", "10"]) == 0  # extends, reading the file
    assert RunDir(out).load_train_state()["step"] == 10
    other = write_lines(tmp_path / "other.jsonl", reverse_lines([1, 2], per_length=2))
    capsys.readouterr()
    assert_user_error(capsys, ["train", "--data", str(other), "--out", out], "--data")
    with open(train, "a") as f:
        f.write(GOOD + "\n")
    assert_user_error(capsys, ["train", "--out", out, "--steps", "15"],
                          f"{train}: the run's training file has changed")


def test_tensorboard_logging(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(["train", "--task", "parity", "--model", "lstm", "--steps", "10", "--out",
                 str(out), "--tensorboard", *sets(TINY), "--set", "train.train_lengths=[1,4]",
                 "--set", "eval.lengths=1-4"]) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "metrics.jsonl").is_file()


def test_tensorboard_missing_is_one_line_before_any_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out = tmp_path / "run"
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--out",
                                   str(out), "--tensorboard"], "tensorboard")
    assert not out.exists()


# --------------------------------------------------------------------------- large files

def test_a_100k_example_file_loads_quickly_and_compactly(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 41, size=100_000)
    bits = rng.integers(0, 2, size=int(lengths.sum())).astype(np.uint8) + ord("0")
    text = bits.tobytes().decode()
    ends = np.cumsum(lengths)
    with open(tmp_path / "big.jsonl", "w") as f:
        for end, n in zip(ends.tolist(), lengths.tolist()):
            s = text[end - n: end]
            f.write(f'{{"input": "{s}", "target": "{s[::-1]}"}}\n')
    tokens = 2 * int(lengths.sum())

    tracemalloc.start()
    started = time.process_time()  # CPU time: other jobs on the machine do not count
    try:
        data = load_jsonl(tmp_path / "big.jsonl")
        seconds = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == 100_000 and data.lengths == list(range(1, 41))
    assert seconds < 30, seconds  # about 2 s of CPU under tracemalloc
    assert data.nbytes < 3 * tokens + 40 * len(data)  # int16 ids, a few arrays per example
    assert peak < 25 * tokens, peak  # no Python object per token at any point
    started = time.process_time()
    batch = data.sample(data.draw_length(1, 40, rng), 32, rng)
    assert time.process_time() - started < 0.1 and len(batch) == 32
