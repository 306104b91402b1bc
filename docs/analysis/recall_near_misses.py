"""Which keys associative recall's wrong answers come from.

Reads a `pntm eval --errors` file of an `associative_recall` run (each line a prompt of n
groups `k1 k2 k3 v`, then `? q1 q2 q3`; its target and the greedy output) and says, for every
wrong answer, which stored keys differ from the query in exactly one letter (its *near
misses*), and whether the wrong digit is the value of one of them, against chance: a wrong
digit drawn from the digits of the other pairs would be a near key's with probability (the
share of those digits that are), summed over the wrong answers (``ar_errors.py`` beside it
asks the same of a run on fresh draws of the task, with the same chance; this one reads the
examples an evaluation split got wrong):

    python docs/analysis/recall_near_misses.py \\
        results/diagnostics/associative_recall-s1/errors-validation.jsonl

prints one line per wrong answer and a JSON summary (`--json PATH` writes it too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from answers import recall_pairs  # beside this script


def near_misses(example: dict) -> dict:
    prompt, answer, output = example["input"], example["target"][0], example["output"][0]
    keys, digits, q, near = recall_pairs(prompt)
    near_digits = {digits[i] for i in near}
    others = [digits[i] for i in range(len(keys)) if i != q]
    return {"pairs": len(keys), "query": "".join(keys[q]), "answer": answer, "output": output,
            "near_misses": ["".join(keys[i]) + "=" + digits[i] for i in near],
            "output_is_a_near_miss_value": output in near_digits,
            "chance": sum(d in near_digits for d in others) / len(others)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("errors", help="a `pntm eval --errors` file of associative_recall")
    parser.add_argument("--json", help="also write the summary here")
    args = parser.parse_args()
    rows = [near_misses(json.loads(line)) for line in Path(args.errors).read_text().splitlines()]
    for r in rows:
        print(f"{r['pairs']} pairs, query {r['query']}: answer {r['answer']}, output "
              f"{r['output']}; keys one letter off: {', '.join(r['near_misses']) or 'none'}")
    summary = {"errors_file": args.errors, "wrong": len(rows),
               "with_a_near_miss": sum(bool(r["near_misses"]) for r in rows),
               "output_is_a_near_miss_value": sum(r["output_is_a_near_miss_value"] for r in rows),
               "expected_by_chance": round(sum(r["chance"] for r in rows), 2),
               "examples": rows}
    print(json.dumps({k: v for k, v in summary.items() if k != "examples"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
