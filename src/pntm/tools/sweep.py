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
(status ``validated``) instead of being skipped. ``--lrs`` tries at most :data:`MAX_LRS` learning
rates, the same for every task and model (``--set train.lr`` is then refused). At the end the
sweep prints, per task and model, what validation chose (learning rate and seed), that seed's
test accuracy and how many seeds succeed; it never chooses on the test split.
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

import math

from pntm import config as config_lib
from pntm import splits, tasks
from pntm.errors import ConfigError, PntmError

PR_SET_PDEATHSIG = 1  # linux/prctl.h
ERROR = "error.txt"
LOG = "train.log"
GRID_KEYS = ("task", "model", "seed")
MAX_LRS = 3


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


def parse_lrs(text: str) -> list[float]:
    """``"1e-3,3e-4"`` -> ``[0.001, 0.0003]``: at most :data:`MAX_LRS` positive, finite learning
    rates (order kept, duplicates dropped)."""
    lrs = []
    for part in parse_names(text, "lrs"):
        try:
            lr = float(part)
        except ValueError:
            lr = math.nan
        if not (math.isfinite(lr) and lr > 0):
            raise PntmError(f"malformed --lrs '{text}' (expected positive numbers, e.g. "
                            f"1e-3,3e-4,1e-4; bad part '{part}')")
        lrs.append(lr)
    lrs = list(dict.fromkeys(lrs))
    if len(lrs) > MAX_LRS:
        raise PntmError(f"--lrs '{text}' has {len(lrs)} learning rates; at most {MAX_LRS} "
                        "(the same for every task and model)")
    names = {lr_tag(lr) for lr in lrs}
    if len(names) < len(lrs):
        raise PntmError(f"--lrs '{text}': two learning rates would get the same run name "
                        f"({', '.join(lr_tag(lr) for lr in lrs)})")
    return lrs


def lr_tag(lr: float) -> str:
    from pntm.tools.selection import format_lr
    return format_lr(lr)


def run_name(task: str, model: str, seed: int, lr: float | None = None) -> str:
    """``task-model-sSEED``, or ``task-model-lrLR-sSEED`` when the sweep tries several lrs."""
    return f"{task}-{model}-s{seed}" if lr is None else f"{task}-{model}-lr{lr_tag(lr)}-s{seed}"


def plan(task_names: list[str], models: list[str], seeds: list[int], out: str | Path, *,
         sets: list[str] = (), steps: int | None = None, command: str | None = None,
         device: str = "cpu", lrs: list[float] | None = None) -> list[dict]:
    """Every job of the grid, each with its validated config; any user mistake raises here,
    before anything runs or is written. ``device`` is where every run trains and evaluates:
    the CPU by default (one thread per worker), or ``cuda``, where the workers share the GPU
    (a GPU runs several small models at once better than one after another). ``lrs``: the
    learning rates to try (each sets ``train.lr``; run names carry it when there are several)."""
    from pntm.models import build_model
    from pntm.runs import RunDir

    for item in sets:
        key = next(iter(config_lib.parse_set(item)))
        if key in GRID_KEYS:
            raise ConfigError(f"--set {item}: the sweep sets {key} itself (use --{key}s)")
        train = config_lib.parse_set(item).get("train")
        if lrs and isinstance(train, dict) and "lr" in train:
            raise ConfigError(f"--set {item}: --lrs sets train.lr; give one or the other")
    out = Path(out)  # kept as given, so logs and records name no folder of this machine
    jobs, built = [], set()
    grid = [(lr, seed) for lr in (lrs or [None]) for seed in seeds]
    named_lr = lrs is not None and len(lrs) > 1
    for task in task_names:
        for model in models:
            for lr, seed in grid:
                lr_set = [] if lr is None else [f"train.lr={lr!r}"]
                cfg = config_lib.build_config(task, model, sets=[*sets, *lr_set], steps=steps,
                                              seed=seed)
                if (task, model) not in built:  # a setting the model rejects fails now
                    vocab = tasks.get_task(task).vocab
                    config_lib.check_fits(cfg, len(vocab), device)
                    try:
                        build_model(model, len(vocab), vocab.sep_id, cfg["model_config"])
                    except (TypeError, ValueError, RuntimeError) as err:
                        raise ConfigError(f"{model} on {task}: {err}") from None
                    built.add((task, model))
                name = run_name(task, model, seed, lr if named_lr else None)
                _check_existing(RunDir(out / name), cfg)
                jobs.append({"name": name, "task": task, "model": model, "seed": seed, "lr": lr,
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
