"""Helpers shared by the model tests."""

import torch


def run_recurrent(model, tokens):
    """Logits of every position computed by the recurrent mode, one token at a time."""
    state = model.init_state(tokens.shape[0], tokens.shape[1], tokens.device)
    logits = []
    for t in range(tokens.shape[1]):
        step_logits, state = model.step(tokens[:, t], state)
        logits.append(step_logits)
    return torch.stack(logits, 1)
