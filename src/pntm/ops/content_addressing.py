"""Content addressing over the written cells: the weightings of P-NTM's content heads (pure functions).

A content head (``content_heads`` per layer) compares a query with every written cell (on the
tape, cells ``j ≤ t``; under a learned writer, the cells it has written, each holding its
last write), by cosine similarity scaled by a strength, as the NTM's content addressing does::

    c^h_t = softmax_{j ≤ t}(β_t cos(q_t, M[j])),   q_t = W_q h_t,   β_t = softplus(W_β h_t)

(hard: the argmax, straight-through; exact ties go to the earliest written cell), and the layer reads
``[M[j], A[j]]`` with it like a location head. What the query is compared with is
``content_match``:

* ``content``: the cell's content ``M[j]`` itself;
* ``key`` (tape writer only, as ``context``): a key ``k_j = W_k h_j`` written with each cell,
  so that a cell's value does not move its address;
* ``context`` (needs a ``window``): the inputs before the cell. The key of cell ``j`` is a
  projection of the ``k = window`` inputs before it, and the query at ``t`` is the same
  projection of the ``k`` inputs before ``t``::

      k_j = W_k [LN(u_{j-1}), …, LN(u_{j-k})],   q_t = k_t,   over cells j < t

  so the head finds the earlier cell whose preceding inputs are exactly the ones preceding
  ``t`` (an induction head, Olsson et al. 2022) and reads what was written there. Because query
  and key are one function of the same inputs, a repeated context has cosine exactly 1 and
  every other context less, from the first step and at any length: the argmax is right by
  construction and training only has to learn what to write and how to use the read (the
  prototype comparison of the three choices is in docs/measurements.md).

**Discrete codes** (``content_codes: g``, optional, any ``content_match``): two learned
functions (the query and the key) agree only approximately, and among hundreds of cells an
approximate match loses to a near miss (associative recall's wrong answers are keys one letter
from the query, RESULTS.md). With codes, query and key are each cut into ``g`` groups of
``n = W/g`` numbers, and every group becomes a centred code: while the heads relax, the
group's softmax at their temperature, which sharpens as the temperature falls; when the head is
hard, the one-hot of its largest entry::

    code(x)_{g,i} = softmax_k(x_{g,k} / τ)_i - 1/n      (soft)
    code(x)_{g,i} = [i = argmax_k x_{g,k}] - 1/n        (hard)

Two hard codes have cosine ``(A - g/n) / (g - g/n)`` for ``A`` groups whose largest entries
agree; it is computed from the count ``A`` (exact, so equal matches tie exactly in every mode)
with the gradient of the soft codes' cosine at temperature 1 (straight-through). So a query
matches a key exactly once their largest entries agree group by group, however far apart their
values are, and a key one group off scores less at any length; the magnitudes below a group's
maximum do not move the match, so a cell's content can hold a value beside its code. Centring
makes a flat soft code the zero vector (no preference) rather than one that matches every
other, so the soft phase learns the match as a plain cosine does. A general bias (a learned
discrete hash, as in product quantization), not a fact about a task; untrained, the codes of a
query and of its key are unrelated.

The layer (``pntm.models.pntm``) computes queries, strengths and keys, and gathers the reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pntm.ops.fourier_heads import straight_through


def _dots(query: Tensor, keys: Tensor) -> Tensor:
    """Dot products (B, T, H, J) of queries (B, T, H, W) with keys (B, J, W) or (B, J, H, W)."""
    pattern = "bthw,bjhw->bthj" if keys.dim() == 4 else "bthw,bjw->bthj"
    return torch.einsum(pattern, query, keys)


def _cosines(query: Tensor, keys: Tensor) -> Tensor:
    """Cosine similarities (B, T, H, J), shaped as ``_dots``."""
    return _dots(F.normalize(query, dim=-1), F.normalize(keys, dim=-1))


def group_codes(x: Tensor, groups: int, temperature: float = 1.0) -> Tensor:
    """``x`` (…, W) with each of its ``groups`` groups of ``n = W / groups`` numbers replaced by
    its soft centred code (module docstring): the group's softmax at ``temperature``, minus
    ``1/n``."""
    grouped = x.unflatten(-1, (groups, x.shape[-1] // groups))
    return ((grouped / temperature).softmax(-1) - 1.0 / grouped.shape[-1]).flatten(-2)


def code_similarity(query: Tensor, keys: Tensor, groups: int, temperature: float, hard: bool
                    ) -> Tensor:
    """Cosines (B, T, H, J) of the codes of queries (B, T, H, W) and keys (B, J, W) or
    (B, J, H, W), in ``groups`` groups (module docstring): of the soft codes at
    ``temperature``; with ``hard``, of the one-hot codes, from the count of groups that agree,
    with the soft codes' gradient."""
    soft = _cosines(group_codes(query, groups, temperature), group_codes(keys, groups, temperature))
    if not hard:
        return soft
    n = query.shape[-1] // groups

    def one_hots(x: Tensor) -> Tensor:
        return F.one_hot(x.unflatten(-1, (groups, n)).argmax(-1), n).flatten(-2).to(soft)

    agree = _dots(one_hots(query), one_hots(keys))   # whole numbers, exact
    return straight_through(soft, (agree - groups / n) / (groups - groups / n))


def content_scores(query: Tensor, strength: Tensor, keys: Tensor, causal: bool,
                   first: int = 0, origin: Tensor | None = None) -> Tensor:
    """Scores ``β cos(q, k_j)`` (B, T, H, J) of queries (B, T, H, W) with strengths (B, T, H)
    against keys (B, J, W), or per head (B, J, H, W), ``-inf`` on the cells ``j > t`` when
    ``causal`` (as ``content_weights``); ``first``: the time of the first query (a chunk);
    ``origin`` (B, T, H): a logit added to cell 0's score (a prior for the origin)."""
    scores = strength[..., None] * _cosines(query, keys)
    if origin is not None:
        scores = torch.cat([scores[..., :1] + origin[..., None], scores[..., 1:]], dim=-1)
    return _masked(scores, causal, False, None, first)


def _masked(scores: Tensor, causal: bool, strictly_earlier: bool, allowed: Tensor | None,
            first: int = 0) -> Tensor:
    """``scores`` (B, T, H, J) with ``-inf`` on the cells hidden from each query."""
    if causal:
        T, J = scores.shape[1], scores.shape[-1]
        times = torch.arange(first, first + T, device=scores.device)[:, None]
        cells = torch.arange(J, device=scores.device)[None, :]
        future = cells >= times if strictly_earlier else cells > times
        future[:, 0] &= times[:, 0] > 0  # cell 0 stays visible at t = 0
        scores = scores.masked_fill(future[None, :, None, :], float("-inf"))
    if allowed is not None:
        scores = scores.masked_fill(~allowed[:, :, None, :], float("-inf"))
    return scores


def first_near_max(scores: Tensor, tolerance: float) -> Tensor:
    """The earliest cell (long, (B, T, H)) whose score is within ``tolerance`` of the largest:
    an argmax whose ties, and near-ties that rounding made, go to the earliest cell."""
    near = scores >= scores.amax(-1, keepdim=True) - tolerance
    return near.to(torch.uint8).argmax(-1)  # argmax returns the first of equal values


def nearest_cells(query: Tensor, strength: Tensor, keys: Tensor, causal: bool,
                  tolerance: float, chunk: int = 128, origin: Tensor | None = None) -> Tensor:
    """``first_near_max`` of ``content_scores`` (B, T, H), a chunk of ``chunk`` queries at a
    time: a hard content weighting's cells without its (B, T, H, J) weightings (no
    gradient)."""
    cells = []
    for t in range(0, query.shape[1], chunk):
        seen = keys[:, :t + chunk] if causal else keys  # a causal chunk sees no later cell
        part = None if origin is None else origin[:, t:t + chunk]
        cells.append(first_near_max(content_scores(query[:, t:t + chunk],
                                                   strength[:, t:t + chunk], seen, causal,
                                                   first=t, origin=part), tolerance))
    return torch.cat(cells, dim=1)


def content_weights(query: Tensor, strength: Tensor, keys: Tensor, causal: bool,
                    strictly_earlier: bool, temperature: float, hard: bool,
                    allowed: Tensor | None = None, codes: int = 0) -> Tensor:
    """Weightings (B, T, H, J) of queries (B, T, H, W) with strengths (B, T, H) over the ``J``
    cells whose ``keys`` (B, J, W), or per head (B, J, H, W), are given: a softmax of
    strength × cosine at ``temperature``, or with ``hard`` its argmax, straight-through.

    ``causal``: query ``t`` sees cells ``j ≤ t`` (``j < t`` when ``strictly_earlier``, as a
    context query equals its own cell's key; cell 0 at ``t = 0``), in parallel mode; otherwise
    it sees all ``J`` (a step: the caller passes the cells it may see). ``allowed`` (B, T, J),
    when given, also hides the cells it marks False (a learned writer's overwritten or unwritten
    cells, ``pntm.ops.write_events.live_writes``); every row must allow at least one cell.
    ``codes`` > 0: compare the centred codes of query and keys in that many groups
    (``code_similarity``, soft or hard as the weightings) rather than the vectors."""
    similarity = (code_similarity(query, keys, codes, temperature if not hard else 1.0, hard)
                  if codes else _cosines(query, keys))
    scores = _masked(strength[..., None] * similarity, causal, strictly_earlier, allowed)
    weights = (scores / temperature).softmax(-1)
    if hard:
        one_hot = F.one_hot(weights.argmax(-1), weights.shape[-1]).to(weights)
        weights = straight_through(weights, one_hot)
    return weights
