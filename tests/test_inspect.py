"""`pntm inspect`: a figure for every model, through the command line, and P-NTM head weightings
that are the ones the recurrent mode (greedy decoding) uses."""

import json
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import sets

from pntm.cli import main
from pntm.models import build_model, get_model_class
from pntm.tasks import Vocab
from pntm.tools.inspection import cell_window, fed_tokens, pntm_internals

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY_MODELS = {
    "pntm": ["model_config.d_model=16", "model_config.d_ff=16", "model_config.memory_width=8",
             "model_config.read_heads=2", "model_config.relaxed_heads=1"],
    "ntm": ["model_config.controller_size=16", "model_config.memory_cells=16",
            "model_config.memory_width=8"],
    "lstm": ["model_config.d_model=16", "model_config.num_layers=1"],
    "transformer": ["model_config.d_model=16", "model_config.layers=1", "model_config.heads=2",
                    "model_config.d_ff=16"],
}
TRAIN = ["train.batch_size=4", "train.early_stop.every=0", "train.eval_at_end=false"]


@pytest.mark.parametrize("model", TINY_MODELS)
def test_train_eval_inspect_through_the_cli(model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    train = tmp_path / "copy.jsonl"
    train.write_text("".join(json.dumps({"input": s, "target": s}) + "\n"
                             for s in ["0", "1", "01", "10", "110", "011"]))
    test = tmp_path / "test.jsonl"
    test.write_text("".join(json.dumps({"input": s, "target": s}) + "\n" for s in ["01", "0110"]))
    out, fig = tmp_path / "run", tmp_path / "fig.png"
    assert main(["train", "--data", str(train), "--model", model, "--steps", "3", "--out",
                 str(out), *sets(TINY_MODELS[model] + TRAIN)]) == 0
    assert main(["eval", str(out), "--data", str(test)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out), "0110", "--out", str(fig)]) == 0
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.stat().st_size < 300_000
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 and "wrote" in captured.err


def test_inspect_errors_are_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert main(["train", "--task", "parity", "--model", "lstm", "--steps", "1", "--out", str(out),
                 *sets(TINY_MODELS["lstm"] + TRAIN)]) == 0
    for argv, fragment in [
        (["inspect", str(out), "01x", "--out", str(tmp_path / "f.png")], "unknown token 'x'"),
        (["inspect", str(out), "01", "--out", str(tmp_path / "no" / "f.png")], "No such file"),
        (["inspect", str(tmp_path / "missing"), "01", "--out", str(tmp_path / "f.png")],
         "no run directory"),
        (["inspect", str(out), "01"], "--out"),
    ]:
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("pntm: error: ") and fragment in err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["inspect", str(out), "01", "--out", str(tmp_path / "f.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("extra", [{"tape_writer": True}, {"tape_writer": False},
                                   {"tape_writer": True, "window": 2}])
def test_pntm_weightings_are_those_of_the_recurrent_mode(extra):
    """The figure's weightings (parallel forward + the layer's pieces) equal the heads that
    greedy decoding carries in its recurrent state (spectra, or integer cells for hard heads),
    and sum to one on every step."""
    torch.manual_seed(0)
    vocab = Vocab(["0", "1"])
    model = build_model("pntm", len(vocab), vocab.sep_id,
                        {"d_model": 16, "d_ff": 16, "memory_width": 8, "read_heads": 2,
                         "layers": 2, **extra}).eval()
    tokens = torch.tensor([fed_tokens(vocab, list("0110"), list("0110"), True)])
    with torch.no_grad():
        recorded = pntm_internals(model, tokens)
        state = model.init_state(1, tokens.shape[1], "cpu")
        steps = []
        for t in range(tokens.shape[1]):
            _, state = model.step(tokens[:, t], state)
            steps.append([heads_now(s) for s in state["layers"]])
    for i, rec in enumerate(recorded):
        expected = torch.stack([step[i] for step in steps]).numpy()  # (T, heads, cells)
        assert rec["weights"].shape == expected.shape
        assert abs(rec["weights"] - expected).max() < 1e-4
        assert abs(rec["weights"].sum(-1) - 1).max() < 1e-4
        assert rec["erase"].shape == rec["add"].shape == (tokens.shape[1], 8)


def heads_now(layer_state):
    """The heads' weightings (heads, cells) held by a P-NTM layer's recurrent state."""
    cells = layer_state.memory.shape[1]
    if getattr(layer_state, "head_spectra", None) is not None:
        return torch.fft.irfft(layer_state.head_spectra[0], n=cells, dim=-1)
    return F.one_hot(layer_state.positions[0], cells).float()  # hard heads as integer cells


def test_pntm_content_heads_weightings_give_what_they_read():
    if "content_heads" not in get_model_class("pntm").default_config():
        pytest.skip("this P-NTM has no content heads")
    torch.manual_seed(0)
    vocab = Vocab(["0", "1"])
    model = build_model("pntm", len(vocab), vocab.sep_id,
                        {"d_model": 16, "d_ff": 16, "memory_width": 8, "read_heads": 1,
                         "layers": 1, "tape_writer": True, "content_heads": 2}).eval()
    tokens = torch.tensor([fed_tokens(vocab, list("0110"), list("0110"), True)])
    T = tokens.shape[1]
    with torch.no_grad():
        layer, u = model.layers[0], model.inputs(tokens)
        ctl, cells = layer.parallel_controls(u), layer.num_cells(T)
        rows, keys, causal, _, _ = layer.parallel_tape(ctl)
        reads, _ = layer.content_reads(ctl, rows, keys, causal)
        weights = layer.trace(u).content[..., :T]  # the tape: row j on cell j
        assert torch.allclose(torch.einsum("bthj,bjw->bthw", weights, rows), reads, atol=1e-5)
        [rec] = pntm_internals(model, tokens)
    assert rec["weights"].shape == (T, 2 + 2, cells)  # write, read, two content heads
    content = rec["weights"][:, 2:]
    assert abs(content.sum(-1) - 1).max() < 1e-5
    assert not np.triu(content[:, 0, :T], 1).any()  # causal: nothing beyond the token read


def test_cell_window_draws_paths_unbroken_with_signed_offsets():
    w = np.zeros((4, 2, 10))  # (time, heads, cells); cell 9 is offset -1
    w[0, 0, 9] = w[1, 0, 0] = w[2, 0, 1] = w[3, 0, 2] = 1  # a head walking right from -1
    w[0, 1, 9] = w[1, 1, 8] = w[2, 1, 7] = w[3, 1, 6] = 1  # one walking left
    shown, first = cell_window(w)
    assert first == -5  # offsets -5 .. 3: the visited -4 .. 2 plus one cell each side
    offsets = shown.argmax(-1) + first
    assert offsets[:, 0].tolist() == [-1, 0, 1, 2] and offsets[:, 1].tolist() == [-1, -2, -3, -4]
