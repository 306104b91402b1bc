"""sLSTM (Beck et al., NeurIPS 2024, the scalar-memory half of xLSTM) from the ``xlstm``
package, ``backend="vanilla"`` (pure PyTorch, runs on the CPU). Needs the ``peers`` extra.

Model: embedding -> xlstm's ``xLSTMBlockStack`` of ``layers`` sLSTM blocks -> logits. Each
block is pre-LayerNorm and residual: a causal depthwise convolution (``conv_size`` taps, SiLU)
feeding the input and forget gates, the sLSTM cell with ``heads`` block-diagonal recurrent
heads, a per-head group norm, then a gated feed-forward (GELU, ``proj_factor`` × width); the
stack ends with a LayerNorm. The cell, per head, with exponential gating and its stabiliser::

    c_t = f_t c_{t-1} + i_t tanh(z̃_t),   n_t = f_t n_{t-1} + i_t,   h_t = σ(õ_t) c_t / n_t
    m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t),   i_t = exp(ĩ_t - m_t),
    f_t = exp(log σ(f̃_t) + m_{t-1} - m_t)

(at the first step ``m_1 = ĩ_1``), where the pre-activations ``ĩ, f̃, z̃, õ`` are
``W x_t + R h_{t-1} + b`` (``W`` headwise, from the convolved input for ``ĩ`` and ``f̃``,
``R`` block-diagonal over the heads): the recurrence
goes through ``h``, so unlike Mamba or DeltaNet the sLSTM has no parallel form and ``forward``
is a loop over time inside xlstm (that is the model, not a shortcut here).

Recurrent mode: ``xLSTMBlockStack.step`` one token at a time, the state being xlstm's own
per-block dict (the convolution window and the four cell states ``h, c, n, m``). The package's
cell-level ``sLSTMCell.step`` returns its *input* state rather than the new one (xlstm 2.0.6),
but the block stack's ``step`` does not use it: it runs the cell's ``forward`` on the one token
with the carried state, which tests/test_models_interface.py checks equals ``forward``.
``step`` copies the convolution windows first because xlstm updates them in place.

Initialisation is xlstm's (forget-gate biases spread by the "powerlaw_blockdependent" scheme,
zero recurrent weights, small-init projections) and N(0, 1) for the embedding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pntm.errors import ConfigError
from pntm.models.base import MissingExtraError, SequenceModel, register_model
from pntm.models.checks import check_divisible

try:
    from xlstm import (
        FeedForwardConfig,
        sLSTMBlockConfig,
        sLSTMLayerConfig,
        xLSTMBlockStack,
        xLSTMBlockStackConfig,
    )
except ImportError as err:
    raise MissingExtraError("peers") from err


@register_model("slstm")
class SLSTM(SequenceModel):
    """A stack of sLSTM blocks (xlstm, vanilla backend). Defaults (2 blocks, d_model 128, 4
    heads, feed-forward factor 1.3) give about 0.22M parameters."""

    @classmethod
    def default_config(cls) -> dict:
        return {"d_model": 128, "layers": 2, "heads": 4, "conv_size": 4, "proj_factor": 1.3}

    @classmethod
    def check_config(cls, cfg: dict) -> None:
        """Relations between values (each value's own range: pntm.models.rules)."""
        check_divisible("slstm", cfg, "d_model", "heads")
        if cfg["d_model"] // cfg["heads"] < 2:  # xlstm's forget-bias init divides by d_h - 1
            raise ConfigError("slstm model_config.d_model / heads must be at least 2")

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.sep_id = sep_id  # unused: the recurrence needs no hint where the answer starts
        layer = sLSTMLayerConfig(backend="vanilla", num_heads=cfg["heads"],
                                 conv1d_kernel_size=cfg["conv_size"])
        block = sLSTMBlockConfig(slstm=layer, feedforward=FeedForwardConfig(
            proj_factor=float(cfg["proj_factor"]), act_fn="gelu"))
        stack = xLSTMBlockStackConfig(slstm_block=block, num_blocks=cfg["layers"],
                                      embedding_dim=cfg["d_model"], slstm_at="all",
                                      context_length=-1)
        self.embedding = nn.Embedding(vocab_size, cfg["d_model"])
        self.stack = xLSTMBlockStack(stack)
        self.to_logits = nn.Linear(cfg["d_model"], vocab_size)
        nn.init.normal_(self.embedding.weight, std=1.0)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.to_logits(self.stack(self.embedding(tokens)))

    def init_state(self, batch_size: int, max_length: int, device) -> dict | None:
        return None  # xlstm starts every block from zeros when it finds no state

    def step(self, tokens: Tensor, state: dict | None) -> tuple[Tensor, dict]:
        if state is not None:  # xlstm rolls the convolution windows in place
            state = {block: {key: (tuple(t.clone() for t in value)
                                   if key == "conv_state" else value)
                             for key, value in block_state.items()}
                     for block, block_state in state.items()}
        hidden, state = self.stack.step(self.embedding(tokens)[:, None], state)
        return self.to_logits(hidden[:, 0]), state
