"""How a modular_arithmetic_simple model changes from snapshot to snapshot (a collapse, seen
step by step).

Usage: PYTHONPATH=src python docs/analysis/mas_snapshots.py RUN_DIR [FIRST_STEP LAST_STEP] (a
P-NTM run with state heads, trained with ``train.snapshot_every``). For 400 random expressions
of 16 digits (the same at every snapshot) it runs each snapshot once in evaluation mode (every
state head is its exact automaton) and prints, per snapshot:

* ``answer``: the share of expressions whose answer token is right (the answer is one token,
  so this is greedy decoding's sequence accuracy without the EOS);
* per state head ``L.h``: ``moved``, the share of (expression, token) positions whose state
  differs from the previous snapshot's, and ``H(value|state)``, the conditional entropy in bits
  of the true value so far (mod 5, at the token after each digit; log2 5 = 2.32: the state
  says nothing about it, 0: it determines it);
* per state head ``m50`` and ``m10``: the median and the 10th percentile, over the positions,
  of the margin of the transition it took (the map logits of the row of the state it was in,
  the largest minus the second largest): how far its hard choices are from flipping;
* the three weight tensors that changed most since the previous snapshot, relative to their
  norm.

An analysis aid, not part of the package (RESULTS.md quotes its output)."""
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from mas_automaton import conditional_entropy, walk  # beside this script

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
first, last = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, 10 ** 9)
model.eval()
task = get_task("modular_arithmetic_simple")
rng = np.random.default_rng(7)
B, n = 400, 16

rows, values, answers = [], [], []
for b in range(B):
    digits, ops = rng.integers(0, 5, n), rng.integers(0, 3, n - 1)
    tokens, states = walk(digits, ops, task)
    rows.append([vocab.bos_id, *vocab.encode(tokens), vocab.sep_id])
    values.append([s[0] for s in states])
    answers.append(vocab.encode([str(states[-1][0])])[0])
inputs, answers = torch.tensor(rows), torch.tensor(answers)

caught, map_logits = [], []
for layer in model.layers:
    layer.machine.register_forward_hook(lambda module, args, out: caught.append(out.detach()))
    layer.machine.to_maps.register_forward_hook(
        lambda module, args, out: map_logits.append(out.detach()))


def margins(logits: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 map logit of the row each head was in before each token: logits
    (B, T, H·S·S) of one layer, states (B, T, H) that layer's states after each token."""
    B, T, H = states.shape
    S = int(round((logits.shape[-1] / H) ** 0.5))
    before = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
    rows = logits.view(B, T, H, S, S).gather(
        3, before[..., None, None].expand(B, T, H, 1, S)).squeeze(3)
    top = rows.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]



def snapshot_step(path: Path) -> int:
    return int(path.stem.split("-")[1])


previous_states, previous_weights = None, None
for path in sorted(run.file("snapshots").glob("step-*.safetensors"), key=snapshot_step):
    step = snapshot_step(path)
    if not first <= step <= last:
        continue
    weights = load_file(str(path))
    model.load_state_dict(weights)
    caught.clear()
    map_logits.clear()
    with torch.no_grad():
        logits = model(inputs)
    gaps = torch.cat([margins(l, c.argmax(-1)) for l, c in zip(map_logits, caught)], dim=-1)
    right = (logits[:, -1].argmax(-1) == answers).float().mean().item()
    states = torch.cat([s.argmax(-1) for s in caught], dim=-1)  # (B, T, all heads)
    heads_per_layer = caught[0].shape[2]
    cells = []
    for h in range(states.shape[-1]):
        moved = ("   -  " if previous_states is None
                 else f"{(states[..., h] != previous_states[..., h]).float().mean().item():.3f}")
        pairs = [(int(states[b, 2 + 2 * k, h]), values[b][k]) for b in range(B) for k in range(n)]
        gap = gaps[:, 1:, h].flatten()  # the positions after BOS
        cells.append(f"{h // heads_per_layer}.{h % heads_per_layer} moved {moved} "
                     f"H {conditional_entropy(pairs):.2f} "
                     f"m50 {gap.median().item():.2f} m10 {gap.quantile(0.1).item():.2f}")
    change = ""
    if previous_weights is not None:
        rel = {k: ((weights[k] - previous_weights[k]).norm() / (previous_weights[k].norm() + 1e-12)
                   ).item() for k in weights if weights[k].is_floating_point()}
        change = ", ".join(f"{k} {v:.3f}" for k, v in sorted(rel.items(), key=lambda kv: -kv[1])[:3])
    print(f"step {step}: answer {right:.3f} | " + " | ".join(cells) + f" | {change}", flush=True)
    previous_states, previous_weights = states, weights
