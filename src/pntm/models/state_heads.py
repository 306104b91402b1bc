"""State heads: small learned automata inside a P-NTM layer (see ``pntm.ops.state_maps``).

Each of a layer's ``heads`` state heads holds one of ``S`` states. At every token the controller
output ``h_t`` chooses a transition for every state, a row-stochastic matrix::

    A_t[i, ·] = softmax(W_A h_t + b)[i, ·]       (S × S per head)
    p_t = p_{t-1} A_t,      p_0 = δ_0,      r_t = p_t E       (E: S × width, learned)

and the head's read ``r_t`` joins the layer's other reads. Hard heads (the default, as for the
location heads) take ``f_t(i) = argmax_j A_t[i, j]``: the state is an integer, a scan round is a
gather, and the straight-through gradient is the soft recurrence's at the one-hot matrices.

Decisions (our own; the paper's abstract is silent on non-abelian state):

* **Why.** Shift heads compose translations, so a stack of them counts in an abelian group. A map
  per token composes any finite automaton of at most ``S`` states (a product modulo 5, a
  permutation, a bounded stack's top) and is still associative, so the layer keeps its parallel
  scan. This is the general form of which a shift head is the special case ``f(i) = i + k``.
* **Start state 0 and the initial transitions.** ``b`` puts ``stay_bias`` on the diagonal: at
  the start every token keeps the state (the head is a constant), and the weights' random part
  makes some tokens move it. A head that starts as a pool of random maps collapses: composing
  random maps on ``S`` states reaches a constant within a few tokens, and its gradient then
  sees one state only.
* **Low-rank maps** (``rank``, config ``state_rank``, 0 by default: full). The full head
  computes ``S × S`` logits per token from ``h_t`` (``d_ff · S²`` weights per head), which
  makes ``S`` the costliest number of the layer. With ``rank = r`` each state ``i`` gets a
  query ``q_t[i] = (W_q h_t)[i]`` of ``r`` numbers, each target state ``j`` a learned key
  ``k_j`` of unit norm, and ``A_t[i, j] = softmax_j(q_t[i] · k_j + b[i, j])`` (``b``: a learned
  ``S × S`` bias, ``stay_bias`` on its diagonal as above): ``d_ff · S · r`` weights. Any map is
  still reachable (distinct unit keys are all vertices of their hull, so ``q = c k_j`` with a
  large ``c`` picks ``j``; ``r ≥ 2``). Measured (RESULTS.md, "modular_arithmetic_simple:
  low-rank state maps ..."): with ``r = 16`` at ``S = 32`` modular_arithmetic_simple, seed 0,
  reaches 20.0% validation against the full maps' 82.3%, and the step is not much shorter,
  since the hard scan still handles ``S × S`` logits per token; so the default stays full.
* **Steps without values** (``hard_every``, config ``state_hard_every``, 0 by default: off).
  While the values are on, the readout learns from ``x_t`` and the hard automaton itself (what
  evaluation runs) gets no training: on modular_arithmetic_simple the greedy check of the
  training lengths stays at 26-37% through the values phase and jumps only when they are gone
  (RESULTS.md). With ``hard_every = k`` every ``k``-th step trains with ``λ = 0`` (the exact
  automaton, straight-through), so the maps get both gradients from the start: the values'
  over every row and the exact one at the visited rows. The step index decides (no random
  draw), so a resumed run takes the same steps. Measured (RESULTS.md): with ``k = 2`` on
  modular_arithmetic_simple, seed 0, the greedy check stays at 31-35% through the values
  phase all the same and validation ends at 20.7% against 82.3% without it: off by default.
* **Resets** (``resets``, config ``state_resets``, off by default). A constant map (every
  state to ``j``: a register overwritten, the term of a sum restarted at ``+``) is a map like
  any other, but its ``S`` rows are learned one visited row at a time. With resets each token
  also scores the target states once for all rows, ``logits_t[i, j] += (W_u h_t)[j]`` (``W_u``
  starting at zero, so the head starts as without it): a large score sends every state to
  ``j`` in one move, the state heads' counterpart of a location head's jump, and its gradient
  comes from whichever row is visited. The maps stay maps, so the scan is unchanged.
  Measured (RESULTS.md): on modular_arithmetic_simple, seed 0, 38.1% validation against 82.3%
  without resets: off by default.
* **The exact automaton forward, the values backward** (``hard_forward``, config
  ``state_hard_forward``, off by default). While the values are on, the model is trained as a
  linear RNN that evaluation never runs: the readout can lean on the inputs ``c_t`` (a
  modular_arithmetic_simple model answers about 90% of its training prompts with them while its
  exact automaton answers 30%). With ``hard_forward`` the forward pass is always the one-hot
  automaton of the maps (what evaluation runs) and the valued states serve only as the
  straight-through surrogate of its gradient, ``p_t + (x_t - sg(x_t))``: the maps still get the
  values' gradient over every row, and the readout never sees anything but the exact states.
  At ``λ = 0`` both are the same. The recurrent mode (decoding, in evaluation) runs ``λ = 0``.
  Measured (RESULTS.md): on modular_arithmetic_simple, seed 0, training broke down while the
  values were on (no training prompt right at step 2,000) and ended at 19.2% validation against
  82.3% without it: off by default.
* **Reads are embeddings of the state** (``E``), not memory cells: the state head is a register
  of ``log2 S`` bits that the controller can branch on at the next layer.
* **Valued states** (``values``, config ``state_values``, off by default). The one-hot state's
  straight-through gradient reaches only the row of the state the head is in, so a map is
  shaped one visited state at a time. With values the head carries numbers instead, as PD-SSM
  does with its permutation-times-diagonal transitions::

      x_t = (d_t ⊙ x_{t-1}) A_t + c_t,     x_0 = δ_0,     d_t = σ(W_d h_t + 3),   c_t = W_c h_t

  (``A_t`` hard as above, straight-through). Mass on every state reaches every row's gradient;
  the decay and the input make the head a linear RNN whose transition is a map. Still an
  associative (affine) scan, ``pntm.ops.state_maps.affine_states``; with hard maps each
  ``diag(d_t) A_t`` has one nonzero per row, and ``scaled_map_states`` composes such steps in
  O(S) instead of O(S³) (same states and gradients, tested): 14× faster at ``S = 8`` and 90× at
  ``S = 32`` for a training step's scan and its gradient (batch 32, T = 256, 4 heads, CPU).
  The hard scan runs straight from the map logits (``logit_map_states``: the argmax forward,
  the softmax's Jacobian in closed form backward), not through dense straight-through
  ``S × S`` matrices: the same states and gradients (tested), and a training step of the
  shipped config (32 states) 1.23× faster after the anneal and 1.41× during it (batch 32, 124
  tokens, one thread, both orders alternated in one process on a loaded machine).
* **Annealing the values away** (``anneal = [a, b]``, config ``state_anneal``, fractions of
  training). Values that decay cannot hold a state at every length (measured: modular
  arithmetic exact to length 128, 30% at 500). With ``anneal`` the values serve only to find the
  maps: their weight ``λ`` is 1 before ``a`` and falls linearly to 0 at ``b``, with
  ``x_t = ((1 - λ(1 - d_t)) ⊙ x_{t-1}) A_t + λ c_t``, so at ``λ = 0`` the head is the exact one-hot
  automaton of the same maps. Evaluation and decoding use ``λ = 0``, as heads evaluate hard.
  Valued heads keep their maps hard (straight-through) through the location heads' relax
  phase: the values are their relaxation. Measured with the default relax phase [0.3, 0.7],
  seed 0: soft maps in that phase left parity and cycle navigation at chance (49.9%, 47.5% OOD,
  ``results/state-heads/candidate``, 8 states); with 32 states and four heads
  (``state_values: false``) modular_arithmetic_simple ended at 20.6% validation against 82.3%
  valued: the exact automaton of the soft maps reached 88% on the training lengths, and
  training the maps hard from 0.7 on took it down to 27% (``results/explore/soft-maps-4``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.ops.state_maps import (affine_states, hard_state_path, hard_states, logit_map_states,
                                 soft_states)


class StateHeads(nn.Module):
    """``heads`` finite-state heads with ``states`` states each, read as ``width`` numbers."""

    def __init__(self, d_ff: int, heads: int, states: int, width: int, stay_bias: float,
                 values: bool = False, anneal: tuple[float, float] | None = None,
                 rank: int = 0, hard_every: int = 0, resets: bool = False,
                 hard_forward: bool = False):
        super().__init__()
        self.heads, self.states, self.width, self.rank = heads, states, width, rank
        self.anneal, self.hard_every, self.hard_forward = anneal, hard_every, hard_forward
        self.value_weight = 1.0  # λ in training (set_training_progress); evaluation: see weight()
        # full maps: S x S logits per token; low-rank maps: a query of `rank` numbers per state
        self.to_maps = nn.Linear(d_ff, heads * states * (rank or states))
        # valued states: a decay per state (starting near 1) and an input per state
        self.to_values = nn.Linear(d_ff, 2 * heads * states) if values else None
        self.embedding = nn.Parameter(torch.randn(heads, states, width) / math.sqrt(width))
        # resets: a score per target state shared by every row (zero at the start: no effect)
        self.to_reset = nn.Linear(d_ff, heads * states) if resets else None
        if resets:
            nn.init.zeros_(self.to_reset.weight)
            nn.init.zeros_(self.to_reset.bias)
        with torch.no_grad():
            if not rank:
                self.to_maps.bias.view(heads, states, states).zero_()
                self.to_maps.bias.view(heads, states, states).diagonal(dim1=-2, dim2=-1).fill_(
                    stay_bias)
            if values:
                self.to_values.bias.view(2, heads, states)[0].fill_(3.0)
                self.to_values.bias.view(2, heads, states)[1].zero_()
        if rank:  # unit keys (normalized in logits): any state can win a row's argmax
            self.state_keys = nn.Parameter(torch.randn(heads, states, rank))
            self.map_bias = nn.Parameter(
                torch.diag_embed(torch.full((heads, states), float(stay_bias))))

    def logits(self, h: Tensor) -> Tensor:
        """Map logits (B, T, heads, S, S) for controller outputs (B, T, d_ff): row ``i`` scores
        the states that state ``i`` may go to."""
        if not self.rank:
            logits = self.to_maps(h).unflatten(-1, (self.heads, self.states, self.states))
        else:
            queries = self.to_maps(h).unflatten(-1, (self.heads, self.states, self.rank))
            keys = F.normalize(self.state_keys, dim=-1)
            logits = torch.einsum("bthir,hjr->bthij", queries, keys) + self.map_bias
        if self.to_reset is not None:  # the same score of target j in every row i
            logits = logits + self.to_reset(h).unflatten(-1, (self.heads, 1, self.states))
        return logits

    def matrices(self, h: Tensor, temperature: float = 1.0) -> Tensor:
        """Transition matrices ``A_t`` (B, T, heads, S, S) for controller outputs (B, T, d_ff)."""
        return (self.logits(h) / temperature).softmax(-1)

    def initial(self, batch: int, device) -> Tensor:
        """``p_0 = δ_0`` for every head: (B, heads, S)."""
        p = torch.zeros(batch, self.heads, self.states, device=device)
        p[..., 0] = 1.0
        return p

    def set_training_progress(self, fraction: float, step: int | None = None) -> None:
        """``λ`` at this point of training: 1 before ``anneal[0]``, 0 from ``anneal[1]`` on;
        with ``hard_every = k`` also 0 at every step that ``k`` divides."""
        weight = 1.0
        if self.anneal is not None:
            start, end = self.anneal
            weight = 1.0 - min(1.0, max(0.0, (fraction - start) / max(end - start, 1e-9)))
        if self.hard_every and step is not None and step % self.hard_every == 0:
            weight = 0.0
        self.value_weight = weight

    def weight(self) -> float:
        """``λ`` now: the schedule's in training; at evaluation 0 with ``anneal``, else 1."""
        if self.training:
            return self.value_weight
        return 0.0 if self.anneal is not None else 1.0

    def affine(self, h: Tensor, hard: bool, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        """Valued states' step maps: ``M_t = diag(d_t) A_t`` (B, T, heads, S, S), straight-through
        hard ``A_t`` with ``hard``, and inputs ``c_t`` (B, T, heads, S)."""
        matrices = self.matrices(h, temperature)
        if hard:
            one_hot = F.one_hot(matrices.argmax(-1), self.states).to(matrices)
            matrices = one_hot + (matrices - matrices.detach())
        scales, inputs = self.values(h)
        return scales[..., None] * matrices, inputs

    def values(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Valued states' per-state scales ``1 - λ (1 - d_t)`` and inputs ``λ c_t``, each
        (B, T, heads, S)."""
        decay, inputs = self.to_values(h).unflatten(-1, (2, self.heads, self.states)).unbind(-3)
        lam = self.weight()
        return 1 - lam * (1 - torch.sigmoid(decay)), lam * inputs

    def forward(self, h: Tensor, hard: bool, temperature: float = 1.0) -> Tensor:
        """States (B, T, heads, S) of a whole sequence, by a parallel scan: distributions (one-hot
        with ``hard``), or values with ``values``."""
        if self.to_values is not None:
            if hard:
                # hard maps times decays have one nonzero per row: the O(S) scan, same states
                # and gradients, straight from the logits (no dense S x S tensors)
                logits = self.logits(h)
                scales, inputs = self.values(h)
                if temperature != 1.0:
                    logits = logits / temperature
                valued = logit_map_states(logits, scales, inputs)
                if self.hard_forward and self.weight() > 0:
                    # the exact automaton forward, the values' gradient backward
                    exact = F.one_hot(hard_states(logits.argmax(-1)), self.states).to(valued)
                    return exact + (valued - valued.detach())
                return valued
            return affine_states(*self.affine(h, hard, temperature))
        matrices = self.matrices(h, temperature)
        return hard_state_path(matrices) if hard else soft_states(matrices)

    def step(self, h: Tensor, previous: Tensor, hard: bool) -> Tensor:
        """One token: ``p_t = p_{t-1} A_t`` for ``h`` (B, 1, d_ff) and ``previous`` (B, heads, S);
        returns (B, 1, heads, S)."""
        if self.to_values is not None:
            if hard and not self.training and self.weight() == 0:
                # the exact automaton (evaluation with an anneal: every state one-hot from
                # the start, scales exactly 1 and inputs 0), so the next state is the argmax of
                # the current state's row of logits, the parallel scan's map
                # (``logit_map_states``), without the S x S softmax and product
                logits = self.logits(h)[:, 0]                               # (B, heads, S, S)
                row = previous.argmax(-1)[..., None, None].expand(-1, -1, 1, self.states)
                state = torch.gather(logits, 2, row)[:, :, 0].argmax(-1)    # (B, heads)
                return F.one_hot(state, self.states).to(previous)[:, None]
            matrices, inputs = self.affine(h, hard)
            return ((previous[..., None, :] @ matrices[:, 0])[..., 0, :] + inputs[:, 0])[:, None]
        matrices = self.matrices(h)[:, 0]
        if hard:
            matrices = F.one_hot(matrices.argmax(-1), self.states).to(matrices)
        return (previous[..., None, :] @ matrices)[..., 0, :][:, None]

    def read(self, states: Tensor) -> Tensor:
        """``r_t = p_t E`` per head: (B, T, heads, width)."""
        return torch.einsum("bths,hsw->bthw", states, self.embedding)
