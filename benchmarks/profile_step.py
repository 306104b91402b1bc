"""Where a training step's time goes: torch.profiler over `pntm bench`'s training step.

    OMP_NUM_THREADS=1 python benchmarks/profile_step.py pntm-shipped 256 \\
        --out results/profile-pntm-shipped-256.txt

builds the model as `pntm bench --models NAME` does (`pntm.tools.bench`: random tokens, batch
32, AdamW), runs two untimed steps, then profiles three on the CPU and writes the operators
grouped by input shape, by their total CPU time, with the command and the machine on top. The
times are those of a profiled run (slower than `pntm bench`'s); read the shares, not the
milliseconds.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from pntm.provenance import provenance
from pntm.tools.bench import bench_model, random_tokens, training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a `pntm bench` model name, e.g. pntm-shipped")
    parser.add_argument("length", type=int)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = bench_model(args.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = random_tokens(args.batch, args.length + 1, torch.Generator().manual_seed(0))
    step = training_step(model, optimizer, tokens[:, :-1], tokens[:, 1:])
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(3):
            step()
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="cpu_time_total", row_limit=args.rows, max_name_column_width=40,
        max_shapes_column_width=80)
    info = provenance(shlex.join(["python", *sys.argv]))
    head = (f"# {info['command']}\n# commit {info['git_commit'][:10]}"
            f"{' (dirty)' if info['git_dirty'] else ''}, {info['machine']}, torch "
            f"{info['torch']}, {info['threads']} thread(s), three profiled steps\n")
    Path(args.out).write_text(head + table + "\n")
    print(head + table)


if __name__ == "__main__":
    main()
