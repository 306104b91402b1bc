"""The built-in tasks that existed before the Chomsky suite generate exactly what they did.

The committed results grid (results/grid) was trained and evaluated on these streams, so a change
to any of them (a refactor that reorders random draws, a new default) would silently make new runs
incomparable with it. The pins were computed with the code of commit 17f36fb (before
``pntm.tasks`` became a package): a digest of the first 16 examples of the evaluation set of each
length below (``eval_examples(task, n, 16)``, eval seed 1234; evaluation sets are prefix-stable,
so this pins the first 16 of the 128 the grid uses), a digest of a training stream (seed 3,
4 examples at each of the lengths 1, 5, 40, 23 from one generator), and two literal examples of
length 5.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from pntm import tasks

EVAL_LENGTHS = (1, 2, 7, 40, 41, 100, 500)

# task -> (eval digests at EVAL_LENGTHS, training-stream digest, eval_examples(task, 5, 2))
PINS = {
    "parity": (
        ("d290d2aa09e127f7", "400f6ece429e2e66", "c69e86853cd7ae53", "5fcf7b95fab3cb69",
         "7bb2cf1576e52633", "abfb1ff4bdf0f7ce", "52715aee81517d2a"),
        "055d39671464334b",
        [('01101', '1'), ('11111', '1')],
    ),
    "cycle_navigation": (
        ("792ea4acefa2dde3", "3703ea38e3cb762a", "5af9efe1e23302c1", "b52562332182645e",
         "e41e9270d56a2a8d", "b17bcfee41875df3", "9be3fcf8efd98e68"),
        "8770becccb4666bb",
        [('10010', '2'), ('00102', '0')],
    ),
    "modular_arithmetic": (
        ("ae1466d3abd62eff", "362ba551db38affb", "15f322881a1d7903", "39b27b3e034fe3dd",
         "900204276fd65386", "d95a77ecdc329913", "5f7143ec86cd01f3"),
        "d2be4164fbc0cfc0",
        [('4+2-4-1-1', '0'), ('2-0+1-4+4', '3')],
    ),
    "copy": (
        ("bd0a60a95b2cbc92", "3ac50b0a568e1b92", "17c92a5e277a3905", "99981b3759ba7817",
         "b0d371bfbc2bb05f", "1eb1843de06cae68", "f20c36189c165d9d"),
        "6ddede78bb4def8d",
        [('10011', '10011'), ('00011', '00011')],
    ),
    "reverse": (
        ("1b3a05cabcc73d13", "2772129ee06e37f4", "5b2aaa14e8c07fd0", "043be80cf4109c94",
         "18db06c01dfbe6e4", "305cb24a3ebf8d64", "2eee6419b659f84b"),
        "6cca9e342461fe41",
        [('10101', '10101'), ('10101', '10101')],
    ),
    "duplicate": (
        ("e29018616a461492", "9ac1c3056de08c8f", "29da9433447e69e8", "15aff1e067256dd0",
         "7e4581e80c8f0f2b", "341e912f48a17e70", "756890b50413a3e7"),
        "a271e8506fa9fa08",
        [('01000', '0100001000'), ('01000', '0100001000')],
    ),
    "associative_recall": (
        ("f8ba84df5b0d55b8", "1e56a3d38ea2b7e6", "b11c1e586582f752", "c507e7bb47e84bbb",
         "dfa0d5b2407b3a69", "5d5298a6df9ecb33", "8e1dce6fe6787a9d"),
        "3eab6cd2366a1cf6",
        [('eca8dec5eec5eag9fca9?dec', '5'), ('fbg3gad9fha9ebh7fab3?fab', '3')],
    ),
    "binary_addition": (
        ("e0d3d688793b8513", "37dd95c3da5b4077", "88b995d073b798f1", "2722f8997e449c4b",
         "d6788fd7ea3330bb", "b2d3ed51f0792e8c", "9252fc4957757a96"),
        "40dbc826c76de09e",
        [('10110+00001', '101110'), ('01010+00100', '011100')],
    ),
    "binary_multiplication": (
        ("aa243ed704501cdd", "dabd0f54b407f984", "bd2db8b17f7ab60c", "36d85ad1fd9a6772",
         "cde6667dba1190cb", "71f939fd0996b6a2", "4732c37ee9bb99a1"),
        "4c3e8316ecb9d139",
        [('01111*10110', '0110000110'), ('01010*01100', '0011110000')],
    ),
}


def digest(examples) -> str:
    data = [[list(e.prompt), list(e.answer)] for e in examples]
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()[:16]


def flat(tokens) -> str:
    return "".join(tokens) if all(len(t) == 1 for t in tokens) else " ".join(tokens)


def test_every_pre_chomsky_task_is_pinned():
    assert set(PINS) <= set(tasks.TASKS)
    assert list(tasks.TASKS)[: len(PINS)] == list(PINS)  # and they keep their order


@pytest.mark.parametrize("name", list(PINS))
def test_examples_are_byte_identical(name):
    task = tasks.get_task(name)
    eval_digests, train_digest, literal = PINS[name]
    got = [(flat(e.prompt), flat(e.answer)) for e in tasks.eval_examples(task, 5, 2)]
    assert got == literal
    assert tuple(digest(tasks.eval_examples(task, n, 16)) for n in EVAL_LENGTHS) == eval_digests
    rng = tasks.train_generator(3)
    stream = [ex for n in (1, 5, 40, 23) for ex in tasks.sample_examples(task, n, 4, rng)]
    assert digest(stream) == train_digest
