"""The three splits of the benchmark protocol: train, validation, test.

What each split is for
----------------------
* ``train``: lengths ``train.train_lengths`` (1-40 by default), drawn from the run's own training
  stream; the only examples a model learns from.
* ``validation``: lengths 41-64 (:data:`VALIDATION_LENGTHS`, the config's
  ``eval.validation_lengths``, which tests shorten), a fixed set per (task, length)
  from its own stream. It is used for every choice: which seed is "best", which learning rate of
  a sweep, and any config decision. It is the same for every model and seed, so choices compare
  like with like. The range is fixed, whatever a run's ``train_lengths``: with training lengths
  that reach 41 it is no longer out of distribution (the default configs never do that).
* ``test``: the out-of-distribution grid up to 500 (``eval.lengths``, in-distribution lengths
  included, exactly what ``pntm eval`` measured before the splits existed). Only reported, never
  used to choose anything.

Streams (how each split's examples are derived)
-----------------------------------------------
Every stream is a ``numpy.random.SeedSequence`` whose ``spawn_key`` starts with a split tag:

========== ================================================================ ==================
split      SeedSequence                                                     owner
========== ================================================================ ==================
train      ``SeedSequence(seed, spawn_key=(0,))``                           ``tasks.train_generator``
test       ``SeedSequence(eval_seed, spawn_key=(1, crc32(task), length))``  ``tasks.eval_examples``
validation ``SeedSequence(eval_seed, spawn_key=(2, crc32(task), length))``  :func:`validation_examples`
========== ================================================================ ==================

``seed`` is the run seed, ``eval_seed`` the config's ``eval.eval_seed`` (1234), ``crc32(task)``
the CRC-32 of the task's name in UTF-8 and ``length`` the example length. The test split is
``tasks.eval_examples`` itself, so every committed ``eval.json`` is a test-split result. The
validation stream differs from the test stream only by its tag (2 instead of 1): a SeedSequence
hashes its whole spawn key into its state, so the streams are unrelated, a set per (task, length)
is independent of which other lengths are evaluated, and it is the same for every model and run
seed. Training draws lengths 1-40 only, so it never produces a validation or test example of
length 41 or more; validation and test share the lengths 41, 50 and 64 but not their examples
(tests/test_splits.py checks that no prompt occurs in both, for every task).

Where results go
----------------
``RUN_DIR/eval.json`` holds the test split (as it always did) and ``RUN_DIR/eval-validation.json``
the validation split, in the same format (``"split"`` says which). Separate files, so evaluating
one split never rewrites the other's numbers; training removes both when it changes the weights.
A run on the user's JSONL data has no generator, hence no validation split unless a file of
examples is given (``pntm eval RUN --split validation --data VAL.jsonl``).
"""

from __future__ import annotations

import zlib
import numpy as np

from pntm import tasks
from pntm.errors import PntmError

SPLITS = ("train", "validation", "test")
#: the splits ``pntm eval`` measures (train is the run's training stream)
EVAL_SPLITS = ("validation", "test")
VALIDATION_LENGTHS = "41-64"
FILES = {"test": "eval.json", "validation": "eval-validation.json"}
STREAM_TAGS = {"train": 0, "test": 1, "validation": 2}


class SplitError(PntmError):
    """A split name that does not exist, or one that cannot be evaluated."""


def check_split(split: str) -> str:
    """``split`` when ``pntm eval`` can measure it; otherwise a SplitError naming the choices."""
    if split in EVAL_SPLITS:
        return split
    if split == "train":
        raise SplitError("the train split is the run's own training stream; evaluate "
                         f"{' or '.join(EVAL_SPLITS)}")
    raise SplitError(f"unknown split {split!r}; choose one of: {', '.join(EVAL_SPLITS)}")


def split_file(split: str) -> str:
    """The file in a run directory that holds the results of ``split``."""
    return FILES[check_split(split)]


def stream_description(split: str) -> str:
    """How ``split``'s examples were drawn, for the report's ``stream`` field."""
    tag = STREAM_TAGS[split]
    if split == "train":
        return f"SeedSequence(seed, spawn_key=({tag},))"
    return f"SeedSequence(eval_seed, spawn_key=({tag}, crc32(task), length))"


def task_tag(task: tasks.Task) -> int:
    return zlib.crc32(task.name.encode("utf-8"))


def validation_examples(task: tasks.Task, length: int, samples: int,
                        eval_seed: int = 1234) -> list[tasks.Example]:
    """The fixed validation set for (task, length, eval_seed)."""
    if isinstance(eval_seed, bool) or not isinstance(eval_seed, (int, np.integer)) or eval_seed < 0:
        raise ValueError(f"eval_seed must be a non-negative integer, got {eval_seed!r}")
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise ValueError(f"length must be an integer, got {length!r}")
    seq = np.random.SeedSequence(int(eval_seed), spawn_key=(
        STREAM_TAGS["validation"], task_tag(task), int(length)))
    return tasks.sample_examples(task, int(length), samples, np.random.default_rng(seq))


def split_examples(task: tasks.Task, split: str, length: int, samples: int,
                   eval_seed: int) -> list[tasks.Example]:
    """``samples`` examples of ``length`` from ``split``'s stream (validation or test)."""
    if check_split(split) == "test":
        return tasks.eval_examples(task, length, samples, eval_seed)
    return validation_examples(task, length, samples, eval_seed)


def default_lengths(cfg: dict, split: str) -> list[int]:
    """The lengths ``split`` evaluates for a run: its config's ``eval.lengths`` for test, its
    ``eval.validation_lengths`` for validation (:data:`VALIDATION_LENGTHS`, 41-64, unless a run
    sets another range; configs older than the key get the default), without those above the
    task's ``max_length``."""
    if check_split(split) == "test":
        return tasks.parse_lengths(cfg["eval"]["lengths"])
    spec = cfg["eval"].get("validation_lengths", VALIDATION_LENGTHS)
    lengths = tasks.parse_lengths(spec)
    task = tasks.get_task(cfg["task"])
    if task.max_length is not None:
        lengths = [n for n in lengths if n <= task.max_length]
    if not lengths:
        raise SplitError(f"task {task.name} has no validation lengths ({spec} exceeds its "
                         f"longest length {task.max_length})")
    return lengths


def has_generator(cfg: dict) -> bool:
    """Whether a run's examples come from a built-in task (a JSONL run has no validation
    stream of its own)."""
    return cfg.get("data") is None
