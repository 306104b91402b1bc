"""`pntm sweep`: a tiny grid runs, resumes, records failures, and refuses bad input up front."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import sets

from pntm import config as config_lib
from pntm.cli import main
from pntm.tasks import CHOMSKY_TASKS, REQUIRED_TASKS, TASKS
from pntm.tools.sweep import parse_seeds, parse_tasks
from pntm.train import start_run, train_run

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["model_config.d_model=8", "model_config.num_layers=1", "train.batch_size=4",
        "train.train_lengths=[1,3]", "train.early_stop.every=0", "eval.lengths=2,4",
        "eval.samples=4", "eval.validation_lengths=5-6"]
SETS = sets(TINY) + ["--steps", "3"]


def sweep(out, tasks="parity,copy", seeds="0,1", extra=()):
    return main(["sweep", "--tasks", tasks, "--models", "lstm", "--seeds", seeds,
                 "--out", str(out), *SETS, *extra])


def statuses(text):
    return sorted(line.split(": ")[1].split(",")[0].split(" (")[0]
                  for line in text.splitlines() if line.startswith("["))


def test_grid_runs_then_is_skipped(tmp_path, capsys):
    out = tmp_path / "grid"
    assert sweep(out, extra=["--workers", "2"]) == 0
    printed = capsys.readouterr().out
    evals = sorted(out.glob("*/eval.json"))
    assert [p.parent.name for p in evals] == ["copy-lstm-s0", "copy-lstm-s1",
                                              "parity-lstm-s0", "parity-lstm-s1"]
    assert statuses(printed) == ["done"] * 4
    assert "OOD seq acc" in printed and f"pntm report {out}" in printed
    report = json.loads(evals[0].read_text())
    assert (report["task"], report["model"], report["seed"]) == ("copy", "lstm", 0)
    assert (out / "copy-lstm-s0" / "config.yaml").is_file()
    mtimes = [p.stat().st_mtime_ns for p in evals]

    assert sweep(out, extra=["--workers", "2"]) == 0
    assert statuses(capsys.readouterr().out) == ["skipped"] * 4
    assert [p.stat().st_mtime_ns for p in evals] == mtimes


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "grid"
    # parity: half finished (resumes); copy: a corrupt run directory (fails)
    cfg = config_lib.build_config("parity", "lstm", sets=TINY, steps=3, seed=0)
    start_run(out / "parity-lstm-s0", cfg)
    train_run(out / "parity-lstm-s0", stop_at=1, quiet=True)
    assert (out / "parity-lstm-s0" / "train_state.pt").is_file()
    (out / "copy-lstm-s0").mkdir()
    (out / "copy-lstm-s0" / "config.yaml").write_text("{not yaml")

    assert sweep(out, seeds="0", extra=["--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert statuses(captured.out) == ["failed", "resumed"]
    assert (out / "parity-lstm-s0" / "eval.json").is_file()
    assert json.loads((out / "parity-lstm-s0" / "eval.json").read_text())["steps"] == 3
    error = (out / "copy-lstm-s0" / "error.txt").read_text()
    assert error.startswith("RunDirError:") and "Traceback" in error
    failures = [line for line in captured.err.splitlines() if "failed:" in line]
    assert len(failures) == 1 and "copy-lstm-s0" in failures[0]

    # repaired, the next sweep completes the grid and clears the error
    (out / "copy-lstm-s0" / "config.yaml").unlink()
    (out / "copy-lstm-s0" / "error.txt").unlink()
    assert sweep(out, seeds="0", extra=["--workers", "1"]) == 0
    assert statuses(capsys.readouterr().out) == ["done", "skipped"]


@pytest.mark.parametrize("args, message", [
    (["--tasks", "nope"], "unknown task 'nope'"),
    (["--models", "nope"], "nope"),
    (["--seeds", "0,x"], "malformed --seeds"),
    (["--seeds", "-1"], "malformed --seeds"),
    (["--set", "train.nope=1"], "train.nope"),
    (["--set", "oops"], "malformed --set"),
    (["--set", "seed=3"], "--seeds"),
    (["--set", "model_config.d_model=-3"], "lstm model_config.d_model"),
    (["--address", "ray://x:10001"], "--executor ray"),
    (["--workers", "0"], "--workers"),
])
def test_user_mistakes_are_one_line_and_exit_2_before_anything_runs(tmp_path, capsys, args,
                                                                     message):
    base = {"--tasks": "parity", "--models": "lstm", "--seeds": "0"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    rest = [x for flag in ("--set", "--address", "--workers") if flag in base
            for x in (flag, base.pop(flag))]
    argv = ["sweep", *[x for kv in base.items() for x in kv], "--out", str(tmp_path / "g"), *rest]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pntm: error:") and "\n" not in err and message in err
    assert not (tmp_path / "g").exists()


def test_cuda_without_a_gpu_is_refused_up_front(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sweep(tmp_path / "g", seeds="0", extra=["--device", "cuda"]) == 2
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_train_on_the_gpu(tmp_path):
    out = tmp_path / "grid"
    assert sweep(out, seeds="0", extra=["--device", "cuda", "--workers", "2"]) == 0
    report = json.loads((out / "parity-lstm-s0" / "eval.json").read_text())
    assert report["provenance"]["device"].startswith("cuda")


def test_a_changed_setting_is_refused_for_an_existing_run(tmp_path, capsys):
    out = tmp_path / "grid"
    start_run(out / "parity-lstm-s0", config_lib.build_config("parity", "lstm", sets=TINY,
                                                               steps=3, seed=0))
    assert main(["sweep", "--tasks", "parity", "--models", "lstm", "--seeds", "0",
                 "--out", str(out), *SETS[:-1], "5"]) == 2
    assert "train.steps" in capsys.readouterr().err


def test_task_and_seed_lists():
    assert parse_tasks("all") == list(TASKS)
    assert parse_tasks("required") == list(REQUIRED_TASKS)
    assert parse_tasks("chomsky") == list(CHOMSKY_TASKS)
    assert len(CHOMSKY_TASKS) == 15 and "parity_check" in CHOMSKY_TASKS
    assert parse_tasks("copy, parity,copy") == ["copy", "parity"]
    assert parse_seeds("0-2,5") == [0, 1, 2, 5]


def test_ray_executor(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "grid"
    assert sweep(out, tasks="parity", seeds="0", extra=["--executor", "ray", "--workers", "1"]) == 0
    assert (out / "parity-lstm-s0" / "eval.json").is_file()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child pids from /proc")
def test_sigterm_stops_the_workers_and_the_run_resumes(tmp_path):
    out = tmp_path / "grid"
    flags = sets(TINY + ["train.checkpoint_every=50"])
    sweep = subprocess.Popen([sys.executable, "-m", "pntm.cli", "sweep", "--tasks", "parity",
                              "--models", "lstm", "--seeds", "0", "--out", str(out),
                              "--workers", "1", *flags, "--steps", "1000000"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "parity-lstm-s0" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.2)
    workers = children(sweep.pid)
    assert workers
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) == 130
    assert "interrupted" in sweep.stderr.read()
    for pid in workers:  # gone (or a zombie about to be reaped), not training on
        status = Path(f"/proc/{pid}/status")
        deadline = time.monotonic() + 30
        while status.exists() and "zombie" not in status.read_text():
            assert time.monotonic() < deadline, f"worker {pid} still runs"
            time.sleep(0.2)
    assert (out / "parity-lstm-s0" / "train_state.pt").is_file()  # what resumes


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]
