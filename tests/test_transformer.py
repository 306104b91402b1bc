"""Transformer baseline: the two modes agree beyond training lengths, attention is causal, and
the positional encodings are what the docstring says, checked against values worked by hand."""

import math

import pytest
import torch

from helpers import sample_tokens
from pntm.errors import ConfigError
from pntm.models import build_model
from pntm.models.transformer import (
    Transformer,
    apply_rotary,
    inverse_frequencies,
    rotary_cos_sin,
    sinusoidal_table,
)

torch.set_num_threads(1)  # tiny models; the machine is shared

SEP = 2
VOCAB = 9
MODES = ["sinusoidal", "rotary", "none", "randomized"]


def make_model(**overrides):
    torch.manual_seed(0)
    config = {"d_model": 32, "layers": 2, "heads": 4, "d_ff": 64}
    config.update(overrides)
    return Transformer(VOCAB, SEP, **config).eval()


def random_tokens(batch, length, seed=0):
    return sample_tokens(batch, length, VOCAB, seed)


@pytest.mark.parametrize("positional", MODES)
def test_step_matches_forward_beyond_training_lengths(positional):
    model = make_model(positional=positional)
    tokens = random_tokens(2, 100)
    with torch.no_grad():
        parallel = model(tokens)
        # a cache allocated too short must grow, not fail
        state = model.init_state(2, 37, tokens.device)
        recurrent = []
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            recurrent.append(logits)
    torch.testing.assert_close(torch.stack(recurrent, 1), parallel, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positional", MODES)
def test_causal(positional):
    model = make_model(positional=positional)
    tokens = random_tokens(2, 30)
    changed = tokens.clone()
    changed[:, 20:] = torch.where(changed[:, 20:] == 5, 6, 5)
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    torch.testing.assert_close(a[:, :20], b[:, :20], atol=0, rtol=0)
    assert not torch.allclose(a[:, 20:], b[:, 20:])


def test_default_size_matches_the_lstm_baseline():
    transformer = build_model("transformer", VOCAB, SEP)
    lstm = build_model("lstm", VOCAB, SEP)
    n_tf = sum(p.numel() for p in transformer.parameters())
    n_lstm = sum(p.numel() for p in lstm.parameters())
    assert abs(n_tf - n_lstm) / n_lstm < 0.05


def test_no_parameter_or_buffer_depends_on_length():
    model = make_model(positional="rotary")  # d_model 32, 4 heads of 8, d_ff 64
    sizes = {VOCAB, 32, 3 * 32, 64, 8 // 2}
    tensors = [*model.parameters(), *model.buffers()]
    assert all(set(t.shape) <= sizes for t in tensors)
    with torch.no_grad():
        assert model(random_tokens(1, 1100)).shape == (1, 1100, VOCAB)


def test_rotary_scores_depend_only_on_relative_position():
    g = torch.Generator().manual_seed(3)
    d = 8
    inv_freq = inverse_frequencies(d)
    q, k = torch.randn(d, generator=g), torch.randn(d, generator=g)

    def score(p, j):
        cos, sin = rotary_cos_sin(torch.tensor([p, j]), inv_freq)
        rotated_q = apply_rotary(q[None], cos[:1], sin[:1])[0]
        rotated_k = apply_rotary(k[None], cos[1:], sin[1:])[0]
        return float(rotated_q @ rotated_k)

    for p, j in [(0, 3), (5, 2), (17, 17)]:
        for shift in (1, 40, 700):
            assert score(p + shift, j + shift) == pytest.approx(score(p, j), abs=1e-3)
    assert score(0, 3) != pytest.approx(score(0, 4), abs=1e-3)

    # by hand: pair 0 rotates by p radians (θ_0 = 1); pair 1 by p / 10000^(2/4) = p / 100
    cos, sin = rotary_cos_sin(torch.tensor([2]), inverse_frequencies(4))
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    want = torch.tensor([[math.cos(2), math.sin(2), -math.sin(0.02), math.cos(0.02)]])
    torch.testing.assert_close(apply_rotary(x, cos, sin), want)


def test_sinusoidal_table_by_hand():
    d = 4  # ω_0 = 1, ω_1 = 10000^(-2/4) = 1/100
    table = sinusoidal_table(torch.tensor([0, 1, 250]), d)
    want = torch.tensor([
        [0.0, 1.0, 0.0, 1.0],
        [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
        [math.sin(250), math.cos(250), math.sin(2.5), math.cos(2.5)],
    ])
    torch.testing.assert_close(table, want, atol=1e-5, rtol=0)


def test_sinusoidal_mode_adds_the_table_and_none_adds_nothing():
    tokens = random_tokens(1, 12)
    sin_model = make_model(positional="sinusoidal")
    none_model = make_model(positional="none")
    positions = torch.arange(12)
    with torch.no_grad():
        torch.testing.assert_close(sin_model.embed(tokens, positions),
                                   sin_model.token_embedding(tokens) + sinusoidal_table(positions, 32))
        torch.testing.assert_close(none_model.embed(tokens, positions),
                                   none_model.token_embedding(tokens))


@pytest.mark.parametrize("config, match", [
    ({"positional": "alibi"},
     "positional must be one of sinusoidal, rotary, none, randomized, got 'alibi'"),
    ({"max_position": 0}, "max_position must be a positive integer"),
    ({"d_model": 30, "heads": 4}, r"d_model \(30\) must be divisible by heads \(4\)"),
    ({"d_model": 36, "heads": 12, "positional": "rotary"}, "even head size"),
    ({"layers": 0}, "layers must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"d_modle": 32}, "unknown model_config key 'd_modle'"),
])
def test_config_errors(config, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_model("transformer", VOCAB, SEP, config)
    assert "\n" not in str(info.value)


def test_config_error_through_the_cli(capsys, tmp_path):
    from pntm.cli import main
    code = main(["train", "--task", "parity", "--model", "transformer", "--steps", "1",
                 "--set", "model_config.positional=learned", "--out", str(tmp_path / "r")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[-1].startswith("pntm: error: ") and "positional" in lines[-1]
    assert not any("Traceback" in line for line in lines)


def test_randomized_positions_are_sorted_distinct_in_range_and_only_in_training():
    model = make_model(positional="randomized", max_position=300).train()
    draws = [model.positions(40, "cpu") for _ in range(20)]
    for p in draws:
        assert p.shape == (40,) and p.dtype == torch.long
        assert (p[1:] > p[:-1]).all() and 0 <= p[0] and p[-1] < 300
    assert len({tuple(p.tolist()) for p in draws}) == 20  # a fresh sample each time
    assert max(int(p[-1]) for p in draws) > 250  # the whole range is used, not just 0..39
    model.eval()
    assert torch.equal(model.positions(40, "cpu"), torch.arange(40))


def test_randomized_training_forward_uses_the_sample_and_eval_is_plain_rotary():
    model = make_model(positional="randomized", max_position=300)
    rotary = make_model(positional="rotary")
    rotary.load_state_dict(model.state_dict())
    tokens = random_tokens(2, 12)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), rotary(tokens))  # eval: positions 0..T-1
        model.train()
        torch.manual_seed(5)
        positions = model.positions(12, "cpu")
        torch.manual_seed(5)
        trained = model(tokens)
        torch.testing.assert_close(trained, model.run(tokens, positions))
        assert not torch.allclose(trained, model.run(tokens, torch.arange(12)))


def test_randomized_training_sequence_longer_than_max_position_is_an_error():
    from pntm.errors import PntmError
    model = make_model(positional="randomized", max_position=8).train()
    with pytest.raises(PntmError, match="max_position"):
        model(random_tokens(1, 9))
