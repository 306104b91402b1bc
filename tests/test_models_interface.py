"""Every registered model: recurrent mode == parallel mode, and greedy decoding agrees."""

import pytest
import torch

from pntm import tasks
from pntm.errors import ConfigError
from pntm.evaluate import greedy_decode
from pntm.models import BROKEN_MODELS, KNOWN_MODELS, available_models, build_model

torch.set_num_threads(1)  # tiny models; the machine is shared

MODEL_NAMES = available_models()
VOCAB = tasks.get_task("copy").vocab


def make(name: str):
    torch.manual_seed(0)
    return build_model(name, len(VOCAB), VOCAB.sep_id, {}).eval()


def test_registry_has_lstm_and_no_broken_models():
    assert "lstm" in MODEL_NAMES
    assert set(MODEL_NAMES) <= set(KNOWN_MODELS)
    assert not BROKEN_MODELS, f"model modules that fail to import: {BROKEN_MODELS}"


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_step_matches_forward(name):
    model = make(name)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(len(tasks.SPECIAL_TOKENS), len(VOCAB), (3, 21), generator=g)
    tokens[:, 0] = VOCAB.bos_id
    tokens[:, 9] = VOCAB.sep_id  # models may treat the answer part differently
    with torch.no_grad():
        parallel = model(tokens)
        state = model.init_state(3, tokens.shape[1], tokens.device)
        recurrent = []
        for t in range(tokens.shape[1]):
            logits, state = model.step(tokens[:, t], state)
            recurrent.append(logits)
    recurrent = torch.stack(recurrent, dim=1)
    assert parallel.shape == recurrent.shape == (3, 21, len(VOCAB))
    assert parallel.dtype == torch.float32
    torch.testing.assert_close(recurrent, parallel, atol=1e-5, rtol=1e-5)


def decode_by_forward(model, prompt, answer_length):
    """Reference greedy decoding: rerun the parallel mode on the whole prefix each time."""
    seq = [VOCAB.bos_id, *VOCAB.encode(prompt), VOCAB.sep_id]
    out = []
    with torch.no_grad():
        for _ in range(answer_length):
            nxt = int(model(torch.tensor([seq]))[0, -1].argmax())
            out.append(nxt)
            seq.append(nxt)
    return out


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_incremental_greedy_equals_full_prefix_decoding(name):
    model = make(name)
    # different prompt and answer lengths in one batch: each row decodes on its own schedule
    prompts = [tuple("0110"), tuple("1"), tuple("1011001")]
    answer_lengths = [5, 3, 8]
    got = greedy_decode(model, VOCAB, prompts, answer_lengths)
    want = [decode_by_forward(model, p, a) for p, a in zip(prompts, answer_lengths)]
    assert got == want


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*lstm"):
        build_model("nope", 8, 2, {})


def test_unknown_model_config_key():
    with pytest.raises(ConfigError, match="d_modle"):
        build_model("lstm", 8, 2, {"d_modle": 3})
