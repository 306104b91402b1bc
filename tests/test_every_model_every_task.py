"""Every model trains with `pntm train` and evaluates with `pntm eval` on every task."""

import json

import pytest
import torch

from pntm import tasks
from pntm.cli import main
from pntm.models import MISSING_EXTRAS, available_models

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY_MODEL = {
    "pntm": ["d_model=16", "d_ff=16", "memory_width=4", "read_heads=2"],
    "ntm": ["controller_size=16", "memory_cells=8", "memory_width=4"],
    "lstm": ["d_model=16", "num_layers=1"],
    "transformer": ["d_model=16", "layers=1", "heads=2", "d_ff=16"],
    "deltanet": ["d_model=16", "layers=1", "heads=2", "d_ff=16"],
    "mamba": ["d_model=16", "layers=1", "d_state=4"],
    "slstm": ["d_model=16", "layers=1", "heads=2"],
}
TINY_TRAIN = ["train.batch_size=4", "train.warmup_steps=1",
              "train.early_stop.every=0", "train.eval_at_end=false", "train.log_every=1"]


def test_every_contract_model_is_implemented():
    """Every model is available, or (a peer without `pip install 'pntm[peers]'`) names its extra."""
    assert set(available_models()) | set(MISSING_EXTRAS) == set(TINY_MODEL)


@pytest.mark.parametrize("model", sorted(TINY_MODEL))
def test_model_trains_and_evaluates_on_every_task(model, tmp_path, capsys):
    if model not in available_models() and model in MISSING_EXTRAS:
        pytest.skip(f"{model} needs the '{MISSING_EXTRAS[model]}' extra")
    for task in tasks.TASKS:
        run = tmp_path / task
        lo = tasks.get_task(task).min_length  # 1 for most: lengths 1-3, evaluated at 2 and 5
        sets = [f"--set=model_config.{s}" for s in TINY_MODEL[model]]
        sets += [f"--set={s}" for s in TINY_TRAIN + [f"train.train_lengths=[{lo},{lo + 2}]"]]
        assert main(["train", "--task", task, "--model", model, "--steps", "2", *sets,
                     "--out", str(run)]) == 0, capsys.readouterr().err
        assert main(["eval", str(run), "--lengths", f"{lo + 1},{lo + 4}", "--samples", "3"]) == 0
        report = json.loads((run / "eval.json").read_text())
        assert [row["length"] for row in report["lengths"]] == [lo + 1, lo + 4]
        assert report["task"] == task and report["model"] == model
