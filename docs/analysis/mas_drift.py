"""How much a modular_arithmetic_simple model's activations move between snapshots.

Usage: PYTHONPATH=src python docs/analysis/mas_drift.py RUN_DIR STEP1,STEP2,... (a P-NTM run
with state heads, trained with ``train.snapshot_every``; the steps are snapshots of it). For the
400 expressions of ``mas_snapshots.py`` it runs each snapshot in evaluation mode and prints, for
each pair of consecutive steps, the relative change per position (``|u - v| / |u|``, median and
90th percentile over the (expression, token) positions) of:

* ``hL``: the input of layer ``L``'s state-head maps (the controller output ``h_t`` the map
  logits are computed from);
* ``outL``: the output of layer ``L``.

A collapse that starts upstream shows as a jump of the earlier layers' outputs; one that starts
in a head's own maps, as a jump of that layer only. An analysis aid, not part of the package
(RESULTS.md quotes its output)."""
import sys

import numpy as np
import torch
from safetensors.torch import load_file

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from mas_automaton import walk  # beside this script

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
model.eval()
task = get_task("modular_arithmetic_simple")
rng = np.random.default_rng(7)  # the expressions of mas_snapshots.py
rows = []
for _ in range(400):
    digits, ops = rng.integers(0, 5, 16), rng.integers(0, 3, 15)
    tokens, _ = walk(digits, ops, task)
    rows.append([vocab.bos_id, *vocab.encode(tokens), vocab.sep_id])
inputs = torch.tensor(rows)

caught = {}
for i, layer in enumerate(model.layers):
    layer.register_forward_hook(lambda module, args, out, i=i: caught.__setitem__(
        f"out{i}", out if torch.is_tensor(out) else out[0]))
    layer.machine.to_maps.register_forward_hook(
        lambda module, args, out, i=i: caught.__setitem__(f"h{i}", args[0]))


def activations(step: int) -> dict[str, torch.Tensor]:
    model.load_state_dict(load_file(str(run.file("snapshots") / f"step-{step:06d}.safetensors")))
    caught.clear()
    with torch.no_grad():
        model(inputs)
    return {name: value.detach().float().clone() for name, value in caught.items()}


steps = [int(s) for s in sys.argv[2].split(",")]
seen = {step: activations(step) for step in steps}
for a, b in zip(steps, steps[1:]):
    parts = []
    for name in sorted(seen[a]):
        u, v = seen[a][name], seen[b][name]
        rel = (u - v).norm(dim=-1) / (u.norm(dim=-1) + 1e-9)
        parts.append(f"{name} med {rel.median():.3f} p90 {rel.quantile(0.9):.3f}")
    print(f"{a}->{b}: " + " | ".join(parts), flush=True)
