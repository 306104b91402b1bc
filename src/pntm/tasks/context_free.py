"""The deterministic context-free tasks of the Chomsky-hierarchy suite (Delétang et al. 2023).

A deterministic stack machine solves each of them. The length of every task here is the number
of prompt tokens, as in the paper.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from pntm.tasks.base import CHOMSKY, CONTEXT_FREE, Task, _BIT_STR, _strs
from pntm.tasks.ours import Reverse

__all__ = ["StackManipulation", "ReverseString", "ModularArithmeticBrackets", "SolveEquation"]

MODULUS = 5
_DIGITS = tuple(str(d) for d in range(MODULUS))


class StackManipulation(Task):
    """Stack Manipulation: run push and pop actions on a stack; answer: the final stack.

    * prompt: a stack of bits, given bottom to top, then actions ``POP``, ``PUSH0`` and
      ``PUSH1`` (the paper's tokens 2, 3 and 4; here one token each, named). For a length
      ``n >= 2`` the stack has ``s`` bits, ``s`` uniform in ``1..n-1``, and the ``n - s``
      actions are uniform among the three; length ``1`` is a one-bit stack and no action.
    * length ``n`` = the number of prompt tokens (stack bits plus actions).
    * ``POP`` on an empty stack does nothing.
    * answer: the final stack from top to bottom (as if popping it), between 0 and ``n``
      tokens: its size varies, and an empty stack is an empty answer (``SEP`` then ``EOS``).
      The paper pads its output to ``n + 1`` with a termination token then zeros and scores
      up to the termination token; here ``EOS`` is that token and there is no padding.

    Example: ``0 1 1 0 PUSH1 POP POP`` -> ``1 1 0``; ``1 1 0 POP POP POP`` -> (empty).
    ``parse_prompt`` reads ``0110 PUSH1 POP POP`` and ``0110push1poppop`` alike (case-insensitive).
    """

    name = "stack_manipulation"
    category = CHOMSKY
    level = CONTEXT_FREE
    description = ("a bottom-to-top stack of bits then POP/PUSH0/PUSH1 actions; answer: the "
                   "final stack, top to bottom")
    symbols = ["0", "1", "POP", "PUSH0", "PUSH1"]
    variable_answer = True
    _ACTIONS = np.array(["POP", "PUSH0", "PUSH1"], dtype=object)

    def answer_size(self, length: int) -> int:
        return length  # the largest final stack: a stack of s bits and n - s pushes

    def _prompt_and_answer(self, length, rng):
        stack_size = 1 if length == 1 else int(rng.integers(1, length))
        bits = rng.integers(0, 2, size=stack_size)
        actions = rng.integers(0, 3, size=length - stack_size)  # 0 POP, 1 PUSH0, 2 PUSH1
        stack = bits.tolist()
        for a in actions.tolist():
            if a == 0:
                if stack:
                    stack.pop()
            else:
                stack.append(a - 1)
        prompt = _strs(_BIT_STR, bits) + tuple(self._ACTIONS[actions].tolist())
        return prompt, tuple(str(b) for b in reversed(stack))

    def parse_prompt(self, text):
        return tuple(re.findall(r"PUSH[01]|POP|\S", text.upper()))

    def solve(self, prompt):
        prompt = list(prompt)
        if not prompt or prompt[0] not in ("0", "1"):
            raise self._bad("expected a stack of at least one bit, then POP/PUSH0/PUSH1 actions")
        stack: list[str] = []
        acting = False
        for i, t in enumerate(prompt):
            if t in ("0", "1") and not acting:
                stack.append(t)
            elif t == "POP":
                acting = True
                if stack:
                    stack.pop()
            elif t in ("PUSH0", "PUSH1"):
                acting = True
                stack.append(t[-1])
            elif t in ("0", "1"):
                raise self._bad(f"bit {t!r} at position {i} comes after the first action")
            else:
                raise self._bad(f"token {t!r} at position {i} is not a bit, POP, PUSH0 or PUSH1")
        return tuple(reversed(stack))


class ReverseString(Reverse):
    """Reverse String: the paper's name for the project's ``reverse``, with its definition.

    A bit string of length ``n >= 1`` (the paper uses binary strings); answer: the string
    reversed (``n`` tokens). The generator is ``reverse``'s (the same random stream gives the
    same examples); the task has its own name, so its evaluation sets are its own.

    Example: ``011010`` -> ``010110``.
    """

    name = "reverse_string"
    category = CHOMSKY
    level = CONTEXT_FREE
    description = "the paper's name for reverse: a bit string; answer: the string reversed"


class ModularArithmeticBrackets(Task):
    """Modular Arithmetic (brackets): a bracketed expression of digits 0-4 and ``+ - *``, mod 5.

    * prompt: an expression of exactly ``n`` tokens from the paper's grammar, generated as the
      paper does: length 1 is a digit ``d``, 2 is ``-d``, 3 is ``(d)``, 4 is ``(-d)``; a length
      ``n >= 5`` is ``(L op R)`` with ``len(L)`` uniform in ``1..n-4``, ``len(R) = n - 3 -
      len(L)``, each generated the same way, and ``op`` uniform among ``+ - *`` (the paper's
      experiments use ``mult=True``). Digits are uniform in 0-4.
    * length ``n`` = the number of prompt tokens; every ``n >= 1`` is valid.
    * answer: one digit, the value mod 5 (a leading ``-`` negates the digit it precedes).
    * vocabulary: the symbols that occur (digits, ``+ - * ( )``); the paper's one-hot input
      also reserves slots for ``x`` and ``=`` (shared with Solve Equation) that never occur.

    Example: ``((1-2)*(-3))`` -> 3 (``(-1)*(-3) = 3``); ``(-4)`` -> 1.
    """

    name = "modular_arithmetic_brackets"
    category = CHOMSKY
    level = CONTEXT_FREE
    description = ("a bracketed expression of digits 0-4 and + - *, mod 5; length = tokens; "
                   "answer: one digit")
    symbols = list(_DIGITS) + ["+", "-", "*", "(", ")"]

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        tokens, value = bracket_expression(length, rng, mult=True)
        return tuple(tokens), (_DIGITS[value],)

    def solve(self, prompt):
        coef, value = evaluate_expression(self, prompt, allow_mult=True, allow_x=False)
        return (_DIGITS[value],)


class SolveEquation(Task):
    """Solve Equation: find the digit ``x`` replaces in ``expression = value``, mod 5.

    * prompt: ``E = v`` where ``E`` is a Modular Arithmetic (brackets) expression of ``n - 2``
      tokens without ``*`` (as in the paper: with ``*`` an equation may have several
      solutions), in which one digit was replaced by ``x``, and ``v`` is the value of the
      original expression mod 5. As in the paper's generator, the replaced digit is the first
      digit at or after (cyclically) a uniform random position of ``E``.
    * length ``n`` = the number of prompt tokens, ``=`` and ``v`` included. The shortest
      equation is ``x=v`` (``n = 3``); lengths 1 and 2 have no equation and raise
      ``LengthSpecError`` (the paper fills them with dummy all-zero inputs).
    * answer: one digit, the solution. ``x`` appears once and only under ``+``, ``-`` and
      negation, so the solution is unique and is the digit that was replaced.

    Example: ``(x-(-3))=0`` -> 2 (``2 + 3 = 5 = 0``); ``-x=1`` -> 4.
    """

    name = "solve_equation"
    category = CHOMSKY
    level = CONTEXT_FREE
    description = ("an expression of digits 0-4, + - and brackets with one digit replaced by x, "
                   "= its value mod 5; answer: x")
    symbols = list(_DIGITS) + ["+", "-", "(", ")", "x", "="]
    min_length = 3
    length_note = "the length counts every token of the equation, and the shortest is x=d"

    def answer_size(self, length: int) -> int:
        return 1

    def _prompt_and_answer(self, length, rng):
        size = length - 2
        expr, value = bracket_expression(size, rng, mult=False)
        idx = int(rng.integers(0, size))
        while expr[idx] not in _DIGITS:
            idx = (idx + 1) % size
        solution = expr[idx]
        expr[idx] = "x"
        return tuple(expr) + ("=", _DIGITS[value]), (solution,)

    def solve(self, prompt):
        prompt = list(prompt)
        if prompt.count("=") != 1 or len(prompt) < 3 or prompt[-2] != "=":
            raise self._bad("expected an expression, then = and one digit")
        if prompt[-1] not in _DIGITS:
            raise self._bad(f"the value {prompt[-1]!r} after = is not a digit 0-4")
        if prompt.count("x") != 1:
            raise self._bad(f"expected x exactly once, got it {prompt.count('x')} times")
        coef, const = evaluate_expression(self, prompt[:-2], allow_mult=False, allow_x=True)
        # coef is +1 or -1 (x appears once, under + - and negation only): x = coef * (v - const)
        return (_DIGITS[coef * (int(prompt[-1]) - const) % MODULUS],)


# --------------------------------------------------------------------------- expressions

_OP_TOKENS = ("+", "-", "*")


def bracket_expression(length: int, rng: np.random.Generator, mult: bool,
                       modulus: int = MODULUS) -> tuple[list[str], int]:
    """A random expression of exactly ``length`` tokens from the paper's grammar, and its value.

    Iterative (an explicit work stack), so long expressions never hit Python's recursion limit.
    """
    tokens: list[str] = []
    values: list[int] = []
    work: list = [length]  # int: generate an expression of that length; str: emit it;
    #                        tuple: close a bracket and combine the last two values
    while work:
        item = work.pop()
        if isinstance(item, str):
            tokens.append(item)
        elif isinstance(item, tuple):
            right, left = values.pop(), values.pop()
            op = item[0]
            values.append((left + right if op == 0 else left - right if op == 1
                           else left * right) % modulus)
            tokens.append(")")
        elif item <= 4:
            d = int(rng.integers(0, modulus))
            digit = _DIGITS[d]
            leaf = ([digit], ["-", digit], ["(", digit, ")"], ["(", "-", digit, ")"])[item - 1]
            tokens.extend(leaf)
            values.append(d if item in (1, 3) else -d % modulus)
        else:
            left = int(rng.integers(1, item - 3))
            right = item - 3 - left
            op = int(rng.integers(0, 3 if mult else 2))
            tokens.append("(")
            work.extend([(op,), right, _OP_TOKENS[op], left])  # popped in reverse order
    return tokens, values[0]


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "neg": 3}


def _apply(task: Task, op: str, values: list[tuple[int, int]], modulus: int) -> tuple[int, int]:
    """Operator ``op`` on the values at the top of the stack (popped): the value ``(a, b)``,
    meaning ``a*x + b``, of the result."""
    if op == "neg":
        a, b = values.pop()
        return -a % modulus, -b % modulus
    (a2, b2), (a1, b1) = values.pop(), values.pop()
    if op == "+":
        return (a1 + a2) % modulus, (b1 + b2) % modulus
    if op == "-":
        return (a1 - a2) % modulus, (b1 - b2) % modulus
    if a1 and a2:
        raise task._bad("x appears on both sides of a product")
    return (a1 * b2 + a2 * b1) % modulus, b1 * b2 % modulus


def evaluate_expression(task: Task, tokens: Sequence[str], allow_mult: bool, allow_x: bool,
                        modulus: int = MODULUS) -> tuple[int, int]:
    """Parse an infix expression (digits, ``x``, ``+ - *``, unary ``-``, brackets) and return
    its value as ``(a, b)`` meaning ``a*x + b`` mod ``modulus``.

    The usual precedence (negation, then ``*``, then ``+ -`` left to right), by the
    shunting-yard algorithm, so deep nesting needs no recursion. Raises the task's
    :class:`InvalidPromptError` on anything malformed, or on ``x`` on both sides of a product.
    """
    values: list[tuple[int, int]] = []
    ops: list[str] = []

    def apply(op: str) -> None:
        values.append(_apply(task, op, values, modulus))

    tokens = list(tokens)
    if not tokens:
        raise task._bad("empty expression")
    operand = True  # whether an operand (or an opening bracket, or a negation) comes next
    for i, t in enumerate(tokens):
        if operand:
            if t in _DIGITS:
                values.append((0, int(t)))
                operand = False
            elif t == "x" and allow_x:
                values.append((1, 0))
                operand = False
            elif t == "(":
                ops.append(t)
            elif t == "-":
                ops.append("neg")
            else:
                raise task._bad(f"token {t!r} at position {i}: expected a digit, ( or -")
        elif t in ("+", "-") or t == "*" and allow_mult:
            while ops and ops[-1] != "(" and _PRECEDENCE[ops[-1]] >= _PRECEDENCE[t]:
                apply(ops.pop())
            ops.append(t)
            operand = True
        elif t == ")":
            while ops and ops[-1] != "(":
                apply(ops.pop())
            if not ops:
                raise task._bad(f"unmatched ) at position {i}")
            ops.pop()
        else:
            raise task._bad(f"token {t!r} at position {i}: expected an operator or )")
    if operand:
        raise task._bad("the expression ends without an operand")
    while ops:
        op = ops.pop()
        if op == "(":
            raise task._bad("unmatched (")
        apply(op)
    return values[0]
