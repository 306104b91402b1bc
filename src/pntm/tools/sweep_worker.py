"""One run of ``pntm sweep``, as a worker process (local) or a Ray task runs it: trained and
evaluated in its run folder, resumed from its checkpoint, skipped when it has its ``eval.json``
(measuring validation from its weights when an older run lacks it); a failure is recorded in
``OUT/{run}/error.txt`` and never raised. A local worker dies with its sweep and uses one CPU
thread."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from pntm import splits

PR_SET_PDEATHSIG = 1  # linux/prctl.h
ERROR = "error.txt"
LOG = "train.log"


def init_worker() -> None:
    """A local worker's start: it dies with the sweep, and uses one thread."""
    die_with_parent()
    limit_threads()


def die_with_parent() -> None:
    """A worker must never outlive its sweep (a SIGKILLed sweep used to orphan a worker that
    trained on, and a sweep started again put a second writer on its run). On Linux the kernel
    sends the worker SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere, a
    daemon thread also exits the process once its parent process is gone. A killed write leaves
    at most a temporary file, which the run's next writer removes."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watch thread below still applies
    threading.Thread(target=_watch_parent, args=(parent,), name="pntm-parent-watch",
                     daemon=True).start()


def _watch_parent(parent: int, every: float = 0.5) -> None:
    while os.getppid() == parent:  # a dead parent's children are re-parented (init, subreaper)
        time.sleep(every)
    os._exit(1)


def limit_threads() -> None:
    """One CPU thread per worker: N processes each using every core thrash (~100x slower)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


def run_one(job: dict) -> dict:
    """Train and evaluate one run of the grid (resuming it, or skipping it when it has an
    eval.json); never raises for a failing run: the result says ``failed`` and
    ``OUT/{run}/error.txt`` holds the error and its traceback."""
    limit_threads()
    from pntm.runs import RunDir, RunDirLocked

    run = RunDir(job["out"])
    result = {k: job[k] for k in ("name", "task", "model", "seed", "out")}
    try:
        with run.writer():  # one writer per run, even with two sweeps on one OUT
            report = _train_and_evaluate(run, job, result)
        result["train_seconds"] = report.get("train_seconds")
        result["ood_sequence_accuracy"] = report["summary"]["ood_sequence_accuracy"]
        result["validation_sequence_accuracy"] = validation_accuracy(Path(job["out"]))
    except Exception as err:  # noqa: BLE001 -- recorded, the other runs go on
        result["status"] = "failed"
        result["error"] = one_line(err)
        if not isinstance(err, RunDirLocked):  # that run is another writer's
            _write_error(run.path, result["error"], traceback.format_exc())
    return result


def validation_accuracy(run_dir: Path) -> float | None:
    """Mean sequence accuracy over a run's validation lengths (None: no readable results)."""
    try:
        rows = json.loads((run_dir / splits.FILES["validation"]).read_text())["lengths"]
        return sum(r["sequence_accuracy"] for r in rows) / len(rows)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None


def _train_and_evaluate(run, job: dict, result: dict) -> dict:
    from pntm.evaluate import evaluate_run, evaluate_splits
    from pntm.runs import EVAL
    from pntm.train import start_run, train_run

    if run.file(EVAL).is_file():
        result["status"] = "skipped"
        if not run.file(splits.FILES["validation"]).is_file():
            # an older run: measure validation from its weights
            with open(run.file(LOG), "a") as log, redirect_stderr(log), redirect_stdout(log):
                evaluate_run(run.path, split="validation", device=job.get("device", "cpu"),
                             command=job["command"], quiet=True)
            result["status"] = "validated"
        return run.load_eval()
    result["status"] = "resumed" if run.is_run() else "done"
    if not run.is_run():
        for leftover in (ERROR, LOG):  # from a failed try that never started the run
            run.file(leftover).unlink(missing_ok=True)
        start_run(run.path, job["cfg"], device=job.get("device", "cpu"))
    with open(run.file(LOG), "a") as log, redirect_stderr(log), redirect_stdout(log):
        device = job.get("device", "cpu")
        report = train_run(run.path, device=device, command=job["command"], quiet=True)
        if report is None:  # train.eval_at_end is off
            report = evaluate_splits(run.path, device=device, command=job["command"],
                                     quiet=True)
    run.file(ERROR).unlink(missing_ok=True)
    return report


def one_line(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())


def _write_error(path: Path, line: str, trace: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / ERROR).write_text(f"{line}\n\n{trace}")
    except OSError:
        pass  # the summary still names the failure
