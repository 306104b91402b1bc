"""Greedy evaluation of a model on the benchmark protocol (see design/benchmark.md).

The model sees ``BOS prompt SEP`` one token at a time through its recurrent mode and then
feeds back its own argmax for ``len(answer) + 1`` steps (the answer, then EOS). Nothing is
teacher-forced, so these numbers are what a user of ``pntm generate`` would get.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from pntm import tasks
from pntm.errors import PntmError
from pntm.models import SequenceModel
from pntm.provenance import provenance
from pntm.runs import EVAL, RunDir, atomic_write_json, load_model


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


def score_examples(model: SequenceModel, vocab: tasks.Vocab, examples: Sequence[tasks.Example],
                   batch_size: int, device=None) -> dict:
    """Token and sequence accuracy of greedy decoding on ``examples`` (EOS included)."""
    right_tokens = total_tokens = right_sequences = 0
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
    return {"samples": len(examples),
            "token_accuracy": right_tokens / max(total_tokens, 1),
            "sequence_accuracy": right_sequences / max(len(examples), 1)}


def evaluate_lengths(model: SequenceModel, task: tasks.Task, vocab: tasks.Vocab,
                     lengths: Sequence[int], samples: int, eval_seed: int, batch_size: int,
                     device=None, on_row=None, progress: bool = False) -> list[dict]:
    """One row per length: ``{length, samples, token_accuracy, sequence_accuracy}``."""
    if task.max_length is not None and max(lengths) > task.max_length:
        raise PntmError(f"task {task.name} has no examples longer than {task.max_length} "
                        f"(asked for {max(lengths)})")
    rows = []
    for length in tqdm(lengths, desc="eval", unit="length", leave=False, disable=not progress):
        examples = tasks.eval_examples(task, length, samples, eval_seed)
        row = {"length": length, **score_examples(model, vocab, examples, batch_size, device)}
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


# --------------------------------------------------------------------------- the report

def summarize(rows: list[dict], train_lengths: Sequence[int]) -> dict:
    """Means over ID / OOD lengths and the longest length up to which every length is >= 99%."""
    lo, hi = train_lengths
    in_dist = [r for r in rows if lo <= r["length"] <= hi]
    out_dist = [r for r in rows if not lo <= r["length"] <= hi]

    def mean(rs, key):
        return statistics.fmean(r[key] for r in rs) if rs else None

    max_at_99 = 0
    for r in sorted(rows, key=lambda r: r["length"]):
        if r["sequence_accuracy"] < 0.99:
            break
        max_at_99 = r["length"]
    return {"id_sequence_accuracy": mean(in_dist, "sequence_accuracy"),
            "ood_sequence_accuracy": mean(out_dist, "sequence_accuracy"),
            "ood_token_accuracy": mean(out_dist, "token_accuracy"),
            "max_length_at_99": max_at_99}


def format_row(row: dict) -> str:
    return (f"{row['length']:>7} {row['samples']:>8} {row['token_accuracy']:>10.4f} "
            f"{row['sequence_accuracy']:>8.4f}")


TABLE_HEADER = f"{'length':>7} {'samples':>8} {'token_acc':>10} {'seq_acc':>8}"


def format_summary(summary: dict) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"
    return (f"ID seq acc {pct(summary['id_sequence_accuracy'])} | "
            f"OOD seq acc {pct(summary['ood_sequence_accuracy'])} | "
            f"OOD token acc {pct(summary['ood_token_accuracy'])} | "
            f"max length at 99%: {summary['max_length_at_99']}")


def evaluate_run(run_dir: str | Path, *, lengths: str | None = None, samples: int | None = None,
                 json_path: str | Path | None = None, device=None, command: str | None = None,
                 model: SequenceModel | None = None, extra: dict | None = None,
                 quiet: bool = False) -> dict:
    """Evaluate a run, write its eval.json (or ``json_path``), print the table; returns the report.

    ``lengths`` (a spec) and ``samples`` default to the run's config. Pass ``model`` to evaluate
    weights already in memory (the end of training), ``extra`` to add fields to the report.
    ``quiet`` prints nothing.
    """
    run = RunDir(run_dir)
    cfg = run.load_config()
    task = tasks.get_task(cfg["task"])
    device = torch.device(device) if device is not None else torch.device("cpu")
    if model is None:
        vocab, model = load_model(run, cfg, device)
    else:
        vocab = run.vocab(cfg)
    spec = lengths if lengths is not None else cfg["eval"]["lengths"]
    length_list = tasks.parse_lengths(spec)
    samples = samples if samples is not None else cfg["eval"]["samples"]
    if samples < 1:
        raise PntmError(f"samples must be a positive integer, got {samples}")

    def show(text):
        if not quiet:
            tqdm.write(text, file=sys.stdout)  # plays well with the progress bar

    lo, hi = cfg["train"]["train_lengths"]
    show(f"{cfg['task']} / {cfg['model']} / seed {cfg['seed']}: greedy decoding, "
         f"{samples} samples per length (trained on lengths {lo}-{hi})")
    show(TABLE_HEADER)
    started = time.perf_counter()
    rows = evaluate_lengths(model, task, vocab, length_list, samples, cfg["eval"]["eval_seed"],
                            cfg["eval"]["batch_size"], device,
                            on_row=lambda r: show(format_row(r)),
                            progress=not quiet and sys.stderr.isatty())
    summary = summarize(rows, (lo, hi))
    show(format_summary(summary))

    report = {"task": cfg["task"], "model": cfg["model"], "seed": cfg["seed"],
              "train_lengths": [lo, hi], "lengths": rows, "summary": summary,
              "provenance": {**provenance(command), "device": str(device)},
              "eval_seed": cfg["eval"]["eval_seed"], "samples": samples,
              "eval_seconds": round(time.perf_counter() - started, 3)}
    report.update(_training_facts(run) if extra is None else extra)
    path = Path(json_path) if json_path is not None else run.file(EVAL)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, report)
    return report


def _training_facts(run: RunDir) -> dict:
    """Steps trained and training wall time, from the last checkpoint."""
    state = run.load_train_state()
    if state is None:
        return {}
    return {"steps": state["step"], "train_seconds": round(state.get("elapsed_seconds", 0.0), 3),
            "early_stopped": state.get("early_stopped", False)}
