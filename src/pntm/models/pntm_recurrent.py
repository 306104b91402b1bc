"""The recurrent mode of a P-NTM layer: its state and one token at a time.

``RecurrentMode`` holds ``PNTMLayer``'s ``init_state`` and ``step``: the scans of
``pntm.models.pntm`` in their sequential form, sharing every weight and formula with the
parallel mode (tested equal). Hard heads are carried as integer cells, O(1) state and work per
head and token; soft heads as their spectra. It is a mixin: it uses the layer's attributes,
modules and reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from pntm.models.pntm_reads import ContentSource
from pntm.models.work_tape import WorkTapeState
from pntm.ops.hard_heads import landing_cells
from pntm.ops.scan import scan_step


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
    tape: Tensor | None = None  # (B, N, W): the tape's cells m_0 + v_j as the parallel mode
    #                             computes them, for content landings (jump_to: content): an
    #                             argmax between equal cells must see them exactly equal
    work: WorkTapeState | None = None  # the work tape and its head's cell (updated in place)


class RecurrentMode:
    """``PNTMLayer``'s recurrent mode (see the module docstring)."""

    def init_state(self, batch_size: int, max_length: int, device) -> LayerState:
        """The state before the first token of sequences of up to ``max_length`` tokens: the
        memory size is ``num_cells(max_length)``, as ``forward`` takes at that length, so feed
        at most ``max_length`` tokens (beyond, heads may wrap onto visited cells). Hard heads
        (``eval()``, or training past the relax phase) are carried as integer cells."""
        cells = self.num_cells(max_length)
        memory = self.blank_memory(cells, device).expand(batch_size, -1, -1).clone()
        previous = torch.zeros(batch_size, self.window, self.norm.normalized_shape[0],
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
        tape = torch.zeros_like(memory) if self.to_landing is not None else None
        work = (self.work_tape.initial_state(batch_size, cells, device)
                if self.work_tape is not None else None)
        if self.uses_positions():
            positions = torch.full((batch_size, self.heads), cells - 1, device=device)
            return LayerState(head_spectra=None, memory=memory, previous=previous,
                              positions=positions, keys=keys, machine=machine,
                              written_at=written_at, tape=tape, work=work)
        spectra = self.start_spectrum(cells, device).expand(batch_size, self.heads, -1).clone()
        return LayerState(head_spectra=spectra, memory=memory, previous=previous, keys=keys,
                          machine=machine, written_at=written_at, tape=tape, work=work)

    def step(self, u: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        """Recurrent mode, one token: ``u`` is (B, 1, d_model); returns the output (B, 1,
        d_model), equal to ``forward``'s at this position, and the next state (with hard heads
        the memory is updated in place: the old state is consumed)."""
        cells = state.memory.shape[1]
        ctl = self.controls(u, state.previous[:, None], state.machine)
        if state.work is not None:  # the work tape's step (its state updated in place)
            ctl["work_read"] = self.work_tape.step(ctl["work"], state.work)
        if state.tape is not None:  # over the tape so far, this token's cell included
            state.tape[:, state.length] = self.initial_memory + self.tape_values(ctl)[:, 0]
            ctl["landing"] = self.landing_weights(ctl, state.tape[:, :state.length + 1], False)
        if state.positions is not None:
            return self.position_step(u, ctl, state)
        a, b = self.location_coefficients(ctl, cells, state.length)
        spectra = scan_step(a[:, 0], b[:, 0], state.head_spectra)
        weights = torch.fft.irfft(spectra, n=cells, dim=-1)[:, None]
        alpha, beta = self.memory_coefficients(ctl, weights[:, :, 0])
        memory = scan_step(alpha[:, 0], beta[:, 0], state.memory)
        if state.written_at is not None:  # a hard learned writer's cell: its weight's argmax
            state = dataclasses.replace(state, written_at=state.written_at.clone())
            self.mark_written(state, weights[:, 0, 0].argmax(-1))
        out = self.output(u, ctl, weights, memory[:, None], self.step_tape(ctl, state, memory),
                          state.memory)
        return out, LayerState(head_spectra=spectra, memory=memory,
                               previous=self.remember(u, state), length=state.length + 1,
                               keys=state.keys, machine=self.machine_state(ctl),
                               written_at=state.written_at, tape=state.tape, work=state.work)

    def position_step(self, u: Tensor, ctl: dict[str, Tensor], state: LayerState):
        """One token with hard heads carried as integer cells: O(W) work per head, whatever the
        memory size (the memory is updated in place, so the old state is consumed). Equal to
        the Fourier step with one-hot weightings: ``c_t = k_t + (1 - j_t) c_{t-1}`` (mod N),
        only the written row of ``M`` changes, and a read is one row."""
        memory = state.memory
        cells = memory.shape[1]
        moves = ctl["shift"][:, 0].argmax(-1) - self.shift_range          # (B, H)
        jumped = ctl["jump"][:, 0] > 0.5
        landing = state.length if self.jump_to == "here" else 0  # the tape writer's cell
        if "landing" in ctl:  # jump_to content: the cell each head's content query picks
            landing = landing_cells(ctl["landing"][:, 0])
        positions = torch.remainder(moves + torch.where(jumped, landing, state.positions), cells)
        rows = torch.arange(memory.shape[0], device=memory.device)
        write = positions[:, 0]
        # read_before_write: the head tied to the writer (the last) reads before the write
        tied = memory[rows, positions[:, -1]].clone() if self.read_before_write else None
        memory[rows, write] = (memory[rows, write] * (1 - ctl["erase"][:, 0])
                               + ctl["add"][:, 0])
        if state.written_at is not None:
            self.mark_written(state, write)
        read = positions[:, 1:]
        contents = memory[rows[:, None], read]                             # (B, H_read, W)
        if tied is not None:
            contents = torch.cat([contents[:, :-1], tied[:, None]], dim=1)
        table = self.address_table(u.device)
        tags = table[read % table.shape[0]]
        out = self.residual(u, ctl, contents[:, None], tags[:, None],
                            self.step_tape(ctl, state, memory))
        return out, LayerState(head_spectra=None, memory=memory,
                               previous=self.remember(u, state), positions=positions,
                               length=state.length + 1, keys=state.keys,
                               machine=self.machine_state(ctl), written_at=state.written_at,
                               tape=state.tape, work=state.work)

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
        """The last ``window`` inputs after input ``u`` (B, 1, d), newest first."""
        return torch.cat([u, state.previous], dim=1)[:, :self.window]

    def step_tape(self, ctl: dict[str, Tensor], state: LayerState, memory: Tensor
                  ) -> ContentSource | None:
        """The tape as content heads see it in a step: the cells written so far, this token's
        included (its key is written into ``state.keys`` in place)."""
        if not self.content_heads:
            return None
        if self.content_over_writes:  # the written cells, earliest write first (ties as forward)
            written = state.written_at
            order = torch.where(written >= 0, written, written.shape[1]).argsort(dim=1)
            rows = torch.gather(memory, 1, order[..., None].expand(-1, -1, memory.shape[-1]))
            tags = self.addresses(memory.shape[1], memory.device)[order]
            return ContentSource(rows, rows, False, tags,
                                 (torch.gather(written, 1, order) >= 0)[:, None])
        length = state.length + 1
        if self.content_match_is_cell():
            return ContentSource(memory[:, :length], memory[:, :length], False)
        state.keys[:, state.length] = ctl["key"][:, 0]
        if self.match_context:  # strictly earlier cells (cell 0 for the first token)
            length = max(length - 1, 1)
        return ContentSource(memory[:, :length], state.keys[:, :length], False)
