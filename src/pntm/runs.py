"""Run directories: the files of one training run, each written atomically.

::

    RUN_DIR/config.yaml        everything needed to rebuild the model and rerun training (+ vocab)
    RUN_DIR/model.safetensors  weights
    RUN_DIR/train_state.pt     model + optimizer + step + RNG states: training resumes from it
    RUN_DIR/metrics.jsonl      one JSON line per logged step
    RUN_DIR/eval.json          written by `pntm eval` and at the end of training

Every file is written to a temporary name in the same directory, fsynced, then renamed over
the old one, so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from pntm import config as config_lib
from pntm import tasks
from pntm.errors import PntmError, RunDirError
from pntm.models import SequenceModel, build_model

CONFIG, WEIGHTS, TRAIN_STATE, METRICS, EVAL = (
    "config.yaml", "model.safetensors", "train_state.pt", "metrics.jsonl", "eval.json")


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
        self.path.mkdir(parents=True, exist_ok=True)
        self.save_config(cfg)

    # config --------------------------------------------------------------------------
    def save_config(self, cfg: dict) -> None:
        atomic_write_text(self.file(CONFIG), config_lib.dump(cfg))

    def load_config(self) -> dict:
        """The run's validated config (with its vocab)."""
        if not self.path.is_dir():
            raise RunDirError(f"no run directory at {self.path}")
        if not self.is_run():
            raise RunDirError(f"{self.path} is not a run directory (no {CONFIG})")
        try:
            cfg = yaml.safe_load(self.file(CONFIG).read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise RunDirError(f"{self.file(CONFIG)} is corrupt: {' '.join(str(err).split())}") from None
        if not isinstance(cfg, dict):
            raise RunDirError(f"{self.file(CONFIG)} is corrupt: not a mapping")
        try:
            cfg = config_lib.validate(cfg)
        except PntmError as err:
            raise RunDirError(f"{self.file(CONFIG)} is invalid: {err}") from None
        if cfg["vocab"] is None:
            raise RunDirError(f"{self.file(CONFIG)} has no vocab")
        return cfg

    def vocab(self, cfg: dict) -> tasks.Vocab:
        try:
            return tasks.Vocab.from_list(cfg["vocab"])
        except ValueError as err:
            raise RunDirError(f"{self.file(CONFIG)} has a bad vocab: {err}") from None

    # weights -------------------------------------------------------------------------
    def save_weights(self, model: SequenceModel, step: int) -> None:
        # clone: safetensors refuses tensors that share memory (e.g. tied embeddings)
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        atomic_write(self.file(WEIGHTS), save_safetensors(tensors, metadata={"step": str(step)}))

    def load_weights(self, model: SequenceModel) -> None:
        path = self.file(WEIGHTS)
        if not path.is_file():
            raise RunDirError(f"{self.path} has no {WEIGHTS} yet (training has not reached "
                              "its first checkpoint)")
        try:
            tensors = load_safetensors(path.read_bytes())
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
        if not isinstance(state, dict) or "step" not in state:
            raise RunDirError(f"{path} is corrupt: no step recorded")
        return state

    # metrics -------------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        path = self.file(METRICS)
        if not path.is_file():
            return []
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunDirError(f"{path} is corrupt: {err}") from None

    def write_metrics(self, rows: list[dict]) -> None:
        """Rewrite the whole file: an append could be torn, a rename cannot."""
        atomic_write_text(self.file(METRICS), "".join(json.dumps(r) + "\n" for r in rows))

    # evaluation ----------------------------------------------------------------------
    def load_eval(self) -> dict | None:
        path = self.file(EVAL)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RunDirError(f"{path} is corrupt: {err}") from None


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
    run.load_weights(model)
    return vocab, model.to(device).eval()


def load_model_state(model: SequenceModel, state: dict, source: Path) -> None:
    """Restore the weights stored in a train_state.pt."""
    if not isinstance(state.get("model"), dict):
        raise RunDirError(f"{source} is corrupt: no model weights")
    _load_state_dict(model, state["model"], source)
