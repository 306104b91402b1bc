"""The metrics of greedy evaluation (:mod:`pntm.decoding`), per length and summarized over the
in-distribution and out-of-distribution lengths (:func:`summarize`).

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

import functools
import statistics
from typing import Sequence

from tqdm import tqdm

from pntm import splits, tasks
from pntm.decoding import greedy_decode
from pntm.errors import PntmError
from pntm.models import SequenceModel


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
                   batch_size: int, device=None, on_error=None) -> dict:
    """Token (EOS included), answer-token (EOS excluded) and sequence accuracy of greedy
    decoding on ``examples``; ``on_error(example, decoded)`` is called for every example whose
    sequence is wrong, with its ``len(answer) + 1`` decoded token ids."""
    right_tokens = total_tokens = right_sequences = right_answer = counted_answer = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        targets = [vocab.encode(ex.answer) + [vocab.eos_id] for ex in chunk]
        decoded = greedy_decode(model, vocab, [ex.prompt for ex in chunk],
                                [len(t) for t in targets], device)
        for example, got, want in zip(chunk, decoded, targets):
            right = sum(g == w for g, w in zip(got, want))
            right_tokens += right
            total_tokens += len(want)
            right_sequences += right == len(want)
            if on_error is not None and right != len(want):
                on_error(example, got)
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
                     split: str = "test", on_error=None) -> list[dict]:
    """One row per length: ``{length, samples, token_accuracy, answer_token_accuracy,
    sequence_accuracy}``, on the examples of ``split`` (pntm.splits); ``on_error`` as in
    :func:`evaluate_groups`."""
    if task.max_length is not None and max(lengths) > task.max_length:
        raise PntmError(f"task {task.name} has no examples longer than {task.max_length} "
                        f"(asked for {max(lengths)})")
    groups = ((n, splits.split_examples(task, split, n, samples, eval_seed)) for n in lengths)
    return evaluate_groups(model, vocab, groups, batch_size, device, on_row, progress,
                           total=len(lengths), on_error=on_error)


def evaluate_groups(model: SequenceModel, vocab: tasks.Vocab, groups, batch_size: int,
                    device=None, on_row=None, progress: bool = False,
                    total: int | None = None, on_error=None) -> list[dict]:
    """One row per ``(length, examples)`` of ``groups`` (an iterable, consumed lazily so only
    one length's examples exist at a time); ``on_error(length, example, decoded)`` is called for
    every example decoded wrong (``decoded``: its ``len(answer) + 1`` token ids)."""
    rows = []
    for length, examples in tqdm(groups, desc="eval", unit="length", leave=False, total=total,
                                 disable=not progress):
        wrong = None if on_error is None else functools.partial(on_error, length)
        row = {"length": length,
               **score_examples(model, vocab, examples, batch_size, device, wrong)}
        rows.append(row)
        if on_row:
            on_row(row)
    return rows


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
