"""What the state heads of a trained modular_arithmetic_simple model hold.

Usage: PYTHONPATH=src python docs/analysis/mas_state_probe.py RUN_DIR (a run with its weights,
a P-NTM with state heads). For 400 random expressions of 16 digits it runs the model once
(evaluation mode: every state head is its exact automaton) and takes each state head's state
at every digit and at the token after it (the next operator, or SEP after the last digit).
Against the true automaton of the task, the state after digit k being (value so far, signed
last term) mod 5, it prints the conditional entropy in bits of the term, of the value and of
both given the head's state (0: the state determines it; log2 5 = 2.32 bits: it tells nothing
about it; each printed as H(Y | state)/H(Y), H(Y) the entropy of Y itself over the same
positions), over all digits and over the digits that end a term of two or more factors (where the
3-token window no longer holds the term). Plug-in estimates from 6,400 states: with at most
S = 32 states their bias is about 0.02 bits. An analysis aid, not part of the package
(RESULTS.md quotes its output)."""
import math
import sys

import numpy as np
import torch

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from mas_automaton import conditional_entropy, walk  # beside this script

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
model.eval()
task = get_task("modular_arithmetic_simple")
rng = np.random.default_rng(5)
B, n = 400, 16

rows, truth = [], []  # truth[b][k] = (value, term, factors in the term) after digit k
for b in range(B):
    digits, ops = rng.integers(0, 5, n), rng.integers(0, 3, n - 1)
    tokens, states = walk(digits, ops, task)
    rows.append([vocab.bos_id, *vocab.encode(tokens), vocab.sep_id])
    truth.append(states)

caught = []  # per layer: the state heads' states (B, T, heads, S), one-hot in evaluation
for layer in model.layers:
    layer.machine.register_forward_hook(lambda module, args, out: caught.append(out.detach()))
with torch.no_grad():
    model(torch.tensor(rows))



print(f"{run.path}: H(· | state) in bits; log2 5 = {math.log2(5):.2f}")
for where, offset in (("at the digit", 0), ("at the token after it", 1)):
    print(where)
    for li, states in enumerate(caught):
        index = states.argmax(-1)  # (B, T, heads)
        for head in range(index.shape[-1]):
            cells = []
            for name, pick in (("term", lambda s: s[1]), ("value", lambda s: s[0]),
                               ("both", lambda s: s[:2])):
                for long_only in (False, True):
                    pairs = [(int(index[b, 1 + 2 * k + offset, head]), pick(truth[b][k]))
                             for b in range(B) for k in range(n)
                             if not long_only or truth[b][k][2] >= 2]
                    prior = conditional_entropy([(0, y) for _, y in pairs])
                    cells.append(f"{name} {conditional_entropy(pairs):.2f}/{prior:.2f}"
                                 + (" (≥2 factors)" if long_only else ""))
            used = len(set(index[:, 1:, head].flatten().tolist()))
            print(f"  layer {li} head {head} ({used} states used): " + ", ".join(cells))
