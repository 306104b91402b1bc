"""Where a trained modular_arithmetic_simple model goes wrong, transition by transition.

Usage: PYTHONPATH=src python docs/analysis/mas_transitions.py RUN_DIR (a run with its weights).
For 600 random expressions of 31 tokens it asks the model for the answer to every prefix and
finds the first prefix answered wrong; the transition that led there is (the true state before
it, the operator, the digit), the state being (value so far, signed last term) mod 5. Prints
the prefix accuracy by position, the first-error rate by operator, the worst transitions, and
the first-error rate of `*` by the number of factors already in the term. An analysis aid, not
part of the package (RESULTS.md quotes its output)."""
import sys, collections
import numpy as np, torch
from pntm.runs import RunDir, load_model

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
rng = np.random.default_rng(11)
OPS = "+-*"; B, n = 600, 16
digits = rng.integers(0, 5, (B, n)); ops = rng.integers(0, 3, (B, n - 1))
states = np.zeros((B, n, 2), dtype=int)  # state after digit k: (total, signed term)
for b in range(B):
    total, term = digits[b, 0], digits[b, 0]
    states[b, 0] = (total % 5, term % 5)
    for k in range(n - 1):
        o, d = ops[b, k], digits[b, k + 1]
        if o == 0: total, term = total + d, d
        elif o == 1: total, term = total - d, -d
        else: total, term = total - term + term * d, term * d
        states[b, k + 1] = (total % 5, term % 5)
pred = np.zeros((B, n), dtype=int)
with torch.no_grad():
    for k in range(n):
        seqs = []
        for b in range(B):
            toks = [str(digits[b, 0])]
            for j in range(k):
                toks += [OPS[ops[b, j]], str(digits[b, j + 1])]
            seqs.append([vocab.bos_id] + vocab.encode(toks) + [vocab.sep_id])
        out = model(torch.tensor(seqs))[:, -1].argmax(-1)
        pred[:, k] = [int(vocab.symbols[i - 4]) if i >= 4 and vocab.symbols[i - 4].isdigit() else -1 for i in out.tolist()]
wrong = pred != states[:, :, 0]
seen = collections.Counter(); bad = collections.Counter()
for b in range(B):
    for k in range(1, n):
        if wrong[b, :k].any():
            break
        key = (tuple(int(v) for v in states[b, k - 1]), OPS[ops[b, k - 1]], int(digits[b, k]))
        seen[key] += 1
        if wrong[b, k]:
            bad[key] += 1
print("prefix accuracy by position:", " ".join(f"{1 - wrong[:, k].mean():.2f}" for k in range(n)))
print(f"first errors: {sum(bad.values())} over {len(bad)} transitions; transitions seen: {len(seen)}")
by_op = collections.Counter(); seen_op = collections.Counter()
for (s, o, d), c in seen.items(): seen_op[o] += c; by_op[o] += bad[(s, o, d)]
print("first-error rate by op:", {o: f"{by_op[o]}/{seen_op[o]}" for o in OPS})
rows = sorted(((bad[k] / seen[k], bad[k], seen[k], k) for k in seen if bad[k]), reverse=True)[:15]
for r, nb, ns, k in rows: print(f"  state (total, term) {k[0]} then '{k[1]} {k[2]}': wrong {nb}/{ns}")
always = [k for k in seen if seen[k] >= 3 and bad[k] == seen[k]]
print(f"transitions wrong every time (seen >= 3): {len(always)}")
# '*' first-error rate by the length of the product chain it extends
chain_seen = collections.Counter(); chain_bad = collections.Counter()
for b in range(B):
    for k in range(1, n):
        if wrong[b, :k].any():
            break
        if ops[b, k - 1] != 2:
            continue
        c = 1
        while k - 1 - c >= 0 and ops[b, k - 1 - c] == 2:
            c += 1
        c = min(c, 4)
        chain_seen[c] += 1; chain_bad[c] += int(wrong[b, k])
print("'*' first-error rate by factors already in the term (4 = 4 or more):",
      {c: f"{chain_bad[c]}/{chain_seen[c]}" for c in sorted(chain_seen)})
