"""One writer per directory: an exclusive, non-blocking ``flock`` on the directory itself.

There is no lock file to go stale: the kernel drops the lock when the process holding it dies
(even by SIGKILL), so the next writer starts at once. A lock is re-entrant within a process
(``pntm train`` holds its run's lock around the set-up and the training, which take it too).
Where ``fcntl`` does not exist (Windows) nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pntm.errors import RunDirError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


class RunDirLocked(RunDirError):
    """Another process is writing the run directory."""


HELD: dict[str, int] = {}  # directories this process holds the lock of -> depth


@contextlib.contextmanager
def dir_lock(path: Path, what: str = "run directory"):
    """Hold an exclusive, non-blocking flock on the directory ``path`` (which must exist);
    re-entrant within a process. Raises RunDirLocked when another process holds it."""
    key = os.path.realpath(path)
    if key in HELD or fcntl is None:
        HELD[key] = HELD.get(key, 0) + 1
        try:
            yield
        finally:
            HELD[key] -= 1
            if not HELD[key]:
                del HELD[key]
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            same = os.stat(path).st_ino == os.fstat(fd).st_ino  # not removed meanwhile
        except (BlockingIOError, FileNotFoundError):
            same = False
        if not same:
            raise RunDirLocked(f"{path}: another pntm process is writing this {what} (wait "
                               "for it to finish or stop it; one writer at a time)")
        HELD[key] = 1
        try:
            yield
        finally:
            del HELD[key]
    finally:
        os.close(fd)  # releases the lock
