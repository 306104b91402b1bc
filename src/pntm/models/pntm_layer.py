"""``PNTMLayer``: one P-NTM layer, its modules, its relax schedule and its parallel mode.

The equations and the design decisions are in ``pntm.models.pntm``. The layer's reads (memory,
address tags, content heads) are in ``pntm.models.pntm_reads``, its recurrent mode (one token
at a time) in ``pntm.models.pntm_recurrent``; both are mixed into ``PNTMLayer`` and share its
weights and formulas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.models.pntm_config import PNTMConfig
from pntm.models.pntm_reads import LayerReads
from pntm.models.pntm_recurrent import RecurrentMode
from pntm.models.state_heads import StateHeads
from pntm.models.work_tape import WorkTape
from pntm.ops import content_addressing, fourier_heads
from pntm.ops.fourier_heads import straight_through
from pntm.ops.hard_heads import hard_cells, is_cells, tape_read
from pntm.ops.memory_chunks import chunked_memory_reads
from pntm.ops.scan import linear_scan

LANDING_TIE = 1e-4  # content landings' scores this close to the largest count as tied


@dataclass
class HeadTrace:
    """What a layer's heads do at every step (``PNTMLayer.trace``), for inputs (B, T, d_model)
    and ``N = num_cells(T)`` memory cells.

    ``weights`` (B, T, 1 + H_read, N): every location head's weighting over the cells, the write
    head first, then the read heads (one-hot when the heads are hard). ``erase`` and ``add``
    (B, T, W): what each token writes where the write head is. ``content`` (B, T, H_content, N):
    the content heads' weightings over the cells (zero on cells not written yet, or whose write
    was overwritten), when the layer has content heads. ``states`` (B, T, H_state, S): the state
    heads' states after each token (distributions, one-hot when hard; values with
    ``state_values``), when the layer has state heads. ``work`` (B, T): the work tape head's
    cell after each token, and ``work_writes`` (B, T) whether its write gate was open, when
    the layer has a work tape."""

    weights: Tensor
    erase: Tensor
    add: Tensor
    content: Tensor | None = None
    states: Tensor | None = None
    work: Tensor | None = None
    work_writes: Tensor | None = None


class PNTMLayer(LayerReads, RecurrentMode, nn.Module):
    """One P-NTM layer: controller, heads, memory, reads (see the module docstring).

    A standalone sequence mixer: ``PNTMLayer(d_model=64, ...)`` (keywords of ``PNTMConfig``) or
    ``PNTMLayer(PNTMConfig(...))`` maps inputs (B, T, d_model) to outputs of the same shape,
    residual included. The layer picks its memory size per input (``num_cells``), follows the
    relax schedule through ``set_training_progress(p)``, and decodes one token at a time with
    ``init_state(batch, max_length, device)`` and ``step(u, state)``; ``trace(u)`` returns
    what its heads do (``HeadTrace``). ``PNTM`` is a stack of these between an embedding and an
    output head."""

    def __init__(self, config: PNTMConfig | None = None, **overrides):
        super().__init__()
        if config is None:
            config = PNTMConfig(**overrides)
        elif overrides:
            config = config.replace(**overrides)
        self.config = config
        read_heads, shift_range = config.read_heads, config.shift_range
        tape_writer, relaxed_heads = config.tape_writer, config.relaxed_heads
        content_heads = config.content_heads
        # writer_reads: the last read head is tied to the writer (it makes the writer's moves)
        self.writer_reads = config.writer_reads
        self.read_before_write = config.read_before_write  # that head reads M_{t-1}[c_t]
        self.read_heads = read_heads + int(self.writer_reads)
        self.heads = self.read_heads + 1  # head 0 writes
        self.shift_range = shift_range
        self.width = config.memory_width
        self.periods = tuple(int(p) for p in config.periods)
        self.address_width = config.address_width
        self.hard = config.hard
        self.scan_method = config.scan_method
        self.initial_memory = config.initial_memory  # every cell's value before any write
        self.tape_writer = tape_writer
        self.memory_path = config.memory_path
        self.head_path = config.head_path
        self.jump_horizon = config.jump_horizon
        self.jump_to = config.jump_to  # origin: cell 0; here: the tape writer's cell now;
        #                               content: the tape cell a head's content query picks
        self.memory_chunk = config.memory_chunk  # tokens per chunk of a soft learned writer's scan
        self.content_heads = content_heads
        self.match_keys = content_heads > 0 and config.content_match == "key"
        self.match_context = content_heads > 0 and config.content_match == "context"
        self.content_codes = config.content_codes  # groups of the discrete codes (0: none)
        self.learned_heads = 1 + read_heads - int(tape_writer)  # heads with their own moves
        # Which learned heads the relax phase softens: a learned write head and the first
        # ``relaxed_heads`` read heads (all of them when None); the rest stay hard throughout.
        # A learned writer under content heads stays hard: they read the cells it has written,
        # which only a hard writer defines.
        relaxed_reads = read_heads if relaxed_heads is None else min(relaxed_heads, read_heads)
        self.content_over_writes = content_heads > 0 and not tape_writer
        mask = [relaxed_reads > 0 and not self.content_over_writes] * int(not tape_writer) + [
            i < relaxed_reads for i in range(read_heads)]
        self.register_buffer("relaxed_mask", torch.tensor(mask), persistent=False)
        self.relaxed_list = tuple(mask)  # the same on the host: tests on it read no tensor back
        # For relaxed_reads_over_writes (a learned writer, head 0): the read heads that stay
        # hard (the one tied to the writer, last, among them) and those that relax, as head
        # indices, and the order that puts their reads back in head order. Fixed by the
        # config, so made once here rather than at every step.
        soft = [] if tape_writer else list(mask[1:]) + [False] * int(self.writer_reads)
        hard_index = [i + 1 for i, relaxes in enumerate(soft) if not relaxes]
        soft_index = [i + 1 for i, relaxes in enumerate(soft) if relaxes]
        both = hard_index + soft_index
        order = sorted(range(len(both)), key=both.__getitem__)
        for name, index in (("hard_read_index", hard_index), ("soft_read_index", soft_index),
                            ("read_order", order)):
            self.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)
        self.relaxed = False    # training only: soft heads (see set_training_progress)
        self.temperature = 1.0  # training only: softmax temperature of relaxed heads
        self.window = config.window  # how many previous inputs the controller sees
        self.window_dropout = config.window_dropout  # training sequences without it
        self._build_modules(config)

    def _build_modules(self, config: PNTMConfig) -> None:
        """The layer's modules and their initial biases (creation order fixes the initial
        weights for a seed: keep it)."""
        d_model, d_ff, memory_width = config.d_model, config.d_ff, config.memory_width
        content_heads, state_heads = config.content_heads, config.state_heads
        n_shift = 2 * self.shift_range + 1
        self.norm = nn.LayerNorm(d_model)
        self.controller = nn.Linear(d_model * (1 + self.window), d_ff)
        self.to_shift = nn.Linear(d_ff, self.learned_heads * n_shift)
        self.to_jump = nn.Linear(d_ff, self.learned_heads)
        self.to_erase = nn.Linear(d_ff, memory_width)
        self.to_add = nn.Linear(d_ff, memory_width)
        self.to_query = (nn.Linear(d_ff, content_heads * memory_width)
                         if content_heads and not self.match_context else None)
        # context match: one projection gives both the key of cell j (from the inputs before j)
        # and the query at t (from the inputs before t), so a repeated context matches exactly
        self.to_context_key = (nn.Linear(d_model * self.window,
                                         content_heads * memory_width, bias=False)
                               if self.match_context else None)
        self.to_strength = nn.Linear(d_ff, content_heads) if content_heads else None
        self.to_key = nn.Linear(d_ff, memory_width) if self.match_keys else None
        reads = self.read_heads + content_heads
        self.machine = (StateHeads(d_ff, state_heads, config.states, memory_width,
                                   config.stay_bias, values=config.state_values,
                                   anneal=config.state_anneal, rank=config.state_rank,
                                   hard_every=config.state_hard_every,
                                   resets=config.state_resets,
                                   hard_forward=config.state_hard_forward)
                        if state_heads else None)
        self.out = nn.Linear(d_ff + reads * (memory_width + self.address_width)
                             + state_heads * memory_width, d_model)
        self.address_patterns = nn.ParameterList(
            [nn.Parameter(torch.randn(p, self.address_width)) for p in self.periods])
        # state_moves: the state heads' reads bias every learned head's shift and jump logits;
        # zero at the start (the base model) and drawing no random numbers, so every other
        # weight of a seed is the same with and without it
        self.state_to_moves = (nn.Parameter(torch.zeros(self.learned_heads * (n_shift + 1),
                                                        state_heads * memory_width))
                               if config.state_moves else None)
        # jump_to content: each learned head's landing query and strength (created last, so
        # every other weight of a seed is the same with and without it)
        # with landing_origin also a logit added to cell 0's score (the origin's prior)
        self.landing_origin = config.landing_origin
        self.landing_size = memory_width + 1 + int(self.landing_origin is not None)
        self.to_landing = (nn.Linear(d_ff, self.learned_heads * self.landing_size)
                           if self.jump_to == "content" else None)

        with torch.no_grad():
            # A learned write head starts as a tape head (one cell forward per token). Read heads
            # start unbiased: their random per-token moves are a diverse pool of counters.
            self.to_shift.bias.zero_()
            if not self.tape_writer:
                start = self.to_shift.bias.view(self.learned_heads, n_shift)[0]
                start[self.shift_range + 1] = config.write_bias
            self.to_jump.bias.fill_(config.jump_bias)
            if content_heads:  # strength β = softplus(bias) = content_strength at the start
                self.to_strength.bias.fill_(math.log(math.expm1(config.content_strength)))
            if self.to_landing is not None:  # the landings' strengths start the same way
                bias = self.to_landing.bias.view(self.learned_heads, -1)
                bias[:, memory_width].fill_(math.log(math.expm1(config.content_strength)))
                if self.landing_origin is not None:
                    bias[:, -1].fill_(self.landing_origin)
        # work_tape: a second memory with its own hard head (created last, so every other
        # weight of a seed is the same with and without it)
        self.work_tape = (WorkTape(d_ff, d_model, memory_width, self.shift_range,
                                   config.write_bias, config.jump_bias,
                                   initial=self.initial_memory, horizon=self.jump_horizon,
                                   chunk=config.memory_chunk)
                          if config.work_tape else None)
        self.work_tape_relax = config.work_tape_relax
        # work_tape_input token: the tape's head has a controller of its own that sees u_t
        # only, not the window (made after the tape, for the same reason)
        self.work_tape_controller = (nn.Linear(d_model, d_ff)
                                     if config.work_tape_input == "token" else None)
        # state_input token: the state heads' maps come from a controller of their own that
        # sees u_t only (made last, for the same reason)
        self.state_controller = (nn.Linear(d_model, d_ff)
                                 if config.state_input == "token" else None)
        # window_scope memory: the moves, the state heads, the work tape and the output come
        # from a controller that sees u_t only (made last, for the same reason)
        self.token_controller = (nn.Linear(d_model, d_ff)
                                 if config.window_scope == "memory" else None)

    # ---- schedule and memory size ----------------------------------------------------------
    def set_training_progress(self, fraction: float, step: int | None = None) -> None:
        """Relax-then-harden schedule of the heads (``relax`` = [a, b], fractions of training).

        Before ``a`` the heads are soft (temperature 1); from ``a`` to ``b`` the temperature falls
        geometrically to ``min_temperature``, so the soft solution must become a sharp one; from
        ``b`` on the heads are hard (straight-through), as at evaluation. ``relax = [0, 0]``
        trains hard from the first step. With ``hold_temperature`` the relaxed heads keep
        ``min_temperature`` after ``b``: the forward pass is hard either way (an argmax and a
        threshold at 1/2 do not depend on it), but their straight-through gradient stays the
        one of the sharp solution just annealed instead of jumping back to temperature 1.
        With ``relax_hard_every = k`` every ``k``-th step of the annealing part (``a`` to
        ``b``) already runs the relaxed heads hard, with the straight-through gradient at the
        current temperature: the weights meet the hard forward pass before the switch at ``b``
        instead of all at once there (RESULTS.md, "A collapse when the relaxed heads harden").
        Call it before each training step with ``step / steps``; evaluation (``eval()``) is
        hard whatever the phase. ``step`` reaches the state heads (``state_hard_every``) and
        ``relax_hard_every``; without it no step is a hard one."""
        cfg = self.config
        start, end = cfg.relax
        relaxed = fraction < end
        ramp = min(1.0, max(0.0, (fraction - start) / max(end - start, 1e-9)))
        held = cfg.min_temperature if cfg.hold_temperature and end > 0 else 1.0
        self.temperature = cfg.min_temperature ** ramp if relaxed else held
        k = cfg.relax_hard_every
        if relaxed and k and step is not None and fraction >= start and step % k == 0:
            relaxed = False  # a hard step inside the anneal, at the current temperature
        self.relaxed = relaxed
        if self.machine is not None:
            self.machine.set_training_progress(fraction, step)

    def num_cells(self, length: int) -> int:
        """Memory cells for ``length`` tokens (``pntm.models.memory_size.memory_cells``)."""
        return self.config.num_cells(length)

    # ---- heads, shared by both modes -------------------------------------------------------
    def relaxing(self) -> bool:
        """Whether some heads run soft now (training, inside the relax phase)."""
        return self.training and self.relaxed and any(self.relaxed_list)

    def work_tape_soft(self) -> bool:
        """Whether the work tape's head runs soft now (``work_tape_relax``, training, inside
        the relax phase); recurrent decoding runs it hard, as evaluation does."""
        return self.work_tape_relax and self.training and self.relaxed

    def uses_positions(self) -> bool:
        """Whether every head is hard now, so heads can be carried as integer positions."""
        return self.hard and self.head_path == "auto" and not self.relaxing()

    def head_choices(self, h: Tensor, steer: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Shift distributions (B, T, H, 2K+1) and jump gates (B, T, H) of every head; with
        ``state_moves``, ``steer`` (B, T, H_state · W) holds the state heads' reads after this
        token, which add ``W_m r_t`` to the learned heads' shift and jump logits."""
        B, T, _ = h.shape
        shift_logits = self.to_shift(h).view(B, T, self.learned_heads, -1)
        jump_logits = self.to_jump(h)
        if steer is not None:
            bias = F.linear(steer, self.state_to_moves).view(B, T, self.learned_heads, -1)
            shift_logits, jump_logits = shift_logits + bias[..., :-1], jump_logits + bias[..., -1]
        relaxing = self.relaxing()
        # Relaxed heads run at the current temperature: soft while relaxing; after the relax
        # phase (with hold_temperature) hard, the temperature shaping only their gradient.
        if self.training and self.temperature != 1.0:
            tau = torch.where(self.relaxed_mask, self.temperature, 1.0)
            shift_logits, jump_logits = shift_logits / tau[:, None], jump_logits / tau
        shift, jump = shift_logits.softmax(-1), torch.sigmoid(jump_logits)
        if self.hard:
            hard_shift = straight_through(shift, F.one_hot(shift.argmax(-1), shift.shape[-1]).to(shift))
            hard_jump = straight_through(jump, (jump > 0.5).to(jump))
            if relaxing:
                hard_shift = torch.where(self.relaxed_mask[:, None], shift, hard_shift)
                hard_jump = torch.where(self.relaxed_mask, jump, hard_jump)
            shift, jump = hard_shift, hard_jump
        if self.tape_writer:
            tape = torch.zeros_like(shift[:, :, :1])
            tape[..., self.shift_range + 1] = 1.0
            shift = torch.cat([tape, shift], dim=2)
            jump = torch.cat([torch.zeros_like(jump[:, :, :1]), jump], dim=2)
        if self.writer_reads:  # the tied read head makes the writer's moves (and passes their
            #                    straight-through gradient back to them)
            shift = torch.cat([shift, shift[:, :, :1]], dim=2)
            jump = torch.cat([jump, jump[:, :, :1]], dim=2)
        return shift, jump

    def controls(self, u: Tensor, previous: Tensor,
                 machine_before: Tensor | None = None) -> dict[str, Tensor]:
        """Controller and head parameters for inputs ``u`` of shape (B, T, d); ``previous``
        (B, T, k, d) holds the ``k = window`` inputs before each one, newest first (zeros
        before the first token). With state heads, ``ctl["states"]`` (B, T, H_state, S) holds
        their states after each token: of the whole sequence by the scan (parallel mode), or
        one step from ``machine_before`` (B, H_state, S) when it is given (recurrent mode).
        They come before the heads' moves, which ``state_moves`` steers with them."""
        token = x = self.norm(u)
        if self.window:
            x = torch.cat([x, self.norm(previous).flatten(-2)], dim=-1)
        h = local = F.gelu(self.controller(x))
        if self.token_controller is not None:  # window_scope memory: the window shapes only
            h = F.gelu(self.token_controller(token))  # what is written and what is sought
        states = None
        if self.machine is not None:
            drive = h if self.state_controller is None else F.gelu(self.state_controller(token))
            states = self.machine_states(drive, machine_before)
        steer = None
        if self.state_to_moves is not None:
            steer = self.machine.read(states).flatten(2)
        shift, jump = self.head_choices(h, steer)
        ctl = {"h": h, "shift": shift, "jump": jump,
               "erase": torch.sigmoid(self.to_erase(local)), "add": torch.tanh(self.to_add(local))}
        if states is not None:
            ctl["states"] = states
        if self.work_tape is not None:
            relaxes = self.training and self.work_tape_relax
            drive = (h if self.work_tape_controller is None
                     else F.gelu(self.work_tape_controller(token)))
            ctl["work"] = self.work_tape.controls(drive, self.temperature if relaxes else 1.0,
                                                  self.work_tape_soft())
        if self.match_context:
            window = self.norm(previous).flatten(-2)  # the inputs before t: (B, T, k*d)
            ctl["key"] = self.to_context_key(window).unflatten(-1, (self.content_heads, self.width))
            ctl["query"] = ctl["key"]
        elif self.content_heads:
            ctl["query"] = self.to_query(local).unflatten(-1, (self.content_heads, self.width))
        if self.content_heads:
            ctl["strength"] = F.softplus(self.to_strength(local))
        if self.match_keys:
            ctl["key"] = self.to_key(local)
        if self.to_landing is not None:
            landing = self.to_landing(local).unflatten(-1, (self.learned_heads,
                                                            self.landing_size))
            ctl["landing_query"] = landing[..., :self.width]
            ctl["landing_strength"] = F.softplus(landing[..., self.width])
            if self.landing_origin is not None:
                ctl["landing_origin"] = landing[..., -1]
        return ctl

    def landing_weights(self, ctl: dict[str, Tensor], rows: Tensor, causal: bool) -> Tensor:
        """``jump_to: content``: where each head's jump would land, a content weighting
        ``w^c_t = softmax_j(β_t cos(q_t, M[j]))`` over the tape ``rows`` (B, J, W) (cells
        ``j ≤ t`` when ``causal``, else all ``J``), with the head's own query ``q_t`` and
        strength ``β_t`` (``pntm.ops.content_addressing``): (B, T, heads, J), zero for the tape
        writer (head 0, which never jumps). Soft for the relaxed heads while relaxing, at their
        temperature; otherwise one-hot, straight-through (with the held temperature's gradient
        for the relaxed heads, as their moves), on the earliest cell whose score is within
        ``1e-4`` of the largest: equal tokens in equal contexts write equal cells, whose
        scores the two modes round differently, so such ties must not be left to the last bit.
        Without gradients and with every head hard: those cells themselves (B, T, heads)
        (long), found a chunk of queries at a time (no (B, T, heads, J) weightings). With
        ``landing_origin`` a per-token logit ``o_t`` (its bias starting at that value) is added
        to cell 0's score: a jump starts by landing on the origin, as ``jump_to: origin``, and
        the query learns where else to land."""
        query, strength = ctl["landing_query"], ctl["landing_strength"]
        origin = ctl.get("landing_origin")
        if self.training and self.temperature != 1.0:
            tau = torch.where(self.relaxed_mask, self.temperature, 1.0)
            strength = strength / tau
            origin = None if origin is None else origin / tau
        if self.hard and not self.relaxing() and not torch.is_grad_enabled():
            cells = content_addressing.nearest_cells(query, strength, rows, causal, LANDING_TIE,
                                                     origin=origin)
            return torch.cat([torch.zeros_like(cells[:, :, :1]), cells], dim=2)
        scores = content_addressing.content_scores(query, strength, rows, causal, origin=origin)
        weights = scores.softmax(-1)
        if self.hard:
            first = content_addressing.first_near_max(scores, LANDING_TIE)
            hard = straight_through(weights, F.one_hot(first, weights.shape[-1]).to(weights))
            weights = (torch.where(self.relaxed_mask[:, None], weights, hard)
                       if self.relaxing() else hard)
        return torch.cat([torch.zeros_like(weights[:, :, :1]), weights], dim=2)

    def location_coefficients(self, ctl: dict[str, Tensor], cells: int,
                              first: int = 0) -> tuple[Tensor, Tensor]:
        """Fourier-domain recurrence ``ŵ_t = a_t ŵ_{t-1} + b_t`` per head: (B, T, H, F) each
        (``pntm.ops.fourier_heads``), for the tokens ``first, first + 1, ...``: with ``jump_to:
        here`` a jump lands on the tape writer's cell of its token, ``t``; with ``content`` on
        the heads' landing weightings ``ctl["landing"]``."""
        device = ctl["shift"].device
        phases = fourier_heads.shift_phases(self.shift_range, cells, device)
        targets = None
        if self.jump_to == "here":
            tokens = torch.arange(first, first + ctl["shift"].shape[1], device=device)
            targets = fourier_heads.cell_phases(tokens, cells)[:, None, :]
        elif self.jump_to == "content":  # the spectrum of each head's landing weighting
            landing = ctl["landing"]
            targets = (fourier_heads.cell_phases(landing, cells) if is_cells(landing) else
                       torch.fft.rfft(F.pad(landing, (0, cells - landing.shape[-1])), dim=-1))
        return fourier_heads.location_coefficients(ctl["shift"], ctl["jump"], phases, targets)

    def memory_coefficients(self, ctl: dict[str, Tensor], write: Tensor) -> tuple[Tensor, Tensor]:
        """``α = 1 - w eᵀ`` and ``β = w aᵀ`` for write weights (B, T, N): (B, T, N, W) each."""
        return fourier_heads.memory_coefficients(write, ctl["erase"], ctl["add"])

    def start_spectrum(self, cells: int, device) -> Tensor:
        """Spectrum of ``w_0 = δ_{-1}`` (``pntm.ops.fourier_heads.start_spectrum``)."""
        return fourier_heads.start_spectrum(cells, device)

    # ---- parallel mode ---------------------------------------------------------------------
    def forward(self, u: Tensor) -> Tensor:
        """Parallel mode: inputs (B, T, d_model) -> outputs (B, T, d_model)."""
        B, T, _ = u.shape
        cells = self.num_cells(T)
        ctl = self.parallel_controls(u)
        if self.carries_positions():
            if self.tape_writer:  # hard heads on the tape: gathers
                contents, tags = tape_read(
                    ctl["shift"][:, :, 1:], ctl["jump"][:, :, 1:], self.tape_values(ctl),
                    self.address_table(u.device), self.initial_memory, cells, self.jump_horizon,
                    self.jump_to == "here", self.read_landing(ctl))
                return self.residual(u, ctl, contents, tags, self.content_source(ctl, cells))
            # hard learned writer: write events, with a read that follows the writer for
            # content heads (the values its writes left)
            readers = torch.arange(1, self.heads, device=u.device)
            contents, tags, written = self.write_events(ctl, cells, readers,
                                                        bool(self.content_heads))
            return self.residual(u, ctl, contents, tags, self.writes_source(written))
        if self.reads_over_writes():  # relax phase, hard learned writer: no B·T·N·W memory
            return self.relaxed_reads_over_writes(u, ctl, cells)
        # A tape writer's place is known (token t on cell t): scan only the learned heads.
        spectra = self.head_spectra(ctl, cells, slice(int(self.tape_writer), None))
        if not self.tape_writer and self.memory_path == "auto":
            # soft heads: the memory scan in chunks, recomputed in backward
            contents, tags = chunked_memory_reads(
                spectra, ctl["erase"], ctl["add"], self.addresses(cells, u.device),
                self.initial_memory, self.memory_chunk, self.scan_method,
                self.read_before_write)
            return self.residual(u, ctl, contents, tags, self.content_source(ctl, cells))
        weights = torch.fft.irfft(spectra, n=cells, dim=-1)  # (B, T, H, N)
        if self.tape_writer:
            if self.memory_path == "auto":
                return self.tape_output(u, ctl, weights)
            weights = self.with_tape_head(weights)
        alpha, beta = self.memory_coefficients(ctl, weights[:, :, 0])
        start = self.blank_memory(cells, u.device).expand(B, -1, -1)
        memory = linear_scan(alpha, beta, start, method=self.scan_method)
        return self.output(u, ctl, weights, memory, self.content_source(ctl, cells), start)

    def parallel_controls(self, u: Tensor) -> dict[str, Tensor]:
        """``controls`` for every token of ``u`` (B, T, d) at once, each seeing the
        ``window`` inputs before it (zeros before the first), and the state heads' states
        (``ctl["states"]``, (B, T, H_state, S)) when the layer has them."""
        T = u.shape[1]
        earlier = [F.pad(u, (0, 0, k, 0))[:, :T] for k in range(1, self.window + 1)]
        previous = torch.stack(earlier, dim=2) if earlier else None
        if previous is not None and self.training and self.window_dropout:
            # window_dropout: whole sequences see no window, as before their first token
            kept = torch.rand(u.shape[0], 1, 1, 1, device=u.device) >= self.window_dropout
            previous = previous * kept
        ctl = self.controls(u, previous)
        if self.to_landing is not None:  # over the tape: cell j holds m_0 + v_j from step j
            ctl["landing"] = self.landing_weights(
                ctl, self.initial_memory + self.tape_values(ctl), True)
        if self.work_tape is not None:  # the work tape's reads, by its write events
            ctl["work_read"] = self.work_tape.read(ctl["work"], self.num_cells(T),
                                                   self.work_tape_soft())
        return ctl

    def read_landing(self, ctl: dict[str, Tensor]) -> Tensor | None:
        """The read heads' landing weightings (B, T, H_read, J) under ``jump_to: content``."""
        return ctl["landing"][:, :, 1:] if "landing" in ctl else None

    def machine_states(self, h: Tensor, before: Tensor | None = None) -> Tensor:
        """State heads' states (B, T, H_state, S) for controller outputs ``h``: by the scan
        over the whole sequence, or one step from ``before`` (B, H_state, S) (recurrent mode,
        hard as at evaluation)."""
        if before is not None:
            return self.machine.step(h, before, self.hard)
        # valued state heads relax through their values (state_anneal), so their maps stay
        # hard (straight-through) in the heads' relax phase; one-hot ones follow the phase
        relaxing = self.relaxing() and self.machine.to_values is None
        return self.machine(h, self.hard and not relaxing,
                            self.temperature if relaxing else 1.0)

    def carries_positions(self) -> bool:
        """Whether the parallel mode carries the heads as integer positions (every head hard,
        ``memory_path: auto``): ``tape_read`` for the tape writer, ``event_read`` for a learned
        one."""
        return self.memory_path == "auto" and self.uses_positions()

    def reads_over_writes(self) -> bool:
        """Whether the parallel mode reads a hard learned writer's writes while some read heads
        are soft (``relaxed_reads_over_writes``): the relax phase under ``memory_path: auto``
        with a hard writer (content heads keep it hard), instead of the chunked memory scan."""
        return (not self.tape_writer and self.memory_path == "auto" and self.hard
                and self.head_path == "auto" and self.relaxing()
                and not self.relaxed_list[0])

    def head_spectra(self, ctl: dict[str, Tensor], cells: int,
                     heads: slice | Tensor = slice(None)) -> Tensor:
        """``ŵ_t`` of the heads ``heads`` (an index along the heads: a slice, or a tensor of
        head numbers) by the Fourier scan (B, T, H_heads, N//2+1)."""
        scanned = {key: ctl[key][:, :, heads] for key in ("shift", "jump", "landing")
                   if key in ctl}
        a, b = self.location_coefficients(scanned, cells)
        start = self.start_spectrum(cells, a.device).expand_as(b[:, 0])
        return linear_scan(a, b, start, method=self.scan_method)

    @staticmethod
    def with_tape_head(weights: Tensor) -> Tensor:
        """The tape writer's weighting (token ``t`` on cell ``t``) in front of the read heads'
        ``weights`` (B, T, H_read, N)."""
        B, T, _, cells = weights.shape
        tape = F.one_hot(torch.arange(T, device=weights.device), cells).to(weights)
        return torch.cat([tape.expand(B, T, cells)[:, :, None], weights], dim=2)

    # ---- what the heads do -----------------------------------------------------------------
    def trace(self, u: Tensor) -> HeadTrace:
        """What the heads do on inputs ``u`` (B, T, d_model), as ``forward`` runs them (the
        same controls; the relax phase in training, hard heads at evaluation): a ``HeadTrace``.

        Heads that ``forward`` carries as integer positions are one-hot on those cells
        (``pntm.ops.hard_heads.head_positions``, as ``tape_read`` and ``event_read`` find
        them), the others come from the Fourier scan, as in ``forward``. Content heads'
        weightings over the written rows (``content_weights``, as ``residual`` reads them) are
        put on the cells the rows were written to. Gradients flow; ``pntm inspect`` calls it
        under ``torch.inference_mode``."""
        cells = self.num_cells(u.shape[1])
        ctl = self.parallel_controls(u)
        if self.carries_positions():
            positions = hard_cells(ctl["shift"], ctl["jump"], cells, self.jump_to == "here",
                                   ctl.get("landing"))
            weights = F.one_hot(positions, cells).to(ctl["add"])
        else:
            spectra = self.head_spectra(ctl, cells, slice(int(self.tape_writer), None))
            weights = torch.fft.irfft(spectra, n=cells, dim=-1)
            if self.tape_writer:
                weights = self.with_tape_head(weights)
        trace = HeadTrace(weights, ctl["erase"], ctl["add"], states=ctl.get("states"))
        if self.work_tape is not None:
            trace.work = hard_cells(ctl["work"]["shift"], ctl["work"]["jump"], cells)
            trace.work_writes = ctl["work"]["erase"].sum(-1) > 0  # σ(·) > 0 where it is open
        if self.content_heads:
            source = self.content_source(ctl, cells)
            content = self.content_weights(ctl, source.keys, source.causal, source.allowed)
            # row j was written at step j, on the cell of the write head's weighting then
            trace.content = torch.einsum("bthj,bjn->bthn", content, weights[:, :, 0])
        return trace
