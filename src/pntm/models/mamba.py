"""Mamba (Gu & Dao 2023) from the ``mambapy`` package, with the [-1, 1] eigenvalue option of
Grazzi et al. (ICLR 2025). Needs the ``peers`` extra (``pip install 'pntm[peers]'``).

Model: embedding -> ``layers`` residual blocks ``u + Mixer(RMSNorm(u))`` -> RMSNorm -> logits.
The mixer is mambapy's ``MambaBlock`` (in projection to two branches of width
``expand · d_model``, a causal depthwise convolution of ``d_conv`` taps and SiLU on one,
the selective SSM, gating by SiLU of the other, out projection). Per channel ``c`` and state
dimension ``n`` the selective SSM is the diagonal linear recurrence::

    h_t[c, n] = Ā_t[c, n] h_{t-1}[c, n] + Δ_t[c] B_t[n] x_t[c]
    y_t[c]    = Σ_n C_t[n] h_t[c, n] + D[c] x_t[c]
    Ā_t[c, n] = exp(Δ_t[c] A[c, n]),   A = -exp(A_log) < 0,   Δ_t = softplus(...) > 0

so every eigenvalue ``Ā`` of the state transition lies in (0, 1): the state can decay but
never change sign, which is why Mamba cannot track parity at arbitrary lengths. With
``negative_eigenvalues: true`` the transition is ``2 Ā - 1`` instead, in (-1, 1), Grazzi
et al.'s construction for Mamba (their Eq. for "Mamba [-1, 1]"); everything else is unchanged.

mambapy computes ``Ā`` inline in three methods (``selective_scan`` with its parallel scan,
``selective_scan_seq`` and the decoding ``ssm_step``) with no hook to change it, so
``SignedMambaBlock`` subclasses ``MambaBlock`` and overrides those three, routing ``Ā``
through one ``transition`` method; the rest (projections, convolution, gating, the ``step``
that carries the convolution window) is mambapy's. tests/test_mamba.py checks that with
``negative_eigenvalues: false`` the override gives mambapy's own outputs, and that the
parallel scan equals the sequential recurrence, forward and backward, with negative
transitions.

Recurrent mode: mambapy's ``ResidualBlock.step`` per layer, the state being per layer
``(h [B, E·D, N], the last d_conv - 1 convolution inputs [B, E·D, d_conv - 1])``.
Initialisation is mambapy's for the mixer (S4D-real ``A``, ``Δ`` bias for ``Δ`` in
[0.001, 0.1], PyTorch defaults for the linear layers), the out projections scaled by
``1 / sqrt(layers)`` as in the reference Mamba, the embedding N(0, 1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pntm.models.base import MissingExtraError, SequenceModel, register_model

try:
    from mambapy.mamba import MambaBlock, MambaConfig, RMSNorm
    from mambapy.pscan import pscan
except ImportError as err:
    raise MissingExtraError("peers") from err


class SignedMambaBlock(MambaBlock):
    """mambapy's MambaBlock whose transition ``Ā`` may be mapped to ``2 Ā - 1``."""

    def __init__(self, config: MambaConfig, negative_eigenvalues: bool):
        super().__init__(config)
        self.negative_eigenvalues = negative_eigenvalues

    def transition(self, delta: Tensor, A: Tensor) -> Tensor:
        """``Ā = exp(Δ A)`` in (0, 1), or ``2 Ā - 1`` in (-1, 1). ``delta [..., E·D]``."""
        decay = torch.exp(delta.unsqueeze(-1) * A)
        return 2 * decay - 1 if self.negative_eigenvalues else decay

    def _inputs(self, x: Tensor, delta: Tensor, B: Tensor) -> Tensor:
        """``Δ_t B_t x_t`` per channel and state dimension, ``[..., E·D, N]``."""
        return delta.unsqueeze(-1) * B.unsqueeze(-2) * x.unsqueeze(-1)

    def selective_scan(self, x, delta, A, B, C, D):
        hs = pscan(self.transition(delta, A), self._inputs(x, delta, B))  # [B, L, E·D, N]
        return (hs @ C.unsqueeze(-1)).squeeze(3) + D * x

    def selective_scan_seq(self, x, delta, A, B, C, D):
        decay, inputs = self.transition(delta, A), self._inputs(x, delta, B)
        h = torch.zeros_like(inputs[:, 0])
        hs = []
        for t in range(x.shape[1]):
            h = decay[:, t] * h + inputs[:, t]
            hs.append(h)
        return (torch.stack(hs, dim=1) @ C.unsqueeze(-1)).squeeze(3) + D * x

    def ssm_step(self, x, h):
        A = -torch.exp(self.A_log.float())
        delta, B, C = torch.split(self.x_proj(x), [self.config.dt_rank, self.config.d_state,
                                                   self.config.d_state], dim=-1)
        delta, B, C = self._apply_layernorms(delta, B, C)
        delta = nn.functional.softplus(self.dt_proj(delta))  # [B, E·D]
        h = self.transition(delta, A) * h + self._inputs(x, delta, B)
        return (h @ C.unsqueeze(-1)).squeeze(2) + self.D.float() * x, h


class Residual(nn.Module):
    def __init__(self, config: MambaConfig, negative_eigenvalues: bool):
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.rms_norm_eps)
        self.mixer = SignedMambaBlock(config, negative_eigenvalues)

    def forward(self, u: Tensor) -> Tensor:
        return u + self.mixer(self.norm(u))

    def step(self, u: Tensor, cache: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple]:
        out, cache = self.mixer.step(self.norm(u), cache)
        return u + out, cache


@register_model("mamba")
class Mamba(SequenceModel):
    """Stacked Mamba blocks (mambapy); the recurrent state is each layer's ``(h, conv window)``.
    Defaults (2 layers, d_model 128, expand 2, d_state 16) give about 0.24M parameters."""

    @classmethod
    def default_config(cls) -> dict:
        return {"d_model": 128, "layers": 2, "d_state": 16, "expand": 2, "d_conv": 4,
                "negative_eigenvalues": False, "parallel_scan": True}

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.sep_id = sep_id  # unused: the recurrence needs no hint where the answer starts
        self.mamba_config = MambaConfig(d_model=cfg["d_model"], n_layers=cfg["layers"],
                                        d_state=cfg["d_state"], expand_factor=cfg["expand"],
                                        d_conv=cfg["d_conv"], pscan=cfg["parallel_scan"])
        self.embedding = nn.Embedding(vocab_size, cfg["d_model"])
        self.layers = nn.ModuleList(Residual(self.mamba_config, cfg["negative_eigenvalues"])
                                    for _ in range(cfg["layers"]))
        self.final_norm = RMSNorm(cfg["d_model"])
        self.to_logits = nn.Linear(cfg["d_model"], vocab_size)
        nn.init.normal_(self.embedding.weight, std=1.0)
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight.div_(math.sqrt(cfg["layers"]))

    def forward(self, tokens: Tensor) -> Tensor:
        u = self.embedding(tokens)
        for layer in self.layers:
            u = layer(u)
        return self.to_logits(self.final_norm(u))

    def init_state(self, batch_size: int, max_length: int, device) -> list[tuple[Tensor, Tensor]]:
        c, dtype = self.mamba_config, self.to_logits.weight.dtype
        return [(torch.zeros(batch_size, c.d_inner, c.d_state, device=device, dtype=dtype),
                 torch.zeros(batch_size, c.d_inner, c.d_conv - 1, device=device, dtype=dtype))
                for _ in self.layers]

    def step(self, tokens: Tensor, state: list) -> tuple[Tensor, list]:
        u = self.embedding(tokens)
        new_state = []
        for layer, cache in zip(self.layers, state):
            u, cache = layer.step(u, cache)
            new_state.append(cache)
        return self.to_logits(self.final_norm(u)), new_state
