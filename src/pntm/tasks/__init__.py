"""Benchmark tasks: generators, vocabulary, batching and length specs.

The package: :mod:`~pntm.tasks.base` (:class:`Task`, examples, length specs),
:mod:`~pntm.tasks.vocab` (the vocabulary), :mod:`~pntm.tasks.batching` (the autoregressive
format and its batches), :mod:`~pntm.tasks.seeds` (the example streams and their seeds),
:mod:`~pntm.tasks.ours` (the project's own tasks), and one module per Chomsky level for the tasks
of Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR 2023):
:mod:`~pntm.tasks.regular`, :mod:`~pntm.tasks.context_free`, :mod:`~pntm.tasks.context_sensitive`.
Everything is importable from ``pntm.tasks``.

Every task is ``BOS prompt SEP answer EOS`` (see :mod:`pntm.tasks.batching`). Its *length* ``n`` is
what the table says it counts; a length the task cannot produce (below ``min``, or above
``associative_recall``'s 512) raises :class:`LengthSpecError`. Levels: R regular, DCF
deterministic context-free, CS context-sensitive (``pntm tasks`` lists them).

===========================  =====  ==========================  ==========  ===========  ===
task                         level  the length n counts         prompt      answer       min
===========================  =====  ==========================  ==========  ===========  ===
*the project's own*
parity                       R      bits                        n           1            1
cycle_navigation (both)      R      actions (0 stay, 1 +1,      n           1            1
                                    2 -1)
modular_arithmetic           R      digits 0-4 (with + -)       2n - 1      1            1
copy                         CS     bits                        n           n            1
reverse                      DCF    bits                        n           n            1
duplicate                    CS     bits                        n           2n           1
associative_recall           CS     (3-letter key, digit)       4n + 4      1            1
                                    pairs, n <= 512
binary_addition              CS     bits of each operand        2n + 1      n + 1        1
binary_multiplication        CS     bits of each operand        2n + 1      2n           1
*the Chomsky suite*
even_pairs                   R      bits                        n           1            1
modular_arithmetic_simple    R      tokens (d op d ...)         n, or n-1   1            1
                                                                if n even
parity_check                 R      bits (= parity)             n           1            1
stack_manipulation           DCF    tokens (bits, actions)      n           0 to n       1
reverse_string               DCF    bits (= reverse)            n           n            1
modular_arithmetic_brackets  DCF    tokens                      n           1            1
solve_equation               DCF    tokens (E = d)              n           1            3
duplicate_string             CS     bits (= duplicate)          n           2n           1
missing_duplicate_string     CS     tokens (bits, _ and #)      n           1            2
odds_first                   CS     bits                        n           n            1
binary_addition_dm           CS     tokens (a + b)              n           2 to n - 1   3
binary_multiplication_dm     CS     tokens (a * b)              n           1 to n - 1   3
compute_sqrt                 CS     bits (MSB first)            n           ceil(n/2)    1
bucket_sort                  CS     digits 0-4                  n           n            1
===========================  =====  ==========================  ==========  ===========  ===

The project's own numbers are least significant bit first, uniform random, leading zeros
allowed. The suite's tasks follow the paper's definitions; each class docstring says how, and
what was decided where the paper's output format (one-hot classes, padded outputs with a
termination token) meets ours (an ``EOS`` ends every answer, so variable-length answers need no
padding). Names: the paper's name is ours, except where one of the project's own tasks already
had it with another definition: the paper's Binary Addition and Binary Multiplication are
``binary_addition_dm`` and ``binary_multiplication_dm``. Its Cycle Navigation is the same task
as ours (one entry); its Parity Check, Reverse String and Duplicate String have the definitions
of ``parity``, ``reverse`` and ``duplicate`` and exist under the paper's names too (own
evaluation sets). :data:`CHOMSKY_TASKS` lists the 15 in the paper's order, :data:`PAPER_NAMES`
maps each to the key of the paper's code.
"""

from __future__ import annotations

from pntm.tasks import base as _base, batching as _batching, seeds as _seeds, vocab as _vocab
from pntm.tasks.base import *  # noqa: F401,F403 (the public API: each module's __all__)
from pntm.tasks.base import Task, UnknownTaskError
from pntm.tasks.batching import *  # noqa: F401,F403
from pntm.tasks.seeds import *  # noqa: F401,F403
from pntm.tasks.seeds import (  # used by the seed streams of other modules
    _EVAL_TAG, _TRAIN_TAG, _check_seed, _task_tag,
)
from pntm.tasks.vocab import *  # noqa: F401,F403
from pntm.tasks.context_free import (
    ModularArithmeticBrackets, ReverseString, SolveEquation, StackManipulation,
)
from pntm.tasks.context_sensitive import (
    BinaryAdditionDM, BinaryMultiplicationDM, BucketSort, ComputeSqrt, DuplicateString,
    MissingDuplicateString, OddsFirst,
)
from pntm.tasks.ours import (
    AssociativeRecall, BinaryAddition, BinaryMultiplication, Copy, CycleNavigation, Duplicate,
    ModularArithmetic, Parity, Reverse,
)
from pntm.tasks.regular import EvenPairs, ModularArithmeticSimple, ParityCheck

__all__ = [*_vocab.__all__, *_base.__all__, *_batching.__all__, *_seeds.__all__] + [
    "TASKS", "REQUIRED_TASKS", "CHOMSKY_TASKS", "PAPER_NAMES", "get_task",
    "Parity", "CycleNavigation", "ModularArithmetic", "Copy", "Reverse", "Duplicate",
    "AssociativeRecall", "BinaryAddition", "BinaryMultiplication",
    "EvenPairs", "ModularArithmeticSimple", "ParityCheck",
    "StackManipulation", "ReverseString", "ModularArithmeticBrackets", "SolveEquation",
    "DuplicateString", "MissingDuplicateString", "OddsFirst", "BinaryAdditionDM",
    "BinaryMultiplicationDM", "ComputeSqrt", "BucketSort",
]

#: every built-in task by name: the project's own first (in their historical order: the
#: results grid and ``pntm report`` follow it), then the suite's, in the paper's order
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Parity(), CycleNavigation(), ModularArithmetic(),
        Copy(), Reverse(), Duplicate(), AssociativeRecall(),
        BinaryAddition(), BinaryMultiplication(),
        EvenPairs(), ModularArithmeticSimple(), ParityCheck(),
        StackManipulation(), ReverseString(), ModularArithmeticBrackets(), SolveEquation(),
        DuplicateString(), MissingDuplicateString(), OddsFirst(),
        BinaryAdditionDM(), BinaryMultiplicationDM(), ComputeSqrt(), BucketSort(),
    )
}

#: the benchmark's required set (``pntm sweep --tasks required``)
REQUIRED_TASKS: tuple[str, ...] = (
    "parity", "cycle_navigation", "modular_arithmetic",
    "copy", "reverse", "duplicate", "associative_recall",
    "binary_addition",
)

#: the 15 tasks of Delétang et al. 2023, in the paper's order (regular, DCF, CS)
CHOMSKY_TASKS: tuple[str, ...] = (
    "even_pairs", "modular_arithmetic_simple", "parity_check", "cycle_navigation",
    "stack_manipulation", "reverse_string", "modular_arithmetic_brackets", "solve_equation",
    "duplicate_string", "missing_duplicate_string", "odds_first",
    "binary_addition_dm", "binary_multiplication_dm", "compute_sqrt", "bucket_sort",
)

#: our name -> the task's key in the paper's code (``experiments/constants.py``)
PAPER_NAMES: dict[str, str] = {
    **{name: name for name in CHOMSKY_TASKS},
    "modular_arithmetic_simple": "modular_arithmetic",
    "binary_addition_dm": "binary_addition",
    "binary_multiplication_dm": "binary_multiplication",
}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(
            f"unknown task {name!r}; choose one of: {', '.join(TASKS)}"
        ) from None
