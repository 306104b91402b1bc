"""Examples encoded as batches for next-token training.

Autoregressive format
---------------------
Every task is a sequence-to-sequence problem cast as next-token prediction. An
:class:`Example` is a ``prompt`` and an ``answer`` (tuples of token strings). The
full sequence is::

    BOS prompt SEP answer EOS

:func:`encode_batch` feeds the model ``BOS prompt SEP answer`` (the full sequence
minus its final ``EOS``) and asks it, at each position from ``SEP`` on, for the
next token: the answer tokens, then ``EOS``. With ``P = len(prompt)`` and
``A = len(answer)``:

* ``inputs[b, :P+A+2]``  = ``BOS prompt SEP answer``; the rest is ``pad_id``.
* ``targets[b, i]``      = the token at ``i+1`` for ``P+1 <= i <= P+A+1``
  (``A+1`` positions); ``-100`` (:data:`IGNORE_INDEX`) everywhere else, padding
  included.  This is the loss mask: ``cross_entropy(..., ignore_index=-100)``
  covers the answer and the ``EOS`` only.
* ``prompt_lengths[b]``  = ``P + 2`` tokens are fed before decoding starts.
* ``answer_lengths[b]``  = ``A + 1`` tokens are decoded greedily (``EOS`` included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from pntm.tasks.base import Example
from pntm.tasks.vocab import Vocab

__all__ = ["IGNORE_INDEX", "Batch", "encode_batch"]

IGNORE_INDEX = -100


@dataclass
class Batch:
    inputs: torch.Tensor          # (B, L) long: BOS prompt SEP answer, right-padded with pad_id
    targets: torch.Tensor         # (B, L) long: answer then EOS from the SEP position on, else -100
    prompt_lengths: torch.Tensor  # (B,) long: len(prompt) + 2
    answer_lengths: torch.Tensor  # (B,) long: len(answer) + 1
    examples: list[Example] = field(default_factory=list)

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            self.inputs.to(device), self.targets.to(device),
            self.prompt_lengths.to(device), self.answer_lengths.to(device), self.examples,
        )


def encode_batch(examples: Sequence[Example], vocab: Vocab) -> Batch:
    """Encode examples in the autoregressive format (see the module docstring)."""
    examples = list(examples)
    if not examples:
        raise ValueError("encode_batch needs at least one example")
    seqs = []
    for ex in examples:
        p, a = vocab.encode(ex.prompt), vocab.encode(ex.answer)
        seqs.append((p, a))
    width = max(len(p) + len(a) + 2 for p, a in seqs)
    inputs = torch.full((len(seqs), width), vocab.pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for b, (p, a) in enumerate(seqs):
        full = [vocab.bos_id, *p, vocab.sep_id, *a, vocab.eos_id]
        n_in = len(full) - 1
        inputs[b, :n_in] = torch.tensor(full[:-1], dtype=torch.long)
        start = len(p) + 1  # the SEP position
        targets[b, start:n_in] = torch.tensor(full[start + 1:], dtype=torch.long)
    return Batch(
        inputs=inputs,
        targets=targets,
        prompt_lengths=torch.tensor([len(p) + 2 for p, _ in seqs], dtype=torch.long),
        answer_lengths=torch.tensor([len(a) + 1 for _, a in seqs], dtype=torch.long),
        examples=examples,
    )
