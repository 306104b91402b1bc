"""Tests for pntm.tasks: generators, vocabulary, batching, seeds and length specs."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from pntm.tasks import (
    BOS, EOS, PAD, SEP,
    DEFAULT_OOD_LENGTHS, DEFAULT_TRAIN_LENGTHS, LEVELS, REQUIRED_TASKS, TASKS,
    Example, InvalidPromptError, LengthSpecError, UnknownTaskError, UnknownTokenError, Vocab,
    encode_batch, eval_examples, get_task, parse_lengths, sample_examples, train_generator,
)


# --------------------------------------------------------------------------- reference solutions
# Written independently of pntm.tasks: plain Python ints and strings.

def lsb_to_int(bits):
    return int("".join(reversed(bits)), 2)


def int_to_lsb(value, width):
    s = bin(value)[2:].zfill(width)
    assert len(s) == width
    return tuple(reversed(s))


def ref_parity(p):
    return (str(p.count("1") % 2),)


def ref_cycle(p):
    return (str(sum({"0": 0, "1": 1, "2": -1}[t] for t in p) % 5),)


def ref_modular(p):
    # + and - are left-associative, so Python's eval gives the left-to-right value
    return (str(eval("".join(p)) % 5),)


def ref_assoc(p):
    n = (len(p) - 4) // 4
    pairs = {"".join(p[4 * i: 4 * i + 3]): p[4 * i + 3] for i in range(n)}
    return (pairs["".join(p[-3:])],)


def split_operands(p, op):
    k = p.index(op)
    return p[:k], p[k + 1:]


def ref_add(p):
    a, b = split_operands(p, "+")
    return int_to_lsb(lsb_to_int(a) + lsb_to_int(b), len(a) + 1)


def ref_mul(p):
    a, b = split_operands(p, "*")
    return int_to_lsb(lsb_to_int(a) * lsb_to_int(b), 2 * len(a))


REFERENCE = {
    "parity": ref_parity,
    "cycle_navigation": ref_cycle,
    "modular_arithmetic": ref_modular,
    "copy": lambda p: tuple(p),
    "reverse": lambda p: tuple(p[::-1]),
    "duplicate": lambda p: tuple(p) * 2,
    "associative_recall": ref_assoc,
    "binary_addition": ref_add,
    "binary_multiplication": ref_mul,
}

# (prompt tokens, answer tokens) as functions of the length n
SIZES = {
    "parity": (lambda n: n, lambda n: 1),
    "cycle_navigation": (lambda n: n, lambda n: 1),
    "modular_arithmetic": (lambda n: 2 * n - 1, lambda n: 1),
    "copy": (lambda n: n, lambda n: n),
    "reverse": (lambda n: n, lambda n: n),
    "duplicate": (lambda n: n, lambda n: 2 * n),
    "associative_recall": (lambda n: 4 * n + 4, lambda n: 1),
    "binary_addition": (lambda n: 2 * n + 1, lambda n: n + 1),
    "binary_multiplication": (lambda n: 2 * n + 1, lambda n: 2 * n),
}


def test_registry():
    assert REQUIRED_TASKS == (
        "parity", "cycle_navigation", "modular_arithmetic", "copy", "reverse",
        "duplicate", "associative_recall", "binary_addition",
    )
    # the project's own tasks come first (the Chomsky suite's are in test_chomsky_tasks.py)
    assert list(TASKS)[: len(REFERENCE)] == list(REFERENCE)
    assert list(TASKS)[: len(REQUIRED_TASKS)] == list(REQUIRED_TASKS)
    for name, task in TASKS.items():
        assert task.name == name
        assert task.category in ("state_tracking", "memorization", "arithmetic", "chomsky")
        assert (task.category == "chomsky") == (name not in REFERENCE)
        assert task.level in LEVELS
        assert task.description and "\n" not in task.description
        assert get_task(name) is task
    assert TASKS["binary_multiplication"].category == "arithmetic"
    with pytest.raises(UnknownTaskError, match=r"unknown task 'nope'; choose one of: parity, "):
        get_task("nope")


# --------------------------------------------------------------------------- hand-written examples

HAND = [
    ("parity", "1101", ("1",)),
    ("parity", "0000", ("0",)),
    ("parity", "1", ("1",)),
    ("cycle_navigation", "1121111", ("0",)),
    ("cycle_navigation", "2", ("4",)),
    ("cycle_navigation", "0012", ("0",)),
    ("cycle_navigation", "111", ("3",)),
    ("modular_arithmetic", "4+3-2", ("0",)),
    ("modular_arithmetic", "1-2-3", ("1",)),     # -4 mod 5
    ("modular_arithmetic", "3", ("3",)),
    ("copy", "0110", tuple("0110")),
    ("reverse", "0111", tuple("1110")),
    ("duplicate", "10", tuple("1010")),
    ("associative_recall", "abc1hhh7gab0?hhh", ("7",)),
    ("associative_recall", "abc1?abc", ("1",)),
    ("binary_addition", "110+101", tuple("0001")),    # 3 + 5 = 8
    ("binary_addition", "1+1", tuple("01")),          # 1 + 1 = 2
    ("binary_addition", "000+000", tuple("0000")),
    ("binary_addition", "111+111", tuple("0111")),    # 7 + 7 = 14
    ("binary_multiplication", "11*11", tuple("1001")),    # 3 * 3 = 9
    ("binary_multiplication", "110*101", tuple("111100")),                # 3 * 5 = 15
]


@pytest.mark.parametrize("name,prompt,answer", HAND)
def test_hand_written(name, prompt, answer):
    task = get_task(name)
    tokens = task.parse_prompt(prompt)
    assert task.solve(tokens) == answer
    assert REFERENCE[name](tokens) == answer


def test_parse_prompt():
    task = get_task("modular_arithmetic")
    assert task.parse_prompt("1+2-3") == ("1", "+", "2", "-", "3")
    assert task.parse_prompt(" 1 + 2 ") == ("1", "+", "2")
    assert get_task("parity").parse_prompt("0110\n") == ("0", "1", "1", "0")


@pytest.mark.parametrize("name,prompt", [
    ("parity", "0120"), ("parity", ""), ("cycle_navigation", "013"),
    ("modular_arithmetic", "1+"), ("modular_arithmetic", "1*2"), ("modular_arithmetic", "5"),
    ("reverse", "ab"), ("associative_recall", "abc1?abd"), ("associative_recall", "abc1abc2?abc"),
    ("associative_recall", "abz1?abz"), ("binary_addition", "10+1"), ("binary_addition", "101"),
    ("binary_addition", "1+1+1"), ("binary_multiplication", "1+1"),
])
def test_solve_rejects_bad_prompts(name, prompt):
    with pytest.raises(InvalidPromptError, match=name):
        get_task(name).solve(get_task(name).parse_prompt(prompt))


# --------------------------------------------------------------------------- generators vs brute force

@pytest.mark.parametrize("name", list(REFERENCE))
def test_generated_answers_and_sizes(name):
    task = get_task(name)
    rng = np.random.default_rng(7)
    lengths = [1, 2, 3, 40, 41, 64] + rng.integers(1, 130, size=30).tolist()
    prompt_size, answer_size = SIZES[name]
    symbols = set(task.symbols)
    for n in lengths:
        ex = task.generate(n, rng)
        assert isinstance(ex.prompt, tuple) and isinstance(ex.answer, tuple)
        assert len(ex.prompt) == prompt_size(n) == task.prompt_size(n)
        assert len(ex.answer) == answer_size(n) == task.answer_size(n)
        assert set(ex.prompt) <= symbols and set(ex.answer) <= symbols
        assert ex.answer == REFERENCE[name](ex.prompt)
        assert task.solve(ex.prompt) == ex.answer


def test_associative_recall_keys_distinct_and_bounded():
    task = get_task("associative_recall")
    rng = np.random.default_rng(0)
    for n in (1, 5, 100, 512):
        p = task.generate(n, rng).prompt
        keys = ["".join(p[4 * i: 4 * i + 3]) for i in range(n)]
        assert len(set(keys)) == n
        assert all(set(k) <= set("abcdefgh") for k in keys)
        assert p[4 * n] == "?" and "".join(p[-3:]) in keys
    with pytest.raises(LengthSpecError, match="no examples of length 513; its lengths are 1 to 512"):
        task.generate(513, rng)


def test_generated_data_is_varied():
    # both answers occur and operands are not constant (guards against degenerate generators)
    rng = np.random.default_rng(1)
    answers = {get_task("parity").generate(10, rng).answer for _ in range(50)}
    assert answers == {("0",), ("1",)}
    positions = {get_task("cycle_navigation").generate(10, rng).answer for _ in range(200)}
    assert len(positions) == 5


@pytest.mark.parametrize("length", [0, -1])
def test_bad_lengths(length):
    with pytest.raises(LengthSpecError, match=f"'parity' has no examples of length {length};"):
        get_task("parity").generate(length, np.random.default_rng(0))
    with pytest.raises(LengthSpecError):
        eval_examples(get_task("parity"), length, 2)


def test_generation_is_fast():
    rng = np.random.default_rng(0)
    for name in ("duplicate", "binary_multiplication", "associative_recall"):
        start = time.process_time()  # CPU time: other jobs on the machine do not count
        examples = sample_examples(get_task(name), 500, 128, rng)
        encode_batch(examples, get_task(name).vocab)
        assert time.process_time() - start < 1.0, name


# --------------------------------------------------------------------------- vocabulary

def test_vocab_round_trip_and_ids():
    v = Vocab(["0", "1", "+"])
    assert v.tokens == [PAD, BOS, SEP, EOS, "0", "1", "+"]
    assert (v.pad_id, v.bos_id, v.sep_id, v.eos_id) == (0, 1, 2, 3)
    assert len(v) == 7
    assert v.encode(["1", "+", "0"]) == [5, 6, 4]
    assert v.decode([5, 6, 4, 3]) == ["1", "+", "0", EOS]
    stored = v.to_list()
    assert Vocab.from_list(stored).tokens == v.tokens
    assert Vocab.from_list(stored) == v
    for task in TASKS.values():
        assert task.vocab.tokens == [PAD, BOS, SEP, EOS] + list(task.symbols)


def test_vocab_unknown_token():
    v = Vocab(["0", "1"])
    with pytest.raises(UnknownTokenError) as info:
        v.encode(["0", "7"])
    assert isinstance(info.value, ValueError)
    msg = str(info.value)
    assert "'7'" in msg and "<pad>" in msg and "0 1" in msg and "\n" not in msg


def test_vocab_rejects_bad_symbols():
    for bad in (["0", "0"], ["0", SEP], ["0", ""]):
        with pytest.raises(ValueError):
            Vocab(bad)
    with pytest.raises(ValueError):
        Vocab.from_list(["0", "1"])
    with pytest.raises(ValueError):
        Vocab(["0"]).decode([9])


# --------------------------------------------------------------------------- batching

def test_encode_batch_layout():
    v = get_task("parity").vocab  # <pad>0 <bos>1 <sep>2 <eos>3 "0"4 "1"5
    examples = [Example(("1", "1", "0"), ("0",)), Example(["1"], ["1"])]
    batch = encode_batch(examples, v)
    X = -100
    assert batch.inputs.dtype == torch.long and batch.targets.dtype == torch.long
    assert batch.inputs.tolist() == [
        [1, 5, 5, 4, 2, 4],
        [1, 5, 2, 5, 0, 0],
    ]
    assert batch.targets.tolist() == [
        [X, X, X, X, 4, 3],
        [X, X, 5, 3, X, X],
    ]
    assert batch.prompt_lengths.tolist() == [5, 3]
    assert batch.answer_lengths.tolist() == [2, 2]
    assert batch.examples[1] == Example(("1",), ("1",))


def test_encode_batch_multi_token_answer():
    v = get_task("copy").vocab
    batch = encode_batch([Example(("0", "1"), ("0", "1")), Example(("1",), ("1",))], v)
    X = -100
    assert batch.inputs.tolist() == [[1, 4, 5, 2, 4, 5], [1, 5, 2, 5, 0, 0]]
    assert batch.targets.tolist() == [[X, X, X, 4, 5, 3], [X, X, 5, 3, X, X]]
    assert batch.prompt_lengths.tolist() == [4, 3]
    assert batch.answer_lengths.tolist() == [3, 2]


@pytest.mark.parametrize("name", list(TASKS))
def test_encode_batch_invariants(name):
    task = get_task(name)
    rng = np.random.default_rng(3)
    examples = [task.generate(max(int(n), task.min_length), rng)
                for n in rng.integers(1, 20, size=8)]
    b = encode_batch(examples, task.vocab)
    for i, ex in enumerate(examples):
        P, A = int(b.prompt_lengths[i]), int(b.answer_lengths[i])
        assert (P, A) == (len(ex.prompt) + 2, len(ex.answer) + 1)
        row_in, row_t = b.inputs[i], b.targets[i]
        assert task.vocab.decode(row_in[: P + A - 1].tolist()) == [BOS, *ex.prompt, SEP, *ex.answer]
        assert (row_in[P + A - 1:] == task.vocab.pad_id).all()
        mask = row_t != -100
        assert mask.nonzero().flatten().tolist() == list(range(P - 1, P - 1 + A))
        assert task.vocab.decode(row_t[mask].tolist()) == [*ex.answer, EOS]


def test_encode_batch_unknown_token():
    with pytest.raises(UnknownTokenError):
        encode_batch([Example(("2",), ("0",))], get_task("parity").vocab)


# --------------------------------------------------------------------------- seeds

def test_eval_examples_deterministic_and_disjoint_from_training():
    task = get_task("binary_addition")
    a = eval_examples(task, 30, 16)
    assert a == eval_examples(task, 30, 16)
    assert a[:8] == eval_examples(task, 30, 8)           # prefix-stable in `samples`
    assert a != eval_examples(task, 30, 16, eval_seed=99)
    assert eval_examples(task, 31, 4) != eval_examples(task, 31, 4, eval_seed=1)
    # same seed number for train and eval still gives different streams
    for seed in (0, 1, 1234):
        train = sample_examples(task, 30, 16, train_generator(seed))
        assert train != eval_examples(task, 30, 16, eval_seed=seed)
        assert not set(train) & set(a)
    # training streams are reproducible and differ by seed
    assert sample_examples(task, 30, 4, train_generator(5)) == sample_examples(
        task, 30, 4, train_generator(5))
    assert sample_examples(task, 30, 4, train_generator(5)) != sample_examples(
        task, 30, 4, train_generator(6))
    # different tasks with the same symbols get different eval data
    copy_prompts = [e.prompt for e in eval_examples(get_task("copy"), 20, 4)]
    rev_prompts = [e.prompt for e in eval_examples(get_task("reverse"), 20, 4)]
    assert copy_prompts != rev_prompts


def test_defaults():
    assert DEFAULT_TRAIN_LENGTHS == (1, 40)
    assert DEFAULT_OOD_LENGTHS == (41, 50, 64, 80, 100, 128, 160, 200, 256, 320, 400, 500)


# --------------------------------------------------------------------------- length specs

@pytest.mark.parametrize("spec,expected", [
    ("5", [5]),
    ("1-3", [1, 2, 3]),
    ("1-40", list(range(1, 41))),
    ("1-40,41-500:10", list(range(1, 41)) + list(range(41, 501, 10))),
    ("41-500:10,500", list(range(41, 501, 10)) + [500]),
    ("10,2,2,1-3", [1, 2, 3, 10]),
    (" 1 - 4 : 2 , 7 ", [1, 3, 7]),
    ("7-7", [7]),
])
def test_parse_lengths_good(spec, expected):
    assert parse_lengths(spec) == expected


@pytest.mark.parametrize("spec", [
    "", "  ", ",", "1,", "1,,2", "a", "1-b", "0", "0-5", "5-3", "1-5:0", "-3", "1.5",
    "1-5:", "5:2", "1-2-3", "+4", "1-10000000", "\u0663",
])
def test_parse_lengths_bad(spec):
    with pytest.raises(LengthSpecError) as info:
        parse_lengths(spec)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and str(info.value)
