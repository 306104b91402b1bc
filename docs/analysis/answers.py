"""Answer-token accuracy of a trained model, whole and by a feature of each example, and the
pairs of an associative-recall prompt: shared by the error analyses beside it
(``mas_errors.py``, ``ar_errors.py``, ``recall_near_misses.py``). An analysis aid, not part of
the package."""
import collections

import numpy as np
import torch


def answer_guesses(model, rows: list[list[int]], chunk: int) -> torch.Tensor:
    """The model's greedy guess for the token after each row (rows of equal length, each ending
    in SEP), run ``chunk`` rows at a time."""
    with torch.no_grad():
        logits = torch.cat([model(torch.tensor(rows[i:i + chunk]))[:, -1]
                            for i in range(0, len(rows), chunk)])
    return logits.argmax(-1)


def accuracy_by(name: str, feature: list, right: np.ndarray) -> str:
    """``name: value:accuracy(count) ...`` over the sorted values of ``feature``."""
    groups = collections.defaultdict(list)
    for f, r in zip(feature, right):
        groups[f].append(r)
    return f"{name}: " + " ".join(f"{k}:{np.mean(v):.2f}({len(v)})"
                                  for k, v in sorted(groups.items()))


def recall_pairs(prompt) -> tuple[list[tuple], list[str], int, list[int]]:
    """An associative-recall prompt (n groups ``k1 k2 k3 v``, then ``? q1 q2 q3``): its keys, their
    digits, the index of the queried pair, and the indices of the *near* keys, those that share
    two of the query's three letters in place (one letter off)."""
    n = len(prompt) // 4 - 1
    keys = [tuple(prompt[4 * i:4 * i + 3]) for i in range(n)]
    digits = [prompt[4 * i + 3] for i in range(n)]
    query = tuple(prompt[-3:])
    q = keys.index(query)
    close = [i for i, k in enumerate(keys) if i != q and sum(a == b for a, b in zip(k, query)) == 2]
    return keys, digits, q, close
