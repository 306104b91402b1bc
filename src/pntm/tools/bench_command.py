"""``pntm bench`` as a command: its options checked (one-line errors), one benchmark run
(:mod:`pntm.tools.bench` measures), its table printed, its JSON file and plot written."""

from __future__ import annotations

import math
import sys

import torch

from pntm.errors import PntmError
from pntm.provenance import cpu_name, provenance
from pntm.runs import atomic_write_json
from pntm.config import merge, parse_set
from pntm.tools.bench import (DEFAULT_CONTEXTS, DEFAULT_DECODE_MODELS, DEFAULT_MODELS, STEP_MODES,
                              VARIANTS, bench_config, bench_decode, bench_model, bench_scan,
                              bench_training, default_models, parse_models, peak_memory_kind,
                              split_step_mode)


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"64,256,1024"`` -> sorted, distinct positive integers; anything else is a PntmError."""
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            value = 0
        if value < 1:
            raise PntmError(f"bad {flag} '{text}': expected comma-separated positive integers, "
                            "e.g. 64,256,1024")
        values.append(value)
    return sorted(set(values))


# --------------------------------------------------------------------------- tables

def training_table(results: list[dict]) -> str:
    lines = [f"{'length':>7} {'batch':>6} {'model':<18} {'params':>8} {'step ms':>10} "
             f"{'tokens/s':>11} {'peak MiB':>9}"]
    for length in sorted({r["length"] for r in results}):
        rows = [r for r in results if r["length"] == length]
        for r in rows:
            if r.get("skipped"):
                lines.append(f"{length:>7} {r['batch']:>6} {r['model']:<18} "
                             f"{r['parameters']:>8} {'skipped':>10}")
                continue
            lines.append(f"{length:>7} {r['batch']:>6} {r['model']:<18} {r['parameters']:>8} "
                         f"{r['step_seconds'] * 1e3:>10.1f} {r['tokens_per_second']:>11.0f} "
                         f"{r['peak_memory_bytes'] / 2**20:>9.1f}")
        timed = {r["model"]: r["step_seconds"] for r in rows if not r.get("skipped")}
        if "pntm" in timed and "ntm" in timed:
            lines.append(f"{length:>7} NTM/P-NTM step time: {timed['ntm'] / timed['pntm']:.2f}x "
                         "(how many times faster P-NTM is)")
        if "pntm" in timed and "pntm-write" in timed:
            lines.append(f"{length:>7} learned/tape writer step time: "
                         f"{timed['pntm-write'] / timed['pntm']:.2f}x")
    return "\n".join(lines)



def scan_table(results: list[dict]) -> str:
    lines = [f"{'length':>7} {'shape':<8} {'method':<11} {'forward ms':>11} {'fwd+bwd ms':>11}"]
    order = sorted(results, key=lambda r: (r["shape"].split()[0], r["length"]))
    for r in order:
        fwd = "skipped" if r["forward_seconds"] is None else f"{r['forward_seconds'] * 1e3:.2f}"
        bwd = ("skipped" if r["backward_seconds"] is None
               else f"{r['backward_seconds'] * 1e3:.2f}")
        lines.append(f"{r['length']:>7} {r['shape'].split()[0]:<8} {r['method']:<11} "
                     f"{fwd:>11} {bwd:>11}")
    return "\n".join(lines)



def decode_table(results: list[dict]) -> str:
    lines = [f"{'context':>8} {'model':<18} {'params':>8} {'prefill tok/s':>14} "
             f"{'decode tok/s':>13}"]
    for r in sorted(results, key=lambda r: (r["context"], r["model"])):
        if r.get("skipped"):
            lines.append(f"{r['context']:>8} {r['model']:<18} {r['parameters']:>8} {'skipped':>14}")
            continue
        lines.append(f"{r['context']:>8} {r['model']:<18} {r['parameters']:>8} "
                     f"{r['prefill_tokens_per_second']:>14.0f} {r['tokens_per_second']:>13.0f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- output

def device_name(device: torch.device) -> str:
    """``cpu (model name)`` or ``cuda (GPU name)``: the device the figures were measured on."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def check_plot_available() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PntmError("--plot needs matplotlib, which is not installed "
                        "(pip install matplotlib)") from None


def write_plot(path: str, series: dict[str, tuple[list[int], list[float]]], xlabel: str,
               ylabel: str, title: str) -> None:
    """A log-log line plot, one line per series, written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in series.items():
        if xs:
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def run_bench(mode: str, *, models: list[str], lengths: list[int], contexts: list[int],
              batch: int, device: torch.device, repeats: int, warmup: int, time_limit: float,
              json_path: str | None, plot_path: str | None, command: str,
              pntm_sets: dict | None = None, tokens: int | None = None,
              micro_batch: int = 0) -> dict:
    """Run one benchmark (``mode``: train, scan or decode), print its table, write the files;
    ``tokens`` (training step only) replaces ``batch`` by ``tokens / length`` per length, and
    ``micro_batch`` (training step only) runs each step in slices of that many sequences."""
    if plot_path is not None:
        check_plot_available()
    log = (lambda message: print(message, file=sys.stderr))
    if mode == "scan":
        results = bench_scan(lengths, batch, device, repeats, warmup, time_limit, log=log)
        table = scan_table(results)
        series = {f"{r['method']} {r['shape'].split()[0]}": ([], []) for r in results}
        for r in results:
            if r["backward_seconds"] is not None:
                xs, ys = series[f"{r['method']} {r['shape'].split()[0]}"]
                xs.append(r["length"])
                ys.append(r["backward_seconds"])
        plot_args = ("length T", "forward + backward seconds", "linear_scan methods")
    elif mode == "decode":
        results = bench_decode(models, contexts, batch, device, warmup, time_limit, log=log,
                               pntm_sets=pntm_sets)
        table = decode_table(results)
        series = {name: ([], []) for name in models}
        for r in results:
            if not r.get("skipped"):
                series[r["model"]][0].append(r["context"])
                series[r["model"]][1].append(r["decode_seconds"] / r["new_tokens"])
        plot_args = ("context length", "seconds per decoded token",
                     f"greedy decoding, batch {batch}")
    else:
        results = bench_training(models, lengths, batch, device, repeats, warmup, time_limit,
                                 log=log, pntm_sets=pntm_sets, tokens=tokens,
                                 micro_batch=micro_batch)
        table = training_table(results)
        series = {name: ([], []) for name in models}
        for r in results:
            if not r.get("skipped"):
                series[r["model"]][0].append(r["length"])
                series[r["model"]][1].append(r["step_seconds"])
        plot_args = ("sequence length", "training step seconds",
                     f"training step, {tokens} tokens" if tokens else f"training step, batch {batch}")

    prov = provenance(command)
    prov.update({"benchmark": mode, "repeats": repeats, "warmup": warmup,
                 "time_limit_seconds": time_limit, "peak_memory": peak_memory_kind(device),
                 "threads": torch.get_num_threads()})
    if mode != "scan":
        prov["model_configs"] = {name: bench_config(name, pntm_sets) for name in models}
        modes = {split_step_mode(name)[1] for name in models} - {"eager"}
        if modes:
            prov["step_modes"] = {mode: STEP_MODES[mode] for mode in sorted(modes)}
    report = {"device": device_name(device), "provenance": prov, "results": results}
    print(table)
    if json_path is not None:
        atomic_write_json(json_path, report)
    if plot_path is not None:
        write_plot(plot_path, series, *plot_args)
    return report


def bench_from_options(*, mode: str, model_spec: str | None, length_spec: str,
                       context_spec: str | None, batch: int, device: str | None, repeats: int,
                       warmup: int, time_limit: float, json_path: str | None,
                       plot_path: str | None, command: str, sets: list[str] = (),
                       tokens: int | None = None, micro_batch: int = 0) -> dict:
    """``pntm bench``, from its options as given (the ``*_spec`` are the command line's comma
    lists; ``mode``: train, scan or decode; ``sets`` the ``--set model_config.KEY=VALUE``
    overrides of the P-NTM models): check every one (one-line errors), then run the
    benchmark."""
    from pntm.device import resolve_device

    if context_spec is not None and mode != "decode":
        raise PntmError("--contexts is only for --decode (use --lengths for the training step)")
    if not (time_limit > 0 and math.isfinite(time_limit)):
        raise PntmError(f"--time-limit must be a positive number of seconds, got {time_limit:g}")
    target = resolve_device(device)
    if mode == "scan":
        if model_spec is not None:
            raise PntmError("--scan times the linear_scan methods, not models: drop --models")
        models = []
    elif model_spec is not None:
        models = parse_models(model_spec, target)
        moded = [name for name in models if split_step_mode(name)[1] != "eager"]
        if mode == "decode" and moded:
            raise PntmError(f"--models {moded[0]}: step modes are for the training step, "
                            "not --decode")
    else:
        models = default_models(DEFAULT_DECODE_MODELS if mode == "decode" else DEFAULT_MODELS,
                                log=lambda message: print(message, file=sys.stderr))
    lengths = parse_int_list(length_spec, "--lengths")
    if tokens is not None:
        if mode != "train":
            raise PntmError("--tokens is for the training step: use --batch with "
                            f"--{mode}")
        uneven = [t for t in lengths if tokens % t]
        if uneven:
            raise PntmError(f"--tokens {tokens} is not a multiple of length {uneven[0]}: "
                            "every length must divide it (batch = tokens / length)")
    if micro_batch and mode != "train":
        raise PntmError(f"--micro-batch is for the training step, not --{mode}")
    contexts = parse_int_list(context_spec or DEFAULT_CONTEXTS, "--contexts")
    pntm_sets = parse_pntm_sets(sets, models)
    if plot_path is not None:
        check_plot_available()
    return run_bench(mode, models=models, lengths=lengths, contexts=contexts,
                     batch=batch, device=target, repeats=repeats, warmup=warmup,
                     time_limit=time_limit, json_path=json_path, plot_path=plot_path,
                     command=command, pntm_sets=pntm_sets, tokens=tokens,
                     micro_batch=micro_batch)


def parse_pntm_sets(sets: list[str], models: list[str]) -> dict:
    """``--set model_config.KEY=VALUE`` items -> the model_config overrides of the P-NTM models
    (``pntm`` and its variants), checked by building each of them once: a key that is not
    under ``model_config``, a bench without a P-NTM model or a bad value is a PntmError."""
    if not sets:
        return {}
    overrides: dict = {}
    for item in sets:
        parsed = parse_set(item)
        if set(parsed) != {"model_config"} or not isinstance(parsed["model_config"], dict):
            raise PntmError(f"bad --set '{item}': bench takes only model_config.KEY=VALUE "
                            "(applied to the P-NTM models)")
        overrides = merge(overrides, parsed["model_config"])
    pntm_models = [name for name in models
                   if VARIANTS.get(split_step_mode(name)[0], (name,))[0] == "pntm"]
    if not pntm_models:
        raise PntmError("--set applies to the P-NTM models (pntm and its variants), and none "
                        "is benchmarked")
    for name in pntm_models:
        bench_model(name, overrides)  # a bad key or value: its one-line ConfigError
    return overrides
