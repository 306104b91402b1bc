"""Can a work tape learn a stack when it is told the top after every action? A fast sandbox.

Usage: PYTHONPATH=src python docs/analysis/work_tape_sandbox.py [--mode hard|relax|given]
[--signal every|final|task] [--start tape|stay] [--jumps] [--curriculum] [--shift-range K]
[--window K] [--width W] [--longest L] [--seed N] [--steps N]

Not the P-NTM: one ``pntm.models.work_tape.WorkTape`` behind a controller that sees only the
current token, on a stream of stack actions (PUSH0, PUSH1, POP; a pop of the empty stack leaves
it empty), with the stack's top (0, 1, or empty) as the target after *every* action: the densest
signal a stack can get (``--signal every``). With ``--signal final`` the signal is
stack_manipulation's instead: after the actions a separator (stay) and as many DUMP tokens
(pops), and only there a target, the stack from the top down (then empty), so the moves made on
the actions learn only from reads many tokens later. With ``--signal task`` the examples
are ``pntm.tasks``' stack_manipulation itself, in the P-NTM's format: a stack of bits (each a
push), the actions, SEP, then the answer fed back token by token (a bit in the answer is a pop)
and EOS once the stack is empty; the targets are the answer and EOS, and the tokens carry the
P-NTM's segment vector (prompt, or separator-and-answer). Tokens are embedded (32 numbers); ``h =
GELU(W x)`` (64; with ``--window K`` ``x`` is the token's embedding and the K before it); the
tape (width 8 or ``--width``, moves -1..1, or -K..K with ``--shift-range K``;
``write_bias`` 2 and the gate open at the start, as in the P-NTM; no jumps, or with
``--jumps`` the jump to its origin it had until 2026-12-06) is read after its write;
``y = W_y (x + W_v r)`` over 3 classes. Adam 1e-3, batch 32, one length per step from 1..20
(or ``--longest``; ``--curriculum``: from 1..m, m growing from 1 to it over 70% of the steps,
as the P-NTM's curriculum). The modes:

* ``hard``: the tape hard from the first step (straight-through), as ``work_tape: true``;
* ``relax``: soft moves, jump and gate until 70% of the steps, the temperature falling from
  1 to 0.1 over [30%, 70%], then hard (``work_tape_relax: true`` on the shipped schedule);
* ``given``: hard, with the moves of a stack forced (+1 on a push, -1 on a pop that has
  something to pop, 0 otherwise): only the gate, erase and add are learned. It separates the
  moves' credit assignment from the rest.

Evaluation (hard, as decoding) on 128 sequences at each length 41, 45, ..., 61 from a stream
of its own (seed 1234): the share of actions whose top is right, and of sequences right at
every action. One line per 500 steps (training-length accuracy), one final line. An analysis
aid, not part of the package (RESULTS.md quotes its output).
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pntm.models.work_tape import WorkTape
from pntm.tasks import get_task

parser = argparse.ArgumentParser()
parser.add_argument("--mode", default="hard", choices=["hard", "relax", "given"])
parser.add_argument("--signal", default="every", choices=["every", "final", "task"])
parser.add_argument("--start", default="tape", choices=["tape", "stay"],
                    help="stay: the head starts staying (bias 2 on the 0 move, none on +1) "
                         "with the gate shut (bias -2), instead of the tape")
parser.add_argument("--jumps", action="store_true",
                    help="the head may jump to its origin (the tape until 2026-12-06)")
parser.add_argument("--curriculum", action="store_true",
                    help="the longest length grows from 1 to --longest over 70%% of the "
                         "steps, as the P-NTM's training does (from 1 to 40)")
parser.add_argument("--shift-range", type=int, default=1,
                    help="moves -K..K (the P-NTM's shipped config: 2)")
parser.add_argument("--window", type=int, default=0,
                    help="the controller sees the K tokens before each one too, as the P-NTM's "
                         "window (its shipped config: 3)")
parser.add_argument("--width", type=int, default=8,
                    help="numbers per tape cell (the P-NTM's memory_width: 32)")
parser.add_argument("--longest", type=int, default=20,
                    help="the longest training length (the P-NTM's: 40)")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--steps", type=int, default=3000)
args = parser.parse_args()
TASK = get_task("stack_manipulation")
torch.manual_seed(args.seed)
torch.set_num_threads(1)
PUSH0, PUSH1, POP, SEP, DUMP, EMPTY, IGNORE = 0, 1, 2, 3, 4, 2, -100
BIT0, BIT1 = 5, 6  # --signal task: the stack's bits in the prompt, the answer's bits


def task_examples(n: int, length: int, gen: torch.Generator):
    """``--signal task``: ``n`` stack_manipulation examples of one length as tokens, targets
    and the stack's moves (n, T): prompt, SEP, answer (its targets the answer, then the empty
    stack's class for EOS), padded with DUMP tokens whose targets are IGNORE."""
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))
    names = {"0": BIT0, "1": BIT1, "POP": POP, "PUSH0": PUSH0, "PUSH1": PUSH1}
    rows, targets, moves = [], [], []
    for _ in range(n):
        example = TASK.generate(length, rng)
        answer = [names[a] for a in example.answer]
        tokens = [names[p] for p in example.prompt] + [SEP] + answer
        rows.append(tokens)
        targets.append([IGNORE] * len(example.prompt) + [a - BIT0 for a in answer] + [EMPTY])
        size, move = 0, []
        for t, token in enumerate(tokens):  # a bit in the prompt pushes, in the answer pops
            push = token in (PUSH0, PUSH1) or (token in (BIT0, BIT1) and t < len(example.prompt))
            pop = token == POP or (token in (BIT0, BIT1) and t > len(example.prompt))
            move.append(1 if push else (-1 if pop and size else 0))
            size = size + 1 if push else (max(size - 1, 0) if pop else size)
        moves.append(move)
    T = max(map(len, rows))
    pad = lambda row, value: row + [value] * (T - len(row))  # noqa: E731
    return (torch.tensor([pad(r, DUMP) for r in rows]),
            torch.tensor([pad(r, IGNORE) for r in targets]),
            torch.tensor([pad(r, 0) for r in moves]))


def examples(n: int, length: int, gen: torch.Generator):
    """Tokens, targets (IGNORE where there is none) and the stack's moves, (n, T) each: the
    ``length`` actions, then with ``--signal final`` SEP and ``length`` DUMPs."""
    if args.signal == "task":
        return task_examples(n, length, gen)
    actions = torch.randint(0, 3, (n, length), generator=gen)
    if args.signal == "final":
        tail = torch.full((n, length), DUMP)
        actions = torch.cat([actions, torch.full((n, 1), SEP), tail], 1)
    tops = torch.full_like(actions, IGNORE)
    moves = torch.zeros_like(actions)
    for b in range(n):
        stack = []
        for t, a in enumerate(actions[b].tolist()):
            if a in (POP, DUMP):
                moves[b, t] = -1 if stack else 0
                stack = stack[:-1]
            elif a in (PUSH0, PUSH1):
                moves[b, t] = 1
                stack.append(a)
            if args.signal == "every" or a in (SEP, DUMP):
                tops[b, t] = stack[-1] if stack else EMPTY
    return actions, tops, moves


class Sandbox(nn.Module):
    def __init__(self, d: int = 32, d_ff: int = 64):
        super().__init__()
        task = args.signal == "task"  # (the other signals draw the weights they drew before)
        self.embed = nn.Embedding(7 if task else 5, d)
        self.segment = nn.Embedding(2, d) if task else None  # prompt, or separator-and-answer
        self.controller = nn.Linear(d * (1 + args.window), d_ff)
        self.tape = WorkTape(d_ff, d, args.width, shift_range=args.shift_range, jumps=args.jumps)
        if args.start == "stay":
            with torch.no_grad():
                K = args.shift_range  # the shift logits -K..K (then the jump's, if any)
                self.tape.to_moves.bias[:2 * K + 1] = 0.0
                self.tape.to_moves.bias[K] = 2.0
                self.tape.to_write.bias[-1] = -2.0
        self.answer = nn.Linear(d, 3)

    def forward(self, actions, soft=False, temperature=1.0, moves=None):
        x = self.embed(actions)
        if self.segment is not None:
            x = x + self.segment((torch.cumsum(actions == SEP, 1) > 0).long())
        seen = [F.pad(x, (0, 0, k, 0))[:, :x.shape[1]] for k in range(1 + args.window)]
        h = F.gelu(self.controller(torch.cat(seen, -1)))  # the token and the K before it
        ctl = self.tape.controls(h, temperature, soft)
        if moves is not None:  # the stack's moves, one-hot, in place of the learned ones
            K = args.shift_range
            ctl["shift"] = F.one_hot(moves + K, 2 * K + 1).to(x)
            ctl["jump"] = torch.zeros_like(ctl["jump"])
        cells = 2 * actions.shape[1] + 3
        return self.answer(x + self.tape.output(self.tape.read(ctl, cells, soft)))


def schedule(fraction: float) -> tuple[bool, float]:
    """``relax``: soft before 70% of training, the temperature 1 -> 0.1 over [30%, 70%]."""
    if args.mode != "relax" or fraction >= 0.7:
        return False, 1.0
    return True, 0.1 ** min(1.0, max(0.0, (fraction - 0.3) / 0.4))


model = Sandbox()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
gen, held_out = torch.Generator().manual_seed(args.seed), torch.Generator().manual_seed(1234)
evaluation = [examples(128, length, held_out) for length in range(41, 65, 4)]
check = examples(256, 20, torch.Generator().manual_seed(99))


def accuracy(actions, tops, moves) -> tuple[float, float]:
    with torch.no_grad():
        guess = model(actions, moves=moves if args.mode == "given" else None).argmax(-1)
    right, scored = (guess == tops) | (tops == IGNORE), tops != IGNORE
    return ((right & scored).sum() / scored.sum()).item(), right.all(1).float().mean().item()


for step in range(1, args.steps + 1):
    soft, temperature = schedule(step / args.steps)
    top = args.longest
    longest = min(top, 1 + int((top - 1) * step / (0.7 * args.steps))) if args.curriculum else top
    length = int(torch.randint(1, longest + 1, (1,), generator=gen))
    actions, tops, moves = examples(32, length, gen)
    logits = model(actions, soft, temperature, moves if args.mode == "given" else None)
    loss = F.cross_entropy(logits.flatten(0, 1), tops.flatten())
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if step % 500 == 0:
        tokens, sequences = accuracy(*check)
        print(f"step {step}: loss {loss.item():.3f}, length 20: tops {100 * tokens:.1f}%, "
              f"sequences {100 * sequences:.1f}%", flush=True)
results = [accuracy(*batch) for batch in evaluation]
print(f"{args.mode} {args.signal} start {args.start}{' jumps' if args.jumps else ''}"
      f"{' curriculum' if args.curriculum else ''}"
      f"{f' shift-range {args.shift_range}' if args.shift_range != 1 else ''}"
      f"{f' window {args.window}' if args.window else ''}"
      f"{f' width {args.width}' if args.width != 8 else ''}"
      f"{f' longest {args.longest}' if args.longest != 20 else ''} "
      f"seed {args.seed}: lengths 41-61, tops right "
      f"{100 * sum(r[0] for r in results) / len(results):.1f}%, sequences right "
      f"{100 * sum(r[1] for r in results) / len(results):.1f}%")
