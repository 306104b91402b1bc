"""The held-out tasks' generator (benchmarks/heldout/make_tasks.py): its answers on cases worked
by hand, its lengths, its determinism, that its files load as a user's JSONL data, and that no
held-out task is a built-in one."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from pntm import splits, tasks
from pntm.config import DEFAULT_EVAL_LENGTHS
from pntm.data import load_jsonl

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "heldout" / "make_tasks.py"


@pytest.fixture(scope="module")
def heldout():
    spec = importlib.util.spec_from_file_location("make_tasks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Fixed(random.Random):
    """A generator whose bits are given: ``choice`` returns them in order, ``randint`` the
    count."""

    def __init__(self, bits: str, count: int = 1):
        super().__init__(0)
        self.bits, self.count = iter(bits), count

    def choice(self, seq):
        return next(self.bits)

    def randint(self, a, b):
        return self.count


def solve(heldout, task, bits, length, count=1):
    x, y = getattr(heldout, task)(Fixed(bits, count), length)
    return "".join(x), "".join(y)


def test_answers_worked_by_hand(heldout):
    assert solve(heldout, "count_mod_3", "1101011", 7) == ("1101011", "2")   # five 1s
    assert solve(heldout, "count_mod_3", "000", 3) == ("000", "0")
    # LSB first: 1101 is 1 + 2 + 8 = 11, plus one is 12 = 0011 then a 0 in the fifth bit
    assert solve(heldout, "binary_increment", "1101", 4) == ("1101", "00110")
    assert solve(heldout, "binary_increment", "111", 3) == ("111", "0001")   # 7 + 1 = 8
    assert solve(heldout, "majority", "10110", 5) == ("10110", "1")
    assert solve(heldout, "majority", "1000", 4) == ("1000", "0")
    assert solve(heldout, "majority", "1001", 4) == ("1001", "=")
    # halves 101 and 10: 1 1, 0 0, then the rest of the first half
    assert solve(heldout, "interleave", "10110", 5) == ("10110", "11001")
    assert solve(heldout, "interleave", "0111", 4) == ("0111", "0111")      # 01 | 11
    assert solve(heldout, "bitwise_xor", "110011", 7) == ("110#011", "101")
    assert solve(heldout, "repeat_copy", "101", 4, count=3) == ("1013", "101101101")
    assert solve(heldout, "repeat_copy", "0", 2, count=1) == ("01", "0")


def test_lengths_and_counts(heldout):
    assert heldout.lengths("count_mod_3", "test")[-3:] == [320, 400, 500]
    assert heldout.lengths("bitwise_xor", "train") == list(range(3, 40, 2))
    assert heldout.lengths("bitwise_xor", "validation") == list(range(41, 64, 2))
    assert heldout.lengths("bitwise_xor", "test")[-4:] == [255, 319, 399, 499]
    assert heldout.lengths("repeat_copy", "train") == list(range(2, 41))
    for task in heldout.TASKS:
        for split in ("validation", "test"):  # (the training split: the same rule, larger)
            made = heldout.examples(task, split)
            wanted = heldout.lengths(task, split)
            assert sorted({len(x) for x, _ in made}) == wanted, (task, split)
            assert len(made) == len(wanted) * heldout.PER_LENGTH[split]


def test_length_grids_are_the_protocols(heldout):
    """The script keeps its own copy of the splits' lengths (it imports nothing of pntm):
    they must be the library's, so that held-out runs are scored as the built-in tasks are."""
    low, high = tasks.DEFAULT_TRAIN_LENGTHS
    assert list(heldout.TRAIN_LENGTHS) == list(range(low, high + 1))
    assert list(heldout.VALIDATION_LENGTHS) == tasks.parse_lengths(splits.VALIDATION_LENGTHS)
    assert heldout.TEST_LENGTHS == tasks.parse_lengths(DEFAULT_EVAL_LENGTHS)


def test_the_same_examples_every_time(heldout):
    assert heldout.examples("majority", "validation") == heldout.examples("majority",
                                                                          "validation")
    assert heldout.examples("majority", "validation") != heldout.examples("majority", "test")


def test_files_load_as_jsonl_data(heldout, tmp_path, monkeypatch):
    monkeypatch.setitem(heldout.PER_LENGTH, "train", 3)
    heldout.main(["--out", str(tmp_path), "--tasks", "bitwise_xor,repeat_copy"])
    for task in ("bitwise_xor", "repeat_copy"):
        train = load_jsonl(tmp_path / task / "train.jsonl")
        test = load_jsonl(tmp_path / task / "test.jsonl", vocab=train.vocab)  # no new token
        assert max(test.lengths) == (500 if task == "repeat_copy" else 499)
        first = json.loads((tmp_path / task / "validation.jsonl").read_text().splitlines()[0])
        assert isinstance(first["input"], str) and len(first["input"]) >= 41


def test_unknown_task_is_one_error(heldout, capsys):
    with pytest.raises(SystemExit) as err:
        heldout.main(["--out", "unused", "--tasks", "sorting"])
    assert err.value.code == 2
    assert "unknown task 'sorting'" in capsys.readouterr().err


def test_no_heldout_task_is_built_in(heldout):
    assert not set(heldout.TASKS) & set(tasks.TASKS)
