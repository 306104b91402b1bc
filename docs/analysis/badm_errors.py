"""Where a binary_addition_dm model goes wrong: greedy answers to N prompts of length n, the
first wrong answer bit against the end of the shorter operand. An analysis aid, not part of
the package; it needs a run folder with its weights (``model.safetensors``), which committed
runs do not keep.

    python docs/analysis/badm_errors.py RUN_DIR n N
"""
import collections
import sys

import numpy as np
import torch

from pntm.decoding import greedy_decode
from pntm.runs import RunDir, load_model
from pntm.tasks import get_task


def main(run_dir: str, n: int, count: int) -> None:
    torch.set_num_threads(1)
    run = RunDir(run_dir)
    vocab, model = load_model(run, run.load_config())
    model.eval()
    task = get_task("binary_addition_dm")
    rng = np.random.default_rng(7)
    examples = [task.generate(n, rng) for _ in range(count)]
    out = greedy_decode(model, vocab, [e.prompt for e in examples], n + 1)
    rows = []
    for e, o in zip(examples, out):
        want = list(e.answer) + ["<eos>"]
        got = [vocab.tokens[i] for i in o][:len(want)]
        a, b = "".join(e.prompt).split("+")
        first_wrong = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), None)
        rows.append((first_wrong, min(len(a), len(b)), len(a) <= len(b)))
    right = np.array([r[0] is None for r in rows])
    print(f"n={n}: {right.mean():.3f} of {count} answers right")
    after = [r[0] - r[1] for r in rows if r[0] is not None]
    print("first wrong bit minus the shorter operand's length (wrong answers):", sorted(after))
    groups = collections.defaultdict(list)
    for (_, _, a_shorter), ok in zip(rows, right):
        groups["a shorter" if a_shorter else "b shorter"].append(ok)
    print({k: f"{np.mean(v):.2f} ({len(v)})" for k, v in sorted(groups.items())})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
