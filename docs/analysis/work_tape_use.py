"""Whether a trained P-NTM uses its work tape: the validation accuracy with the tape's reads
removed, layer by layer, and what its head does on the validation prompts.

Usage: PYTHONPATH=src python docs/analysis/work_tape_use.py RUN_DIR [SAMPLES] (a P-NTM run with
``work_tape: true``; SAMPLES per length, default 32). It evaluates the run's weights on its
validation split (lengths 41-64, greedy decoding, as ``pntm eval --split validation``) as
trained, then with the work tape's term ``W_v r_t`` of each layer set to zero (the tape still
runs; its reads no longer reach the layer's output), and prints the sequence accuracy of each.
Then, over one validation example per length fed with its right answer, the share of tokens
whose write gate was open and the head's moves per layer (a jump counts as the move it made). An
analysis aid, not part of the package (RESULTS.md quotes its output)."""
import collections
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from pntm.evaluate import evaluate_run
from pntm.runs import RunDir, load_model
from pntm.tasks import get_task

run_dir = sys.argv[1]
samples = int(sys.argv[2]) if len(sys.argv) > 2 else 32
run = RunDir(run_dir)
cfg = run.load_config()
vocab, model = load_model(run, cfg)
model.eval()


def accuracy(label: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        report = evaluate_run(run_dir, samples=samples, split="validation", model=model,
                              json_path=Path(folder) / "eval.json", quiet=True)
    print(f"{label}: validation sequence accuracy "
          f"{100 * report['summary']['ood_sequence_accuracy']:.1f}%")


accuracy("as trained")
for number, layer in enumerate(model.layers):
    saved = [p.detach().clone() for p in layer.work_tape.to_out.parameters()]
    with torch.no_grad():
        for p in layer.work_tape.to_out.parameters():
            p.zero_()
    accuracy(f"layer {number}'s work tape reads removed")
    with torch.no_grad():
        for p, value in zip(layer.work_tape.to_out.parameters(), saved):
            p.copy_(value)

task = get_task(cfg["task"])
rng = np.random.default_rng(0)
gates, moves = collections.Counter(), collections.defaultdict(collections.Counter)
with torch.inference_mode():
    for length in range(41, 65):
        example = task.generate(length, rng)
        ids = [vocab.bos_id, *vocab.encode(example.prompt), vocab.sep_id,
               *vocab.encode(example.answer)]
        u = model.inputs(torch.tensor([ids]))
        for number, layer in enumerate(model.layers):
            trace = layer.trace(u)
            cells, size = trace.work[0], layer.num_cells(len(ids))
            steps = torch.diff(cells, prepend=cells.new_tensor([-1]))
            steps = (steps + size // 2) % size - size // 2  # moves, across the wrap
            gates[number, True] += int(trace.work_writes[0].sum())
            gates[number, False] += len(ids)
            moves[number].update(steps.tolist())
            u = layer(u)
for number in range(len(model.layers)):
    share = gates[number, True] / gates[number, False]
    print(f"layer {number}: gate open at {100 * share:.1f}% of tokens; moves "
          + " ".join(f"{m:+d}:{c}" for m, c in sorted(moves[number].items())))
