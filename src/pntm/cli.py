"""The ``pntm`` command line: ``tasks``, ``train``, ``eval``, ``generate``, ``inspect``, ``sweep``,
``report``, ``ablation``, ``bench`` (their options: ``pntm.cli_parser``).

Every mistake a user can make ends with one line ``pntm: error: ...`` on stderr and exit
code 2, never a traceback; Ctrl-C exits with 130 (checkpoints are written atomically, so an
interrupted run resumes with ``pntm train --out RUN_DIR``).

``pntm train`` checks the whole config and builds the model before it writes anything, then
holds the run directory's lock while it sets up and trains (``RunDir.writer``): a second writer
fails at once, and a set-up that fails leaves the directory as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pntm import config as config_lib
from pntm import tasks
from pntm.cli_parser import build_parser
from pntm.device import resolve_device
from pntm.errors import PntmError, RunDirError
from pntm.provenance import command_line

# Errors raised by pntm.tasks for bad user input (they derive from ValueError).
USER_ERRORS = (PntmError, tasks.UnknownTaskError, tasks.UnknownTokenError,
               tasks.LengthSpecError, tasks.InvalidPromptError)


# --------------------------------------------------------------------------- commands
#
# Each ``cmd_*`` takes the parsed namespace and the command line (for provenance) and returns
# the exit code. Only these functions read the namespace: library code gets plain values.

def cmd_tasks(args, argv: list[str]) -> int:
    """A header, then one line per task: name, Chomsky level, category (state_tracking,
    memorization and arithmetic are the project's own tasks; chomsky the suite's), the lengths it
    can produce, description."""
    rows = [("task", "level", "category", "lengths", "description")]
    rows += [(t.name, t.level, t.category, t.length_range(), t.description)
             for t in tasks.TASKS.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)) + "  " + row[4])
    return 0


def cmd_train(args, argv: list[str]) -> int:
    from pntm.data import load_jsonl
    from pntm.runs import RunDir
    from pntm.train import prepare_run, train_run

    device = resolve_device(args.device)
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    # The whole file is checked before a run directory exists (and, to resume, compared with
    # the run's by its sha256).
    dataset = load_jsonl(args.data) if args.data is not None else None

    def new_config() -> dict:
        data = dataset.describe() if dataset is not None else None
        task = args.task if dataset is None or args.task else dataset.path.stem
        cfg = config_lib.build_config(task, args.model, config_file=args.config, sets=args.sets,
                                      steps=args.steps, seed=args.seed, data=data)
        cfg["train"]["tensorboard"] = cfg["train"]["tensorboard"] or args.tensorboard
        return cfg

    out, cfg = args.out, None
    if out is None:
        cfg = new_config()
        out = f"runs/{cfg['task']}-{cfg['model']}-s{cfg['seed']}"
    run = RunDir(out)
    if not run.is_run():  # everything checked (and the model built) before anything is written
        cfg = prepare_run(cfg or new_config(), dataset, device)
    with run.writer():  # one writer per run; a failed set-up leaves the directory as it was
        rate = None
        if run.is_run():
            rate = _check_resume(run, args, dataset)
        else:
            run.create(cfg)
            what = cfg["task"] if dataset is None else f"{dataset.path} ({len(dataset)} examples)"
            print(f"pntm: training {cfg['model']} on {what} (seed {cfg['seed']}) into {out}",
                  file=sys.stderr)
        train_run(out, steps=args.steps, device=device, command=command_line(argv),
                  dataset=dataset, tensorboard=args.tensorboard, rate=rate)
    return 0


def _check_resume(run, args, dataset=None) -> dict:
    """Resuming takes the saved config; options that would change it are refused, but for
    ``--set train.K=V`` with K a learning-rate key (``pntm.train.RATE_KEYS``), returned for
    ``train_run`` to check against the steps already trained."""
    from pntm.train import RATE_KEYS

    saved, rate, others = run.load_config(), {}, []
    for item in args.sets:
        top = config_lib.parse_set(item)
        inner = top.get("train") if list(top) == ["train"] else None
        if isinstance(inner, dict) and len(inner) == 1 and next(iter(inner)) in RATE_KEYS:
            rate.update(inner)
        else:
            others.append(item)
    changed = [flag for flag, given in (("--config", args.config), ("--set", others)) if given]
    changed += [f"--{key}" for key in ("task", "model", "seed")
                if getattr(args, key) is not None and getattr(args, key) != saved[key]]
    if dataset is not None and dataset.sha256 != (saved["data"] or {}).get("sha256"):
        changed.append("--data")
    if changed:
        raise RunDirError(f"{run} already holds a {saved['task']}/{saved['model']} run "
                          f"(seed {saved['seed']}); {', '.join(changed)} would change it. Resume "
                          f"with `pntm train --out {run}` (plus --steps N to extend, and "
                          "--set train.lr_schedule/lr_decay_start/min_lr_ratio) or pick another "
                          "--out")
    return rate


def cmd_eval(args, argv: list[str]) -> int:
    from pntm.evaluate import evaluate_folder, evaluate_run, is_run_folder_collection
    from pntm.runs import RunDir

    device = resolve_device(args.device)
    if args.lengths is not None:
        tasks.parse_lengths(args.lengths)  # a bad spec fails before any loading
    if is_run_folder_collection(args.run_dir):
        given = [flag for flag, value in (("--json", args.json), ("--data", args.data),
                                          ("--errors", args.errors)) if value]
        if given:
            raise PntmError(f"{', '.join(given)}: for one run, not a folder of runs")
        return evaluate_folder(args.run_dir, args.split, device=device, lengths=args.lengths,
                               samples=args.samples, command=command_line(argv),
                               echo=lambda line: print(line, flush=True))
    if args.data is None and args.lengths is not None:
        cfg = RunDir(args.run_dir).load_config()
        if cfg["data"] is None:  # so do lengths the run's task cannot produce
            tasks.get_task(cfg["task"]).check_lengths(tasks.parse_lengths(args.lengths),
                                                      "--lengths")
    if args.errors is not None:
        _check_output_file(args.errors, "--errors")
    evaluate_run(args.run_dir, lengths=args.lengths, samples=args.samples, json_path=args.json,
                 device=device, command=command_line(argv), data=args.data, split=args.split,
                 errors=args.errors)
    return 0


def _check_output_file(path: str, flag: str) -> None:
    """A file an evaluation will write at its end: fail now, before the evaluation, if it is a
    directory or its nearest existing parent is not one."""
    target = Path(path)
    if target.is_dir():
        raise PntmError(f"{flag} {path}: is a directory, not a file")
    parent = next((p for p in target.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise PntmError(f"{flag} {path}: {parent} is not a directory")


def cmd_generate(args, argv: list[str]) -> int:
    from pntm.decoding import answer_budget, generate_answer, join_tokens, parse_prompt
    from pntm.runs import RunDir, load_model

    device = resolve_device(args.device)
    run = RunDir(args.run_dir)
    cfg = run.load_config()
    prompt = parse_prompt(cfg, args.prompt)
    run.vocab(cfg).encode(prompt)  # an unknown token fails here, naming it
    vocab, model = load_model(run, cfg, device)
    budget = answer_budget(cfg, prompt)
    tokens, ended = generate_answer(model, vocab, prompt, budget, device)
    if not ended:
        print(f"pntm: note: no {tasks.EOS} within {budget} tokens", file=sys.stderr)
    print(join_tokens(tokens))
    return 0


def cmd_inspect(args, argv: list[str]) -> int:
    from pntm.decoding import join_tokens
    from pntm.tools.inspection import check_matplotlib, inspect_run

    check_matplotlib()  # before anything is loaded
    tr = inspect_run(args.run_dir, args.prompt, args.out, resolve_device(args.device))
    print(join_tokens(tr.answer))
    note = "" if tr.ended else f" (no {tasks.EOS} within the decoding budget)"
    print(f"pntm: wrote {args.out}{note}", file=sys.stderr)
    return 0


def cmd_sweep(args, argv: list[str]) -> int:
    """0 when every run has its eval.json, 1 when some failed."""
    from pntm.tools.sweep import sweep_from_options

    return sweep_from_options(task_spec=args.tasks, model_spec=args.models,
                              seed_spec=args.seeds, out=args.out, sets=args.sets,
                              steps=args.steps, lr_spec=args.lrs, device=args.device,
                              executor=args.executor, workers=args.workers,
                              address=args.address, command=command_line(argv))


def cmd_report(args, argv: list[str]) -> int:
    """The speed tables of a ``pntm bench`` JSON file, or the report of a folder of runs: write
    everything, print the task × model matrix and what was written."""
    if args.runs_dir.endswith(".json"):
        from pntm.tools.bench_report import write_bench_report
        write_bench_report(args.runs_dir, args.out)
        print(f"{args.runs_dir} -> {args.out}")
        return 0
    from pntm.tools.report import write_report
    from pntm.tools.report_tables import matrix_table

    result = write_report(args.runs_dir, args.out, json_path=args.json, plots_dir=args.plots,
                          plots=not args.no_plots, command=command_line(argv),
                          select=args.select)
    bench = result["benchmark"]
    print(matrix_table(bench["aggregates"]))
    if result["notice"]:
        print(f"pntm: note: no plots: {result['notice']}", file=sys.stderr)
    written = [str(args.out), str(result["json"])]
    if result["plots"]:
        written.append(f"{len(result['plots'])} plots in "
                       f"{next(iter(result['plots'].values())).parent}")
    print(f"{len(bench['runs'])} runs ({len(bench['aggregates'])} task/model pairs, "
          f"{len(bench['unfinished_runs'])} unfinished) -> {', '.join(written)}")
    return 0


def cmd_ablation(args, argv: list[str]) -> int:
    """Write the ablation table and its JSON; print the table."""
    from pntm.tools.ablation import write_ablation

    result = write_ablation(args.variants_dir, args.base, args.out, json_path=args.json,
                            command=command_line(argv))
    print(result["block"])
    return 0


def cmd_bench(args, argv: list[str]) -> int:
    from pntm.tools.bench_command import bench_from_options

    mode = "scan" if args.scan else "decode" if args.decode else "train"
    bench_from_options(mode=mode, model_spec=args.models, length_spec=args.lengths,
                       context_spec=args.contexts, batch=args.batch, tokens=args.tokens,
                       micro_batch=args.micro_batch, device=args.device,
                       repeats=args.repeats, warmup=args.warmup, time_limit=args.time_limit,
                       json_path=args.json, plot_path=args.plot, command=command_line(argv),
                       sets=args.sets)
    return 0


# --------------------------------------------------------------------------- main

COMMANDS = ("tasks", "train", "eval", "generate", "inspect", "report", "ablation", "bench", "sweep")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        handlers = {name: globals()[f"cmd_{name}"] for name in COMMANDS}  # cmd_NAME runs NAME
        args = build_parser(handlers).parse_args(argv)
        return args.func(args, argv)
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0
    except USER_ERRORS as err:
        return _fail(str(err))
    except RecursionError:  # a file nested too deeply that no reader caught (none known)
        return _fail("input nested too deeply to read")
    except (MemoryError, RuntimeError) as err:  # torch's allocators raise RuntimeError
        if not _out_of_memory(err):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return _fail(f"out of memory ({first[:160]}); lower the batch size, the lengths or the "
                     "model's sizes")
    except OSError as err:  # unwritable --out, full disk, unreadable file...
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        return _fail(f"{err.strerror or err}{where}")
    except KeyboardInterrupt:
        print("pntm: interrupted (a training run resumes from its last checkpoint with "
              "`pntm train --out RUN_DIR`)", file=sys.stderr)
        return 130


def _out_of_memory(err: BaseException) -> bool:
    """An allocation that failed: MemoryError, or torch's CPU or GPU allocator refusing (the
    config check estimates memory before a run starts, but evaluation lengths or a machine
    busier than its size suggests can still run out)."""
    text = str(err)
    return (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or "can't allocate memory" in text or "out of memory" in text.lower())


def _fail(message: str) -> int:
    print(f"pntm: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
