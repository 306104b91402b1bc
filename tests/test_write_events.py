"""Learned write heads: the write-event path (pntm.ops.write_events) against the dense sequential
memory recurrence, forward and backward; the chunked soft memory scan against the whole scan;
the recurrent mode against the parallel pass, untrained and after a short training run."""

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from helpers import (brute_force_jump_gradient, one_hot_moves, random_case, run_recurrent,
                     sample_tokens)
from pntm.errors import ConfigError
from pntm.models.pntm import PNTM
from pntm.ops.content_addressing import content_weights
from pntm.ops.hard_heads import head_positions
from pntm.ops.write_events import (event_read, live_writes, sequential_content_reads,
                                   sequential_reads, sequential_reference, sequential_weights,
                                   soft_reads_over_writes, written_rows)

SEP = 2
VOCAB = 9


def test_a_small_case_by_hand():
    """One write head and one read head on the same path: stay, stay, right, jump back.
    W = 1, erase 1/2, add t + 1, m_0 = 0.1. The write head visits 0, 0, 1, 0 (BOS lands on 0)."""
    moves = torch.tensor([[[1, 1], [0, 0], [1, 1], [0, 0]]])
    jump = torch.tensor([[[0., 0.], [0., 0.], [0., 0.], [1., 1.]]], requires_grad=True)
    erase = torch.full((1, 4, 1), 0.5, requires_grad=True)
    add = torch.arange(1., 5.).view(1, 4, 1).requires_grad_()
    table = torch.zeros(2, 1)
    contents, _ = event_read(one_hot_moves(moves, 1), jump, erase, add, table, 0.1, 6)
    # cell 0: 0.1 -> 0.05 + 1 = 1.05 -> 0.525 + 2 = 2.525; cell 1: 0.1 -> 0.05 + 3 = 3.05;
    # jump back to cell 0: 1.2625 + 4 = 5.2625
    assert contents.flatten().tolist() == pytest.approx([1.05, 2.525, 3.05, 5.2625])
    contents[0, 3].sum().backward()  # the last read: ∂/∂a_3 = 1, ∂/∂a_1 = 1/2, ∂/∂a_0 = 1/4
    assert add.grad.flatten().tolist() == pytest.approx([0.25, 0.5, 0.0, 1.0])
    # ∂/∂e_t = -(product of later keeps) * (the cell before write t)
    assert erase.grad.flatten().tolist() == pytest.approx([-0.025, -0.525, 0.0, -2.525])


def assert_same_reads_and_gradients(inputs, cells, initial=0.1, horizon=None, before=None):
    B, T, heads, _ = inputs[0].shape
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(B, T, heads - 1, inputs[2].shape[-1], generator=g),
             torch.randn(B, T, heads - 1, 3, generator=g)]
    fast = event_read(*inputs, initial, cells, horizon, before)
    fast_grads = torch.autograd.grad(fast, inputs, grads)
    slow = sequential_reference(*inputs, initial, cells, before)
    slow_grads = torch.autograd.grad(slow, inputs, grads)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    for name, a, b in zip(["shift", "jump", "erase", "add", "table"], fast_grads, slow_grads):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, atol=2e-5, rtol=0, msg=name)


@pytest.mark.parametrize("B,T,H,K,jump_rate", [
    (3, 1, 2, 1, 0.3),      # one token
    (2, 60, 2, 1, 0.2),     # overwrites, stays, left moves, jumps
    (2, 40, 1, 2, 0.0),     # shift range 2, never a jump
    (1, 50, 2, 1, 1.0),     # a jump at every step: everything writes cells 0..K
    (1, 1000, 2, 1, 0.01),  # long
])
def test_event_path_equals_the_sequential_memory_recurrence(B, T, H, K, jump_rate):
    inputs = random_case(B, T, H, K, 3, seed=T, jump_rate=jump_rate)
    assert_same_reads_and_gradients(inputs, cells=K * T + 7)


def test_a_read_before_the_write_by_hand():
    """The case above with a second read head on the writer's path that reads before each
    token's write: M_{t-1}[c_t]. The writer visits 0, 0, 1, 0, so that head reads 0.1 (m_0),
    1.05, 0.1 (cell 1 unwritten), 2.525; its gradient reaches the writes before, not the one
    of its own token."""
    moves = torch.tensor([[[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0]]])
    jump = torch.tensor([[[0., 0., 0.], [0., 0., 0.], [0., 0., 0.], [1., 1., 1.]]])
    erase = torch.full((1, 4, 1), 0.5, requires_grad=True)
    add = torch.arange(1., 5.).view(1, 4, 1).requires_grad_()
    table = torch.zeros(2, 1)
    before = torch.tensor([False, True])
    contents, _ = event_read(one_hot_moves(moves, 1), jump, erase, add, table, 0.1, 6,
                             before=before)
    assert contents[0, :, 0, 0].tolist() == pytest.approx([1.05, 2.525, 3.05, 5.2625])
    assert contents[0, :, 1, 0].tolist() == pytest.approx([0.1, 1.05, 0.1, 2.525])
    contents[0, 3, 1].sum().backward()  # 2.525 = (0.1 / 2 + 1) / 2 + 2
    assert add.grad.flatten().tolist() == pytest.approx([0.5, 1.0, 0.0, 0.0])
    assert erase.grad.flatten().tolist() == pytest.approx([-0.05, -1.05, 0.0, 0.0])


@pytest.mark.parametrize("B,T,H,K,jump_rate,before", [
    (3, 1, 2, 1, 0.3, [True, False]),
    (2, 60, 2, 1, 0.2, [False, True]),
    (2, 40, 3, 2, 0.0, [True, False, True]),
    (1, 50, 1, 1, 1.0, [True]),
    (1, 1000, 2, 1, 0.01, [False, True]),
])
def test_reads_before_the_write_equal_the_sequential_memory_recurrence(B, T, H, K, jump_rate,
                                                                       before):
    """Heads that read M_{t-1}: forward and every gradient (the shift and jump gradients of
    their positions included) as the dense recurrence's, with overwrites, stays, jumps."""
    inputs = random_case(B, T, H, K, 3, seed=T + 1, jump_rate=jump_rate)
    assert_same_reads_and_gradients(inputs, cells=K * T + 7, before=torch.tensor(before))


def test_a_read_before_the_write_on_the_writers_cell_sees_the_previous_value():
    """A head tied to the writer (the same moves) reading before the write sees exactly what
    the head reading after the write saw one token earlier on that cell, or m_0."""
    T, K = 80, 1
    inputs = random_case(2, T, 1, K, 4, seed=5, jump_rate=0.1)
    moves = inputs[0].argmax(-1) - K
    tied = torch.cat([moves, moves[..., :1], moves[..., :1]], 2)
    jump = inputs[1].detach()
    jump = torch.cat([jump, jump[..., :1], jump[..., :1]], 2)
    contents, _ = event_read(one_hot_moves(tied, K), jump, inputs[2], inputs[3], inputs[4],
                             0.1, K * T + 7, before=torch.tensor([False, False, True]))
    cell = head_positions(tied[..., 0], jump[..., 0] > 0.5)
    for b in range(2):
        for t in range(T):
            earlier = [s for s in range(t) if cell[b, s] == cell[b, t]]
            want = contents[b, earlier[-1], 1] if earlier else torch.full((4,), 0.1)
            torch.testing.assert_close(contents[b, t, 2], want)


def test_many_writes_to_one_cell_and_reads_before_any_write():
    """The write head stays on cell 0 for 30 tokens, then walks right; one read head walks left
    from the start (cells never written, wrapping around), one follows the writer."""
    T, K = 60, 1
    moves = torch.zeros(1, T, 3, dtype=torch.long)
    moves[0, 0] = 1
    moves[0, 30:, 0] = 1
    moves[0, 1:, 1] = -1
    moves[0, 1:, 2] = moves[0, 1:, 0]
    inputs = random_case(1, T, 2, K, 4, seed=0, jump_rate=0.0)
    inputs[0] = one_hot_moves(moves, K)
    cell = head_positions(moves, torch.zeros_like(moves, dtype=torch.bool))
    assert cell[0, 29, 0] == 0 and cell[0, 5, 1] < 0  # the set-up is what it says
    assert_same_reads_and_gradients(inputs, cells=T + 6)


@pytest.mark.parametrize("horizon", [1, 3, 7])
def test_write_head_jump_gradient_sums_the_next_horizon_steps(horizon):
    """±Σ_{o<h, no jump in (t, t+o]} (G_{t+o}[x_t + c_{t+o} - c_t] - G_{t+o}[c_{t+o}]), summed
    by brute force from the dense reference's weight gradients G (write and read heads)."""
    B, T, K, cells = 2, 40, 1, 48
    shift, jump, erase, add, table = random_case(B, T, 2, K, 3, seed=horizon, jump_rate=0.2)
    grads = [torch.randn(B, T, 2, 3), torch.randn(B, T, 2, 3)]
    torch.autograd.backward(event_read(shift, jump, erase, add, table, 0.1, cells, horizon),
                            grads)
    weights = sequential_weights(shift, jump, cells).detach().requires_grad_()
    G, = torch.autograd.grad(sequential_reads(weights, erase, add, table, 0.1), [weights], grads)
    cell = torch.remainder(head_positions(shift.argmax(-1) - K, jump > 0.5), cells)
    expected = brute_force_jump_gradient(G, shift, jump, cell, cells, horizon)
    torch.testing.assert_close(jump.grad, expected, atol=1e-5, rtol=1e-5)


def model(**overrides):
    torch.manual_seed(0)
    # m_0 = 0.1: with the default 1e-6 the erase gradients (∝ the cell before the write, m_0 on
    # a fresh cell) are ~1e-6, the size of the Fourier reference's rounding in its weightings
    config = {"layers": 2, "read_heads": 2, "d_model": 32, "d_ff": 64, "memory_width": 8,
              "tape_writer": False, "initial_memory": 0.1}
    return PNTM(VOCAB, SEP, **{**config, **overrides})


def logits_and_grads(net, tokens):
    logits = net(tokens)
    (logits.sin() * torch.linspace(-1, 1, VOCAB)).sum().backward()
    return logits.detach(), {k: p.grad.clone() for k, p in net.named_parameters()
                             if p.grad is not None}


def assert_same_model_outputs(results):
    (fast, fast_grads), (reference, reference_grads) = results
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=1e-5)
    assert fast_grads.keys() == reference_grads.keys()
    for key, expected in reference_grads.items():
        scale = expected.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(fast_grads[key] / scale, expected / scale, atol=3e-5, rtol=0,
                                   msg=key)


@pytest.mark.parametrize("shift_range,jump_bias", [(1, 0.0), (2, -20.0)])
def test_model_event_path_equals_the_memory_scan(shift_range, jump_bias):
    results = []
    for path in ("auto", "scan"):
        net = model(memory_path=path, jump_horizon=None, shift_range=shift_range,
                    jump_bias=jump_bias).train()
        with mock.patch("pntm.models.pntm_reads.event_read", wraps=event_read) as events:
            results.append(logits_and_grads(net, sample_tokens(2, 120, VOCAB)))
        assert events.called == (path == "auto")  # auto takes the event path, scan does not
    assert_same_model_outputs(results)


def test_relaxed_write_head_chunked_scan_equals_the_whole_scan():
    results = []
    for path in ("auto", "scan"):
        net = model(memory_path=path, relax=[0.5, 0.9], memory_chunk=7).train()
        net.set_training_progress(0.0)  # soft heads: the write head is relaxed too
        assert net.layers[0].relaxing() and bool(net.layers[0].relaxed_mask[0])
        results.append(logits_and_grads(net, sample_tokens(2, 40, VOCAB)))
    assert_same_model_outputs(results)


def toy_training_step(net, optimizer, batch) -> float:
    """One step on the toy task of these tests (predict the token written 3 steps back)."""
    logits = net(batch)[:, 3:]
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, :-3].reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def decodes_as_the_parallel_pass_while_training(net, tokens, relax=False):
    """Recurrent decoding equals the parallel pass, then after 10 toy training steps, then
    after 10 more (with ``relax``, each 10 steps go from the relax phase to hard heads)."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    for step in range(2):
        net.eval()
        with torch.no_grad():
            torch.testing.assert_close(run_recurrent(net, tokens), net(tokens), atol=1e-5,
                                       rtol=1e-5)
        net.train()
        for inner in range(10):
            if relax:
                net.set_training_progress(0.1 * inner)  # relaxed reads, then hard
            toy_training_step(net, optimizer, sample_tokens(8, 24, VOCAB, seed=10 * step + inner))


def test_recurrent_decoding_equals_the_parallel_pass_untrained_and_trained():
    """A learned hard write head decodes with one row written and one read per head and token;
    the outputs equal the parallel (event) pass before and after 30 training steps on a toy
    task (predict the token written 3 steps back), which move the write head's choices."""
    net = model(jump_bias=0.0, write_bias=1.0)
    tokens = sample_tokens(2, 64, VOCAB)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(net, tokens), net(tokens), atol=1e-5, rtol=1e-5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for step in range(30):
        losses.append(toy_training_step(net, optimizer, sample_tokens(16, 24, VOCAB,
                                                                      seed=100 + step)))
    assert sum(losses[-5:]) < sum(losses[:5])  # it trained
    assert not torch.equal(before["layers.0.to_shift.weight"],
                           net.state_dict()["layers.0.to_shift.weight"])
    net.eval()
    with torch.no_grad():
        state = net.init_state(2, 64, tokens.device)
        assert state["layers"][0].positions is not None  # integer cells, not spectra
        torch.testing.assert_close(run_recurrent(net, tokens), net(tokens), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_memory_chunk_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="memory_chunk"):
        PNTM(VOCAB, SEP, memory_chunk=bad)


def test_bench_write_variants():
    from pntm.tools.bench import bench_config, bench_model, parse_models

    assert parse_models("pntm-write,pntm-write-relaxed") == ["pntm-write", "pntm-write-relaxed"]
    hard, relaxed = bench_model("pntm-write").train(), bench_model("pntm-write-relaxed").train()
    assert not hard.config["tape_writer"] and bench_config("pntm-write")["tape_writer"] is False
    assert all(layer.uses_positions() for layer in hard.layers)
    assert all(layer.relaxing() and bool(layer.relaxed_mask[0]) for layer in relaxed.layers)
    # with a content head the writer stays hard and the relaxed reads attend over its writes
    over_writes = bench_model("pntm-write-content-relaxed").train()
    assert all(layer.reads_over_writes() for layer in over_writes.layers)
    assert not any(layer.reads_over_writes()
                   for layer in bench_model("pntm-content-relaxed").train().layers)


@pytest.mark.parametrize("progress", [0.0, 1.0])
def test_the_tape_writer_never_takes_the_learned_writer_paths(progress):
    """The trained default (tape_writer: true) keeps its own paths, hard and relaxed."""
    net = model(tape_writer=True, relax=[0.5, 0.9]).train()
    net.set_training_progress(progress)
    with mock.patch("pntm.models.pntm_reads.event_read") as events, \
            mock.patch("pntm.models.pntm_layer.chunked_memory_reads") as chunks:
        net(sample_tokens(2, 30, VOCAB)).sum().backward()
    assert not events.called and not chunks.called


def test_live_writes_by_hand():
    """Writes to cells 0, 1, 0, 2, 1: the write at 0 is overwritten at 2, the one at 1 at 4."""
    live = live_writes(torch.tensor([[0, 1, 0, 2, 1]]))[0].int().tolist()
    assert live == [[1, 0, 0, 0, 0],
                    [1, 1, 0, 0, 0],
                    [0, 1, 1, 0, 0],
                    [0, 1, 1, 1, 0],
                    [0, 0, 1, 1, 1]]


@pytest.mark.parametrize("T,K,jump_rate", [(1, 1, 0.0), (50, 1, 0.2), (300, 2, 0.02)])
def test_content_reads_over_written_cells_equal_the_dense_memory(T, K, jump_rate):
    """Content heads under a learned writer: the written rows (one event read), masked by
    liveness, equal soft content addressing over the dense memory's written cells, forward
    and in the gradients of erase, add, query, strength and the tags. (The write head's moves
    get the straight-through gradient of a read that follows it, not the dense one.)"""
    B, W, H_c = 2, 3, 2
    shift, jump, erase, add, table = random_case(B, T, 0, K, W, seed=T, jump_rate=jump_rate)
    g = torch.Generator().manual_seed(5)
    query = torch.randn(B, T, H_c, W, generator=g).requires_grad_()
    strength = (3 * torch.rand(B, T, H_c, generator=g)).requires_grad_()
    cells = 2 * K * T + 6
    rows, row_tags, cell = written_rows(shift, jump, erase, add, table, 0.1, cells)
    weights = content_weights(query, strength, rows, causal=False, strictly_earlier=False,
                              temperature=1.0, hard=False, allowed=live_writes(cell))
    fast = (torch.einsum("bthj,bjw->bthw", weights, rows),
            torch.einsum("bthj,bjw->bthw", weights, row_tags))
    slow = sequential_content_reads(sequential_weights(shift, jump, cells), erase, add, table,
                                    0.1, query, strength)
    leaves = [erase, add, query, strength, table]
    grads = [torch.randn(fast[0].shape, generator=g), torch.randn(fast[1].shape, generator=g)]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    fast_grads = torch.autograd.grad(fast, leaves, grads)
    slow_grads = torch.autograd.grad(slow, leaves, grads)
    for name, a, b in zip(["erase", "add", "query", "strength", "table"], fast_grads, slow_grads):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, atol=2e-5, rtol=0, msg=name)


@pytest.mark.parametrize("T,K,jump_rate", [(1, 1, 0.0), (40, 1, 0.2), (300, 2, 0.02)])
def test_soft_reads_over_written_cells_equal_the_dense_memory(T, K, jump_rate):
    """Soft (relaxed) read heads under a hard learned writer: attention over the live writes
    with scores w_t[c_s] equals reading the dense memory, forward and in the gradients of the
    erase and add vectors and of the soft heads' shifts and jumps (the writer's moves get no
    gradient from these reads: which cell a write went to is only an index)."""
    B, W, H = 2, 3, 2
    shift, jump, erase, add, table = random_case(B, T, 0, K, W, seed=T, jump_rate=jump_rate)
    g = torch.Generator().manual_seed(7)
    soft_shift = torch.randn(B, T, H, 2 * K + 1, generator=g).softmax(-1).requires_grad_()
    soft_jump = torch.rand(B, T, H, generator=g).requires_grad_()
    cells = 2 * K * T + 6
    rows, _, cell = written_rows(shift, jump, erase, add, table, 0.1, cells)
    soft = sequential_weights(soft_shift, soft_jump, cells)
    fast = soft_reads_over_writes(soft, rows, cell, 0.1)
    dense = torch.cat([sequential_weights(shift, jump, cells), soft], 2)
    slow, _ = sequential_reads(dense, erase, add, table, 0.1)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    leaves, out = [erase, add, soft_shift, soft_jump], torch.randn(fast.shape, generator=g)
    fast_grads = torch.autograd.grad(fast, leaves, out, retain_graph=True)  # soft is shared
    slow_grads = torch.autograd.grad(slow, leaves, out)
    for name, a, b in zip(["erase", "add", "soft shift", "soft jump"], fast_grads, slow_grads):
        scale = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a / scale, b / scale, atol=2e-5, rtol=0, msg=name)


def test_soft_reads_over_writes_by_hand():
    """Writes to cells 0, 1, 0 (values 1, 2, 3), m_0 = 0.5; a reader at t = 2 with weight 0.25
    on cell 0, 0.5 on cell 1 and 0.25 on cell 2 (never written) reads
    0.25·3 + 0.5·2 + 0.25·0.5 (the first write to cell 0 is overwritten)."""
    rows = torch.tensor([[[1.0], [2.0], [3.0]]])
    weights = torch.zeros(1, 3, 1, 4)
    weights[0, 2, 0, :3] = torch.tensor([0.25, 0.5, 0.25])
    weights[0, 0, 0, 1] = 1.0  # t = 0: all weight on cell 1, not written yet
    reads = soft_reads_over_writes(weights, rows, torch.tensor([[0, 1, 0]]), 0.5)
    assert reads[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.0, 0.75 + 1.0 + 0.125])


def test_content_heads_with_a_learned_writer_decode_as_the_parallel_pass():
    """A learned writer with a content head: the parallel pass (write events, or the whole
    memory scan) equals recurrent decoding, before and after a few training steps; the writer
    stays hard in the relax phase (only hard writes define which cells are written)."""
    net = model(content_heads=1, jump_bias=0.0, write_bias=0.0, relax=[0.5, 0.9])
    net.set_training_progress(0.0)
    assert net.layers[0].relaxing() and not bool(net.layers[0].relaxed_mask[0])
    decodes_as_the_parallel_pass_while_training(net, sample_tokens(2, 80, VOCAB), relax=True)
    results = []
    for path in ("auto", "scan"):
        twin = model(content_heads=1, memory_path=path, jump_bias=0.0, write_bias=0.0).train()
        twin.load_state_dict(net.state_dict())
        results.append(logits_and_grads(twin, sample_tokens(2, 60, VOCAB)))
    assert_same_model_outputs(results)


def test_relax_phase_reads_the_writes_instead_of_the_memory_scan():
    """A hard learned writer (content heads keep it hard) with soft read heads: the relax phase
    reads its writes (soft heads by attention over the live writes) with the same outputs as
    the whole memory scan, and the same gradients for every parameter that the writer's
    straight-through moves do not reach (one layer; exact jump gradients)."""
    results = []
    for path in ("auto", "scan"):
        net = model(layers=1, content_heads=1, memory_path=path, jump_bias=0.0, write_bias=0.5,
                    relax=[0.5, 0.9], relaxed_heads=1, jump_horizon=None).train()
        net.set_training_progress(0.0)
        layer = net.layers[0]
        assert layer.relaxing() and layer.relaxed_mask.tolist() == [False, True, False]
        with mock.patch("pntm.models.pntm_layer.chunked_memory_reads") as chunks, \
                mock.patch("pntm.models.pntm_reads.soft_reads_over_writes",
                           wraps=soft_reads_over_writes) as soft:
            results.append(logits_and_grads(net, sample_tokens(2, 50, VOCAB)))
        assert not chunks.called and soft.called == (path == "auto")
    (fast, fast_grads), (reference, reference_grads) = results
    torch.testing.assert_close(fast, reference, atol=2e-5, rtol=1e-5)
    n_shift = 2 * net.shift_range + 1
    same = {"to_logits.weight": None, "layers.0.out.weight": None, "layers.0.to_add.weight": None,
            "layers.0.to_erase.weight": None, "layers.0.to_query.weight": None,
            "layers.0.to_strength.weight": None,
            "layers.0.to_shift.weight": slice(n_shift, None),  # the read heads' rows
            "layers.0.to_jump.weight": slice(1, None)}
    for key, rows in same.items():
        a, b = fast_grads[key][rows or slice(None)], reference_grads[key][rows or slice(None)]
        scale = b.abs().max().clamp(min=1e-3)
        torch.testing.assert_close(a / scale, b / scale, atol=3e-5, rtol=0, msg=key)


@pytest.mark.parametrize("match", ["key", "context"])
def test_content_heads_with_a_learned_writer_compare_contents_only(match):
    with pytest.raises(ConfigError, match="content_match: content"):
        PNTM(VOCAB, SEP, tape_writer=False, content_heads=1, content_match=match,
             window=1)


def decodes_and_scans_as_the_parallel_pass(net, tokens, kwargs):
    """Recurrent decoding equals the parallel pass while ``net`` trains a little
    (``decodes_as_the_parallel_pass_while_training``); then the default path equals the whole
    memory scan forward and backward, for twins of the trained ``net`` (``model(**kwargs)``)."""
    decodes_as_the_parallel_pass_while_training(net, tokens)
    results = []
    for path in ("auto", "scan"):
        twin = model(**kwargs, memory_path=path, jump_horizon=None).train()
        twin.load_state_dict(net.state_dict())
        results.append(logits_and_grads(twin, sample_tokens(2, 60, VOCAB)))
    assert_same_model_outputs(results)


@pytest.mark.parametrize("tape_writer", [False, True])
def test_writer_reads_sits_on_the_write_head_and_reads_its_cell(tape_writer):
    """writer_reads adds a read head tied to the writer: it has no moves of its own (no
    parameters of its own beyond its share of the output), it is on the writer's cell at every
    step, and it reads that cell after the write, M_t[c_t]; parallel (write events or the
    tape's closed form) equals the whole memory scan, and recurrent decoding equals both,
    before and after a few training steps."""
    kwargs = dict(tape_writer=tape_writer, writer_reads=True, layers=1, jump_bias=0.0,
                  write_bias=0.0)
    net = model(**kwargs).eval()
    plain = model(**{**kwargs, "writer_reads": False})
    assert net.layers[0].to_shift.weight.shape == plain.layers[0].to_shift.weight.shape
    assert net.layers[0].read_heads == plain.layers[0].read_heads + 1
    tokens = sample_tokens(2, 60, VOCAB)
    layer = net.layers[0]
    with torch.no_grad():
        u = net.inputs(tokens)
        trace = layer.trace(u)
        torch.testing.assert_close(trace.weights[:, :, -1], trace.weights[:, :, 0])
        ctl = layer.parallel_controls(u)
        cells = layer.num_cells(tokens.shape[1])
        dense = sequential_reads(trace.weights, ctl["erase"], ctl["add"],
                                 layer.address_table(u.device), layer.initial_memory)[0]
        if not tape_writer:
            rows, _, _ = written_rows(ctl["shift"], ctl["jump"], ctl["erase"], ctl["add"],
                                      layer.address_table(u.device), layer.initial_memory,
                                      cells)
            torch.testing.assert_close(dense[:, :, -1], rows, atol=1e-5, rtol=1e-5)
    decodes_and_scans_as_the_parallel_pass(net, tokens, kwargs)


def test_read_before_write_reads_the_cell_before_the_tokens_write():
    """read_before_write: the head tied to the writer reads M_{t-1}[c_t], the dense
    recurrence's read before the write (the other heads still read after it); parallel (write
    events) equals the whole memory scan forward and backward, and recurrent decoding equals
    both, before and after a few training steps."""
    kwargs = dict(writer_reads=True, read_before_write=True, layers=1, jump_bias=0.0,
                  write_bias=0.0)
    net = model(**kwargs).eval()
    layer = net.layers[0]
    tokens = sample_tokens(2, 60, VOCAB)
    with torch.no_grad():
        u = net.inputs(tokens)
        trace = layer.trace(u)
        ctl = layer.parallel_controls(u)
        table = layer.address_table(u.device)
        read_heads = trace.weights.shape[2] - 1
        before = torch.arange(read_heads) == read_heads - 1
        dense = sequential_reads(trace.weights, ctl["erase"], ctl["add"], table,
                                 layer.initial_memory, before)[0]
        after = sequential_reads(trace.weights, ctl["erase"], ctl["add"], table,
                                 layer.initial_memory)[0]
        contents, _ = event_read(ctl["shift"], ctl["jump"], ctl["erase"], ctl["add"], table,
                                 layer.initial_memory, layer.num_cells(60), before=before)
        torch.testing.assert_close(contents, dense, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(dense[:, :, -1], after[:, :, -1])  # it does differ
        torch.testing.assert_close(dense[:, :, :-1], after[:, :, :-1])
    decodes_and_scans_as_the_parallel_pass(net, tokens, kwargs)


def test_read_before_write_in_the_relax_phase():
    """With a soft writer (no content head) the chunked scan equals the whole scan, and with a
    content head (the writer stays hard, soft heads read its writes) the relax phase equals the
    whole scan too."""
    kwargs = dict(writer_reads=True, read_before_write=True, relax=[0.5, 0.9])
    results = []
    for path in ("auto", "scan"):
        net = model(**kwargs, memory_path=path, memory_chunk=7).train()
        net.set_training_progress(0.0)
        results.append(logits_and_grads(net, sample_tokens(2, 30, VOCAB)))
    assert_same_model_outputs(results)
    content = dict(kwargs, content_heads=1, jump_horizon=None)
    outputs = []
    for path in ("auto", "scan"):
        net = model(**content, memory_path=path).train()
        net.set_training_progress(0.0)
        with torch.no_grad():
            outputs.append(net(sample_tokens(2, 40, VOCAB)))
    torch.testing.assert_close(outputs[0], outputs[1], atol=2e-5, rtol=1e-5)
    net = model(**content).eval()  # and hard, with the content head: decoding as the parallel
    tokens = sample_tokens(2, 40, VOCAB)
    with torch.no_grad():
        torch.testing.assert_close(run_recurrent(net, tokens), net(tokens), atol=1e-5,
                                   rtol=1e-5)


@pytest.mark.parametrize("overrides", [dict(writer_reads=False), dict(tape_writer=True)])
def test_read_before_write_needs_a_head_tied_to_a_learned_writer(overrides):
    with pytest.raises(ConfigError, match="read_before_write needs writer_reads"):
        model(**{"writer_reads": True, "read_before_write": True, **overrides})
