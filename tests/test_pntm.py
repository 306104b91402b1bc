"""P-NTM: the two execution modes agree, and the head and memory mathematics is what the
docstring says, checked on small cases worked out by hand."""

import pytest
import torch
import torch.nn.functional as F

from helpers import layers_without_and_with, run_recurrent, sample_tokens
from pntm.errors import ConfigError
from pntm.models.pntm import PNTM
from pntm.models.pntm_config import PNTMConfig
from pntm.models.pntm_layer import PNTMLayer

SEP = 2
VOCAB = 9


def make_model(**overrides):
    torch.manual_seed(0)
    config = {"layers": 2, "read_heads": 2, "d_model": 32, "d_ff": 64, "memory_width": 8}
    config.update(overrides)
    return PNTM(VOCAB, SEP, **config).eval()


def random_tokens(batch, length, seed=0):
    return sample_tokens(batch, length, VOCAB, seed)


@pytest.mark.parametrize("overrides", [
    {},                                                   # hard heads, tape writer off
    {"hard": False},                                      # soft NTM semantics
    {"tape_writer": True, "shift_range": 3},
    {"window": 1, "relaxed_heads": 1},
    {"window": 3, "tape_writer": True, "content_heads": 1},
    {"tape_writer": True, "periods": []},                # cells without address tags
    {"state_heads": 2, "states": 5},                     # finite-state heads, hard
    {"state_heads": 1, "hard": False},                   # soft state heads
    {"tape_writer": True, "state_heads": 2, "states": 3},  # position path with state heads
    {"state_heads": 1, "states": 4, "initial_memory": 0.1},  # write events with state heads
    {"state_heads": 2, "states": 4, "state_values": True},  # valued state heads
    {"state_heads": 1, "state_values": True, "hard": False},
    {"state_heads": 2, "states": 7, "state_rank": 3},    # low-rank maps
    {"state_heads": 2, "states": 7, "state_rank": 4, "state_values": True},
    {"state_heads": 1, "states": 5, "state_rank": 2, "hard": False},
])
def test_parallel_and_recurrent_modes_agree_at_length_200(overrides):
    model = make_model(**overrides)
    tokens = random_tokens(3, 200)
    with torch.no_grad():
        parallel = model(tokens)
        recurrent = run_recurrent(model, tokens)
    assert parallel.shape == (3, 200, VOCAB)
    torch.testing.assert_close(recurrent, parallel, atol=1e-5, rtol=1e-5)


def test_cells_without_address_tags_read_zero_tags_and_train():
    model = make_model(tape_writer=True, periods=[]).train()
    layer = model.layers[0]
    assert torch.equal(layer.addresses(7, "cpu"), torch.zeros(7, layer.address_width))
    model(random_tokens(2, 30)).sum().backward()  # the position path and its backward run
    assert model.layers[0].controller.weight.grad is not None


def test_parameters_do_not_depend_on_memory_size():
    model = make_model()
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert model.num_cells(10) == 60 and model.num_cells(500) == 540
    with torch.no_grad():
        for length in (5, 61, 300):
            assert model(random_tokens(1, length)).shape == (1, length, VOCAB)
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


def test_memory_is_large_enough_that_no_head_wraps():
    model = make_model(shift_range=4)
    for length in (1, 59, 60, 200, 1002):
        cells = model.num_cells(length)
        assert cells >= 4 * length + 1 and cells % 60 == 0


def test_the_memory_size_is_the_smallest_fast_fft_size_that_is_large_enough():
    from pntm.models.memory_size import fast_fft_size, memory_cells
    # by hand: 2·100 + 1 = 201 = 3·67 -> 216 = 2³·3³; 2·500 + 1 = 1001 -> 60·17 has a 17 -> 60·18
    assert memory_cells(100, 2, [], 1) == 216
    assert memory_cells(500, 2, [2, 3, 4, 5], 1) == 1080
    assert memory_cells(40, 2, [], 1) == 81 and memory_cells(7, 2, [], 12) == 15
    assert [fast_fft_size(n) for n in (1, 30, 64, 81, 7, 201, 1001)] == [True] * 4 + [False] * 3
    for periods in ([], [2, 3, 4, 5], [7]):
        quantum = 7 if periods == [7] else (60 if periods else 1)
        for length in range(1, 130):
            cells = memory_cells(length, 2, periods, 1)
            assert cells >= 2 * length + 1 and cells % quantum == 0
            assert fast_fft_size(cells // quantum)
            assert not any(fast_fft_size(m) for m in range(-(-(2 * length + 1) // quantum),
                                                          cells // quantum))


@pytest.mark.parametrize("overrides", [
    {"hard": False},                                           # soft heads, learned writer
    {"hard": False, "tape_writer": True, "periods": []},      # soft heads on the tape
    {"tape_writer": True, "periods": [], "relax": [0.5, 0.9]},  # relax phase (training)
    {},                                                        # hard heads
])
def test_outputs_and_gradients_do_not_depend_on_the_memory_size(overrides):
    # The memory size is only rounded up for the FFT's speed (memory_size.memory_cells): more
    # cells than K·T + 1, all holding m_0 past the tape, change no read.
    tokens = random_tokens(2, 20)
    outputs = []
    for extra in (0, 120):  # a multiple of every quantum used here
        model = make_model(**overrides)
        if "relax" in overrides:
            model.train().set_training_progress(0.6)
        for layer in model.layers:
            layer.num_cells = lambda T, size=layer.num_cells: size(T) + extra
        logits = model(tokens)
        logits.square().sum().backward()
        outputs.append((logits, [p.grad for p in model.parameters()]))
    (small, small_grads), (large, large_grads) = outputs
    assert torch.allclose(small, large, atol=1e-5)
    for a, b in zip(small_grads, large_grads):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def head_weights(layer, shift, jump, cells):
    """Run the location scan of ``layer`` on given shift distributions and jump gates."""
    ctl = {"shift": shift, "jump": jump}
    a, b = layer.location_coefficients(ctl, cells)
    start = layer.start_spectrum(cells, "cpu").expand_as(b[:, 0])
    from pntm.ops.scan import linear_scan
    return torch.fft.irfft(linear_scan(a, b, start), n=cells, dim=-1)


def test_hard_shifts_move_a_head_by_whole_cells_and_jumps_return_to_the_origin():
    layer = make_model(shift_range=2).layers[0]
    moves = [1, 1, 2, -1, 0, 1]           # shifts of one head, token by token
    jumps = [0, 0, 0, 0, 1, 0]            # token 5 jumps to the origin, then shifts by 0
    shift = F.one_hot(torch.tensor(moves) + 2, 5).float().view(1, 6, 1, 5)
    jump = torch.tensor(jumps, dtype=torch.float32).view(1, 6, 1)
    weights = head_weights(layer, shift, jump, cells=60)[0, :, 0]
    # The head starts on cell -1 (= 59): 0, 1, 3, 2, then the jump: 0 + 0 = 0, then 1.
    expected = [0, 1, 3, 2, 0, 1]
    assert weights.argmax(-1).tolist() == expected
    torch.testing.assert_close(weights, F.one_hot(torch.tensor(expected), 60).float(),
                               atol=1e-5, rtol=0)


def test_a_head_wraps_around_a_circular_memory():
    layer = make_model().layers[0]
    shift = F.one_hot(torch.zeros(3, dtype=torch.long), 3).float().view(1, 3, 1, 3)  # -1 each
    weights = head_weights(layer, shift, torch.zeros(1, 3, 1), cells=60)[0, :, 0]
    assert weights.argmax(-1).tolist() == [58, 57, 56]


def test_a_soft_shift_spreads_a_head_like_a_convolution():
    layer = make_model().layers[0]
    step = torch.tensor([0.25, 0.5, 0.25])  # one soft step from cell -1
    weights = head_weights(layer, step.view(1, 1, 1, 3), torch.zeros(1, 1, 1), cells=60)
    expected = torch.zeros(60)
    expected[[58, 59, 0]] = step
    torch.testing.assert_close(weights[0, 0, 0], expected, atol=1e-6, rtol=0)


def test_memory_update_is_erase_then_add():
    layer = make_model(memory_width=2).layers[0]
    write = torch.tensor([[[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]])          # (B=1, T=2, N=3)
    ctl = {"erase": torch.tensor([[[1.0, 0.0], [1.0, 1.0]]]),
           "add": torch.tensor([[[3.0, 4.0], [2.0, -2.0]]])}
    alpha, beta = layer.memory_coefficients(ctl, write)
    from pntm.ops.scan import linear_scan
    m0 = torch.ones(1, 3, 2)
    memory = linear_scan(alpha, beta, m0)
    # t=1: cell 1 erased in channel 0 only, then 3 and 4 added.
    m1 = torch.tensor([[1.0, 1.0], [3.0, 5.0], [1.0, 1.0]])
    # t=2: cells 0 and 1 half erased in both channels, then half of (2, -2) added.
    m2 = m1.clone()
    for i, w in enumerate([0.5, 0.5, 0.0]):
        m2[i] = m1[i] * (1 - w) + w * torch.tensor([2.0, -2.0])
    torch.testing.assert_close(memory[0], torch.stack([m1, m2]))


def test_reads_weight_the_memory_rows():
    model = make_model(memory_width=2, read_heads=1)
    layer = model.layers[0]
    memory = torch.arange(12, dtype=torch.float32).view(1, 1, 6, 2)         # cells 0..5
    weights = torch.zeros(1, 1, 2, 6)
    weights[0, 0, 1] = torch.tensor([0.0, 0.25, 0.75, 0, 0, 0])             # read head
    tags = layer.addresses(6, "cpu")
    captured = {}
    layer.out.register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0]))
    ctl = {"h": torch.zeros(1, 1, layer.controller.out_features)}
    layer.output(torch.zeros(1, 1, 32), ctl, weights, memory, None)
    reads = captured["x"][0, 0, -(2 + tags.shape[1]):]
    expected_read = 0.25 * memory[0, 0, 1] + 0.75 * memory[0, 0, 2]
    torch.testing.assert_close(reads[:2], expected_read)
    torch.testing.assert_close(reads[2:], 0.25 * tags[1] + 0.75 * tags[2])


def test_address_tags_are_periodic_with_the_lcm_of_the_periods():
    layer = make_model(periods=[2, 3]).layers[0]
    tags = layer.addresses(12, "cpu")
    torch.testing.assert_close(tags[:6], tags[6:])
    assert not torch.allclose(tags[0], tags[1])


def embedded(model, tokens):
    u = model.embed(tokens, torch.zeros_like(tokens))
    return u, torch.zeros_like(u)


def test_straight_through_heads_are_hard_forward_and_trainable():
    model = make_model()
    model.train()
    tokens = random_tokens(2, 30)
    layer = model.layers[0]
    ctl = layer.controls(*embedded(model, tokens))
    assert set(ctl["shift"].detach().unique().tolist()) <= {0.0, 1.0}
    assert set(ctl["jump"].detach().unique().tolist()) <= {0.0, 1.0}
    model(tokens).logsumexp(-1).sum().backward()
    assert layer.to_shift.weight.grad.abs().sum() > 0
    assert layer.to_jump.weight.grad.abs().sum() > 0


def test_relaxed_training_is_soft_and_evaluation_is_hard():
    model = make_model(relax=[0.0, 0.5])
    model.set_training_progress(0.25)
    model.train()
    tokens = random_tokens(1, 20)
    layer = model.layers[0]
    shift = layer.controls(*embedded(model, tokens))["shift"]
    assert ((shift > 0.01) & (shift < 0.99)).any()
    assert layer.temperature == pytest.approx(0.1 ** 0.5)
    model.eval()
    shift = layer.controls(*embedded(model, tokens))["shift"]
    assert set(shift.detach().unique().tolist()) <= {0.0, 1.0}
    model.set_training_progress(0.75)
    assert not layer.relaxed and layer.temperature == 1.0


def assert_hard_with_annealed_gradient(layer, relaxed_tau):
    """The layer's heads, on random controller outputs, are hard (one-hot shifts, 0/1 jumps)
    with the straight-through gradient of softmax(z / τ): τ = ``relaxed_tau`` for the relaxed
    heads, 1 for the others. Returns the outputs and the shifts."""
    torch.manual_seed(1)
    h = torch.randn(2, 7, layer.to_shift.in_features, requires_grad=True)
    shift, jump = layer.head_choices(h)
    assert set(shift.detach().unique().tolist()) <= {0.0, 1.0}
    assert set(jump.detach().unique().tolist()) <= {0.0, 1.0}
    tau = torch.tensor([relaxed_tau if relaxed else 1.0 for relaxed in layer.relaxed_mask.tolist()])
    soft_shift = (layer.to_shift(h).view(*shift.shape) / tau[:, None]).softmax(-1)
    soft_jump = torch.sigmoid(layer.to_jump(h) / tau)
    weights = torch.randn_like(shift), torch.randn_like(jump)
    got = torch.autograd.grad((shift * weights[0]).sum() + (jump * weights[1]).sum(), h)[0]
    want = torch.autograd.grad((soft_shift * weights[0]).sum() + (soft_jump * weights[1]).sum(), h)[0]
    torch.testing.assert_close(got, want)
    return h, shift


@pytest.mark.parametrize("hold", [False, True])
def test_hold_temperature_keeps_the_annealed_gradient_after_the_relax_phase(hold):
    """After the relax phase the heads are hard either way; with hold_temperature the relaxed
    heads' straight-through gradient is that of softmax(z / min_temperature), without it that of
    softmax(z), and the heads that never relaxed keep softmax(z)."""
    model = make_model(relax=[0.2, 0.5], relaxed_heads=1, min_temperature=0.1,
                       hold_temperature=hold).train()
    model.set_training_progress(0.75)
    layer = model.layers[0]
    assert not layer.relaxing()
    assert layer.temperature == (0.1 if hold else 1.0)
    h, shift = assert_hard_with_annealed_gradient(layer, 0.1 if hold else 1.0)
    model.eval()
    assert torch.equal(layer.head_choices(h)[0], shift.detach())


def test_relax_hard_every_runs_every_kth_anneal_step_hard():
    """relax_hard_every = k: inside the anneal (relax[0] to relax[1]) the steps k divides run
    the relaxed heads hard, so the training forward pass is the evaluation one, with the
    straight-through gradient of softmax(z / τ) at the current temperature τ; the other steps,
    the steps before the anneal and calls without a step stay soft."""
    model = make_model(relax=[0.2, 0.6], relaxed_heads=1, min_temperature=0.1,
                       relax_hard_every=3).train()
    layer = model.layers[0]
    for fraction, step, soft in [(0.1, 3, True), (0.4, 7, True), (0.4, None, True),
                                 (0.4, 6, False), (0.8, 9, False)]:
        model.set_training_progress(fraction, step)
        assert layer.relaxing() == soft, (fraction, step)
    model.set_training_progress(0.4, 6)
    tau = 0.1 ** 0.5  # halfway through the anneal
    assert layer.temperature == pytest.approx(tau)
    tokens = random_tokens(2, 25)
    trained = model(tokens)
    torch.testing.assert_close(trained, model.eval()(tokens))  # the hard step is evaluation's
    model.train()
    h, _ = assert_hard_with_annealed_gradient(layer, tau)
    model.set_training_progress(0.4, 7)  # the next step is soft again
    shift = layer.head_choices(h)[0]
    assert ((shift > 0.01) & (shift < 0.99)).any()


def test_tape_writer_writes_one_cell_per_token():
    model = make_model(tape_writer=True)
    layer = model.layers[0]
    tokens = random_tokens(1, 12)
    ctl = layer.controls(*embedded(model, tokens))
    weights = head_weights(layer, ctl["shift"], ctl["jump"], cells=60)
    assert weights[0, :, 0].argmax(-1).tolist() == list(range(12))


def test_no_nan_in_a_long_sequence():
    model = make_model()
    model.train()
    tokens = random_tokens(1, 1000)
    logits = model(tokens)
    logits.logsumexp(-1).mean().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("overrides", [{}, {"relax": [0.0, 1.0], "relaxed_heads": 1},
                                       {"window": 1, "shift_range": 2}])
def test_closed_form_tape_memory_equals_the_memory_scan(overrides):
    """The tape writer's closed-form reads equal the scan's, forward and backward."""
    grads = []
    outputs = []
    for path in ("auto", "scan"):
        model = make_model(tape_writer=True, memory_path=path, jump_horizon=None,
                           **overrides).train()
        model.set_training_progress(0.5)
        tokens = random_tokens(2, 150)
        logits = model(tokens)
        logits.logsumexp(-1).mean().backward()
        outputs.append(logits.detach())
        grads.append({k: p.grad for k, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key], atol=1e-5, rtol=1e-4)


def test_hold_temperature_must_be_a_boolean():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="hold_temperature must be true or false"):
        make_model(hold_temperature="yes")


def test_memory_path_must_be_known():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="memory_path"):
        make_model(memory_path="fast")


def content_layer(**overrides):
    torch.manual_seed(0)
    model = make_model(tape_writer=True, content_heads=1, **overrides)
    return model.layers[0]


def test_content_head_reads_the_cell_whose_content_matches_its_query():
    layer = content_layer()
    rows = torch.tensor([[[1.0, 0, 0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0, 0, 0],
                          [0, 0, 1.0, 0, 0, 0, 0, 0], [0, 1.0, 1.0, 0, 0, 0, 0, 0]]])
    query = torch.zeros(1, 4, 1, 8)
    query[0, :, 0, 2] = 1.0                      # every step asks for "the third unit vector"
    ctl = {"query": query, "strength": torch.full((1, 4, 1), 3.0)}
    contents, tags = layer.content_reads(ctl, rows, rows, causal=True)
    # t = 0, 1 see only cells 0..t: cos = 0 everywhere, the first cell wins the tie; t = 2
    # finds cell 2 (cos 1), and so does t = 3 (cell 3 has cos 0.71).
    assert torch.equal(contents[0, :, 0], rows[0, [0, 0, 2, 2]])
    table = layer.address_table(rows.device)
    assert torch.allclose(tags[0, :, 0], table[[0, 0, 2, 2]])
    layer.hard = False                           # soft: a softmax of strength * cosine
    soft, _ = layer.content_reads(ctl, rows, rows, causal=True)
    weights = torch.softmax(3.0 * torch.tensor([0.0, 0.0, 1.0, 0.5 ** 0.5]), 0)
    torch.testing.assert_close(soft[0, 3, 0], weights @ rows[0])


@pytest.mark.parametrize("overrides", [{}, {"hard": False}, {"memory_path": "scan", "hard": False},
                                       {"content_match": "key"},
                                       {"content_match": "context", "window": 2},
                                       {"content_match": "context", "window": 1,
                                        "hard": False},
                                       {"content_codes": 4}, {"content_codes": 2, "hard": False},
                                       {"content_codes": 4, "content_match": "key"}])
def test_content_heads_parallel_and_recurrent_modes_agree(overrides):
    # Hard content heads with the memory scan are left out: its weightings carry float noise
    # of ~1e-7, which breaks the exact ties of repeated random tokens differently in each mode.
    model = make_model(tape_writer=True, content_heads=2, jump_bias=0.0, **overrides)
    tokens = random_tokens(3, 120)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_group_codes_are_each_groups_softmax_centred():
    from pntm.ops.content_addressing import group_codes
    x = torch.tensor([[0.1, 0.9, 0.2, 0.3, 5.0, 1.0, 2.0, 3.0]])
    soft = (x.unflatten(-1, (2, 4)) / 0.5).softmax(-1).flatten(-2)
    torch.testing.assert_close(group_codes(x, 2, temperature=0.5), soft - 0.25)
    # A flat group is the zero code (no preference); groups of one carry nothing.
    assert torch.equal(group_codes(torch.zeros(1, 4), 1), torch.zeros(1, 4))
    assert torch.equal(group_codes(x, 8), torch.zeros(1, 8))


def test_hard_code_similarity_counts_the_agreeing_groups_with_the_soft_gradient():
    from pntm.ops.content_addressing import code_similarity, group_codes
    # Width 6, three groups of two: the query's largest entries are (first, second, first).
    query = torch.tensor([2.0, 1.0, 0.0, 3.0, 1.0, -1.0]).view(1, 1, 1, 6).requires_grad_(True)
    keys = torch.tensor([[5.0, 0.0, 0.0, 1.0, 0.0, 2.0],     # agrees in groups 1, 2: A = 2
                         [0.0, 1.0, 1.0, 0.0, 0.0, 1.0],     # A = 0
                         [1.0, 0.0, -2.0, -1.0, 7.0, 6.0]]).view(1, 3, 6)   # A = 3
    hard = code_similarity(query, keys, 3, 1.0, hard=True)[0, 0, 0]
    # cos = (A - g/n) / (g - g/n), g = 3, n = 2: A = 2, 0, 3 give 1/3, -1, 1.
    assert torch.equal(hard.detach(), torch.tensor([1 / 3, -1.0, 1.0]))
    hard.sum().backward()
    q = query.detach().clone().requires_grad_(True)
    soft = F.cosine_similarity(group_codes(q[0, 0], 3), group_codes(keys[0], 3), dim=-1)
    soft.sum().backward()
    torch.testing.assert_close(query.grad, q.grad)


def test_content_codes_pick_the_key_whose_every_group_agrees_over_a_closer_near_miss():
    # Width 4, two groups of two. The query's largest entries are (first | second). The near
    # miss agrees in the first group only, but lies closer to the query as a vector; the exact
    # key agrees in both. Cosine picks the near miss; hard codes pick the key (cosines 0 and 1).
    from pntm.ops.content_addressing import content_weights, group_codes
    query = torch.tensor([1.0, 0.9, 0.0, 1.0]).view(1, 1, 1, 4)
    near, exact = [1.0, 0.9, 0.3, 0.2], [0.2, 0.0, -1.0, 0.5]
    keys = torch.tensor([near, exact]).view(1, 2, 4)
    strength = torch.full((1, 1, 1), 2.0)
    kwargs = {"causal": False, "strictly_earlier": False, "temperature": 1.0}
    assert content_weights(query, strength, keys, hard=True, **kwargs)[0, 0, 0].argmax() == 0
    hard = content_weights(query, strength, keys, hard=True, codes=2, **kwargs)[0, 0, 0]
    assert torch.equal(hard, torch.tensor([0.0, 1.0]))
    # Soft: a softmax of strength × the cosine of the soft codes.
    cos = F.cosine_similarity(group_codes(query[0, 0], 2), group_codes(keys[0], 2), dim=-1)
    soft = content_weights(query, strength, keys, hard=False, codes=2, **kwargs)[0, 0, 0]
    torch.testing.assert_close(soft, torch.softmax(2.0 * cos, 0))
    assert cos[1] > cos[0]


def test_context_head_reads_the_cell_after_the_same_context():
    # window 2: cell j's key is a function of inputs j-1, j-2 only, and so is the query
    # at t. Tokens: 0:5 1:3 2:4 3:6 4:7 5:3 6:4 7:8 8:3. At t = 7 the last two inputs (3, 4)
    # occurred before cell 3 (inputs 1, 2): its key is the same vector, cos 1, the argmax.
    # Nothing before t = 4 repeats a context, and t never matches itself (strictly earlier
    # cells; t = 0 reads cell 0).
    torch.manual_seed(0)
    model = make_model(tape_writer=True, content_heads=1, content_match="context",
                       window=2, layers=1)
    layer = model.layers[0]
    tokens = torch.tensor([[5, 3, 4, 6, 7, 3, 4, 8, 3]])
    u = model.embed(tokens, torch.zeros_like(tokens))    # no separator: all prompt
    earlier = [F.pad(u, (0, 0, k, 0))[:, :u.shape[1]] for k in (1, 2)]
    ctl = layer.controls(u, torch.stack(earlier, dim=2))
    _, keys, causal, _, _ = layer.parallel_tape(ctl)
    weights = layer.content_weights(ctl, keys, causal)[0, :, 0]      # (T, J)
    chosen = weights.argmax(-1)
    assert chosen[7] == 3                  # context (3, 4) as before cell 3
    assert chosen[0] == 0
    assert all(chosen[t] < t for t in range(1, 9))
    assert torch.equal(weights.sum(-1), torch.ones(9))
    cos = F.cosine_similarity(keys[0, 7, 0], keys[0, 3, 0], dim=0)
    torch.testing.assert_close(cos, torch.tensor(1.0))


def test_content_heads_config_rules():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="need hard: true"):  # a learned writer must be hard
        make_model(content_heads=1, hard=False)
    with pytest.raises(ConfigError, match="content_match"):
        make_model(tape_writer=True, content_heads=1, content_match="both")
    with pytest.raises(ConfigError, match="content_strength"):
        make_model(tape_writer=True, content_heads=1, content_strength=0.0)
    with pytest.raises(ConfigError, match="needs a window"):
        make_model(tape_writer=True, content_heads=1, content_match="context")
    with pytest.raises(ConfigError, match="content_codes 3 must divide memory_width 8"):
        make_model(tape_writer=True, content_heads=1, content_codes=3)


def test_state_heads_run_the_automaton_their_maps_choose():
    """A state head whose maps are set by hand (token 5 multiplies by 2 mod 5, every other
    token keeps the state) reads the embedding of 2^(count of 5s) mod 5 from state 1."""
    model = make_model(state_heads=1, states=5)
    machine = model.layers[0].machine
    double = torch.tensor([(2 * i) % 5 for i in range(5)])
    with torch.no_grad():
        h = torch.zeros(1, 4, machine.to_maps.in_features)
        h[0, 1, 0] = 1.0  # tokens 1 and 3 carry feature 0: the "times 2" token
        h[0, 3, 0] = 1.0
        machine.to_maps.weight.zero_()
        logits = torch.full((5, 5), -50.0)
        logits[range(5), range(5)] = 50.0        # bias: stay
        machine.to_maps.bias.copy_(logits.flatten())
        jump = torch.full((5, 5), -100.0)
        jump[range(5), double] = 100.0
        machine.to_maps.weight[:, 0] = (jump - logits).flatten()  # feature 0: double
        from pntm.ops.state_maps import hard_states
        maps = machine.matrices(h).argmax(-1)
        states = hard_states(maps, start=1)
    assert states[0, :, 0].tolist() == [1, 2, 2, 4]


def test_annealed_state_values_leave_the_exact_automaton():
    """With state_anneal the values' weight falls to 0: at evaluation (and at the end of the
    schedule in training) the valued head is the one-hot automaton of the same maps."""
    model = make_model(state_heads=1, states=4, state_values=True, state_anneal=[0.2, 0.6])
    machine = model.layers[0].machine
    h = torch.randn(2, 30, machine.to_maps.in_features)
    with torch.no_grad():
        exact = machine(h, hard=True)                      # eval mode: λ = 0
        assert torch.equal(exact, F.one_hot(exact.argmax(-1), 4).to(exact))
        model.train()
        model.set_training_progress(0.0)
        assert machine.value_weight == 1.0
        valued = machine(h, hard=True)
        assert not torch.equal(valued, exact)
        model.set_training_progress(0.4)
        assert abs(machine.value_weight - 0.5) < 1e-9
        model.set_training_progress(0.6)
        torch.testing.assert_close(machine(h, hard=True), exact)


# --------------------------------------------------------------------------- state_moves

def steered_model(**overrides):
    """A model whose state heads steer its heads (``state_moves``), with the steering weights
    drawn at random (they start at zero)."""
    model = make_model(state_heads=2, states=4, state_moves=True, **overrides)
    with torch.no_grad():
        for layer in model.layers:
            layer.state_to_moves.normal_(0.0, 3.0)
    return model


def test_state_moves_start_as_the_model_without_them():
    base, steered = make_model(state_heads=2, states=4), make_model(state_heads=2, states=4,
                                                                    state_moves=True)
    tokens = random_tokens(2, 60)
    for mode in ("eval", "train"):
        getattr(base, mode)(), getattr(steered, mode)()
        torch.testing.assert_close(steered(tokens), base(tokens), atol=0.0, rtol=0.0)


@pytest.mark.parametrize("overrides", [
    {},                                                    # hard learned writer: write events
    {"tape_writer": True, "window": 3, "content_heads": 1},  # tape, as the shipped config
    {"tape_writer": True, "state_values": True, "state_anneal": [0.2, 0.6]},
    {"hard": False},                                       # soft heads and states
])
def test_steered_heads_parallel_and_recurrent_modes_agree(overrides):
    model = steered_model(**overrides)
    tokens = random_tokens(3, 150)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_the_state_steers_the_moves_and_learns():
    """A head's move is a function of the state (not only of the token): with the steering
    on, heads move where they did not, and its weights get a gradient in training."""
    model = steered_model(tape_writer=True)
    layer = model.layers[0]
    u, previous = embedded(model, random_tokens(2, 40))
    moves = layer.controls(u, previous)["shift"].argmax(-1)
    with torch.no_grad():
        saved = layer.state_to_moves.clone()
        layer.state_to_moves.zero_()
        unsteered = layer.controls(u, previous)["shift"].argmax(-1)
        layer.state_to_moves.copy_(saved)
    assert not torch.equal(moves, unsteered)
    model.train()
    F.cross_entropy(model(random_tokens(2, 40)).flatten(0, 1),
                    random_tokens(2, 40, seed=1).flatten()).backward()
    assert layer.state_to_moves.grad is not None and layer.state_to_moves.grad.abs().sum() > 0


def test_state_moves_need_state_heads():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="state_moves needs state_heads"):
        make_model(state_moves=True)


def test_steered_heads_agree_across_modes_after_training():
    """Parallel equals recurrent decoding on trained weights too (30 Adam steps through the
    relax phase and the anneal, so the maps, the steering and the heads all moved)."""
    model = make_model(state_heads=2, states=4, state_moves=True, tape_writer=True, window=2,
                       state_values=True, state_anneal=[0.2, 0.6], relax=[0.2, 0.7]).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for step in range(30):
        model.set_training_progress(step / 30)
        tokens = random_tokens(4, 30, seed=step)
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.layers[0].state_to_moves.abs().sum() > 0
    model.eval()
    tokens = random_tokens(3, 120, seed=99)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- jump_to: here

def stays_and_two_jumps(T, K):
    """One head's moves (B = 1): it stays, except at tokens 3 and 6, where it jumps and
    shifts +1."""
    shift = torch.zeros(1, T, 1, 2 * K + 1)
    shift[..., K] = 1.0                       # stay
    shift[0, [3, 6], 0] = F.one_hot(torch.tensor(K + 1), 2 * K + 1).float()
    jump = torch.zeros(1, T, 1)
    jump[0, [3, 6], 0] = 1.0
    return {"shift": shift, "jump": jump}


def test_a_jump_here_lands_on_the_tape_writers_cell():
    """With jump_to: here a jump at token t lands on cell t (the cell the tape writer writes
    now), then the shift applies: jumps at tokens 3 and 6 with shift +1, stays elsewhere."""
    layer = make_model(tape_writer=True, head_path="fourier", jump_to="here").layers[0]
    T, cells, K = 9, 16, layer.shift_range
    spectra = layer.head_spectra(stays_and_two_jumps(T, K), cells)
    cells_at = torch.fft.irfft(spectra, n=cells, dim=-1)[0, :, 0].argmax(-1)
    assert cells_at.tolist() == [15, 15, 15, 4, 4, 4, 7, 7, 7]  # cell -1 is cell 15


@pytest.mark.parametrize("jump_to", ["here", "content", "content-origin"])
@pytest.mark.parametrize("overrides", [
    {}, {"hard": False},
    # A hard content head picks among cells of equal content by their scores' last bit, which
    # the two modes round differently; equal cells read the same content, but address tags
    # would tell them apart, so this case has none (as the shipped config).
    {"window": 2, "content_heads": 1, "periods": []}])
def test_jump_here_parallel_and_recurrent_modes_agree(overrides, jump_to):
    if jump_to == "content-origin":
        jump_to, overrides = "content", {**overrides, "landing_origin": 1.0}
    model = make_model(tape_writer=True, head_path="fourier", jump_to=jump_to, jump_bias=0.0,
                       **overrides)
    tokens = random_tokens(3, 120)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-4, rtol=1e-4)


def test_a_content_jump_lands_on_the_cell_its_query_picks():
    """With jump_to: content a jump at token t lands on the cell its landing weighting puts it
    on (here given by hand: cell 2 at token 3, cell 5 at token 6), then the shift applies; a
    soft landing weighting lands as a mixture of cells, shifted."""
    layer = make_model(tape_writer=True, head_path="fourier", jump_to="content").layers[0]
    T, cells, K = 9, 16, layer.shift_range
    ctl = stays_and_two_jumps(T, K)
    landing = torch.zeros(1, T, 1, T)
    landing[0, :, 0, 8] = 1.0                 # unused where the head does not jump
    landing[0, 3, 0] = F.one_hot(torch.tensor(2), T).float()
    landing[0, 6, 0] = F.one_hot(torch.tensor(5), T).float()
    ctl["landing"] = landing
    weights = torch.fft.irfft(layer.head_spectra(ctl, cells), n=cells, dim=-1)[0, :, 0]
    assert weights.argmax(-1).tolist() == [15, 15, 15, 3, 3, 3, 6, 6, 6]  # cell -1 is cell 15
    landing[0, 6, 0] = torch.tensor([0.0, 0.25, 0.0, 0.75] + [0.0] * (T - 4))
    weights = torch.fft.irfft(layer.head_spectra(ctl, cells), n=cells, dim=-1)[0, :, 0]
    torch.testing.assert_close(weights[6, [2, 4]], torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(weights[6].sum(), torch.tensor(1.0))


def test_content_landings_follow_the_heads_queries_over_the_tape():
    """The landing weighting is a causal softmax of strength × cosine between each head's own
    query and the tape cells m_0 + v_j (j ≤ t), one-hot when hard; the tape writer's is zero."""
    layer = make_model(tape_writer=True, jump_to="content", read_heads=3).layers[0]
    u = torch.randn(2, 12, 32)
    ctl = layer.parallel_controls(u)
    rows = layer.initial_memory + layer.tape_values(ctl)
    cos = F.cosine_similarity(ctl["landing_query"][:, :, :, None], rows[:, None, None], dim=-1)
    scores = ctl["landing_strength"][..., None] * cos
    scores = scores.masked_fill(~torch.ones(12, 12, dtype=torch.bool).tril()[None, :, None],
                                float("-inf"))
    assert ctl["landing"].shape == (2, 12, 4, 12)
    assert (ctl["landing"][:, :, 0] == 0).all()
    expected = F.one_hot(scores.argmax(-1), 12).float()
    torch.testing.assert_close(ctl["landing"][:, :, 1:], expected)


def test_a_landing_origin_prior_starts_jumps_on_the_origin():
    """With landing_origin the origin's logit is added to cell 0's score: large, every
    untrained landing is on cell 0 (as jump_to: origin); the logit is each head's own and moves
    with training (it is an output of the controller, not a constant)."""
    layer = make_model(tape_writer=True, jump_to="content", landing_origin=30.0,
                       read_heads=3).layers[0]
    ctl = layer.parallel_controls(torch.randn(2, 40, 32))
    assert (ctl["landing"][:, :, 1:].argmax(-1) == 0).all()
    torch.testing.assert_close(ctl["landing_origin"].mean(), torch.tensor(30.0), atol=1.0,
                               rtol=0)
    plain = make_model(tape_writer=True, jump_to="content", read_heads=3).layers[0]
    landed = plain.parallel_controls(torch.randn(2, 40, 32))["landing"][:, :, 1:].argmax(-1)
    assert (landed > 0).float().mean() > 0.5  # without it, untrained landings scatter
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="landing_origin needs jump_to: content"):
        make_model(tape_writer=True, landing_origin=1.0)


def test_jump_here_needs_the_tape():
    from pntm.errors import ConfigError
    with pytest.raises(ConfigError, match="jump_to 'here' needs"):
        make_model(jump_to="here", head_path="fourier")
    with pytest.raises(ConfigError, match="jump_to 'content' needs"):
        make_model(jump_to="content")
    with pytest.raises(ConfigError, match="jump_to"):
        make_model(jump_to="there")


def test_low_rank_state_maps_are_queries_against_state_keys():
    """state_rank r: A_t[i, j] = softmax_j(q_t[i] . k_j / |k_j| + b[i, j]), computed by hand
    here; the bias starts as stay_bias on the diagonal; a hand-set query picks any state."""
    model = make_model(state_heads=2, states=6, state_rank=3)
    machine = model.layers[0].machine
    assert machine.to_maps.out_features == 2 * 6 * 3
    assert torch.equal(machine.map_bias[1], torch.eye(6) * 2.0)
    h = torch.randn(2, 5, machine.to_maps.in_features)
    q = machine.to_maps(h).view(2, 5, 2, 6, 3)
    by_hand = torch.zeros(2, 5, 2, 6, 6)
    for head in range(2):
        for i in range(6):
            for j in range(6):
                key = machine.state_keys[head, j]
                by_hand[:, :, head, i, j] = (q[:, :, head, i] @ key / key.norm()
                                             + machine.map_bias[head, i, j])
    torch.testing.assert_close(machine.logits(h), by_hand)
    torch.testing.assert_close(machine.matrices(h), by_hand.softmax(-1))
    for target in range(6):  # a query along key `target`, scaled up, sends every state there
        with torch.no_grad():
            machine.to_maps.weight.zero_()
            key = machine.state_keys[0, target] / machine.state_keys[0, target].norm()
            machine.to_maps.bias.copy_((1000 * key).repeat(2 * 6))
            machine.state_keys[1] = machine.state_keys[0]
        assert (machine.matrices(h).argmax(-1) == target).all()


@pytest.mark.parametrize("values", [False, True])
def test_state_resets_parallel_and_recurrent_agree(values):
    # random reset weights (they start at zero), so resets happen in the run
    model = make_model(state_heads=2, states=5, state_resets=True, state_values=values)
    with torch.no_grad():
        for layer in model.layers:
            layer.machine.to_reset.weight.normal_(0, 2.0)
    tokens = random_tokens(3, 200)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("values", [False, True])
def test_state_heads_driven_by_the_token_parallel_and_recurrent_agree(values):
    """``state_input: token``, with the window and valued or one-hot heads: the recurrent
    mode is the parallel pass, token by token."""
    model = make_model(state_heads=2, states=5, state_values=values, window=3,
                       state_input="token")
    tokens = random_tokens(3, 150)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_state_heads_driven_by_the_token_do_not_see_the_window():
    """``state_input: token``: the states after ``t`` do not change when only the inputs
    before each token (the window) change, while the layer's controller output does; with
    the default the states do change. The heads' controller is made last, so a seed's other
    weights are unchanged."""
    plain, layer = layers_without_and_with({"state_input": "token"}, ("state_controller.",),
                                           d_model=16, d_ff=32, memory_width=8, window=3,
                                           state_heads=2, states=5)
    with torch.no_grad():  # maps that move with their input, so a change would show
        for each in (plain, layer):
            each.machine.to_maps.weight.normal_(0, 3.0)
    u, previous = torch.randn(2, 6, 16), torch.randn(2, 6, 3, 16)
    with torch.no_grad():
        for each, blind in ((layer, True), (plain, False)):
            ctl = each.eval().controls(u, previous)
            other = each.controls(u, previous.flip(2))
            assert not torch.allclose(ctl["h"], other["h"], atol=1e-3)
            assert torch.equal(ctl["states"], other["states"]) == blind


@pytest.mark.parametrize("extra", [
    {},                                                       # a learned writer
    {"tape_writer": True, "content_heads": 1, "jump_to": "content", "state_heads": 2,
     "states": 5, "state_values": True, "work_tape": True},   # the shipped config's parts
])
def test_window_scope_memory_parallel_and_recurrent_agree(extra):
    model = make_model(window=3, window_scope="memory", **extra)
    tokens = random_tokens(3, 150)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


def test_window_scope_memory_feeds_the_window_to_writes_and_queries_only():
    """``window_scope: memory``: when only the inputs before each token change, what is
    written (erase, add) and what content addressing seeks (queries, strengths, landings)
    change, while the moves, the state heads and ``h`` (the layer's output term) do not; the
    token controller is made last, so a seed's other weights are unchanged."""
    config = dict(d_model=16, d_ff=32, memory_width=8, window=3, tape_writer=True,
                  content_heads=1, jump_to="content", state_heads=2, states=5)
    _, layer = layers_without_and_with({"window_scope": "memory"}, ("token_controller.",),
                                       **config)
    layer.eval()
    with torch.no_grad():  # maps that move with their input, so a change would show
        layer.machine.to_maps.weight.normal_(0, 3.0)
        layer.to_shift.weight.normal_(0, 3.0)
    u, previous = torch.randn(2, 6, 16), torch.randn(2, 6, 3, 16)
    with torch.no_grad():
        ctl, other = layer.controls(u, previous), layer.controls(u, previous.flip(2))
    for key in ("h", "shift", "jump", "states"):
        assert torch.equal(ctl[key], other[key]), key
    for key in ("erase", "add", "query", "strength", "landing_query", "landing_strength"):
        assert not torch.allclose(ctl[key], other[key], atol=1e-4), key


def test_window_scope_needs_a_window():
    with pytest.raises(ConfigError, match="window_scope needs a window"):
        PNTMConfig(window_scope="memory")
    with pytest.raises(ConfigError, match="window_scope"):
        PNTMConfig(window=2, window_scope="moves")


def test_state_input_needs_state_heads():
    with pytest.raises(ConfigError, match="state_input needs state_heads"):
        PNTMConfig(state_input="token")
    with pytest.raises(ConfigError, match="state_input"):
        PNTMConfig(state_heads=1, state_input="window")


def test_window_dropout_hides_the_window_of_whole_training_sequences_only():
    """``window_dropout``: in training each sequence either sees its window or sees none (its
    controls then equal those of a layer fed zeros, as before the first token), both occur,
    and at evaluation every sequence sees its window (the model without dropout)."""
    torch.manual_seed(0)
    layer = PNTMLayer(d_model=16, d_ff=32, memory_width=8, window=3, window_dropout=0.5)
    u = torch.randn(64, 7, 16)
    with torch.no_grad():
        full = layer.controls(u, torch.stack([F.pad(u, (0, 0, k, 0))[:, :7]
                                              for k in (1, 2, 3)], 2))["h"]
        blind = layer.controls(u, torch.zeros(64, 7, 3, 16))["h"]
        layer.train()
        torch.manual_seed(1)
        seen = layer.parallel_controls(u)["h"]
        layer.eval()
        evaluated = layer.parallel_controls(u)["h"]
    kept = torch.isclose(seen, full).flatten(1).all(1)
    hidden = torch.isclose(seen, blind).flatten(1).all(1)
    assert bool((kept ^ hidden).all()) and 10 < int(hidden.sum()) < 54
    torch.testing.assert_close(evaluated, full)


def test_window_dropout_needs_a_window():
    with pytest.raises(ConfigError, match="window_dropout needs a window"):
        PNTMConfig(window_dropout=0.5)
    with pytest.raises(ConfigError, match="window_dropout"):
        PNTMConfig(window=3, window_dropout=1.0)
