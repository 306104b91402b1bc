"""One writer per run directory, with real processes: a second ``pntm train --out D`` or
``pntm sweep --out OUT`` fails at once, and a SIGKILLed sweep leaves no worker training on."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import assert_user_error, sets
from pntm.runs import RunDir

TINY = ["model_config.d_model=8", "model_config.num_layers=1", "train.batch_size=4",
        "train.train_lengths=[1,4]", "train.log_every=1", "train.early_stop.every=0",
        "train.checkpoint_every=1", "eval.lengths=1-4", "eval.samples=2"]
SETS = sets(TINY)
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                      os.environ.get("PYTHONPATH", "")])}


def start(args):
    return subprocess.Popen([sys.executable, "-m", "pntm.cli", *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process, lines: int = 1, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.read_text().count("\n") >= lines):
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.1)


def gone(pid: int, timeout: float = 20) -> bool:
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + timeout
    while status.exists() and "zombie" not in status.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_a_second_writer_fails_at_once_and_the_first_goes_on(tmp_path, capsys):
    out = tmp_path / "run"
    first = start(["train", "--task", "parity", "--model", "lstm", "--steps", "1000000",
                   "--out", str(out), *SETS])
    try:
        wait_for(out / "metrics.jsonl", first)
        started = time.monotonic()
        assert_user_error(capsys, ["train", "--out", str(out)], str(out), "another pntm process")
        # eval writes into the run too (eval.json): it waits for no one and fails as well
        assert_user_error(capsys, ["eval", str(out)], str(out), "another pntm process")
        assert time.monotonic() - started < 10
        assert not (out / "eval.json").exists()
        assert first.poll() is None  # undisturbed
    finally:
        first.kill()
        first.wait()
    # the killed writer's lock is gone with it; its temp files go with the next writer
    (out / ".metrics.jsonl.abc123.tmp").write_text("half")
    with RunDir(out).writer():
        assert not (out / ".metrics.jsonl.abc123.tmp").exists()


def children(pid: int) -> list[int]:
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir()
            for c in (task / "children").read_text().split()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_a_sigkilled_sweep_leaves_no_worker_and_a_second_sweep_fails_at_once(tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["sweep", "--tasks", "parity", "--models", "lstm", "--seeds", "0", "--out", str(out),
            "--workers", "1", *SETS, "--steps", "1000000"]
    sweep = start(args)
    try:
        wait_for(out / "parity-lstm-s0" / "metrics.jsonl", sweep)
        assert_user_error(capsys, args, str(out), "another pntm process")
        workers = children(sweep.pid)
        assert workers
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    survivors = [pid for pid in workers if not gone(pid)]
    for pid in survivors:  # a failing test still leaves nothing training on
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their sweep"
