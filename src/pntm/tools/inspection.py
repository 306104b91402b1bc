"""``pntm inspect RUN_DIR PROMPT --out FIG.png``: one figure of what a model does on one prompt.

The prompt is decoded greedily, exactly as ``pntm generate`` does. The tokens the decoder fed
(``BOS prompt SEP`` and the answer up to the token before its ``EOS``) then go through the model
once more while its internals are recorded, one column per token fed:

* **P-NTM**, per layer: every head's weighting over the memory cells (the write head first, then
  the read heads, then any content heads), the erase and add vectors written at each step, and
  any state heads' states.
* **NTM**: the write and read heads' weightings over the memory cells.
* **Transformer**, per layer and attention head: the attention of each position over the earlier
  ones (the heads of a memory-less model).
* **LSTM**: the norms of the hidden and cell states per layer, and the last layer's hidden units.

Decisions:

* **The model's own numerics.** P-NTM's heads come from ``PNTMLayer.trace`` (the layer's own
  controls, integer positions or Fourier scan, and content weightings, as its forward pass runs
  them), fed with each layer's inputs in turn (``PNTM.inputs``, then each layer's output). A
  test checks them against the recurrent mode that decoding uses. The NTM and the LSTM are
  stepped through their recurrent mode, whose state holds the weightings and the (h, c) pairs;
  Transformer attention is recomputed from each block's queries and keys
  (``CausalSelfAttention.project``), with its causal mask.
* **Fixed colour scales**: weightings, attention and states on [0, 1], erase on [0, 1], add (a
  tanh) and hidden units on [-1, 1], so that figures of different runs and prompts compare.
* **Memory cells as signed offsets** from the origin cell 0 (heads start on cell -1, the last
  cell of the circular memory, so the first token lands on cell 0), cropped to the cells some
  head visits; the circle is cut where no head goes, so no path is drawn broken.
* matplotlib (the ``plot`` extra) is imported only here, with the Agg backend; without it the
  command ends with a one-line error. The PNG is written atomically like the run's files.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pntm import tasks
from pntm.errors import PntmError
from pntm.models import SequenceModel

#: a weighting at least this large marks a memory cell as visited (for cropping the heat maps)
VISITED = 0.01
MAX_COLUMNS = 4
TOKEN_LABELS = {tasks.BOS: "BOS", tasks.SEP: "SEP", tasks.EOS: "EOS", tasks.PAD: "PAD"}


@dataclass
class Panel:
    """One plot: a heat map (``values``: rows x time) or lines (``values``: series x time)."""

    title: str
    values: np.ndarray
    kind: str = "heat"
    ylabel: str = ""
    vrange: tuple[float, float] = (0.0, 1.0)
    cmap: str = "viridis"
    first_row: int = 0  # the label of row 0 (a cell offset, a position), rows counting up
    legend: list[str] = field(default_factory=list)


@dataclass
class Trace:
    model: str
    prompt: list[str]
    answer: list[str]  # decoded, without its EOS
    ended: bool        # whether the decoder produced an EOS within its budget
    fed: list[str]     # the tokens fed, one per time step (column)
    panels: list[Panel]


# --------------------------------------------------------------------------- recording

def fed_tokens(vocab: tasks.Vocab, prompt, answer: list[str], ended: bool) -> list[int]:
    """Ids the decoder fed: ``BOS prompt SEP`` then every decoded token but the last
    prediction (the EOS, or the last token of an answer that ran out of budget)."""
    decoded = answer + [tasks.EOS] if ended else answer
    return [vocab.bos_id, *vocab.encode(prompt), vocab.sep_id, *vocab.encode(decoded[:-1])]


def cell_window(weights: np.ndarray) -> tuple[np.ndarray, int]:
    """Weightings (..., N) with their cells in display order, cropped to the visited cells plus
    one on each side; returns them and the signed offset of their first cell.

    Memory is circular, so a head left of cell 0 sits on cells N-1, N-2, ... The display cuts
    the circle in the middle of its longest stretch of unvisited cells, so every head's path is
    drawn unbroken, and labels each cell by its offset from cell 0 along that cut circle."""
    cells = weights.shape[-1]
    visited = weights.reshape(-1, cells).max(axis=0) >= VISITED
    cut = cells // 2
    if visited.any():
        idx = np.flatnonzero(visited)
        gaps = np.diff(np.append(idx, idx[0] + cells))  # to the next visited cell, circularly
        g = int(np.argmax(gaps))
        cut = int(idx[g] + gaps[g] // 2) % cells
    order = (cut + np.arange(cells)) % cells
    shown, zero = weights[..., order], (-cut) % cells  # cell 0 is column ``zero``
    columns = np.flatnonzero(visited[order])
    lo, hi = (columns[0], columns[-1]) if len(columns) else (zero, zero)
    lo, hi = max(lo - 1, 0), min(hi + 1, cells - 1)
    return shown[..., lo: hi + 1], int(lo - zero)


def head_panels(weights: np.ndarray, names: list[str], prefix: str) -> list[Panel]:
    """Heat maps (cells x time) of weightings ``(T, H, N)``, one per head, on shared cells."""
    window, first = cell_window(np.clip(weights, 0.0, 1.0))
    return [Panel(f"{prefix}{name}", window[:, h].T, ylabel="memory cell", first_row=first)
            for h, name in enumerate(names)]


def pntm_internals(model, tokens: torch.Tensor) -> list[dict[str, np.ndarray]]:
    """Per P-NTM layer, for one row of ``tokens`` (1, T), from ``PNTMLayer.trace``: ``weights``
    (T, heads, cells) of the location heads, head 0 writing, then of the content heads, if any;
    the ``erase`` and ``add`` vectors (T, memory_width); ``states`` (T, state heads, S)
    when the layer has state heads; ``work`` (T, cells), the work tape head's cell (one-hot)
    and ``work_writes`` (1, T) its write gate, when the layer has a work tape."""
    out = []
    u = model.inputs(tokens)
    for layer in model.layers:
        trace = layer.trace(u)
        u = layer(u)
        weights = trace.weights[0]
        if trace.content is not None:
            weights = torch.cat([weights, trace.content[0]], dim=1)
        record = {"weights": weights, "erase": trace.erase[0], "add": trace.add[0]}
        if trace.states is not None:
            record["states"] = trace.states[0]
        if trace.work is not None:
            record["work"] = F.one_hot(trace.work[0], weights.shape[-1])
            record["work_writes"] = trace.work_writes[0][None]
        out.append({key: value.float().cpu().numpy() for key, value in record.items()})
    return out


def trace_pntm(model, tokens: torch.Tensor) -> list[Panel]:
    panels = []
    for i, (layer, rec) in enumerate(zip(model.layers, pntm_internals(model, tokens))):
        prefix = f"layer {i + 1}: " if len(model.layers) > 1 else ""
        names = ["write head" + (" (tape)" if layer.tape_writer else "")]
        names += [f"read head {h}" for h in range(1, layer.heads)]
        names += [f"content head {h + 1}" for h in range(layer.content_heads)]
        panels += head_panels(rec["weights"], names, prefix)
        for h in range(rec["states"].shape[1] if "states" in rec else 0):
            panels.append(Panel(f"{prefix}state head {h + 1}", rec["states"][:, h].T,
                                ylabel="state"))
        if "work" in rec:
            panels += head_panels(rec["work"][:, None], ["work tape head"], prefix)
            panels.append(Panel(f"{prefix}work tape: writes", rec["work_writes"],
                                ylabel="gate"))
        panels.append(Panel(f"{prefix}erase", rec["erase"].T, ylabel="memory width"))
        panels.append(Panel(f"{prefix}add", rec["add"].T, ylabel="memory width",
                            vrange=(-1.0, 1.0), cmap="RdBu_r"))
    return panels


def trace_ntm(model, tokens: torch.Tensor) -> list[Panel]:
    state = model.init_state(1, tokens.shape[1], tokens.device)
    weights = []
    for t in range(tokens.shape[1]):
        _, state = model.step(tokens[:, t], state)
        weights.append(state.weights[0].float().cpu().numpy())  # (1 + R, N): head 0 writes
    names = ["write head"] + [f"read head {h}" for h in range(1, model.heads)]
    return head_panels(np.stack(weights), names, "")


def trace_transformer(model, tokens: torch.Tensor) -> list[Panel]:
    captured: dict[int, torch.Tensor] = {}

    def keep(index, module, args, output):
        captured[index] = args[0]  # z = LayerNorm(u): the attention's input

    hooks = [block.attn.register_forward_hook(partial(keep, i))
             for i, block in enumerate(model.blocks)]
    try:
        model(tokens)
    finally:
        for hook in hooks:
            hook.remove()
    T = tokens.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril()
    panels = []
    for i, block in enumerate(model.blocks):
        attn = block.attn
        q, k, _ = attn.project(captured[i], torch.arange(T, device=tokens.device))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(attn.head_dim)
        maps = scores.masked_fill(~causal, float("-inf")).softmax(-1)[0]  # (heads, query, key)
        for h in range(attn.heads):
            panels.append(Panel(f"layer {i + 1}, attention head {h + 1}",
                                maps[h].float().cpu().numpy().T, ylabel="attended position"))
    return panels


def trace_lstm(model, tokens: torch.Tensor) -> list[Panel]:
    state = model.init_state(1, tokens.shape[1], tokens.device)
    h_norms, c_norms, hidden = [], [], []
    for t in range(tokens.shape[1]):
        _, state = model.step(tokens[:, t], state)
        h, c = state  # (layers, 1, d) each
        h_norms.append(h[:, 0].norm(dim=-1).cpu().numpy())
        c_norms.append(c[:, 0].norm(dim=-1).cpu().numpy())
        hidden.append(h[-1, 0].float().cpu().numpy())
    layers = [f"layer {i + 1}" for i in range(len(h_norms[0]))]
    return [Panel("hidden-state norm ‖h‖", np.stack(h_norms).T, kind="lines", ylabel="norm",
                  legend=layers),
            Panel("cell-state norm ‖c‖", np.stack(c_norms).T, kind="lines", ylabel="norm",
                  legend=layers),
            Panel(f"hidden units, layer {len(layers)}", np.stack(hidden).T, ylabel="unit",
                  vrange=(-1.0, 1.0), cmap="RdBu_r")]


TRACERS = {"pntm": trace_pntm, "ntm": trace_ntm, "transformer": trace_transformer,
           "lstm": trace_lstm}


@torch.inference_mode()
def trace(model: SequenceModel, model_name: str, vocab: tasks.Vocab, prompt, budget: int,
          device=None) -> Trace:
    """Decode ``prompt`` greedily and record what ``model`` does on the tokens it fed."""
    from pntm.decoding import generate_answer

    if model_name not in TRACERS:
        raise PntmError(f"pntm inspect does not know how to look inside model '{model_name}' "
                        f"(it knows {', '.join(TRACERS)})")
    answer, ended = generate_answer(model, vocab, prompt, budget, device)
    ids = fed_tokens(vocab, prompt, answer, ended)
    device = device if device is not None else next(model.parameters()).device
    tokens = torch.tensor([ids], dtype=torch.long, device=device)
    model.eval()
    panels = TRACERS[model_name](model, tokens)
    return Trace(model_name, list(prompt), answer, ended, vocab.decode(ids), panels)


# --------------------------------------------------------------------------- the figure

def check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PntmError("pntm inspect needs matplotlib, which is not installed "
                        "(pip install 'pntm[plot]')") from None


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(tr: Trace) -> bytes:
    """The figure as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pntm.decoding import join_tokens

    T = len(tr.fed)
    columns = min(MAX_COLUMNS, len(tr.panels))
    rows = math.ceil(len(tr.panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns + 0.6, 2.6 * rows + 0.7),
                             squeeze=False)
    labels = [TOKEN_LABELS.get(t, t[:4]) for t in tr.fed]
    sep = tr.fed.index(tasks.SEP)
    for ax, panel in zip(axes.flat, tr.panels):
        if panel.kind == "heat":
            n = panel.values.shape[0]
            image = ax.imshow(panel.values, aspect="auto", origin="lower", interpolation="nearest",
                              cmap=panel.cmap, vmin=panel.vrange[0], vmax=panel.vrange[1],
                              extent=(-0.5, T - 0.5, panel.first_row - 0.5,
                                      panel.first_row + n - 0.5))
            fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).ax.tick_params(labelsize=6)
            ax.axvline(sep, color="white", linestyle="--", linewidth=0.6)
        else:
            for series, label in zip(panel.values, panel.legend):
                ax.plot(np.arange(T), series, linewidth=1.0, label=label)
            ax.set_xlim(-0.5, T - 0.5)
            ax.axvline(sep, color="grey", linestyle="--", linewidth=0.6)
            ax.legend(fontsize=6)
        ax.set_title(panel.title, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=7)
        ax.tick_params(labelsize=6)
        if T <= 48:
            ax.set_xticks(np.arange(T))
            ax.set_xticklabels(labels, rotation=90, fontsize=5 if T > 24 else 6)
        else:
            ax.set_xlabel("token fed (SEP dashed)", fontsize=7)
    for ax in list(axes.flat)[len(tr.panels):]:
        ax.axis("off")
    answer = join_tokens(tr.answer) + ("" if tr.ended else f" (no {tasks.EOS})")
    prompt = _short(join_tokens(tr.prompt))
    fig.suptitle(f"{tr.model}: {prompt}  →  {_short(answer)}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the command

def inspect_run(run_dir: str | Path, prompt_text: str, out: str | Path, device=None) -> Trace:
    """Decode ``prompt_text`` with the run's model and write the figure to ``out``."""
    from pntm.decoding import answer_budget, parse_prompt
    from pntm.runs import RunDir, atomic_write, load_model

    check_matplotlib()
    run = RunDir(run_dir)
    cfg = run.load_config()
    prompt = parse_prompt(cfg, prompt_text)
    run.vocab(cfg).encode(prompt)  # an unknown token fails here, naming it
    vocab, model = load_model(run, cfg, device if device is not None else "cpu")
    tr = trace(model, cfg["model"], vocab, prompt, answer_budget(cfg, prompt), device)
    atomic_write(out, render(tr))
    return tr
