"""The regular tasks of the Chomsky-hierarchy suite (Delétang et al. 2023).

A finite-state machine solves each of them. The paper's fourth regular task, Cycle Navigation, is
the project's own ``cycle_navigation`` (see :class:`pntm.tasks.ours.CycleNavigation`).

Every task here has a one-token answer (the paper's output class, written as a digit).
"""

from __future__ import annotations

import numpy as np

from pntm.tasks.base import CHOMSKY, REGULAR, Task, _BIT_STR, _DIGIT_STR, _strs
from pntm.tasks.ours import Parity

__all__ = ["EvenPairs", "ModularArithmeticSimple", "ParityCheck"]


class EvenPairs(Task):
    """Even Pairs: is the number of ``01`` and ``10`` pairs in a bit string even?

    * prompt: ``n`` uniform random bits; length ``n`` = the number of bits (``n >= 1``).
    * answer: one token, ``0`` when the number of unequal neighbouring pairs (``01`` or ``10``)
      is even, ``1`` when it is odd (the paper's class 0 / class 1). It is even exactly when the
      first and the last bit are equal. A single bit has no pair: answer ``0``.

    Example: ``001110`` has one ``01`` and one ``10``: answer ``0``.
    """

    name = "even_pairs"
    category = CHOMSKY
    level = REGULAR
    description = "a bit string; answer: 1 if the number of 01 and 10 pairs is odd, else 0"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        bits = rng.integers(0, 2, size=length)
        odd = int((bits[1:] != bits[:-1]).sum()) % 2
        return _strs(_BIT_STR, bits), (str(odd),)

    def solve(self, prompt):
        bits = self._bits(prompt)
        changes = sum(1 for a, b in zip(bits, bits[1:]) if a != b)
        return (str(changes % 2),)


class ModularArithmeticSimple(Task):
    """Modular Arithmetic (Simple): an expression of digits 0-4 and ``+ - *``, mod 5.

    * prompt: ``d op d op ... d``, digits uniform in 0-4, operators uniform among ``+ - *``.
    * length ``n`` = the number of prompt tokens, as in the paper. An expression has an odd
      number of tokens, so (as the paper's generator does) an even ``n`` gives an expression of
      ``n - 1`` tokens: ``prompt_size(n)`` is ``n`` for odd ``n`` and ``n - 1`` for even ``n``
      (length 2 is a single digit, like length 1). Every ``n >= 1`` is valid.
    * answer: one digit, the value with the usual precedence (``*`` before ``+`` and ``-``,
      left to right otherwise), mod 5.

    This differs from the project's ``modular_arithmetic`` (``+`` and ``-`` only, and a length
    that counts digits, not tokens).

    Examples: ``1+2*3`` -> 2 (7 mod 5); ``1-1-1`` -> 4; ``0*1+4*3-2`` -> 0.
    """

    name = "modular_arithmetic_simple"
    category = CHOMSKY
    level = REGULAR
    description = ("digits 0-4 joined by + - * (usual precedence), mod 5; length = tokens; "
                   "answer: one digit")
    symbols = ["0", "1", "2", "3", "4", "+", "-", "*"]
    _OPS = np.array(["+", "-", "*"], dtype=object)

    def prompt_size(self, length: int) -> int:
        return length if length % 2 == 1 else length - 1

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        size = self.prompt_size(length)
        digits = rng.integers(0, 5, size=(size + 1) // 2)
        ops = rng.integers(0, 3, size=size // 2)
        prompt = np.empty(size, dtype=object)
        prompt[0::2] = _DIGIT_STR[digits]
        prompt[1::2] = self._OPS[ops]
        return tuple(prompt.tolist()), (str(_evaluate_flat(digits.tolist(), ops.tolist())),)

    def solve(self, prompt):
        prompt = list(prompt)
        if len(prompt) % 2 == 0:
            raise self._bad(f"expected digits alternating with + - or *, got {len(prompt)} tokens")
        ops = {"+": 0, "-": 1, "*": 2}
        for i, t in enumerate(prompt):
            if i % 2 == 0 and t not in ("0", "1", "2", "3", "4"):
                raise self._bad(f"token {t!r} at position {i} is not a digit 0-4")
            if i % 2 == 1 and t not in ops:
                raise self._bad(f"token {t!r} at position {i} is not + - or *")
        digits = [int(t) for t in prompt[0::2]]
        return (str(_evaluate_flat(digits, [ops[t] for t in prompt[1::2]])),)


def _evaluate_flat(digits: list[int], ops: list[int], modulus: int = 5) -> int:
    """``d0 op0 d1 op1 ...`` (ops 0: +, 1: -, 2: *) with * first, mod ``modulus``."""
    total, term = 0, digits[0]
    for op, d in zip(ops, digits[1:]):
        if op == 2:
            term = term * d % modulus
        else:
            total += term
            term = d if op == 0 else -d
    return (total + term) % modulus


class ParityCheck(Parity):
    """Parity Check: the paper's name for the project's ``parity``, with the same definition.

    A bit string of length ``n`` (``n >= 1``); answer ``1`` if it has an odd number of 1s, else
    ``0``. The generator is ``parity``'s (the same random stream gives the same examples); the
    task has its own name, so its evaluation sets are its own.

    Example: ``1010100`` -> 1; ``01111`` -> 0.
    """

    name = "parity_check"
    category = CHOMSKY
    level = REGULAR
    description = "the paper's name for parity: a bit string; answer: the number of 1s mod 2"
