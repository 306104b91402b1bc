"""The values each model's ``model_config`` keys may take, declared once per model.

``SequenceModel.resolve_config`` checks every key against its rule, so a value that would build
nothing (``read_heads: 0``), build a model that silently learns nothing (``d_model: 0``), or
poison training (``initial_memory: .nan``) is one ``ConfigError`` naming the key, whether it
comes from the command line, a ``--config`` file, a run's ``config.yaml`` or the Python API.

Decisions, for the values the types alone allow:

* sizes (widths, layers, heads, cells) are integers >= 1; a model without read heads or with a
  zero-width layer is refused rather than trained to 0%. The exceptions are counts whose zero
  means "none of this feature": P-NTM ``content_heads`` and ``address_width``, the NTM's
  ``shift_range`` (0: content addressing only).
* P-NTM ``periods: []`` is a valid model: cells without address tags (the binary-addition
  config uses it). Each period is an integer >= 1, and their least common multiple (the memory
  grows in multiples of it) at most ``MAX_CELL_QUANTUM``.
* ``relax = [a, b]`` needs ``0 <= a <= b <= 1`` (fractions of training); ``min_temperature``
  is in (0, 1] (the relaxed heads anneal from temperature 1 down to it; 0 divides by zero).
* every float is finite (biases, initial memory, strengths).
* ``scan_method`` is ``auto`` or one of ``pntm.ops.scan.METHODS``.

Each rule is a small callable returning None when the value is fine, else what it must be.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from pntm.errors import ConfigError
from pntm.models.memory_size import memory_cells

Rule = Callable[[Any], "str | None"]

#: largest ``lcm(periods)`` of a P-NTM (its memory is a multiple of it, per sequence).
MAX_CELL_QUANTUM = 4096


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(low: int = 1, nullable: bool = False) -> Rule:
    def rule(value):
        if value is None and nullable:
            return None
        if _is_int(value) and value >= low:
            return None
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        return wanted + (" or null" if nullable else "")
    return rule


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False,
           high_open: bool = False) -> Rule:
    """A finite number within the bounds (open where asked)."""
    def rule(value):
        ok = _is_number(value) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if ok:
            return None
        if math.isinf(low) and math.isinf(high):
            return "a finite number"
        if math.isinf(high):
            return f"a finite number {'>' if low_open else '>='} {low:g}"
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        return f"in {lo}{low:g}, {high:g}{hi}"
    return rule


def boolean(value) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def choice(*options: str) -> Rule:
    def rule(value):
        return None if value in options else "one of " + ", ".join(options)
    return rule


def periods(value) -> str | None:
    if not isinstance(value, list) or not all(_is_int(p) and p >= 1 for p in value):
        return "a list of integers >= 1 (or [] for cells without address tags)"
    if value and math.lcm(*value) > MAX_CELL_QUANTUM:
        return f"periods whose least common multiple is at most {MAX_CELL_QUANTUM}"
    return None


def fraction_pair(value) -> str | None:
    ok = (isinstance(value, list) and len(value) == 2
          and all(_is_number(x) and math.isfinite(x) for x in value)
          and 0 <= value[0] <= value[1] <= 1)
    return None if ok else "[a, b] with 0 <= a <= b <= 1"


def scan_method(value) -> str | None:
    from pntm.ops.scan import METHODS  # imported late: pntm.ops.scan imports torch's heavier parts
    return choice("auto", *METHODS)(value)


POSITIVE = integer(1)
FINITE = number()

MODEL_RULES: dict[str, dict[str, Rule]] = {
    "lstm": {"d_model": POSITIVE, "num_layers": POSITIVE},
    "transformer": {"d_model": POSITIVE, "layers": POSITIVE, "heads": POSITIVE,
                    "d_ff": POSITIVE, "dropout": number(0, 1, high_open=True),
                    "positional": choice("sinusoidal", "rotary", "none", "randomized"),
                    "max_position": POSITIVE},
    "ntm": {"controller_size": POSITIVE, "embed_dim": POSITIVE, "memory_cells": POSITIVE,
            "memory_width": POSITIVE, "read_heads": POSITIVE, "shift_range": integer(0),
            "init_window": POSITIVE, "init_peak": FINITE, "initial_memory": FINITE},
    "mamba": {"d_model": POSITIVE, "layers": POSITIVE, "d_state": POSITIVE, "expand": POSITIVE,
              "d_conv": POSITIVE, "negative_eigenvalues": boolean, "parallel_scan": boolean},
    "deltanet": {"d_model": POSITIVE, "layers": POSITIVE, "heads": POSITIVE, "d_ff": POSITIVE,
                 "conv_size": POSITIVE, "chunk_size": POSITIVE, "negative_eigenvalues": boolean},
    "slstm": {"d_model": POSITIVE, "layers": POSITIVE, "heads": POSITIVE, "conv_size": POSITIVE,
              "proj_factor": number(0, low_open=True)},
    "pntm": {"d_model": POSITIVE, "d_ff": POSITIVE, "layers": POSITIVE,
             "memory_width": POSITIVE, "read_heads": POSITIVE, "shift_range": POSITIVE,
             "periods": periods, "address_width": integer(0), "initial_memory": FINITE,
             "min_cells": POSITIVE, "hard": boolean, "relax": fraction_pair,
             "min_temperature": number(0, 1, low_open=True), "hold_temperature": boolean,
             "relax_hard_every": integer(0),
             "relaxed_heads": integer(0, nullable=True), "window": integer(0),
             "window_dropout": number(0, 1, high_open=True),
             "window_scope": choice("all", "memory"),
             "memory_path": choice("auto", "scan"),
             "head_path": choice("auto", "fourier"), "jump_horizon": integer(1, nullable=True),
             "content_heads": integer(0), "content_match": choice("content", "key", "context"),
             "content_strength": number(0, low_open=True), "content_codes": integer(0),
             "write_bias": FINITE,
             "tape_writer": boolean, "writer_reads": boolean, "read_before_write": boolean,
             "jump_bias": FINITE,
             "jump_to": choice("origin", "here", "content"),
             "landing_origin": lambda v: None if v is None else FINITE(v),
             "scan_method": scan_method, "work_tape": boolean,
             "work_tape_relax": boolean, "work_tape_input": choice("controller", "token"),
             "state_input": choice("controller", "token"),
             "state_heads": integer(0), "states": POSITIVE, "stay_bias": FINITE,
             "state_rank": integer(0), "state_values": boolean, "state_moves": boolean,
             "state_hard_every": integer(0), "state_resets": boolean,
             "state_hard_forward": boolean,
             "state_anneal": lambda v: None if v is None else fraction_pair(v),
             "memory_chunk": POSITIVE},
}


def check_model_config(model: str, config: dict) -> None:
    """Raise ConfigError naming the first key of ``config`` whose value breaks its rule."""
    for key, rule in MODEL_RULES.get(model, {}).items():
        if key not in config:
            continue
        wanted = rule(config[key])
        if wanted is not None:
            raise ConfigError(f"{model} model_config.{key} must be {wanted}, "
                              f"got {config[key]!r}")


# --------------------------------------------------------------------------- memory estimate

def activation_floats(model: str, config: dict, length: int, vocab_size: int) -> int:
    """Roughly how many floats one training sequence of ``length`` tokens keeps for the backward
    pass: the large tensors only (no constant factors for temporaries), so the estimate errs low
    and refuses only settings that cannot fit. The terms that grow with ``length`` squared (a
    memory of about ``length`` cells per token, attention) are what rule out long sequences."""
    S, V = length, vocab_size
    if model == "lstm":
        per_token = 10 * config["d_model"] * config["num_layers"]
    elif model == "transformer":
        per_token = config["layers"] * (12 * config["d_model"] + 2 * config["d_ff"]
                                        + config["heads"] * S)
    elif model == "ntm":
        cells = max(config["memory_cells"], S)
        per_token = (3 * cells * config["memory_width"] + 6 * (config["read_heads"] + 1) * cells
                     + 10 * config["controller_size"])
    elif model == "pntm":
        per_token = config["layers"] * _pntm_layer_floats(config, S)
    else:
        return 0
    return S * (per_token + 2 * V)


def _pntm_layer_floats(config: dict, S: int) -> int:
    """Per token and layer: controller, plus the memory's and the head spectra's terms for the
    paths the layer takes (see pntm.models.pntm_layer.PNTMLayer.parallel):

    * ``memory_path: scan``: every memory state, ``3 N W`` per token;
    * a learned writer that is soft in some phase (``hard: false``, or relaxed with no content
      head keeping it hard): the chunked scan keeps one ``N x W`` state per chunk of
      ``memory_chunk`` tokens and recomputes one chunk at a time in backward (``3 N W`` per
      token of that chunk), so ``N W (1 / chunk + 3 chunk / S)`` per token;
    * a learned writer that stays hard: its relax phase reads the writes by attention, a score
      per earlier token and soft read head (``read_heads x S``); its hard phase is ``O(W)``;
    * the tape writer: nothing of size ``N W``."""
    cells = memory_cells(S, config["shift_range"], config["periods"], config["min_cells"])
    width = config["memory_width"]
    floats = 4 * config["d_model"] + 2 * config["d_ff"] + config["content_heads"] * S
    if config.get("work_tape"):  # its writes, reads and their adjoints: O(W) per token
        floats += 6 * width
    if config["memory_path"] == "scan":
        floats += 3 * cells * width
    elif not config["tape_writer"]:
        relaxes = config["relax"][1] > 0 and config["relaxed_heads"] != 0
        soft_writer = not config["hard"] or (relaxes and config["content_heads"] == 0)
        if soft_writer:
            chunk = min(config["memory_chunk"], S)
            floats += math.ceil(cells * width / chunk) + math.ceil(3 * cells * width * chunk / S)
        elif relaxes:
            floats += config["read_heads"] * S
    integer_heads = (config["tape_writer"] and config["hard"] and config["head_path"] == "auto"
                     and config["relax"][1] == 0)
    if not integer_heads:
        floats += 3 * (config["read_heads"] + 1 + int(config["writer_reads"])) * cells
    return floats
