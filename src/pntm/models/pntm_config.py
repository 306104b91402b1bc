"""``PNTMConfig``: every hyper-parameter of a P-NTM layer and model, its default, and its checks.

One frozen dataclass holds P-NTM's defaults and validates them in one place: the value rules of
``pntm.models.rules`` (one per key, shared with the command line's messages) and the checks
that relate keys to each other. ``PNTM.default_config()`` is this dataclass's fields as a dict,
so the run-config machinery (``configs/*.yaml``, ``--set``, ``resolve_config``) is unchanged.

Two layers of defaults, on purpose:

* **the dataclass** holds the library defaults: what ``PNTMLayer(d_model=64)`` or
  ``PNTM(vocab, sep)`` builds when nothing is said. They are the historical model defaults that
  the tests and the benchmarks were written against (two layers, two read heads, a learned
  write head), so changing them would change what those measure;
* **``configs/pntm.yaml``** is the command line's one *run* config, layered over the dataclass
  by ``pntm.config`` (then ``--config``, ``--set``) and the same for every task: two layers, six
  read heads and a content head over the tape, state heads, no address tags (its comments and
  ``pntm.models.pntm`` say why). Every run writes the full resolved ``model_config`` into its
  ``config.yaml``, so a run never depends on either layer's defaults later.

``PNTMConfig.run_default()`` gives the second as a dataclass too, for a library user who wants
the trained configuration rather than the library default.

The memory size is not a hyper-parameter: ``memory_size.memory_cells`` (the one formula the model,
its layers and the memory estimate of ``pntm.models.rules`` share) picks it per input length.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pntm.config_files import package_config
from pntm.errors import ConfigError
from pntm.models.memory_size import memory_cells
from pntm.models.rules import check_model_config


@dataclass(frozen=True)
class PNTMConfig:
    """P-NTM hyper-parameters (equations and decisions: ``pntm.models.pntm``).

    Lists given for ``periods`` and ``relax`` are kept as tuples (the config is immutable);
    ``as_dict()`` gives them back as lists, the form of a YAML run config."""

    d_model: int = 64            # residual stream width
    d_ff: int = 128              # controller hidden width
    layers: int = 2              # layers of a PNTM model (a PNTMLayer ignores it)
    memory_width: int = 32       # W: numbers per memory cell
    read_heads: int = 2
    shift_range: int = 1         # K: a head moves by -K..K cells per token
    periods: tuple[int, ...] = (2, 3, 4, 5)
    address_width: int = 16      # read-only periodic address tag per cell
    initial_memory: float = 1e-6
    min_cells: int = 60
    hard: bool = True            # straight-through hard shifts and jumps
    relax: tuple[float, float] = (0.0, 0.0)  # soft-then-anneal phase, fractions of training
    min_temperature: float = 0.1
    hold_temperature: bool = False  # after the relax phase, keep min_temperature in the
    #                                 straight-through gradient of the relaxed heads
    relaxed_heads: int | None = None  # read heads (per layer) the relax phase softens; None: all
    relax_hard_every: int = 0    # k > 0: while the temperature falls (relax[0] to relax[1]),
    #                              every k-th step runs the relaxed heads hard (0: off)
    window: int = 0              # how many previous inputs the controller sees (0: none)
    window_dropout: float = 0.0  # the share of training sequences whose window is hidden
    #                              (zeros); never at evaluation or in recurrent mode
    window_scope: str = "all"    # what the window feeds: all of the controller's outputs, or
    #                              memory: only what is written (erase/add) and what content
    #                              addressing seeks (queries, landings); moves, state heads,
    #                              work tape and output then come from u_t alone
    memory_path: str = "auto"    # auto: closed-form tape memory when tape_writer, write events
    #                              for a hard learned writer, chunked scan for a soft one;
    #                              scan: always the whole memory scan (the reference)
    memory_chunk: int = 64       # tokens per chunk of a soft learned writer's memory scan
    head_path: str = "auto"      # auto: hard heads as integer positions; fourier: always the scan
    jump_horizon: int | None = 16  # steps the hard jump gate's gradient looks ahead; None: all
    content_heads: int = 0       # content-addressed read heads per layer (needs tape_writer)
    content_match: str = "content"  # content: compare queries with the cells (as the NTM);
    #                                 key: with a key written with each cell;
    #                                 context: cells whose preceding inputs match
    content_strength: float = 0.69  # initial strength β of content heads (softplus(0))
    content_codes: int = 0       # g > 0: match discrete codes, one per group of W/g numbers
    state_heads: int = 0         # finite-state heads per layer (maps on `states` states)
    states: int = 16             # S: states of each state head
    stay_bias: float = 2.0       # initial logit of a state head keeping its state
    state_rank: int = 0          # 0: full S x S map logits; r: a query of r numbers per state
    #                              against a learned key per state (state_heads.py)
    state_values: bool = False   # state heads carry values (decay, input), not a one-hot state
    state_anneal: tuple[float, float] | None = None  # valued states' weight 1 -> 0 over [a, b]
    state_hard_every: int = 0    # k > 0: while values are on, every k-th step trains without
    #                              them (the exact automaton); 0: never (state_heads.py)
    state_resets: bool = False   # every token may also send all states to one (a reset)
    state_hard_forward: bool = False  # valued heads run the exact automaton forward; the values
    #                                   give only the gradient (state_heads.py)
    state_moves: bool = False    # the state heads' reads steer the heads' shifts and jumps
    write_bias: float = 2.0      # initial logit of the write head's +1 shift
    tape_writer: bool = False    # write head fixed to one cell forward per token
    writer_reads: bool = False   # one more read head, on the write head's cell (after its
    #                              write), as a Turing machine's head reads where it writes
    read_before_write: bool = False  # writer_reads: that head reads the cell before this
    #                                  token's write, M_{t-1}[c_t] (a Turing machine reads, then
    #                                  writes); learned writer only
    jump_bias: float = -2.0
    jump_to: str = "origin"      # where a jump lands: origin (cell 0), here (the tape writer's
    #                              cell of this token) or content (the tape cell its own
    #                              content query picks, as the NTM's content addressing);
    #                              here and content: tape writer only
    landing_origin: float | None = None  # jump_to content: the initial logit added to cell
    #                                      0's score (jumps start on the origin); None: none
    work_tape: bool = False      # a second memory per layer, written and read by one learned
    #                              hard head (models/work_tape.py); the read heads never see it
    work_tape_relax: bool = False  # the work tape's head follows the relax schedule: soft
    #                                (the memory scan) until relax[1], then hard
    work_tape_input: str = "controller"  # what drives the work tape's head: the layer's
    #                                      controller output h_t (it sees the window), or
    #                                      token: a controller of its own over u_t alone
    state_input: str = "controller"  # what drives the state heads' maps: the layer's
    #                                  controller output h_t (it sees the window), or token:
    #                                  a controller of their own over u_t alone
    scan_method: str = "auto"

    def __post_init__(self):
        for name in ("periods", "relax", "state_anneal"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    def as_dict(self) -> dict[str, Any]:
        """The fields as a ``model_config`` mapping (tuples as lists), in declaration order."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes) -> "PNTMConfig":
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def run_default(cls) -> "PNTMConfig":
        """The command line's default P-NTM run config (``configs/pntm.yaml``'s model_config
        over the dataclass defaults): the base configuration of the trained grid."""
        return cls(**package_config("pntm").get("model_config", {}))

    def validate(self) -> None:
        """Raise ConfigError for the first value outside its rule or keys that do not fit
        together; the messages name the ``model_config`` key, as the command line shows them."""
        cfg = self.as_dict()
        check_model_config("pntm", cfg)
        if cfg["content_heads"] and not cfg["tape_writer"] and not (
                cfg["hard"] and cfg["content_match"] == "content"):
            raise ConfigError("pntm model_config.content_heads with a learned write head "
                              "(tape_writer: false) need hard: true and content_match: content "
                              "(they read the cells a hard writer has written)")
        if cfg["jump_to"] != "origin" and not cfg["tape_writer"]:
            raise ConfigError(f"pntm model_config.jump_to '{cfg['jump_to']}' needs tape_writer: "
                              "true (a learned writer's paths jump to the origin only: set "
                              "jump_to: origin)")
        if cfg["read_before_write"] and (cfg["tape_writer"] or not cfg["writer_reads"]):
            raise ConfigError("pntm model_config.read_before_write needs writer_reads: true and "
                              "tape_writer: false (it is how the head tied to a learned writer "
                              "reads)")
        if cfg["landing_origin"] is not None and cfg["jump_to"] != "content":
            raise ConfigError("pntm model_config.landing_origin needs jump_to: content (it is "
                              "a prior of the content landing)")
        if cfg["work_tape_relax"] and not cfg["work_tape"]:
            raise ConfigError("pntm model_config.work_tape_relax needs work_tape: true")
        if cfg["work_tape_input"] != "controller" and not cfg["work_tape"]:
            raise ConfigError("pntm model_config.work_tape_input needs work_tape: true")
        if cfg["state_input"] != "controller" and not cfg["state_heads"]:
            raise ConfigError("pntm model_config.state_input needs state_heads >= 1")
        if cfg["state_moves"] and not cfg["state_heads"]:
            raise ConfigError("pntm model_config.state_moves needs state_heads >= 1 (their "
                              "states steer the heads' moves)")
        if cfg["content_codes"] and cfg["memory_width"] % cfg["content_codes"]:
            raise ConfigError(f"pntm model_config.content_codes {cfg['content_codes']} must "
                              f"divide memory_width {cfg['memory_width']} (groups of equal size)")
        if cfg["window_scope"] != "all" and not cfg["window"]:
            raise ConfigError("pntm model_config.window_scope needs a window (window >= 1)")
        if cfg["window_dropout"] and not cfg["window"]:
            raise ConfigError("pntm model_config.window_dropout needs a window (window >= 1)")
        if cfg["content_match"] == "context" and cfg["content_heads"] and not cfg["window"]:
            raise ConfigError("pntm model_config.content_match 'context' needs a window (the "
                              "context is the window of inputs before each token)")

    # ---- derived values ----------------------------------------------------------------------
    @property
    def learned_writing(self) -> bool:
        """Whether some memory is written by a learned head (``tape_writer: false``, or a work
        tape): its hard steps run ``pntm.ops.write_events``, whose CPU kernels serve it."""
        return not self.tape_writer or self.work_tape

    def num_cells(self, length: int) -> int:
        """Memory cells for ``length`` tokens (``memory_cells``)."""
        return memory_cells(length, self.shift_range, self.periods, self.min_cells)
