"""The automaton of modular_arithmetic_simple, shared by the analysis scripts beside it.

Evaluated left to right with the usual precedence, an expression ``d0 o1 d1 o2 d2 ...`` needs
the value so far and the signed last term: ``+ d`` adds ``d`` and starts the term at ``d``,
``- d`` subtracts it and starts it at ``-d``, ``* d`` replaces the term ``t`` by ``t d`` (so the
value gains ``t (d - 1)``). An analysis aid, not part of the package."""

import collections
import math

OPS = "+-*"


def walk(digits, ops, task):
    """The tokens of the expression (digits, ops: ints, ops[k] joining digits k and k + 1) and,
    after each digit, (value mod 5, term mod 5, factors in the term); checked against ``task``'s
    own answer."""
    value = term = int(digits[0])
    factors = 1
    tokens, states = [str(digits[0])], [(value % 5, term % 5, factors)]
    for o, d in zip(ops, digits[1:]):
        o, d = int(o), int(d)
        if o == 0: value, term, factors = value + d, d, 1
        elif o == 1: value, term, factors = value - d, -d, 1
        else: value, term, factors = value - term + term * d, term * d, factors + 1
        tokens += [OPS[o], str(d)]
        states.append((value % 5, term % 5, factors))
    assert task.solve(tokens) == (str(states[-1][0]),)  # the task's own definition agrees
    return tokens, states


def conditional_entropy(pairs):
    """H(Y | X) in bits, plug-in, from (x, y) pairs."""
    by_x = collections.defaultdict(collections.Counter)
    for x, y in pairs:
        by_x[x][y] += 1
    total = len(pairs)
    return sum(sum(c.values()) / total * -sum(v / sum(c.values()) * math.log2(v / sum(c.values()))
                                              for v in c.values()) for c in by_x.values())
