"""What every task shares: vocabulary, examples, the Task base class, batching, seeds and
length specs.

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

Length
------
The *length* ``n`` of an example is what the task says it is: for the project's own tasks the
number of items in the prompt (bits, actions, digits, pairs), for the Chomsky-hierarchy suite
the paper's definition (mostly the number of prompt tokens). The table of every task is in the
docstring of :mod:`pntm.tasks`. A task that cannot produce some length (shorter than its
``min_length``, longer than its ``max_length``) raises :class:`LengthSpecError` for it.

Seed policy
-----------
* Training: :func:`train_generator(seed) <train_generator>` is
  ``SeedSequence(seed, spawn_key=(0,))``.
* Evaluation: :func:`eval_examples(task, length, samples, eval_seed)
  <eval_examples>` draws from ``SeedSequence(eval_seed, spawn_key=(1, crc32(task),
  length))``: a fixed set per (task, length, eval_seed), the same for every model
  and training seed, independent of how many other lengths are evaluated.
The spawn keys differ, so evaluation streams never coincide with training
streams (whatever the seeds). For tiny lengths the *example sets* overlap anyway
(parity of length 1 has two possible examples); that is inherent, not a leak.
"""

from __future__ import annotations

import itertools
import re
import zlib
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np
import torch

__all__ = [
    "PAD", "BOS", "SEP", "EOS", "SPECIAL_TOKENS", "IGNORE_INDEX", "MAX_SPEC_LENGTH",
    "REGULAR", "CONTEXT_FREE", "CONTEXT_SENSITIVE", "LEVELS", "CHOMSKY",
    "UnknownTokenError", "UnknownTaskError", "LengthSpecError", "InvalidPromptError",
    "Vocab", "Example", "Task",
    "Batch", "encode_batch", "sample_examples", "train_generator", "eval_examples",
    "parse_lengths", "split_prompt", "DEFAULT_TRAIN_LENGTHS", "DEFAULT_OOD_LENGTHS",
]

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, SEP, EOS)
IGNORE_INDEX = -100

DEFAULT_TRAIN_LENGTHS = (1, 40)
DEFAULT_OOD_LENGTHS = (41, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 500)

#: largest length :func:`parse_lengths` accepts (guards against "1-1000000000").
MAX_SPEC_LENGTH = 1_000_000

_TRAIN_TAG = 0
_EVAL_TAG = 1

# Chomsky levels (Delétang et al. 2023 classify a task by the weakest automaton that solves it:
# a finite-state machine, a deterministic stack, a linear tape).
REGULAR = "regular"
CONTEXT_FREE = "deterministic context-free"
CONTEXT_SENSITIVE = "context-sensitive"
LEVELS = (REGULAR, CONTEXT_FREE, CONTEXT_SENSITIVE)

#: the category of the tasks the Chomsky-hierarchy suite adds to the project's own
CHOMSKY = "chomsky"


# --------------------------------------------------------------------------- errors

class UnknownTokenError(ValueError):
    """A token that is not in the vocabulary."""


class UnknownTaskError(ValueError):
    """A task name that is not in :data:`TASKS`."""


class LengthSpecError(ValueError):
    """A malformed length spec such as ``"1-40,41-500:10"``."""


class InvalidPromptError(ValueError):
    """A prompt that does not have the task's structure."""


# --------------------------------------------------------------------------- vocabulary

class Vocab:
    """Token <-> id mapping: ``[PAD, BOS, SEP, EOS] + symbols``."""

    pad_id, bos_id, sep_id, eos_id = 0, 1, 2, 3

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        seen: set[str] = set()
        for s in symbols:
            if not isinstance(s, str) or not s:
                raise ValueError(f"vocabulary symbols must be non-empty strings, got {s!r}")
            if s in SPECIAL_TOKENS:
                raise ValueError(f"vocabulary symbol {s!r} clashes with a special token")
            if s in seen:
                raise ValueError(f"duplicate vocabulary symbol {s!r}")
            seen.add(s)
        self.tokens: list[str] = list(SPECIAL_TOKENS) + symbols
        self._index = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def __repr__(self) -> str:
        return f"Vocab({self.tokens[len(SPECIAL_TOKENS):]!r})"

    @property
    def symbols(self) -> list[str]:
        return self.tokens[len(SPECIAL_TOKENS):]

    def _listing(self, limit: int = 60) -> str:
        shown = " ".join(self.tokens[:limit])
        more = len(self.tokens) - limit
        return shown + (f" ... ({more} more)" if more > 0 else "")

    def encode(self, tokens: Sequence[str]) -> list[int]:
        index = self._index
        try:
            return [index[t] for t in tokens]
        except (KeyError, TypeError):
            bad = next(t for t in tokens if not isinstance(t, str) or t not in index)
            raise UnknownTokenError(
                f"unknown token {bad!r}; the vocabulary is: {self._listing()}"
            ) from None

    def decode(self, ids: Sequence[int]) -> list[str]:
        out = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range for a vocabulary of {n}")
            out.append(self.tokens[i])
        return out

    def to_list(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocab":
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(
                f"a stored vocabulary must start with {' '.join(SPECIAL_TOKENS)}, "
                f"got {' '.join(map(str, tokens[:4]))}"
            )
        return cls(tokens[len(SPECIAL_TOKENS):])


# --------------------------------------------------------------------------- examples and tasks

@dataclass(frozen=True)
class Example:
    prompt: tuple[str, ...]
    answer: tuple[str, ...]

    def __post_init__(self) -> None:
        # accept lists (e.g. from JSON) but store tuples, so examples are hashable
        object.__setattr__(self, "prompt", tuple(self.prompt))
        object.__setattr__(self, "answer", tuple(self.answer))


def split_prompt(text: str) -> tuple[str, ...]:
    """A user's prompt string: split on whitespace if it has any, else one token per char."""
    text = text.strip()
    if any(c.isspace() for c in text):
        return tuple(text.split())
    return tuple(text)


_BIT_STR = np.array(["0", "1"], dtype=object)
_DIGIT_STR = np.array([str(d) for d in range(10)], dtype=object)
_LETTERS = tuple("abcdefgh")
_LETTER_STR = np.array(_LETTERS, dtype=object)


def _strs(table: np.ndarray, values: np.ndarray) -> tuple[str, ...]:
    return tuple(table[values].tolist())


class Task:
    """A synthetic task. Subclasses set the class attributes and implement
    :meth:`_prompt_and_answer` (fast, numpy) and :meth:`solve` (plain Python)."""

    name: ClassVar[str] = ""
    #: the family it belongs to: state_tracking, memorization, arithmetic (the project's own
    #: tasks) or chomsky (the tasks Delétang et al. 2023 added; cycle_navigation is in both)
    category: ClassVar[str] = ""
    #: its Chomsky level, one of :data:`LEVELS`
    level: ClassVar[str] = ""
    description: ClassVar[str] = ""
    symbols: ClassVar[list[str]] = []
    #: smallest valid length (a shorter example cannot be built)
    min_length: ClassVar[int] = 1
    #: largest valid length, or None when unbounded
    max_length: ClassVar[int | None] = None
    #: why the lengths are bounded, for the error message (optional)
    length_note: ClassVar[str] = ""
    #: whether the answer's size varies between examples of one length (``answer_size`` is
    #: then the largest it can be)
    variable_answer: ClassVar[bool] = False

    def __init__(self) -> None:
        self._vocab: Vocab | None = None

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:
            self._vocab = Vocab(self.symbols)
        return self._vocab

    # sizes, for documentation, tests and memory estimates
    def prompt_size(self, length: int) -> int:
        """The number of prompt tokens of an example of ``length``."""
        return length

    def answer_size(self, length: int) -> int:
        """The number of answer tokens (EOS excluded); the largest when ``variable_answer``."""
        raise NotImplementedError

    # valid lengths
    def length_range(self) -> str:
        """The valid lengths in words, e.g. "3 and up" or "1 to 512"."""
        if self.max_length is None:
            return f"{self.min_length} and up"
        return f"{self.min_length} to {self.max_length}"

    def length_error(self, bad: Sequence[int], where: str = "") -> LengthSpecError:
        """The one-line error for lengths this task cannot produce (``bad``: a list or range)."""
        shown = ", ".join(str(n) for n in itertools.islice(bad, 5))
        shown += ", ..." if len(bad) > 5 else ""
        note = f" ({self.length_note})" if self.length_note else ""
        prefix = f"{where}: " if where else ""
        return LengthSpecError(
            f"{prefix}task {self.name!r} has no examples of length{'s' if len(bad) > 1 else ''} "
            f"{shown}; its lengths are {self.length_range()}{note}"
        )

    def is_valid_length(self, length: int) -> bool:
        return length >= max(self.min_length, 1) and (
            self.max_length is None or length <= self.max_length)

    def check_lengths(self, lengths: Sequence[int], where: str = "") -> list[int]:
        """``lengths`` as ints, or :class:`LengthSpecError` naming those the task cannot produce
        (``where``, e.g. a config key, prefixes the message)."""
        lengths = [int(n) for n in lengths]
        bad = [n for n in lengths if not self.is_valid_length(n)]
        if bad:
            raise self.length_error(bad, where)
        return lengths

    def check_range(self, lo: int, hi: int, where: str = "") -> None:
        """:class:`LengthSpecError` unless every length from ``lo`` to ``hi`` is valid (a
        training range: each of them may be drawn)."""
        low = max(self.min_length, 1)
        if lo < low:
            raise self.length_error(range(lo, min(hi, low - 1) + 1), where)
        if self.max_length is not None and hi > self.max_length:
            raise self.length_error(range(max(lo, self.max_length + 1), hi + 1), where)

    def _check_length(self, length: int) -> int:
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
            raise TypeError(f"length must be an int, got {length!r}")
        length = int(length)
        if not self.is_valid_length(length):
            raise self.length_error([length])
        return length

    def generate(self, length: int, rng: np.random.Generator) -> Example:
        length = self._check_length(length)
        prompt, answer = self._prompt_and_answer(length, rng)
        return Example(prompt, answer)

    def _prompt_and_answer(
        self, length: int, rng: np.random.Generator
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        raise NotImplementedError

    def solve(self, prompt: Sequence[str]) -> tuple[str, ...]:
        raise NotImplementedError

    def parse_prompt(self, text: str) -> tuple[str, ...]:
        return split_prompt(text)

    # helpers for solve()
    def _bad(self, msg: str) -> InvalidPromptError:
        return InvalidPromptError(f"invalid prompt for task {self.name!r}: {msg}")

    def _bits(self, tokens: Sequence[str], what: str = "prompt") -> list[int]:
        if not tokens:
            raise self._bad(f"empty {what}")
        out = []
        for i, t in enumerate(tokens):
            if t == "0":
                out.append(0)
            elif t == "1":
                out.append(1)
            else:
                raise self._bad(f"token {t!r} at position {i} of the {what} is not a bit")
        return out

    def _two_operands(self, prompt: Sequence[str], op: str) -> tuple[list[int], list[int]]:
        prompt = list(prompt)
        if prompt.count(op) != 1:
            raise self._bad(f"expected exactly one {op!r} between two bit strings")
        k = prompt.index(op)
        a, b = prompt[:k], prompt[k + 1:]
        if len(a) != len(b):
            raise self._bad(f"operands have different lengths ({len(a)} and {len(b)})")
        return self._bits(a, "first operand"), self._bits(b, "second operand")


def _bits_to_int_lsb_first(bits: Sequence[int]) -> int:
    value = 0
    for i, b in enumerate(bits):
        value += b * 2**i
    return value


def _int_to_bits_lsb_first(value: int, width: int) -> tuple[str, ...]:
    out = []
    for _ in range(width):
        out.append(str(value % 2))
        value //= 2
    return tuple(out)


def _np_bits_to_int(bits: np.ndarray) -> int:
    """LSB-first bit array -> Python int (fast path for long operands)."""
    return int("".join(_BIT_STR[bits[::-1]].tolist()), 2)


# --------------------------------------------------------------------------- batching

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


# --------------------------------------------------------------------------- sampling and seeds

def sample_examples(
    task: Task, length: int, count: int, rng: np.random.Generator
) -> list[Example]:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [task.generate(length, rng) for _ in range(count)]


def _check_seed(seed: int, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def train_generator(seed: int) -> np.random.Generator:
    """The training data stream for a run seed (disjoint from every eval stream)."""
    seed = _check_seed(seed, "seed")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TRAIN_TAG,)))


def _task_tag(task: Task) -> int:
    return zlib.crc32(task.name.encode("utf-8"))


def eval_examples(
    task: Task, length: int, samples: int, eval_seed: int = 1234
) -> list[Example]:
    """The fixed evaluation set for (task, length, eval_seed)."""
    eval_seed = _check_seed(eval_seed, "eval_seed")
    length = task._check_length(length)
    ss = np.random.SeedSequence(eval_seed, spawn_key=(_EVAL_TAG, _task_tag(task), length))
    return sample_examples(task, length, samples, np.random.default_rng(ss))


# --------------------------------------------------------------------------- length specs

_NUM = r"\s*([0-9]+)\s*"
_ITEM_RE = re.compile(rf"^{_NUM}(?:-{_NUM}(?::{_NUM})?)?$", re.ASCII)


def parse_lengths(spec: str) -> list[int]:
    """Parse ``"1-40,41-500:10"`` into sorted unique lengths.

    Items are ``n``, ``a-b`` (both ends included) or ``a-b:step`` (``a, a+step, ...``
    up to ``b``, like ``range(a, b + 1, step)``; add ``,b`` to force the end point).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise LengthSpecError("empty length spec; expected e.g. '1-40,41-500:10'")
    lengths: set[int] = set()
    for item in spec.split(","):
        m = _ITEM_RE.match(item)
        if not m:
            raise LengthSpecError(
                f"bad length spec item {item.strip()!r} in {spec!r}; "
                "expected N, A-B or A-B:STEP with positive integers"
            )
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        step = int(m.group(3)) if m.group(3) is not None else 1
        if a < 1:
            raise LengthSpecError(f"lengths must be >= 1, got {a} in {item.strip()!r}")
        if b < a:
            raise LengthSpecError(f"range end {b} is below its start {a} in {item.strip()!r}")
        if step < 1:
            raise LengthSpecError(f"step must be >= 1, got {step} in {item.strip()!r}")
        if b > MAX_SPEC_LENGTH:
            raise LengthSpecError(
                f"length {b} in {item.strip()!r} exceeds the maximum {MAX_SPEC_LENGTH}"
            )
        lengths.update(range(a, b + 1, step))
    return sorted(lengths)
