"""The example streams of a task: training by run seed, evaluation fixed per length.

Seed policy
-----------
* Training: :func:`train_generator(seed) <train_generator>` is
  ``SeedSequence(seed, spawn_key=(0,))``.
* Evaluation: :func:`eval_examples(task, length, samples, eval_seed)
  <eval_examples>` draws from ``SeedSequence(eval_seed, spawn_key=(1, crc32(task),
  length))``: a fixed set per (task, length, eval_seed), the same for every model
  and training seed, independent of how many other lengths are evaluated.
The spawn keys differ, so evaluation streams never coincide with training
streams (whatever the seeds). For tiny lengths the *example sets* overlap anyway
(parity of length 1 has two possible examples); that is inherent, not a leak.
"""

from __future__ import annotations

import zlib

import numpy as np

from pntm.tasks.base import Example, Task

__all__ = ["sample_examples", "train_generator", "eval_examples"]

_TRAIN_TAG = 0
_EVAL_TAG = 1


def sample_examples(
    task: Task, length: int, count: int, rng: np.random.Generator
) -> list[Example]:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [task.generate(length, rng) for _ in range(count)]


def _check_seed(seed: int, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {seed!r}")
    return int(seed)


def train_generator(seed: int) -> np.random.Generator:
    """The training data stream for a run seed (disjoint from every eval stream)."""
    seed = _check_seed(seed, "seed")
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_TRAIN_TAG,)))


def _task_tag(task: Task) -> int:
    return zlib.crc32(task.name.encode("utf-8"))


def eval_examples(
    task: Task, length: int, samples: int, eval_seed: int = 1234
) -> list[Example]:
    """The fixed evaluation set for (task, length, eval_seed)."""
    eval_seed = _check_seed(eval_seed, "eval_seed")
    length = task._check_length(length)
    ss = np.random.SeedSequence(eval_seed, spawn_key=(_EVAL_TAG, _task_tag(task), length))
    return sample_examples(task, length, samples, np.random.default_rng(ss))
