"""The work tape (``pntm.models.work_tape``): a stack worked out by hand, the write-event path
against the dense recurrence (forward and backward, long and extreme cases), and the layer's
parallel and recurrent modes with a work tape (untrained and trained)."""

import pytest
import torch
import torch.nn.functional as F

from helpers import layers_without_and_with, run_recurrent, sample_tokens
from pntm.errors import ConfigError
from pntm.models.pntm import PNTM
from pntm.models.pntm_config import PNTMConfig
from pntm.models.pntm_layer import PNTMLayer
from pntm.models.work_tape import WorkTape

SEP, VOCAB = 2, 9


def hand_controls(moves, jumps, erase, add):
    """Controls of one sequence (B = 1) by hand: moves in -1..1 (K = 1), 0/1 jumps, and the
    gated erase and add vectors."""
    return {"shift": F.one_hot(torch.tensor(moves) + 1, 3).float()[None],
            "jump": torch.tensor(jumps, dtype=torch.float)[None],
            "erase": torch.tensor(erase)[None], "add": torch.tensor(add)[None]}


def stack_controls():
    """push [1, 0]; push [0, 1]; pop; pop (below the bottom); jump to the origin; stay and
    write half-erase [0.2, 0.2]."""
    return hand_controls(moves=[1, 1, -1, -1, 0, 0], jumps=[0, 0, 0, 0, 1, 0],
                         erase=[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0],
                                [0.5, 0.5]],
                         add=[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0],
                              [0.2, 0.2]])


STACK_READS = [[1.0, 0.0],      # cell 0: the pushed value
               [0.0, 1.0],      # cell 1: the second push
               [1.0, 0.0],      # pop: back on cell 0, untouched
               [0.1, 0.1],      # pop below the bottom: cell -1, never written (m_0 = 0.1)
               [1.0, 0.0],      # jump: the origin, cell 0
               [0.7, 0.2]]      # 0.5 * [1, 0] + [0.2, 0.2]


@pytest.mark.parametrize("mode", ["events", "recurrent"])
def test_a_stack_worked_out_by_hand(mode):
    tape = WorkTape(d_ff=4, d_model=4, width=2, shift_range=1, initial=0.1)
    ctl, cells = stack_controls(), 8
    if mode == "events":
        reads = tape.read(ctl, cells)
    else:
        state = tape.initial_state(1, cells, "cpu")
        reads = torch.cat([tape.step({k: v[:, t:t + 1] for k, v in ctl.items()}, state)
                           for t in range(6)], 1)
        assert state.cell.tolist() == [0]
    torch.testing.assert_close(reads, torch.tensor([STACK_READS]))


def test_a_shut_gate_leaves_the_tape_exactly_as_it_was():
    """A cell read after 500 stays with the gate shut holds, to the bit, what was written."""
    torch.manual_seed(0)
    tape = WorkTape(d_ff=8, d_model=4, width=5, shift_range=1)
    h = torch.randn(1, 501, 8)
    with torch.no_grad():
        tape.to_write.bias[-1] = -100.0          # gate shut ...
        tape.to_moves.bias.zero_()
        tape.to_moves.bias[1] = 100.0            # ... staying on cell -1
    with torch.no_grad():
        ctl = tape.controls(h)
        ctl["erase"][:, 0], ctl["add"][:, 0] = 1.0, torch.tensor([0.3, -0.1, 0.7, 1e-7, -1.0])
        reads = tape.read(ctl, 1200)
    assert torch.equal(reads[0, -1], ctl["add"][0, 0])  # ... after the write at token 0
    assert set(ctl["erase"][0, 1:].unique().tolist()) == {0.0}


def test_the_head_never_jumps_unless_asked():
    """The default tape's head only shifts (no jump logit at all), however large its
    weights; ``jumps=True`` gives it the jump to the origin."""
    torch.manual_seed(0)
    h = 100 * torch.randn(2, 50, 8)
    still = WorkTape(d_ff=8, d_model=4, width=3, shift_range=2)
    assert still.to_moves.out_features == 5
    assert torch.equal(still.controls(h)["jump"], torch.zeros(2, 50))
    jumping = WorkTape(d_ff=8, d_model=4, width=3, shift_range=2, jumps=True)
    assert 0 < jumping.controls(h)["jump"].sum() < 100


def random_tape(width=4, K=2, seed=0, scale=20.0, gate_bias=0.0):
    """A work tape whose moves and gates are far from their initial biases: random shifts,
    jumps, overwrites, stays and a shut gate at some tokens."""
    torch.manual_seed(seed)
    tape = WorkTape(d_ff=16, d_model=8, width=width, shift_range=K, horizon=None,
                    gate_bias=gate_bias, jumps=True).double()
    with torch.no_grad():
        tape.to_moves.weight.mul_(scale)
        tape.to_write.weight.mul_(5.0)
    return tape


@pytest.mark.parametrize("length", [1, 2, 57, 1000])
def test_the_event_path_equals_the_dense_recurrence_forward_and_backward(length):
    tape = random_tape(seed=length)
    h = torch.randn(2, length, 16, dtype=torch.double, requires_grad=True)
    cells = 2 * length + 61
    events, dense = tape(h, cells), tape.reference(tape.controls(h), cells)
    torch.testing.assert_close(events, dense, atol=1e-12, rtol=0)
    ctl = tape.controls(h)
    moves = ctl["shift"].argmax(-1)
    if length > 50:  # the case covers what it should: every move, jumps, shut gates
        assert set(moves.unique().tolist()) == {0, 1, 2, 3, 4}
        assert ctl["jump"].sum() > 0 and (ctl["add"].abs().sum(-1) == 0).any()
    weights = torch.randn_like(events)
    params = [h, *tape.to_moves.parameters(), *tape.to_write.parameters()]
    got = torch.autograd.grad((events * weights).sum(), params)
    want = torch.autograd.grad((dense * weights).sum(), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("erase", [0.0, 1.0])
def test_extreme_erase_values(erase):
    """Erase exactly 0 (the values add up) and exactly 1 (the cell is replaced): both paths
    agree, forward and backward, on a head that keeps coming back to the same cells."""
    torch.manual_seed(1)
    T, W = 300, 3
    ctl = {"shift": F.one_hot(torch.randint(0, 3, (2, T)), 3).double().requires_grad_(),
           "jump": (torch.rand(2, T) < 0.05).double(),
           "erase": torch.full((2, T, W), erase, dtype=torch.double, requires_grad=True),
           "add": (0.1 * torch.randn(2, T, W, dtype=torch.double)).requires_grad_()}
    tape = WorkTape(d_ff=4, d_model=4, width=W, shift_range=1, horizon=None).double()
    events = tape.read(ctl, 2 * T + 61)
    dense = tape.reference(ctl, 2 * T + 61)
    torch.testing.assert_close(events, dense, atol=1e-12, rtol=0)
    inputs = [ctl["shift"], ctl["erase"], ctl["add"]]
    for g, w in zip(torch.autograd.grad(events.square().sum(), inputs),
                    torch.autograd.grad(dense.square().sum(), inputs)):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-9)


# ------------------------------------------------------------------------------- in a layer

def make_model(**overrides):
    torch.manual_seed(0)
    config = {"layers": 2, "read_heads": 2, "d_model": 32, "d_ff": 64, "memory_width": 8}
    config.update(overrides, work_tape=True)
    model = PNTM(VOCAB, SEP, **config).eval()
    with torch.no_grad():  # moves far from the initial tape, so the tape is really used
        for layer in model.layers:
            layer.work_tape.to_moves.weight.mul_(10.0)
    return model


SHIPPED = {key: value for key, value in PNTMConfig.run_default().as_dict().items()
           if key not in ("d_model", "d_ff", "memory_width", "work_tape", "work_tape_relax",
                          "work_tape_input")}


@pytest.mark.parametrize("overrides", [
    {},                                                      # learned writer: write events
    {"hard": False},                                         # soft heads, soft memory scan
    {"tape_writer": True, "window": 3, "content_heads": 1},  # the tape's position path
    SHIPPED,                                                 # the shipped config
    {**SHIPPED, "work_tape_input": "token"},                 # its own controller
])
def test_parallel_and_recurrent_modes_agree_with_a_work_tape(overrides):
    model = make_model(**overrides)
    tokens = sample_tokens(3, 150, VOCAB)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relax, drive, scope", [
    (False, "controller", "all"), (True, "controller", "all"), (False, "token", "all"),
    (False, "controller", "memory")])
def test_parallel_and_recurrent_modes_agree_after_training(relax, drive, scope):
    """30 Adam steps of the shipped config with a work tape (hard, or soft in the relax
    phase; driven by the layer's controller or its own; the window feeding the whole layer
    or only its memory, ``window_scope``), through its relax phase and value annealing: then
    parallel equals recurrent decoding, and the tape's weights moved."""
    model = make_model(**{**SHIPPED, "window_scope": scope}, work_tape_relax=relax,
                       work_tape_input=drive).train()
    before = model.layers[0].work_tape.to_write.weight.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    for step in range(30):
        model.set_training_progress(step / 30)
        tokens = sample_tokens(4, 30, VOCAB, seed=step)
        loss = F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not torch.equal(model.layers[0].work_tape.to_write.weight, before)
    model.eval()
    tokens = sample_tokens(3, 120, VOCAB, seed=99)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(model, tokens), model(tokens),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("drive", ["controller", "token"])
def test_a_layer_with_a_work_tape_starts_with_the_same_other_weights(drive):
    """The tape's modules (and its own controller, ``work_tape_input: token``) are made last:
    every other weight of a seed is unchanged."""
    layers_without_and_with({"work_tape": True, "work_tape_input": drive},
                            ("work_tape.", "work_tape_controller."),
                            d_model=16, d_ff=32, memory_width=8, window=3)


def test_the_tapes_own_controller_sees_the_token_not_the_window():
    """``work_tape_input: token``: the head's controls at ``t`` do not change when only the
    tokens before ``t`` change (the window), while the layer's controller output does."""
    torch.manual_seed(3)
    layer = PNTMLayer(d_model=16, d_ff=32, memory_width=8, window=3, work_tape=True,
                      work_tape_input="token").eval()
    u, previous = torch.randn(2, 5, 16), torch.randn(2, 5, 3, 16)
    with torch.no_grad():
        ctl = layer.controls(u, previous)
        other = layer.controls(u, previous.flip(2))  # (a constant added: LN removes it)
    assert not torch.allclose(ctl["h"], other["h"], atol=1e-3)
    for key in ("shift", "erase", "add"):
        torch.testing.assert_close(ctl["work"][key], other["work"][key])


def test_the_tape_starts_as_a_tape_and_its_trace_is_the_decoded_cells():
    """At the start the head moves one cell per token (``write_bias``) and writes (the gate
    open); the trace's cells are the recurrent mode's."""
    torch.manual_seed(0)
    model = PNTM(VOCAB, SEP, layers=1, d_model=16, d_ff=32, memory_width=8,
                 work_tape=True).eval()
    layer, tokens = model.layers[0], sample_tokens(2, 40, VOCAB)
    with torch.no_grad():
        cells = layer.trace(model.inputs(tokens)).work
        assert torch.equal(cells, torch.arange(40).expand(2, 40))
        state = model.init_state(2, 40, "cpu")
        decoded = []
        for t in range(40):
            _, state = model.step(tokens[:, t], state)
            decoded.append(state["layers"][0].work.cell)
    assert torch.equal(torch.stack(decoded, 1), cells)


def test_the_work_tape_must_be_on_or_off():
    with pytest.raises(ConfigError, match="work_tape must be"):
        PNTMConfig(work_tape="yes")


def test_inspect_draws_the_work_tape_head_and_its_gate():
    from pntm.tools.inspection import trace_pntm
    torch.manual_seed(0)
    model = PNTM(VOCAB, SEP, layers=1, d_model=16, d_ff=32, memory_width=8,
                 work_tape=True).eval()
    with torch.inference_mode():
        panels = {panel.title: panel for panel in trace_pntm(model, sample_tokens(1, 20, VOCAB))}
    head, gate = panels["work tape head"], panels["work tape: writes"]
    assert head.values.shape[1] == 20 and head.values.sum() == 20  # one cell per token
    assert gate.values.shape == (1, 20) and gate.values.all()       # the gate starts open


@pytest.mark.parametrize("length", [1, 40, 150])
def test_the_soft_tape_equals_the_dense_recurrence_forward_and_backward(length):
    """``work_tape_relax``'s soft phase: soft moves, jumps and gate, the memory scan in chunks
    of 64 tokens (recomputed in backward), against the step-by-step dense memory."""
    tape = random_tape(seed=length, scale=1.0)
    h = torch.randn(2, length, 16, dtype=torch.double, requires_grad=True)
    cells = 2 * length + 61
    soft, dense = tape(h, cells, soft=True), tape.reference(tape.controls(h, soft=True), cells)
    # the Fourier scan's phases are single precision: agreement to about 1e-7
    torch.testing.assert_close(soft, dense, atol=1e-6, rtol=1e-5)
    weights = torch.randn_like(soft)
    params = [h, *tape.to_moves.parameters(), *tape.to_write.parameters()]
    for g, w in zip(torch.autograd.grad((soft * weights).sum(), params),
                    torch.autograd.grad((dense * weights).sum(), params)):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_a_relaxed_tape_is_soft_in_the_relax_phase_then_hard():
    model = make_model(**SHIPPED, work_tape_relax=True).train()
    layer, tokens = model.layers[0], sample_tokens(2, 30, VOCAB)
    model.set_training_progress(0.1)
    assert layer.work_tape_soft()
    gate = layer.controls(*embedded(model, tokens))["work"]["erase"]
    assert ((gate > 0) & (gate < 1)).all()
    model(tokens).sum().backward()
    assert layer.work_tape.to_moves.weight.grad.abs().sum() > 0
    model.set_training_progress(0.8)
    assert not layer.work_tape_soft()
    shift = layer.controls(*embedded(model, tokens))["work"]["shift"]
    assert set(shift.detach().unique().tolist()) == {0.0, 1.0}
    model.eval()
    assert not layer.work_tape_soft()


def embedded(model, tokens):
    u = model.inputs(tokens)
    return u, torch.zeros(*u.shape[:2], model.layers[0].window, u.shape[-1])


def test_work_tape_relax_needs_a_work_tape():
    with pytest.raises(ConfigError, match="work_tape_relax needs work_tape"):
        PNTMConfig(work_tape_relax=True)
    with pytest.raises(ConfigError, match="work_tape_input needs work_tape"):
        PNTMConfig(work_tape_input="token")
    with pytest.raises(ConfigError, match="work_tape_input"):
        PNTMConfig(work_tape=True, work_tape_input="window")
