"""The protocol on the command line: `pntm eval --split`, `pntm eval FOLDER` for runs made
before the splits, and `pntm sweep --lrs` selecting on validation."""

import json

import pytest
import torch

from helpers import assert_user_error, sets
from pntm.cli import main
from pntm.tools.sweep import parse_lrs, run_name

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["model_config.d_model=8", "model_config.num_layers=1", "train.batch_size=4",
        "train.train_lengths=[1,3]", "train.early_stop.every=0", "eval.lengths=2,4",
        "eval.samples=4", "eval.validation_lengths=5-6"]
SETS = sets(TINY) + ["--steps", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run with both splits evaluated at the end of training."""
    run = tmp_path_factory.mktemp("runs") / "folder" / "parity-lstm-s0"
    assert main(["train", "--task", "parity", "--model", "lstm", "--out", str(run), *SETS]) == 0
    return run


def read(path):
    return json.loads(path.read_text())


def test_training_writes_both_splits_each_in_its_own_file(trained):
    test, val = read(trained / "eval.json"), read(trained / "eval-validation.json")
    assert test["split"] == "test" and [r["length"] for r in test["lengths"]] == [2, 4]
    assert val["split"] == "validation" and [r["length"] for r in val["lengths"]] == [5, 6]
    assert "spawn_key=(2," in val["stream"] and "spawn_key=(1," in test["stream"]
    assert val["steps"] == test["steps"] == 3


def test_eval_of_one_split_leaves_the_other_alone(trained, capsys):
    before = (trained / "eval.json").read_bytes()
    assert main(["eval", str(trained), "--split", "validation", "--samples", "2"]) == 0
    assert "validation split" in capsys.readouterr().out
    assert (trained / "eval.json").read_bytes() == before
    assert read(trained / "eval-validation.json")["samples"] == 2
    val = (trained / "eval-validation.json").read_bytes()
    assert main(["eval", str(trained)]) == 0      # the default: test, as before the splits
    assert (trained / "eval-validation.json").read_bytes() == val
    assert read(trained / "eval.json")["split"] == "test"


@pytest.mark.parametrize("args, fragment", [
    (["--split", "dev"], "invalid choice: 'dev'"),
    (["--split", "train"], "invalid choice: 'train'"),
])
def test_an_unknown_split_is_one_line_and_exit_2(trained, capsys, args, fragment):
    assert_user_error(capsys, ["eval", str(trained), *args], fragment)


def test_eval_of_a_folder_measures_only_what_is_missing(trained, capsys):
    folder = trained.parent
    assert main(["eval", str(folder), "--split", "validation"]) == 0
    assert "up to date, skipped" in capsys.readouterr().out
    # a committed run: no train_state.pt, no validation (made before the splits)
    (trained / "train_state.pt").unlink()
    (trained / "eval-validation.json").unlink()
    assert main(["eval", str(folder), "--split", "validation"]) == 0
    assert "validation (missing) measured" in capsys.readouterr().out
    val, test = read(trained / "eval-validation.json"), read(trained / "eval.json")
    assert val["steps"] == test["steps"] == 3            # taken from eval.json
    # what trained the run: eval.json's provenance, or what it kept when it was re-measured
    assert val["training_provenance"] == test.get("training_provenance", test["provenance"])
    assert val["training_provenance"]["command"].startswith("pntm train")
    assert_user_error(capsys, ["eval", str(folder), "--json", "x.json"], "--json")
    unfinished = folder / "copy-lstm-s0"   # still training: no eval.json, left alone
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((trained / "config.yaml").read_text())
    assert main(["eval", str(folder)]) == 0
    assert "copy-lstm-s0: not finished" in capsys.readouterr().out
    assert not (unfinished / "eval.json").exists()


# --------------------------------------------------------------------------- the sweep

def test_learning_rate_lists():
    assert parse_lrs("1e-3, 3e-4,1e-3") == [1e-3, 3e-4]
    assert run_name("parity", "lstm", 0, 3e-4) == "parity-lstm-lr3e-4-s0"
    assert run_name("parity", "lstm", 0, 2.5e-4) == "parity-lstm-lr2.5e-4-s0"
    assert run_name("parity", "lstm", 0) == "parity-lstm-s0"


@pytest.mark.parametrize("extra, fragment", [
    (["--lrs", "1e-3,3e-4,1e-4,3e-5"], "at most 3"),
    (["--lrs", "0"], "bad part '0'"),
    (["--lrs", "1e-3,x"], "bad part 'x'"),
    (["--lrs", "nan"], "bad part 'nan'"),
    (["--lrs", "1e-3,"], "malformed --lrs"),
    (["--lrs", "1e-3", "--set", "train.lr=0.1"], "give one or the other"),
    (["--select", "test"], "invalid choice: 'test'"),
])
def test_sweep_mistakes_are_one_line_and_exit_2(tmp_path, capsys, extra, fragment):
    out = tmp_path / "grid"
    assert_user_error(capsys, ["sweep", "--tasks", "parity", "--models", "lstm", "--seeds", "0",
                               "--out", str(out), *extra], fragment)
    assert not out.exists()


def test_sweep_over_learning_rates_selects_on_validation(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["sweep", "--tasks", "parity", "--models", "lstm", "--seeds", "0",
                 "--lrs", "1e-2,1e-3", "--select", "validation", "--workers", "2",
                 "--out", str(out), *SETS]) == 0
    printed = capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert names == ["parity-lstm-lr1e-2-s0", "parity-lstm-lr1e-3-s0"]
    assert read(out / names[0] / "eval.json")["lr"] == 1e-2
    assert "val seq acc" in printed
    assert "selection on validation" in printed and "parity lstm: validation chose lr" in printed

    # a finished run without validation (made before the splits) gets it, not a retrain
    (out / names[1] / "eval-validation.json").unlink()
    assert main(["sweep", "--tasks", "parity", "--models", "lstm", "--seeds", "0",
                 "--lrs", "1e-2,1e-3", "--workers", "1", "--out", str(out), *SETS]) == 0
    printed = capsys.readouterr().out
    assert "seed 0: validated" in printed and "seed 0: skipped" in printed
    assert (out / names[1] / "eval-validation.json").is_file()
