"""Where a trained modular_arithmetic_simple model goes wrong, transition by transition.

Usage: PYTHONPATH=src python docs/analysis/mas_transitions.py RUN_DIR (a run with its weights).
For 600 random expressions of 31 tokens it asks the model (greedy decoding) for the answer to
every prefix and finds the first prefix answered wrong; the transition that led there is (the
true state before it, the operator, the digit), the state being (value so far, signed last
term) mod 5. Prints the prefix accuracy by position, the first-error rate by operator, the
worst transitions, and the first-error rate of `*` by the number of factors already in the
term. An analysis aid, not part of the package (RESULTS.md quotes its output)."""
import sys, collections
import numpy as np
from pntm.decoding import greedy_decode
from pntm.runs import RunDir, load_model
from pntm.tasks import get_task
from mas_automaton import OPS, walk  # beside this script

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
task = get_task("modular_arithmetic_simple")
rng = np.random.default_rng(11)
B, n = 600, 16
digits = rng.integers(0, 5, (B, n)); ops = rng.integers(0, 3, (B, n - 1))

# the automaton the transitions are named by: state after digit k = (total, signed term)
states = np.zeros((B, n, 2), dtype=int)
prompts = []  # prompts[b * n + k]: digits 0..k of expression b with their operators
for b in range(B):
    tokens, walked = walk(digits[b], ops[b], task)
    states[b] = [s[:2] for s in walked]
    prompts += [tuple(tokens[:2 * k + 1]) for k in range(n)]

answers = greedy_decode(model, vocab, prompts, 1)
pred = np.array([vocab.decode(a)[0] for a in answers]).reshape(B, n)
wrong = pred != states[:, :, 0].astype(str)

seen, bad = collections.Counter(), collections.Counter()              # per transition
chain_seen, chain_bad = collections.Counter(), collections.Counter()  # '*' by factors so far
for b in range(B):
    for k in range(1, n):  # the steps up to and including the first wrong answer
        key = (tuple(int(v) for v in states[b, k - 1]), OPS[ops[b, k - 1]], int(digits[b, k]))
        seen[key] += 1; bad[key] += int(wrong[b, k])
        if ops[b, k - 1] == 2:
            factors = 1
            while k - 1 - factors >= 0 and ops[b, k - 1 - factors] == 2:
                factors += 1
            chain_seen[min(factors, 4)] += 1; chain_bad[min(factors, 4)] += int(wrong[b, k])
        if wrong[b, k]:
            break

print("prefix accuracy by position:", " ".join(f"{1 - wrong[:, k].mean():.2f}" for k in range(n)))
print(f"first errors: {sum(bad.values())} over {len(+bad)} transitions; "  # +bad: nonzero only
      f"transitions seen: {len(seen)}")
by_op, seen_op = collections.Counter(), collections.Counter()
for (s, o, d), c in seen.items(): seen_op[o] += c; by_op[o] += bad[(s, o, d)]
print("first-error rate by op:", {o: f"{by_op[o]}/{seen_op[o]}" for o in OPS})
rows = sorted(((bad[k] / seen[k], bad[k], seen[k], k) for k in seen if bad[k]), reverse=True)[:15]
for r, nb, ns, k in rows: print(f"  state (total, term) {k[0]} then '{k[1]} {k[2]}': wrong {nb}/{ns}")
always = [k for k in seen if seen[k] >= 3 and bad[k] == seen[k]]
print(f"transitions wrong every time (seen >= 3): {len(always)}")
print("'*' first-error rate by factors already in the term (4 = 4 or more):",
      {c: f"{chain_bad[c]}/{chain_seen[c]}" for c in sorted(chain_seen)})
