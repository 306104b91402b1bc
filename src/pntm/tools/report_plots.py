"""The figures of ``pntm report``: one PNG per task, sequence accuracy against length, when
matplotlib is installed (otherwise :func:`matplotlib_missing` says why not, for a one-line
notice)."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

from pntm.runs import atomic_write
from pntm.tools import selection
from pntm.tools.report_data import group_runs

MARKERS = ("o", "s", "^", "D", "v")
LINE_WIDTHS = (5.0, 3.0, 1.6, 0.8)


def matplotlib_missing() -> str | None:
    """None when matplotlib can be imported, else why not (for a one-line notice)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    return None


def seed_range(runs: list[dict]) -> tuple[list[int], list[float], list[float]]:
    """Lengths every seed evaluated, with the lowest and highest sequence accuracy there."""
    tables = [{row["length"]: row["sequence_accuracy"] for row in r["lengths"]} for r in runs]
    common = sorted(set.intersection(*(set(t) for t in tables)))
    return (common, [min(t[n] for t in tables) for n in common],
            [max(t[n] for t in tables) for n in common])


def plot_task(path: Path, task: str, groups: list[list[dict]],
              select: str = "validation") -> None:
    """Sequence accuracy against length for one task: per model its selected seed as a line
    (none when nothing is selectable), the range over its seeds shaded, the training lengths
    greyed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6.4, 4))
    try:
        lo, hi = groups[0][0]["train_lengths"]
        ax.axvspan(lo, hi, color="0.85", alpha=0.5, lw=0, label=f"training lengths {lo}–{hi}")
        ax.axvline(hi, color="0.4", ls=":", lw=1)
        longest = max(row["length"] for g in groups for r in g for row in r["lengths"])
        for i, runs in enumerate(groups):
            chosen = selection.choose(runs, select)["selected"]
            model, n = runs[0]["model"], len(runs)
            color = f"C{i % 10}"
            if chosen is not None:
                xs = [row["length"] for row in chosen["lengths"]]
                ys = [100 * row["sequence_accuracy"] for row in chosen["lengths"]]
                # models often coincide at 100%: each later line thinner, with its own marker
                ax.plot(xs, ys, marker=MARKERS[i % len(MARKERS)], ms=3, zorder=3 + i,
                        lw=LINE_WIDTHS[min(i, len(LINE_WIDTHS) - 1)], color=color,
                        label=f"{model} (selected on {select}, of {n} seeds)" if n > 1
                        else f"{model} (1 seed)")
            if n > 1 or chosen is None:
                common, low, high = seed_range(runs)
                ax.fill_between(common, [100 * v for v in low], [100 * v for v in high],
                                color=color, alpha=0.2, lw=0,
                                label=None if chosen is not None else
                                f"{model} (not selectable: range of {n} seeds)")
        ax.set_xscale("log")
        ax.set_xlim(lo, longest * 1.05)
        ticks = [t for t in (1, 2, 5, 10, 20, hi, 100, 200, 500, 1000, 2000) if lo <= t <= longest]
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(ticks + [longest]))))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_ylim(-3, 103)
        ax.set_xlabel(f"length (log scale; trained on {lo}–{hi})")
        ax.set_ylabel("sequence accuracy (%)")
        ax.set_title(task)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
        atomic_write(path, buffer.getvalue())
    finally:
        plt.close(fig)


def write_plots(runs: list[dict], plots_dir: Path, select: str = "validation") -> dict[str, Path]:
    """One ``plots_dir/{task}.png`` per task; returns them by task."""
    by_task: dict[str, list[list[dict]]] = defaultdict(list)
    for (task, _), group in group_runs(runs).items():
        by_task[task].append(group)
    paths = {}
    for task, groups in by_task.items():
        paths[task] = plots_dir / f"{task}.png"
        plot_task(paths[task], task, groups, select)
    return paths
