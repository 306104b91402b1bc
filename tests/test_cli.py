"""The command line: happy paths, and every user mistake as one line + exit code 2."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import assert_user_error, sets
from pntm import cli, tasks
from pntm.cli import main
from pntm.models import KNOWN_MODELS, available_models

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["model_config.d_model=16", "model_config.num_layers=1", "train.batch_size=8",
        "train.train_lengths=[1,8]", "train.log_every=5", "train.early_stop.every=0",
        "eval.lengths=1-8,12", "eval.samples=4"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 10-step lstm run, shared by the tests that only read it."""
    out = str(tmp_path_factory.mktemp("cli") / "run")
    assert main(["train", "--task", "parity", "--model", "lstm", "--steps", "10",
                 "--out", out, *sets(TINY)]) == 0
    return out


# --------------------------------------------------------------------------- happy paths

def test_tasks_lists_every_task_with_its_level(capsys):
    assert main(["tasks"]) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["task", "level", "category", "lengths", "description"]
    assert [line.split()[0] for line in lines] == list(tasks.TASKS)
    level_at = header.index("level")
    for line, task in zip(lines, tasks.TASKS.values()):
        assert line[level_at:].startswith(task.level + " ")
        assert task.description in line and task.length_range() in line
    solve_equation = lines[list(tasks.TASKS).index("solve_equation")]
    assert "deterministic context-free" in solve_equation and "3 and up" in solve_equation


def test_eval_writes_json_and_prints_table(run_dir, tmp_path, capsys):
    path = tmp_path / "e.json"
    assert main(["eval", run_dir, "--lengths", "2,9-10", "--samples", "3", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "seq_acc" in out and "max length at 99%" in out
    report = json.loads(path.read_text())
    assert [r["length"] for r in report["lengths"]] == [2, 9, 10]
    assert report["samples"] == 3 and report["provenance"]["command"].startswith("pntm eval")


def test_eval_errors_lists_every_wrong_example(run_dir, tmp_path, capsys):
    """--errors writes each example decoded wrong (and only those) with its right answer; fed
    back through --data, the same weights get every one of them wrong again."""
    report_path, errors = tmp_path / "e.json", tmp_path / "wrong" / "errors.jsonl"
    assert main(["eval", run_dir, "--lengths", "3,9-10", "--samples", "8", "--json",
                 str(report_path), "--errors", str(errors)]) == 0
    rows = json.loads(report_path.read_text())["lengths"]
    wrong = [json.loads(line) for line in errors.read_text().splitlines()]
    expected = {r["length"]: round(r["samples"] * (1 - r["sequence_accuracy"])) for r in rows}
    assert sum(expected.values()) > 0  # ten steps of training: parity is not learned yet
    assert {n: sum(w["length"] == n for w in wrong) for n in expected} == expected
    parity = tasks.get_task("parity")
    for w in wrong:
        assert len(w["input"]) == w["length"]
        assert tuple(w["target"]) == parity.solve(w["input"])
        assert len(w["output"]) == len(w["target"]) + 1
        assert w["output"] != [*w["target"], tasks.EOS]
    assert f"{len(wrong)} examples decoded wrong" in capsys.readouterr().out

    again = tmp_path / "again.json"
    assert main(["eval", run_dir, "--data", str(errors), "--json", str(again)]) == 0
    assert all(r["sequence_accuracy"] == 0.0 for r in json.loads(again.read_text())["lengths"])


def test_eval_errors_bad_path(capsys, run_dir, tmp_path):
    """A path the file cannot be written to fails before the evaluation writes anything."""
    report = tmp_path / "e.json"
    assert_user_error(capsys, ["eval", run_dir, "--json", str(report), "--errors",
                               str(tmp_path)], "--errors", "is a directory")
    (tmp_path / "file").write_text("x")
    assert_user_error(capsys, ["eval", run_dir, "--json", str(report), "--errors",
                               str(tmp_path / "file" / "errors.jsonl")], "--errors",
                      "not a directory")
    assert not report.exists()
    assert_user_error(capsys, ["eval", str(Path(run_dir).parent), "--errors",
                               str(tmp_path / "x.jsonl")], "--errors", "for one run")


def test_generate_prints_an_answer(run_dir, capsys):
    for prompt in ["0110", "0 1 1"]:  # one token per character, or whitespace-separated
        assert main(["generate", run_dir, prompt]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 1  # an untrained model's answer


def test_console_script_exit_code(tmp_path):
    """The installed entry point: real exit status, one stderr line, no traceback."""
    exe = Path(sys.executable).with_name("pntm")
    proc = subprocess.run([str(exe), "eval", str(tmp_path / "missing")], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("pntm: error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(args, argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_tasks", interrupted)
    assert main(["tasks"]) == 130
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- user mistakes

def test_no_command(capsys):
    assert_user_error(capsys, [])


def test_unknown_task(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--task", "nope", "--model", "lstm", "--out", str(tmp_path / "r")],
                      "nope", "parity")


def test_unknown_model(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "gru", "--out", str(tmp_path / "r")],
                      "gru", "lstm")


def test_model_not_implemented_yet(capsys, tmp_path):
    missing = sorted(set(KNOWN_MODELS) - set(available_models()))
    if not missing:
        pytest.skip("every model of the contract is implemented")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", missing[0],
                               "--out", str(tmp_path / "r")], missing[0], "available")


def test_missing_task(capsys, tmp_path):
    assert_user_error(capsys, ["train", "--model", "lstm", "--out", str(tmp_path / "r")], "task")


@pytest.mark.parametrize("item, fragment", [
    ("train.lr", "malformed --set"),
    ("=3", "malformed --set"),
    ("train..lr=1", "malformed --set"),
    ("train.lr=[", "malformed"),
    ("train.frobnicate=1", "train.frobnicate"),
    ("model_config.d_modle=64", "model_config.d_modle"),
    ("train.steps=abc", "train.steps"),
    ("train.steps=-5", "train.steps"),
    ("eval.lengths=9-3", "eval.lengths"),
    ("train.early_stop.lengths=41", "train.early_stop.lengths"),
    ("train.early_stop.start=1", "train.early_stop.start"),
])
def test_bad_set(capsys, tmp_path, item, fragment):
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--set", item,
                               "--out", str(tmp_path / "r")], fragment)
    assert not (tmp_path / "r").exists()  # nothing is created for a rejected config


def test_bad_config_file(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--config", str(bad),
                               "--out", str(tmp_path / "r")], "bad.yaml")
    bad.write_text("train:\n  lr: 0.1\n  bogus: 1\n")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--config", str(bad),
                               "--out", str(tmp_path / "r")], "train.bogus")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--config",
                               str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")], "not found")


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--task", "parity", "--model", "lstm", "--steps", "0"], "--steps"),
    (["train", "--task", "parity", "--model", "lstm", "--steps", "x"], "--steps"),
    (["train", "--task", "parity", "--model", "lstm", "--seed", "-1"], "--seed"),
    (["train", "--task", "parity", "--model", "lstm", "--device", "tpu"], "--device"),
    (["eval", "RUN", "--samples", "0"], "--samples"),
    (["eval", "RUN", "--samples", "-3"], "--samples"),
])
def test_bad_numbers_and_choices(capsys, argv, fragment):
    assert_user_error(capsys, argv, fragment)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(capsys, run_dir, tmp_path):
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--device", "cuda",
                               "--out", str(tmp_path / "r")], "cuda")
    assert_user_error(capsys, ["eval", run_dir, "--device", "cuda"], "cuda")


def test_missing_run_dir(capsys, tmp_path):
    assert_user_error(capsys, ["eval", str(tmp_path / "nope")], "nope")
    assert_user_error(capsys, ["generate", str(tmp_path / "nope"), "0110"], "nope")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["eval", str(tmp_path / "empty")], "config.yaml")


def copy_run(run_dir, dest):
    shutil.copytree(run_dir, dest)
    return dest


def test_corrupt_run_dir(capsys, run_dir, tmp_path):
    bad = copy_run(run_dir, tmp_path / "bad_config")
    (bad / "config.yaml").write_text("task: [unclosed\n")
    assert_user_error(capsys, ["eval", str(bad)], "config.yaml")

    bad = copy_run(run_dir, tmp_path / "bad_weights")
    (bad / "model.safetensors").write_bytes(b"\x00garbage")
    assert_user_error(capsys, ["eval", str(bad)], "model.safetensors")
    assert_user_error(capsys, ["generate", str(bad), "01"], "model.safetensors")

    bad = copy_run(run_dir, tmp_path / "bad_state")
    (bad / "train_state.pt").write_bytes(b"not a checkpoint")
    assert_user_error(capsys, ["train", "--out", str(bad)], "train_state.pt")

    bad = copy_run(run_dir, tmp_path / "no_weights")
    (bad / "model.safetensors").unlink()
    assert_user_error(capsys, ["eval", str(bad)], "model.safetensors")


def test_bad_length_spec(capsys, run_dir):
    assert_user_error(capsys, ["eval", run_dir, "--lengths", "5-1"], "5-1")
    assert_user_error(capsys, ["eval", run_dir, "--lengths", "ten"], "ten")


@pytest.mark.parametrize("task, item, fragments", [
    ("solve_equation", "train.train_lengths=[1,40]",
     ["train.train_lengths", "'solve_equation'", "lengths 1, 2;", "3 and up", "x=d"]),
    ("missing_duplicate_string", "eval.lengths=1-8", ["eval.lengths", "length 1;", "2 and up"]),
    ("binary_addition_dm", "train.train_lengths=[2,10]", ["train.train_lengths", "length 2;"]),
    ("associative_recall", "eval.lengths=500-520", ["eval.lengths", "513", "1 to 512"]),
])
def test_train_with_lengths_the_task_cannot_produce(capsys, tmp_path, task, item, fragments):
    out = tmp_path / "r"
    assert_user_error(capsys, ["train", "--task", task, "--model", "lstm", "--set", item,
                               "--out", str(out)], *fragments)
    assert not out.exists()


def test_eval_with_lengths_the_task_cannot_produce(capsys, tmp_path):
    # the defaults leave out the lengths the task cannot produce (solve_equation trains on 3-40)
    run = tmp_path / "solve"
    assert main(["train", "--task", "solve_equation", "--model", "lstm", "--steps", "1",
                 *sets(TINY[:3] + ["train.early_stop.every=0", "train.eval_at_end=false"]),
                 "--set", "train.train_lengths=[3,8]", "--out", str(run)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in run.iterdir())
    assert_user_error(capsys, ["eval", str(run), "--lengths", "1-5", "--samples", "2"],
                      "--lengths", "'solve_equation'", "lengths 1, 2;", "3 and up")
    assert sorted(p.name for p in run.iterdir()) == before  # no eval.json
    assert main(["eval", str(run), "--lengths", "3-5", "--samples", "2"]) == 0


def test_prompt_token_outside_vocabulary(capsys, run_dir):
    assert_user_error(capsys, ["generate", run_dir, "01x1"], "x")


def test_resume_refuses_a_changed_config(capsys, run_dir):
    assert_user_error(capsys, ["train", "--out", run_dir, "--set", "train.lr=0.1"], "--set")
    assert_user_error(capsys, ["train", "--out", run_dir, "--task", "copy"], "--task")


def test_out_is_a_non_run_directory(capsys, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm",
                               "--out", str(tmp_path / "r")], "not empty")


def test_a_setting_the_model_rejects_leaves_no_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "copy", "--model", "transformer", "--set",
                 "model_config.positional=learned", "--out", str(out)]) == 2
    assert "positional" in capsys.readouterr().err
    assert not out.exists()


def test_a_size_torch_rejects_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "copy", "--model", "lstm", "--set",
                 "model_config.d_model=-3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error: lstm model_config.d_model must be a "
                          "positive integer") and err.count("\n") == 1
    assert not out.exists()
