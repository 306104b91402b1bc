"""Fused CPU kernels for the write-event path's gradient queries (``event_queries.cpp``).

The backward pass of :mod:`pntm.ops.write_events` answers, per head and token, ``4K + 1`` local
queries and up to ``horizon`` counterfactual ones (:mod:`pntm.ops.write_event_grads`); each is
one binary search in the sequence's sorted event keys and one dot product of a row. In eager
PyTorch every query costs a dozen passes over (B, T, H, E) index tensors (search, gathers,
compares, a row gather, a batched dot), and at the bench's shapes those passes are most of the
op's backward. The kernels do each query in one loop iteration. They compute what the eager
code computes (``_ReadHeadGradient.at``, ``_WriteHeadGradient.at`` and ``_counterfactual``
remain the definition, and ``tests/test_event_kernels.py`` holds the kernels to them, equal up to
the order of float additions); the eager code stays the path on every other device and
wherever the kernels cannot be built.

The C++ source is compiled on first use by ``torch.utils.cpp_extension.load`` (a C++ compiler
and ninja; about half a minute once, then cached in ``TORCH_EXTENSIONS_DIR``, by default under
``~/.cache/torch_extensions``, one folder per Python and torch version). ``PNTM_KERNELS=0`` in the
environment turns them off; a build that fails warns once and falls back to the eager code. A
build killed midway (Ctrl-C during a first run) leaves torch's lock file behind, and torch would
wait on it forever; a lock older than ``STALE_LOCK_SECONDS`` is removed before loading.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("event_queries.cpp")
NAME = "pntm_event_queries"
STALE_LOCK_SECONDS = 600  # a build takes under a minute here

_loaded: ModuleType | None = None
_failed = False


def enabled() -> bool:
    """Whether the kernels are wanted (``PNTM_KERNELS`` is not ``0``)."""
    return os.environ.get("PNTM_KERNELS", "1") != "0"


def kernels() -> ModuleType | None:
    """The compiled kernels, built on first call; None when turned off or not buildable."""
    global _loaded, _failed
    if not enabled():
        return None
    if _loaded is not None or _failed:
        return _loaded
    try:
        from torch.utils.cpp_extension import load

        build = build_directory()
        build.mkdir(parents=True, exist_ok=True)
        clear_stale_lock(build)
        _loaded = load(name=NAME, sources=[str(SOURCE)], build_directory=str(build),
                       extra_cflags=["-O3"], verbose=False)
    except Exception as error:  # no compiler, no ninja, a failed build: eager code instead
        _failed = True
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        warnings.warn(f"pntm: the write-event CPU kernels could not be built "
                      f"({type(error).__name__}: {first_line}); using the eager code "
                      f"(PNTM_KERNELS=0 skips the build)", RuntimeWarning, stacklevel=2)
    return _loaded


def build_directory() -> Path:
    """Where the kernels are built and cached: ``TORCH_EXTENSIONS_DIR`` (or torch's default
    root), a folder per Python and torch version."""
    from torch.utils.cpp_extension import get_default_build_root

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"{NAME}-{python}-torch{torch.__version__}"


def clear_stale_lock(build: Path, now: float | None = None) -> bool:
    """Remove torch's build lock in ``build`` if it is older than ``STALE_LOCK_SECONDS`` (left
    by a killed build); True when one was removed."""
    lock = build / "lock"
    try:
        age = (time.time() if now is None else now) - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age <= STALE_LOCK_SECONDS:
        return False
    lock.unlink(missing_ok=True)
    return True


def state() -> str:
    """``"off"`` (``PNTM_KERNELS=0``), ``"failed"`` (a build failed in this process), else
    ``"on"``: used on the CPU (built on first use if not yet built)."""
    if not enabled():
        return "off"
    return "failed" if _failed else "on"


def for_tensor(x: Tensor) -> ModuleType | None:
    """The kernels when ``x`` lives on the CPU and they are available, else None."""
    return kernels() if x.device.type == "cpu" else None
