"""Where a result came from: code version, command, time, machine."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch


SOURCE_COMMIT_VARIABLE = "PNTM_SOURCE_COMMIT"


def git_commit() -> str:
    """The commit of the checkout this package runs from, or "unknown".

    ``$PNTM_SOURCE_COMMIT``, when set, wins: a copy of the tree sent to another machine (a
    remote GPU) may carry no ``.git`` or a stale one, so the sender names the commit it sent.
    """
    if os.environ.get(SOURCE_COMMIT_VARIABLE):
        return os.environ[SOURCE_COMMIT_VARIABLE]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def git_dirty() -> bool | None:
    """Whether the package's source (this folder: code and configs, untracked files included)
    differs from that commit, or None when git cannot tell (or the commit was given by
    ``$PNTM_SOURCE_COMMIT``): a result made from uncommitted code cannot be reproduced from its
    commit alone."""
    if os.environ.get(SOURCE_COMMIT_VARIABLE):
        return None
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "."],
                             cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """Platform, CPU and (when present) GPU, in one line."""
    parts = [platform.platform(), cpu_name()]
    if torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name())
    return "; ".join(parts)


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it (``argv`` excludes the program name)."""
    argv = sys.argv[1:] if argv is None else argv
    return shlex.join(["pntm", *argv])


def provenance(command: str | None = None) -> dict:
    return {
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "command": command if command is not None else command_line(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **determinism(),
    }


def determinism() -> dict:
    """What a bitwise rerun must match besides code, config and seed: torch's intra-op thread
    count (reductions split across threads add in another order, so a CPU run reproduces to
    the digit only with the same count), the instruction set ATen's CPU kernels run with
    (``AVX512``, ``AVX2``, ...: vectors of another width add in another order too; settable
    with the ``ATEN_CPU_CAPABILITY`` environment variable) and the deterministic-algorithm
    switches. Recorded since two runs of one config and seed on two machines parted in the
    7th digit of the loss at step 50 (RESULTS.md, "Rolling back a collapse"). And whether the
    write-event path's CPU kernels are used (``event_kernels.state``): they add a dot product's
    terms in another order than the eager code."""
    from pntm.ops import event_kernels

    return {
        "threads": torch.get_num_threads(),
        "write_event_kernels": event_kernels.state(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
