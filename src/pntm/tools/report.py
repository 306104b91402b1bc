"""The benchmark report: ``pntm report RUNS_DIR [--out RESULTS.md] [--json PATH] [--plots DIR]``.

Every figure in ``RESULTS.md`` comes from an ``eval.json`` under ``results/``. The report reads
each ``RUNS_DIR/*/eval.json`` and writes three things:

- ``--json`` (default ``RUNS_DIR/benchmark.json``): one entry per finished run (per-length and
  summary metrics, steps, training wall time, provenance: commit, dirty flag, command, device),
  one aggregate per (task, model), and the command and pntm commit that produced the file.
- ``--out`` (default ``RESULTS.md``): markdown tables between the markers
  ``<!-- report RUNS_DIR -->`` and ``<!-- /report RUNS_DIR -->`` (appended if absent), so prose
  around them is kept, one file can hold the blocks of several folders, and the numbers are
  always regenerated, never typed.
- ``--plots`` (default ``RUNS_DIR/plots``): one PNG per task, sequence accuracy against length,
  when matplotlib is installed (otherwise a one-line notice, not an error).

The numbers come from :mod:`pntm.tools.report_data` (its docstring holds the decisions: what
counts as a finished run, how a seed is selected, what succeeds), the markdown from
:mod:`pntm.tools.report_tables`, the figures from :mod:`pntm.tools.report_plots`. This module
reads, checks and writes:

- Everything is read and checked before anything is written.
- The JSON and the plots go inside ``RUNS_DIR`` by default, so reports of different folders
  never overwrite each other; ``make report`` names ``results/benchmark.json`` and
  ``results/plots``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from pntm.errors import PntmError
from pntm.runs import atomic_write_json, atomic_write_text
from pntm.tools import selection
from pntm.tools.report_data import build_benchmark, load_evals, unfinished_runs
from pntm.tools.report_plots import matplotlib_missing, write_plots
from pntm.tools.report_tables import markers, render

JSON_FILE, PLOTS_DIR = "benchmark.json", "plots"


def replace_block(text: str, block: str, runs_dir: str, kind: str = "report") -> str:
    """``text`` with its marked block (``kind``: report, ablation) for ``runs_dir`` replaced by
    ``block`` (or appended)."""
    start, end = markers(runs_dir, kind)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    return (text.rstrip() + "\n\n" if text else "") + block + "\n"


def default_command(runs_dir: str, out: Path, json_path: Path, plots_dir: Path | None,
                    select: str = "validation") -> str:
    args = ["pntm", "report", runs_dir, "--out", str(out), "--json", str(json_path)]
    args += ["--plots", str(plots_dir)] if plots_dir is not None else ["--no-plots"]
    args += ["--select", select] if select != "validation" else []
    return shlex.join(args)


def write_report(runs_dir: str | Path, out: str | Path = "RESULTS.md", *,
                 json_path: str | Path | None = None, plots_dir: str | Path | None = None,
                 plots: bool = True, command: str | None = None,
                 select: str = "validation") -> dict:
    """Write benchmark.json, the plots and the marked block of ``out``; everything is read and
    checked before anything is written. Returns ``{"block", "benchmark", "json", "plots",
    "notice"}`` (``notice``: why there are no plots, or None). ``select``: ``validation`` (the
    protocol) or ``test`` (the legacy display, marked as such)."""
    if select not in selection.SELECT_MODES:
        raise PntmError(f"unknown selection {select!r}; choose one of: "
                        f"{', '.join(selection.SELECT_MODES)}")
    runs_dir = str(runs_dir).rstrip("/") or "/"
    evals = load_evals(runs_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = Path(json_path) if json_path is not None else Path(runs_dir) / JSON_FILE
    plots_dir = Path(plots_dir) if plots_dir is not None else Path(runs_dir) / PLOTS_DIR
    command = command or default_command(runs_dir, out, json_path, plots_dir if plots else None,
                                         select)
    bench = build_benchmark(runs_dir, evals, unfinished_runs(runs_dir), command, select)
    text = out.read_text() if out.exists() else ""

    notice = matplotlib_missing() if plots else None
    plot_paths = write_plots(bench["runs"], plots_dir, select) if plots and not notice else {}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_path, bench)
    block = render(bench, out, json_path, plot_paths, notice)
    atomic_write_text(out, replace_block(text, block, runs_dir))
    return {"block": block, "benchmark": bench, "json": json_path, "plots": plot_paths,
            "notice": notice}
