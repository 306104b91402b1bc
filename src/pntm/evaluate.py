"""Greedy evaluation of a model on the benchmark protocol (the splits: ``pntm.splits``).

The model sees ``BOS prompt SEP`` one token at a time through its recurrent mode and then
feeds back its own argmax for ``len(answer) + 1`` steps (the answer, then EOS). Nothing is
teacher-forced, so these numbers are what a user of ``pntm generate`` would get.

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

Metrics per length
------------------
* ``sequence_accuracy``: the share of examples whose ``len(answer) + 1`` decoded tokens are the
  answer and EOS, all of them.
* ``token_accuracy``: the share of those ``len(answer) + 1`` positions (EOS included) decoded
  right, position by position.
* ``answer_token_accuracy``: the per-token accuracy of Delétang et al. (2023), answer tokens only.
  The decoded answer is the greedy decode (``A + 1`` tokens for an answer of ``A``) cut before its
  first EOS; it is compared position by position with the answer: ``right`` = positions
  ``i < A`` where both have the same token, ``counted = max(A, len(decoded answer))``. So an
  answer that stops early (EOS at ``j < A``) loses its ``A - j`` missing tokens, and one that does
  not stop at ``A`` costs one extra wrong token (the budget shows at most one token past the end).
  The per-length value pools the examples: ``sum(right) / sum(counted)``; the summary's
  ``ood_answer_token_accuracy`` is the mean over the out-of-distribution lengths of the per-length
  values (their score: the mean over lengths of per-length accuracy).
  How it differs from theirs: their models are not autoregressive, they read the input and then
  output every answer position in parallel from blank query positions, so the answer length is
  given and no answer can stop early or run on; ours decodes each token from its own previous
  predictions, so an early mistake can derail the rest (ours is the harder measurement). They
  average over every length 41-500; our test grid is 41, 50, 64, ..., 500 (12 lengths, denser at
  the short end), so the two means weigh lengths differently.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from pntm import splits, tasks
from pntm.data import JsonlDataset, format_lengths, load_jsonl, run_dataset
from pntm.errors import DataError, PntmError
from pntm.models import SequenceModel
from pntm.provenance import provenance
from pntm.locks import dir_lock
from pntm.runs import CONFIG, WEIGHTS, RunDir, atomic_write_json, load_model


# --------------------------------------------------------------------------- decoding

@torch.inference_mode()
def greedy_decode(model: SequenceModel, vocab: tasks.Vocab, prompts: Sequence[Sequence[str]],
                  answer_lengths: Sequence[int] | int, device=None) -> list[list[int]]:
    """Decode ``answer_lengths[i]`` token ids after ``BOS prompts[i] SEP``, greedily.

    Rows may have different prompt and answer lengths: each row switches from reading its
    prompt to feeding back its own predictions at its own time, so no padding is ever fed
    before a prediction that is kept.
    """
    batch = len(prompts)
    if isinstance(answer_lengths, int):
        answer_lengths = [answer_lengths] * batch
    device = device if device is not None else next(model.parameters()).device
    rows = [[vocab.bos_id, *vocab.encode(p), vocab.sep_id] for p in prompts]
    P = torch.tensor([len(r) for r in rows], device=device)
    A = torch.tensor(list(answer_lengths), device=device)
    width, max_answer = int(P.max()), int(A.max())
    prompt_ids = torch.full((batch, width), vocab.pad_id, dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        prompt_ids[i, : len(r)] = torch.tensor(r, device=device)
    # one spare column: predictions that are not kept are scattered there (no host sync)
    out = torch.full((batch, max_answer + 1), vocab.pad_id, dtype=torch.long, device=device)
    fed = int((P + A).max()) - 1  # the last prediction is never fed back

    was_training = model.training
    model.eval()
    try:
        state = model.init_state(batch, fed, device)
        pred = torch.full((batch,), vocab.pad_id, dtype=torch.long, device=device)
        for t in range(fed):
            token = torch.where(t < P, prompt_ids[:, min(t, width - 1)], pred)
            logits, state = model.step(token, state)
            pred = logits.argmax(-1)
            j = t + 1 - P  # position t predicts answer token j of its row
            j = torch.where((j >= 0) & (j < A), j, max_answer)
            out.scatter_(1, j[:, None], pred[:, None])
    finally:
        model.train(was_training)
    return [out[i, : int(a)].tolist() for i, a in enumerate(answer_lengths)]


def parse_prompt(cfg: dict, text: str) -> tuple[str, ...]:
    """A user's prompt for a run: the task's own parsing, or for a JSONL run whitespace-separated
    tokens (one token per character when there is no whitespace)."""
    if cfg["data"] is not None:
        prompt = tasks.split_prompt(text)
    else:
        prompt = tasks.get_task(cfg["task"]).parse_prompt(text)
    if not prompt:
        raise PntmError("empty prompt")
    return prompt


def answer_budget(cfg: dict, prompt: Sequence[str]) -> int:
    """How many tokens to decode for ``prompt``: every built-in task's answer (duplicate: 2n)
    plus EOS, or a JSONL run's longest training target plus EOS when that is more."""
    budget = 2 * len(prompt) + 2
    if cfg["data"] is not None:
        budget = max(budget, cfg["data"]["max_target_length"] + 1)
    return budget


def generate_answer(model: SequenceModel, vocab: tasks.Vocab, prompt: Sequence[str], budget: int,
                    device=None) -> tuple[list[str], bool]:
    """The greedy answer to one prompt, cut before its EOS, and whether an EOS came at all."""
    tokens = vocab.decode(greedy_decode(model, vocab, [prompt], budget, device)[0])
    if tasks.EOS in tokens:
        return tokens[: tokens.index(tasks.EOS)], True
    return tokens, False


def join_tokens(tokens: Sequence[str]) -> str:
    """Tokens as one string: concatenated when each is one character, else space-separated."""
    return ("" if all(len(t) == 1 for t in tokens) else " ").join(tokens)


def answer_token_score(decoded: Sequence[int], answer: Sequence[int],
                       eos_id: int) -> tuple[int, int]:
    """``(right, counted)`` answer tokens of one greedy decode (EOS excluded; the definition is
    in the module docstring): ``decoded`` is cut before its first EOS and compared position by
    position with ``answer``; ``counted = max(len(answer), len(cut decode))``."""
    got = list(decoded)
    if eos_id in got:
        got = got[: got.index(eos_id)]
    right = sum(g == w for g, w in zip(got, answer))
    return right, max(len(answer), len(got))


def score_examples(model: SequenceModel, vocab: tasks.Vocab, examples: Sequence[tasks.Example],
                   batch_size: int, device=None) -> dict:
    """Token (EOS included), answer-token (EOS excluded) and sequence accuracy of greedy
    decoding on ``examples``."""
    right_tokens = total_tokens = right_sequences = right_answer = counted_answer = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        targets = [vocab.encode(ex.answer) + [vocab.eos_id] for ex in chunk]
        decoded = greedy_decode(model, vocab, [ex.prompt for ex in chunk],
                                [len(t) for t in targets], device)
        for got, want in zip(decoded, targets):
            right = sum(g == w for g, w in zip(got, want))
            right_tokens += right
            total_tokens += len(want)
            right_sequences += right == len(want)
            right_a, counted_a = answer_token_score(got, want[:-1], vocab.eos_id)
            right_answer += right_a
            counted_answer += counted_a
    return {"samples": len(examples),
            "token_accuracy": right_tokens / max(total_tokens, 1),
            "answer_token_accuracy": right_answer / max(counted_answer, 1),
            "sequence_accuracy": right_sequences / max(len(examples), 1)}


def evaluate_lengths(model: SequenceModel, task: tasks.Task, vocab: tasks.Vocab,
                     lengths: Sequence[int], samples: int, eval_seed: int, batch_size: int,
                     device=None, on_row=None, progress: bool = False,
                     split: str = "test") -> list[dict]:
    """One row per length: ``{length, samples, token_accuracy, answer_token_accuracy,
    sequence_accuracy}``, on the examples of ``split`` (pntm.splits)."""
    if task.max_length is not None and max(lengths) > task.max_length:
        raise PntmError(f"task {task.name} has no examples longer than {task.max_length} "
                        f"(asked for {max(lengths)})")
    groups = ((n, splits.split_examples(task, split, n, samples, eval_seed)) for n in lengths)
    return evaluate_groups(model, vocab, groups, batch_size, device, on_row, progress,
                           total=len(lengths))


def evaluate_groups(model: SequenceModel, vocab: tasks.Vocab, groups, batch_size: int,
                    device=None, on_row=None, progress: bool = False,
                    total: int | None = None) -> list[dict]:
    """One row per ``(length, examples)`` of ``groups`` (an iterable, consumed lazily so only
    one length's examples exist at a time)."""
    rows = []
    for length, examples in tqdm(groups, desc="eval", unit="length", leave=False, total=total,
                                 disable=not progress):
        row = {"length": length, **score_examples(model, vocab, examples, batch_size, device)}
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


# --------------------------------------------------------------------------- the report

def summarize(rows: list[dict], train_lengths: Sequence[int],
              id_lengths: Sequence[int] | None = None) -> dict:
    """Means over ID / OOD lengths and the longest length up to which every length is >= 99%
    (``ood_answer_token_accuracy``: None when a row lacks ``answer_token_accuracy``).

    ID lengths are ``train_lengths`` (``[lo, hi]``), OOD the others; with ``id_lengths`` (the
    lengths of a JSONL training file) ID lengths are those and OOD the lengths above ``hi``."""
    lo, hi = train_lengths
    if id_lengths is None:
        in_dist = [r for r in rows if lo <= r["length"] <= hi]
        out_dist = [r for r in rows if not lo <= r["length"] <= hi]
    else:
        known = set(id_lengths)
        in_dist = [r for r in rows if r["length"] in known]
        out_dist = [r for r in rows if r["length"] > hi]

    def mean(rs, key):
        return statistics.fmean(r[key] for r in rs) if rs else None

    max_at_99 = 0
    for r in sorted(rows, key=lambda r: r["length"]):
        if r["sequence_accuracy"] < 0.99:
            break
        max_at_99 = r["length"]
    answer = [r for r in out_dist if r.get("answer_token_accuracy") is not None]
    return {"id_sequence_accuracy": mean(in_dist, "sequence_accuracy"),
            "ood_sequence_accuracy": mean(out_dist, "sequence_accuracy"),
            "ood_token_accuracy": mean(out_dist, "token_accuracy"),
            # None for rows measured before the metric existed (every OOD row must have it)
            "ood_answer_token_accuracy": (mean(answer, "answer_token_accuracy")
                                          if len(answer) == len(out_dist) else None),
            "max_length_at_99": max_at_99}


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
                 train_dataset: JsonlDataset | None = None, split: str = "test") -> dict:
    """Evaluate a run on ``split``, write its file (eval.json for test, eval-validation.json for
    validation, or ``json_path``), print the table; returns the report.

    ``lengths`` (a spec) and ``samples`` default to the run's config (validation: lengths 41-64).
    Pass ``model`` to evaluate weights already in memory (the end of training), ``extra`` to add
    fields to the report. ``quiet`` prints nothing. ``data``: a JSONL file of the split's
    examples (its lengths, every example unless ``samples`` caps them); ``train_dataset``: a JSONL
    run's training file, already loaded. The data is read and checked before the model is loaded.
    """
    split = splits.check_split(split)
    run = RunDir(run_dir)
    if json_path is None and run.path.is_dir():
        # it writes into the run: one writer at a time (re-entrant: training's own evaluation
        # already holds the lock); a training run or another eval on it fails this one at once
        with dir_lock(run.path):
            return _evaluate_run(run, lengths, samples, json_path, device, command, model, extra,
                                 quiet, data, train_dataset, split)
    return _evaluate_run(run, lengths, samples, json_path, device, command, model, extra, quiet,
                         data, train_dataset, split)


def _evaluate_run(run: RunDir, lengths, samples, json_path, device, command, model, extra,
                  quiet, data, train_dataset, split) -> dict:
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
    if source is None:
        task = tasks.get_task(cfg["task"])
        rows = evaluate_lengths(model, task, vocab, length_list, samples, cfg["eval"]["eval_seed"],
                                cfg["eval"]["batch_size"], device,
                                on_row=lambda r: show(format_row(r)), progress=progress,
                                split=split)
    else:
        groups = ((n, dataset.subset(n, samples, cfg["eval"]["eval_seed"])) for n in length_list)
        rows = evaluate_groups(model, vocab, groups, cfg["eval"]["batch_size"], device,
                               on_row=lambda r: show(format_row(r)), progress=progress,
                               total=len(length_list))
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
