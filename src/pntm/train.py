"""The training loop: teacher-forced next-token prediction on freshly sampled batches.

Each step draws one length uniformly from ``train.train_lengths`` and a fresh batch of that
length from the run's own data stream (``tasks.train_generator(seed)``). The loss is the
cross-entropy on the answer tokens and the final EOS only. Everything random (weights, data,
Python / NumPy / torch RNGs) is checkpointed, so a resumed run computes exactly what an
uninterrupted one would have.

A run on the user's JSONL data (``config["data"]``, see pntm.data) draws each step's length
uniformly among the lengths present in its file (within the curriculum's current range) and a
batch of that length from the file; early stopping checks examples of the file.

With ``train.snapshot_every = N`` the weights of every ``N``-th step are also kept, in
``snapshots/step-NNNNNN.safetensors`` (for analysis of how training went; nothing reads them
back, and training is the same with or without them).

With ``train.early_stop.restore_best`` the weights evaluated at the end (and left in
``model.safetensors``) are those of the early-stop check with the highest mean greedy sequence
accuracy on the training lengths (the latest of equals), not the last step's. Decision: the
check is the one early stopping already makes, on examples of the training distribution drawn
from its own seed, so neither the validation nor the test split takes part; it is off by
default, and every committed run so far evaluates its last step. Why it exists: runs that find
most of a task and then lose it in a few steps (RESULTS.md, modular_arithmetic_simple) report
what was left, not what was found. The best weights travel in the training state, so a resumed
run restores the same ones.

With ``train.early_stop.rollback = r`` a check whose mean greedy sequence accuracy on the
training lengths falls below ``r`` times the best check's puts the weights and the optimizer
state of that best check back, and training goes on from the current step: the data stream, the
RNGs and the rate's schedule are not rewound, so the run meets fresh batches. Decision: it
answers the collapse of a run that had most of a task (RESULTS.md: modular_arithmetic_simple at
seed 0 fell from 96.6% to 21.6% between two checks and never came back), as large-scale training
restarts from a checkpoint before a loss spike and skips the batches that led to it (Chowdhery
et al. 2022, PaLM); the checks are early stopping's own, on its own examples of the training
distribution, so no split takes part. Off by default. The best check's weights and optimizer
state, and the steps rolled back at, travel in the training state, so a resume is exact.
Measured so far: nothing. The one run with it (modular_arithmetic_simple, seed 0, on another
machine than the run that collapsed) never collapsed, so no rollback fired (RESULTS.md,
"Rolling back a collapse").

With ``train.early_stop.start = f`` no check runs before step ``f * train.steps``. Why it
exists: a check tests the model as it will be evaluated (greedy, hard heads), while before the
end of a curriculum and of a relax phase (``model_config.relax``) the model trains on short
lengths with soft heads; a run that passes two checks then stops before it ever trained in
the form it is evaluated in (RESULTS.md: reverse under ``work-tape-scope`` at seed 0 stopped at
step 750 and missed at length 400). The trajectory up to ``f * steps`` is the same either way
(the checks draw their own examples). Default 0: checks from the first ``every``.

Extending a run (``pntm train --out RUN --steps N``) changes its budget, never a step it has
already trained: the schedules that span the budget (``schedule_span``: the curriculum and the
model's own) stay pinned to the span the run was started with, and the learning-rate keys
(``RATE_KEYS``) may be set anew only where the rate of every trained step stays the same
(without them a cosine rate spans the new budget, ``resumed_config``). So a finished
4,000-step run at a constant rate, extended to 8,000 with a cosine held to step 4,000, is the
run a fresh 8,000-step config with ``schedule_steps: 4000`` makes (tested).

Entry points: ``start_run(out_dir, config)`` creates a run directory, ``train_run(out_dir)``
trains it (from scratch or from its last checkpoint), ``train(config, out_dir)`` does both.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pntm import config as config_lib
from pntm import splits, tasks
from pntm.data import JsonlDataset, load_jsonl, run_dataset
from pntm.evaluate import evaluate_splits
from pntm.errors import ConfigError, PntmError, RunDirError
from pntm.metrics import evaluate_groups, evaluate_lengths
from pntm.models import SequenceModel, build_model
from pntm.ops import event_kernels
from pntm.runs import TRAIN_STATE, WEIGHTS, RunDir, load_model_state

SNAPSHOTS = "snapshots"  # train.snapshot_every: the weights of every N-th step, for analysis


def learning_rate(step: int, train_cfg: dict) -> float:
    """Linear warm-up over ``warmup_steps``, then constant or cosine down to ``min_lr_ratio``.

    With ``lr_decay_start = f > 0`` the cosine holds ``lr`` until ``f`` of the steps and decays
    over the rest, so a model whose heads anneal (P-NTM's values and relax phase) can keep a
    high rate while it searches and a falling one once its parts are hard."""
    lr, warmup, total = train_cfg["lr"], train_cfg["warmup_steps"], train_cfg["steps"]
    if step <= warmup:
        return lr * step / warmup
    if train_cfg["lr_schedule"] == "constant":
        return lr
    start = max(warmup, train_cfg["lr_decay_start"] * total)
    if step <= start:
        return lr
    progress = min(1.0, (step - start) / max(1, total - start))
    floor = train_cfg["min_lr_ratio"]
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def schedule_span(train_cfg: dict) -> int:
    """The steps over which the fractional schedules run: the curriculum and the model's own
    (``set_training_progress``: P-NTM's relax phase and state-value annealing).
    ``train.schedule_steps``, or ``train.steps`` when it is 0.

    With ``schedule_steps = S < steps`` training goes on after the schedules have ended (the
    model at progress 1, every length in the curriculum): the first ``S`` steps are exactly
    those of a run of ``S`` steps whose learning rate agrees with this one there (a constant
    rate, or a cosine held until ``lr_decay_start * steps >= S``), so a run that stops early
    before step ``S`` is the same run under either budget. The learning-rate schedule spans
    ``steps``, as it always has."""
    return train_cfg["schedule_steps"] or train_cfg["steps"]


def training_progress(step: int, train_cfg: dict) -> float:
    """``step`` as a fraction of ``schedule_span``, at most 1."""
    return min(1.0, step / schedule_span(train_cfg))


def current_length_range(step: int, train_cfg: dict) -> tuple[int, int]:
    """Training lengths at ``step``: ``train_lengths``, or with ``curriculum = f > 0`` a range
    whose maximum grows linearly from ``min`` to ``max`` over the first ``f`` of
    ``schedule_span`` (every length stays within ``train_lengths``, so nothing longer is ever
    seen)."""
    lo, hi = train_cfg["train_lengths"]
    ramp = train_cfg["curriculum"] * schedule_span(train_cfg)
    if ramp <= 0 or step >= ramp:
        return lo, hi
    return lo, lo + math.ceil((hi - lo) * step / ramp)


def make_optimizer(model: SequenceModel, train_cfg: dict) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (biases and norms are left alone).

    ``train.adam_beta2`` is the second-moment decay: PyTorch's 0.999 by default; nanoGPT trains
    with 0.95, which bounds how large a step can get when gradients return after a quiet
    stretch (the first step after it moves each weight by up to
    ``(1 - β1) / sqrt(1 - β2)`` times the rate: 3.2 at 0.999, 0.45 at 0.95). Measured
    (RESULTS.md, "modular_arithmetic_simple: the optimizer's second moment"): 0.95 did not stop
    the late collapse of the one P-NTM config on that task (seed 0: 20.3% validation against
    82.3%), so the default stays PyTorch's."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": train_cfg["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train_cfg["lr"], betas=(0.9, train_cfg["adam_beta2"]))


# --------------------------------------------------------------------------- one step's gradients

def accumulate_gradients(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                         targets: torch.Tensor, micro_batch: int = 0, score: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Forward and backward of one batch through ``model`` (a module or a compiled one);
    returns its loss (the mean cross-entropy over the target tokens that are not
    ``IGNORE_INDEX``) and, with ``score``, the number of those tokens predicted right (greedy;
    else None), both as tensors. The gradients are added to the parameters' ``.grad``.

    With ``micro_batch`` > 0 (``train.micro_batch``) the batch goes through in slices of that
    many sequences, each backward of its slice's summed cross-entropy over the whole batch's
    count of target tokens, so the gradients add up to the whole batch's (up to float rounding;
    one slice is the whole-batch computation itself, and nothing is read back to the host;
    a model that draws random numbers in its forward, P-NTM's ``window_dropout``, draws them
    slice by slice: the same distribution, not necessarily the same numbers).
    Decision: a step's memory (and, on a CPU, its working set against the caches) then scales
    with the slice, not the batch, and the optimizer sees the same batch; off (0) by default
    and in every committed run."""
    whole = not 0 < micro_batch < inputs.shape[0]
    size = inputs.shape[0] if whole else micro_batch
    tokens = None if whole else (targets != tasks.IGNORE_INDEX).sum().clamp(min=1)
    loss, right = 0, (0 if score else None)
    for start in range(0, inputs.shape[0], size):
        part = targets[start:start + size]
        logits = model(inputs[start:start + size])
        part_loss = F.cross_entropy(logits.flatten(0, 1), part.flatten(),
                                    ignore_index=tasks.IGNORE_INDEX,
                                    reduction="mean" if whole else "sum")
        if not whole:  # the slice's share of the batch's mean
            part_loss = part_loss / tokens
        part_loss.backward()
        loss = loss + part_loss.detach()
        if score:
            with torch.no_grad():
                right = right + ((logits.argmax(-1) == part) & (part != tasks.IGNORE_INDEX)).sum()
    return loss, right


# --------------------------------------------------------------------------- RNG state

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpu_copy(state):
    """A copy of a (nested) state dict with every tensor detached, on the CPU and cloned."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: _cpu_copy(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cpu_copy(v) for v in state)
    return state


def rng_state() -> dict:
    """Global RNG states, as plain types that ``torch.load(weights_only=True)`` accepts."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {"python": random.getstate(), "numpy": [name, key.tolist(), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- entry points

def prepare_run(cfg: dict, dataset: JsonlDataset | None = None, device=None) -> dict:
    """Everything a new run needs checked, with nothing written: the config (every key's value),
    the vocabulary (from ``dataset``, loaded from ``cfg["data"]`` when not given), the optional
    TensorBoard package, the memory one training step needs on ``device`` (see
    ``config.check_fits``), and the model itself, built once. Returns the config with its vocab."""
    cfg = config_lib.validate(cfg)
    if cfg["data"] is not None:
        vocab = (dataset if dataset is not None else load_jsonl(cfg["data"]["path"])).vocab
    else:
        vocab = tasks.get_task(cfg["task"]).vocab
    cfg["vocab"] = vocab.to_list()
    if cfg["train"]["tensorboard"]:
        from pntm.tblog import check_available
        check_available()
    config_lib.check_fits(cfg, len(vocab), device)
    try:
        build_model(cfg["model"], len(vocab), vocab.sep_id, cfg["model_config"])
    except (ValueError, RuntimeError, TypeError) as err:  # e.g. torch refusing a negative size
        raise ConfigError(f"{cfg['model']} cannot be built from this model_config: {err}") from None
    return cfg


def start_run(out_dir: str | Path, cfg: dict, dataset: JsonlDataset | None = None,
              device=None) -> RunDir:
    """Create a run directory for ``cfg`` (a config from ``config.build_config``), only once
    ``prepare_run`` has passed: a setting that cannot work leaves no directory behind."""
    cfg = prepare_run(cfg, dataset, device)
    run = RunDir(out_dir)
    run.create(cfg)
    return run


def train(cfg: dict, out_dir: str | Path, **kwargs) -> dict | None:
    """Start a new run and train it; see ``train_run`` for the keyword arguments."""
    run = RunDir(out_dir)
    with run.writer():
        start_run(out_dir, cfg, kwargs.get("dataset"), kwargs.get("device"))
        return train_run(out_dir, **kwargs)


RATE_KEYS = ("lr_schedule", "lr_decay_start", "min_lr_ratio")  # settable when resuming


def resumed_config(cfg: dict, trained: int, steps: int | None = None,
                   rate: dict | None = None) -> dict:
    """``cfg`` with a new budget ``steps`` and new learning-rate keys ``rate`` (a subset of
    ``train``'s ``RATE_KEYS``), for a run that has trained ``trained`` steps; a change to any
    of those steps is an error (and ``cfg`` is left as it was).

    Decision: a longer budget keeps the schedules where they were (``schedule_steps`` is
    pinned to the run's span) rather than stretching them, which would turn hard heads soft
    again and shorten the curriculum in the middle of a run. A shorter budget (of a run not
    yet finished) shortens the span with it, and without ``rate`` a cosine rate spans the new
    budget, as both always have (so a cosine run extended this way starts again from a higher
    rate; setting ``rate`` is what asks for the trained steps' rates to be kept)."""
    tcfg = cfg["train"]
    new = {**cfg, "train": {**tcfg, **(rate or {})}}
    unknown = sorted(set(rate or {}) - set(RATE_KEYS))
    if unknown:
        raise RunDirError(f"train.{unknown[0]} cannot change in a run that has started; a "
                          f"resumed run may set only {', '.join('train.' + k for k in RATE_KEYS)}")
    if steps is not None and steps != tcfg["steps"]:
        if steps < trained:
            raise RunDirError(f"the run has already trained {trained} steps; --steps {steps} "
                              "would be fewer (a run cannot be shortened; its config is left "
                              "as it was)")
        if steps > tcfg["steps"]:
            new["train"]["schedule_steps"] = schedule_span(tcfg)
        new["train"]["steps"] = steps
    new = config_lib.validate(new)
    for step in range(1, trained + 1 if rate else 0):
        if learning_rate(step, new["train"]) != learning_rate(step, tcfg):
            raise RunDirError(f"the new learning-rate schedule changes the rate of step {step}, "
                              f"which the run has already trained ({learning_rate(step, tcfg):.3g}"
                              f" -> {learning_rate(step, new['train']):.3g}); its config is "
                              "left as it was")
    return new


def train_run(out_dir: str | Path, *, steps: int | None = None, device=None,
              command: str | None = None, stop_at: int | None = None,
              quiet: bool = False, dataset: JsonlDataset | None = None,
              tensorboard: bool = False, rate: dict | None = None) -> dict | None:
    """Train the run in ``out_dir`` from its last checkpoint (or from scratch) to the end.

    ``steps`` changes the run's total number of steps and ``rate`` its learning-rate keys
    (``resumed_config``: to extend a finished run; a change to a step already trained is an
    error, and the config is left as it was).
    ``stop_at`` stops after that step, checkpointed, as if interrupted (used by tests).
    At the end, when ``train.eval_at_end``, evaluates and returns the eval.json report;
    otherwise returns None. ``quiet`` silences the evaluation table on stdout.
    ``dataset``: the run's training file already loaded (else it is read from ``cfg["data"]``).
    ``tensorboard`` turns TensorBoard logging on for this and later sessions.
    The run's lock is held throughout (``RunDir.writer``): one writer per run.
    """
    run = RunDir(out_dir)
    with run.writer():
        cfg = run.load_config()
        changed = False
        if (steps is not None and steps != cfg["train"]["steps"]) or rate:
            trained = run.training_facts().get("steps", 0) if run.file(WEIGHTS).is_file() else 0
            try:
                new = resumed_config(cfg, trained, steps, rate)
            except RunDirError as err:
                raise RunDirError(f"{run}: {err}") from None
            changed = new != cfg
            cfg = new
        if tensorboard and not cfg["train"]["tensorboard"]:
            from pntm.tblog import check_available
            check_available()
            cfg["train"]["tensorboard"] = changed = True
        if changed:
            cfg = config_lib.validate(cfg)
            run.save_config(cfg)
        device = torch.device(device) if device is not None else torch.device("cpu")
        return Trainer(run, cfg, device, command, quiet, dataset).fit(stop_at)


class TrainingDiverged(PntmError):
    """The loss or the gradient norm became NaN or infinite; nothing of that step is saved."""


class Trainer:
    """Holds the model, optimizer, data stream and counters of one training session."""

    def __init__(self, run: RunDir, cfg: dict, device: torch.device, command: str | None,
                 quiet: bool = False, dataset: JsonlDataset | None = None):
        self.run, self.cfg, self.device, self.command, self.quiet = run, cfg, device, command, quiet
        self.tcfg = cfg["train"]
        self.vocab = run.vocab(cfg)
        # Built-in task: examples are generated; JSONL run: drawn from the training file.
        self.task = tasks.get_task(cfg["task"]) if cfg["data"] is None else None
        self.dataset = None
        if cfg["data"] is not None:
            self.dataset = dataset if dataset is not None else run_dataset(cfg)
        seed_everything(cfg["seed"])
        self.model = build_model(cfg["model"], len(self.vocab), self.vocab.sep_id,
                                 cfg["model_config"]).to(device)
        self.optimizer = make_optimizer(self.model, self.tcfg)
        self.data_rng = tasks.train_generator(cfg["seed"])
        self.step, self.elapsed, self.streak, self.early_stopped = 0, 0.0, 0, False
        self.saved_step = 0  # the step of the last checkpoint on disk
        self.best: dict | None = None  # score, step, weights (and optimizer) of the best check
        self.rollbacks: list[list[int]] = []  # [step, best check's step] of each rollback
        self.metrics: list[dict] = []
        self.tty = sys.stderr.isatty()
        self.tensorboard = None  # opened by fit(), once the step to resume from is known
        self._resume()

    def _resume(self) -> None:
        state = self.run.load_train_state()
        if state is None:
            return
        load_model_state(self.model, state, self.run.file(TRAIN_STATE))
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.data_rng.bit_generator.state = state["data_rng"]
            set_rng_state(state["rng"])
            self.step, self.elapsed = state["step"], state["elapsed_seconds"]
            self.saved_step = self.step
            self.streak, self.early_stopped = state["early_stop_streak"], state["early_stopped"]
            self.best = state.get("best_check")  # absent from states saved before the option
            self.rollbacks = state.get("rollbacks", [])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise RunDirError(f"{self.run.file(TRAIN_STATE)} is corrupt or from another "
                              f"version: {type(err).__name__}: {err}") from None
        # lines logged after the checkpoint will be logged again, identically
        self.metrics = [m for m in self.run.read_metrics() if m["step"] <= self.step]

    @property
    def finished(self) -> bool:
        return self.early_stopped or self.step >= self.tcfg["steps"]

    def log(self, message: str) -> None:
        if self.tty:
            tqdm.write(message, file=sys.stderr)  # keeps the progress bar intact
        else:
            print(message, file=sys.stderr, flush=True)

    def fit(self, stop_at: int | None = None) -> dict | None:
        total = self.tcfg["steps"]
        if self.finished:
            why = " (early stop)" if self.early_stopped else ""
            self.log(f"{self.run}: training already finished at step {self.step}{why}")
            if self.tcfg["eval_at_end"] and self.run.load_eval() is None:
                self.restore_best()
                return self.evaluate()
            return None
        if self.step:
            self.log(f"{self.run}: resuming at step {self.step}/{total}")
        for name in splits.FILES.values():  # test and validation results of older weights
            self.run.file(name).unlink(missing_ok=True)

        if self.tcfg["tensorboard"]:
            from pntm.tblog import TensorBoardLog
            self.tensorboard = TensorBoardLog(self.run.file("tensorboard"), self.step + 1)
        try:
            return self._fit(stop_at)
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()

    def _fit(self, stop_at: int | None) -> dict | None:
        total = self.tcfg["steps"]
        settings = getattr(self.model, "settings", None)  # a P-NTM's resolved PNTMConfig
        writes = settings is not None and settings.learned_writing
        if writes and torch.device(self.device).type == "cpu":
            # a learned writer's CPU kernels: built on a machine's first run (about half a
            # minute), loaded from the cache after; not counted as training time
            event_kernels.kernels()
        session_start, elapsed_before = time.perf_counter(), self.elapsed
        bar = tqdm(total=total, initial=self.step, unit="step", disable=not self.tty,
                   dynamic_ncols=True)
        self.model.train()
        while self.step < total:
            self.step += 1
            row = self.train_step()
            self.elapsed = elapsed_before + time.perf_counter() - session_start
            bar.update(1)
            if row is not None:
                row["elapsed_seconds"] = round(self.elapsed, 3)
                self.metrics.append(row)
                self.run.write_metrics(self.metrics)
                if self.tensorboard is not None:
                    self.tensorboard.write(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", acc=f"{row['token_accuracy']:.3f}")
                if not self.tty:
                    self.log(f"step {self.step}/{total} loss {row['loss']:.4f} "
                             f"token_acc {row['token_accuracy']:.3f} length {row['length']} "
                             f"lr {row['lr']:.2e} {self.elapsed:.0f}s")
            snapshot = self.tcfg["snapshot_every"]
            if snapshot and self.step % snapshot == 0:
                self.run.save_weights(self.model, self.step, self.cfg,
                                      name=f"{SNAPSHOTS}/step-{self.step:06d}.safetensors")
            every, start = self.tcfg["early_stop"]["every"], self.tcfg["early_stop"]["start"]
            if every and self.step % every == 0 and self.step >= start * self.tcfg["steps"]:
                self.early_stop_check()
            if (self.finished or self.step % self.tcfg["checkpoint_every"] == 0
                    or self.step == stop_at):
                self.checkpoint()
            if self.early_stopped or self.step == stop_at:
                break
        bar.close()
        if not self.finished:
            return None
        why = " (early stop: 100% on ID lengths)" if self.early_stopped else ""
        self.log(f"{self.run}: training finished at step {self.step}{why} in {self.elapsed:.1f}s")
        self.restore_best()
        return self.evaluate() if self.tcfg["eval_at_end"] else None

    def train_step(self) -> dict | None:
        """One optimizer step; returns a metrics row on logging steps."""
        lo, hi = current_length_range(self.step, self.tcfg)
        if self.dataset is None:
            length = int(self.data_rng.integers(lo, hi + 1))
            examples = tasks.sample_examples(self.task, length, self.tcfg["batch_size"],
                                             self.data_rng)
        else:
            length = self.dataset.draw_length(lo, hi, self.data_rng)
            examples = self.dataset.sample(length, self.tcfg["batch_size"], self.data_rng)
        batch = tasks.encode_batch(examples, self.vocab).to(self.device)
        lr = learning_rate(self.step, self.tcfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        self.model.set_training_progress(training_progress(self.step, self.tcfg), self.step)
        logging = not self.step % self.tcfg["log_every"] or self.step == self.tcfg["steps"]
        self.optimizer.zero_grad(set_to_none=True)
        loss, right = accumulate_gradients(self.model, batch.inputs, batch.targets,
                                           self.tcfg["micro_batch"], score=logging)
        clip = self.tcfg["grad_clip"]
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
        self._check_finite(loss, grad_norm)
        self.optimizer.step()

        if not logging:
            return None
        accuracy = right.item() / max((batch.targets != tasks.IGNORE_INDEX).sum().item(), 1)
        return {"step": self.step, "loss": loss.item(), "token_accuracy": accuracy,
                "length": length, "lr": lr, "grad_norm": grad_norm.item()}

    def _check_finite(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """Stop at the first NaN or infinite loss or gradient norm, before the optimizer step
        spreads it into the weights: nothing of this step is logged or saved, so the run's
        files hold its last good checkpoint (and metrics.jsonl stays strict JSON)."""
        values = torch.stack([loss.detach().float(), grad_norm.detach().float().to(loss.device)])
        if bool(torch.isfinite(values).all()):
            return
        what = "loss" if not math.isfinite(loss.item()) else "gradient norm"
        kept = (f"the run keeps its checkpoint at step {self.saved_step}" if self.saved_step
                else "no checkpoint was written")
        raise TrainingDiverged(f"{self.run}: training diverged at step {self.step}: the {what} is "
                               f"{loss.item() if what == 'loss' else grad_norm.item()}; {kept}. "
                               "Start a new run with a lower train.lr (or train.grad_clip on)")

    def early_stop_check(self) -> None:
        """Greedy sequence accuracy on ID lengths; stop after ``patience`` perfect checks."""
        es = self.tcfg["early_stop"]
        lengths = config_lib.early_stop_lengths(self.cfg)
        if self.dataset is None:
            rows = evaluate_lengths(self.model, self.task, self.vocab, lengths, es["samples"],
                                    es["seed"], self.cfg["eval"]["batch_size"], self.device)
        else:  # examples of the training file, at those of the lengths it has (else at all)
            lengths = [n for n in lengths if self.dataset.count(n)] or self.dataset.lengths
            groups = ((n, self.dataset.subset(n, es["samples"], es["seed"])) for n in lengths)
            rows = evaluate_groups(self.model, self.vocab, groups, self.cfg["eval"]["batch_size"],
                                   self.device)
        worst = min(r["sequence_accuracy"] for r in rows)
        mean = sum(r["sequence_accuracy"] for r in rows) / len(rows)
        self.streak = self.streak + 1 if worst == 1.0 else 0
        self.early_stopped = self.streak >= es["patience"]
        self.log(f"step {self.step}: ID greedy seq acc {mean:.3f} (worst {worst:.3f}), "
                 f"perfect checks in a row {self.streak}/{es['patience']}")
        if (es["restore_best"] or es["rollback"]) and (self.best is None
                                                        or mean >= self.best["score"]):
            self.best = {"score": mean, "step": self.step, "model": _cpu_copy(
                self.model.state_dict())}
            if es["rollback"]:
                self.best["optimizer"] = _cpu_copy(self.optimizer.state_dict())
        elif es["rollback"] and mean < es["rollback"] * self.best["score"]:
            self.model.load_state_dict(self.best["model"])
            self.optimizer.load_state_dict(self.best["optimizer"])
            self.rollbacks.append([self.step, self.best["step"]])
            self.log(f"step {self.step}: below {es['rollback']:g} of the best check's "
                     f"{self.best['score']:.3f}: the weights and optimizer state of step "
                     f"{self.best['step']} put back")
        if self.tensorboard is not None:
            self.tensorboard.write({"step": self.step, "id_sequence_accuracy": mean,
                                    "worst_id_sequence_accuracy": worst}, "early_stop")

    def checkpoint(self) -> None:
        """Weights, then the full training state (the state is what a resume reads)."""
        self.run.save_weights(self.model, self.step, self.cfg, {
            "train_seconds": round(self.elapsed, 3), "early_stopped": self.early_stopped})
        self.saved_step = self.step
        self.run.save_train_state({
            "step": self.step,
            "elapsed_seconds": self.elapsed,
            "early_stop_streak": self.streak,
            "early_stopped": self.early_stopped,
            "best_check": self.best,
            "rollbacks": self.rollbacks,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "data_rng": self.data_rng.bit_generator.state,
            "rng": rng_state(),
        })

    def restore_best(self) -> None:
        """With ``restore_best``: put the best check's weights in the model and in
        ``model.safetensors`` (metadata ``restored_from_step``); the training state keeps the
        last step's, so a run continued with more steps goes on from there."""
        if not self.tcfg["early_stop"]["restore_best"] or self.best is None:
            return
        self.model.load_state_dict(self.best["model"])
        self.run.save_weights(self.model, self.step, self.cfg, {
            "train_seconds": round(self.elapsed, 3), "early_stopped": self.early_stopped,
            "restored_from_step": self.best["step"]})
        self.log(f"{self.run}: evaluating the weights of step {self.best['step']}, the best "
                 f"check (ID greedy seq acc {self.best['score']:.3f})")

    def evaluate(self) -> dict:
        extra = {"steps": self.step, "train_seconds": round(self.elapsed, 3),
                 "early_stopped": self.early_stopped}
        if self.tcfg["early_stop"]["restore_best"] and self.best is not None:
            extra["restored_from_step"] = self.best["step"]
        if self.rollbacks:
            extra["rollbacks"] = self.rollbacks
        # validation first (a built-in task's run), eval.json (test) last: see pntm.splits
        return evaluate_splits(self.run.path, model=self.model, device=self.device,
                               command=self.command, extra=extra, quiet=self.quiet,
                               train_dataset=self.dataset)
