"""A user's own task as JSONL: parsing and every bad-data error, and a 100,000-example file."""

import json
import re
import time
import tracemalloc

import numpy as np
import pytest
import torch

from pntm import tasks
from pntm.data import format_lengths, load_jsonl
from pntm.errors import DataError

torch.set_num_threads(1)  # tiny models; the machine is shared


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def reverse_lines(lengths, per_length=3, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    for n in lengths:
        for _ in range(per_length):
            bits = "".join(rng.choice(["0", "1"], size=n))
            lines.append(json.dumps({"input": bits, "target": bits[::-1]}))
    return lines


# --------------------------------------------------------------------------- the parser

GOOD = '{"input": "01", "target": "10"}'
BAD_LINES = {  # case: (second line, what the message says)
    "invalid JSON": ('{"input": "01", "target": }', "invalid JSON"),
    "not an object": ('["01", "10"]', "expected a JSON object"),
    "missing input": ('{"target": "1"}', 'missing field "input"'),
    "missing target": ('{"input": "01"}', 'missing field "target"'),
    "non-string token": ('{"input": ["0", 1], "target": "1"}', '"input" token 2 is not a string'),
    "number field": ('{"input": "01", "target": 7}', '"target" must be a string or a list'),
    "empty input": ('{"input": "", "target": "1"}', 'empty "input"'),
    "empty target list": ('{"input": "01", "target": []}', 'empty "target"'),
    "empty token": ('{"input": ["0", ""], "target": "1"}', '"input" token 2 is an empty string'),
    "special token": ('{"input": ["<eos>"], "target": "1"}', "reserved special token"),
}


@pytest.mark.parametrize("case", BAD_LINES)
def test_parser_names_file_and_line(tmp_path, case):
    line, message = BAD_LINES[case]
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, line, GOOD])
    with pytest.raises(DataError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(message)):
        load_jsonl(path)


def test_parser_empty_file_and_bad_bytes(tmp_path):
    for text in ("", "\n  \n"):
        (tmp_path / "empty.jsonl").write_text(text)
        with pytest.raises(DataError, match="empty.jsonl: no examples"):
            load_jsonl(tmp_path / "empty.jsonl")
    (tmp_path / "bytes.jsonl").write_bytes(GOOD.encode() + b"\n\xff\xfe\n")
    with pytest.raises(DataError, match=r"bytes.jsonl:2: not UTF-8"):
        load_jsonl(tmp_path / "bytes.jsonl")
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_parser_tokens_vocab_and_lengths(tmp_path):
    path = write_lines(tmp_path / "sum.jsonl", [
        '{"input": ["12", "+", "7"], "target": ["19"], "id": 1}',
        "",  # blank lines are skipped, but counted
        '{"input": "ab", "target": "ba"}',
        '{"input": ["7", "+", "12", "+", "1"], "target": ["20"]}',
    ])
    data = load_jsonl(path)
    assert data.vocab.symbols == sorted(["12", "+", "7", "19", "a", "b", "1", "20"])
    assert len(data) == 3 and data.lengths == [2, 3, 5]
    assert data.example(0) == tasks.Example(("12", "+", "7"), ("19",))
    assert data.examples(data.indices(2)) == [tasks.Example(("a", "b"), ("b", "a"))]
    assert data.describe()["max_target_length"] == 2
    # the ids do not depend on the order of the lines
    reordered = write_lines(tmp_path / "re.jsonl", path.read_text().splitlines()[::-1])
    assert load_jsonl(reordered).vocab == data.vocab
    # with a fixed vocabulary (evaluation) an unknown token names its line
    bad = write_lines(tmp_path / "test.jsonl", ['{"input": "ab", "target": "ba"}',
                                                 '{"input": "ab", "target": "bz"}'])
    with pytest.raises(DataError, match=re.escape(f"{bad}:2: token 'z' in \"target\"")):
        load_jsonl(bad, vocab=data.vocab)


def test_format_lengths_round_trips():
    for lengths in ([1], [1, 2, 3, 7], [2, 4, 5, 6, 9, 10], list(range(1, 41))):
        spec = format_lengths(lengths)
        assert tasks.parse_lengths(spec) == lengths
    assert format_lengths([3, 1, 2, 7]) == "1-3,7"


def test_sampling_stays_in_range_and_bucket(tmp_path):
    data = load_jsonl(write_lines(tmp_path / "r.jsonl", reverse_lines([1, 2, 4, 8], 4)))
    rng = np.random.default_rng(0)
    drawn = {data.draw_length(1, 4, rng) for _ in range(200)}
    assert drawn == {1, 2, 4}  # only lengths present, only within the curriculum's range
    batch = data.sample(4, 16, rng)
    assert len(batch) == 16 and all(len(ex.prompt) == 4 for ex in batch)
    assert all(ex.answer == ex.prompt[::-1] for ex in batch)
    assert data.subset(8, 2, seed=1) == data.subset(8, 2, seed=1)
    assert len(data.subset(8, None, seed=1)) == 4


# --------------------------------------------------------------------------- large files

def test_a_100k_example_file_loads_quickly_and_compactly(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 41, size=100_000)
    bits = rng.integers(0, 2, size=int(lengths.sum())).astype(np.uint8) + ord("0")
    text = bits.tobytes().decode()
    ends = np.cumsum(lengths)
    with open(tmp_path / "big.jsonl", "w") as f:
        for end, n in zip(ends.tolist(), lengths.tolist()):
            s = text[end - n: end]
            f.write(f'{{"input": "{s}", "target": "{s[::-1]}"}}\n')
    tokens = 2 * int(lengths.sum())

    tracemalloc.start()
    started = time.perf_counter()
    try:
        data = load_jsonl(tmp_path / "big.jsonl")
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == 100_000 and data.lengths == list(range(1, 41))
    assert seconds < 30, seconds  # about 2 s under tracemalloc on one shared core
    assert data.nbytes < 3 * tokens + 40 * len(data)  # int16 ids, a few arrays per example
    assert peak < 25 * tokens, peak  # no Python object per token at any point
    started = time.perf_counter()
    batch = data.sample(data.draw_length(1, 40, rng), 32, rng)
    assert time.perf_counter() - started < 0.1 and len(batch) == 32
