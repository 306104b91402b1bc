"""Which modular_arithmetic_simple expressions a model gets wrong, by the shape of their products.

Usage: PYTHONPATH=src python docs/analysis/mas_errors.py RUN_DIR [DIGITS ...] (a run of any
model; default 8 16 32 64 digits, i.e. 15 to 127 tokens). For 600 random expressions per digit
count (digits and operators uniform, as the task draws them; the same expressions for every
run) it prints the answer accuracy (the answer is one token: greedy decoding's sequence
accuracy without its EOS), overall and by two features of the expression:

* ``longest``: its longest chain of factors (``2*3*4`` is 3), the most multiplications the term
  register must absorb in a row;
* ``last``: the factors in its last term, the term the answer must still add when it ends.

A failure that grows with ``longest`` at a fixed length points at a bounded-depth product,
one that grows with the length at a fixed ``longest`` at errors per token. An analysis aid, not
part of the package (RESULTS.md quotes its output)."""
import sys

import numpy as np
import torch

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from answers import accuracy_by, answer_guesses  # beside this script
from mas_automaton import walk

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
model.eval()
task = get_task("modular_arithmetic_simple")
digit_counts = [int(a) for a in sys.argv[2:]] or [8, 16, 32, 64]
B = 600


def bucket(k: int) -> str:
    return str(k) if k < 5 else "5+"


for n in digit_counts:
    rng = np.random.default_rng(1000 + n)
    rows, answers, longest, last = [], [], [], []
    for _ in range(B):
        digits, ops = rng.integers(0, 5, n), rng.integers(0, 3, n - 1)
        tokens, states = walk(digits, ops, task)
        rows.append([vocab.bos_id, *vocab.encode(tokens), vocab.sep_id])
        answers.append(vocab.encode([str(states[-1][0])])[0])
        longest.append(max(s[2] for s in states))
        last.append(states[-1][2])
    right = (answer_guesses(model, rows, 100) == torch.tensor(answers)).numpy()
    line = [f"{n} digits ({2 * n - 1} tokens): answer {right.mean():.3f}",
            accuracy_by("longest", [bucket(k) for k in longest], right),
            accuracy_by("last", [bucket(k) for k in last], right)]
    print(" | ".join(line), flush=True)
