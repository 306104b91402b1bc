"""Run directories: the files of one training run, each written atomically.

::

    RUN_DIR/config.yaml        everything needed to rebuild the model and rerun training (+ vocab)
    RUN_DIR/model.safetensors  weights
    RUN_DIR/train_state.pt     model + optimizer + step + RNG states: training resumes from it
    RUN_DIR/metrics.jsonl      one JSON line per logged step
    RUN_DIR/eval.json          written by `pntm eval` and at the end of training

Every file is written to a temporary name in the same directory, fsynced, then renamed over
the old one, so an interrupted run never leaves a half-written file behind; the temporary
files of a write killed before its rename (``.NAME.*.tmp``) are removed by the next writer.

One writer per run: ``RunDir.writer()`` holds an exclusive ``flock`` on the run directory
itself (no lock file to go stale: the kernel drops the lock when its process dies), so a second
``pntm train --out DIR`` (or a sweep's worker) fails at once with one line. The writer also
makes setting up a new run all-or-nothing: if anything fails before the run's first
checkpoint, the directory is put back as it was (removed when the writer created it), so the
corrected retry starts clean. See pntm.locks.

Files read back are checked field by field (a hand-edited ``train_state.pt``, ``metrics.jsonl``
or ``eval.json`` is one RunDirError naming the file and the field). The weights carry their
step, training time, task, model and a digest of the vocabulary in the safetensors metadata,
so ``pntm eval`` reads no pickle and a ``config.yaml`` whose task or vocabulary was swapped is
refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path


import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pntm import config as config_lib
from pntm import tasks
from pntm.errors import PntmError, RunDirError
from pntm.locks import HELD, RunDirLocked, dir_lock
from pntm.safeio import check_regular_file, loads_json
from pntm.models import SequenceModel, build_model

CONFIG, WEIGHTS, TRAIN_STATE, METRICS, EVAL = (
    "config.yaml", "model.safetensors", "train_state.pt", "metrics.jsonl", "eval.json")
#: what the first dot-separated part of a temporary file's name may be (``.config.yaml.x.tmp``)
RUN_FILE_NAMES = {"config", "model", "train_state", "metrics", "eval"}


# --------------------------------------------------------------------------- atomic writes

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone gives 0600


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (not possible on every platform, hence best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- the run directory

def _missing_ancestor(path: Path) -> Path | None:
    """The topmost of ``path`` and its parents that does not exist yet (None: it exists)."""
    top = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        top = candidate
    return top


class RunDir:
    """One run directory. Reading a missing or corrupt file raises RunDirError."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    def is_run(self) -> bool:
        """True when the directory holds a run (it has a config.yaml)."""
        return self.file(CONFIG).is_file()

    def create(self, cfg: dict) -> None:
        """Start a new run here: the directory must be absent, empty, or not a run yet."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise RunDirError(f"{self.path} is not empty and holds no run (no {CONFIG}); "
                              "pick another --out")
        with self.writer():
            self.save_config(cfg)

    @contextlib.contextmanager
    def writer(self):
        """Be the run's only writer for the duration (see the module docstring): creates the
        directory when absent, holds its lock, removes temporary files of killed writes, and
        when the body raises before the run has a checkpoint (and it was no run before) puts
        the directory back as it was. Ctrl-C is not a failure: an interrupted run stays."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} exists and is not a directory")
        created = _missing_ancestor(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        outermost = os.path.realpath(self.path) not in HELD
        try:
            with dir_lock(self.path):
                if outermost:
                    self.remove_temp_files()
                was_run, before = self.is_run(), set(os.listdir(self.path))
                try:
                    yield self
                except Exception:
                    if outermost and not was_run and not self.file(TRAIN_STATE).exists():
                        self._undo(created, before)
                    raise
        except RunDirLocked:
            raise
        except Exception:
            if created is not None and created.exists() and outermost and not self.is_run():
                shutil.rmtree(created, ignore_errors=True)
            raise

    def _undo(self, created: Path | None, before: set[str]) -> None:
        """Remove what a failed set-up added (the whole directory when it made it)."""
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
            return
        for name in set(os.listdir(self.path)) - before:
            target = self.file(name)
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    target.unlink()

    def remove_temp_files(self) -> list[str]:
        """Delete ``.NAME.*.tmp`` left by an atomic write killed before its rename (only the
        run's writer calls it, so no live write is touched); returns their names."""
        names = []
        for path in self.path.glob(".*.tmp"):
            if path.is_file() and path.name.split(".")[1] in RUN_FILE_NAMES:
                with contextlib.suppress(OSError):
                    path.unlink()
                    names.append(path.name)
        return names

    # config --------------------------------------------------------------------------
    def save_config(self, cfg: dict) -> None:
        atomic_write_text(self.file(CONFIG), config_lib.dump(cfg))

    def load_config(self) -> dict:
        """The run's validated config (with its vocab)."""
        if not self.path.is_dir():
            raise RunDirError(f"no run directory at {self.path}")
        if not self.is_run():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG})")
        path = check_regular_file(self.file(CONFIG), RunDirError)
        try:
            cfg = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RunDirError(f"{path} is corrupt: {' '.join(str(err).split())}") from None
        except RecursionError:
            raise RunDirError(f"{path} is corrupt: nested too deeply to read") from None
        if not isinstance(cfg, dict):
            raise RunDirError(f"{self.file(CONFIG)} is corrupt: not a mapping")
        try:
            cfg = config_lib.validate(cfg)
        except PntmError as err:
            raise RunDirError(f"{self.file(CONFIG)} is invalid: {err}") from None
        if cfg["vocab"] is None:
            raise RunDirError(f"{self.file(CONFIG)} has no vocab")
        if cfg["data"] is None and cfg["vocab"] != tasks.get_task(cfg["task"]).vocab.to_list():
            raise RunDirError(f"{self.file(CONFIG)}: field 'vocab' is not the vocabulary of "
                              f"task {cfg['task']} (was the task or the vocabulary edited?)")
        return cfg

    def vocab(self, cfg: dict) -> tasks.Vocab:
        try:
            return tasks.Vocab.from_list(cfg["vocab"])
        except ValueError as err:
            raise RunDirError(f"{self.file(CONFIG)} has a bad vocab: {err}") from None

    # weights -------------------------------------------------------------------------
    def save_weights(self, model: SequenceModel, step: int, cfg: dict | None = None,
                     facts: dict | None = None, name: str = WEIGHTS) -> None:
        """The weights, with ``step``, the run's identity (task, model, vocabulary digest, from
        ``cfg``) and ``facts`` (training time, early stop) as safetensors metadata, in ``name``
        (a path inside the run folder; its folder is made)."""
        # clone: safetensors refuses tensors that share memory (e.g. tied embeddings)
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        metadata = {"step": str(step)}
        if cfg is not None:
            metadata.update(task=cfg["task"], model=cfg["model"], vocab=vocab_digest(cfg["vocab"]))
        metadata.update({k: json.dumps(v) for k, v in (facts or {}).items()})
        self.file(name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.file(name), save_safetensors(tensors, metadata=metadata))

    def weights_metadata(self, cfg: dict | None = None) -> dict:
        """The metadata of model.safetensors (read from its header only), checked against
        ``cfg``'s task, model and vocabulary when the weights recorded them."""
        path = self.file(WEIGHTS)
        if not path.is_file():
            raise RunDirError(f"{self.path} has no {WEIGHTS} yet (training has not reached "
                              "its first checkpoint)")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError) as err:
            raise RunDirError(f"{path} is corrupt: {err}") from None
        if cfg is not None:
            expected = {"task": cfg["task"], "model": cfg["model"],
                        "vocab": vocab_digest(cfg["vocab"])}
            for key, value in expected.items():
                if key in metadata and metadata[key] != value:
                    shown = "its vocabulary" if key == "vocab" else f"{key} {metadata[key]!r}"
                    raise RunDirError(f"{self.file(CONFIG)}: field '{key}' does not match the "
                                      f"weights in {WEIGHTS} (trained with {shown}); was "
                                      f"{CONFIG} edited?")
        return metadata

    def training_facts(self) -> dict:
        """Steps trained, training time and early stop, from the weights' metadata (no pickle
        read); {} for weights that did not record them."""
        metadata = self.weights_metadata()
        facts = {}
        try:
            if "step" in metadata:
                facts["steps"] = int(metadata["step"])
            for key in ("train_seconds", "early_stopped"):
                if key in metadata:
                    facts[key] = json.loads(metadata[key])
        except ValueError:
            raise RunDirError(f"{self.file(WEIGHTS)}: metadata 'step' or "
                              "'train_seconds' is not a number") from None
        return facts

    def load_weights(self, model: SequenceModel, cfg: dict | None = None) -> None:
        path = self.file(WEIGHTS)
        self.weights_metadata(cfg)
        try:
            tensors = load_safetensors(check_regular_file(path, RunDirError).read_bytes())
        except (SafetensorError, OSError, ValueError) as err:
            raise RunDirError(f"{path} is corrupt: {err}") from None
        _load_state_dict(model, tensors, path)

    # training state ------------------------------------------------------------------
    def save_train_state(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write(self.file(TRAIN_STATE), buffer.getvalue())

    def load_train_state(self) -> dict | None:
        """The saved training state, or None when training never reached a checkpoint."""
        path = self.file(TRAIN_STATE)
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for a damaged file
            raise RunDirError(f"{path} is corrupt: {' '.join(str(err).split())[:200]}") from None
        if not isinstance(state, dict):
            raise RunDirError(f"{path} is corrupt: not a mapping")
        for key, kinds in STATE_FIELDS.items():
            value = state.get(key)
            if not isinstance(value, kinds) or (kinds is int and isinstance(value, bool)):
                raise RunDirError(f"{path}: field '{key}' must be {_kind_names(kinds)}, got "
                                  f"{type(value).__name__}")
        if state["step"] < 0 or not 0 <= state["elapsed_seconds"] < math.inf:
            raise RunDirError(f"{path}: field 'step' or 'elapsed_seconds' is negative or not "
                              "finite")
        return state

    # metrics -------------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        check_regular_file(path, RunDirError)
        rows = []
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if line.strip():
                row = loads_json(line, f"{path}:{number}", RunDirError)
                _check_metrics_row(row, f"{path}:{number}")
                rows.append(row)
        return rows

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite the whole file: an append could be torn, a rename cannot. Strict JSON: a
        NaN or infinity is a ValueError, never a ``NaN`` literal in the file."""
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        atomic_write_text(self.file(METRICS), text)

    # evaluation ----------------------------------------------------------------------
    def load_eval(self) -> dict | None:
        path = self.file(EVAL)
        if not path.is_file():
            return None
        check_regular_file(path, RunDirError)
        report = loads_json(path.read_bytes(), str(path), RunDirError)
        summary = report.get("summary") if isinstance(report, dict) else None
        if not isinstance(summary, dict):
            raise RunDirError(f"{path}: field 'summary' is missing or not an object")
        return report


STATE_FIELDS = {"step": int, "elapsed_seconds": (int, float), "early_stop_streak": int,
                "early_stopped": bool, "model": dict, "optimizer": dict, "data_rng": dict,
                "rng": dict}


def _kind_names(kinds) -> str:
    if kinds == (int, float):
        return "a number"
    return {int: "an integer", bool: "true or false", dict: "a mapping"}[kinds]


def _check_metrics_row(row, where: str) -> None:
    """A metrics.jsonl row: an object with an integer step >= 1 and finite numbers."""
    if not isinstance(row, dict):
        raise RunDirError(f"{where}: a metrics row must be a JSON object")
    step = row.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise RunDirError(f"{where}: field 'step' must be an integer >= 1, got {step!r}")
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise RunDirError(f"{where}: field '{key}' is not a finite number")


def vocab_digest(vocab: list[str] | None) -> str:
    """A short digest of a vocabulary (its tokens in order)."""
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def _load_state_dict(model: SequenceModel, tensors: dict, source: Path) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "mismatch"
        raise RunDirError(f"{source} does not fit the model in config.yaml: {first}") from None


def load_model(run: RunDir, cfg: dict, device: torch.device | str = "cpu") -> tuple[tasks.Vocab, SequenceModel]:
    """The run's vocab and its trained model (in eval mode, on ``device``)."""
    vocab = run.vocab(cfg)
    model = build_model(cfg["model"], len(vocab), vocab.sep_id, cfg["model_config"])
    run.load_weights(model, cfg)
    return vocab, model.to(device).eval()


def load_model_state(model: SequenceModel, state: dict, source: Path) -> None:
    """Restore the weights stored in a train_state.pt."""
    if not isinstance(state.get("model"), dict):
        raise RunDirError(f"{source} is corrupt: no model weights")
    _load_state_dict(model, state["model"], source)
