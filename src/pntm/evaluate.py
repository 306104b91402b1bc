"""Greedy evaluation of a model on the benchmark protocol (the splits: ``pntm.splits``).

Examples come from the run's task generator (a fixed evaluation set per length), or from a JSONL
file (pntm.data): ``pntm eval RUN_DIR --data TEST.jsonl`` scores every example of the file (or
``--samples K`` per length), grouped by input length; a JSONL run evaluated without ``--data``
(as at the end of its training) scores up to ``eval.samples`` examples per length of its
training file. Either way eval.json has the same shape. With a JSONL training file, the summary's
in-distribution lengths are the lengths present in that file and out-of-distribution the longer
ones; a length in a gap of the training lengths is reported in the table but in neither mean.

Splits (pntm.splits): ``split="test"`` (the default: the grid of ``eval.lengths``, the examples
eval.json always held) or ``split="validation"`` (lengths 41-64, its own stream), written to
``eval.json`` and ``eval-validation.json`` respectively. :func:`evaluate_splits` measures both
(validation first, eval.json last: a run counts as evaluated once eval.json exists).

Decoding is :mod:`pntm.decoding`; the metrics and their exact definitions are :mod:`pntm.metrics`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from pntm import splits, tasks
from pntm.data import JsonlDataset, format_lengths, load_jsonl, run_dataset
from pntm.decoding import greedy_decode  # noqa: F401 -- imported from here by users and tests
from pntm.errors import DataError, PntmError
from pntm.metrics import answer_token_score, score_examples  # noqa: F401 -- as greedy_decode
from pntm.metrics import evaluate_groups, evaluate_lengths, summarize
from pntm.models import SequenceModel
from pntm.provenance import provenance
from pntm.locks import dir_lock
from pntm.runs import CONFIG, WEIGHTS, RunDir, atomic_write_json, atomic_write_text, load_model


# --------------------------------------------------------------------------- the report

def format_row(row: dict) -> str:
    return (f"{row['length']:>7} {row['samples']:>8} {row['token_accuracy']:>10.4f} "
            f"{row['answer_token_accuracy']:>10.4f} {row['sequence_accuracy']:>8.4f}")


TABLE_HEADER = f"{'length':>7} {'samples':>8} {'token_acc':>10} {'answer_acc':>10} {'seq_acc':>8}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def format_summary(summary: dict) -> str:
    pct = _pct
    return (f"ID seq acc {pct(summary['id_sequence_accuracy'])} | "
            f"OOD seq acc {pct(summary['ood_sequence_accuracy'])} | "
            f"OOD token acc {pct(summary['ood_token_accuracy'])} | "
            f"OOD answer-token acc {pct(summary.get('ood_answer_token_accuracy'))} | "
            f"max length at 99%: {summary['max_length_at_99']}")


def evaluate_run(run_dir: str | Path, *, lengths: str | None = None, samples: int | None = None,
                 json_path: str | Path | None = None, device=None, command: str | None = None,
                 model: SequenceModel | None = None, extra: dict | None = None,
                 quiet: bool = False, data: str | Path | None = None,
                 train_dataset: JsonlDataset | None = None, split: str = "test",
                 errors: str | Path | None = None) -> dict:
    """Evaluate a run on ``split``, write its file (eval.json for test, eval-validation.json for
    validation, or ``json_path``), print the table; returns the report.

    ``lengths`` (a spec) and ``samples`` default to the run's config (validation: lengths 41-64).
    Pass ``model`` to evaluate weights already in memory (the end of training), ``extra`` to add
    fields to the report. ``quiet`` prints nothing. ``data``: a JSONL file of the split's
    examples (its lengths, every example unless ``samples`` caps them); ``train_dataset``: a JSONL
    run's training file, already loaded. The data is read and checked before the model is loaded.
    ``errors``: a JSON Lines file to write every example decoded wrong to, one per line (written
    whole once the evaluation ends; empty when none is wrong): ``{"length", "input", "target",
    "output"}``, tokens as lists of strings, ``output`` the ``len(target) + 1`` greedy tokens
    (``<eos>`` included where decoded). Its ``input`` and ``target`` are those of ``--data``
    files, so the file can be evaluated again with ``pntm eval --data``.
    """
    split = splits.check_split(split)
    run = RunDir(run_dir)
    if json_path is None and run.path.is_dir():
        # it writes into the run: one writer at a time (re-entrant: training's own evaluation
        # already holds the lock); a training run or another eval on it fails this one at once
        with dir_lock(run.path):
            return _evaluate_run(run, lengths, samples, json_path, device, command, model, extra,
                                 quiet, data, train_dataset, split, errors)
    return _evaluate_run(run, lengths, samples, json_path, device, command, model, extra, quiet,
                         data, train_dataset, split, errors)


def _evaluate_run(run: RunDir, lengths, samples, json_path, device, command, model, extra,
                  quiet, data, train_dataset, split, errors=None) -> dict:
    """The body of :func:`evaluate_run`."""
    cfg = run.load_config()
    vocab = run.vocab(cfg)
    device = torch.device(device) if device is not None else torch.device("cpu")
    if samples is not None and samples < 1:
        raise PntmError(f"samples must be a positive integer, got {samples}")
    source, dataset, length_list, samples = _examples_source(
        run, cfg, vocab, split, lengths, samples, data, train_dataset)
    if model is None:
        vocab, model = load_model(run, cfg, device)

    def show(text):
        if not quiet:
            tqdm.write(text, file=sys.stdout)  # plays well with the progress bar

    lo, hi = cfg["train"]["train_lengths"]
    trained_on = cfg["data"]["lengths"] if cfg["data"] is not None else f"{lo}-{hi}"
    per_length = "every example" if samples is None else f"{samples} samples"
    show(f"{cfg['task']} / {cfg['model']} / seed {cfg['seed']}: {split} split, greedy decoding, "
         f"{per_length} per length{'' if source is None else ' of ' + source['file']} "
         f"(trained on lengths {trained_on})")
    show(TABLE_HEADER)
    started = time.perf_counter()
    progress = not quiet and sys.stderr.isatty()
    wrong: list[dict] = []

    def on_error(length, example, decoded):
        wrong.append({"length": length, "input": list(example.prompt),
                      "target": list(example.answer), "output": vocab.decode(decoded)})

    collect = on_error if errors is not None else None
    if source is None:
        task = tasks.get_task(cfg["task"])
        rows = evaluate_lengths(model, task, vocab, length_list, samples, cfg["eval"]["eval_seed"],
                                cfg["eval"]["batch_size"], device,
                                on_row=lambda r: show(format_row(r)), progress=progress,
                                split=split, on_error=collect)
    else:
        groups = ((n, dataset.subset(n, samples, cfg["eval"]["eval_seed"])) for n in length_list)
        rows = evaluate_groups(model, vocab, groups, cfg["eval"]["batch_size"], device,
                               on_row=lambda r: show(format_row(r)), progress=progress,
                               total=len(length_list), on_error=collect)
    id_lengths = tasks.parse_lengths(cfg["data"]["lengths"]) if cfg["data"] is not None else None
    summary = summarize(rows, (lo, hi), id_lengths)
    show(format_summary(summary))

    report = {"task": cfg["task"], "model": cfg["model"], "seed": cfg["seed"], "split": split,
              "lr": cfg["train"]["lr"], "train_lengths": [lo, hi], "lengths": rows,
              "summary": summary, "provenance": {**provenance(command), "device": str(device)},
              "eval_seed": cfg["eval"]["eval_seed"], "samples": samples,
              "eval_seconds": round(time.perf_counter() - started, 3)}
    if source is None:
        report["stream"] = splits.stream_description(split)
    if id_lengths is not None:
        report["id_lengths"] = cfg["data"]["lengths"]
    if source is not None:
        report["data"] = {**source, "examples": sum(r["samples"] for r in rows)}
    report.update(_training_facts(run) if extra is None else extra)
    path = Path(json_path) if json_path is not None else run.file(splits.split_file(split))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, report)
    if errors is not None:
        errors = Path(errors)
        errors.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(errors, "".join(json.dumps(w) + "\n" for w in wrong))
        show(f"{len(wrong)} example{'' if len(wrong) == 1 else 's'} decoded wrong: {errors}")
    return report


def _examples_source(run: RunDir, cfg: dict, vocab: tasks.Vocab, split: str, lengths, samples,
                     data, train_dataset):
    """Where ``evaluate_run``'s examples come from: ``(source, dataset, lengths, samples)``;
    ``source`` is None for the task's generator (``dataset`` then None), else a record of the
    JSONL file (``data``, or a JSONL run's own training file)."""
    source = dataset = None
    if data is not None:
        dataset = load_jsonl(data, vocab=vocab)
        source = {"file": str(data), "split": split}
    elif not splits.has_generator(cfg):
        if split == "validation":
            raise splits.SplitError(f"{run} was trained on a JSONL file: it has no validation "
                                    "stream; give its validation examples with --data VAL.jsonl")
        dataset = train_dataset if train_dataset is not None else run_dataset(cfg)
        source = {"file": cfg["data"]["path"], "split": "train"}
        samples = samples if samples is not None else cfg["eval"]["samples"]
    if source is None:
        length_list = (tasks.parse_lengths(lengths) if lengths is not None
                       else splits.default_lengths(cfg, split))
        return None, None, length_list, samples if samples is not None else cfg["eval"]["samples"]
    length_list = dataset.lengths
    if lengths is not None:
        wanted = set(tasks.parse_lengths(lengths))
        length_list = [n for n in length_list if n in wanted]
        if not length_list:
            raise DataError(f"{dataset.path}: no example has a length in {lengths!r} (its "
                            f"lengths: {format_lengths(dataset.lengths)})")
    return source, dataset, length_list, samples


def evaluate_splits(run_dir: str | Path, **kwargs) -> dict:
    """Validation (when the run has a task generator), then test: eval.json is written last, so
    a run with an eval.json has both. Keyword arguments as for :func:`evaluate_run` (no
    ``split``, ``lengths``, ``samples`` or ``json_path``: each split takes its defaults).
    Returns the test report."""
    cfg = RunDir(run_dir).load_config()
    if splits.has_generator(cfg):
        evaluate_run(run_dir, split="validation", **kwargs)
    return evaluate_run(run_dir, split="test", **kwargs)


TRAINING_FACTS = ("steps", "train_seconds", "early_stopped")


def _training_facts(run: RunDir) -> dict:
    """Steps trained and training wall time, from the weights' metadata (no pickle is read);
    weights from before that metadata fall back to the last checkpoint's training state, and a
    run without one (a committed run keeps no train_state.pt) to its eval.json when that records
    them. The provenance of an existing eval.json is kept as ``training_provenance``."""
    facts = run.training_facts()
    if "train_seconds" not in facts:
        state = run.load_train_state()
        if state is not None:
            facts = {"steps": state["step"],
                     "train_seconds": round(state.get("elapsed_seconds", 0.0), 3),
                     "early_stopped": state.get("early_stopped", False)}
    try:
        previous = run.load_eval()
    except PntmError:
        previous = None
    if isinstance(previous, dict):
        facts = {**{k: previous[k] for k in TRAINING_FACTS if k in previous}, **facts}
        # what trained the run (its eval.json's provenance, unless that was itself re-evaluated)
        trained_by = previous.get("training_provenance", previous.get("provenance"))
        if trained_by is not None:
            facts["training_provenance"] = trained_by
    return facts


# --------------------------------------------------------------------------- a folder of runs

def run_folders(folder: str | Path) -> list[Path]:
    """The run directories one level below ``folder`` (those with a config.yaml), sorted."""
    return sorted(p for p in Path(folder).iterdir() if (p / CONFIG).is_file())


def is_run_folder_collection(path: str | Path) -> bool:
    """A folder of runs (``pntm eval FOLDER``) rather than one run directory."""
    path = Path(path)
    return path.is_dir() and not (path / CONFIG).exists() and bool(run_folders(path))


def outdated(run_dir: Path, split: str) -> str | None:
    """Why ``run_dir``'s results for ``split`` need measuring (None: they are up to date): no
    file, no per-token answer accuracy in it, or (validation) steps that differ from eval.json's."""
    path = run_dir / splits.split_file(split)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return "missing"
    except (OSError, UnicodeDecodeError, ValueError):
        return "unreadable"
    rows = data.get("lengths") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        return "unreadable"
    if not all(isinstance(r, dict) and "answer_token_accuracy" in r for r in rows):
        return "no answer-token accuracy"
    if split == "validation":
        try:
            test = json.loads((run_dir / splits.FILES["test"]).read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        if isinstance(test, dict) and test.get("steps") != data.get("steps"):
            return "stale (other steps than eval.json)"
    return None


def evaluate_folder(folder: str | Path, split: str, *, device=None, command: str | None = None,
                    lengths: str | None = None, samples: int | None = None, echo=print) -> int:
    """Evaluate every finished run of ``folder`` (one with an eval.json) on ``split`` from its
    saved weights, skipping those whose results are up to date (:func:`outdated`) and those that
    cannot be (no weights; validation of a JSONL run); an unfinished run is left to its training,
    which evaluates it at the end. One line per run; a failing run is reported and the others go
    on. Returns 0, or 1 when some run failed."""
    split = splits.check_split(split)
    runs = run_folders(folder)
    failed = 0
    for i, path in enumerate(runs, 1):
        head = f"[{i}/{len(runs)}] {path.name}"
        if not (path / splits.FILES["test"]).is_file():  # still training, or failed
            echo(f"{head}: not finished (no {splits.FILES['test']}), skipped")
            continue
        reason = outdated(path, split)
        if reason is None:
            echo(f"{head}: {split} up to date, skipped")
            continue
        if not (path / WEIGHTS).is_file():
            echo(f"{head}: no {WEIGHTS}, skipped ({split} {reason})")
            continue
        try:
            if split == "validation" and not splits.has_generator(RunDir(path).load_config()):
                echo(f"{head}: trained on a JSONL file, no validation stream, skipped")
                continue
            report = evaluate_run(path, split=split, device=device, command=command, quiet=True,
                                  lengths=lengths, samples=samples)
        except (PntmError, ValueError) as err:
            failed += 1
            echo(f"{head}: failed: {' '.join(str(err).split())}")
            continue
        s = report["summary"]
        echo(f"{head}: {split} ({reason}) measured: OOD seq acc "
             f"{_pct(s['ood_sequence_accuracy'])}, answer-token acc "
             f"{_pct(s['ood_answer_token_accuracy'])}")
    return 1 if failed else 0
