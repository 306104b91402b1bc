"""The protocol's splits (pntm.splits) and the answer-token accuracy (pntm.evaluate)."""

import hashlib

import pytest
import torch

from pntm import splits, tasks
from pntm.evaluate import answer_token_score, score_examples

# sha256 of the 128 evaluation examples (seed 1234) of these (task, length) pairs, computed with
# tasks.eval_examples before the splits existed: the test split must keep producing them, so
# that every committed eval.json stays a test-split result.
PINNED = {
    ("parity", 41): "96bc30a9e0dc91f4094e50ab1fcb7fd8494b30b8111b29e7da437c3f31bc135a",
    ("binary_addition", 50): "b0fef68b8f00900818acd2402b9c779459addb2ad4fb12f399f2e35cc35d5bce",
    ("associative_recall", 64):
        "733bbd3be8819b6e7a42ac237f75d489848795757de581208cbdd5e681b2f3c0",
    ("modular_arithmetic", 500):
        "bc0efd94b31d254ef22821d92e906913b1166a1fc0fcce503ba7e6bd2a82e844",
}


def digest(examples):
    text = "\n".join(" ".join(e.prompt) + "|" + " ".join(e.answer) for e in examples)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("task, length", sorted(PINNED))
def test_the_test_split_is_todays_evaluation_set(task, length):
    examples = splits.split_examples(tasks.get_task(task), "test", length, 128, 1234)
    assert digest(examples) == PINNED[task, length]


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_validation_is_deterministic_and_shares_no_example_with_test_or_training(name):
    task = tasks.get_task(name)
    for length in (41, 50, 64):  # the lengths validation and test both evaluate
        val = splits.split_examples(task, "validation", length, 32, 1234)
        assert val == splits.validation_examples(task, length, 32, 1234)  # the same every time
        test = splits.split_examples(task, "test", length, 32, 1234)
        train = tasks.sample_examples(task, length, 32, tasks.train_generator(0))
        prompts = {e.prompt for e in val}
        assert len(prompts) == 32  # no repeats within the set either
        assert not prompts & {e.prompt for e in test}
        assert not prompts & {e.prompt for e in train}
    # another eval seed, another set; a set does not depend on the other lengths asked for
    assert splits.validation_examples(task, 41, 8, 1) != splits.validation_examples(task, 41, 8)
    assert splits.validation_examples(task, 41, 8) == \
        splits.split_examples(task, "validation", 41, 32, 1234)[:8]


def test_split_names_and_files():
    assert splits.split_file("test") == "eval.json"
    assert splits.split_file("validation") == "eval-validation.json"
    with pytest.raises(splits.SplitError, match="unknown split 'dev'"):
        splits.check_split("dev")
    with pytest.raises(splits.SplitError, match="training stream"):
        splits.check_split("train")


def test_validation_lengths_default_and_cap():
    cfg = {"task": "parity", "eval": {"lengths": "1-3,41"}, "data": None}
    assert splits.default_lengths(cfg, "validation") == list(range(41, 65))  # an old config
    assert splits.default_lengths(cfg, "test") == [1, 2, 3, 41]
    cfg["eval"]["validation_lengths"] = "5-6"
    assert splits.default_lengths(cfg, "validation") == [5, 6]


# --------------------------------------------------------------------------- answer tokens

EOS = 3
ANSWER = [5, 6, 7]


@pytest.mark.parametrize("decoded, expected", [
    ([5, 6, 7, EOS], (3, 3)),     # right, stops where it should
    ([5, 9, 7, EOS], (2, 3)),     # one wrong token
    ([5, EOS, 7, EOS], (1, 3)),   # too short: stops after one token, two missing
    ([EOS, 6, 7, EOS], (0, 3)),   # EOS first: nothing answered
    ([5, 6, EOS, 7], (2, 3)),     # what follows the first EOS does not count
    ([5, 6, 7, 7], (3, 4)),       # too long: no EOS, one token past the end counts wrong
    ([6, 7, 7, 7], (1, 4)),       # too long and shifted
])
def test_answer_token_score_by_hand(decoded, expected):
    assert answer_token_score(decoded, ANSWER, EOS) == expected


class Scripted(torch.nn.Module):
    """Decodes ``script`` (token ids) after a prompt of ``prompt_tokens`` tokens, whatever it
    is fed: a model whose answers are known in advance."""

    def __init__(self, vocab_size, script, prompt_tokens):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.vocab_size, self.script, self.offset = vocab_size, script, prompt_tokens - 1

    def init_state(self, batch, length, device):
        return 0

    def step(self, token, t):
        j = t - self.offset
        logits = torch.zeros(token.shape[0], self.vocab_size)
        if 0 <= j < len(self.script):
            logits[:, self.script[j]] = 1.0
        return logits, t + 1


def test_score_examples_pools_answer_tokens_per_length():
    vocab = tasks.Vocab(["a", "b", "c"])
    examples = [tasks.Example(("a",), ("a", "b", "c"))] * 2
    a, b = vocab.encode(["a", "b"])
    # BOS a SEP: 3 tokens fed before the answer; decodes "a b EOS EOS": stops one token early
    model = Scripted(len(vocab), [a, b, vocab.eos_id, vocab.eos_id], prompt_tokens=3)
    scores = score_examples(model, vocab, examples, batch_size=1, device="cpu")
    assert scores["sequence_accuracy"] == 0.0
    assert scores["token_accuracy"] == pytest.approx(3 / 4)          # EOS position counted
    assert scores["answer_token_accuracy"] == pytest.approx(4 / 6)   # 2 of 3, twice
