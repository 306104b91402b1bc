"""What every task shares: examples, the Task base class, Chomsky levels, errors and length
specs. The vocabulary is :mod:`pntm.tasks.vocab`, the autoregressive format and its batches
:mod:`pntm.tasks.batching`, the seed policy of the example streams :mod:`pntm.tasks.seeds`.

Length
------
The *length* ``n`` of an example is what the task says it is: for the project's own tasks the
number of items in the prompt (bits, actions, digits, pairs), for the Chomsky-hierarchy suite
the paper's definition (mostly the number of prompt tokens). The table of every task is in the
docstring of :mod:`pntm.tasks`. A task that cannot produce some length (shorter than its
``min_length``, longer than its ``max_length``) raises :class:`LengthSpecError` for it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from pntm.tasks.vocab import Vocab

__all__ = [
    "MAX_SPEC_LENGTH", "REGULAR", "CONTEXT_FREE", "CONTEXT_SENSITIVE", "LEVELS", "CHOMSKY",
    "UnknownTaskError", "LengthSpecError", "InvalidPromptError", "Example", "Task",
    "parse_lengths", "split_prompt", "DEFAULT_TRAIN_LENGTHS", "DEFAULT_OOD_LENGTHS",
]

DEFAULT_TRAIN_LENGTHS = (1, 40)
DEFAULT_OOD_LENGTHS = (41, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 500)

#: largest length :func:`parse_lengths` accepts (guards against "1-1000000000").
MAX_SPEC_LENGTH = 1_000_000

# Chomsky levels (Delétang et al. 2023 classify a task by the weakest automaton that solves it:
# a finite-state machine, a deterministic stack, a linear tape).
REGULAR = "regular"
CONTEXT_FREE = "deterministic context-free"
CONTEXT_SENSITIVE = "context-sensitive"
LEVELS = (REGULAR, CONTEXT_FREE, CONTEXT_SENSITIVE)

#: the category of the tasks the Chomsky-hierarchy suite adds to the project's own
CHOMSKY = "chomsky"


# --------------------------------------------------------------------------- errors

class UnknownTaskError(ValueError):
    """A task name that is not in :data:`TASKS`."""


class LengthSpecError(ValueError):
    """A malformed length spec such as ``"1-40,41-500:10"``."""


class InvalidPromptError(ValueError):
    """A prompt that does not have the task's structure."""


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
