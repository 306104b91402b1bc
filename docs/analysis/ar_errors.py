"""Which associative_recall queries a model gets wrong, by how close the other keys are to it.

Usage: PYTHONPATH=src python docs/analysis/ar_errors.py RUN_DIR [PAIRS ...] (a run of any
model; default 16 64 256 pairs, i.e. 68 to 1,028 tokens). For 500 random examples per pair
count, drawn as the task draws them (distinct 3-letter keys over a-h, digits 0-9; the same
examples for every run), it prints the answer accuracy (one token: greedy decoding's sequence
accuracy without its EOS), overall and by:

* ``near``: how many other keys of the example share two of the query's three letters (in
  place), the keys a content match is most likely to confuse with it;
* ``where``: the position of the queried pair, in fifths of the prompt (0: first fifth).

Of the wrong answers it also gives the share that are the digit of a near key (``from near``)
against the share expected if the wrong digit were drawn at random from the other pairs'
digits (``by chance``). An analysis aid, not part of the package (RESULTS.md quotes its
output)."""
import sys

import numpy as np
import torch

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from answers import accuracy_by, answer_guesses, recall_pairs  # beside this script

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
model.eval()
task = get_task("associative_recall")
pair_counts = [int(a) for a in sys.argv[2:]] or [16, 64, 256]
B = 500

for n in pair_counts:
    rng = np.random.default_rng(2000 + n)
    rows, answers, near, where, near_digits, other_digits = [], [], [], [], [], []
    for _ in range(B):
        prompt, answer = task._prompt_and_answer(n, rng)
        rows.append([vocab.bos_id, *vocab.encode(prompt), vocab.sep_id])
        answers.append(vocab.encode(answer)[0])
        keys, digits, q, close = recall_pairs(prompt)
        near.append(len(close))
        where.append(5 * q // n)  # q < n: 0..4
        near_digits.append({digits[i] for i in close})
        other_digits.append([digits[i] for i in range(n) if i != q])
    guess = answer_guesses(model, rows, max(1, 25600 // len(rows[0])))
    right = (guess == torch.tensor(answers)).numpy()
    line = [f"{n} pairs ({4 * n + 4} tokens): answer {right.mean():.3f}",
            accuracy_by("near", [min(k, 3) for k in near], right), accuracy_by("where", where, right)]
    wrong = [b for b in range(B) if not right[b]]
    if wrong:
        said = [vocab.decode([int(guess[b])])[0] for b in wrong]
        from_near = np.mean([s in near_digits[b] for s, b in zip(said, wrong)])
        chance = np.mean([np.mean([d in near_digits[b] for d in other_digits[b]]) for b in wrong])
        line.append(f"wrong {len(wrong)}: from near {from_near:.2f}, by chance {chance:.2f}")
    print(" | ".join(line), flush=True)
