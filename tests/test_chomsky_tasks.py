"""The 15 tasks of Delétang et al. 2023 ("Neural Networks and the Chomsky Hierarchy").

Reference solutions here are written independently of pntm.tasks (plain Python, Python's own
``eval`` for expressions, brute force for equations). Hand-written cases include the examples
of the paper's code docstrings.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from pntm import tasks
from pntm.tasks import (
    BOS, CHOMSKY_TASKS, CONTEXT_FREE, CONTEXT_SENSITIVE, EOS, PAPER_NAMES, REGULAR, SEP, TASKS,
    InvalidPromptError, LengthSpecError, encode_batch, eval_examples, get_task, sample_examples,
    train_generator,
)

# --------------------------------------------------------------------------- registry and names

PAPER_LEVELS = {  # the paper's Table 2
    REGULAR: ["even_pairs", "modular_arithmetic_simple", "parity_check", "cycle_navigation"],
    CONTEXT_FREE: ["stack_manipulation", "reverse_string", "modular_arithmetic_brackets",
                   "solve_equation"],
    CONTEXT_SENSITIVE: ["duplicate_string", "missing_duplicate_string", "odds_first",
                        "binary_addition_dm", "binary_multiplication_dm", "compute_sqrt",
                        "bucket_sort"],
}


def test_the_suite_is_registered_with_its_levels():
    assert list(CHOMSKY_TASKS) == [name for names in PAPER_LEVELS.values() for name in names]
    for level, names in PAPER_LEVELS.items():
        for name in names:
            assert get_task(name).level == level, name
    # the suite's tasks follow the project's own in the registry, in the paper's order
    new = [name for name in CHOMSKY_TASKS if name != "cycle_navigation"]
    assert list(TASKS)[-len(new):] == new
    assert len(TASKS) == 9 + 14


def test_names_and_clashes():
    # the paper's name is ours except where one of the project's tasks already had it
    assert set(PAPER_NAMES) == set(CHOMSKY_TASKS)
    renamed = {ours: theirs for ours, theirs in PAPER_NAMES.items() if ours != theirs}
    assert renamed == {"modular_arithmetic_simple": "modular_arithmetic",
                       "binary_addition_dm": "binary_addition",
                       "binary_multiplication_dm": "binary_multiplication"}
    for ours, theirs in renamed.items():  # the clashing names stay the project's own tasks
        assert get_task(theirs).category != "chomsky"
        assert type(get_task(theirs)) is not type(get_task(ours))
    # one task, one entry: the paper's cycle_navigation is the project's
    assert get_task("cycle_navigation").category == "state_tracking"
    assert get_task("cycle_navigation").level == REGULAR


# --------------------------------------------------------------------------- references


def ref_even_pairs(p):
    return (str(sum(a != b for a, b in zip(p, p[1:])) % 2),)


def ref_expression(p):
    return (str(eval("".join(p)) % 5),)  # Python's precedence and unary minus are the usual ones


def ref_solve_equation(p):
    text = "".join(p)
    lhs, value = text.split("=")
    solutions = [d for d in range(5) if eval(lhs.replace("x", str(d))) % 5 == int(value)]
    assert len(solutions) == 1, text
    return (str(solutions[0]),)


def ref_stack(p):
    stack = []
    for t in p:
        if t in ("0", "1"):
            stack.append(t)
        elif t == "POP":
            stack = stack[:-1]
        else:
            stack.append({"PUSH0": "0", "PUSH1": "1"}[t])
    return tuple(stack[::-1])


def ref_missing(p):
    s = "".join(p).rstrip("#")
    half = len(s) // 2
    a, b = s[:half], s[half:]
    return (b[a.index("_")] if "_" in a else a[b.index("_")],)


def lsb(bits):
    return int("".join(bits)[::-1], 2)


def ref_binary(op):
    def ref(p):
        k = p.index(op)
        a, b = lsb(p[:k]), lsb(p[k + 1:])
        return tuple(bin(a + b if op == "+" else a * b)[2:][::-1])
    return ref


def ref_sqrt(p):
    return tuple(bin(math.isqrt(int("".join(p), 2)))[2:].zfill(math.ceil(len(p) / 2)))


REFERENCE = {
    "even_pairs": ref_even_pairs,
    "modular_arithmetic_simple": ref_expression,
    "parity_check": lambda p: (str(p.count("1") % 2),),
    "cycle_navigation": lambda p: (str(sum({"0": 0, "1": 1, "2": -1}[t] for t in p) % 5),),
    "stack_manipulation": ref_stack,
    "reverse_string": lambda p: tuple(p[::-1]),
    "modular_arithmetic_brackets": ref_expression,
    "solve_equation": ref_solve_equation,
    "duplicate_string": lambda p: tuple(p) * 2,
    "missing_duplicate_string": ref_missing,
    "odds_first": lambda p: tuple(p[0::2]) + tuple(p[1::2]),
    "binary_addition_dm": ref_binary("+"),
    "binary_multiplication_dm": ref_binary("*"),
    "compute_sqrt": ref_sqrt,
    "bucket_sort": lambda p: tuple(sorted(p)),
}

# prompt tokens, and (fewest, most) answer tokens, as functions of the length n
SIZES = {
    "even_pairs": (lambda n: n, lambda n: (1, 1)),
    "modular_arithmetic_simple": (lambda n: n - (n % 2 == 0), lambda n: (1, 1)),
    "parity_check": (lambda n: n, lambda n: (1, 1)),
    "cycle_navigation": (lambda n: n, lambda n: (1, 1)),
    "stack_manipulation": (lambda n: n, lambda n: (0, n)),
    "reverse_string": (lambda n: n, lambda n: (n, n)),
    "modular_arithmetic_brackets": (lambda n: n, lambda n: (1, 1)),
    "solve_equation": (lambda n: n, lambda n: (1, 1)),
    "duplicate_string": (lambda n: n, lambda n: (2 * n, 2 * n)),
    "missing_duplicate_string": (lambda n: n, lambda n: (1, 1)),
    "odds_first": (lambda n: n, lambda n: (n, n)),
    "binary_addition_dm": (lambda n: n, lambda n: (2, n - 1)),
    "binary_multiplication_dm": (lambda n: n, lambda n: (1, n - 1)),
    "compute_sqrt": (lambda n: n, lambda n: ((n + 1) // 2, (n + 1) // 2)),
    "bucket_sort": (lambda n: n, lambda n: (n, n)),
}

MIN_LENGTH = {"solve_equation": 3, "missing_duplicate_string": 2, "binary_addition_dm": 3,
              "binary_multiplication_dm": 3}


def test_every_suite_task_has_a_reference():
    assert set(REFERENCE) == set(SIZES) == set(CHOMSKY_TASKS)


# --------------------------------------------------------------------------- hand-written cases

HAND = [
    ("even_pairs", "001110", "0"),               # the paper's examples
    ("even_pairs", "0101001", "1"),
    ("even_pairs", "1", "0"),                    # no pair at all
    ("even_pairs", "10", "1"),
    ("modular_arithmetic_simple", "1+2*3", "2"),
    ("modular_arithmetic_simple", "1-1-1", "4"),
    ("modular_arithmetic_simple", "0*1+4*3-2", "0"),
    ("modular_arithmetic_simple", "2-3*4", "0"),   # 2 - 12 = -10
    ("modular_arithmetic_simple", "3*3*3", "2"),
    ("modular_arithmetic_simple", "4", "4"),
    ("parity_check", "1010100", "1"),
    ("parity_check", "01111", "0"),
    ("cycle_navigation", "12022", "3"),          # the paper's 1 -1 0 -1 -1 -> -2 = class 3
    ("cycle_navigation", "1112", "2"),            # the paper's 1 1 1 -1 -> 2
    ("stack_manipulation", "0110 PUSH1 POP POP", "110"),   # the paper's examples
    ("stack_manipulation", "110 POP POP POP", ""),          # an empty final stack
    ("stack_manipulation", "1", "1"),
    ("stack_manipulation", "0 POP POP PUSH1", "1"),         # POP on an empty stack: nothing
    ("stack_manipulation", "1 PUSH0 PUSH1", "101"),
    ("reverse_string", "011010", "010110"),
    ("modular_arithmetic_brackets", "((1-2)*(-3))", "3"),
    ("modular_arithmetic_brackets", "(-4)", "1"),
    ("modular_arithmetic_brackets", "-2", "3"),
    ("modular_arithmetic_brackets", "(3)", "3"),
    ("modular_arithmetic_brackets", "(1--2)", "3"),
    ("modular_arithmetic_brackets", "((2*3)+(-4))", "2"),
    ("solve_equation", "(x-(-3))=0", "2"),
    ("solve_equation", "-x=1", "4"),
    ("solve_equation", "x=3", "3"),
    ("solve_equation", "((1+x)-(-2))=0", "2"),
    ("solve_equation", "(4-(x+(-1)))=1", "4"),
    ("duplicate_string", "101", "101101"),
    ("missing_duplicate_string", "01100_10", "1"),   # the paper's examples
    ("missing_duplicate_string", "1011_1#", "0"),
    ("missing_duplicate_string", "_1", "1"),
    ("missing_duplicate_string", "0_#", "0"),
    ("odds_first", "00110101", "01000111"),          # the paper's: 0100 0111
    ("odds_first", "110", "101"),                    # the paper's: 10 1
    ("odds_first", "1", "1"),
    ("binary_addition_dm", "001+01101", "01011"),    # 4 + 22 = 26 (the paper's)
    ("binary_addition_dm", "1001+000001", "100101"),  # 9 + 32 = 41 (the paper's)
    ("binary_addition_dm", "1+1", "01"),
    ("binary_multiplication_dm", "001*01101", "0001101"),      # 4 * 22 = 88 (the paper's)
    ("binary_multiplication_dm", "1001*000001", "000001001"),  # 9 * 32 = 288 (the paper's)
    ("binary_multiplication_dm", "1*1", "1"),
    ("compute_sqrt", "100101", "110"),   # 37 -> 6 (the paper's)
    ("compute_sqrt", "111", "10"),       # 7 -> 2 (the paper's)
    ("compute_sqrt", "1", "1"),
    ("compute_sqrt", "0001", "01"),      # leading zeros kept: ceil(4/2) = 2 bits
    ("compute_sqrt", "11111111", "1111"),
    ("bucket_sort", "10204112", "00111224"),
]


@pytest.mark.parametrize("name,prompt,answer", HAND)
def test_hand_written(name, prompt, answer):
    task = get_task(name)
    tokens = task.parse_prompt(prompt)
    expected = tuple(answer)  # "" is an empty answer (stack_manipulation's empty stack)
    assert task.solve(tokens) == expected
    assert REFERENCE[name](tokens) == expected


def test_stack_manipulation_reads_prompts_several_ways():
    task = get_task("stack_manipulation")
    want = ("0", "1", "1", "PUSH1", "POP")
    for text in ("011 PUSH1 POP", "0 1 1 push1 pop", "011push1pop", " 011 Push1\tPOP\n"):
        assert task.parse_prompt(text) == want


@pytest.mark.parametrize("name,prompt", [
    ("even_pairs", "012"), ("modular_arithmetic_simple", "1+"), ("modular_arithmetic_simple", "5"),
    ("modular_arithmetic_simple", "1/2"), ("stack_manipulation", "POP 1"),
    ("stack_manipulation", "1 POP 1"), ("stack_manipulation", "1 PUSH2"),
    ("modular_arithmetic_brackets", "(1+2"), ("modular_arithmetic_brackets", "1+2)"),
    ("modular_arithmetic_brackets", "1+"), ("modular_arithmetic_brackets", "(1x)"),
    ("solve_equation", "1+2=3"), ("solve_equation", "x+x=2"), ("solve_equation", "x=7"),
    ("solve_equation", "x*2=3"), ("solve_equation", "x"), ("missing_duplicate_string", "0101"),
    ("missing_duplicate_string", "0_1_"), ("missing_duplicate_string", "01_10"),
    ("missing_duplicate_string", "0_10"), ("odds_first", "012"),
    ("binary_addition_dm", "101"), ("binary_addition_dm", "1+"), ("binary_addition_dm", "1*1"),
    ("binary_multiplication_dm", "1+1"), ("compute_sqrt", "102"), ("bucket_sort", "15"),
])
def test_solve_rejects_bad_prompts(name, prompt):
    task = get_task(name)
    with pytest.raises(InvalidPromptError, match=name):
        task.solve(task.parse_prompt(prompt))


# --------------------------------------------------------------------------- generators

@pytest.mark.parametrize("name", CHOMSKY_TASKS)
def test_generated_examples(name):
    task = get_task(name)
    assert task.min_length == MIN_LENGTH.get(name, 1) and task.max_length is None
    rng = np.random.default_rng(11)
    low = task.min_length
    lengths = list(range(low, low + 8)) + [40, 41, 64] + rng.integers(low, 100, size=12).tolist()
    prompt_size, answer_sizes = SIZES[name]
    symbols = set(task.symbols)
    for n in lengths:
        for _ in range(3):
            ex = task.generate(n, rng)
            assert len(ex.prompt) == prompt_size(n) == task.prompt_size(n), (n, ex)
            fewest, most = answer_sizes(n)
            assert fewest <= len(ex.answer) <= most == task.answer_size(n), (n, ex)
            assert task.variable_answer == (fewest != most) or n == low
            assert set(ex.prompt) <= symbols and set(ex.answer) <= symbols
            assert ex.answer == REFERENCE[name](ex.prompt), ex
            assert task.solve(ex.prompt) == ex.answer


@pytest.mark.parametrize("name", CHOMSKY_TASKS)
def test_lengths_the_task_cannot_produce(name):
    task = get_task(name)
    rng = np.random.default_rng(0)
    for n in range(-1, task.min_length):
        with pytest.raises(LengthSpecError) as info:
            task.generate(n, rng)
        message = str(info.value)
        assert f"'{name}' has no examples of length {n};" in message and "\n" not in message
        assert f"its lengths are {task.min_length} and up" in message
        with pytest.raises(LengthSpecError):
            eval_examples(task, n, 4)
    task.generate(task.min_length, rng)


def test_length_errors_name_the_bad_lengths():
    task = get_task("solve_equation")
    with pytest.raises(LengthSpecError, match=r"^--lengths: task 'solve_equation' has no "
                       r"examples of lengths 1, 2; its lengths are 3 and up \(.*x=d\)$"):
        task.check_lengths([1, 2, 3, 40], "--lengths")
    assert task.check_lengths([3, 500]) == [3, 500]
    with pytest.raises(LengthSpecError, match="lengths 1, 2;"):
        task.check_range(1, 40)
    task.check_range(3, 10**9)
    with pytest.raises(LengthSpecError, match=r"lengths 513, 514, 515, 516, 517, \.\.\.; its "
                                              r"lengths are 1 to 512"):
        get_task("associative_recall").check_range(1, 10**12)


def test_modular_arithmetic_simple_length_counts_tokens():
    task = get_task("modular_arithmetic_simple")
    rng = np.random.default_rng(0)
    for n, size in [(1, 1), (2, 1), (3, 3), (4, 3), (40, 39), (41, 41)]:
        prompt = task.generate(n, rng).prompt
        assert len(prompt) == size
        assert all(t in "01234" for t in prompt[0::2]) and all(t in "+-*" for t in prompt[1::2])
    ops = {t for _ in range(20) for t in task.generate(21, rng).prompt[1::2]}
    assert ops == {"+", "-", "*"}


def test_stack_manipulation_layout():
    task = get_task("stack_manipulation")
    rng = np.random.default_rng(0)
    assert len(task.generate(1, rng).prompt) == 1 and task.generate(1, rng).prompt[0] in "01"
    sizes, empty = set(), 0
    for _ in range(300):
        p = task.generate(6, rng).prompt
        stack = [t for t in p if t in ("0", "1")]
        assert 1 <= len(stack) <= 5 and tuple(stack) == p[: len(stack)]  # bits, then actions
        sizes.add(len(stack))
        empty += task.solve(p) == ()
    assert sizes == {1, 2, 3, 4, 5} and empty > 0


def test_bracket_expressions_follow_the_grammar():
    task = get_task("modular_arithmetic_brackets")
    rng = np.random.default_rng(0)
    shapes = {1: {"d"}, 2: {"-d"}, 3: {"(d)"}, 4: {"(-d)"}, 5: {"(d+d)", "(d-d)", "(d*d)"}}
    for n, want in shapes.items():
        got = {"".join("d" if t.isdigit() else t for t in task.generate(n, rng).prompt)
               for _ in range(60)}
        assert got == want, n
    answers = set()
    for _ in range(100):
        p = task.generate(30, rng).prompt
        depth = 0
        for t in p:
            depth += (t == "(") - (t == ")")
            assert depth >= 0
        assert depth == 0
        answers.add(task.solve(p))
    assert len(answers) == 5


def test_solve_equation_layout():
    task = get_task("solve_equation")
    rng = np.random.default_rng(0)
    assert {task.generate(3, rng).prompt[0] for _ in range(10)} == {"x"}
    positions, answers = set(), set()
    for _ in range(200):
        p = task.generate(12, rng).prompt
        assert p.count("x") == 1 and p[-2] == "=" and p[-1] in "01234" and "*" not in p
        positions.add(p.index("x"))
        answers.add(task.solve(p))
    assert len(positions) > 3 and len(answers) == 5


def test_missing_duplicate_string_layout():
    task = get_task("missing_duplicate_string")
    rng = np.random.default_rng(0)
    for n in (2, 3, 10, 11):
        for _ in range(20):
            p = task.generate(n, rng).prompt
            assert p.count("_") == 1 and p.count("#") == n % 2
            assert p[-1] == "#" if n % 2 else "#" not in p


def test_paper_binary_operations_layout():
    rng = np.random.default_rng(0)
    for name, op in (("binary_addition_dm", "+"), ("binary_multiplication_dm", "*")):
        task = get_task(name)
        sizes = set()
        for _ in range(100):
            ex = task.generate(10, rng)
            k = ex.prompt.index(op)
            a, b = ex.prompt[:k], ex.prompt[k + 1:]
            assert len(a) + len(b) == 9 and "1" in a and "1" in b  # never 0
            assert ex.answer[-1] == "1"  # no leading zeros (least significant bit first)
            sizes.add(len(a))
        assert sizes == set(range(1, 9))
    # the project's own binary tasks are another layout (equal sizes, fixed-width answer)
    assert get_task("binary_addition").answer_size(4) == 5
    assert len(get_task("binary_addition").generate(4, rng).prompt) == 9


def test_compute_sqrt_is_never_zero_and_keeps_leading_zeros():
    task = get_task("compute_sqrt")
    rng = np.random.default_rng(0)
    assert all(task.generate(1, rng).prompt == ("1",) for _ in range(5))  # 1 .. 2**1 - 1
    prompts = [task.generate(4, rng).prompt for _ in range(200)]
    assert ("0", "0", "0", "0") not in prompts and ("0", "0", "0", "1") in prompts


def test_answers_vary():
    rng = np.random.default_rng(2)
    for name, n, count in [("even_pairs", 8, 2), ("modular_arithmetic_simple", 9, 5),
                           ("missing_duplicate_string", 8, 2), ("cycle_navigation", 8, 5)]:
        answers = {get_task(name).generate(n, rng).answer for _ in range(200)}
        assert len(answers) == count, name


# --------------------------------------------------------------------------- same definitions

@pytest.mark.parametrize("paper,ours", [("parity_check", "parity"),
                                        ("reverse_string", "reverse"),
                                        ("duplicate_string", "duplicate")])
def test_paper_names_of_our_definitions(paper, ours):
    a, b = get_task(paper), get_task(ours)
    assert a.symbols == b.symbols and isinstance(a, type(b))
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    for n in (1, 7, 40):
        assert a.generate(n, rng_a) == b.generate(n, rng_b)
    # same generator, own name: own evaluation sets, same training stream
    assert eval_examples(a, 20, 4) != eval_examples(b, 20, 4)
    assert sample_examples(a, 20, 4, train_generator(0)) == sample_examples(
        b, 20, 4, train_generator(0))


def test_cycle_navigation_is_the_papers():
    """The paper's code draws actions a in {0, 1, 2} and moves by a - 1 on a 5-cycle from 0;
    its docstring names the actions 0 (stay), 1 (right), -1 (left). Ours writes them 0, 1, 2
    (-1 as 2): the same task up to the names of the input symbols."""
    task = get_task("cycle_navigation")
    ours_for_paper_action = {0: "2", 1: "0", 2: "1"}  # paper's index -> our token
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 40, 200):
        actions = rng.integers(0, 3, size=n)  # the paper's sampling
        paper_answer = int(np.sum(actions - 1)) % 5
        prompt = tuple(ours_for_paper_action[int(a)] for a in actions)
        assert task.solve(prompt) == (str(paper_answer),)
    assert task.symbols == ["0", "1", "2", "3", "4"] and task.answer_size(7) == 1
    counts = {t: 0 for t in "012"}
    for ex in sample_examples(task, 50, 40, rng):  # uniform actions, length = actions
        assert len(ex.prompt) == 50
        for t in ex.prompt:
            counts[t] += 1
    assert all(600 < c < 740 for c in counts.values()), counts


# --------------------------------------------------------------------------- batching and speed

@pytest.mark.parametrize("name", CHOMSKY_TASKS)
def test_encode_batch_round_trip(name):
    task = get_task(name)
    rng = np.random.default_rng(4)
    examples = [task.generate(n, rng) for n in (task.min_length, 3 + task.min_length, 17, 9)]
    if name == "stack_manipulation":
        examples.append(tasks.Example(("1", "POP"), ()))  # an empty answer
    b = encode_batch(examples, task.vocab)
    for i, ex in enumerate(examples):
        P, A = int(b.prompt_lengths[i]), int(b.answer_lengths[i])
        assert (P, A) == (len(ex.prompt) + 2, len(ex.answer) + 1)
        assert task.vocab.decode(b.inputs[i, : P + A - 1].tolist()) == [
            BOS, *ex.prompt, SEP, *ex.answer]
        assert (b.inputs[i, P + A - 1:] == task.vocab.pad_id).all()
        mask = b.targets[i] != -100
        assert mask.nonzero().flatten().tolist() == list(range(P - 1, P - 1 + A))
        assert task.vocab.decode(b.targets[i][mask].tolist()) == [*ex.answer, EOS]


def test_long_examples_are_fast_and_need_no_recursion():
    for name in ("modular_arithmetic_brackets", "solve_equation", "stack_manipulation",
                 "binary_multiplication_dm", "compute_sqrt"):
        task = get_task(name)
        start = time.process_time()  # CPU time: other jobs on the machine do not count
        examples = eval_examples(task, 500, 128)
        encode_batch(examples, task.vocab)
        assert time.process_time() - start < 2.0, name
    task = get_task("modular_arithmetic_brackets")
    ex = task.generate(20000, np.random.default_rng(0))  # deeper than Python's recursion limit
    assert len(ex.prompt) == 20000 and task.solve(ex.prompt) == ex.answer
