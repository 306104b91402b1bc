"""Reading files a user can hand-edit or point at: only regular files of a sane size, and JSON
that cannot exhaust the stack.

``pntm eval --data /dev/zero`` used to read forever and an object nested 100,000 deep raised
RecursionError; both now end in one ``PntmError`` naming the file (the caller picks the error
class: DataError for a user's data, RunDirError for a run's own files).
"""

from __future__ import annotations

import json
from pathlib import Path

from pntm.errors import PntmError

#: the largest file pntm reads whole (JSONL data, run files). A JSONL file costs about its own
#: size in memory once parsed (token ids, offsets), so this also bounds what loading takes.
MAX_FILE_BYTES = 4 * 2**30


def check_regular_file(path: str | Path, error: type[PntmError] = PntmError,
                       limit: int = MAX_FILE_BYTES) -> Path:
    """``path`` when it is a regular file of at most ``limit`` bytes, else ``error``."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as err:
        raise error(f"{path}: cannot read it: {err.strerror or err}") from None
    if path.is_dir():
        raise error(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise error(f"{path}: not a regular file (a device, pipe or socket cannot be read whole)")
    if info.st_size > limit:
        raise error(f"{path}: {info.st_size:,} bytes, more than the {limit:,} pntm reads")
    return path


def loads_json(text: str | bytes, where: str, error: type[PntmError] = PntmError):
    """``json.loads`` whose failures (invalid JSON, nesting too deep) are ``error``s that name
    ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"cannot read {where}: invalid JSON: {err.msg} (line {err.lineno} column "
                    f"{err.colno})") from None
    except RecursionError:
        raise error(f"cannot read {where}: JSON nested too deeply") from None
    except UnicodeDecodeError as err:
        raise error(f"cannot read {where}: not UTF-8 text (byte {err.start + 1})") from None


def read_json(path: str | Path, error: type[PntmError] = PntmError):
    """A whole JSON file (regular, size-capped), parsed."""
    path = check_regular_file(path, error)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read it: {err.strerror or err}") from None
    return loads_json(data, str(path), error)
