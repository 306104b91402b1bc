"""Transformer baseline: a causal decoder-only Transformer in the style of nanoGPT.

Tokens ``x_1..x_T`` (position ``p = t - 1``, from 0)::

    u_p   = E[x_p] (+ PE(p) if positional == "sinusoidal")
    for each of the ``layers`` blocks (pre-LayerNorm, residual):
        u_p = u_p + W_o concat_h Attn_h(LN(u))_p
        u_p = u_p + W_2 GELU(W_1 LN(u_p) + b_1) + b_2
    logits_p = W_out LN(u_p) + b_out

Attention head ``h`` (``d_h = d_model / heads``), causal::

    q_p = R(p) W_q^h z_p,   k_j = R(j) W_k^h z_j,   v_j = W_v^h z_j       (z = LN(u))
    Attn_h(z)_p = Σ_{j<=p} softmax_j(q_p · k_j / sqrt(d_h)) v_j

computed with ``torch.nn.functional.scaled_dot_product_attention``. ``R(p)`` is the identity
except with rotary embeddings.

Positional encodings (``positional``); none has a parameter tied to a maximum length, so the
model runs on any length (evaluation goes to ~1,000 tokens while training stops at ~80):

* ``"sinusoidal"``: absolute, added to the token embeddings (Vaswani et al. 2017)::

      PE(p, 2i) = sin(p ω_i),   PE(p, 2i+1) = cos(p ω_i),   ω_i = 10000^(-2i/d_model)

  computed on the fly for whatever positions occur. The token embedding is initialised
  N(0, 1), the same scale as the table, so neither drowns the other at the start.
* ``"rotary"`` (RoPE, Su et al. 2021; the default): each pair ``(2i, 2i+1)`` of every query and
  key head is rotated by the angle ``p θ_i``, ``θ_i = 10000^(-2i/d_h)``::

      R(p) [a, b] = [a cos pθ_i - b sin pθ_i,  a sin pθ_i + b cos pθ_i]

  Rotations compose, ``R(p)ᵀ R(j) = R(j - p)``, so ``q_p · k_j`` depends on the positions only
  through ``j - p``: attention sees relative positions, nothing is added to the residual stream.
* ``"none"`` (NoPE): no positional signal at all; the causal mask alone lets the model infer
  order (a token can count how many tokens it attends to).
* ``"randomized"`` (Ruoss et al., ACL 2023): rotary embeddings whose positions, in training
  only, are not ``0..T-1`` but a sorted sample of ``T`` distinct integers drawn uniformly from
  ``0..max_position-1`` (default 2048, longer than any evaluated sequence), one sample per
  batch shared by its rows as in the authors' released code. Every position an evaluation
  sequence can occupy has then been seen in training, only the gaps between neighbours differ.
  Evaluation (``eval()``: greedy decoding, validation) uses ``0..T-1``, so that decoding is
  deterministic and ``step`` equals ``forward``. This is our choice, not the paper's: the
  authors' evaluation (``range_evaluation.py``) passes a fresh random key to the model, i.e.
  samples sorted positions at test time too. Ruoss et al. randomize several encodings
  (sin/cos, relative, RoPE, ALiBi, learned); here RoPE, this Transformer's default. A training
  sequence longer than ``max_position`` is an error.

Modes. ``forward`` runs every position at once with a causal mask. ``init_state`` allocates a
key/value cache per layer (``max_length`` slots, grown if decoding runs past it) and ``step``
writes the new position's keys and values into it and attends over the filled part, so each
step costs O(t) rather than re-running the prefix. The cache tensors are updated **in place**:
a state must not be reused after it has been passed to ``step``.

Initialisation follows nanoGPT: linear weights N(0, 0.02), the residual projections
(``W_o``, ``W_2``) N(0, 0.02 / sqrt(2 · layers)), biases zero. Defaults (2 layers, d_model 128,
4 heads, d_ff 256) give about 0.27M parameters (the LSTM baseline had as many with two layers
of 128; it now has one layer of 256, 0.53M, the size of Delétang et al.'s example script).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pntm.errors import ConfigError, PntmError
from pntm.models.base import SequenceModel, register_model

POSITIONAL_MODES = ("sinusoidal", "rotary", "none", "randomized")
ROPE_BASE = 10000.0


def inverse_frequencies(dim: int, device=None) -> Tensor:
    """``ω_i = 10000^(-2i/dim)`` for ``i = 0..dim/2-1`` (float32)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim
    return ROPE_BASE ** -exponents


def sinusoidal_table(positions: Tensor, dim: int) -> Tensor:
    """``PE[positions]``: float32 ``[len(positions), dim]``, sin in even columns, cos in odd."""
    angles = positions.to(torch.float32)[:, None] * inverse_frequencies(dim, positions.device)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def rotary_cos_sin(positions: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor]:
    """cos and sin of ``p θ_i``, each ``[len(positions), d_h/2]``."""
    angles = positions.to(inv_freq.dtype)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs ``(2i, 2i+1)`` of ``x[..., T, d_h]`` by the angles of ``cos, sin[T, d_h/2]``."""
    pairs = x.unflatten(-1, (-1, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float, rotary: bool):
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.rotary = rotary
        if rotary:
            self.register_buffer("inv_freq", inverse_frequencies(self.head_dim), persistent=False)

    def project(self, z: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v as ``[B, heads, T, d_h]``, q and k rotated when rotary."""
        q, k, v = (t.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)
                   for t in self.qkv(z).chunk(3, dim=-1))
        if self.rotary:
            cos, sin = rotary_cos_sin(positions, self.inv_freq)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return q, k, v

    def merge(self, y: Tensor) -> Tensor:
        return self.resid_dropout(self.proj(y.transpose(1, 2).flatten(-2)))

    def forward(self, z: Tensor, positions: Tensor) -> Tensor:
        q, k, v = self.project(z, positions)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.merge(y)

    def step(self, z: Tensor, position: int, cache_k: Tensor, cache_v: Tensor) -> Tensor:
        """One position ``z[B, 1, d_model]``; writes its k, v at ``position`` of the caches."""
        positions = torch.arange(position, position + 1, device=z.device)
        q, k, v = self.project(z, positions)
        cache_k[:, :, position] = k[:, :, 0]
        cache_v[:, :, position] = v[:, :, 0]
        y = F.scaled_dot_product_attention(q, cache_k[:, :, : position + 1],
                                           cache_v[:, :, : position + 1],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.merge(y)


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, d_ff: int, dropout: float, rotary: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, dropout, rotary)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model),
                                 nn.Dropout(dropout))

    def forward(self, u: Tensor, positions: Tensor) -> Tensor:
        u = u + self.attn(self.norm1(u), positions)
        return u + self.mlp(self.norm2(u))

    def step(self, u: Tensor, position: int, cache_k: Tensor, cache_v: Tensor) -> Tensor:
        u = u + self.attn.step(self.norm1(u), position, cache_k, cache_v)
        return u + self.mlp(self.norm2(u))


@register_model("transformer")
class Transformer(SequenceModel):
    """Causal decoder-only Transformer; the recurrent state is a key/value cache."""

    @classmethod
    def default_config(cls) -> dict:
        return {"d_model": 128, "layers": 2, "heads": 4, "d_ff": 256, "dropout": 0.0,
                "positional": "rotary", "max_position": 2048}

    @classmethod
    def check_config(cls, cfg: dict) -> None:
        """Relations between values (each value's own range is checked by ``resolve_config``,
        see pntm.models.rules); each failure is a one-line ConfigError."""
        if cfg["d_model"] % cfg["heads"]:
            raise ConfigError(f"transformer model_config.d_model ({cfg['d_model']}) must be "
                              f"divisible by heads ({cfg['heads']})")
        if cfg["positional"] in ("rotary", "randomized") and (cfg["d_model"] // cfg["heads"]) % 2:
            raise ConfigError(f"transformer rotary positions need an even head size, got "
                              f"d_model / heads = {cfg['d_model'] // cfg['heads']}")
        if cfg["positional"] == "sinusoidal" and cfg["d_model"] % 2:
            raise ConfigError(f"transformer sinusoidal positions need an even d_model, "
                              f"got {cfg['d_model']}")

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.sep_id = sep_id  # unused: causal attention needs no hint where the answer starts
        self.positional = cfg["positional"]
        d_model, layers = cfg["d_model"], cfg["layers"]
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.embed_dropout = nn.Dropout(cfg["dropout"])
        self.blocks = nn.ModuleList(
            Block(d_model, cfg["heads"], cfg["d_ff"], cfg["dropout"],
                  self.positional in ("rotary", "randomized"))
            for _ in range(layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.to_logits = nn.Linear(d_model, vocab_size)
        self._init_weights(layers)

    def _init_weights(self, layers: int) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))
        nn.init.normal_(self.token_embedding.weight, std=1.0)

    def embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        u = self.token_embedding(tokens)
        if self.positional == "sinusoidal":
            u = u + sinusoidal_table(positions, u.shape[-1]).to(u.dtype)
        return self.embed_dropout(u)

    def positions(self, length: int, device) -> Tensor:
        """Positions of a sequence of ``length`` tokens: ``0..length-1``, except in training
        with ``positional: randomized``, a sorted sample without replacement from
        ``0..max_position-1`` (torch's global generator, so the run's seed fixes it)."""
        if not (self.positional == "randomized" and self.training):
            return torch.arange(length, device=device)
        limit = self.config["max_position"]
        if length > limit:
            raise PntmError(f"transformer with randomized positions: a training sequence of "
                            f"{length} tokens exceeds model_config.max_position ({limit})")
        return torch.randperm(limit)[:length].sort().values.to(device)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.run(tokens, self.positions(tokens.shape[1], tokens.device))

    def run(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """The parallel mode with the given ``positions[T]``."""
        u = self.embed(tokens, positions)
        for block in self.blocks:
            u = block(u, positions)
        return self.to_logits(self.final_norm(u))

    def init_state(self, batch_size: int, max_length: int, device) -> dict:
        """An empty cache: per layer, keys and values ``[B, heads, max_length, d_h]``."""
        attn = self.blocks[0].attn  # layers >= 1
        shape = (batch_size, attn.heads, max(max_length, 1), attn.head_dim)
        dtype = self.to_logits.weight.dtype
        return {"position": 0,
                "k": [torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks],
                "v": [torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks]}

    def step(self, tokens: Tensor, state: dict) -> tuple[Tensor, dict]:
        position, keys, values = state["position"], state["k"], state["v"]
        if position >= keys[0].shape[2]:  # decoding past max_length: double the cache
            keys = [torch.cat((k, torch.zeros_like(k)), dim=2) for k in keys]
            values = [torch.cat((v, torch.zeros_like(v)), dim=2) for v in values]
        u = self.embed(tokens[:, None], torch.arange(position, position + 1, device=tokens.device))
        for block, k, v in zip(self.blocks, keys, values):
            u = block.step(u, position, k, v)
        logits = self.to_logits(self.final_norm(u))[:, 0]
        return logits, {"position": position + 1, "k": keys, "v": values}
