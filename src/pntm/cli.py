"""The ``pntm`` command line: ``tasks``, ``train``, ``eval``, ``generate``, ``inspect``, ``sweep``,
``report``, ``ablation``, ``bench``.

Every mistake a user can make ends with one line ``pntm: error: ...`` on stderr and exit
code 2, never a traceback; Ctrl-C exits with 130 (checkpoints are written atomically, so an
interrupted run resumes with ``pntm train --out RUN_DIR``).

``pntm train`` checks the whole config and builds the model before it writes anything, then
holds the run directory's lock while it sets up and trains (``RunDir.writer``): a second writer
fails at once, and a set-up that fails leaves the directory as it was.
"""

from __future__ import annotations

import argparse
import sys

from pntm import config as config_lib
from pntm import tasks
from pntm.device import resolve_device
from pntm.errors import PntmError, RunDirError
from pntm.provenance import command_line

# Errors raised by pntm.tasks for bad user input (they derive from ValueError).
USER_ERRORS = (PntmError, tasks.UnknownTaskError, tasks.UnknownTokenError,
               tasks.LengthSpecError, tasks.InvalidPromptError)


class UsageError(PntmError):
    """A malformed command line (raised instead of argparse's usage-and-exit)."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage first: keep it to one line
        raise UsageError(message)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="pntm", description="Parallelizable Neural Turing Machines: "
                            "train and evaluate sequence models on length generalization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sub.add_parser("tasks", help="list the tasks").set_defaults(func=cmd_tasks)

    p = sub.add_parser("train", help="train a model (resumes when --out already holds a run)")
    p.set_defaults(func=cmd_train)
    p.add_argument("--task", help="task name (see `pntm tasks`); with --data, a name for the run's "
                   "task (default: the file's name without .jsonl)")
    p.add_argument("--data", metavar="TRAIN.jsonl", help="train on your own examples, one JSON "
                   'object per line: {"input": "0110", "target": "1"} (instead of a task)')
    p.add_argument("--model", help="pntm, ntm, lstm, transformer, or a peer: mamba, deltanet, "
                   "slstm")
    p.add_argument("--config", metavar="FILE.yaml", help="config overrides from a YAML file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.lr=3e-4 (repeatable)")
    p.add_argument("--steps", type=positive_int, help="training steps (extends a finished run)")
    p.add_argument("--seed", type=non_negative_int, help="run seed (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/TASK-MODEL-sSEED)")
    p.add_argument("--tensorboard", action="store_true", help="also log training metrics for "
                   "TensorBoard in RUN_DIR/tensorboard (needs the tensorboard package)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads torch uses "
                   "(default: torch's choice; a run reproduces bitwise only with the same "
                   "thread count, recorded in eval.json's provenance)")

    p = sub.add_parser("eval", help="greedy length-generalization evaluation of a run (or of "
                       "every run of a folder that lacks up-to-date results)")
    p.set_defaults(func=cmd_eval)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a folder of them")
    p.add_argument("--split", choices=["validation", "test"], default="test",
                   help="test (default: the OOD grid, into eval.json) or validation (lengths "
                        "41-64, its own examples, into eval-validation.json)")
    p.add_argument("--lengths", metavar="SPEC", help="e.g. 1-40,41-500:10 (default: the run's config)")
    p.add_argument("--samples", type=positive_int, metavar="K", help="examples per length")
    p.add_argument("--data", metavar="TEST.jsonl", help="evaluate on the examples of a JSONL file, "
                   "per input length (every example unless --samples caps them)")
    p.add_argument("--json", metavar="PATH", help="where to write the report (default RUN_DIR/eval.json)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")

    p = sub.add_parser("generate", help="greedy-decode the answer to one prompt")
    p.set_defaults(func=cmd_generate)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("prompt", metavar="PROMPT", help="e.g. 0110 or '12 + 7'")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")

    p = sub.add_parser("inspect", help="a figure of what the model does on one prompt: head "
                       "weightings over memory, erase/add, attention or state norms")
    p.set_defaults(func=cmd_inspect)
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("prompt", metavar="PROMPT", help="e.g. 0110 or '12 + 7'")
    p.add_argument("--out", required=True, metavar="FIG.png",
                   help="where to write the figure (PNG)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")

    p = sub.add_parser("report", help="benchmark.json, plots and results tables from the "
                       "eval.json files of run folders")
    p.set_defaults(func=cmd_report)
    p.add_argument("runs_dir", metavar="RUNS_DIR",
                   help="a folder of run directories, or a `pntm bench --json` file (its "
                        "speed tables go into the markdown file)")
    p.add_argument("--out", default="RESULTS.md", metavar="FILE.md",
                   help="markdown file whose report block is replaced (default RESULTS.md)")
    p.add_argument("--json", metavar="PATH",
                   help="every run and the per-task/model aggregates (default "
                        "RUNS_DIR/benchmark.json)")
    p.add_argument("--plots", metavar="DIR",
                   help="one PNG per task, accuracy against length (default RUNS_DIR/plots; "
                        "needs matplotlib)")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--select", choices=["validation", "test"], default="validation",
                   help="how the seed of each task and model is chosen: validation (default) or "
                        "test (legacy display only, marked as such)")

    p = sub.add_parser("ablation", help="the variants × tasks table of an ablation: one sweep "
                       "folder per variant against the sweep of the unchanged config")
    p.set_defaults(func=cmd_ablation)
    p.add_argument("variants_dir", metavar="VARIANTS_DIR",
                   help="a folder with one sweep folder per variant (e.g. no-state-heads/)")
    p.add_argument("--base", required=True, metavar="BASE_DIR",
                   help="the sweep folder of the unchanged config (same tasks and seeds)")
    p.add_argument("--out", default="RESULTS.md", metavar="FILE.md",
                   help="markdown file whose ablation block is replaced (default RESULTS.md)")
    p.add_argument("--json", metavar="PATH",
                   help="the table's data (default VARIANTS_DIR/ablation.json)")

    p = sub.add_parser("bench", help="speed benchmark: training step, scan methods, decoding")
    p.set_defaults(func=cmd_bench)
    p.add_argument("--models", metavar="M1,M2", help="comma list of models (default "
                   "pntm,ntm,lstm,transformer,transformer-rand,mamba,deltanet,slstm; with "
                   "--decode pntm,transformer,mamba,deltanet,slstm)")
    p.add_argument("--lengths", default="64,256,1024", metavar="T1,T2",
                   help="sequence lengths (default 64,256,1024)")
    p.add_argument("--batch", type=positive_int, default=32, help="batch size (default 32)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (default 5)")
    p.add_argument("--warmup", type=non_negative_int, default=2, help="untimed runs (default 2)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS",
                   help="skip a model's longer lengths once a step took longer (default 60)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="log-log plot of time against length")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--scan", action="store_true", help="time the linear_scan methods")
    mode.add_argument("--decode", action="store_true", help="greedy decoding throughput")
    p.add_argument("--contexts", metavar="C1,C2",
                   help="with --decode: prompt lengths (default 512,4096)")

    p = sub.add_parser("sweep", help="train and evaluate a grid of runs (resumable)")
    p.set_defaults(func=cmd_sweep)
    p.add_argument("--tasks", required=True, metavar="T1,T2|all|required",
                   help="comma list of tasks, or all, or required (the benchmark's set)")
    p.add_argument("--models", required=True, metavar="M1,M2", help="comma list of models")
    p.add_argument("--seeds", default="0,1,2", metavar="S1,S2",
                   help="comma list of seeds or ranges, e.g. 0,1,2 or 0-2 (default 0,1,2)")
    p.add_argument("--out", required=True, metavar="OUT",
                   help="results folder: one run directory OUT/TASK-MODEL-sSEED per run")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="runs at once (default: the number of CPU cores)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or Ray tasks")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: a local one)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key for every run (repeatable)")
    p.add_argument("--steps", type=positive_int, help="training steps of every run")
    p.add_argument("--lrs", metavar="LR1,LR2", help="at most 3 learning rates, the same for "
                   "every task and model, e.g. 1e-3,3e-4,1e-4 (run names then carry -lrLR)")
    p.add_argument("--select", choices=["validation"], default="validation",
                   help="the summary picks each task and model's learning rate and seed on "
                        "the validation split (the only choice)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where every run trains (default cpu: one thread per worker; cuda: "
                        "the workers share the GPU)")
    return parser


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
        if run.is_run():
            _check_resume(run, args, dataset)
        else:
            run.create(cfg)
            what = cfg["task"] if dataset is None else f"{dataset.path} ({len(dataset)} examples)"
            print(f"pntm: training {cfg['model']} on {what} (seed {cfg['seed']}) into {out}",
                  file=sys.stderr)
        train_run(out, steps=args.steps, device=device, command=command_line(argv),
                  dataset=dataset, tensorboard=args.tensorboard)
    return 0


def _check_resume(run, args, dataset=None) -> None:
    """Resuming takes the saved config; options that would change it are refused."""
    saved = run.load_config()
    changed = [flag for flag, given in (("--config", args.config), ("--set", args.sets)) if given]
    changed += [f"--{key}" for key in ("task", "model", "seed")
                if getattr(args, key) is not None and getattr(args, key) != saved[key]]
    if dataset is not None and dataset.sha256 != (saved["data"] or {}).get("sha256"):
        changed.append("--data")
    if changed:
        raise RunDirError(f"{run} already holds a {saved['task']}/{saved['model']} run "
                          f"(seed {saved['seed']}); {', '.join(changed)} would change it. Resume "
                          f"with `pntm train --out {run}` (plus --steps N to extend) or pick "
                          "another --out")


def cmd_eval(args, argv: list[str]) -> int:
    from pntm.evaluate import evaluate_folder, evaluate_run, is_run_folder_collection
    from pntm.runs import RunDir

    device = resolve_device(args.device)
    if args.lengths is not None:
        tasks.parse_lengths(args.lengths)  # a bad spec fails before any loading
    if is_run_folder_collection(args.run_dir):
        given = [flag for flag, value in (("--json", args.json), ("--data", args.data)) if value]
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
    evaluate_run(args.run_dir, lengths=args.lengths, samples=args.samples, json_path=args.json,
                 device=device, command=command_line(argv), data=args.data, split=args.split)
    return 0


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
    from pntm.tools.ablation import render, write_ablation

    ablation = write_ablation(args.variants_dir, args.base, args.out, json_path=args.json,
                              command=command_line(argv))
    print(render(ablation))
    return 0


def cmd_bench(args, argv: list[str]) -> int:
    from pntm.tools.bench_command import bench_from_options

    mode = "scan" if args.scan else "decode" if args.decode else "train"
    bench_from_options(mode=mode, model_spec=args.models, length_spec=args.lengths,
                       context_spec=args.contexts, batch=args.batch, device=args.device,
                       repeats=args.repeats, warmup=args.warmup, time_limit=args.time_limit,
                       json_path=args.json, plot_path=args.plot, command=command_line(argv))
    return 0


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
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
