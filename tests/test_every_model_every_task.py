"""Every model trains with `pntm train` and evaluates with `pntm eval` on every task."""

import json

import pytest
import torch

from pntm import tasks
from pntm.cli import main
from pntm.models import available_models

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY_MODEL = {
    "pntm": ["d_model=16", "d_ff=16", "memory_width=4", "read_heads=2"],
    "ntm": ["controller_size=16", "memory_cells=8", "memory_width=4"],
    "lstm": ["d_model=16", "num_layers=1"],
    "transformer": ["d_model=16", "layers=1", "heads=2", "d_ff=16"],
}
TINY_TRAIN = ["train.batch_size=4", "train.train_lengths=[1,3]", "train.warmup_steps=1",
              "train.early_stop.every=0", "train.eval_at_end=false", "train.log_every=1"]


def test_every_contract_model_is_implemented():
    assert set(available_models()) == set(TINY_MODEL)


@pytest.mark.parametrize("model", sorted(TINY_MODEL))
def test_model_trains_and_evaluates_on_every_task(model, tmp_path, capsys):
    for task in tasks.TASKS:
        run = tmp_path / task
        sets = [f"--set=model_config.{s}" for s in TINY_MODEL[model]]
        sets += [f"--set={s}" for s in TINY_TRAIN]
        assert main(["train", "--task", task, "--model", model, "--steps", "2", *sets,
                     "--out", str(run)]) == 0, capsys.readouterr().err
        assert main(["eval", str(run), "--lengths", "2,5", "--samples", "3"]) == 0
        report = json.loads((run / "eval.json").read_text())
        assert [row["length"] for row in report["lengths"]] == [2, 5]
        assert report["task"] == task and report["model"] == model
