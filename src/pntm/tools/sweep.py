"""A grid of runs: ``pntm sweep --tasks ... --models ... --seeds ... --out OUT``.

One run per (task, model, seed) in ``OUT/{task}-{model}-s{seed}`` (with ``--lrs`` of more than one
learning rate, per (task, model, lr, seed) in ``OUT/{task}-{model}-lr{lr}-s{seed}``, e.g.
``parity-lstm-lr3e-4-s0``), the same run directory
``pntm train --out`` makes, trained and then evaluated (``eval.json``). The sweep is resumable:
a run with an ``eval.json`` is skipped, a half-finished one resumes from its checkpoint, and a
failing one is recorded in ``OUT/{run}/error.txt`` without stopping the others. Each run's
training log goes to ``OUT/{run}/train.log``; the sweep prints one line per finished run.

Executors: ``local`` (worker processes, one CPU thread each: several processes each using every
core thrash) or ``ray`` (the same per-run function as a Ray task, on a local instance or the
cluster at ``--address``; ``OUT`` must then be on a file system the workers share).

Protocol (pntm.splits, pntm.tools.selection): each run measures the validation split
(``eval-validation.json``) before the test split (``eval.json``, written last). A finished run
of an older sweep that has no validation results gets them measured from its weights
(status ``validated``) instead of being skipped. ``--lrs`` tries at most
:data:`~pntm.tools.sweep_grid.MAX_LRS` learning rates, the same for every task and model
(``--set train.lr`` is then refused). At the end the sweep prints, per task and model, what
validation chose (learning rate and seed), that seed's test accuracy and how many seeds
succeed; it never chooses on the test split.

The grid is planned in :mod:`pntm.tools.sweep_grid`, each run trained and evaluated by
:mod:`pntm.tools.sweep_worker`; this module runs them on an executor and reports.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from pntm import splits
from pntm.errors import PntmError
from pntm.tools.sweep_grid import (parse_lrs, parse_names, parse_seeds, parse_tasks, plan,
                                   run_name)  # run_name: imported from here by users and tests
from pntm.tools.sweep_worker import (ERROR, _write_error, init_worker, one_line, run_one,
                                     validation_accuracy)


# --------------------------------------------------------------------------- executors

def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_local(jobs: list[dict], workers: int):
    """Yields each job's result as it finishes, from ``workers`` spawned processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers
    # One fresh process per run: each run imports the code as it is when the run starts, so
    # the commit its provenance records is the code it ran (a long-lived worker would keep
    # the code of its first run).
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, max_tasks_per_child=1)
    finished = False
    try:
        futures = {pool.submit(run_one, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as err:  # noqa: BLE001 -- a worker died (killed, out of memory)
                yield _failed(futures[future], err)
        finished = True
    finally:
        if not finished:  # interrupted (Ctrl-C, SIGTERM): stop the runs too, they resume later
            for worker in multiprocessing.active_children():
                worker.terminate()
        pool.shutdown(wait=finished, cancel_futures=True)


def import_ray():
    try:
        import ray
    except ImportError:
        raise PntmError("--executor ray needs the 'ray' extra: pip install 'pntm[ray]'") from None
    return ray


def run_ray(jobs: list[dict], workers: int | None, address: str | None):
    ray = import_ray()
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=workers, include_dashboard=False)
    try:
        remote = ray.remote(num_cpus=1)(run_one)
        # Ray workers need not share the driver's working folder: give them absolute paths.
        jobs = [{**job, "out": str(Path(job["out"]).absolute())} for job in jobs]
        refs = {remote.remote(job): job for job in jobs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    yield ray.get(ref)
                except Exception as err:  # noqa: BLE001 -- the task or its worker died
                    yield _failed(refs[ref], err)
    finally:
        ray.shutdown()


def _skipped(job: dict) -> dict | None:
    """The result of a run that already has its eval.json and eval-validation.json (None
    otherwise, or when eval.json is unreadable: the worker then reports it or measures the
    missing validation)."""
    path = Path(job["out"]) / "eval.json"
    if not path.is_file() or not (Path(job["out"]) / splits.FILES["validation"]).is_file():
        return None
    try:
        report = json.loads(path.read_text())
        ood = report["summary"]["ood_sequence_accuracy"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    result = {k: job[k] for k in ("name", "task", "model", "seed", "out")}
    result.update(status="skipped", train_seconds=report.get("train_seconds"),
                  ood_sequence_accuracy=ood,
                  validation_sequence_accuracy=validation_accuracy(Path(job["out"])))
    return result


def _failed(job: dict, err: BaseException) -> dict:
    result = {k: job[k] for k in ("name", "task", "model", "seed", "out")}
    result.update(status="failed", error=one_line(err))
    _write_error(Path(job["out"]), result["error"], "".join(traceback.format_exception(err)))
    return result


# --------------------------------------------------------------------------- the command

def format_result(result: dict, index: int, total: int) -> str:
    line = (f"[{index}/{total}] {result['task']} {result['model']} seed {result['seed']}: "
            f"{result['status']}")
    if result["status"] == "failed":
        return f"{line} ({result['error']})"
    secs = result.get("train_seconds")
    secs = f"{secs:.1f}s" if isinstance(secs, (int, float)) else "?"

    def pct(x):
        return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "?"
    return (f"{line}, train {secs}, val seq acc {pct(result.get('validation_sequence_accuracy'))}"
            f", OOD seq acc {pct(result.get('ood_sequence_accuracy'))}")


def sweep(jobs: list[dict], *, executor: str = "local", workers: int | None = None,
          address: str | None = None, echo=print) -> list[dict]:
    """Runs every job; prints one line per finished run; returns the results in grid order."""
    results, pending = {}, []
    for job in jobs:  # finished runs are skipped here, without starting a worker
        done = _skipped(job)
        if done is None:
            pending.append(job)
        else:
            results[job["name"]] = done
            echo(format_result(done, len(results), len(jobs)))
    if not pending:
        stream = iter(())
    elif executor == "ray":
        stream = run_ray(pending, workers, address)
    else:
        stream = run_local(pending, workers or default_workers())
    for result in stream:
        results[result["name"]] = result
        echo(format_result(result, len(results), len(jobs)))
    return [results[job["name"]] for job in jobs if job["name"] in results]


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def _run_sweep(jobs: list[dict], out: str, executor: str, workers: int | None,
               address: str | None) -> list[dict]:
    where = f"on Ray ({address or 'local instance'})" if executor == "ray" else \
        f"with {min(workers or default_workers(), len(jobs))} worker process(es)"
    print(f"pntm: sweep of {len(jobs)} runs into {out} {where}", file=sys.stderr, flush=True)
    # SIGTERM (kill, a scheduler's time limit) unwinds like Ctrl-C, so the worker processes
    # stop with the sweep instead of training on, orphaned; each run resumes from its checkpoint.
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.perf_counter()
    results = sweep(jobs, executor=executor, workers=workers, address=address,
                    echo=lambda line: print(line, flush=True))
    failed = sum(r["status"] == "failed" for r in results)
    print_selection(out, [r for r in results if r["status"] != "failed"])
    counts = {s: sum(r["status"] == s for r in results)
              for s in ("done", "resumed", "validated", "skipped")}
    print(f"pntm: {len(results)} runs in {time.perf_counter() - started:.0f}s "
          f"({', '.join(f'{n} {s}' for s, n in counts.items())}, {failed} failed); "
          f"results in {out}/*/eval.json; tables: pntm report {out}")
    return results


def sweep_from_options(*, task_spec: str, model_spec: str, seed_spec: str, out: str,
                       sets: list[str], steps: int | None, lr_spec: str | None,
                       device: str | None, executor: str, workers: int | None,
                       address: str | None, command: str) -> int:
    """``pntm sweep``, from its options as given (the ``*_spec`` are the command line's comma
    lists): every option is checked before anything runs. Returns 0 when every run has its
    eval.json, 1 when some failed."""
    if address and executor != "ray":
        raise PntmError("--address is for --executor ray")
    if executor == "ray":
        import_ray()  # a missing extra fails before anything runs
    from pntm.device import resolve_device
    from pntm.runs import dir_lock
    device_type = resolve_device(device).type  # cuda without a GPU fails before anything runs
    lrs = parse_lrs(lr_spec) if lr_spec is not None else None
    jobs = plan(parse_tasks(task_spec), parse_names(model_spec, "models"), parse_seeds(seed_spec),
                out, sets=sets, steps=steps, command=command, device=device_type, lrs=lrs)
    Path(out).mkdir(parents=True, exist_ok=True)
    with dir_lock(Path(out), "sweep's results folder"):  # a second sweep on OUT fails at once
        results = _run_sweep(jobs, out, executor, workers, address)
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print(f"pntm: failed: {r['name']}: {r['error']} (see {r['out']}/{ERROR})", file=sys.stderr)
    return 1 if failed else 0


def print_selection(out: str | Path, finished: list[dict]) -> None:
    """Per task and model, what validation chose among this sweep's finished runs."""
    from pntm.tools.report_tables import summary_lines

    if not finished:
        return
    try:
        lines = summary_lines(out, {r["name"] for r in finished})
    except PntmError as err:  # a damaged eval.json of this sweep: the report will name it
        print(f"pntm: note: no selection summary: {one_line(err)}", file=sys.stderr)
        return
    print("pntm: selection on validation (test numbers only reported):")
    for line in lines:
        print(f"  {line}")
