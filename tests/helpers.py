"""Helpers shared by the tests."""

import torch
import torch.nn.functional as F

from pntm.cli import main
from pntm.models.pntm_layer import PNTMLayer

BOS, SEP = 1, 2


def run_recurrent(model, tokens):
    """Logits of every position computed by the recurrent mode, one token at a time."""
    state = model.init_state(tokens.shape[0], tokens.shape[1], tokens.device)
    logits = []
    for t in range(tokens.shape[1]):
        step_logits, state = model.step(tokens[:, t], state)
        logits.append(step_logits)
    return torch.stack(logits, 1)


def layers_without_and_with(change, new_modules, **config):
    """Two ``PNTMLayer``s of ``config`` built at one seed, without and with the options
    ``change``. Asserts that the change only adds the modules named by the prefixes
    ``new_modules`` and leaves every other initial weight as it was (they are made last)."""
    torch.manual_seed(3)
    plain = PNTMLayer(**config)
    torch.manual_seed(3)
    changed = PNTMLayer(**config, **change)
    before, after = plain.state_dict(), changed.state_dict()
    kept = {k: v for k, v in after.items() if not k.startswith(new_modules)}
    assert kept.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(kept[key], value), key
    return plain, changed


def brute_force_jump_gradient(G, shift, jump, cell, cells, horizon, here=False, landing=None):
    """The hard jump gate's straight-through gradient summed by brute force:
    ``±Σ_{o<h, no jump in (t, t+o]} (G_{t+o}[x_t + c_{t+o} - c_t] - G_{t+o}[c_{t+o}])`` for dense
    weight gradients ``G`` (B, T, H, N), one-hot ``shift`` (B, T, H, 2K+1), gates ``jump`` and the
    heads' cells ``cell`` (B, T, H); ``x_t`` is where the other choice of the gate puts the head
    (a jump lands on the origin, with ``here`` on cell ``t``, or on the cells ``landing``)."""
    B, T, H = cell.shape
    K = (shift.shape[-1] - 1) // 2
    jumped = jump > 0.5
    expected = torch.zeros(B, T, H)
    for b in range(B):
        for h in range(H):
            for t in range(T):
                k = shift[b, t, h].argmax().item() - K
                before = cell[b, t - 1, h].item() if t else cells - 1
                land = landing[b, t, h].item() if landing is not None else (t if here else 0)
                other = (before + k) if jumped[b, t, h] else k + land
                total = 0.0
                for o in range(horizon):
                    tau = t + o
                    if tau >= T or (o > 0 and jumped[b, tau, h]):
                        break
                    moved = cell[b, tau, h] - cell[b, t, h]
                    total += G[b, tau, h, (other + moved) % cells] - G[b, tau, h, cell[b, tau, h]]
                expected[b, t, h] = -total if jumped[b, t, h] else total
    return expected


def sample_tokens(batch, length, vocab, seed=0, sep_at=None):
    """BOS, then random symbols (ids 4..vocab-1) with one SEP at ``sep_at`` (default a third of
    the way), so both segments occur."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, vocab, (batch, length), generator=g)
    tokens[:, 0] = BOS
    tokens[:, length // 3 if sep_at is None else sep_at] = SEP
    return tokens


def sets(items) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``: config overrides as flags."""
    return [x for s in items for x in ("--set", s)]


def assert_user_error(capsys, argv, *fragments):
    """``pntm argv`` fails with exit code 2 and one line ``pntm: error: ...`` naming the
    problem (every fragment in it); returns that line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pntm: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def one_hot_moves(moves, K):
    """Straight-through-style hard shifts (leaf tensors) from integer moves (B, T, heads)."""
    return F.one_hot(moves + K, 2 * K + 1).float().requires_grad_()


def random_case(B, T, H, K, W, seed, jump_rate):
    """Inputs of ``event_read``: hard moves of a write head and ``H`` read heads in ``-K..K``
    (stays and left moves too), jumps at ``jump_rate``, erase with exact 0s and 1s."""
    g = torch.Generator().manual_seed(seed)
    moves = torch.randint(-K, K + 1, (B, T, 1 + H), generator=g)  # stays and left moves too
    jump = (torch.rand(B, T, 1 + H, generator=g) < jump_rate).float().requires_grad_()
    erase = torch.rand(B, T, W, generator=g)
    erase[:, ::5] = 0.0  # erase exactly 0 and exactly 1 (full overwrite)
    erase[:, 1::7] = 1.0
    add = torch.randn(B, T, W, generator=g)
    table = torch.randn(6, 3, generator=g)
    return [one_hot_moves(moves, K), jump, erase.requires_grad_(), add.requires_grad_(),
            table.requires_grad_()]
