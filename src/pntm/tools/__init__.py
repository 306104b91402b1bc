"""The experiment tools: grids of runs, the benchmark report, speed benchmarks, figures.

- ``sweep``: ``pntm sweep``, a resumable grid of runs (local worker processes or Ray); the grid
  planned in ``sweep_grid``, each run done by ``sweep_worker``.
- ``selection``: the learning rate and seed chosen on validation; which seeds succeed.
- ``published``: the published numbers the report compares with (Delétang et al. 2023).
- ``report``: ``pntm report``, benchmark.json, the results tables and plots; the runs read and
  aggregated in ``report_data``, rendered in ``report_tables`` and ``report_plots``.
- ``bench``: ``pntm bench``, training step, scan methods and decoding, side by side; the
  command itself (options, tables, JSON, plot) in ``bench_command``.
- ``bench_report``: the speed tables of RESULTS.md, from ``pntm bench`` JSON files.
- ``inspection``: ``pntm inspect``, a figure of what a model does on one prompt.

They build on the core of running a model (``pntm.train``, ``pntm.evaluate``, ``pntm.runs``);
of the core, only the command line (``pntm.cli``) imports them.
"""
