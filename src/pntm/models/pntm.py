"""P-NTM: the Parallelizable Neural Turing Machine.

A stack of layers. Each layer reads its inputs ``u_1..u_T`` (d_model each) and runs:

1. **Feed-forward controller** (no recurrent state, no read feedback)::

       h_t = GELU(W_c LayerNorm(u_t))                       (d_ff)

   With ``token_shift`` the controller sees a short causal window instead,
   ``[LN(u_t), LN(u_{t-1}), …, LN(u_{t-k})]`` with ``k = shift_tokens`` (zeros before the first
   token), like the short convolutions in front of recent linear RNNs; still no state.

2. **Head locations as an affine scan.** Every head (one write head, ``read_heads`` read heads)
   keeps a weighting ``w_t`` over ``N`` memory cells, starting on cell -1::

       w_t = s_t ⊛ ((1 - g_t) w_{t-1} + g_t δ_0)

   ``s_t = softmax(W_s h_t)`` is a distribution over the shifts ``-K..K``, ``g_t = σ(W_g h_t)`` a
   jump gate that sends the head back to the origin cell. The map is affine in ``w_{t-1}`` with
   a circulant matrix, so in the Fourier basis over the cells it is diagonal::

       ŵ_t[f] = ŝ_t[f] (1 - g_t) ŵ_{t-1}[f] + ŝ_t[f] g_t,      ŵ_0[f] = exp(2πi f / N),
       ŝ_t[f] = Σ_k s_t[k] exp(-2πi f k / N),                   f = 0..N/2

   an element-wise complex linear recurrence, computed by ``pntm.ops.scan.linear_scan``;
   ``w_t = irfft(ŵ_t)``.

3. **Memory as an element-wise linear scan.** The write head's weighting ``w_t``, an erase
   vector ``e_t = σ(W_e h_t) ∈ (0, 1)^W`` and an add vector ``a_t = tanh(W_a h_t)`` give::

       M_t = M_{t-1} ⊙ (1 - w_t e_tᵀ) + w_t a_tᵀ,      M_0 = 1e-6

   a linear recurrence over the ``N × W`` cells, so again one scan.

4. **Reads after the scan.** For every read head, the content and the cell's address tag::

       r^h_t = Σ_i w^h_t[i] [M_t[i], A[i]],      A[i] = Σ_p P_p[i mod p]

   **Content reads** (``content_heads`` per layer, optional): a content head compares a query
   with every written cell (its content, ``content_match: content``; with the tape writer also
   a key written with it, ``key``, or the inputs before it, ``context``, an induction head) and
   reads ``[M[j], A[j]]`` with the resulting weighting like a location head. The equations and
   the choice of ``context`` are in ``pntm.ops.content_addressing``. Nothing feeds back into
   the heads or the memory, so it is causal attention over the written cells: O(T²) in
   training and O(t) per decoded token, the only part of a layer whose cost grows with the
   context. Under a learned (hard) writer the written cells are its writes not yet
   overwritten: the value each write left in its cell comes from the write events (a read that
   follows the writer), and a mask keeps, at each step, the writes still in memory
   (``pntm.ops.write_events.written_rows``, ``live_writes``); tested against content
   addressing over the dense memory's written cells.

   **State reads** (``state_heads`` per layer, optional; ``pntm.models.state_heads``). Each
   state head is a small automaton: the controller chooses a map ``f_t`` of ``S`` states onto
   themselves, ``s_t = f_t(s_{t-1})``, the maps compose in a parallel scan
   (``pntm.ops.state_maps``), and the head reads a learned embedding of its state. With
   ``state_values`` the state carries values, ``x_t = (d_t ⊙ x_{t-1}) A_t + c_t``, which
   ``state_anneal`` fades back to the exact one-hot automaton by the end of training.

5. **Output.** ``u'_t = u_t + W_o [h_t, r^1_t, …, r^H_t]``; after the last layer,
   ``logits_t = W_out LayerNorm(u_t)``. Token embeddings carry a segment vector (prompt, or
   separator-and-answer).

Design decisions (our reconstruction; the paper's abstract is silent on them):

* **Hard heads with straight-through gradients** (``hard``, default on). The forward pass uses
  the one-hot argmax of ``s_t`` and the thresholded gate ``g_t > 1/2``; gradients flow as if the
  soft values had been used. Head positions are then exact integers at every length, so nothing
  blurs over 500+ steps (a soft shift diffuses the head a little every step). Because ``w_t`` is
  linear in each ``s_t``, the straight-through gradient of a shift is the exact effect of
  changing that one token's move. ``hard: false`` keeps the soft NTM semantics.
* **Relax, then harden** (``relax = [a, b]``, fractions of training). Hard heads see only the
  neighbouring cells in their gradient, which is too little to discover a head that must walk
  back over the prompt (reverse). Until ``a`` the heads are soft; from ``a`` to ``b`` their
  temperature falls to ``min_temperature`` so the soft solution must sharpen; from ``b`` on they
  are hard. Evaluation and decoding always use hard heads. ``relax = [0, 0]`` trains hard from the
  first step, which counting tasks need: hard heads with random initial moves are a pool of exact
  counters, while the product of 40 soft phases carries no gradient. ``hold_temperature`` keeps
  the relaxed heads' straight-through gradient at ``min_temperature`` once they are hard: the
  annealed logits have small margins, and at temperature 1 their gradient is that of far softer
  heads (on binary addition it undid a 94%-accurate solution within 50 hard steps; held, the
  same run reached 100%).
* **Address tags instead of a learned initial memory** (library default; the shipped run
  config has none). Each cell can carry a read-only tag, a sum of learned patterns with the
  small periods ``periods`` (library default 2, 3, 4, 5); every residue is visited in
  training, so cells first reached at long lengths hold nothing new. The erasable memory starts
  at the constant 1e-6 (Collier & Beel 2018), the same in every cell. Periods equal to a
  task's moduli are a fact about the task, so ``configs/pntm.yaml`` sets ``periods: []`` and
  leaves counting to the state heads, which learn their automaton (RESULTS.md, "State heads":
  without tags and without state heads, parity and cycle navigation stay at chance).
* **One run config for every task** (``configs/pntm.yaml``; a test checks that no task changes
  it). Each value is a general bias, none a task's fact: two layers (a head can react to what
  the layer below read, e.g. turn at the end of a prompt it has walked); shifts of -2..2; a
  3-token window before the controller (the width of Mamba's short convolution); six read
  heads, four relaxed; one content head comparing learned queries with the cells; two state
  heads of 8 states whose values are annealed away; a length curriculum over the first 70% of
  4,000 steps; jump gates starting at 12% (``jump_bias: -2``) with the temperature held after
  hardening. What it learns, seed by seed, is in RESULTS.md ("One P-NTM config for every task").
* **Tape writer** (``tape_writer``): the write head moves one cell forward per token, never
  jumps, so memory is the tape of what the controller wrote. Heads start on cell -1, so the first
  token (BOS) lands on cell 0, the jump target. Each cell is then written once, and the memory
  scan has a closed form, ``M_t[j] = M_0 + [j ≤ t](a_j - M_0 e_j)``: a read is a causally
  masked product (``tape_output``), so training never materializes ``M_t`` for every ``t``
  (``memory_path: scan`` keeps the scan; a test checks both agree, forward and backward).
* **Memory size is not a parameter.** ``N`` is chosen per input: the smallest multiple of
  ``lcm(periods)`` that is at least ``K·T + 1`` (and ``min_cells``), so no head can wrap around
  onto cells it has visited, the same weights run at any length, and a head that does go left of
  cell 0 keeps its residues. Each layer works it out from its input (``PNTMLayer.num_cells``,
  one formula with the model's and the memory estimate's: ``pntm_config.memory_cells``).
* **Hard heads as integer positions** (``head_path: auto``). When every head is hard (after the
  relax phase, at evaluation, and throughout when ``relax = [0, 0]``) and the writer is the tape,
  the weightings are one-hot, so the Fourier scan and its ``B·T·H·N`` inverse FFT reduce to a
  cumulative sum of moves and two gathers (``pntm.ops.hard_heads``): O(T) per sequence instead of
  O(T·N) = O(T²). The forward pass and the shift gradients are exactly those of the Fourier
  scan (tested); the jump gate's straight-through gradient compares the head's future with the
  other choice's over the next ``jump_horizon`` steps (default 16; ``null`` sums the whole
  stretch to the next jump, exact and O(T²)). ``head_path: fourier`` always runs the scan.
* **Learned write head** (``tape_writer: false``): head 0 moves like a read head (shifts,
  jumps), starting as a tape (``write_bias`` on the +1 shift), so the tape is what it learns
  first, not a rule; it may stay, go back and overwrite. When every head is hard
  (``head_path: auto``, ``memory_path: auto``) each token is a write event ``(t, c_t, e_t,
  a_t)`` and ``pntm.ops.write_events`` computes the reads from the events alone: a sort by cell,
  one segmented scan, a search per read; O(T log T) work and O(T·W) memory per sequence, no
  ``B·T·N·W`` tensor, exact erase/add gradients and the Fourier path's straight-through head
  gradients (tested against the dense recurrence and ``memory_path: scan``). Soft (relaxed)
  learned write heads need every cell at every step: the memory scan then runs in chunks of
  ``memory_chunk`` tokens, each recomputed in the backward pass (``pntm.ops.memory_chunks``), so
  peak memory is that of one chunk instead of the whole history. ``memory_path: scan`` keeps
  the whole scan (the reference). With content heads the writer stays hard in the relax phase
  (which cells are written is defined only for a hard writer), and the content heads' gradient
  reaches its moves only as the straight-through gradient of a read that follows it.
* Parallel (``forward``) and recurrent (``init_state``/``step``) modes share every weight and
  every formula; the recurrent mode is the scan's sequential form, one token at a time. Hard
  heads decode with O(1) state and work per head and token (an integer cell, one memory row
  written, one read); soft heads carry their spectra, O(N) per token.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.models.base import SequenceModel, register_model
from pntm.models.pntm_config import PNTMConfig
from pntm.models.state_heads import StateHeads
from pntm.ops import content_addressing, fourier_heads
from pntm.ops.fourier_heads import straight_through
from pntm.ops.hard_heads import tape_read
from pntm.ops.memory_chunks import chunked_memory_reads
from pntm.ops.scan import linear_scan, scan_step
from pntm.ops.write_events import event_read, live_writes, written_rows


@dataclass
class LayerState:
    """Recurrent state of one layer: head spectra and memory."""

    head_spectra: Tensor | None  # (B, H, N//2+1) complex; None when heads are positions
    memory: Tensor  # (B, N, W)
    previous: Tensor  # (B, k, d): the layer's last k inputs, newest first (token shift)
    positions: Tensor | None = None  # (B, H) long: hard heads' cells (the position path)
    length: int = 0  # tokens seen: the tape's written cells are 0..length-1
    keys: Tensor | None = None  # (B, N, W), or (B, N, H_content, W) for context match: the keys
    #                             written with the tape (content heads)
    machine: Tensor | None = None  # (B, H_state, S): state heads' distributions (one-hot if hard)
    written_at: Tensor | None = None  # (B, N) long: when a learned writer last wrote each cell
    #                                   (-1: never), for content heads


class PNTMLayer(nn.Module):
    """One P-NTM layer: controller, heads, memory, reads (see the module docstring).

    A standalone sequence mixer: ``PNTMLayer(d_model=64, ...)`` (keywords of ``PNTMConfig``) or
    ``PNTMLayer(PNTMConfig(...))`` maps inputs (B, T, d_model) to outputs of the same shape,
    residual included. The layer picks its memory size per input (``num_cells``), follows the
    relax schedule through ``set_training_progress(p)``, and decodes one token at a time with
    ``init_state(batch, max_length, device)`` and ``step(u, state)``. ``PNTM`` is a stack of
    these between an embedding and an output head."""

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
        self.read_heads = read_heads
        self.heads = read_heads + 1  # head 0 writes
        self.shift_range = shift_range
        self.width = config.memory_width
        self.periods = tuple(int(p) for p in config.periods)
        self.address_width = config.address_width
        self.hard = config.hard
        self.scan_method = config.scan_method
        self.initial_value = config.initial_memory
        self.tape_writer = tape_writer
        self.memory_path = config.memory_path
        self.head_path = config.head_path
        self.jump_horizon = config.jump_horizon
        self.memory_chunk = config.memory_chunk  # tokens per chunk of a soft learned writer's scan
        self.content_heads = content_heads
        self.match_keys = content_heads > 0 and config.content_match == "key"
        self.match_context = content_heads > 0 and config.content_match == "context"
        self.learned_heads = self.heads - int(tape_writer)
        # Which learned heads the relax phase softens: a learned write head and the first
        # ``relaxed_heads`` read heads (all of them when None); the rest stay hard throughout.
        # A learned writer under content heads stays hard: they read the cells it has written,
        # which only a hard writer defines.
        relaxed_reads = read_heads if relaxed_heads is None else min(relaxed_heads, read_heads)
        self.content_over_writes = content_heads > 0 and not tape_writer
        mask = [relaxed_reads > 0 and not self.content_over_writes] * int(not tape_writer) + [
            i < relaxed_reads for i in range(read_heads)]
        self.register_buffer("relaxed_mask", torch.tensor(mask), persistent=False)
        self.relaxed = False    # training only: soft heads (see set_training_progress)
        self.temperature = 1.0  # training only: softmax temperature of relaxed heads
        self.token_shift = config.window  # how many previous inputs the controller sees
        self._build_modules(config)

    def _build_modules(self, config: PNTMConfig) -> None:
        """The layer's modules and their initial biases (creation order fixes the initial
        weights for a seed: keep it)."""
        d_model, d_ff, memory_width = config.d_model, config.d_ff, config.memory_width
        content_heads, state_heads = config.content_heads, config.state_heads
        n_shift = 2 * self.shift_range + 1
        self.norm = nn.LayerNorm(d_model)
        self.controller = nn.Linear(d_model * (1 + self.token_shift), d_ff)
        self.to_shift = nn.Linear(d_ff, self.learned_heads * n_shift)
        self.to_jump = nn.Linear(d_ff, self.learned_heads)
        self.to_erase = nn.Linear(d_ff, memory_width)
        self.to_add = nn.Linear(d_ff, memory_width)
        self.to_query = (nn.Linear(d_ff, content_heads * memory_width)
                         if content_heads and not self.match_context else None)
        # context match: one projection gives both the key of cell j (from the inputs before j)
        # and the query at t (from the inputs before t), so a repeated context matches exactly
        self.to_context_key = (nn.Linear(d_model * self.token_shift,
                                         content_heads * memory_width, bias=False)
                               if self.match_context else None)
        self.to_strength = nn.Linear(d_ff, content_heads) if content_heads else None
        self.to_key = nn.Linear(d_ff, memory_width) if self.match_keys else None
        reads = self.read_heads + content_heads
        self.machine = (StateHeads(d_ff, state_heads, config.states, memory_width,
                                   config.stay_bias, config.state_values, config.state_anneal)
                        if state_heads else None)
        self.out = nn.Linear(d_ff + reads * (memory_width + self.address_width)
                             + state_heads * memory_width, d_model)
        self.address_patterns = nn.ParameterList(
            [nn.Parameter(torch.randn(p, self.address_width)) for p in self.periods])

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

    # ---- schedule and memory size ----------------------------------------------------------
    def set_training_progress(self, fraction: float) -> None:
        """Relax-then-harden schedule of the heads (``relax`` = [a, b], fractions of training).

        Before ``a`` the heads are soft (temperature 1); from ``a`` to ``b`` the temperature falls
        geometrically to ``min_temperature``, so the soft solution must become a sharp one; from
        ``b`` on the heads are hard (straight-through), as at evaluation. ``relax = [0, 0]``
        trains hard from the first step. With ``hold_temperature`` the relaxed heads keep
        ``min_temperature`` after ``b``: the forward pass is hard either way (an argmax and a
        threshold at 1/2 do not depend on it), but their straight-through gradient stays the
        one of the sharp solution just annealed instead of jumping back to temperature 1.
        Call it before each training step with ``step / steps``; evaluation (``eval()``) is
        hard whatever the phase."""
        cfg = self.config
        start, end = cfg.relax
        relaxed = fraction < end
        ramp = min(1.0, max(0.0, (fraction - start) / max(end - start, 1e-9)))
        held = cfg.min_temperature if cfg.hold_temperature and end > 0 else 1.0
        self.relaxed = relaxed
        self.temperature = cfg.min_temperature ** ramp if relaxed else held
        if self.machine is not None:
            self.machine.set_training_progress(fraction)

    def num_cells(self, length: int) -> int:
        """Memory cells for ``length`` tokens (``pntm.models.pntm_config.memory_cells``)."""
        return self.config.num_cells(length)

    # ---- pieces shared by both modes -------------------------------------------------------
    def initial_memory(self, cells: int, device) -> Tensor:
        """``M_0``: every cell holds the same small constant (N, W)."""
        return torch.full((cells, self.width), self.initial_value, device=device)

    def addresses(self, cells: int, device) -> Tensor:
        """Read-only address tags ``A[i] = Σ_p P_p[i mod p]`` (N, address_width); zeros when
        ``periods`` is empty (cells without tags)."""
        index = torch.arange(cells, device=device)
        tags = torch.zeros(cells, self.address_width, device=device)
        for p, pattern in zip(self.periods, self.address_patterns):
            tags = tags + pattern[index % p]
        return tags

    def address_table(self, device) -> Tensor:
        """The tag of each residue modulo ``lcm(periods)`` (L, address_width)."""
        return self.addresses(math.lcm(*self.periods) if self.periods else 1, device)

    def relaxing(self) -> bool:
        """Whether some heads run soft now (training, inside the relax phase)."""
        return self.training and self.relaxed and bool(self.relaxed_mask.any())

    def uses_positions(self) -> bool:
        """Whether every head is hard now, so heads can be carried as integer positions."""
        return self.hard and self.head_path == "auto" and not self.relaxing()

    def head_choices(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Shift distributions (B, T, H, 2K+1) and jump gates (B, T, H) of every head."""
        B, T, _ = h.shape
        shift_logits = self.to_shift(h).view(B, T, self.learned_heads, -1)
        jump_logits = self.to_jump(h)
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
        return shift, jump

    def controls(self, u: Tensor, previous: Tensor) -> dict[str, Tensor]:
        """Controller and head parameters for inputs ``u`` of shape (B, T, d); ``previous``
        (B, T, k, d) holds the ``k = token_shift`` inputs before each one, newest first (zeros
        before the first token)."""
        x = self.norm(u)
        if self.token_shift:
            x = torch.cat([x, self.norm(previous).flatten(-2)], dim=-1)
        h = F.gelu(self.controller(x))
        shift, jump = self.head_choices(h)
        ctl = {"h": h, "shift": shift, "jump": jump,
               "erase": torch.sigmoid(self.to_erase(h)), "add": torch.tanh(self.to_add(h))}
        if self.match_context:
            window = self.norm(previous).flatten(-2)  # the inputs before t: (B, T, k*d)
            ctl["key"] = self.to_context_key(window).unflatten(-1, (self.content_heads, self.width))
            ctl["query"] = ctl["key"]
        elif self.content_heads:
            ctl["query"] = self.to_query(h).unflatten(-1, (self.content_heads, self.width))
        if self.content_heads:
            ctl["strength"] = F.softplus(self.to_strength(h))
        if self.match_keys:
            ctl["key"] = self.to_key(h)
        return ctl

    def location_coefficients(self, ctl: dict[str, Tensor], cells: int) -> tuple[Tensor, Tensor]:
        """Fourier-domain recurrence ``ŵ_t = a_t ŵ_{t-1} + b_t`` per head: (B, T, H, F) each
        (``pntm.ops.fourier_heads``)."""
        phases = fourier_heads.shift_phases(self.shift_range, cells, ctl["shift"].device)
        return fourier_heads.location_coefficients(ctl["shift"], ctl["jump"], phases)

    def memory_coefficients(self, ctl: dict[str, Tensor], write: Tensor) -> tuple[Tensor, Tensor]:
        """``α = 1 - w eᵀ`` and ``β = w aᵀ`` for write weights (B, T, N): (B, T, N, W) each."""
        return fourier_heads.memory_coefficients(write, ctl["erase"], ctl["add"])

    def output(self, u: Tensor, ctl: dict[str, Tensor], weights: Tensor, memory: Tensor,
               tape: tuple | None) -> Tensor:
        """Reads ``r^h_t = Σ_i w^h_t[i] M_t[i]`` and the residual update."""
        read_weights = weights[:, :, 1:]
        contents = torch.einsum("bthn,btnw->bthw", read_weights, memory)
        return self.residual(u, ctl, contents, self.tags(read_weights), tape)

    def tags(self, read_weights: Tensor) -> Tensor:
        """Address tags read by weightings (B, T, H, N): (B, T, H, address_width)."""
        return torch.einsum("bthn,nw->bthw", read_weights,
                            self.addresses(read_weights.shape[-1], read_weights.device))

    def content_weights(self, ctl: dict[str, Tensor], keys: Tensor, causal: bool,
                        allowed: Tensor | None = None) -> Tensor:
        """Content heads' weightings (B, T, H_content, J) over the ``J`` cells whose ``keys``
        (B, J, W), or per head (B, J, H_content, W), are given (``pntm.ops.content_addressing``):
        soft at the current temperature while relaxing, else hard when the layer is."""
        relaxing = self.relaxing()
        return content_addressing.content_weights(
            ctl["query"], ctl["strength"], keys, causal, strictly_earlier=self.match_context,
            temperature=self.temperature if relaxing else 1.0, hard=self.hard and not relaxing,
            allowed=allowed)

    def content_reads(self, ctl: dict[str, Tensor], rows: Tensor, keys: Tensor, causal: bool,
                      tags: Tensor | None = None, allowed: Tensor | None = None
                      ) -> tuple[Tensor, Tensor]:
        """Content-addressed reads (see the module docstring): contents and tags
        (B, T, H_content, ·). ``rows`` (B, J, W) are the cells the heads may read, ``keys`` what
        the queries are compared with (the keys written with the cells, or the rows
        themselves). On the tape, row ``j`` is cell ``j``, ``M[j] = m_0 + v_j``; for a learned
        writer (``learned_content_source``) the rows are its writes, ``tags`` (B, J, A) their
        cells' tags and ``allowed`` (B, T, J) which of them are still in memory at each step."""
        weights = self.content_weights(ctl, keys, causal, allowed)
        contents = torch.einsum("bthj,bjw->bthw", weights, rows)
        if tags is None:
            tags = self.addresses(rows.shape[1], rows.device).expand(rows.shape[0], -1, -1)
        return contents, torch.einsum("bthj,bjw->bthw", weights, tags)

    def residual(self, u: Tensor, ctl: dict[str, Tensor], contents: Tensor,
                 tags: Tensor, tape: tuple | None = None) -> Tensor:
        """``u + W_o [h, r^1, …, r^H]``, each read being its content and its address tag; with
        content heads, ``tape`` holds ``content_reads``' arguments after ``ctl``."""
        if self.content_heads:
            extra_contents, extra_tags = self.content_reads(ctl, *tape)
            contents = torch.cat([contents, extra_contents], dim=2)
            tags = torch.cat([tags, extra_tags], dim=2)
        reads = [ctl["h"], torch.cat([contents, tags], dim=-1).flatten(2)]
        if self.machine is not None:
            reads.append(self.machine.read(ctl["states"]).flatten(2))
        return u + self.out(torch.cat(reads, dim=-1))

    # ---- parallel mode ---------------------------------------------------------------------
    def forward(self, u: Tensor) -> Tensor:
        """Parallel mode: inputs (B, T, d_model) -> outputs (B, T, d_model)."""
        B, T, _ = u.shape
        cells = self.num_cells(T)
        earlier = [F.pad(u, (0, 0, k, 0))[:, :T] for k in range(1, self.token_shift + 1)]
        ctl = self.controls(u, torch.stack(earlier, dim=2) if earlier else None)
        if self.machine is not None:
            # valued state heads relax through their values (state_anneal), so their maps stay
            # hard (straight-through) in the heads' relax phase; one-hot ones follow the phase
            relaxing = self.relaxing() and self.machine.to_values is None
            ctl["states"] = self.machine(ctl["h"], self.hard and not relaxing,
                                         self.temperature if relaxing else 1.0)
        if self.tape_writer and self.memory_path == "auto" and self.uses_positions():
            contents, tags = tape_read(
                ctl["shift"][:, :, 1:], ctl["jump"][:, :, 1:], self.tape_values(ctl),
                self.address_table(u.device), self.initial_value, cells, self.jump_horizon)
            return self.residual(u, ctl, contents, tags, self.parallel_tape(ctl))
        learned_writer = not self.tape_writer and self.memory_path == "auto"
        if learned_writer and self.uses_positions():  # hard learned writer: write events
            contents, tags = event_read(
                ctl["shift"], ctl["jump"], ctl["erase"], ctl["add"], self.address_table(u.device),
                self.initial_value, cells, self.jump_horizon)
            return self.residual(u, ctl, contents, tags, self.learned_content_source(ctl, cells))
        # A tape writer's place is known (token t on cell t): scan only the learned heads.
        first = int(self.tape_writer)
        scanned = {"shift": ctl["shift"][:, :, first:], "jump": ctl["jump"][:, :, first:]}
        a, b = self.location_coefficients(scanned, cells)
        start = self.start_spectrum(cells, u.device).expand_as(b[:, 0])
        spectra = linear_scan(a, b, start, method=self.scan_method)
        if learned_writer:  # soft heads: the memory scan in chunks, recomputed in backward
            contents, tags = chunked_memory_reads(
                spectra, ctl["erase"], ctl["add"], self.addresses(cells, u.device),
                self.initial_value, self.memory_chunk, self.scan_method)
            return self.residual(u, ctl, contents, tags, self.learned_content_source(ctl, cells))
        weights = torch.fft.irfft(spectra, n=cells, dim=-1)  # (B, T, H, N)
        if self.tape_writer:
            if self.memory_path == "auto":
                return self.tape_output(u, ctl, weights)
            tape = F.one_hot(torch.arange(T, device=u.device), cells).to(weights)
            weights = torch.cat([tape.expand(B, T, cells)[:, :, None], weights], dim=2)
        alpha, beta = self.memory_coefficients(ctl, weights[:, :, 0])
        memory = linear_scan(alpha, beta, self.initial_memory(cells, u.device).expand(B, -1, -1),
                             method=self.scan_method)
        source = (self.parallel_tape(ctl) if self.tape_writer
                  else self.learned_content_source(ctl, cells))
        return self.output(u, ctl, weights, memory, source)

    def tape_output(self, u: Tensor, ctl: dict[str, Tensor], weights: Tensor) -> Tensor:
        """Reads of a tape writer without materializing ``M_t`` for every ``t`` (``weights``:
        the read heads' only): the memory scan's closed form,
        ``pntm.ops.fourier_heads.tape_closed_form_reads``, equal to the scan (tested forward and
        backward against ``memory_path: scan``)."""
        contents = fourier_heads.tape_closed_form_reads(weights, self.tape_values(ctl),
                                                        self.initial_value)
        return self.residual(u, ctl, contents, self.tags(weights), self.parallel_tape(ctl))

    def parallel_tape(self, ctl: dict[str, Tensor]) -> tuple | None:
        """The tape as content heads see it in parallel mode: cell ``j`` holds
        ``m_0 + v_j`` (and its key) from step ``j`` on (causal)."""
        if not self.content_heads:
            return None
        rows = self.initial_value + self.tape_values(ctl)
        return rows, (rows if self.content_match_is_cell() else ctl["key"]), True

    def learned_content_source(self, ctl: dict[str, Tensor], cells: int) -> tuple | None:
        """What content heads read under a hard learned writer, in parallel mode: its writes
        (``pntm.ops.write_events.written_rows``: the value each left in its cell, and the cell's
        tag) and, per step, which of them are still in memory (``live_writes``: not yet
        overwritten). The memory at ``t`` is exactly those values on their cells, so this is the
        NTM's content addressing over the written cells, without the ``B·T·N·W`` memory."""
        if not self.content_heads:
            return None
        rows, tags, cell = written_rows(ctl["shift"], ctl["jump"], ctl["erase"], ctl["add"],
                                        self.address_table(ctl["h"].device),
                                        self.initial_value, cells, self.jump_horizon)
        return rows, rows, False, tags, live_writes(cell)

    def step_tape(self, ctl: dict[str, Tensor], state: LayerState, memory: Tensor) -> tuple | None:
        """The tape as content heads see it in a step: the cells written so far, this token's
        included (its key is written into ``state.keys`` in place)."""
        if not self.content_heads:
            return None
        if self.content_over_writes:  # the written cells, earliest write first (ties as forward)
            written = state.written_at
            order = torch.where(written >= 0, written, written.shape[1]).argsort(dim=1)
            rows = torch.gather(memory, 1, order[..., None].expand(-1, -1, memory.shape[-1]))
            tags = self.addresses(memory.shape[1], memory.device)[order]
            return rows, rows, False, tags, (torch.gather(written, 1, order) >= 0)[:, None]
        length = state.length + 1
        if self.content_match_is_cell():
            return memory[:, :length], memory[:, :length], False
        state.keys[:, state.length] = ctl["key"][:, 0]
        if self.match_context:  # strictly earlier cells (cell 0 for the first token)
            length = max(length - 1, 1)
        return memory[:, :length], state.keys[:, :length], False

    def content_match_is_cell(self) -> bool:
        """Whether content heads compare their queries with the cells' contents themselves."""
        return not (self.match_keys or self.match_context)

    def tape_values(self, ctl: dict[str, Tensor]) -> Tensor:
        """``v_j = a_j - m_0 e_j``: what token ``j`` adds to its cell of the tape (B, T, W)."""
        return ctl["add"] - self.initial_value * ctl["erase"]

    # ---- recurrent mode --------------------------------------------------------------------
    def start_spectrum(self, cells: int, device) -> Tensor:
        """Spectrum of ``w_0 = δ_{-1}`` (``pntm.ops.fourier_heads.start_spectrum``)."""
        return fourier_heads.start_spectrum(cells, device)

    def init_state(self, batch_size: int, max_length: int, device) -> LayerState:
        """The state before the first token of sequences of up to ``max_length`` tokens: the
        memory size is ``num_cells(max_length)``, as ``forward`` takes at that length, so feed
        at most ``max_length`` tokens (beyond, heads may wrap onto visited cells). Hard heads
        (``eval()``, or training past the relax phase) are carried as integer cells."""
        cells = self.num_cells(max_length)
        memory = self.initial_memory(cells, device).expand(batch_size, -1, -1).clone()
        previous = torch.zeros(batch_size, self.token_shift, self.norm.normalized_shape[0],
                               device=device)
        keys = None
        if self.match_keys:
            keys = torch.zeros_like(memory)
        elif self.match_context:
            keys = memory.new_zeros(batch_size, cells, self.content_heads, self.width)
        machine = (self.machine.initial(batch_size, device) if self.machine is not None
                   else None)
        written_at = (torch.full((batch_size, cells), -1, device=device)
                      if self.content_over_writes else None)
        if self.uses_positions():
            positions = torch.full((batch_size, self.heads), cells - 1, device=device)
            return LayerState(head_spectra=None, memory=memory, previous=previous,
                              positions=positions, keys=keys, machine=machine,
                              written_at=written_at)
        spectra = self.start_spectrum(cells, device).expand(batch_size, self.heads, -1).clone()
        return LayerState(head_spectra=spectra, memory=memory, previous=previous, keys=keys,
                          machine=machine, written_at=written_at)

    def step(self, u: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        """Recurrent mode, one token: ``u`` is (B, 1, d_model); returns the output (B, 1,
        d_model), equal to ``forward``'s at this position, and the next state (with hard heads
        the memory is updated in place: the old state is consumed)."""
        cells = state.memory.shape[1]
        ctl = self.controls(u, state.previous[:, None])
        if self.machine is not None:
            ctl["states"] = self.machine.step(ctl["h"], state.machine, self.hard)
        if state.positions is not None:
            return self.position_step(u, ctl, state)
        a, b = self.location_coefficients(ctl, cells)
        spectra = scan_step(a[:, 0], b[:, 0], state.head_spectra)
        weights = torch.fft.irfft(spectra, n=cells, dim=-1)[:, None]
        alpha, beta = self.memory_coefficients(ctl, weights[:, :, 0])
        memory = scan_step(alpha[:, 0], beta[:, 0], state.memory)
        if state.written_at is not None:  # a hard learned writer's cell: its weight's argmax
            state = dataclasses.replace(state, written_at=state.written_at.clone())
            self.mark_written(state, weights[:, 0, 0].argmax(-1))
        out = self.output(u, ctl, weights, memory[:, None], self.step_tape(ctl, state, memory))
        return out, LayerState(head_spectra=spectra, memory=memory,
                               previous=self.remember(u, state), length=state.length + 1,
                               keys=state.keys, machine=self.machine_state(ctl),
                               written_at=state.written_at)

    def position_step(self, u: Tensor, ctl: dict[str, Tensor], state: LayerState):
        """One token with hard heads carried as integer cells: O(W) work per head, whatever the
        memory size (the memory is updated in place, so the old state is consumed). Equal to
        the Fourier step with one-hot weightings: ``c_t = k_t + (1 - j_t) c_{t-1}`` (mod N),
        only the written row of ``M`` changes, and a read is one row."""
        memory = state.memory
        cells = memory.shape[1]
        moves = ctl["shift"][:, 0].argmax(-1) - self.shift_range          # (B, H)
        jumped = ctl["jump"][:, 0] > 0.5
        positions = torch.remainder(moves + torch.where(jumped, 0, state.positions), cells)
        rows = torch.arange(memory.shape[0], device=memory.device)
        write = positions[:, 0]
        memory[rows, write] = (memory[rows, write] * (1 - ctl["erase"][:, 0])
                               + ctl["add"][:, 0])
        if state.written_at is not None:
            self.mark_written(state, write)
        read = positions[:, 1:]
        contents = memory[rows[:, None], read]                             # (B, H_read, W)
        table = self.address_table(u.device)
        tags = table[read % table.shape[0]]
        out = self.residual(u, ctl, contents[:, None], tags[:, None],
                            self.step_tape(ctl, state, memory))
        return out, LayerState(head_spectra=None, memory=memory,
                               previous=self.remember(u, state), positions=positions,
                               length=state.length + 1, keys=state.keys,
                               machine=self.machine_state(ctl), written_at=state.written_at)

    @staticmethod
    def mark_written(state: LayerState, cell: Tensor) -> None:
        """Record (in place) that this step's write went to ``cell`` (B,) (long)."""
        rows = torch.arange(cell.shape[0], device=cell.device)
        state.written_at[rows, cell] = state.length

    @staticmethod
    def machine_state(ctl: dict[str, Tensor]) -> Tensor | None:
        """State heads' distributions after this token (B, H_state, S), if the layer has any."""
        return ctl["states"][:, 0] if "states" in ctl else None

    def remember(self, u: Tensor, state: LayerState) -> Tensor:
        """The last ``token_shift`` inputs after input ``u`` (B, 1, d), newest first."""
        return torch.cat([u, state.previous], dim=1)[:, :self.token_shift]


@register_model("pntm")
class PNTM(SequenceModel):
    """Parallelizable Neural Turing Machine (see the module docstring for the equations)."""

    nullable_config = frozenset({"jump_horizon", "state_anneal"})  # null: exact jump gradient;
    #                                                              no annealing of state values

    @classmethod
    def default_config(cls) -> dict:
        """``PNTMConfig``'s defaults as a ``model_config`` mapping (see pntm_config for how
        ``configs/pntm.yaml`` layers the command line's run defaults over them)."""
        return PNTMConfig().as_dict()

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.settings = settings = PNTMConfig(**cfg)  # checks the keys that go together
        self.sep_id = sep_id
        self.shift_range = settings.shift_range
        self.periods = settings.periods
        self.min_cells = settings.min_cells
        d = settings.d_model
        self.token_embedding = nn.Embedding(vocab_size, d)
        self.segment_embedding = nn.Embedding(2, d)
        self.layers = nn.ModuleList([PNTMLayer(settings) for _ in range(settings.layers)])
        self.final_norm = nn.LayerNorm(d)
        self.to_logits = nn.Linear(d, vocab_size)

    def set_training_progress(self, fraction: float) -> None:
        """Every layer's relax schedule (``PNTMLayer.set_training_progress``)."""
        for layer in self.layers:
            layer.set_training_progress(fraction)

    def num_cells(self, length: int) -> int:
        """Memory cells for ``length`` tokens: no head can wrap onto cells it has visited."""
        return self.settings.num_cells(length)

    def embed(self, tokens: Tensor, segment: Tensor) -> Tensor:
        return self.token_embedding(tokens) + self.segment_embedding(segment)

    def forward(self, tokens: Tensor) -> Tensor:
        segment = (torch.cumsum(tokens == self.sep_id, dim=1) > 0).long()
        u = self.embed(tokens, segment)
        for layer in self.layers:
            u = layer(u)
        return self.to_logits(self.final_norm(u))

    def init_state(self, batch_size: int, max_length: int, device) -> dict:
        return {"after_sep": torch.zeros(batch_size, dtype=torch.bool, device=device),
                "layers": [layer.init_state(batch_size, max_length, device)
                           for layer in self.layers]}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        after_sep = state["after_sep"] | (tokens == self.sep_id)
        u = self.embed(tokens, after_sep.long())[:, None]
        new_layers = []
        for layer, layer_state in zip(self.layers, state["layers"]):
            u, layer_state = layer.step(u, layer_state)
            new_layers.append(layer_state)
        logits = self.to_logits(self.final_norm(u))[:, 0]
        return logits, {"after_sep": after_sep, "layers": new_layers}
