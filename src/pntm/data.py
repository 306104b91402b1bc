"""A user's own task as JSON Lines (``pntm train --data TRAIN.jsonl``, ``pntm eval --data
TEST.jsonl``): reading, validating and serving the examples of such a file.

One example per line (the README's tutorial, "your own task")::

    {"input": "0110", "target": "1"}                   a string: one token per character
    {"input": ["12", "+", "7"], "target": ["19"]}      a list of token strings

The *length* of an example is its number of input tokens. Other fields are ignored, and so are
blank lines (line numbers in messages still count them).

Decisions:

* **Whole-file validation first.** :func:`load_jsonl` reads every line before it returns and
  raises :class:`~pntm.errors.DataError` ``"FILE:LINE: what"`` at the first bad one: invalid
  JSON or UTF-8, not an object, a missing field, a field that is not a string or a list of
  strings, an empty input or target, an empty token, a token that is one of the special tokens,
  an empty file, and (with a fixed vocabulary, i.e. at evaluation) a token the vocabulary lacks.
  The command line loads the data before it creates a run directory, so bad data never leaves
  one behind.
* **The vocabulary of a run is its training file's**: every token of its inputs and targets,
  sorted (ids do not depend on the order of the lines), after the special tokens of
  :class:`~pntm.tasks.Vocab`. It is stored in the run's ``config.yaml`` like a built-in task's.
* **Compact storage for large files.** Lines are parsed one at a time; token ids go to one flat
  array (int16 when the vocabulary allows) with one offset per example, each example's input ids
  followed by its target ids. :class:`~pntm.tasks.Example` objects are built only for the batch
  at hand, so a 100,000-example file costs a few bytes per token, not a Python object per token.
* **Length buckets.** An index sorted by length (stable, so file order within a length) and the
  bounds of each length's bucket: drawing a training batch of one length is one
  ``rng.integers`` call.
* **Training draws lengths uniformly among those present** in the file (within the curriculum's
  current range), then examples uniformly, with replacement, from that length's bucket: the
  protocol's "one length uniformly per step", restricted to the lengths the user gave.
* **Reproducible resume.** A run records the file's absolute path and sha256; resuming (or
  evaluating without ``--data``) reads that path only, and refuses it before parsing a byte when
  its sha256 differs.
* **Only regular files, at most** ``safeio.MAX_FILE_BYTES``: a device (``/dev/zero``), a pipe or
  a huge file is one error instead of a read that never ends.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from array import array
from pathlib import Path
from typing import Sequence

import numpy as np

from pntm import tasks
from pntm.errors import DataError
from pntm.safeio import check_regular_file

FIELDS = ("input", "target")


# --------------------------------------------------------------------------- the dataset

class JsonlDataset:
    """The examples of one JSONL file as token ids, bucketed by length (see the module doc)."""

    def __init__(self, path: Path, sha256: str, vocab: tasks.Vocab, ids: np.ndarray,
                 starts: np.ndarray, prompt_lengths: np.ndarray):
        self.path, self.sha256, self.vocab = path, sha256, vocab
        self._ids = ids                        # flat: input ids, then target ids, per example
        self._starts = starts                  # (n + 1,) offsets into _ids
        self._prompt_lengths = prompt_lengths  # (n,) = the examples' lengths
        self._order = np.argsort(prompt_lengths, kind="stable")
        lengths, first, counts = np.unique(prompt_lengths[self._order], return_index=True,
                                           return_counts=True)
        self.lengths: list[int] = lengths.tolist()  # the lengths present, ascending
        self._lengths = lengths
        self._bucket_start, self._bucket_end = first, first + counts
        self._table = np.array(vocab.tokens, dtype=object)

    def __len__(self) -> int:
        return len(self._prompt_lengths)

    def __repr__(self) -> str:
        lengths = format_lengths(self.lengths)
        return f"<JsonlDataset {self.path}: {len(self)} examples, lengths {lengths}>"

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays (the vocabulary aside)."""
        return sum(a.nbytes for a in (self._ids, self._starts, self._prompt_lengths, self._order,
                                      self._lengths, self._bucket_start, self._bucket_end))

    @property
    def max_target_length(self) -> int:
        return int((np.diff(self._starts) - self._prompt_lengths).max())

    def count(self, length: int) -> int:
        """How many examples have ``length`` input tokens."""
        b = self._bucket(length)
        return 0 if b is None else int(self._bucket_end[b] - self._bucket_start[b])

    def _bucket(self, length: int) -> int | None:
        b = int(np.searchsorted(self._lengths, length))
        return b if b < len(self._lengths) and self._lengths[b] == length else None

    def indices(self, length: int) -> np.ndarray:
        """Positions (in file order) of the examples of ``length``."""
        b = self._bucket(length)
        if b is None:
            return np.empty(0, dtype=np.int64)
        return self._order[self._bucket_start[b]: self._bucket_end[b]]

    def example(self, i: int) -> tasks.Example:
        start, end, p = int(self._starts[i]), int(self._starts[i + 1]), int(self._prompt_lengths[i])
        tokens = self._table[self._ids[start:end]].tolist()
        return tasks.Example(tokens[:p], tokens[p:])

    def examples(self, indices: Sequence[int]) -> list[tasks.Example]:
        return [self.example(int(i)) for i in indices]

    # training -------------------------------------------------------------------------
    def draw_length(self, lo: int, hi: int, rng: np.random.Generator) -> int:
        """A length present in the file, uniformly among those within ``[lo, hi]``."""
        first = int(np.searchsorted(self._lengths, lo, side="left"))
        last = int(np.searchsorted(self._lengths, hi, side="right"))
        if first >= last:  # cannot happen for ranges from the run's config; be explicit anyway
            raise DataError(f"{self.path}: no example has a length within {lo}-{hi}")
        return int(self._lengths[int(rng.integers(first, last))])

    def sample(self, length: int, count: int, rng: np.random.Generator) -> list[tasks.Example]:
        """``count`` examples of ``length``, uniformly with replacement."""
        b = self._bucket(length)
        if b is None:
            raise DataError(f"{self.path}: no example has length {length}")
        picks = rng.integers(self._bucket_start[b], self._bucket_end[b], size=count)
        return self.examples(self._order[picks])

    # evaluation -----------------------------------------------------------------------
    def subset(self, length: int, limit: int | None, seed: int) -> list[tasks.Example]:
        """The examples of ``length``: all of them, or ``limit`` drawn without replacement by a
        generator seeded with (``seed``, ``length``), kept in file order."""
        idx = self.indices(length)
        if limit is not None and len(idx) > limit:
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(length,)))
            idx = np.sort(rng.choice(idx, size=limit, replace=False))
        return self.examples(idx)

    def describe(self) -> dict:
        """What a run's config records about its training file."""
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "examples": len(self),
                "lengths": format_lengths(self.lengths),
                "max_target_length": self.max_target_length}


# --------------------------------------------------------------------------- reading

def load_jsonl(path: str | Path, vocab: tasks.Vocab | None = None) -> JsonlDataset:
    """Read and validate a whole JSONL file (raises DataError naming the file and line).

    Without ``vocab`` (a training file) the vocabulary is built from the file; with one (a test
    file) every token must be in it.
    """
    path = check_regular_file(path, DataError)  # not /dev/zero, a pipe, or a huge file
    fixed = vocab is not None
    index: dict[str, int] = {}  # token -> id (provisional, in order of appearance, when not fixed)
    if fixed:
        index = {t: i for i, t in enumerate(vocab.tokens) if t not in tasks.SPECIAL_TOKENS}
    ids, starts, prompt_lengths = array("i"), array("q", [0]), array("i")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            digest.update(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            prompt, answer = _parse_line(raw, path, number)
            if prompt is None:
                continue  # blank line
            for field, tokens in (("input", prompt), ("target", answer)):
                try:
                    ids.extend([index[t] for t in tokens])
                except KeyError:
                    ids.extend(_new_ids(tokens, field, index, vocab, f"{path}:{number}"))
            starts.append(len(ids))
            prompt_lengths.append(len(prompt))
    if not prompt_lengths:
        raise DataError(f"{path}: no examples (the file is empty)")

    flat = np.frombuffer(ids, dtype=np.int32)
    if not fixed:  # provisional ids in order of first appearance -> ids of the sorted vocabulary
        vocab = tasks.Vocab(sorted(index))
        final = {t: i for i, t in enumerate(vocab.tokens)}
        flat = np.array([final[t] for t in index], dtype=np.int32)[flat]
    dtype = np.int16 if len(vocab) <= np.iinfo(np.int16).max else np.int32
    return JsonlDataset(path, digest.hexdigest(), vocab, flat.astype(dtype),
                        np.frombuffer(starts, dtype=np.int64),
                        np.frombuffer(prompt_lengths, dtype=np.int32))


def _parse_line(raw: bytes, path: Path, number: int) -> tuple[list[str] | None, list[str] | None]:
    """The input and target tokens of one line, or (None, None) for a blank line."""
    where = f"{path}:{number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text (byte {err.start + 1} of the line)") from None
    if not text.strip():
        return None, None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: invalid JSON: {err.msg} (column {err.colno})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with \"input\" and \"target\", "
                        f"got {_json_type(obj)}")
    return _tokens(obj, "input", where), _tokens(obj, "target", where)


def _tokens(obj: dict, field: str, where: str) -> list[str]:
    if field not in obj:
        raise DataError(f"{where}: missing field \"{field}\"")
    value = obj[field]
    if isinstance(value, str):
        tokens = list(value)
    elif isinstance(value, list):
        tokens = value
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise DataError(f"{where}: \"{field}\" token {i + 1} is not a string: "
                                f"{json.dumps(t)[:40]} ({_json_type(t)})")
            if not t:
                raise DataError(f"{where}: \"{field}\" token {i + 1} is an empty string")
    else:
        raise DataError(f"{where}: \"{field}\" must be a string or a list of strings, "
                        f"got {_json_type(value)}")
    if not tokens:
        raise DataError(f"{where}: empty \"{field}\"")
    return tokens


def _new_ids(tokens: list[str], field: str, index: dict[str, int], vocab: tasks.Vocab | None,
             where: str) -> list[int]:
    """Ids of ``tokens`` when one is not in ``index`` yet: added to a growing vocabulary, or an
    error naming the token when the vocabulary is fixed."""
    out = []
    for t in tokens:
        if t not in index:
            if t in tasks.SPECIAL_TOKENS:
                raise DataError(f"{where}: \"{field}\" holds {t!r}, a reserved special token")
            if vocab is not None:
                raise DataError(f"{where}: token {t!r} in \"{field}\" is not in the run's "
                                f"vocabulary (from its training data): {_listing(vocab)}")
            index[t] = len(index)
        out.append(index[t])
    return out


def _listing(vocab: tasks.Vocab, limit: int = 40) -> str:
    symbols = vocab.symbols
    shown = " ".join(repr(s) for s in symbols[:limit])
    return shown + (f" ... ({len(symbols) - limit} more)" if len(symbols) > limit else "")


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --------------------------------------------------------------------------- runs

def run_dataset(cfg: dict) -> JsonlDataset:
    """The training file of a JSONL run, with the run's vocabulary; refuses a changed file."""
    data = cfg["data"]
    path = Path(data["path"])
    if not path.is_file():
        raise DataError(f"{path}: the run's training file is gone (the run needs it to resume "
                        "or to evaluate without --data)")
    # The digest is checked before a byte is parsed: a config.yaml edited to point elsewhere
    # cannot make pntm read (or quote, in an error) any other file.
    if file_sha256(check_regular_file(path, DataError)) != data["sha256"]:
        raise DataError(f"{path}: the run's training file has changed since the run started "
                        "(its sha256 differs); the run needs the same data")
    return load_jsonl(path, vocab=tasks.Vocab.from_list(cfg["vocab"]))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def format_lengths(lengths: Sequence[int]) -> str:
    """Sorted lengths as a spec that ``tasks.parse_lengths`` reads back: [1, 2, 3, 7] -> "1-3,7"."""
    items, run_start, previous = [], None, None
    for n in sorted(set(int(n) for n in lengths)):
        if previous is not None and n == previous + 1:
            previous = n
            continue
        if run_start is not None:
            items.append(f"{run_start}-{previous}" if previous > run_start else f"{run_start}")
        run_start = previous = n
    if run_start is not None:
        items.append(f"{run_start}-{previous}" if previous > run_start else f"{run_start}")
    return ",".join(items)
