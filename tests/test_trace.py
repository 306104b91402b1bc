"""``PNTMLayer.trace``: what the heads do, checked by hand on heads with known moves and against
the layer's own output (the trace's weightings, erase and add vectors rebuild the memory and
the reads that ``forward`` computes)."""

import pytest
import torch
import torch.nn.functional as F

from pntm.models.pntm_layer import PNTMLayer
from pntm.ops.write_events import sequential_reads

torch.set_num_threads(1)  # tiny layers; the machine is shared

SMALL = {"d_model": 8, "d_ff": 8, "memory_width": 4, "read_heads": 2}


def steer(layer: PNTMLayer, moves: list[int], jumps: list[bool]) -> None:
    """Make every learned head take the move ``moves[h]`` and the jump ``jumps[h]`` at every
    token, whatever its input: zero weights and biases that decide."""
    K = layer.shift_range
    with torch.no_grad():
        layer.to_shift.weight.zero_()
        layer.to_jump.weight.zero_()
        bias = layer.to_shift.bias.view(layer.learned_heads, 2 * K + 1)
        bias.fill_(-10.0)
        for h, move in enumerate(moves):
            bias[h, move + K] = 10.0
        layer.to_jump.bias.copy_(torch.tensor([10.0 if j else -10.0 for j in jumps]))


@pytest.mark.parametrize("head_path", ["auto", "fourier"])
@pytest.mark.parametrize("tape_writer", [False, True])
def test_hard_heads_with_known_moves_are_one_hot_on_their_cells(head_path, tape_writer):
    torch.manual_seed(0)
    layer = PNTMLayer(**SMALL, shift_range=2, periods=[], min_cells=12, head_path=head_path,
                      tape_writer=tape_writer).eval()
    # the write head steps right; read head 1 steps left; read head 2 jumps and moves 2
    if tape_writer:
        steer(layer, [-1, 2], [False, True])
    else:
        steer(layer, [1, -1, 2], [False, False, True])
    B, T = 2, 7
    N = layer.num_cells(T)
    assert N == 15  # K·T + 1 cells: no head wraps onto a cell it has visited
    trace = layer.trace(torch.randn(B, T, 8))
    t = torch.arange(T)
    cells = torch.stack([t, (-2 - t) % N, torch.full_like(t, 2)], dim=1)  # (T, heads)
    expected = F.one_hot(cells, N).float().expand(B, T, 3, N)
    assert trace.weights.shape == (B, T, 3, N)
    assert torch.allclose(trace.weights, expected, atol=1e-6)
    assert trace.erase.shape == trace.add.shape == (B, T, 4)
    assert ((trace.erase > 0) & (trace.erase < 1)).all() and (trace.add.abs() < 1).all()
    assert trace.content is None and trace.states is None


def output_from_trace(layer: PNTMLayer, u: torch.Tensor, trace) -> torch.Tensor:
    """The layer's output rebuilt from the trace: a dense memory written step by step with the
    write head's weighting, erase and add vectors, read by the read and content heads'
    weightings (contents and address tags), and the state heads' reads."""
    heads = trace.weights if trace.content is None else torch.cat([trace.weights, trace.content],
                                                                  dim=2)
    contents, tags = sequential_reads(heads, trace.erase, trace.add,
                                      layer.address_table(u.device), layer.initial_memory)
    reads = [layer.parallel_controls(u)["h"], torch.cat([contents, tags], dim=-1).flatten(2)]
    if trace.states is not None:
        reads.append(layer.machine.read(trace.states).flatten(2))
    return u + layer.out(torch.cat(reads, dim=-1))


@pytest.mark.parametrize("config", [
    {"tape_writer": True},                            # integer positions on the tape
    {"tape_writer": True, "head_path": "fourier"},    # the Fourier scan, closed-form tape
    {"tape_writer": True, "memory_path": "scan"},     # the memory scan
    {"tape_writer": False},                           # write events
    {"tape_writer": False, "hard": False},            # soft heads, chunked memory scan
    {"tape_writer": True, "content_heads": 2, "state_heads": 2, "states": 4},
    {"tape_writer": True, "content_heads": 1, "content_match": "context", "window": 2},
    {"tape_writer": False, "content_heads": 1},      # content heads over a learned writer
    {"tape_writer": False, "content_heads": 1, "relax": [0.2, 0.8], "train": True},
    {"tape_writer": True, "content_heads": 1, "state_heads": 1, "states": 4,
     "relax": [0.2, 0.8], "train": True},
], ids=str)
def test_the_trace_reproduces_the_layer_output(config):
    config = dict(config)
    train = config.pop("train", False)
    torch.manual_seed(0)
    layer = PNTMLayer(**SMALL, **config)
    layer.train(train)
    layer.set_training_progress(0.5)  # inside the relax phase, where there is one
    u = torch.randn(2, 9, 8)
    with torch.no_grad():
        trace = layer.trace(u)
        expected = layer(u)
    if train:
        assert layer.relaxing()
        assert trace.weights[:, :, 1:].max() < 0.99  # soft read heads
    assert torch.allclose(trace.weights.sum(-1), torch.ones(()), atol=1e-5)
    if trace.content is not None:
        assert torch.allclose(trace.content.sum(-1), torch.ones(()), atol=1e-5)
    assert torch.allclose(output_from_trace(layer, u, trace), expected, atol=1e-5)
