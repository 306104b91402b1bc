"""Markdown tables from ``pntm bench`` JSON files: ``pntm report results/speed-cpu.json``.

The speed figures in ``RESULTS.md`` are rendered from the JSON that ``pntm bench --json`` wrote,
never typed: ``pntm report FILE.json --out RESULTS.md`` writes the file's tables between the
markers ``<!-- report FILE.json -->`` and ``<!-- /report FILE.json -->`` (as ``pntm report`` does
for a runs folder), with the device, the commit and the command that produced them.

Per benchmark (``provenance.benchmark`` in the file):

* ``train``: step time (ms) per length and model, the NTM / P-NTM ratio, and P-NTM's time per
  token relative to its value at the first length of at least 256 (1.00 = flat);
* ``decode``: prefill and decoding throughput (tokens/s) per context length and model;
* ``scan``: forward and forward + backward time (ms) per recurrence shape, length and method,
  the fastest forward + backward in bold.
"""

from __future__ import annotations

import json
from pathlib import Path

from pntm.errors import PntmError
from pntm.runs import atomic_write_text

MODEL_ORDER = ("pntm", "pntm-relaxed", "pntm-write", "pntm-write-relaxed", "pntm-worktape",
               "pntm-shipped", "ntm", "lstm", "transformer", "transformer-rand", "mamba",
               "deltanet", "slstm")
REFERENCE_LENGTH = 256  # time per token is compared with the first length >= this one


def load_bench(path: str | Path) -> dict:
    """A ``pntm bench --json`` file; anything else is a PntmError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PntmError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PntmError(f"cannot read {path}: {err}") from None
    except RecursionError:
        raise PntmError(f"cannot read {path}: JSON nested too deeply") from None
    kind = data.get("provenance", {}).get("benchmark") if isinstance(data, dict) else None
    if kind not in RENDERERS or not isinstance(data.get("results"), list):
        raise PntmError(f"{path} is not a pntm bench JSON file (no provenance.benchmark "
                        f"train, decode or scan)")
    return data


def _ms(seconds: float | None) -> str:
    return "skipped" if seconds is None else f"{seconds * 1e3:.1f}"


def _models(results: list[dict]) -> list[str]:
    """Models in ``MODEL_ORDER``, then the others by name; each step mode (``pntm+cudagraph``)
    right after its model."""
    def key(name: str) -> tuple:
        base, _, mode = name.partition("+")
        rank = MODEL_ORDER.index(base) if base in MODEL_ORDER else len(MODEL_ORDER)
        return rank, base, mode
    return sorted({r["model"] for r in results}, key=key)


# The CPU peak of bench files made before each measurement had its own (the growth of one
# process-wide high-water mark, 0 after a larger measurement): not rendered.
UNRELIABLE_PEAK = "cpu: growth of the process RSS high-water mark"


def train_table(results: list[dict], peak_kind: str | None = None) -> str:
    models = _models(results)
    step = {(r["model"], r["length"]): r.get("step_seconds") for r in results}
    batch = {(r["model"], r["length"]): r["batch"] for r in results}
    failed = {(r["model"], r["length"]) for r in results if r.get("error")}
    lengths = sorted({r["length"] for r in results})
    has_ratio = {"pntm", "ntm"} <= set(models)

    def per_token(m: str, t: int) -> float | None:
        return step[(m, t)] / (t * batch[(m, t)]) if step.get((m, t)) else None

    # time per token against the first length >= REFERENCE_LENGTH, for P-NTM (the tape
    # writer) and, where it was measured, the learned writer
    growth = {}
    for m, label in (("pntm", "P-NTM"), ("pntm-write", "learned writer")):
        reference = next((t for t in lengths if t >= REFERENCE_LENGTH and step.get((m, t))),
                         None)
        if m in models and reference is not None:
            growth[m] = (f"{label} time per token vs {reference}", reference)
    header = ["length", *models]
    if has_ratio:
        header.append("NTM / P-NTM")
    header += [title for title, _ in growth.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in lengths:
        row = [str(t), *("failed" if (m, t) in failed else _ms(step.get((m, t)))
                         for m in models)]
        pntm, ntm = step.get(("pntm", t)), step.get(("ntm", t))
        if has_ratio:
            row.append(f"{ntm / pntm:.1f}×" if pntm and ntm else "–")
        for m, (_, reference) in growth.items():
            now = per_token(m, t)
            row.append(f"{now / per_token(m, reference):.2f}" if now and t >= reference else "–")
        lines.append("| " + " | ".join(row) + " |")
    params = {r["model"]: r["parameters"] for r in results}
    lines.append("")
    if len(set(batch.values())) > 1:  # pntm bench --tokens: batch = tokens / length
        tokens = sorted({b * t for (_, t), b in batch.items()})
        size = (f"{tokens[0]:,} tokens per step (batch = {tokens[0]:,} / length)"
                if len(tokens) == 1 else "the batch of each row's length")
    else:
        size = f"batch {results[0]['batch']}"
    micro = sorted({r["micro_batch"] for r in results if r.get("micro_batch")})
    if micro:  # pntm bench --micro-batch N: the step in slices of N sequences
        size += f", forward and backward in micro-batches of {micro[0]} sequences"
    lines.append("Milliseconds per training step (forward, backward, AdamW) at "
                 f"{size}, median of the timed steps. Parameters: "
                 + ", ".join(f"{m} {params[m]:,}" for m in models) + ".")
    errors = {r["model"]: r["error"] for r in results if r.get("error")}
    for m, error in errors.items():
        lines += ["", f"{m}: the step could not be prepared ({error})."]
    if peak_kind is not None and not peak_kind.startswith(UNRELIABLE_PEAK):
        peak = {(r["model"], r["length"]): r.get("peak_memory_bytes") for r in results}
        lines += ["", "| length | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
        for t in lengths:
            cells = ["skipped" if peak.get((m, t)) is None else f"{peak[(m, t)] / 2**20:,.0f}"
                     for m in models]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines += ["", f"Peak memory of a training step, MiB ({peak_kind})."]
    return "\n".join(lines)


def decode_table(results: list[dict]) -> str:
    lines = ["| context | model | prefill tokens/s | decoding tokens/s |", "|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["context"], _models(results).index(r["model"]))):
        prefill = r.get("prefill_tokens_per_second")
        decode = r.get("tokens_per_second")
        lines.append(f"| {r['context']} | {r['model']} | "
                     f"{'skipped' if prefill is None else f'{prefill:,.0f}'} | "
                     f"{'skipped' if decode is None else f'{decode:,.0f}'} |")
    lines.append("")
    lines.append(f"Batch {results[0]['batch']}; greedy decoding through `model.step`, "
                 f"{results[0].get('new_tokens', '?')} new tokens after the prompt.")
    return "\n".join(lines)


def scan_table(results: list[dict]) -> str:
    lines = ["| shape | length | method | forward ms | forward + backward ms |",
             "|---|---|---|---|---|"]
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["shape"], r["length"]), []).append(r)
    for (shape, length), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        timed = [r["backward_seconds"] for r in rows if r.get("backward_seconds") is not None]
        best = min(timed) if timed else None
        for r in rows:
            total = _ms(r.get("backward_seconds"))
            if best is not None and r.get("backward_seconds") == best:
                total = f"**{total}**"
            fwd = r.get("forward_seconds")
            lines.append(f"| {shape} | {length} | {r['method']} | "
                         f"{'skipped' if fwd is None else f'{fwd * 1e3:.2f}'} | {total} |")
    return "\n".join(lines)


RENDERERS = {"train": train_table, "decode": decode_table, "scan": scan_table}


def render(data: dict, name: str) -> str:
    prov = data["provenance"]
    commit = str(prov.get("git_commit", "unknown"))[:10]
    dirty = " (uncommitted changes)" if prov.get("git_dirty") else ""
    return "\n".join([
        (train_table(data["results"], prov.get("peak_memory")) if prov["benchmark"] == "train"
         else RENDERERS[prov["benchmark"]](data["results"])), "",
        f"Device: {data['device']}. Machine: {prov.get('machine', '?')}; torch "
        f"{prov.get('torch', '?')}. Commit `{commit}`{dirty}, {prov.get('created', '?')}. "
        f"Data: `{name}`, made by `{prov.get('command', '?')}`.",
    ])


def write_bench_report(path: str | Path, out: str | Path = "RESULTS.md") -> str:
    """Render ``path`` into its marked block of ``out``; returns the block."""
    from pntm.tools.report import markers, replace_block

    name = str(path)
    block_body = render(load_bench(path), name)
    start, end = markers(name)
    block = f"{start}\n{block_body}\n{end}"
    out = Path(out)
    text = out.read_text() if out.exists() else ""
    atomic_write_text(out, replace_block(text, block, name))
    return block
