"""LSTM baseline: token embedding -> stacked LSTM -> linear logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pntm.models.base import SequenceModel, register_model


@register_model("lstm")
class LSTM(SequenceModel):
    """A plain multi-layer LSTM language model; the recurrent state is the (h, c) pair."""

    @classmethod
    def default_config(cls) -> dict:
        return {"d_model": 128, "num_layers": 2}

    def __init__(self, vocab_size: int, sep_id: int, **config):
        super().__init__()
        cfg = self.resolve_config(config)
        self.config = cfg
        self.sep_id = sep_id  # unused: an LSTM needs no hint where the answer starts
        self.embedding = nn.Embedding(vocab_size, cfg["d_model"])
        self.lstm = nn.LSTM(cfg["d_model"], cfg["d_model"], num_layers=cfg["num_layers"],
                            batch_first=True)
        self.to_logits = nn.Linear(cfg["d_model"], vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden, _ = self.lstm(self.embedding(tokens))
        return self.to_logits(hidden)

    def init_state(self, batch_size: int, max_length: int, device) -> tuple[Tensor, Tensor]:
        shape = (self.lstm.num_layers, batch_size, self.lstm.hidden_size)
        zeros = torch.zeros(shape, device=device, dtype=self.to_logits.weight.dtype)
        return zeros, zeros.clone()

    def step(self, tokens: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        hidden, state = self.lstm(self.embedding(tokens)[:, None], state)
        return self.to_logits(hidden[:, 0]), state
