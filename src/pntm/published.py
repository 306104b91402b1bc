"""Published length-generalization numbers that ``pntm report`` compares its results with.

Source: Delétang et al. 2023, "Neural Networks and the Chomsky Hierarchy" (ICLR 2023), as quoted
in the project's benchmark design (``shared/design/benchmark.md``, "Reference numbers"):
**per-token accuracy (%) on lengths 41–500, best of 10 seeds**, after training on lengths 1–40.
Only the numbers quoted there are kept here, digit for digit; nothing is derived or added.

Their tasks differ in detail from ours (their modular arithmetic includes ``*``, for one), so
the comparison is in spirit, not digit for digit. Their RNN and Tape-RNN have no counterpart
among this project's models, and their Odds First none among its tasks: those numbers are kept
for completeness and never matched.
"""

from __future__ import annotations

SOURCE = ("Delétang et al. 2023, Neural Networks and the Chomsky Hierarchy (ICLR 2023): "
          "per-token accuracy on lengths 41–500, best of 10 seeds")

MODELS: tuple[str, ...] = ("RNN", "LSTM", "Tape-RNN", "Transformer")

# task (their name) -> per-token accuracy (%) of each model in MODELS, in that order
TOKEN_ACCURACY: dict[str, tuple[float, ...]] = {
    "Parity": (100, 100, 100, 52.0),
    "Reverse String": (62.0, 60.9, 100, 62.3),
    "Duplicate String": (50.3, 57.6, 100, 52.8),
    "Modular Arithmetic (simple)": (100, 100, 100, 24.2),
    "Odds First": (51.0, 55.6, 100, 52.8),
}

# their names -> ours (only those with a counterpart)
OUR_TASK = {"Parity": "parity", "Reverse String": "reverse", "Duplicate String": "duplicate",
            "Modular Arithmetic (simple)": "modular_arithmetic"}
OUR_MODEL = {"LSTM": "lstm", "Transformer": "transformer"}


def token_accuracy(task: str, model: str) -> float | None:
    """The published token accuracy (a fraction, 0–1) of our ``model`` on our ``task``, or None
    when the table has no such pair."""
    their_task = {ours: theirs for theirs, ours in OUR_TASK.items()}.get(task)
    their_model = {ours: theirs for theirs, ours in OUR_MODEL.items()}.get(model)
    if their_task is None or their_model is None:
        return None
    return TOKEN_ACCURACY[their_task][MODELS.index(their_model)] / 100


def comparable_pairs() -> list[tuple[str, str]]:
    """Every (our task, our model) pair the published table has a number for."""
    return [(task, model) for task in OUR_TASK.values() for model in OUR_MODEL.values()]
