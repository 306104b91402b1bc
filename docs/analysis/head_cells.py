"""Which cell every head of every layer is on, token by token, for one prompt of a task.

Usage: PYTHONPATH=src python docs/analysis/head_cells.py RUN_DIR TASK LENGTH [SEED] (a P-NTM
run). It draws one example of TASK at LENGTH (numpy seed SEED, default 0), feeds the prompt,
the separator and the right answer (teacher forcing, as training does), and prints per layer
the cell of the write head (head 0; the tape writer's is token t on cell t) and of each read
head after every token, as ``PNTMLayer.trace`` gives them with hard heads (evaluation mode),
and the work tape head's, if any (``*``: its write gate was open).
Cells are modulo the memory size, so -1 shows as the last cell. An analysis aid, not part of
the package (RESULTS.md quotes its output)."""
import sys

import numpy as np
import torch

from pntm.runs import RunDir, load_model
from pntm.tasks import get_task

run = RunDir(sys.argv[1]); cfg = run.load_config(); vocab, model = load_model(run, cfg)
model.eval()
task, length = get_task(sys.argv[2]), int(sys.argv[3])
example = task.generate(length, np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 0))
ids = [vocab.bos_id, *vocab.encode(example.prompt), vocab.sep_id, *vocab.encode(example.answer)]
print(f"prompt {' '.join(example.prompt)} | answer {' '.join(example.answer)} | "
      f"BOS at 0, separator at {len(example.prompt) + 1}")
with torch.inference_mode():
    u = model.inputs(torch.tensor([ids]))
    for number, layer in enumerate(model.layers):
        trace = layer.trace(u)
        cells = trace.weights[0].argmax(-1)  # (T, heads)
        print(f"layer {number}")
        for head in range(cells.shape[1]):
            print(f"  head {head}{' (writes)' if head == 0 else ''}: {cells[:, head].tolist()}")
        if trace.work is not None:  # the work tape's head, and * where its gate was open
            print("  work tape: " + " ".join(f"{c}{'*' if w else ''}" for c, w in
                                             zip(trace.work[0].tolist(),
                                                 trace.work_writes[0].tolist())))
        u = layer(u)
