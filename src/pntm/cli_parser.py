"""The ``pntm`` command line's parser: every command, option and help text.

``pntm.cli`` runs the commands; this module only declares them, one function per command, so
the options of a command read in one place. A malformed command line raises ``UsageError`` (one
``pntm: error:`` line, exit code 2) instead of argparse's usage-and-exit.
"""

from __future__ import annotations

import argparse
from typing import Callable

from pntm.errors import PntmError

Handler = Callable[[argparse.Namespace, list], int]


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


def build_parser(handlers: dict[str, Handler]) -> ArgumentParser:
    """The ``pntm`` parser; ``handlers`` maps each command to its function (``cli.cmd_*``),
    set as the parsed namespace's ``func``."""
    parser = ArgumentParser(prog="pntm", description="Parallelizable Neural Turing Machines: "
                            "train and evaluate sequence models on length generalization.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_tasks(sub, handlers)
    _add_train(sub, handlers)
    _add_eval(sub, handlers)
    _add_generate(sub, handlers)
    _add_inspect(sub, handlers)
    _add_report(sub, handlers)
    _add_ablation(sub, handlers)
    _add_bench(sub, handlers)
    _add_sweep(sub, handlers)
    return parser


def _add_tasks(sub, handlers: dict[str, Handler]) -> None:
    sub.add_parser("tasks", help="list the tasks").set_defaults(func=handlers["tasks"])


def _add_train(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("train", help="train a model (resumes when --out already holds a run)")
    p.set_defaults(func=handlers["train"])
    p.add_argument("--task", help="task name (see `pntm tasks`); with --data, a name for the run's "
                   "task (default: the file's name without .jsonl)")
    p.add_argument("--data", metavar="TRAIN.jsonl", help="train on your own examples, one JSON "
                   'object per line: {"input": "0110", "target": "1"} (instead of a task)')
    p.add_argument("--model", help="pntm, ntm, lstm, transformer, or a peer: mamba, deltanet, "
                   "slstm")
    p.add_argument("--config", metavar="FILE.yaml", help="config overrides from a YAML file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set train.lr=3e-4 (repeatable; "
                   "resuming a run, only train.lr_schedule, lr_decay_start, min_lr_ratio)")
    p.add_argument("--steps", type=positive_int, help="training steps (a new run: a shipped "
                   "schedule_steps keeps its share of them; a finished run: extends it, its "
                   "schedules keep their span)")
    p.add_argument("--seed", type=non_negative_int, help="run seed (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/TASK-MODEL-sSEED)")
    p.add_argument("--tensorboard", action="store_true", help="also log training metrics for "
                   "TensorBoard in RUN_DIR/tensorboard (needs the tensorboard package)")
    p.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads torch uses "
                   "(default: torch's choice; a run reproduces bitwise only with the same "
                   "thread count, recorded in eval.json's provenance)")


def _add_eval(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("eval", help="greedy length-generalization evaluation of a run (or of "
                       "every run of a folder that lacks up-to-date results)")
    p.set_defaults(func=handlers["eval"])
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, or a folder of them")
    p.add_argument("--split", choices=["validation", "test"], default="test",
                   help="test (default: the OOD grid, into eval.json) or validation (lengths "
                        "41-64, its own examples, into eval-validation.json)")
    p.add_argument("--lengths", metavar="SPEC", help="e.g. 1-40,41-500:10 (default: the run's config)")
    p.add_argument("--samples", type=positive_int, metavar="K", help="examples per length")
    p.add_argument("--data", metavar="TEST.jsonl", help="evaluate on the examples of a JSONL file, "
                   "per input length (every example unless --samples caps them)")
    p.add_argument("--json", metavar="PATH", help="where to write the report (default RUN_DIR/eval.json)")
    p.add_argument("--errors", metavar="PATH", help="also write every example decoded wrong to "
                   "this JSON Lines file (length, input, target, output), which `--data` reads")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")


def _add_generate(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("generate", help="greedy-decode the answer to one prompt")
    p.set_defaults(func=handlers["generate"])
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("prompt", metavar="PROMPT", help="e.g. 0110 or '12 + 7'")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")


def _add_inspect(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("inspect", help="a figure of what the model does on one prompt: head "
                       "weightings over memory, erase/add, attention or state norms")
    p.set_defaults(func=handlers["inspect"])
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("prompt", metavar="PROMPT", help="e.g. 0110 or '12 + 7'")
    p.add_argument("--out", required=True, metavar="FIG.png",
                   help="where to write the figure (PNG)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")


def _add_report(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("report", help="benchmark.json, plots and results tables from the "
                       "eval.json files of run folders")
    p.set_defaults(func=handlers["report"])
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


def _add_ablation(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("ablation", help="the variants × tasks table of an ablation: one sweep "
                       "folder per variant against the sweep of the unchanged config")
    p.set_defaults(func=handlers["ablation"])
    p.add_argument("variants_dir", metavar="VARIANTS_DIR",
                   help="a folder with one sweep folder per variant (e.g. no-state-heads/)")
    p.add_argument("--base", required=True, metavar="BASE_DIR",
                   help="the sweep folder of the unchanged config (same tasks and seeds)")
    p.add_argument("--out", default="RESULTS.md", metavar="FILE.md",
                   help="markdown file whose ablation block is replaced (default RESULTS.md)")
    p.add_argument("--json", metavar="PATH",
                   help="the table's data (default VARIANTS_DIR/ablation.json)")


def _add_bench(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("bench", help="speed benchmark: training step, scan methods, decoding")
    p.set_defaults(func=handlers["bench"])
    p.add_argument("--models", metavar="M1,M2", help="comma list of models (default "
                   "pntm,ntm,lstm,transformer,transformer-rand,mamba,deltanet,slstm; with "
                   "--decode pntm,transformer,mamba,deltanet,slstm; pntm is NTM-sized, "
                   "pntm-shipped the shipped config's model); a suffix sets how the "
                   "training step runs: NAME+compile, NAME+reduce-overhead (torch.compile) or "
                   "NAME+cudagraph (the whole step as one CUDA graph)")
    p.add_argument("--lengths", default="64,256,1024", metavar="T1,T2",
                   help="sequence lengths (default 64,256,1024)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--batch", type=positive_int, default=32, help="batch size (default 32)")
    size.add_argument("--tokens", type=positive_int, metavar="N",
                      help="training step only: N tokens per step at every length (batch N / "
                           "length; each length must divide N), so that lengths compare at "
                           "one working-set size")
    p.add_argument("--micro-batch", type=non_negative_int, default=0, metavar="N",
                   help="training step only: forward and backward in slices of N sequences, "
                        "gradients summed, one optimizer step (train.micro_batch; default 0: "
                        "the whole batch at once)")
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
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a P-NTM model_config key for the P-NTM models, e.g. --set "
                        "model_config.memory_width=32 (repeatable)")


def _add_sweep(sub, handlers: dict[str, Handler]) -> None:
    p = sub.add_parser("sweep", help="train and evaluate a grid of runs (resumable)")
    p.set_defaults(func=handlers["sweep"])
    p.add_argument("--tasks", required=True, metavar="T1,T2|all|required|chomsky",
                   help="comma list of tasks, or all, or required (the benchmark's set), or "
                        "chomsky (the 15 tasks of Deletang et al. 2023)")
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
