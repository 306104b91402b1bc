"""The measurements of ``pntm bench`` (:mod:`pntm.tools.bench_command` runs them, prints and
writes): training speed, scan methods and decoding throughput, side by side.

Three benchmarks, each run in one process so that the ratios between models are measured on
the same machine under the same load:

* **training step** (default): for each model and length, one full training step (forward on
  random tokens with a SEP in the middle, cross-entropy on every position, backward, AdamW
  step), median of ``repeats`` timed steps after ``warmup`` untimed ones;
* **scan** (``--scan``): every ``linear_scan`` method on P-NTM's two recurrence shapes, the head
  spectra (B, T, H, N/2+1) complex64 and the memory (B, T, N, W) float32, forward alone and
  forward + backward;
* **decode** (``--decode``): greedy autoregressive decoding through ``model.step``: a prompt of
  the context length (prefill, timed on its own) then ``new_tokens`` generated tokens.

Sizes are matched to the NTM of Graves et al. (2014) as configured here: 128 × 20 memory, a
controller of width 100, one read and one write head; the LSTM, the Transformer and the peers
(Mamba, DeltaNet, sLSTM: one layer each) are sized to a similar parameter count (every result
row reports its count). The default model lists include the peers that import: ``mamba`` and
``slstm`` need the ``peers`` extra and are left out, with a note, when it is missing (naming
one in ``--models`` is then an error). ``transformer-rand`` is the Transformer with randomized
positions (``positional: randomized``); its decoding is the rotary Transformer's.

Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA; on CPU (Linux) it is how far the
resident set rose above its size at the start of the measurement, its high-water mark reset
there (``PeakMemory``); where the mark cannot be reset, the growth of the process's high-water
mark, 0 when an earlier measurement already reached a higher one. ``provenance.peak_memory``
says which one a JSON file holds.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from typing import Callable

import torch

from pntm.config_files import package_config
from pntm.errors import PntmError
from pntm.models.base import MISSING_EXTRAS, available_models, build_model, get_model_class
from pntm.ops.scan import METHODS, linear_scan
from pntm.tasks import Vocab
from pntm.train import accumulate_gradients

VOCAB_SIZE = 16  # 4 special tokens and 12 symbols
SEP_ID = Vocab.sep_id
BOS_ID = Vocab.bos_id
FIRST_SYMBOL = 4

MEMORY_CELLS, MEMORY_WIDTH, CONTROLLER = 128, 20, 100

# Matched sizes (see the module docstring). One P-NTM layer: one controller, one memory, one
# read and one write head, as in the NTM; its cells are chosen per input (at least 128).
BENCH_CONFIGS: dict[str, dict] = {
    "pntm": {"layers": 1, "d_ff": CONTROLLER, "memory_width": MEMORY_WIDTH, "read_heads": 1,
             "min_cells": MEMORY_CELLS, "tape_writer": True},  # the trained default
    "ntm": {"controller_size": CONTROLLER, "memory_cells": MEMORY_CELLS,
            "memory_width": MEMORY_WIDTH, "read_heads": 1},
    "lstm": {"d_model": 80, "num_layers": 1},
    "transformer": {"d_model": 64, "layers": 1, "heads": 4, "d_ff": 192},
    "mamba": {"d_model": 80, "layers": 1},
    "deltanet": {"d_model": 64, "layers": 1, "heads": 4, "d_ff": 128},
    "slstm": {"d_model": 96, "layers": 1, "heads": 4},
}

SHIPPED = "pntm-shipped"

# Named variants: (model, config overrides, training progress). ``pntm-relaxed`` is P-NTM in the
# soft phase of its relax-then-harden schedule: its relaxed head is soft, so the step runs the
# Fourier head scan over every cell instead of the position path of hard heads.
VARIANTS: dict[str, tuple[str, dict, float]] = {
    "pntm-relaxed": ("pntm", {"relax": [0.5, 0.9]}, 0.0),
    "transformer-rand": ("transformer", {"positional": "randomized"}, 1.0),
    # A learned write head (moves like a read head, starts as a tape): hard, on the write-event
    # path (pntm.ops.write_events); relaxed, soft with the chunked memory scan
    # (pntm.ops.memory_chunks).
    "pntm-write": ("pntm", {"tape_writer": False}, 1.0),
    "pntm-write-relaxed": ("pntm", {"tape_writer": False, "relax": [0.5, 0.9]}, 0.0),
    # The tape writer with a work tape beside it (pntm.models.work_tape): one more hard head
    # writing and reading a memory of its own, on the write-event path.
    "pntm-worktape": ("pntm", {"work_tape": True}, 1.0),
    # With a content head, as the shipped config has one: the learned writer then stays hard
    # while the read heads relax, and the relaxed reads attend over its writes
    # (pntm.ops.write_events.soft_reads_over_writes) instead of scanning the memory. Beside
    # it, the same heads over the tape writer, the shipped config's path.
    "pntm-content-relaxed": ("pntm", {"content_heads": 1, "relax": [0.5, 0.9]}, 0.0),
    "pntm-write-content-relaxed": ("pntm", {"tape_writer": False, "content_heads": 1,
                                            "relax": [0.5, 0.9]}, 0.0),
    # The shipped run config's model (configs/pntm.yaml, what `pntm train --model pntm` trains
    # on every task), after its schedules (every head hard): not NTM-sized, but the model whose
    # results RESULTS.md reports. Its config is read in `bench_config`, not listed here.
    SHIPPED: ("pntm", {}, 1.0),
}

# How a model's training step runs, named as a suffix of its bench name (``pntm+cudagraph``);
# no suffix: eager PyTorch. They ask whether P-NTM's launch-bound GPU step (many small kernels)
# gets faster when its kernels are fused or replayed without the host in the loop. The first
# call at each length (compilation or capture) is untimed and reported as ``prepare_seconds``.
STEP_MODES: dict[str, str] = {
    "compile": "torch.compile(model, dynamic=False): Inductor's fused kernels, one compilation "
               "per length",
    "reduce-overhead": "torch.compile(model, mode='reduce-overhead', dynamic=False): the "
                       "same, its kernels replayed as CUDA graphs",
    "cudagraph": "the whole step (forward, backward, AdamW with capturable=True) captured once "
                 "per length in one CUDA graph, then replayed; CUDA only",
}

DEFAULT_MODELS = "pntm,ntm,lstm,transformer,transformer-rand,mamba,deltanet,slstm"
DEFAULT_DECODE_MODELS = "pntm,transformer,mamba,deltanet,slstm"
DEFAULT_LENGTHS = "64,256,1024"
DEFAULT_CONTEXTS = "512,4096"
NEW_TOKENS = 64
SCAN_HEADS = 2  # P-NTM with one read and one write head


# --------------------------------------------------------------------------- model lists

def split_step_mode(name: str) -> tuple[str, str]:
    """``"pntm-write+cudagraph"`` -> ``("pntm-write", "cudagraph")``; no suffix: ``"eager"``."""
    model, _, mode = name.partition("+")
    return model, mode or "eager"


def parse_models(text: str, device: torch.device | None = None) -> list[str]:
    """``"pntm,ntm+compile"`` -> bench names in the given order: a model or variant, optionally
    with a step mode (``STEP_MODES``); an unknown one, or ``+cudagraph`` off CUDA, is a
    PntmError."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise PntmError(f"bad --models '{text}': expected comma-separated model names, "
                        "e.g. pntm,ntm")
    for name in names:
        model, mode = split_step_mode(name)
        get_model_class(VARIANTS[model][0] if model in VARIANTS else model)  # one-line error
        if mode != "eager" and mode not in STEP_MODES:
            raise PntmError(f"bad --models entry '{name}': unknown step mode '+{mode}' "
                            f"(known: {', '.join('+' + m for m in STEP_MODES)})")
        if mode == "cudagraph" and device is not None and device.type != "cuda":
            raise PntmError(f"--models {name}: CUDA graphs need --device cuda")
    return list(dict.fromkeys(names))


def default_models(text: str, log=print) -> list[str]:
    """The default list ``text`` less the models whose optional extra is not installed."""
    available = set(available_models())
    kept = []
    for name in text.split(","):
        base = VARIANTS[name][0] if name in VARIANTS else name
        if base in available:
            kept.append(name)
        elif base in MISSING_EXTRAS:
            log(f"bench: leaving out {name} (needs pip install 'pntm[{MISSING_EXTRAS[base]}]')")
        else:
            get_model_class(base)  # broken: its one-line error
    return kept


# --------------------------------------------------------------------------- measuring

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_high_water_bytes() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _proc_status_bytes(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def reset_rss_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux: ``5`` to ``/proc/self/clear_refs``, so
    ``VmHWM`` restarts from the current RSS); False where that is not possible. Free heap
    memory that the C allocator still holds is returned first (glibc ``malloc_trim``): a
    measurement that reused it would otherwise not show as a rise of the resident set."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the rise may then be understated when freed memory is reused
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        _proc_status_bytes("VmHWM")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of the code run inside ``with``: the CUDA allocator's peak; on CPU, how far
    the resident set rose above its size at the start. On Linux the RSS high-water mark is reset
    at the start (``reset_rss_peak``), so every measurement is its own, whatever ran before;
    elsewhere it is the growth of the process's high-water mark, 0 when an earlier measurement
    had already reached a higher one."""

    def __init__(self, device: torch.device):
        self.device = device
        self.bytes = 0

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif reset_rss_peak():
            self.start, self.field = _proc_status_bytes("VmRSS"), "VmHWM"
        else:
            self.start, self.field = rss_high_water_bytes(), None
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            peak = _proc_status_bytes(self.field) if self.field else rss_high_water_bytes()
            self.bytes = max(0, peak - self.start)
        return False


def peak_memory_kind(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated"
    if reset_rss_peak():
        return ("cpu: rise of the resident set above its size at the start of each measurement "
                "(Linux VmHWM, reset through /proc/self/clear_refs)")
    return "cpu: growth of the process RSS high-water mark (resource.getrusage ru_maxrss)"


LONG_STEP_REPEATS = 3  # timed calls once one call has taken longer than the time limit


def time_call(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int,
              time_limit: float) -> tuple[float, bool, int]:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, whether a
    call took longer than ``time_limit``, and how many calls were timed.

    A call over the limit does not end the measurement (a first, warm-up call is often the
    slowest): it shortens it to at most one untimed call and ``LONG_STEP_REPEATS`` timed ones,
    and the caller skips the longer lengths."""
    times, over_limit, done = [], False, 0
    while len(times) < repeats:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - start
        done += 1
        if done > warmup or (over_limit and done > 1):
            times.append(elapsed)
        if elapsed > time_limit and not over_limit:
            over_limit, repeats = True, min(repeats, LONG_STEP_REPEATS)
    return statistics.median(times), over_limit, len(times)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def random_tokens(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """BOS, random symbols, a SEP in the middle: (batch, length) on the CPU."""
    tokens = torch.randint(FIRST_SYMBOL, VOCAB_SIZE, (batch, length), generator=generator)
    tokens[:, 0] = BOS_ID
    tokens[:, length // 2] = SEP_ID
    return tokens


def bench_config(name: str, pntm_sets: dict | None = None) -> dict:
    """The model_config overrides a model or variant is benchmarked with; ``pntm_sets`` (the
    command line's ``--set model_config.KEY=VALUE``) go over those of P-NTM and its variants."""
    name = split_step_mode(name)[0]
    if name == SHIPPED:  # the shipped model as it is, not over the NTM-sized P-NTM
        return {**package_config("pntm").get("model_config", {}), **(pntm_sets or {})}
    base, overrides, _ = VARIANTS.get(name, (name, {}, 1.0))
    sets = (pntm_sets or {}) if base == "pntm" else {}
    return {**BENCH_CONFIGS.get(base, {}), **overrides, **sets}


def bench_model(name: str, pntm_sets: dict | None = None) -> torch.nn.Module:
    name = split_step_mode(name)[0]
    base, _, progress = VARIANTS.get(name, (name, {}, 1.0))
    model = build_model(base, VOCAB_SIZE, SEP_ID, bench_config(name, pntm_sets))
    model.set_training_progress(progress)
    return model


# --------------------------------------------------------------------------- training step

def bench_training(models: list[str], lengths: list[int], batch: int, device: torch.device,
                   repeats: int, warmup: int, time_limit: float, log=print,
                   pntm_sets: dict | None = None, tokens: int | None = None,
                   micro_batch: int = 0) -> list[dict]:
    """Each model's training step at each length, at ``batch`` or, given ``tokens``, at batch
    ``tokens / length`` (one working-set size at every length: the time per token then
    depends on the length alone, not on how far the step's tensors outgrow the caches).
    ``micro_batch`` > 0 runs each step's forward and backward in slices of that many sequences
    (``train.micro_batch``: the same step, its gradients summed; one optimizer step)."""
    results = []
    generator = torch.Generator().manual_seed(0)
    for name in models:
        torch.manual_seed(0)
        mode = split_step_mode(name)[1]
        model = bench_model(name, pntm_sets).to(device).train()
        params = parameter_count(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                      capturable=mode == "cudagraph")
        forward = model
        if mode in ("compile", "reduce-overhead"):
            forward = torch.compile(model, dynamic=False,
                                    mode="reduce-overhead" if mode == "reduce-overhead" else None)
        skip_reason = None
        for length in lengths:
            size = tokens // length if tokens else batch
            row = {"model": name, "length": length, "batch": size,
                   **({"micro_batch": micro_batch} if micro_batch else {})}
            not_timed = {**row, "step_seconds": None, "tokens_per_second": None,
                         "peak_memory_bytes": None, "parameters": params, "skipped": True}
            if skip_reason is not None:
                results.append({**not_timed, "skip_reason": skip_reason})
                log(f"bench: {name} T={length}: skipped ({skip_reason})")
                continue
            sample = random_tokens(size, length + 1, generator).to(device)
            inputs, targets = sample[:, :-1], sample[:, 1:]

            step = training_step(forward, optimizer, inputs, targets, micro_batch)
            with PeakMemory(device) as peak:
                try:
                    run, prepare_seconds = prepare_step(step, mode, device)
                except Exception as err:  # a compiler or capture failure is a finding: kept
                    error = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
                    results.append({**not_timed, "error": error})
                    log(f"bench: {name} T={length}: failed to prepare the step: {error}")
                    skip_reason = f"its step failed at length {length}"
                    continue
                seconds, over_limit, timed = time_call(run, device, warmup, repeats,
                                                       time_limit)
            if over_limit:
                skip_reason = f"an earlier step exceeded {time_limit:g} s"
            results.append({**row, "step_seconds": seconds,
                            "tokens_per_second": size * length / seconds,
                            "peak_memory_bytes": peak.bytes, "parameters": params,
                            "timed_steps": timed,
                            **({"prepare_seconds": prepare_seconds} if mode != "eager" else {})})
            log(f"bench: {name} T={length}: {seconds * 1e3:.1f} ms/step")
        del model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


def training_step(forward: Callable[[torch.Tensor], torch.Tensor],
                  optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                  targets: torch.Tensor, micro_batch: int = 0) -> Callable[[], torch.Tensor]:
    """One step on fixed tokens: forward, cross-entropy on every position, backward (in
    slices of ``micro_batch`` sequences when > 0), optimizer step, as ``pntm.train`` makes
    it; it returns the loss as a tensor (nothing is read back to the host)."""
    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = accumulate_gradients(forward, inputs, targets, micro_batch, score=False)
        optimizer.step()
        return loss
    return step


def prepare_step(step: Callable[[], None], mode: str, device: torch.device,
                 capture_warmup: int = 3) -> tuple[Callable[[], object], float | None]:
    """The callable that runs one training step in ``mode`` (``STEP_MODES``; ``eager``: ``step``
    itself) and the seconds its preparation took: for the compile modes, a first call (the
    compilation); for ``cudagraph``, ``capture_warmup`` steps on a side stream (as PyTorch's
    whole-network capture asks: lazy state such as AdamW's is made outside the graph), then
    the capture of one step, whose replay is the step (same tensors, inputs fixed)."""
    if mode == "eager":
        return step, None
    synchronize(device)
    start = time.perf_counter()
    if mode == "cudagraph":
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(capture_warmup):
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        run = graph.replay
    else:
        step()
        run = step
    synchronize(device)
    return run, time.perf_counter() - start


# --------------------------------------------------------------------------- scan methods

def scan_inputs(shape: str, batch: int, length: int, device: torch.device,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decays, inputs and initial state of one of P-NTM's two recurrences."""
    if shape == "heads":
        size = (batch, length, SCAN_HEADS, MEMORY_CELLS // 2 + 1)
        magnitude = torch.rand(size, generator=generator)
        phase = 2 * math.pi * torch.rand(size, generator=generator)
        a = torch.polar(magnitude, phase)
        b = torch.polar(torch.rand(size, generator=generator), phase)
        x0 = torch.polar(torch.ones(size[0:1] + size[2:]), torch.zeros(size[0:1] + size[2:]))
    else:
        size = (batch, length, MEMORY_CELLS, MEMORY_WIDTH)
        a = 1 - 0.5 * torch.rand(size, generator=generator)
        b = torch.randn(size, generator=generator)
        x0 = torch.full((batch, MEMORY_CELLS, MEMORY_WIDTH), 1e-6)
    return a.to(device), b.to(device), x0.to(device)


def scan_shape_name(shape: str, batch: int) -> str:
    if shape == "heads":
        return f"heads (B={batch}, T, H={SCAN_HEADS}, F={MEMORY_CELLS // 2 + 1}) complex64"
    return f"memory (B={batch}, T, N={MEMORY_CELLS}, W={MEMORY_WIDTH}) float32"


def bench_scan(lengths: list[int], batch: int, device: torch.device, repeats: int, warmup: int,
               time_limit: float, log=print) -> list[dict]:
    """``backward_seconds`` is the time of forward + backward together (one training use)."""
    results = []
    generator = torch.Generator().manual_seed(0)
    for shape in ("heads", "memory"):
        over_limit = {method: False for method in METHODS}
        for length in lengths:
            a, b, x0 = scan_inputs(shape, batch, length, device, generator)
            for method in METHODS:
                row = {"method": method, "shape": scan_shape_name(shape, batch), "length": length}
                if over_limit[method]:
                    results.append({**row, "forward_seconds": None, "backward_seconds": None,
                                    "skipped": True})
                    log(f"bench: scan {method} {shape} T={length}: skipped")
                    continue

                def forward():
                    with torch.no_grad():
                        linear_scan(a, b, x0, method=method)

                a_g, b_g = a.clone().requires_grad_(), b.clone().requires_grad_()

                def forward_backward():
                    out = linear_scan(a_g, b_g, x0, method=method)
                    grad = torch.ones_like(out)
                    torch.autograd.backward(out, grad)
                    a_g.grad = b_g.grad = None

                fwd, over, _ = time_call(forward, device, warmup, repeats, time_limit)
                bwd = None
                if not over:
                    bwd, over, _ = time_call(forward_backward, device, warmup, repeats,
                                             time_limit)
                over_limit[method] = over
                results.append({**row, "forward_seconds": fwd, "backward_seconds": bwd})
                log(f"bench: scan {method} {shape} T={length}: forward {fwd * 1e3:.2f} ms")
            del a, b, x0
    return results


# --------------------------------------------------------------------------- decoding

def bench_decode(models: list[str], contexts: list[int], batch: int, device: torch.device,
                 warmup: int, time_limit: float, new_tokens: int = NEW_TOKENS,
                 log=print, pntm_sets: dict | None = None) -> list[dict]:
    """Greedy decoding through ``model.step``: prefill of ``context`` tokens, then
    ``new_tokens`` generated ones, each timed once (after ``warmup`` untimed short runs)."""
    results = []
    generator = torch.Generator().manual_seed(0)
    for name in models:
        torch.manual_seed(0)
        model = bench_model(name, pntm_sets).to(device).eval()
        params = parameter_count(model)
        over_limit = False
        for context in contexts:
            row = {"model": name, "context": context, "batch": batch, "new_tokens": new_tokens}
            if over_limit:
                results.append({**row, "prefill_seconds": None, "prefill_tokens_per_second": None,
                                "decode_seconds": None, "tokens_per_second": None,
                                "peak_memory_bytes": None, "parameters": params, "skipped": True})
                log(f"bench: decode {name} context={context}: skipped")
                continue
            prompt = random_tokens(batch, context, generator).to(device)
            prompt[:, -1] = SEP_ID
            with torch.no_grad(), PeakMemory(device) as peak:
                for _ in range(warmup):  # a short run: kernels, allocator
                    _decode_once(model, prompt[:, :8], 2, device)
                prefill, decode = _decode_once(model, prompt, new_tokens, device)
            over_limit = prefill + decode > time_limit
            results.append({**row, "prefill_seconds": prefill,
                            "prefill_tokens_per_second": batch * context / prefill,
                            "decode_seconds": decode,
                            "tokens_per_second": batch * new_tokens / decode,
                            "peak_memory_bytes": peak.bytes, "parameters": params})
            log(f"bench: decode {name} context={context}: "
                f"{batch * new_tokens / decode:.0f} tokens/s")
        del model
    return results


def _decode_once(model, prompt: torch.Tensor, new_tokens: int,
                 device: torch.device) -> tuple[float, float]:
    batch, context = prompt.shape
    synchronize(device)
    start = time.perf_counter()
    state = model.init_state(batch, context + new_tokens, device)
    for t in range(context):
        logits, state = model.step(prompt[:, t], state)
    synchronize(device)
    middle = time.perf_counter()
    for _ in range(new_tokens):
        logits, state = model.step(logits.argmax(dim=-1), state)
    synchronize(device)
    return middle - start, time.perf_counter() - middle
