"""How many memory cells a P-NTM layer uses for an input length: the one formula that the
model (``PNTMConfig.num_cells``) and the memory estimate of ``pntm.models.rules`` share."""

from __future__ import annotations

import math


def memory_cells(length: int, shift_range: int, periods, min_cells: int) -> int:
    """Memory cells for ``length`` tokens: the smallest multiple of ``lcm(periods)`` that is at
    least ``shift_range * length + 1`` and ``min_cells``, so no head can wrap around onto cells
    it has visited and a head left of cell 0 keeps its residues."""
    quantum = math.lcm(*periods) if periods else 1
    need = max(min_cells, shift_range * length + 1)
    return -(-need // quantum) * quantum
