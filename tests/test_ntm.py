"""NTM baseline: the addressing and memory equations of the docstring on small cases worked out by
hand, the two execution modes, N-independent parameters, and batch vectorization."""

import math
import statistics
import time

import torch
import torch.nn.functional as F

from pntm import config as config_lib
from pntm.models.ntm import (NTM, circular_shift, content_weights, interpolate, sharpen,
                             write_memory)

from helpers import sample_tokens, run_recurrent

torch.set_num_threads(1)  # the machine is shared

SEP = 2
VOCAB = 7


def make_model(**overrides):
    torch.manual_seed(0)
    return NTM(VOCAB, SEP, **overrides)


def random_tokens(batch, length, seed=0):
    return sample_tokens(batch, length, VOCAB, seed, sep_at=length // 2)


def one_hot(index, cells):
    return F.one_hot(torch.tensor(index), cells).float()


# --------------------------------------------------------------------------- addressing

def test_shift_by_plus_one_moves_a_one_hot_weighting_one_cell_and_wraps():
    plus_one = torch.tensor([0.0, 0.0, 1.0])   # offsets -1, 0, +1
    minus_one = torch.tensor([1.0, 0.0, 0.0])
    w = torch.stack([one_hot(2, 5), one_hot(4, 5)])[None]           # (1, 2 heads, 5)
    moved = circular_shift(w, plus_one.expand(1, 2, 3))
    torch.testing.assert_close(moved[0], torch.stack([one_hot(3, 5), one_hot(0, 5)]))
    back = circular_shift(w, minus_one.expand(1, 2, 3))
    torch.testing.assert_close(back[0], torch.stack([one_hot(1, 5), one_hot(3, 5)]))


def test_soft_shift_spreads_the_weighting_over_the_neighbours():
    s = torch.tensor([[[0.2, 0.5, 0.3]]])
    got = circular_shift(one_hot(0, 4)[None, None], s)[0, 0]
    torch.testing.assert_close(got, torch.tensor([0.5, 0.3, 0.0, 0.2]))


def test_larger_shift_range():
    s = torch.zeros(1, 1, 5)
    s[0, 0, 0] = 1.0  # offset -2
    torch.testing.assert_close(circular_shift(one_hot(1, 6)[None, None], s)[0, 0], one_hot(5, 6))


def test_sharpening_with_a_large_gamma_tends_to_the_argmax():
    w = torch.tensor([[[0.1, 0.45, 0.35, 0.1]]])
    sharp = sharpen(w, torch.tensor([[60.0]]))
    torch.testing.assert_close(sharp, one_hot(1, 4)[None, None], atol=1e-5, rtol=0)
    # gamma = 1 leaves a normalised weighting (almost) unchanged
    torch.testing.assert_close(sharpen(w, torch.tensor([[1.0]])), w, atol=1e-6, rtol=0)
    # gamma = 2: w^2 / sum(w^2), by hand
    expect = torch.tensor([0.01, 0.2025, 0.1225, 0.01]) / 0.345
    torch.testing.assert_close(sharpen(w, torch.tensor([[2.0]]))[0, 0], expect, atol=1e-6, rtol=0)


def test_content_weights_are_a_softmax_of_scaled_cosine_similarity():
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3 cells, 2)
    key = torch.tensor([[[3.0, 4.0]]])                                # |k| = 5
    beta = 2.0
    cosines = [3 / 5, 8 / 10, 7 / (5 * math.sqrt(2))]
    exps = [math.exp(beta * c) for c in cosines]
    expect = torch.tensor([e / sum(exps) for e in exps])
    got = content_weights(key, torch.tensor([[beta]]), memory)[0, 0]
    torch.testing.assert_close(got, expect)


def test_interpolation_gate():
    content = torch.tensor([[[0.7, 0.2, 0.1]]])
    previous = torch.tensor([[[0.0, 0.0, 1.0]]])
    torch.testing.assert_close(interpolate(torch.tensor([[0.0]]), content, previous), previous)
    torch.testing.assert_close(interpolate(torch.tensor([[1.0]]), content, previous), content)
    torch.testing.assert_close(interpolate(torch.tensor([[0.25]]), content, previous),
                               torch.tensor([[[0.175, 0.05, 0.775]]]))


def test_memory_update_is_erase_then_add():
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    w = torch.tensor([[1.0, 0.5, 0.0]])
    erase = torch.tensor([[1.0, 0.5]])
    add = torch.tensor([[0.5, -1.0]])
    # cell 0: [1*(1-1) + 0.5, 2*(1-0.5) - 1]; cell 1: [3*(1-0.5) + 0.25, 4*(1-0.25) - 0.5]; cell 2 kept
    expect = torch.tensor([[[0.5, 0.0], [1.75, 2.5], [5.0, 6.0]]])
    torch.testing.assert_close(write_memory(memory, w, erase, add), expect)


# --------------------------------------------------------------------------- the model

def test_step_equals_forward_also_when_memory_grows_with_the_input():
    model = make_model(memory_cells=8, read_heads=2, shift_range=2).eval()
    tokens = random_tokens(3, 30)  # N = 30 > memory_cells
    with torch.no_grad():
        parallel = model(tokens)
        recurrent = run_recurrent(model, tokens)
    assert parallel.shape == (3, 30, VOCAB)
    assert torch.equal(parallel, recurrent)


def test_parameters_do_not_depend_on_memory_size():
    def shapes(m):
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    small, large = make_model(memory_cells=16), make_model(memory_cells=256)
    assert shapes(small) == shapes(large)
    assert small.num_cells(10) == 16 and small.num_cells(300) == 300
    with torch.no_grad():
        for length in (3, 17, 300):
            assert small(random_tokens(1, length)).shape == (1, length, VOCAB)
    assert shapes(small) == shapes(large)


def test_initial_state_follows_the_stable_recipe():
    model = make_model(memory_cells=10)
    state = model.init_state(2, 5, "cpu")
    assert torch.all(state.memory == 1e-6) and state.memory.shape == (2, 10, 20)
    w0 = state.weights
    assert w0.shape == (2, 2, 10)
    torch.testing.assert_close(w0.sum(-1), torch.ones(2, 2))
    assert torch.all(w0[..., 4:] == 0)                      # only the learned window
    assert torch.all(w0[..., 0] > 0.8)                      # peaked on cell 0
    torch.testing.assert_close(state.reads[0], model.initial_reads)


def test_gradients_are_finite_and_reach_the_learned_initial_state():
    model = make_model()
    logits = model(random_tokens(4, 25))
    F.cross_entropy(logits.flatten(0, 1), random_tokens(4, 25, seed=1).flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.initial_weight_logits.grad.abs().sum() > 0
    assert model.initial_reads.grad.abs().sum() > 0


def test_controller_outputs_are_clipped():
    model = make_model()
    with torch.no_grad():
        model.to_heads.bias.fill_(1e4)
    logits = model(random_tokens(2, 6))
    assert torch.isfinite(logits).all()


def test_training_step_has_no_per_example_loop():
    """A batch of 32 must cost far less than 32 batches of 1 (a Python loop over rows would not)."""
    model = make_model()
    tokens = random_tokens(32, 40)

    def cost(batch):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            model(tokens[:batch]).sum().backward()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    cost(1)  # warm-up
    assert cost(32) < 8 * cost(1)


def test_packaged_config_is_the_stable_recipe():
    cfg = config_lib.build_config("copy", "ntm")
    assert cfg["model_config"]["controller_size"] == 100
    assert (cfg["model_config"]["memory_cells"], cfg["model_config"]["memory_width"]) == (128, 20)
    assert cfg["train"]["lr"] == 1e-3 and cfg["train"]["grad_clip"] > 0
    assert cfg["train"]["weight_decay"] == 0.0
