"""The events of :mod:`pntm.ops.write_events`: per sequence, the writes of a hard learned head
and the reads of the hard read heads merged into one list sorted by (cell, time, write before
read); one segmented scan gives each cell's value after every event, a reverse one its adjoint,
and a search answers a query for any (time, cell). The module docstring of
:mod:`pntm.ops.write_events` derives them.

Keys: cell ``c`` owns ``P = 2T + 2`` consecutive keys; at time ``t`` a read that comes before
the token's write (``read_before_write``: it sees ``M_{t-1}[c]``) has ``cP + 2t + 1``, the
write ``cP + 2t + 2``, a read after it (``M_t[c]``) ``cP + 2t + 3``. A read before the write
at ``t`` and a read after the write at ``t - 1`` share a key: they read the same value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pntm.ops.scan import linear_scan


def _rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[b, index[b, ...]]`` for a table (B, R, C) and long indices (B, ...): (B, ..., C).
    ``index_select`` on flat rows is several times faster than ``gather`` on CPU."""
    B, R, C = table.shape
    flat = index.reshape(B, -1) + torch.arange(B, device=index.device)[:, None] * R
    return table.reshape(B * R, C).index_select(0, flat.flatten()).view(*index.shape, C)


def _times(y: Tensor) -> Tensor:
    """The time of each query: its index along dim 1, broadcast to the shape of ``y``."""
    steps = torch.arange(y.shape[1], device=y.device)
    return steps.view(1, -1, *([1] * (y.dim() - 2))).expand_as(y)


class _Events:
    """The writes and reads of each sequence merged and sorted by (cell, time, reads before
    the write, the write, reads after it): the keys of the module docstring. The cell's value
    after every event comes from one segmented scan (a read changes nothing). ``before``
    (H,) bool, or None (all False): which read heads read before the token's write."""

    def __init__(self, write_cell: Tensor, read_cell: Tensor, erase: Tensor, add: Tensor,
                 initial: float, before: Tensor | None = None):
        B, T, W = add.shape
        self.T, self.initial, self.span = T, initial, 2 * T + 2
        self.before = (torch.zeros(read_cell.shape[-1], dtype=torch.bool, device=add.device)
                       if before is None else before)
        steps = torch.arange(T, device=add.device)
        keys = torch.cat([self.write_key(write_cell, steps),
                          self.read_key(read_cell, steps[:, None]).flatten(1)], 1)
        # ties: reads of one cell at one time (or before a write and after the one before),
        # which read the same value
        self.keys, self.order = keys.sort(dim=1)
        self.n = n = keys.shape[1]
        self.padded_keys = F.pad(self.keys, (0, 1), value=-1)
        # cell of event k at column k + 1, with -1 before the first and after the last event
        self.cell = F.pad(torch.div(self.keys, self.span, rounding_mode="floor"), (1, 1),
                          value=-1)
        self.first = (self.cell[:, 1:-1] != self.cell[:, :-2])[..., None]
        # where each event (writes, then reads, in time order) sits in key order
        self.inverse = torch.empty_like(self.order).scatter_(
            1, self.order, torch.arange(n, device=add.device).expand_as(self.order))
        # a read keeps its cell (decay 1, input 0): only the writes' rows are placed
        self.keep = self._placed(1 - erase, 1.0)
        added = self._placed(add, 0.0)
        after = linear_scan(torch.where(self.first, 0.0, self.keep),
                            torch.where(self.first, added + self.keep * initial, added))
        self.after = torch.cat([after, torch.full_like(after[:, :1], initial)], 1)  # row n: m_0

    def write_key(self, cell: Tensor, time: Tensor) -> Tensor:
        """The key of a write at (time, cell): ``cP + 2t + 2``."""
        return cell * self.span + 2 * time + 2

    def read_key(self, cell: Tensor, time: Tensor) -> Tensor:
        """The keys of the read heads' reads at (time, cell), heads along dim 2 of ``cell``
        (B, T, H, ...): ``cP + 2t + 1`` before the write, ``+ 3`` after it."""
        offset = 3 - 2 * self.before.long()
        return (cell * self.span + 2 * time
                + offset.view(-1, *([1] * (cell.dim() - 3))))

    def _placed(self, rows: Tensor, fill: float, reads: bool = False) -> Tensor:
        """A (B, n, W) table in key order holding ``rows`` (B, m, W) at the places of the
        writes (``m = T``) or of the reads (``reads``), and ``fill`` at every other event."""
        B, m, W = rows.shape
        places = self.inverse[:, self.T:] if reads else self.inverse[:, :self.T]
        flat = (places + torch.arange(B, device=rows.device)[:, None] * self.n).flatten()
        table = rows.new_full((B * self.n, W), fill)
        return table.index_copy_(0, flat, rows.reshape(B * m, W)).view(B, self.n, W)

    def position(self, index: Tensor) -> Tensor:
        """Where the events in time order (indices into writes, then reads) sit in key order."""
        return torch.gather(self.inverse, 1, index.reshape(index.shape[0], -1)).view(index.shape)

    def locate(self, time: Tensor, cell: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For (time τ, cell y) queries (B, ...): ``k0``, the first event at or after the place
        of a write at (τ, y); ``hit``, whether that is such a write; ``k1 = k0 + hit``, the first
        event of any cell after every event of (τ, y) but its reads."""
        B = cell.shape[0]
        query = self.write_key(cell, time).reshape(B, -1)
        k0 = torch.searchsorted(self.keys, query)
        hit = torch.gather(self.padded_keys, 1, k0) == query
        return k0.view(cell.shape), hit.view(cell.shape), (k0 + hit).view(cell.shape)

    def read_position(self, time: Tensor, cell: Tensor) -> Tensor:
        """The first event at or after a read at (τ, y) by the read head of dim 2 of ``cell``
        (B, T, H, ...): for a read after the write, ``k1`` of ``locate``."""
        query = self.read_key(cell, time).reshape(cell.shape[0], -1)
        return torch.searchsorted(self.keys, query).view(cell.shape)

    def _cell_at(self, k: Tensor) -> Tensor:
        """The cell of event ``k`` (-1 for ``k = n``): (B, ...)."""
        return torch.gather(self.cell, 1, (k + 1).reshape(k.shape[0], -1)).view(k.shape)

    def memory(self, k1: Tensor, cell: Tensor) -> Tensor:
        """``M_τ[y]``, the value of cell ``y`` after time ``τ`` (``k1`` from ``locate``):
        after event ``k1 - 1`` if that is at ``y``, else ``m_0``. (B, ..., W)."""
        return _rows(self.after, torch.where(self._cell_at(k1 - 1) == cell, k1 - 1, self.n))

    def backward(self, grad_contents: Tensor, erase: Tensor) -> None:
        """The reverse scan ``ν_k = decay_k ν_{k+1} + input_k`` (reads add their gradient, a
        write multiplies by ``1 - e``; 0 after a cell's last event), and for every event ``k``
        the rows ``U_k = [ν_k, ν_k ⊙ M⁻_k]`` and ``V_k = [ν_{k+1}, ν_{k+1} ⊙ M⁻_k]`` (``M⁻_k``
        the cell's value before event ``k``; ``ν_{k+1} = 0`` at the cell's last event): what
        the write head's weight gradient needs after events ``k`` and at a write ``k``."""
        B, T, W = erase.shape
        n = self.n
        inputs = self._placed(grad_contents.reshape(B, n - T, W), 0.0, reads=True)
        last = (self.cell[:, 1:-1] != self.cell[:, 2:])[..., None]
        nu = linear_scan(self.keep.masked_fill(last, 0.0).flip(1), inputs.flip(1)).flip(1)
        # M⁻_k: the value after event k - 1 (row 0 is never used: event 0 is a cell's first)
        before = torch.where(self.first, self.initial, self.after[:, :n].roll(1, 1))
        # rows 0..n-1: U_k; rows n..2n-1: V_k; row 2n: zeros (filled in place, no copies)
        rows = nu.new_empty(B, 2 * n + 1, 2 * W)
        U, V = rows[:, :n], rows[:, n:2 * n]
        U[..., :W] = nu
        torch.mul(nu, before, out=U[..., W:])
        V[:, :n - 1, :W] = nu[:, 1:]
        V[:, n - 1, :W] = 0.0
        V[..., :W].masked_fill_(last, 0.0)
        torch.mul(V[..., :W], before, out=V[..., W:])
        rows[:, 2 * n] = 0.0
        self.adjoint_rows = rows

    def write_rows(self, k0: Tensor, hit: Tensor, k1: Tensor, cell: Tensor) -> Tensor:
        """``[μ_τ[y], μ_τ[y] ⊙ M_{τ-1}[y]]`` (B, ..., 2W) for queries located by ``locate``: V at
        a write at (τ, y), else U at the next event of ``y`` (zeros when there is none)."""
        index = torch.where(hit, self.n + k0,
                            torch.where(self._cell_at(k1) == cell, k1, 2 * self.n))
        return _rows(self.adjoint_rows, index)
