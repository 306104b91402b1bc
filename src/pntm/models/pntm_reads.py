"""The reads of a P-NTM layer: memory, address tags, content heads, the residual update.

``LayerReads`` holds the methods of ``pntm.models.pntm_layer.PNTMLayer`` that turn head
weightings (or positions) and the memory into the layer's output, in both modes (equations 3-5
of ``pntm.models.pntm``). It is a mixin: it has no state of its own and uses the layer's
attributes and modules.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from pntm.ops import content_addressing, fourier_heads
from pntm.ops.hard_heads import hard_cells
from pntm.ops.memory_chunks import scan_reads
from pntm.ops.write_events import (event_read, live_writes, soft_reads_over_writes,
                                   written_rows)


class ContentSource(NamedTuple):
    """What content heads read (``LayerReads.content_reads``' arguments after ``ctl``): the
    ``rows`` (B, J, W) they may read, the ``keys`` the queries are compared with, whether query
    ``t`` sees only rows ``j ≤ t`` (``causal``: the parallel tape), and for a learned writer the
    rows' tags (B, J, A) and which rows each step may read (``allowed``, (B, T, J))."""

    rows: Tensor
    keys: Tensor
    causal: bool
    tags: Tensor | None = None
    allowed: Tensor | None = None


class LayerReads:
    """Memory and reads of ``PNTMLayer`` (see the module docstring)."""

    def blank_memory(self, cells: int, device) -> Tensor:
        """``M_0``: every cell holds the same small constant (N, W)."""
        return torch.full((cells, self.width), self.initial_memory, device=device)

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

    def output(self, u: Tensor, ctl: dict[str, Tensor], weights: Tensor, memory: Tensor,
               source: ContentSource | None, start: Tensor | None = None) -> Tensor:
        """Reads ``r^h_t = Σ_i w^h_t[i] M_t[i]`` and the residual update; ``start`` (B, N, W) is
        the memory before the first of these steps, which the head tied to the writer reads
        from with ``read_before_write`` (``pntm.ops.memory_chunks.scan_reads``)."""
        read_weights = weights[:, :, 1:]
        contents = scan_reads(read_weights, memory, start, self.read_before_write)
        return self.residual(u, ctl, contents, self.tags(read_weights), source)

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
            allowed=allowed, codes=self.content_codes)

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
                 tags: Tensor, source: ContentSource | None = None) -> Tensor:
        """``u + W_o [h, r^1, …, r^H]``, each read being its content and its address tag; with
        content heads, ``source`` is what they read."""
        if self.content_heads:
            extra_contents, extra_tags = self.content_reads(ctl, *source)
            contents = torch.cat([contents, extra_contents], dim=2)
            tags = torch.cat([tags, extra_tags], dim=2)
        reads = [ctl["h"], torch.cat([contents, tags], dim=-1).flatten(2)]
        if self.machine is not None:
            reads.append(self.machine.read(ctl["states"]).flatten(2))
        out = u + self.out(torch.cat(reads, dim=-1))
        if self.work_tape is not None:
            out = out + self.work_tape.output(ctl["work_read"])
        return out

    def tape_output(self, u: Tensor, ctl: dict[str, Tensor], weights: Tensor) -> Tensor:
        """Reads of a tape writer without materializing ``M_t`` for every ``t`` (``weights``:
        the read heads' only): the memory scan's closed form,
        ``pntm.ops.fourier_heads.tape_closed_form_reads``, equal to the scan (tested forward and
        backward against ``memory_path: scan``)."""
        contents = fourier_heads.tape_closed_form_reads(weights, self.tape_values(ctl),
                                                        self.initial_memory)
        return self.residual(u, ctl, contents, self.tags(weights), self.parallel_tape(ctl))

    def parallel_tape(self, ctl: dict[str, Tensor]) -> ContentSource | None:
        """The tape as content heads see it in parallel mode: cell ``j`` holds
        ``m_0 + v_j`` (and its key) from step ``j`` on (causal)."""
        if not self.content_heads:
            return None
        rows = self.initial_memory + self.tape_values(ctl)
        return ContentSource(rows, rows if self.content_match_is_cell() else ctl["key"], True)

    def content_source(self, ctl: dict[str, Tensor], cells: int) -> ContentSource | None:
        """What content heads read in parallel mode (None without content heads): the tape, or
        a learned writer's writes."""
        return (self.parallel_tape(ctl) if self.tape_writer
                else self.learned_content_source(ctl, cells))

    def learned_content_source(self, ctl: dict[str, Tensor], cells: int
                               ) -> ContentSource | None:
        """What content heads read under a hard learned writer, in parallel mode: its writes
        (``pntm.ops.write_events.written_rows``: the value each left in its cell, and the cell's
        tag) and, per step, which of them are still in memory (``live_writes``: not yet
        overwritten). The memory at ``t`` is exactly those values on their cells, so this is the
        NTM's content addressing over the written cells, without the ``B·T·N·W`` memory."""
        if not self.content_heads:
            return None
        return self.writes_source(written_rows(
            ctl["shift"], ctl["jump"], ctl["erase"], ctl["add"],
            self.address_table(ctl["h"].device), self.initial_memory, cells, self.jump_horizon))

    def writes_source(self, written: tuple[Tensor, Tensor, Tensor] | None
                      ) -> ContentSource | None:
        """What content heads read under a hard learned writer, from what it left behind
        (``written_rows``' rows, tags and cells): its writes, each while not overwritten
        (``live_writes``). None without content heads."""
        if not self.content_heads or written is None:
            return None
        rows, tags, cell = written
        return ContentSource(rows, rows, False, tags, live_writes(cell))

    def relaxed_reads_over_writes(self, u: Tensor, ctl: dict[str, Tensor], cells: int) -> Tensor:
        """Parallel mode in the relax phase when the learned writer is hard (it stays hard
        under content heads) and some read heads are soft: no ``B·T·N·W`` memory.

        One ``event_read`` serves the writer, a read that follows it (the value each write
        left, ``written_rows``) and the hard read heads; the soft heads' weightings come from
        the Fourier scan and read the writes still in memory
        (``pntm.ops.write_events.soft_reads_over_writes``). The same reads as the whole
        memory scan (``memory_path: scan``, tested); the difference is in the writer's
        straight-through gradient, which comes from the hard reads and the follower only."""
        hard_heads, soft_heads = self.hard_read_index, self.soft_read_index
        contents, tags, written = self.write_events(ctl, cells, hard_heads, True)
        rows, _, cell = written
        weights = torch.fft.irfft(self.head_spectra(ctl, cells, soft_heads), n=cells,
                                  dim=-1)                                    # (B, T, H_soft, N)
        soft_contents = soft_reads_over_writes(weights, rows, cell, self.initial_memory)
        # back in head order: hard heads' reads, then the soft ones', permuted
        contents = torch.cat([contents, soft_contents], 2)[:, :, self.read_order]
        tags = torch.cat([tags, self.tags(weights)], 2)[:, :, self.read_order]
        return self.residual(u, ctl, contents, tags, self.writes_source(written))

    def write_events(self, ctl: dict[str, Tensor], cells: int, read_heads: Tensor, follow: bool
                     ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor] | None]:
        """One ``event_read`` for a hard learned writer and the hard read heads
        ``read_heads`` (indices into the heads): their contents and tags (B, T, H, ·), and with
        ``follow`` what the writer left behind (``written_rows``: the value of its cell after
        each write, that cell's tag, the cells), from a read in the same call that makes the
        writer's moves, else None. One sorted event list serves them all."""
        writer = read_heads.new_zeros(1 + int(follow))
        heads = torch.cat([writer, read_heads])
        # read_before_write: the head tied to the writer (the last) reads M_{t-1}[c_t]
        before = (heads[1:] == self.heads - 1) if self.read_before_write else None
        contents, tags = event_read(ctl["shift"][:, :, heads], ctl["jump"][:, :, heads],
                                    ctl["erase"], ctl["add"], self.address_table(ctl["h"].device),
                                    self.initial_memory, cells, self.jump_horizon, before)
        if not follow:
            return contents, tags, None
        cell = hard_cells(ctl["shift"][:, :, 0], ctl["jump"][:, :, 0], cells)
        return contents[:, :, 1:], tags[:, :, 1:], (contents[:, :, 0], tags[:, :, 0], cell)

    def content_match_is_cell(self) -> bool:
        """Whether content heads compare their queries with the cells' contents themselves."""
        return not (self.match_keys or self.match_context)

    def tape_values(self, ctl: dict[str, Tensor]) -> Tensor:
        """``v_j = a_j - m_0 e_j``: what token ``j`` adds to its cell of the tape (B, T, W)."""
        return ctl["add"] - self.initial_memory * ctl["erase"]
