"""Greedy decoding through a model's recurrent mode, and a user's prompt for ``pntm generate``.

The model sees ``BOS prompt SEP`` one token at a time through its recurrent mode and then
feeds back its own argmax for ``len(answer) + 1`` steps (the answer, then EOS). Nothing is
teacher-forced, so the numbers of :mod:`pntm.metrics` are what a user of ``pntm generate``
would get.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pntm import tasks
from pntm.errors import PntmError
from pntm.models import SequenceModel


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
