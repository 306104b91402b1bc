"""How many memory cells a P-NTM layer uses for an input length: the one formula that the
model (``PNTMConfig.num_cells``) and the memory estimate of ``pntm.models.rules`` share."""

from __future__ import annotations

import math

FAST_FFT_PRIMES = (2, 3, 5)


def fast_fft_size(n: int) -> bool:
    """Whether ``n`` has no prime factor but 2, 3 and 5: the sizes every FFT library transforms
    fastest (pocketfft, cuFFT)."""
    for p in FAST_FFT_PRIMES:
        while n % p == 0:
            n //= p
    return n == 1


def memory_cells(length: int, shift_range: int, periods, min_cells: int) -> int:
    """Memory cells for ``length`` tokens: a multiple of ``lcm(periods)`` that is at least
    ``shift_range * length + 1`` and ``min_cells``, so no head can wrap around onto cells it has
    visited and a head left of cell 0 keeps its residues; of those, the smallest that is
    ``lcm(periods)`` times a number with no prime factor but 2, 3 and 5.

    The last condition is for speed, and changes no read. A head whose moves sum to ``p``
    (``-1 - K·T <= p <= K·T``) reads cell ``p mod N``: the token written there if it is a
    written cell, else ``m_0``, with the tag of residue ``p mod lcm(periods)`` either way; that
    is the same for every such ``N``, unless ``p < 0`` comes round onto a written cell, which
    takes walking left at ``K`` cells a step for ``K/(K+1)`` of the sequence and happens at
    a ``T`` that depends on ``N`` at any size (tested: outputs and gradients at two sizes).
    The relaxed heads' weightings are a Fourier scan over the ``N`` cells (``rfft``/``irfft`` of
    length ``N``), and ``2T + 1`` is often a multiple of a large prime. Measured on this
    project's CPU, one thread: ``rfft`` then ``irfft`` of 16,000 rows took 102.7 ms at ``N`` =
    201 (3 · 67) and 7.6 ms at 216; a relaxed training step of the shipped config at T = 100
    (``N`` 201 -> 216), 1.58 s -> 1.27 s (medians of 4, interleaved, beside two trainings)."""
    quantum = math.lcm(*periods) if periods else 1
    need = max(min_cells, shift_range * length + 1)
    factor = -(-need // quantum)
    while not fast_fft_size(factor):
        factor += 1
    return factor * quantum
