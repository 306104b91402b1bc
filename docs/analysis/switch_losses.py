"""The training loss just before and just after the relaxed heads harden, per run.

Usage: python docs/analysis/switch_losses.py RUN_DIR [RUN_DIR ...] [--switch 2800]
[--before 400] [--after 500] [--json OUT.json]

For each run folder it reads ``metrics.jsonl`` (the training loss of the logged batches, every
50 steps) and prints the mean loss over the steps ``[switch - before, switch)`` and
``[switch, switch + after)``, beside the run's validation sequence accuracy
(``eval-validation.json``) and the step it stopped at. The shipped config's relaxed read heads
harden at step 2,800 (``relax: [0.3, 0.7]`` of its 4,000-step schedule), so the defaults
compare steps 2,400-2,799 with 2,800-3,299: a run whose loss was near zero before and far above
it after learned its task with the annealed heads and lost it at the switch (RESULTS.md, "A
collapse when the relaxed heads harden"). An analysis aid, not part of the package."""
import argparse
import json
from pathlib import Path

from pntm.runs import RunDir


def mean_loss(rows: list[dict], lo: int, hi: int) -> float | None:
    losses = [r["loss"] for r in rows if lo <= r["step"] < hi]
    return sum(losses) / len(losses) if losses else None


def read_run(run: Path, switch: int, before: int, after: int) -> dict:
    rows = [row for row in RunDir(run).read_metrics() if "loss" in row]
    validation = run / "eval-validation.json"
    summary = json.loads(validation.read_text()) if validation.exists() else None
    return {"run": f"{run.parent.name}/{run.name}",
            "loss_before": mean_loss(rows, switch - before, switch),
            "loss_after": mean_loss(rows, switch, switch + after),
            "validation": summary["summary"]["ood_sequence_accuracy"] if summary else None,
            "steps": summary["steps"] if summary else max((r["step"] for r in rows), default=0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--switch", type=int, default=2800, help="the step the heads harden at")
    p.add_argument("--before", type=int, default=400, help="steps averaged before the switch")
    p.add_argument("--after", type=int, default=500, help="steps averaged from the switch on")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args()
    rows = [read_run(run, args.switch, args.before, args.after) for run in args.runs
            if (run / "metrics.jsonl").exists()]

    def cell(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"
    print(f"{'run':<60} {'before':>7} {'after':>7} {'val':>7} {'steps':>6}")
    for r in rows:
        print(f"{r['run']:<60} {cell(r['loss_before']):>7} {cell(r['loss_after']):>7} "
              f"{cell(r['validation'], 4):>7} {r['steps']:>6}")
    if args.json:
        args.json.write_text(json.dumps({"switch": args.switch, "before": args.before,
                                         "after": args.after, "runs": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
