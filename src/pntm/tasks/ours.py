"""The project's own tasks (the benchmark's required set, plus binary multiplication).

Their generators are frozen: the committed results grid was trained and evaluated on exactly the
examples they produce (``tests/test_task_pins.py`` pins them). Change one and every earlier run
becomes incomparable with new ones; add a new task under a new name instead.

Each task's ``level`` is the Chomsky level of the paper's classification (Delétang et al. 2023:
the weakest automaton that solves the transduction, a finite-state machine, a stack, or a
linear tape), so that ``pntm tasks`` places them next to the suite's tasks:

* regular: ``parity``, ``cycle_navigation`` (which *is* the paper's task, see
  :class:`CycleNavigation`), ``modular_arithmetic`` (``+`` and ``-`` only: a running sum mod 5);
* deterministic context-free: ``reverse`` (a stack read back);
* context-sensitive: ``copy`` and ``duplicate`` (the string in its own order needs a queue, not a
  stack: the paper's Duplicate String is context-sensitive), ``associative_recall`` (random
  access to n stored pairs), ``binary_addition`` and ``binary_multiplication`` (as the paper's).
"""

from __future__ import annotations

import numpy as np

from pntm.tasks.base import (
    CONTEXT_FREE, CONTEXT_SENSITIVE, REGULAR, Task, _BIT_STR, _DIGIT_STR, _LETTER_STR, _LETTERS,
    _bits_to_int_lsb_first, _int_to_bits_lsb_first, _np_bits_to_int, _strs,
)

__all__ = [
    "Parity", "CycleNavigation", "ModularArithmetic", "Copy", "Reverse", "Duplicate",
    "AssociativeRecall", "BinaryAddition", "BinaryMultiplication",
]


# --- state tracking ---------------------------------------------------------------------

class Parity(Task):
    name = "parity"
    level = REGULAR
    category = "state_tracking"
    description = "a bit string; answer: the number of 1s mod 2"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        bits = rng.integers(0, 2, size=length)
        return _strs(_BIT_STR, bits), (str(int(bits.sum()) % 2),)

    def solve(self, prompt):
        ones = 0
        for b in self._bits(prompt):
            if b == 1:
                ones += 1
        return (str(ones % 2),)


class CycleNavigation(Task):
    """Cycle navigation: ours, and also the paper's Cycle Navigation (one task, one name).

    Delétang et al.'s task: n actions drawn uniformly from {stay, +1, -1}, applied to a position
    on a 5-cycle starting at 0; the answer is the final position (class 0-4); the length is the
    number of actions. Ours is the same distribution with the same answer and length. The only
    difference is the names of the three input symbols: the paper's docstring writes the actions
    0 (stay), 1 (right), -1 (left), and ours writes them 0, 1 and 2 (-1 mod 3); its code one-hot
    encodes them as indices 0 (left), 1 (stay), 2 (right). A renaming of input symbols is
    invisible to a model that embeds its tokens, so the two are one task and the paper's
    ``cycle_navigation`` is this one (``tests/test_chomsky_tasks.py`` checks the equivalence).
    """

    name = "cycle_navigation"
    level = REGULAR
    category = "state_tracking"
    description = "actions 0 stay, 1 +1, 2 -1 on a 5-cycle from 0; answer: the final position"
    symbols = ["0", "1", "2", "3", "4"]
    _STEP = np.array([0, 1, -1])

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        actions = rng.integers(0, 3, size=length)
        position = int(self._STEP[actions].sum()) % 5
        return _strs(_DIGIT_STR, actions), (str(position),)

    def solve(self, prompt):
        if not prompt:
            raise self._bad("empty prompt")
        position = 0
        for i, t in enumerate(prompt):
            if t == "0":
                pass
            elif t == "1":
                position = (position + 1) % 5
            elif t == "2":
                position = (position - 1) % 5
            else:
                raise self._bad(f"token {t!r} at position {i} is not an action 0, 1 or 2")
        return (str(position),)


class ModularArithmetic(Task):
    name = "modular_arithmetic"
    level = REGULAR
    category = "state_tracking"
    description = "digits 0-4 joined by + and -, evaluated left to right mod 5; answer: one digit"
    symbols = ["0", "1", "2", "3", "4", "+", "-"]
    _OPS = np.array(["+", "-"], dtype=object)

    def prompt_size(self, length: int) -> int:
        return 2 * length - 1

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        digits = rng.integers(0, 5, size=length)
        ops = rng.integers(0, 2, size=length - 1)  # 0: +, 1: -
        signs = 1 - 2 * ops
        value = int(digits[0] + (signs * digits[1:]).sum()) % 5
        prompt = np.empty(2 * length - 1, dtype=object)
        prompt[0::2] = _DIGIT_STR[digits]
        prompt[1::2] = self._OPS[ops]
        return tuple(prompt.tolist()), (str(value),)

    def solve(self, prompt):
        prompt = list(prompt)
        if len(prompt) % 2 == 0:
            raise self._bad(f"expected digits alternating with + or -, got {len(prompt)} tokens")
        digits = "01234"
        for i, t in enumerate(prompt):
            if i % 2 == 0 and t not in digits:
                raise self._bad(f"token {t!r} at position {i} is not a digit 0-4")
            if i % 2 == 1 and t not in ("+", "-"):
                raise self._bad(f"token {t!r} at position {i} is not + or -")
        value = int(prompt[0])
        for op, digit in zip(prompt[1::2], prompt[2::2]):
            value = value + int(digit) if op == "+" else value - int(digit)
            value %= 5
        return (str(value),)


# --- memorization ------------------------------------------------------------------------

class Copy(Task):
    name = "copy"
    level = CONTEXT_SENSITIVE
    category = "memorization"
    description = "a bit string; answer: the same string"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return length

    def _prompt_and_answer(self, length, rng):
        prompt = _strs(_BIT_STR, rng.integers(0, 2, size=length))
        return prompt, prompt

    def solve(self, prompt):
        self._bits(prompt)
        return tuple(prompt)


class Reverse(Task):
    name = "reverse"
    level = CONTEXT_FREE
    category = "memorization"
    description = "a bit string; answer: the string reversed"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return length

    def _prompt_and_answer(self, length, rng):
        prompt = _strs(_BIT_STR, rng.integers(0, 2, size=length))
        return prompt, prompt[::-1]

    def solve(self, prompt):
        self._bits(prompt)
        return tuple(reversed(list(prompt)))


class Duplicate(Task):
    name = "duplicate"
    level = CONTEXT_SENSITIVE
    category = "memorization"
    description = "a bit string; answer: the string twice"
    symbols = ["0", "1"]

    def answer_size(self, length: int) -> int:
        return 2 * length

    def _prompt_and_answer(self, length, rng):
        prompt = _strs(_BIT_STR, rng.integers(0, 2, size=length))
        return prompt, prompt + prompt

    def solve(self, prompt):
        self._bits(prompt)
        return tuple(prompt) + tuple(prompt)


class AssociativeRecall(Task):
    name = "associative_recall"
    level = CONTEXT_SENSITIVE
    category = "memorization"
    description = "n pairs of a 3-letter key (a-h) and a digit, then ? and a key; answer: its digit"
    symbols = list(_LETTERS) + [str(d) for d in range(10)] + ["?"]
    KEY_LETTERS = 3
    max_length = len(_LETTERS) ** KEY_LETTERS  # 512 distinct keys
    length_note = "its keys are distinct 3-letter words over a-h, and there are 512"

    def prompt_size(self, length: int) -> int:
        return 4 * length + 4

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        keys = rng.choice(self.max_length, size=length, replace=False)
        values = rng.integers(0, 10, size=length)
        query = int(rng.integers(0, length))
        pairs = np.empty((length, 4), dtype=object)
        pairs[:, 0] = _LETTER_STR[keys // 64]
        pairs[:, 1] = _LETTER_STR[(keys // 8) % 8]
        pairs[:, 2] = _LETTER_STR[keys % 8]
        pairs[:, 3] = _DIGIT_STR[values]
        prompt = tuple(pairs.ravel().tolist()) + ("?",) + tuple(pairs[query, :3].tolist())
        return prompt, (str(int(values[query])),)

    def solve(self, prompt):
        prompt = list(prompt)
        if len(prompt) < 8 or len(prompt) % 4 != 0:
            raise self._bad(
                "expected n >= 1 groups of 3 letters and a digit, then ? and 3 letters "
                f"(4n+4 tokens), got {len(prompt)} tokens"
            )
        n = (len(prompt) - 4) // 4
        if prompt[4 * n] != "?":
            raise self._bad(f"expected '?' at position {4 * n}, got {prompt[4 * n]!r}")
        table: dict[tuple[str, ...], str] = {}
        for i in range(n):
            key = tuple(prompt[4 * i: 4 * i + 3])
            value = prompt[4 * i + 3]
            for j, letter in enumerate(key):
                if letter not in _LETTERS:
                    raise self._bad(f"token {letter!r} at position {4 * i + j} is not a letter a-h")
            if value not in "0123456789" or len(value) != 1:
                raise self._bad(f"token {value!r} at position {4 * i + 3} is not a digit")
            if key in table:
                raise self._bad(f"key {''.join(key)!r} appears twice")
            table[key] = value
        query = tuple(prompt[4 * n + 1:])
        if query not in table:
            raise self._bad(f"the queried key {''.join(query)!r} is not among the pairs")
        return (table[query],)


# --- arithmetic --------------------------------------------------------------------------

class BinaryAddition(Task):
    name = "binary_addition"
    level = CONTEXT_SENSITIVE
    category = "arithmetic"
    description = "two n-bit numbers, LSB first, joined by +; answer: the n+1-bit sum, LSB first"
    symbols = ["0", "1", "+"]

    def prompt_size(self, length: int) -> int:
        return 2 * length + 1

    def answer_size(self, length: int) -> int:
        return length + 1

    def _prompt_and_answer(self, length, rng):
        bits = rng.integers(0, 2, size=(2, length))
        total = _np_bits_to_int(bits[0]) + _np_bits_to_int(bits[1])
        answer = tuple(format(total, f"0{length + 1}b")[::-1])
        return _strs(_BIT_STR, bits[0]) + ("+",) + _strs(_BIT_STR, bits[1]), answer

    def solve(self, prompt):
        a, b = self._two_operands(prompt, "+")
        total = _bits_to_int_lsb_first(a) + _bits_to_int_lsb_first(b)
        return _int_to_bits_lsb_first(total, len(a) + 1)


class BinaryMultiplication(Task):
    name = "binary_multiplication"
    level = CONTEXT_SENSITIVE
    category = "arithmetic"
    description = "two n-bit numbers, LSB first, joined by *; answer: the 2n-bit product, LSB first"
    symbols = ["0", "1", "*"]

    def prompt_size(self, length: int) -> int:
        return 2 * length + 1

    def answer_size(self, length: int) -> int:
        return 2 * length

    def _prompt_and_answer(self, length, rng):
        bits = rng.integers(0, 2, size=(2, length))
        product = _np_bits_to_int(bits[0]) * _np_bits_to_int(bits[1])
        answer = tuple(format(product, f"0{2 * length}b")[::-1])
        return _strs(_BIT_STR, bits[0]) + ("*",) + _strs(_BIT_STR, bits[1]), answer

    def solve(self, prompt):
        a, b = self._two_operands(prompt, "*")
        product = _bits_to_int_lsb_first(a) * _bits_to_int_lsb_first(b)
        return _int_to_bits_lsb_first(product, 2 * len(a))
