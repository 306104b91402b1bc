"""A grid of runs: ``pntm sweep --tasks ... --models ... --seeds ... --out OUT``.

One run per (task, model, seed) in ``OUT/{task}-{model}-s{seed}``, the same run directory
``pntm train --out`` makes, trained and then evaluated (``eval.json``). The sweep is resumable:
a run with an ``eval.json`` is skipped, a half-finished one resumes from its checkpoint, and a
failing one is recorded in ``OUT/{run}/error.txt`` without stopping the others. Each run's
training log goes to ``OUT/{run}/train.log``; the sweep prints one line per finished run.

Executors: ``local`` (worker processes, one CPU thread each: several processes each using every
core thrash) or ``ray`` (the same per-run function as a Ray task, on a local instance or the
cluster at ``--address``; ``OUT`` must then be on a file system the workers share).
"""

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

from pntm import config as config_lib
from pntm import tasks
from pntm.errors import ConfigError, PntmError

PR_SET_PDEATHSIG = 1  # linux/prctl.h
ERROR = "error.txt"
LOG = "train.log"
GRID_KEYS = ("task", "model", "seed")


# --------------------------------------------------------------------------- the grid

def parse_names(text: str, what: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (order kept, duplicates dropped)."""
    names = [n.strip() for n in text.split(",")]
    if not text.strip() or not all(names):
        raise PntmError(f"malformed --{what} '{text}' (expected a comma list, e.g. a,b)")
    return list(dict.fromkeys(names))


def parse_tasks(text: str) -> list[str]:
    key = text.strip()
    if key == "all":
        return list(tasks.TASKS)
    if key == "required":
        return list(tasks.REQUIRED_TASKS)
    names = parse_names(text, "tasks")
    for name in names:
        tasks.get_task(name)  # an unknown task fails here, with the list
    return names


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-2"`` (both ends included) -> ``[0, 1, 2]``."""
    seeds: list[int] = []
    for part in parse_names(text, "seeds"):
        lo, dash, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError:
            first, last = -1, -1
        if first < 0 or last < first:
            raise PntmError(f"malformed --seeds '{text}' (expected non-negative integers "
                            f"or ranges, e.g. 0,1,2 or 0-2; bad part '{part}')")
        seeds.extend(range(first, last + 1))
    return list(dict.fromkeys(seeds))


def run_name(task: str, model: str, seed: int) -> str:
    return f"{task}-{model}-s{seed}"


def plan(task_names: list[str], models: list[str], seeds: list[int], out: str | Path, *,
         sets: list[str] = (), steps: int | None = None, command: str | None = None,
         device: str = "cpu") -> list[dict]:
    """Every job of the grid, each with its validated config; any user mistake raises here,
    before anything runs or is written. ``device`` is where every run trains and evaluates:
    the CPU by default (one thread per worker), or ``cuda``, where the workers share the GPU
    (a GPU runs several small models at once better than one after another)."""
    from pntm.models import build_model
    from pntm.runs import RunDir

    for item in sets:
        key = next(iter(config_lib.parse_set(item)))
        if key in GRID_KEYS:
            raise ConfigError(f"--set {item}: the sweep sets {key} itself (use --{key}s)")
    out = Path(out)  # kept as given, so logs and records name no folder of this machine
    jobs, built = [], set()
    for task in task_names:
        for model in models:
            for seed in seeds:
                cfg = config_lib.build_config(task, model, sets=list(sets), steps=steps, seed=seed)
                if (task, model) not in built:  # a setting the model rejects fails now
                    vocab = tasks.get_task(task).vocab
                    config_lib.check_fits(cfg, len(vocab), device)
                    try:
                        build_model(model, len(vocab), vocab.sep_id, cfg["model_config"])
                    except (TypeError, ValueError, RuntimeError) as err:
                        raise ConfigError(f"{model} on {task}: {err}") from None
                    built.add((task, model))
                name = run_name(task, model, seed)
                _check_existing(RunDir(out / name), cfg)
                jobs.append({"name": name, "task": task, "model": model, "seed": seed,
                             "out": str(out / name), "cfg": cfg, "command": command,
                             "device": device})
    return jobs


def _check_existing(run, cfg: dict) -> None:
    """A run already in OUT must have been made with the same settings (a corrupt one is
    left to its worker, which records the failure)."""
    if not run.is_run():
        return
    try:
        saved = run.load_config()
    except PntmError:
        return
    key = _first_difference({**saved, "vocab": None}, {**cfg, "vocab": None})
    if key is not None:
        raise ConfigError(f"{run.path} already holds a run with another {key} "
                          f"({_at(saved, key)!r}, asked {_at(cfg, key)!r}); "
                          "use another --out or the same settings")


def _first_difference(a, b, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    return None if a == b else path


def _at(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


# --------------------------------------------------------------------------- one run

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
    except Exception as err:  # noqa: BLE001 -- recorded, the other runs go on
        result["status"] = "failed"
        result["error"] = one_line(err)
        if not isinstance(err, RunDirLocked):  # that run is another writer's
            _write_error(run.path, result["error"], traceback.format_exc())
    return result


def _train_and_evaluate(run, job: dict, result: dict) -> dict:
    from pntm.evaluate import evaluate_run
    from pntm.runs import EVAL
    from pntm.train import start_run, train_run

    if run.file(EVAL).is_file():
        result["status"] = "skipped"
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
            report = evaluate_run(run.path, device=device, command=job["command"], quiet=True)
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
    """The result of a run that already has its eval.json (None otherwise, or when that file
    is unreadable: the worker then reports it)."""
    path = Path(job["out"]) / "eval.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        ood = report["summary"]["ood_sequence_accuracy"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    result = {k: job[k] for k in ("name", "task", "model", "seed", "out")}
    result.update(status="skipped", train_seconds=report.get("train_seconds"),
                  ood_sequence_accuracy=ood)
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
    ood = result.get("ood_sequence_accuracy")
    secs = f"{secs:.1f}s" if isinstance(secs, (int, float)) else "?"
    ood = f"{100 * ood:.1f}%" if isinstance(ood, (int, float)) else "?"
    return f"{line}, train {secs}, OOD seq acc {ood}"


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


def _run_sweep(args, jobs: list[dict]) -> list[dict]:
    where = f"on Ray ({args.address or 'local instance'})" if args.executor == "ray" else \
        f"with {min(args.workers or default_workers(), len(jobs))} worker process(es)"
    print(f"pntm: sweep of {len(jobs)} runs into {args.out} {where}", file=sys.stderr, flush=True)
    # SIGTERM (kill, a scheduler's time limit) unwinds like Ctrl-C, so the worker processes
    # stop with the sweep instead of training on, orphaned; each run resumes from its checkpoint.
    signal.signal(signal.SIGTERM, _interrupted)
    started = time.perf_counter()
    results = sweep(jobs, executor=args.executor, workers=args.workers, address=args.address,
                    echo=lambda line: print(line, flush=True))
    failed = sum(r["status"] == "failed" for r in results)
    counts = {s: sum(r["status"] == s for r in results) for s in ("done", "resumed", "skipped")}
    print(f"pntm: {len(results)} runs in {time.perf_counter() - started:.0f}s "
          f"({', '.join(f'{n} {s}' for s, n in counts.items())}, {failed} failed); "
          f"results in {args.out}/*/eval.json; tables: pntm report {args.out}")
    return results


def cmd_sweep(args, command: str) -> int:
    """``pntm sweep``: 0 when every run has its eval.json, 1 when some failed."""
    if args.address and args.executor != "ray":
        raise PntmError("--address is for --executor ray")
    if args.executor == "ray":
        import_ray()  # a missing extra fails before anything runs
    from pntm.device import resolve_device
    from pntm.runs import dir_lock
    device = resolve_device(args.device).type  # cuda without a GPU fails before anything runs
    jobs = plan(parse_tasks(args.tasks), parse_names(args.models, "models"),
                parse_seeds(args.seeds), args.out, sets=args.sets, steps=args.steps,
                command=command, device=device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with dir_lock(out, "sweep's results folder"):  # a second sweep on OUT fails at once
        results = _run_sweep(args, jobs)
    failed = [r for r in results if r["status"] == "failed"]
    for r in failed:
        print(f"pntm: failed: {r['name']}: {r['error']} (see {r['out']}/{ERROR})", file=sys.stderr)
    return 1 if failed else 0
