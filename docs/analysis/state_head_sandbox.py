"""Can one layer of state heads learn a regular task from its answer alone? A fast sandbox.

Usage: PYTHONPATH=src python docs/analysis/state_head_sandbox.py [--task mas|parity|cycle]
[--maps valued|soft] [--heads H] [--states S] [--seed N] [--steps N]

Not the P-NTM: a stripped layer to compare ways of training the state heads in minutes on one
thread. Tokens are embedded (64 numbers); the controller sees each token and the 3 before it
(as the shipped config's ``window: 3``) through one GELU layer of 128; ``H`` state heads of
``S`` states (``pntm.models.state_heads.StateHeads``, ``stay_bias`` 2 as shipped) read their
states back (64 numbers each); a linear layer maps the last token's output to the answer.
Trained with Adam 1e-3, batch 32, clipping at 1, on one length per step drawn from 1..L_max,
where L_max grows from 1 to 40 over 70% of the steps (the P-NTM's curriculum). The two ways:

* ``valued`` (the shipped config's): hard maps (straight-through) with values annealed away
  over [0.3, 0.6] of training (``state_values``, ``state_anneal``);
* ``soft``: each row of a map a softmax at a temperature falling linearly from 1 to a floor
  (``--floor``, 0.3) over the first 70% of the steps, then hard (straight-through) from
  ``--hard-from`` (0.7) on, as ``state_values: false`` heads follow the relax phase; with
  ``--hard-from 1`` the maps train soft to the end and only evaluation runs them hard.

Evaluation runs the exact automaton (hard maps, no values) on 128 examples at each length 41,
45, ..., 61 (``modular_arithmetic_simple``: digits 0-4 and ``+ - *`` with precedence, mod 5;
``parity``: bits, their sum mod 2; ``cycle``: moves 0, +1, -1, the position mod 5), from a
stream of its own (seed 1234). Prints one line per 250 steps (exact accuracy at length 21) and
a final line with the mean exact accuracy at 41-61. An analysis aid, not part of the package
(RESULTS.md quotes its output: ``results/explore/state-head-sandbox.txt``).
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from pntm.models.state_heads import StateHeads
from pntm.tasks import get_task

parser = argparse.ArgumentParser()
parser.add_argument("--task", default="mas", choices=["mas", "parity", "cycle"])
parser.add_argument("--maps", default="valued", choices=["valued", "soft"])
parser.add_argument("--heads", type=int, default=2)
parser.add_argument("--states", type=int, default=32)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=4000)
parser.add_argument("--hard-from", type=float, default=0.7,
                    help="soft maps: the fraction of training from which they train hard "
                         "(1: soft to the end, at the temperature floor)")
parser.add_argument("--floor", type=float, default=0.3, help="soft maps: the temperature floor")
args = parser.parse_args()
torch.manual_seed(args.seed)
torch.set_num_threads(1)
VOCAB, ANSWERS = 8, {"mas": 5, "parity": 2, "cycle": 5}[args.task]
MAS = get_task("modular_arithmetic_simple")  # its length rule, symbols and answers


def examples(n: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` prompts of one length and their answers."""
    if args.task == "parity":
        tokens = torch.randint(0, 2, (n, length), generator=gen)
        return tokens, tokens.sum(1) % 2
    if args.task == "cycle":
        tokens = torch.randint(0, 3, (n, length), generator=gen)
        return tokens, torch.where(tokens == 2, -1, tokens).sum(1) % 5
    size = MAS.prompt_size(length)
    digits = torch.randint(0, 5, (n, (size + 1) // 2), generator=gen)
    ops = torch.randint(0, 3, (n, size // 2), generator=gen)  # 0: +, 1: -, 2: *
    tokens = torch.empty(n, size, dtype=torch.long)
    tokens[:, 0::2], tokens[:, 1::2] = digits, ops + 5  # ids index MAS.symbols
    answers = [int(MAS.solve([MAS.symbols[i] for i in row])[0]) for row in tokens.tolist()]
    return tokens, torch.tensor(answers)


class Sandbox(nn.Module):
    def __init__(self, d: int = 64, d_ff: int = 128, window: int = 3):
        super().__init__()
        self.window = window
        self.embed = nn.Embedding(VOCAB, d)
        self.controller = nn.Linear(d * (1 + window), d_ff)
        valued = args.maps == "valued"
        self.machine = StateHeads(d_ff, args.heads, args.states, d, 2.0, values=valued,
                                  anneal=(0.3, 0.6) if valued else None)
        self.out = nn.Linear(d_ff + args.heads * d, d)
        self.answer = nn.Linear(d, ANSWERS)

    def forward(self, tokens: torch.Tensor, hard: bool, temperature: float = 1.0):
        x = self.embed(tokens)
        T = x.shape[1]
        seen = [x] + [F.pad(x, (0, 0, k, 0))[:, :T] for k in range(1, self.window + 1)]
        h = F.gelu(self.controller(torch.cat(seen, -1)))
        states = self.machine(h, hard=hard, temperature=temperature)
        x = x + self.out(torch.cat([h, self.machine.read(states).flatten(2)], -1))
        return self.answer(x[:, -1])


model = Sandbox()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
gen, held_out = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(1234)
evaluation = [examples(128, length, held_out) for length in range(41, 65, 4)]


def exact(tokens: torch.Tensor, answers: torch.Tensor) -> float:
    model.eval()  # valued heads: no values; soft heads: hard
    with torch.no_grad():
        right = (model(tokens, hard=True).argmax(-1) == answers).float().mean().item()
    model.train()
    return right


started = time.time()
for step in range(args.steps):
    progress = step / args.steps
    model.machine.set_training_progress(progress, step)
    longest = max(1, min(40, round(1 + 39 * progress / 0.7)))
    tokens, answers = examples(32, int(torch.randint(1, longest + 1, (1,), generator=gen)), gen)
    if args.maps == "valued":
        logits = model(tokens, hard=True)
    else:
        logits = model(tokens, hard=progress > args.hard_from,
                       temperature=max(args.floor, 1 - progress))
    loss = F.cross_entropy(logits, answers)
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if step % 250 == 0 or step == args.steps - 1:
        print(f"step {step} longest {longest} loss {loss.item():.3f} "
              f"exact@21 {exact(*examples(256, 21, gen)):.3f} ({time.time() - started:.0f} s)",
              flush=True)
score = sum(exact(*batch) for batch in evaluation) / len(evaluation)
print(f"final {vars(args)}: exact accuracy at 41-61 {score:.3f}", flush=True)
