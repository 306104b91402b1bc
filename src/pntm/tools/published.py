"""Published length-generalization numbers that ``pntm report`` compares its results with.

Source: Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR 2023), Table 2:
**per-token accuracy (%) on lengths 41–500, the maximum over 10 seeds and 3 learning rates**,
after training on lengths 1–40. Only rows whose digits were checked against a reproduction of
that table are kept here, digit for digit, for the models listed; nothing is derived or added.
The other rows of Table 2 (Even Pairs, Cycle Navigation, Modular Arithmetic (brackets), Solve
Equation, Missing Duplicate, Binary Addition, Binary Multiplication, Compute Sqrt, Bucket Sort)
were at hand only from a secondary copy, not checked against the paper, so they are left out
rather than guessed. Stack Manipulation was checked but never quoted in this module; it is left
out for the same reason until someone reads it off the paper.

A second attempt (issue 12) to read those rows off the paper added none: the copies of the paper
at hand then (the ICLR 2023 text, the arXiv v3 text and LaTeX, a transcription of the v3 PDF and
the arXiv v1 HTML) could only be read as far as their abstract and introduction, never as far as
Table 2, so no row could be checked digit for digit, and the five rows below were not re-read
either. Whoever adds a row must read it in the ICLR (or arXiv v3) table itself.

Each published task maps to our tasks of two kinds (:func:`definition`):

- ``theirs``: our built-in task made to their definition (the names of issue "The whole Chomsky
  benchmark": ``parity_check``, ``reverse_string``, ...). Digits compare, up to the differences
  in decoding that :mod:`pntm.metrics` documents.
- ``ours``: our own task of a similar name and another definition (our ``modular_arithmetic`` has
  no ``*``, for one): compare verdicts, not digits.

A mapped task that does not exist in :data:`pntm.tasks.TASKS` is simply never matched. Their RNN
and Tape-RNN have no counterpart among this project's models: those numbers are kept for
completeness and never matched.
"""

from __future__ import annotations

from pntm import tasks

SOURCE = ("Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (ICLR 2023), Table 2: "
          "per-token accuracy on lengths 41–500, max over 10 seeds and 3 learning rates")

MODELS: tuple[str, ...] = ("RNN", "LSTM", "Tape-RNN", "Transformer")

# task (their name) -> per-token accuracy (%) of each model in MODELS, in that order
TOKEN_ACCURACY: dict[str, tuple[float, ...]] = {
    "Parity": (100, 100, 100, 52.0),
    "Reverse String": (62.0, 60.9, 100, 62.3),
    "Duplicate String": (50.3, 57.6, 100, 52.8),
    "Modular Arithmetic (simple)": (100, 100, 100, 24.2),
    "Odds First": (51.0, 55.6, 100, 52.8),
}

# their names -> our tasks: (our task, "theirs" | "ours"), see the module docstring
OUR_TASKS: dict[str, tuple[tuple[str, str], ...]] = {
    "Parity": (("parity_check", "theirs"), ("parity", "ours")),
    "Reverse String": (("reverse_string", "theirs"), ("reverse", "ours")),
    "Duplicate String": (("duplicate_string", "theirs"), ("duplicate", "ours")),
    "Modular Arithmetic (simple)": (("modular_arithmetic_simple", "theirs"),
                                    ("modular_arithmetic", "ours")),
    "Odds First": (("odds_first", "theirs"),),
}
OUR_MODEL = {"LSTM": "lstm", "Transformer": "transformer"}

_BY_OUR_TASK = {ours: (theirs, kind) for theirs, pairs in OUR_TASKS.items()
                for ours, kind in pairs}


def token_accuracy(task: str, model: str) -> float | None:
    """The published token accuracy (a fraction, 0–1) of our ``model`` on our ``task``, or None
    when the table has no such pair."""
    their_task = _BY_OUR_TASK.get(task, (None, None))[0]
    their_model = {ours: theirs for theirs, ours in OUR_MODEL.items()}.get(model)
    if their_task is None or their_model is None:
        return None
    return TOKEN_ACCURACY[their_task][MODELS.index(their_model)] / 100


def definition(task: str) -> str | None:
    """``theirs`` (built to their definition: digits compare), ``ours`` (our own variant:
    verdicts only) or None (not in the table)."""
    return _BY_OUR_TASK.get(task, (None, None))[1]


def comparable_pairs() -> list[tuple[str, str]]:
    """Every (our task, our model) pair the published table has a number for, among the tasks
    that exist."""
    return [(task, model) for task in _BY_OUR_TASK if task in tasks.TASKS
            for model in OUR_MODEL.values()]
