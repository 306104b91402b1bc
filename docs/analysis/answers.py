"""Answer-token accuracy of a trained model, whole and by a feature of each example: shared by
the error analyses beside it (``mas_errors.py``, ``ar_errors.py``). An analysis aid, not part
of the package."""
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
