"""Held-out tasks: six algorithmic tasks that no choice of this project has seen.

The shipped P-NTM config was chosen on the 20 built-in task definitions (their validation
splits). These six were defined on 2026-12-07, after that config, and are used for no choice:
no config, learning rate or seed is picked on them, so they measure how the one config fares on
a task nobody configured it for (RESULTS.md, "Held-out tasks"). They reach the model as a user's
would, through JSON Lines (`pntm train --data`), written by this script alone: it imports
nothing of pntm, so no task code of the library is shared with them.

    python benchmarks/heldout/make_tasks.py --out build/heldout

writes, per task, `train.jsonl` (input lengths 1-40, 2,000 examples per length),
`validation.jsonl` (41-64) and `test.jsonl` (1-40 and the test grid 41, 50, 64, ... 500; 128
per length), each example a line such as `{"input": "0110#1010", "target": "1100"}` (every
token is one character). The *length* of an example is its number of input tokens;
`bitwise_xor`'s inputs have odd lengths only (2n + 1), so an even length of a range or of the
test grid gives the odd one below it (49, 63, ... 499). Every draw comes from
`random.Random(f"{task}/{split}")`, so the files are the same on every machine and Python 3
version (a string seed is hashed by SHA-512).

The tasks, by the level of the Chomsky hierarchy a solution needs:

* `count_mod_3` (regular): a bit string; target: the number of 1s mod 3.
* `binary_increment` (regular: a finite transducer): an n-bit number, least significant bit
  first; target: that number plus one in n + 1 bits, least significant bit first.
* `majority` (one counter, not regular): a bit string; target: `1` if it has more 1s than 0s,
  `0` if fewer, `=` if as many.
* `interleave` (context-sensitive): bits x_1..x_n; target: x_1 x_{m+1} x_2 x_{m+2} ...
  with m = ceil(n / 2) (a riffle of its first and second halves).
* `bitwise_xor` (context-sensitive): two n-bit strings a # b; target: a XOR b, bit by bit.
* `repeat_copy` (context-sensitive; Graves et al. 2014): bits x_1..x_n then a count k in
  1-3; target: x repeated k times.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

TRAIN_LENGTHS = range(1, 41)
VALIDATION_LENGTHS = range(41, 65)
TEST_LENGTHS = [*range(1, 41), 41, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 500]
PER_LENGTH = {"train": 2000, "validation": 128, "test": 128}


def bits(rng: random.Random, n: int) -> list[str]:
    return [rng.choice("01") for _ in range(n)]


def count_mod_3(rng, length):
    x = bits(rng, length)
    return x, [str(x.count("1") % 3)]


def binary_increment(rng, length):
    x = bits(rng, length)
    value = sum(int(b) << i for i, b in enumerate(x)) + 1
    return x, [str((value >> i) & 1) for i in range(length + 1)]


def majority(rng, length):
    x = bits(rng, length)
    ones, zeros = x.count("1"), x.count("0")
    return x, ["1" if ones > zeros else "0" if ones < zeros else "="]


def interleave(rng, length):
    x = bits(rng, length)
    m = math.ceil(length / 2)
    first, second = x[:m], x[m:]
    riffle = [b for pair in zip(first, second) for b in pair]
    return x, riffle + first[len(second):]


def bitwise_xor(rng, length):
    n = (length - 1) // 2
    a, b = bits(rng, n), bits(rng, n)
    return a + ["#"] + b, [str(int(p) ^ int(q)) for p, q in zip(a, b)]


def repeat_copy(rng, length):
    x = bits(rng, length - 1)
    k = rng.randint(1, 3)
    return x + [str(k)], x * k


def odd_at_least_3(n: int) -> int | None:
    """The input length used for a length ``n`` of a split: ``bitwise_xor`` has odd lengths
    only, so an even ``n`` of a range or of the test grid (50, 64, ... 500) gives ``n - 1``."""
    n = n if n % 2 else n - 1
    return n if n >= 3 else None


# name: (example maker, the input length it makes for a length of a split, or None)
TASKS = {
    "count_mod_3": (count_mod_3, lambda n: n),
    "binary_increment": (binary_increment, lambda n: n),
    "majority": (majority, lambda n: n),
    "interleave": (interleave, lambda n: n),
    "bitwise_xor": (bitwise_xor, odd_at_least_3),
    "repeat_copy": (repeat_copy, lambda n: n if n >= 2 else None),
}
SPLIT_LENGTHS = {"train": TRAIN_LENGTHS, "validation": VALIDATION_LENGTHS, "test": TEST_LENGTHS}


def lengths(task: str, split: str) -> list[int]:
    """The input lengths of one split of one task."""
    fit = TASKS[task][1]
    return sorted({fit(n) for n in SPLIT_LENGTHS[split]} - {None})


def examples(task: str, split: str) -> list[tuple[list[str], list[str]]]:
    """Every example of one split of one task, length by length."""
    make = TASKS[task][0]
    rng = random.Random(f"{task}/{split}")
    return [make(rng, n) for n in lengths(task, split) for _ in range(PER_LENGTH[split])]


def write(out: Path, tasks: list[str]) -> None:
    for task in tasks:
        folder = out / task
        folder.mkdir(parents=True, exist_ok=True)
        for split in SPLIT_LENGTHS:
            lines = (json.dumps({"input": "".join(x), "target": "".join(y)})
                     for x, y in examples(task, split))
            (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for TASK/SPLIT.jsonl")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated, of: {', '.join(TASKS)} (default: all)")
    args = parser.parse_args(argv)
    names = [t.strip() for t in args.tasks.split(",")]
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        parser.error(f"unknown task {unknown[0]!r} (known: {', '.join(TASKS)})")
    write(args.out, names)


if __name__ == "__main__":
    main()
