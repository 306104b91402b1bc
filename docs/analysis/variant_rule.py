"""A variant of the shipped P-NTM config against the two-stage rule of RESULTS.md.

Usage: python docs/analysis/variant_rule.py VARIANT_DIR [--shipped results/one-config-work-tape]
[--full-shipped-runs] [--json OUT.json]

The rule (written in RESULTS.md for ``harden-temp`` on 2026-12-07, before its runs, and reused
unchanged for ``hard-every-4`` and ``no-early-stop``) reads validation only:

1. Stage 1: seed 0 of the eleven tasks the shipped config learns exactly at seed 0 (``STAGE1``).
   Any of them below 100% validation sequence accuracy rejects the variant.
2. Stage 2: seeds 0-4 of the five tasks where the shipped config loses seeds (``STAGE2``). The
   variant is adopted iff its mean validation sequence accuracy over those 25 runs is above the
   shipped config's over the same 25 runs.

Run folders are named as ``pntm sweep`` names them (``TASK-pntm-sS``, ``TASK-pntm-lrLR-sS`` for
a learning rate other than the default). The script prints each run's validation accuracy and
steps trained (the variant's cost beside its result) and the verdict so far: ``incomplete``
while a run the verdict needs is missing (shown as ``-`` and counted).

Beside each variant run that has a shipped run of the same task and seed it prints the last
logged step up to which the two runs' training losses are equal (``same to N``): a variant
that only acts late (``no-early-stop`` acts after the shipped run's stop) should equal the
shipped run up to there, on a machine whose float rounding matches. Under the stage-2 means
it prints how many validation answers each side got wrong over the runs compared (every run's
validation set has the same size, so the means compare as these counts do): the verdict's
margin in answers.

``--full-shipped-runs`` is for ``no-early-stop`` only (its stage-2 plan in RESULTS.md, written
before its runs): with ``restore_best`` off, ``patience`` changes a run only by stopping it, so a
shipped run that trained all of its config's steps is the variant's run of that seed; such a
run fills a missing variant run and is marked ``(shipped)``. An analysis aid, not part of the
package."""
import argparse
import json
from pathlib import Path

from pntm.runs import RunDir

# Run folder stems; a stem carries the learning rate where the rule fixes one.
STAGE1 = [f"{t}-pntm" for t in (
    "parity", "even_pairs", "cycle_navigation", "missing_duplicate_string", "modular_arithmetic",
    "copy", "reverse", "odds_first", "duplicate", "stack_manipulation")] + [
    "binary_addition-pntm-lr3e-4"]
STAGE2 = ["binary_addition-pntm-lr3e-4"] + [f"{t}-pntm" for t in (
    "stack_manipulation", "modular_arithmetic_simple", "associative_recall", "bucket_sort")]
SEEDS = range(5)


def read_run(folder: Path) -> dict | None:
    """Validation sequence accuracy and steps of a finished run; None if it is not there."""
    path = folder / "eval-validation.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    planned = RunDir(folder).load_config()["train"]["steps"]
    wrong = sum(round(row["samples"] * (1 - row["sequence_accuracy"]))
                for row in record["lengths"])
    return {"validation": record["summary"]["ood_sequence_accuracy"], "steps": record["steps"],
            "trained_all_steps": record["steps"] >= planned, "wrong": wrong,
            "examples": sum(row["samples"] for row in record["lengths"])}


def same_losses_to(a: Path, b: Path) -> int:
    """The last logged step up to which runs ``a`` and ``b`` logged equal losses (0: none)."""
    la, lb = ({row["step"]: row["loss"] for row in RunDir(run).read_metrics() if "loss" in row}
              for run in (a, b))
    last = 0
    for step in sorted(set(la) & set(lb)):
        if la[step] != lb[step]:
            break
        last = step
    return last


def run_pair(variant: Path, shipped: Path, name: str, full_shipped_runs: bool) -> dict:
    """The variant's and the shipped config's run ``name``. The variant's own run carries how
    far it equals the shipped one; with ``full_shipped_runs`` a missing one is the shipped run
    when that trained all its steps."""
    own, base = read_run(variant / name), read_run(shipped / name)
    if own is not None and base is not None:
        own["same_to"] = same_losses_to(variant / name, shipped / name)
    elif own is None and full_shipped_runs and base is not None and base["trained_all_steps"]:
        own = {**base, "source": "shipped"}
    return {"variant": own, "shipped": base}


def verdict(variant: Path, shipped: Path, full_shipped_runs: bool = False) -> dict:
    stage1 = {f"{stem}-s0": run_pair(variant, shipped, f"{stem}-s0", full_shipped_runs)["variant"]
              for stem in STAGE1}
    missing1 = [name for name, run in stage1.items() if run is None]
    failed1 = [name for name, run in stage1.items() if run is not None and run["validation"] < 1.0]
    stage2 = {name: run_pair(variant, shipped, name, full_shipped_runs)
              for name in (f"{stem}-s{seed}" for stem in STAGE2 for seed in SEEDS)}
    both = [r for r in stage2.values() if r["variant"] and r["shipped"]]
    means = {side: (sum(r[side]["validation"] for r in both) / len(both) if both else None)
             for side in ("variant", "shipped")}
    wrong = {side: sum(r[side]["wrong"] for r in both) for side in ("variant", "shipped")}
    missing2 = [f"{side}: {name}" for name, r in stage2.items()
                for side in ("variant", "shipped") if r[side] is None]
    if failed1:
        state = "rejected at stage 1"
    elif missing1:
        state = "incomplete (stage 1)"
    elif missing2:
        state = "incomplete (stage 2)"
    else:
        state = "adopted" if means["variant"] > means["shipped"] else "rejected at stage 2"
    return {"variant": variant.name, "verdict": state, "stage1": stage1,
            "stage1_failed": failed1, "stage1_missing": missing1, "stage2": stage2,
            "stage2_runs_compared": len(both), "stage2_means": means, "stage2_wrong": wrong,
            "stage2_examples": sum(r["shipped"]["examples"] for r in both),
            "stage2_missing": missing2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variant", type=Path, help="the variant's run folders, e.g. "
                   "results/explore/no-early-stop")
    p.add_argument("--shipped", type=Path, default=Path("results/one-config-work-tape"),
                   help="the shipped config's run folders")
    p.add_argument("--full-shipped-runs", action="store_true",
                   help="no-early-stop only: a shipped run that trained all its steps counts as "
                   "the variant's run of its seed")
    p.add_argument("--json", type=Path, help="also write the verdict as JSON")
    args = p.parse_args()
    result = verdict(args.variant, args.shipped, args.full_shipped_runs)

    def cell(run):
        if run is None:
            return "-"
        note = (" (shipped)" if run.get("source") == "shipped"
                else f" same to {run['same_to']}" if "same_to" in run else "")
        return f"{100 * run['validation']:6.2f}% {run['steps']:>5}{note}"
    print(f"stage 1 ({args.variant.name}: validation, steps)")
    for name, run in result["stage1"].items():
        print(f"  {name:<38} {cell(run)}")
    print("stage 2 (variant | shipped: validation, steps)")
    for name, r in result["stage2"].items():
        print(f"  {name:<38} {cell(r['variant']):>27} | {cell(r['shipped'])}")
    means = result["stage2_means"]
    if result["stage2_runs_compared"]:
        print(f"stage 2 means over the {result['stage2_runs_compared']} of "
              f"{len(result['stage2'])} runs both have: "
              f"variant {100 * means['variant']:.2f}%, shipped {100 * means['shipped']:.2f}%")
        wrong = result["stage2_wrong"]
        print(f"  wrong validation answers over them (of {result['stage2_examples']:,} a side): "
              f"variant {wrong['variant']:,}, shipped {wrong['shipped']:,}")
    missing = len(result["stage1_missing"]) + len(result["stage2_missing"])
    if missing:
        print(f"runs missing (-): {missing}")
    print(f"verdict: {result['verdict']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
