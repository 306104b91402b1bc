"""The work tape: a second memory of a P-NTM layer, written by a learned head that reads it.

The read heads of the shipped config walk a write-once tape (token ``t`` on cell ``t``), so
nothing the machine computes is ever stored: a stack, a counter in a cell, a partial result
must live in the state heads or not at all. A learned write head over that same memory
overwrites the prompt that other heads still need (measured: with ``tape_writer: false`` the
writer walks back over odds_first's prompt and destroys it, 0.0% validation; RESULTS.md,
"A learned writer with a head that reads where it writes"). So the work tape is a separate
memory beside the input tape, as a multi-tape Turing machine has a read-only input tape and a
work tape, and the read heads never see it::

    c_t = c_{t-1} + k_t  (mod N),                     c_0 = -1        (one hard head)
    V_t = V_{t-1},  V_t[c_t] = V_{t-1}[c_t] ⊙ (1 - γ_t e_t) + γ_t a_t,   V_0 = m_0
    r_t = V_t[c_t],        u'_t += W_v r_t

One hard head (straight-through shift ``k_t ∈ -K..K``, as the read heads, and no jump) writes
and reads its own cell after the write, as a Turing machine's head.
``e_t = σ(W_e h_t)``, ``a_t = tanh(W_a h_t)``, and ``γ_t ∈ {0, 1}`` is a hard write gate
(straight-through, ``σ(W_γ h_t) > 1/2``): with ``γ_t = 0`` the token leaves the tape exactly
as it was. Everything is a function of the layer's controller output ``h_t``, so the tape
adds no recurrence: it is one more ``pntm.ops.write_events.written_rows`` (an
``event_read`` of a writer and a head with the writer's moves), O(T log T) work and O(T·W)
memory per sequence, with the exact erase/add gradients and the straight-through gradients
of the moves. Recurrent decoding keeps the cell and the ``N × W`` tape: O(W) work per token.

Decisions (our own; the paper's abstract is silent on a second memory):

* **Read after the write** (``M_t[c_t]``). A stack is then the head moving +1 and writing on a
  push (the read is the pushed value), moving -1 with the gate shut on a pop (the read is the
  new top, untouched), staying with the gate shut on anything else; a pop below the bottom
  lands on a cell never written, ``m_0``, which marks the empty stack (the circular tape
  holds that exactly: the cells below the lowest the head has been are never written). A read
  before the write would read the stale cell above the top after a push; reading both, before
  and after, changed nothing in the sandbox (an exact stack at 1 of 5 seeds with jumps, 5 of
  5 without, either way; commit ``df91d26``), so the tape reads after only.
* **The write gate.** Without it a no-op needs ``σ(W_e h) = 0`` and ``tanh(W_a h) = 0`` exactly,
  which a sigmoid never reaches: a cell that becomes the top by a pop again and again drifts
  by ``(1 - e) v + a`` each time, and a stack read at length 500 after hundreds of pops is no
  longer what was pushed. The gate makes "leave it" exact. It starts open (``gate_bias``
  2.0) and the head starts as a tape (``write_bias`` on the +1 shift, as the learned writer):
  what the tape first learns is to store each token's write in order, then where to stay,
  go back and not write.
* **What drives the head** (``work_tape_input``). ``controller`` (the default): the layer's
  controller output ``h_t``, which sees the window. ``token``: a controller of the tape's own,
  ``h'_t = GELU(W' LN(u_t))``, over the layer's input at ``t`` alone (made after the tape's
  other modules); the rest of the layer keeps the window. Driven by ``h_t``, the head can
  write the window's local guess and read it straight back; driven by ``h'_t``, what it reads
  is only what it stored (measured below).
* **Its own output projection** ``W_v``, and its modules created after all of the layer's
  others, so a seed's layer has the same initial weights with and without the tape.
* **No jumps** (since 2026-12-06; ``jumps=True`` gives the head the read heads' jump to its
  origin, as it had before). A Turing machine's work tape head moves a cell at a time, and a
  stack needs nothing else. In the sandbox (``docs/analysis/work_tape_sandbox.py``, learned
  moves, the stack dumped at the end, seeds 0-4) the head without the jump learns an exact
  stack at 5 seeds of 5, with it at 1 of 5: the failing seeds jump to the origin on some
  pushes and settle on a register of the last few values (about 68% of the tops right), a
  local optimum the straight-through gradient does not leave.
* **No content addressing; hard unless relaxed.** The head is hard from the first step (its
  straight-through gradient is exact for a hard head, ``pntm.ops.write_event_grads``), as the
  read heads that count. Hard from the start, with the jump, it was not learned (RESULTS.md,
  "A work tape beside the input tape": on stack_manipulation the gate stayed open, even with
  the tape as the only memory); the guess then, that a straight-through gradient cannot make
  a pop's two changes (a move of -1 and a shut gate) together, did not hold in the sandbox,
  where the hard head without the jump learns both. With ``relax`` (config
  ``work_tape_relax``) the head follows the layer's relax schedule: soft moves and gate
  (the memory scan over every cell, in chunks recomputed in backward,
  ``pntm.ops.memory_chunks``; cheap at training lengths) until the schedule hardens it.
* **Measured first, so off then** (RESULTS.md, "A work tape beside the input tape"; seed 0;
  "the shipped config" in this bullet and the next is the one before the work tape). With the
  jump (commit ``b0b4e37``): over the shipped config, stack_manipulation 22.0% validation
  against 37.0%, the tape's reads unused (removing them costs under 3 points) and its gate
  open at 95-100% of the tokens; modular_arithmetic_brackets 28.8% against 29.6%; as the only
  memory of a one-layer model, hard 0.0% and relaxed 0.1% on stack_manipulation. In the
  sandbox the hard tape learns an exact stack from the top after every action (3 of 3
  seeds), from a final dump of the stack when its moves are given, and, with learned moves
  from the final dump, at 1 seed of 5 with the jump and 5 of 5 without it (with the P-NTM's
  curriculum, or moves -2..2, at 2 of 3). Without the jump, in the P-NTM: as the only memory
  of a one-layer model 0.0%, 3.5% and 0.0% on stack_manipulation at seeds 0-2, the gate open
  at 92% of the tokens at seed 0; over the shipped config 49.9% against 37.0% at seed 0, but
  with its reads barely used (removing them costs under 3 points), and
  modular_arithmetic_brackets 29.4% against 29.6%: dropped by its rule.
* **The window is the trap** (2026-12-06). On stack_manipulation's own examples the sandbox's
  tape learns an exact stack at 4 seeds of 5, and with the P-NTM's window (the controller
  sees the three tokens before each one) at 0 of 3: the local view gives a guess of the top
  that the moves are never pulled away from. The one-layer P-NTM above, with ``window: 0``,
  learns stack_manipulation exactly, 100% at every test length to 500, at seeds 0-2 (with the
  window: 0.0-3.5% validation). Over the shipped config without the window it learns
  stack_manipulation (100% at seeds 0-1) but loses what the window carries:
  associative_recall 10.4% against 99.7%, binary_addition 0.0% against 66.3% (seed 0; not
  adopted, RESULTS.md, "The work tape without the window over the shipped config"). The
  trap is in what drives the head: in the one-layer model with the window kept,
  ``work_tape_input: token`` (the head's own controller over ``u_t`` alone) learns the stack
  at seeds 1 and 2 (≥ 99.2% at every test length to 500; seed 0 0.1%), while hiding the
  window from half of the training sequences (``window_dropout: 0.5``) does not (0.0% at
  seeds 0 and 1).
* **Shipped** (2026-12-06). With the window feeding only the memory (``window_scope:
  memory``: the moves, gates, state heads and this head come from a controller over ``u_t``
  alone) and 4,000 steps past the schedules at a falling rate, the shipped config with this
  tape learns stack_manipulation exactly to length 500 at seed 0 and keeps every task it
  solved before (RESULTS.md, "A work tape trained on past its schedule"); it is on in
  ``configs/pntm.yaml`` since then. Seeds 1-4 are not run yet.

``reference`` computes the same reads from the same controls with a dense memory, one step at
a time (``pntm.ops.write_events.sequential_reference``): the tests' oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.ops import fourier_heads
from pntm.ops.fourier_heads import straight_through
from pntm.ops.memory_chunks import chunked_memory_reads
from pntm.ops.scan import linear_scan
from pntm.ops.write_events import sequential_reference, written_rows


@dataclass
class WorkTapeState:
    """Recurrent state of a work tape: the tape (B, N, W) and the head's cell (B,) (long)."""

    tape: Tensor
    cell: Tensor


class WorkTape(nn.Module):
    """One work tape of a layer (see the module docstring): ``forward(h, cells)`` gives the
    reads (B, T, W) for controller outputs ``h`` (B, T, d_ff); ``initial`` and ``step`` are
    its recurrent form; ``output(read)`` its term of the layer's residual update."""

    def __init__(self, d_ff: int, d_model: int, width: int, shift_range: int,
                 write_bias: float = 2.0, jump_bias: float = -2.0, gate_bias: float = 2.0,
                 initial: float = 1e-6, horizon: int | None = 16, chunk: int = 64,
                 jumps: bool = False):
        super().__init__()
        self.shift_range, self.width, self.jumps = shift_range, width, jumps
        self.initial, self.horizon, self.chunk = initial, horizon, chunk
        n_shift = 2 * shift_range + 1
        self.to_moves = nn.Linear(d_ff, n_shift + jumps)   # shift logits (then the jump's)
        self.to_write = nn.Linear(d_ff, 2 * width + 1)     # erase, add, then the gate's
        self.to_out = nn.Linear(width, d_model)
        with torch.no_grad():
            self.to_moves.bias.zero_()
            self.to_moves.bias[shift_range + 1] = write_bias  # starts as a tape
            if jumps:
                self.to_moves.bias[-1] = jump_bias
            self.to_write.bias[-1] = gate_bias

    def controls(self, h: Tensor, temperature: float = 1.0, soft: bool = False
                 ) -> dict[str, Tensor]:
        """The head's shift (B, T, 2K+1) and jump (B, T) (zeros unless ``jumps``), and what
        it writes: ``γ e`` and ``γ a`` (B, T, W), the gate ``γ`` applied. Hard
        (straight-through one-hot shift, 0/1 jump and gate) unless ``soft``; the move and gate
        logits are divided by ``temperature`` (the layer's relax schedule), which shapes the
        soft values, or the straight-through gradient of the hard ones."""
        moves = self.to_moves(h) / temperature
        write = self.to_write(h)
        shift = moves[..., :2 * self.shift_range + 1].softmax(-1)
        jump = (torch.sigmoid(moves[..., -1]) if self.jumps
                else moves.new_zeros(moves.shape[:-1]))
        gate = torch.sigmoid(write[..., -1:] / temperature)
        if not soft:
            shift = straight_through(shift, F.one_hot(shift.argmax(-1), shift.shape[-1])
                                     .to(shift))
            if self.jumps:
                jump = straight_through(jump, (jump > 0.5).to(jump))
            gate = straight_through(gate, (gate > 0.5).to(gate))
        return {"shift": shift, "jump": jump,
                "erase": gate * torch.sigmoid(write[..., :self.width]),
                "add": gate * torch.tanh(write[..., self.width:-1])}

    def forward(self, h: Tensor, cells: int, soft: bool = False) -> Tensor:
        """Reads ``r_t = V_t[c_t]`` (B, T, W) over ``cells`` cells (the layer's ``num_cells``);
        soft: ``r_t = Σ_i w_t[i] V_t[i]`` with soft moves and gate."""
        return self.read(self.controls(h, soft=soft), cells, soft)

    def read(self, ctl: dict[str, Tensor], cells: int, soft: bool = False) -> Tensor:
        """``forward`` from the controls: hard, the value the writer left in its cell
        (``pntm.ops.write_events.written_rows``: one ``event_read`` with a read head making
        the writer's moves, so those moves get the straight-through gradients of both); soft,
        the memory scan over every cell in chunks (``pntm.ops.memory_chunks``), the same two
        heads' weightings from the Fourier scan."""
        shift, jump = ctl["shift"][:, :, None], ctl["jump"][:, :, None]
        if soft:
            phases = fourier_heads.shift_phases(self.shift_range, cells, shift.device)
            a, b = fourier_heads.location_coefficients(shift, jump, phases)
            start = fourier_heads.start_spectrum(cells, a.device).expand_as(b[:, 0])
            spectra = linear_scan(a, b, start)
            contents, _ = chunked_memory_reads(
                torch.cat([spectra, spectra], 2), ctl["erase"], ctl["add"],
                ctl["add"].new_zeros(cells, 1), self.initial, self.chunk)
            return contents[:, :, 0]
        values, _, _ = written_rows(shift, jump, ctl["erase"], ctl["add"],
                                    self.no_tags(ctl["add"]), self.initial, cells, self.horizon)
        return values

    def reference(self, ctl: dict[str, Tensor], cells: int) -> Tensor:
        """The reads of ``read`` (hard or soft controls) by the dense recurrence, one step at
        a time, differentiable by autograd: the tests' oracle."""
        shift, jump = ctl["shift"][:, :, None], ctl["jump"][:, :, None]
        contents, _ = sequential_reference(torch.cat([shift, shift], 2),
                                           torch.cat([jump, jump], 2), ctl["erase"],
                                           ctl["add"], self.no_tags(ctl["add"]),
                                           self.initial, cells)
        return contents[:, :, 0]

    @staticmethod
    def no_tags(like: Tensor) -> Tensor:
        """The tape's cells carry no address tags: one zero tag for every cell (a (1, 1)
        table; the ops take a table, and the tags they read are dropped)."""
        return like.new_zeros(1, 1)

    def output(self, read: Tensor) -> Tensor:
        """The tape's term of the layer's residual update, ``W_v r_t``."""
        return self.to_out(read)

    # ---- recurrent mode ----------------------------------------------------------------------
    def initial_state(self, batch_size: int, cells: int, device) -> WorkTapeState:
        """The blank tape (every cell ``m_0``) and the head on cell -1."""
        return WorkTapeState(tape=torch.full((batch_size, cells, self.width), self.initial,
                                             dtype=self.to_out.weight.dtype, device=device),
                             cell=torch.full((batch_size,), cells - 1, device=device))

    def step(self, ctl: dict[str, Tensor], state: WorkTapeState) -> Tensor:
        """One token (controls of shape (B, 1, ·)): moves the head, writes its cell, reads it
        (B, 1, W). Updates ``state`` in place: O(W) work, whatever the tape's size."""
        tape = state.tape
        move = ctl["shift"][:, 0].argmax(-1) - self.shift_range
        jumped = ctl["jump"][:, 0] > 0.5
        cell = torch.remainder(move + torch.where(jumped, 0, state.cell), tape.shape[1])
        rows = torch.arange(tape.shape[0], device=tape.device)
        tape[rows, cell] = tape[rows, cell] * (1 - ctl["erase"][:, 0]) + ctl["add"][:, 0]
        state.cell = cell
        return tape[rows, cell][:, None]
