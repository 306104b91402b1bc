"""Which stack element a stack_manipulation model gets wrong, and where that element came from.

Usage: python docs/analysis/stack_errors.py ERRORS.jsonl [--json OUT.json], where ERRORS.jsonl
is what ``pntm eval RUN_DIR --errors ERRORS.jsonl`` wrote for a stack_manipulation run (one
wrongly decoded example per line: length, input, target, output).

For each wrong example it replays the prompt (the stack bottom to top, then POP / PUSH0 /
PUSH1) keeping where each element of the final stack came from: the initial stack (the prompt's
bits, which stay on the input tape) or a push (which the model must have written somewhere),
and the earlier occupants of its place in the stack. It prints, per wrong example, the first
wrong answer position, the element there (its bit, origin and prompt position) and what the
model wrote instead; then the wrong elements counted by kind (origin and bit), each against
the count expected if the wrong element were drawn at random from the final stacks of those
examples. An analysis aid, not part of the package (RESULTS.md quotes its output)."""
import argparse
import collections
import json


def replay(prompt: list[str]) -> tuple[list[dict], dict]:
    """The final stack of a stack_manipulation prompt, bottom to top, each element with its
    ``bit``, ``origin`` ("initial" or "push") and prompt ``position``; and, for each place in
    the stack (0: bottom), every element that was ever there, in order."""
    first_action = next((i for i, tok in enumerate(prompt) if tok not in ("0", "1")),
                        len(prompt))
    stack, occupants = [], {}
    for i, tok in enumerate(prompt):
        if tok == "POP":
            if stack:
                stack.pop()
            continue
        element = {"bit": tok[-1], "origin": "initial" if i < first_action else "push",
                   "position": i}
        stack.append(element)
        occupants.setdefault(len(stack) - 1, []).append(element)
    return stack, occupants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("errors")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    wrong, expected = collections.Counter(), collections.Counter()
    with open(args.errors) as f:
        examples = [json.loads(line) for line in f]
    for example in examples:
        stack, occupants = replay(example["input"])
        top_down = stack[::-1]
        assert [e["bit"] for e in top_down] == example["target"], "not a stack_manipulation row"
        output = example["output"]
        k = next((i for i, tok in enumerate(example["target"])
                  if i >= len(output) or output[i] != tok), len(example["target"]))
        element = top_down[k] if k < len(top_down) else None
        rows.append({"length": example["length"], "first_wrong": k, "stack_size": len(stack),
                     "element": element, "model_wrote": output[k] if k < len(output) else None,
                     "earlier_occupants": occupants.get(len(stack) - 1 - k, [])[:-1]})
        wrong[kind(element)] += 1
        for e in stack:  # one wrong element per example, drawn from its final stack
            expected[kind(e)] += 1 / len(stack)
        print(f"length {example['length']}: answer position {k} of {len(stack)}: "
              f"{kind(element)} (prompt position {element and element['position']}), model "
              f"wrote {rows[-1]['model_wrote']}; earlier at its place: "
              f"{[kind(e) for e in rows[-1]['earlier_occupants']]}")
    print(f"{len(rows)} wrong examples; their first wrong element by kind, against chance:")
    for name in sorted(set(wrong) | set(expected)):
        print(f"  {name}: {wrong[name]} (chance {expected[name]:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"examples": rows, "wrong_by_kind": dict(wrong),
                       "chance_by_kind": dict(expected)}, f, indent=1)


def kind(element: dict | None) -> str:
    """``push 1``, ``initial 0``, ...; ``after the stack`` when the first wrong token comes
    after the last element (an extra token instead of EOS)."""
    return "after the stack" if element is None else f"{element['origin']} {element['bit']}"


if __name__ == "__main__":
    main()
