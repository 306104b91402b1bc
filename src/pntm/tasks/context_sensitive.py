"""The context-sensitive tasks of the Chomsky-hierarchy suite (Delétang et al. 2023).

A linear-bounded tape machine solves each of them; no stack does. Two names clash with the
project's own tasks, which keep theirs: the paper's Binary Addition and Binary Multiplication
(operands of different, random lengths in one prompt of ``n`` tokens, and an answer without
leading zeros) are ``binary_addition_dm`` and ``binary_multiplication_dm`` here, next to ours
(two ``n``-bit operands and a fixed-width answer).
"""

from __future__ import annotations

import math

import numpy as np

from pntm.tasks.base import (
    CHOMSKY, CONTEXT_SENSITIVE, Task, _BIT_STR, _DIGIT_STR, _np_bits_to_int, _strs,
)
from pntm.tasks.ours import Duplicate

__all__ = [
    "DuplicateString", "MissingDuplicateString", "OddsFirst", "BinaryAdditionDM",
    "BinaryMultiplicationDM", "ComputeSqrt", "BucketSort",
]


class DuplicateString(Duplicate):
    """Duplicate String: the paper's name for the project's ``duplicate``, with its definition.

    A bit string of length ``n >= 1`` (the paper uses binary strings); answer: the string twice,
    without a separator (``2n`` tokens). The generator is ``duplicate``'s (the same random
    stream gives the same examples); the task has its own name, so its evaluation sets are its
    own.

    Example: ``101`` -> ``101101``.
    """

    name = "duplicate_string"
    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    description = "the paper's name for duplicate: a bit string; answer: the string twice"


class MissingDuplicateString(Task):
    """Missing Duplicate String: a bit string written twice with one bit hidden; answer: it.

    * prompt: ``w w`` for a uniform random ``w`` of ``n // 2`` bits, with one of its ``2 * (n //
      2)`` positions (uniform) replaced by ``_`` (the paper's token 2), followed, when ``n`` is
      odd, by one ``#`` (the paper's empty token 3) so that the prompt has exactly ``n`` tokens.
    * length ``n`` = the number of prompt tokens, ``n >= 2``. Length 1 has no string to
      duplicate and raises ``LengthSpecError`` (the paper fills it with a dummy input).
    * answer: one bit, the hidden one.

    Examples: ``01100_10`` -> 1 (``w = 0110``); ``1011_1#`` -> 0 (``w = 101``).
    """

    name = "missing_duplicate_string"
    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    description = ("a bit string twice with one bit shown as _ (and # to pad an odd length); "
                   "answer: that bit")
    symbols = ["0", "1", "_", "#"]
    min_length = 2
    length_note = "the length counts every token, and the shortest string written twice is 2"

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        half = rng.integers(0, 2, size=length // 2)
        twice = np.concatenate([half, half])
        hidden = int(rng.integers(0, twice.size))
        prompt = _strs(_BIT_STR, twice)
        answer = (prompt[hidden],)
        prompt = prompt[:hidden] + ("_",) + prompt[hidden + 1:] + ("#",) * (length % 2)
        return prompt, answer

    def solve(self, prompt):
        prompt = list(prompt)
        if prompt and prompt[-1] == "#":
            prompt = prompt[:-1]
        if len(prompt) < 2 or len(prompt) % 2:
            raise self._bad("expected an even number (at least 2) of bits and _, then # for "
                            "an odd length")
        if prompt.count("_") != 1:
            raise self._bad(f"expected _ exactly once, got it {prompt.count('_')} times")
        k = prompt.index("_")
        half = len(prompt) // 2
        other = k + half if k < half else k - half
        for i, t in enumerate(prompt):
            if t not in ("0", "1") and i != k:
                raise self._bad(f"token {t!r} at position {i} is not a bit")
        if any(prompt[i] != prompt[i + half] for i in range(half) if k not in (i, i + half)):
            raise self._bad("the two halves differ")
        return (prompt[other],)


class OddsFirst(Task):
    """Odds First: a bit string; answer: its tokens at odd positions, then at even positions.

    * prompt: ``s1 s2 ... sn``, ``n >= 1`` uniform random bits (the paper uses binary strings).
    * answer: ``s1 s3 s5 ... s2 s4 s6 ...`` (positions counted from 1), ``n`` tokens. This is
      the paper's definition and its examples (``00110101`` -> ``0100 0111``); its code slices
      the other way round (``[1::2]`` first), which the paper's text does not.

    Example: ``110`` -> ``101``.
    """

    name = "odds_first"
    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    description = "a bit string; answer: the bits at odd positions (1, 3, ...), then at even ones"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return length

    def _prompt_and_answer(self, length, rng):
        prompt = _strs(_BIT_STR, rng.integers(0, 2, size=length))
        return prompt, prompt[0::2] + prompt[1::2]

    def solve(self, prompt):
        self._bits(prompt)
        prompt = tuple(prompt)
        return prompt[0::2] + prompt[1::2]


def _nonzero_bits(rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` bits of a number uniform in ``1 .. 2**size - 1`` (all-zero draws are redrawn)."""
    while True:
        bits = rng.integers(0, 2, size=size)
        if bits.any():
            return bits


class _PaperBinaryOperation(Task):
    """The paper's layout of Binary Addition and Multiplication (see the subclasses)."""

    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    symbols = ["0", "1", "+"]
    operator = "+"
    min_length = 3
    length_note = "the length counts both operands and the operator, and the shortest is 1+1"
    variable_answer = True

    def answer_size(self, length: int) -> int:
        return length - 1

    @staticmethod
    def _combine(a: int, b: int) -> int:
        raise NotImplementedError

    def _prompt_and_answer(self, length, rng):
        size_a = int(rng.integers(1, length - 1))
        a = _nonzero_bits(rng, size_a)
        b = _nonzero_bits(rng, length - 1 - size_a)
        value = self._combine(_np_bits_to_int(a), _np_bits_to_int(b))
        prompt = _strs(_BIT_STR, a) + (self.operator,) + _strs(_BIT_STR, b)
        return prompt, tuple(format(value, "b")[::-1])

    def solve(self, prompt):
        prompt = list(prompt)
        if prompt.count(self.operator) != 1:
            raise self._bad(f"expected exactly one {self.operator!r} between two bit strings")
        k = prompt.index(self.operator)
        a = self._bits(prompt[:k], "first operand")
        b = self._bits(prompt[k + 1:], "second operand")
        value = self._combine(sum(bit << i for i, bit in enumerate(a)),
                              sum(bit << i for i, bit in enumerate(b)))
        return tuple(format(value, "b")[::-1])


class BinaryAdditionDM(_PaperBinaryOperation):
    """Binary Addition, the paper's layout (ours is ``binary_addition``).

    * prompt: ``a + b``, both least significant bit first. The length ``n`` is the number of
      prompt tokens (``n >= 3``): ``a`` has ``k`` bits, ``k`` uniform in ``1..n-2``, ``b`` the
      other ``n - 1 - k``. Each is a number uniform in ``1 .. 2**bits - 1`` written with exactly
      that many bits, so an operand may end in zeros (its most significant end) but is never 0.
    * answer: ``a + b``, least significant bit first, without leading zeros (it ends in 1),
      ``max(bits) .. max(bits) + 1`` tokens, at most ``n - 1``. The paper pads its output with
      a termination token then zeros and scores up to the termination token; here ``EOS``
      ends the answer and there is no padding.
    * lengths 1 and 2 hold no addition and raise ``LengthSpecError`` (the paper fills them with
      a number and no operator).

    Example: ``001+01101`` -> ``01011`` (4 + 22 = 26).
    """

    name = "binary_addition_dm"
    description = ("the paper's binary addition: a+b, LSB first, operand sizes random within n "
                   "tokens; answer: the sum without leading zeros")
    symbols = ["0", "1", "+"]
    operator = "+"

    @staticmethod
    def _combine(a: int, b: int) -> int:
        return a + b


class BinaryMultiplicationDM(_PaperBinaryOperation):
    """Binary Multiplication, the paper's layout (ours is ``binary_multiplication``).

    * prompt: ``a * b``, laid out as in ``binary_addition_dm`` (``n >= 3`` tokens in all,
      operands of random sizes, each a nonzero number, least significant bit first).
    * answer: ``a * b``, least significant bit first, without leading zeros, at most ``n - 1``
      tokens (``EOS`` ends it; the paper pads after a termination token).
    * lengths 1 and 2 hold no product and raise ``LengthSpecError`` (the paper gives them a
      fixed dummy answer).

    Example: ``001*01101`` -> ``0001101`` (4 * 22 = 88).
    """

    name = "binary_multiplication_dm"
    description = ("the paper's binary multiplication: a*b, LSB first, operand sizes random "
                   "within n tokens; answer: the product without leading zeros")
    symbols = ["0", "1", "*"]
    operator = "*"
    length_note = "the length counts both operands and the operator, and the shortest is 1*1"

    @staticmethod
    def _combine(a: int, b: int) -> int:
        return a * b


class ComputeSqrt(Task):
    """Compute Sqrt: a binary number; answer: the floor of its square root, in binary.

    * prompt: a number uniform in ``1 .. 2**n - 1`` written with exactly ``n`` bits, most
      significant bit first (the paper's big-endian order; leading zeros kept).
    * length ``n`` = the number of bits; every ``n >= 1`` is valid.
    * answer: ``isqrt(number)`` with exactly ``ceil(n / 2)`` bits, most significant first,
      leading zeros kept (it always fits: ``isqrt(2**n - 1) < 2**ceil(n/2)``).

    Examples: ``100101`` (37) -> ``110`` (6); ``111`` (7) -> ``10`` (2).
    """

    name = "compute_sqrt"
    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    description = ("an n-bit number, MSB first; answer: the floor of its square root in "
                   "ceil(n/2) bits, MSB first")
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return (length + 1) // 2

    def _prompt_and_answer(self, length, rng):
        bits = _nonzero_bits(rng, length)
        root = math.isqrt(int("".join(_BIT_STR[bits].tolist()), 2))
        return _strs(_BIT_STR, bits), tuple(format(root, f"0{self.answer_size(length)}b"))

    def solve(self, prompt):
        bits = self._bits(prompt)
        root = math.isqrt(int("".join(map(str, bits)), 2))
        return tuple(format(root, f"0{self.answer_size(len(bits))}b"))


class BucketSort(Task):
    """Bucket Sort: a string of digits 0-4; answer: the same digits sorted.

    * prompt: ``n >= 1`` digits uniform in 0-4 (the paper's alphabet of 5).
    * answer: the digits in increasing order, ``n`` tokens.

    Example: ``10204112`` -> ``00111224``.
    """

    name = "bucket_sort"
    category = CHOMSKY
    level = CONTEXT_SENSITIVE
    description = "digits 0-4; answer: the digits sorted"
    symbols = ["0", "1", "2", "3", "4"]

    def answer_size(self, length: int) -> int:
        return length

    def _prompt_and_answer(self, length, rng):
        digits = rng.integers(0, 5, size=length)
        return _strs(_DIGIT_STR, digits), _strs(_DIGIT_STR, np.sort(digits))

    def solve(self, prompt):
        prompt = list(prompt)
        if not prompt:
            raise self._bad("empty prompt")
        for i, t in enumerate(prompt):
            if t not in ("0", "1", "2", "3", "4"):
                raise self._bad(f"token {t!r} at position {i} is not a digit 0-4")
        return tuple(sorted(prompt))
