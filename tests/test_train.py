"""Training runs end to end: run files, exact resume, eval.json, atomic writes."""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_user_error, sets
from safetensors.torch import load_file

from pntm import config as config_lib
from pntm import tasks as tasks_lib
from pntm import train as train_lib
from pntm.cli import main
from pntm.evaluate import summarize
from pntm.models import build_model
from pntm.runs import RunDir, atomic_write, atomic_write_text
from pntm.train import start_run, train, train_run

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["model_config.d_model=16", "model_config.num_layers=1", "train.batch_size=8",
        "train.train_lengths=[1,8]", "train.log_every=10", "train.checkpoint_every=10",
        "train.warmup_steps=5", "train.early_stop.every=0", "eval.lengths=1-8,12",
        "eval.samples=8", "eval.validation_lengths=9-10"]
RUN_FILES = {"config.yaml", "model.safetensors", "train_state.pt", "metrics.jsonl", "eval.json",
             "eval-validation.json"}


def tiny_config(steps=30, *extra):
    return config_lib.build_config("parity", "lstm", sets=[*TINY, *extra], steps=steps)


def weights(run_dir):
    return load_file(os.path.join(run_dir, "model.safetensors"))


def state_of(run_dir):
    """The run's training state (train_state.pt)."""
    return torch.load(os.path.join(run_dir, "train_state.pt"), weights_only=True)


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def metrics_without_time(run_dir):
    rows = RunDir(run_dir).read_metrics()
    return [{k: v for k, v in r.items() if k != "elapsed_seconds"} for r in rows]


def test_tiny_run_writes_every_file(tmp_path):
    run_dir = tmp_path / "run"
    report = train(tiny_config(30), run_dir, quiet=True)
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    assert not [p for p in run_dir.iterdir() if p.name not in RUN_FILES]  # no temp files
    rows = RunDir(run_dir).read_metrics()
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert {"step", "loss", "token_accuracy", "length", "lr", "elapsed_seconds"} <= rows[0].keys()
    cfg = RunDir(run_dir).load_config()
    assert cfg["vocab"][:4] == ["<pad>", "<bos>", "<sep>", "<eos>"]
    assert cfg["train"]["steps"] == 30
    assert report == json.loads((run_dir / "eval.json").read_text())
    assert state_of(run_dir)["step"] == 30


def test_eval_json_schema(tmp_path):
    report = train(tiny_config(10), tmp_path / "run", quiet=True)
    assert report["task"] == "parity" and report["model"] == "lstm" and report["seed"] == 0
    assert report["train_lengths"] == [1, 8]
    assert [r["length"] for r in report["lengths"]] == [1, 2, 3, 4, 5, 6, 7, 8, 12]
    for row in report["lengths"]:
        assert set(row) == {"length", "samples", "token_accuracy", "answer_token_accuracy",
                            "sequence_accuracy"}
        assert row["samples"] == 8 and 0 <= row["sequence_accuracy"] <= row["token_accuracy"] <= 1
        assert 0 <= row["answer_token_accuracy"] <= 1
    assert set(report["summary"]) == {"id_sequence_accuracy", "ood_sequence_accuracy",
                                      "ood_token_accuracy", "ood_answer_token_accuracy",
                                      "max_length_at_99"}
    assert report["split"] == "test" and report["lr"] == 1e-3
    validation = json.loads((tmp_path / "run" / "eval-validation.json").read_text())
    assert validation["split"] == "validation" and validation["steps"] == 10
    assert [r["length"] for r in validation["lengths"]] == [9, 10]
    assert {"git_commit", "command", "created", "machine", "torch"} <= set(report["provenance"])
    assert report["steps"] == 10 and report["train_seconds"] > 0 and "eval_seconds" in report


def test_summary_metrics():
    rows = [{"length": n, "samples": 4, "token_accuracy": t, "sequence_accuracy": s}
            for n, t, s in [(1, 1.0, 1.0), (2, 1.0, 1.0), (41, 1.0, 0.995), (50, 0.5, 0.0),
                            (64, 1.0, 1.0)]]
    summary = summarize(rows, (1, 40))
    assert summary["id_sequence_accuracy"] == 1.0
    assert summary["ood_sequence_accuracy"] == pytest.approx(1.995 / 3)
    assert summary["ood_token_accuracy"] == pytest.approx(2.5 / 3)
    assert summary["max_length_at_99"] == 41  # 64 is fine again, but 50 broke the streak
    assert summarize(rows[3:4], (1, 40))["max_length_at_99"] == 0


def test_extending_a_finished_run_equals_a_straight_run(tmp_path, capsys):
    """`pntm train` 20 steps, then `pntm train --out RUN --steps 40` == 40 steps at once (with
    schedules that do not depend on the step budget: a constant learning rate, no curriculum)."""
    flags = sets([*TINY, "train.lr_schedule=constant", "train.curriculum=0",
                  "train.eval_at_end=false"])
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    assert main(["train", "--task", "parity", "--model", "lstm", "--steps", "20",
                 "--out", resumed, *flags]) == 0
    assert state_of(resumed)["step"] == 20
    assert main(["train", "--out", resumed, "--steps", "40"]) == 0
    assert "resuming at step 20/40" in capsys.readouterr().err
    assert main(["train", "--task", "parity", "--model", "lstm", "--steps", "40",
                 "--out", straight, *flags]) == 0
    assert_same_weights(resumed, straight)
    assert metrics_without_time(resumed) == metrics_without_time(straight)


def test_interrupted_run_resumes_exactly(tmp_path):
    """A cosine run stopped at step 20 and resumed equals one that never stopped."""
    cfg = tiny_config(40, "train.eval_at_end=false", "train.checkpoint_every=7")
    start_run(tmp_path / "a", cfg)
    assert train_run(tmp_path / "a", stop_at=20, quiet=True) is None
    assert state_of(tmp_path / "a")["step"] == 20
    train_run(tmp_path / "a", quiet=True)
    train(cfg, tmp_path / "b", quiet=True)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert metrics_without_time(tmp_path / "a") == metrics_without_time(tmp_path / "b")


def test_finished_run_only_reevaluates_without_eval_json(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(10), run_dir, quiet=True)
    before = (run_dir / "eval.json").stat().st_mtime_ns
    assert train_run(run_dir, quiet=True) is None  # finished, eval.json present: nothing to do
    assert (run_dir / "eval.json").stat().st_mtime_ns == before
    (run_dir / "eval.json").unlink()
    assert train_run(run_dir, quiet=True)["steps"] == 10
    assert (run_dir / "eval.json").is_file()


def perfect_checks(monkeypatch) -> list:
    """Every early-stop check scores 100%; returns the list of the lengths each check asked for."""
    calls = []

    def perfect(model, task, vocab, lengths, *args, **kwargs):
        calls.append(list(lengths))
        return [{"length": n, "samples": 1, "token_accuracy": 1.0, "sequence_accuracy": 1.0}
                for n in lengths]

    monkeypatch.setattr(train_lib, "evaluate_lengths", perfect)
    return calls


def test_early_stop_after_patience_perfect_checks(tmp_path, monkeypatch):
    calls = perfect_checks(monkeypatch)
    cfg = tiny_config(100, "train.early_stop.every=5", "train.early_stop.patience=3",
                      "train.eval_at_end=false")
    train(cfg, tmp_path / "run", quiet=True)
    state = state_of(tmp_path / "run")
    assert state["step"] == 15 and state["early_stopped"]
    assert calls == [list(range(1, 9))] * 3  # the ID lengths only, never OOD
    assert train_run(tmp_path / "run", steps=200, quiet=True) is None  # stays finished


def test_early_stop_checks_only_from_its_start(tmp_path, monkeypatch):
    checks = perfect_checks(monkeypatch)
    cfg = tiny_config(100, "train.early_stop.every=5", "train.early_stop.patience=2",
                      "train.early_stop.start=0.42", "train.eval_at_end=false")
    train(cfg, tmp_path / "run", quiet=True)
    state = state_of(tmp_path / "run")
    assert state["step"] == 50 and state["early_stopped"]  # checks at 45 and 50, none before 42
    assert len(checks) == 2


def test_early_stop_checks_leave_the_trajectory_unchanged(tmp_path):
    """What ``train.early_stop.start`` relies on: a run that checks from its first steps (and
    does not stop) trains exactly as one that checks only at its end, a P-NTM with relaxed
    heads and a curriculum included."""
    common = [*PNTM_TINY, "train.curriculum=0.5", "model_config.relax=[0.3,0.6]",
              "train.early_stop.patience=100", "train.early_stop.samples=2"]
    for name, start in (("checked", 0.0), ("late", 0.9)):
        cfg = config_lib.build_config("parity", "pntm", steps=20, sets=[
            *common, "train.early_stop.every=5", f"train.early_stop.start={start}"])
        train(cfg, tmp_path / name, quiet=True)
    assert_same_weights(tmp_path / "checked", tmp_path / "late")
    assert metrics_without_time(tmp_path / "checked") == metrics_without_time(tmp_path / "late")


def test_atomic_write_leaves_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "file.txt"
    atomic_write_text(target, "old")
    assert target.read_text() == "old"

    def crash(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_text() == "old"  # the old version survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_learning_rate_schedules_by_hand():
    base = {"lr": 1.0, "warmup_steps": 10, "steps": 110, "min_lr_ratio": 0.1,
            "lr_decay_start": 0.0}
    constant, cosine = {**base, "lr_schedule": "constant"}, {**base, "lr_schedule": "cosine"}
    assert train_lib.learning_rate(5, constant) == pytest.approx(0.5)  # warm-up
    assert train_lib.learning_rate(100, constant) == 1.0
    assert train_lib.learning_rate(10, cosine) == pytest.approx(1.0)
    assert train_lib.learning_rate(60, cosine) == pytest.approx(0.55)  # half way: (1 + 0.1) / 2
    assert train_lib.learning_rate(110, cosine) == pytest.approx(0.1)
    # held until 60% of 110 steps (66), then the same cosine over the 44 steps left
    late = {**cosine, "lr_decay_start": 0.6}
    assert train_lib.learning_rate(5, late) == pytest.approx(0.5)
    assert train_lib.learning_rate(66, late) == 1.0
    assert train_lib.learning_rate(88, late) == pytest.approx(0.55)
    assert train_lib.learning_rate(110, late) == pytest.approx(0.1)


def test_adam_beta2_reaches_the_optimizer_and_bounds_a_step_after_a_quiet_stretch():
    cfg = config_lib.build_config("parity", "lstm", sets=["train.adam_beta2=0.95"])
    model = torch.nn.Linear(3, 1)
    for beta2 in (0.999, 0.95):
        # Adam's bias corrections after 2,001 steps: 1 - β^2001 (≈ 0.86 for 0.999, 1 for 0.95)
        most = 0.1 / ((1 - beta2) / (1 - beta2 ** 2001)) ** 0.5
        optimizer = train_lib.make_optimizer(model, {**cfg["train"], "adam_beta2": beta2,
                                                     "weight_decay": 0.0, "lr": 1.0})
        assert all(g["betas"] == (0.9, beta2) for g in optimizer.param_groups)
        # 2,000 steps of zero gradient, then one of size 1: the step is (1 - β1)/sqrt(1 - β2),
        # 3.2 (2.9 with the correction) times the rate at 0.999, 0.45 at 0.95
        for step in range(2001):
            for p in model.parameters():
                p.grad = torch.ones_like(p) if step == 2000 else torch.zeros_like(p)
            if step == 2000:
                before = model.weight.detach().clone()
            optimizer.step()
        moved = (before - model.weight.detach()).abs()
        assert torch.allclose(moved, torch.full_like(moved, most), rtol=2e-3)
    assert cfg["train"]["adam_beta2"] == 0.95
    assert config_lib.build_config("parity", "lstm", sets=[])["train"]["adam_beta2"] == 0.999


def test_lr_decay_start_out_of_range_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "parity", "--model", "lstm", "--out", str(out),
                 "--set", "train.lr_decay_start=1.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lr_decay_start" in err
    assert not out.exists()


def test_schedule_steps_by_hand():
    """The curriculum and the model's progress span ``schedule_steps`` (0: ``steps``); after it
    every length is drawn and the progress stays at 1."""
    cfg = {"train_lengths": [1, 41], "curriculum": 0.5, "steps": 400, "schedule_steps": 0}
    assert train_lib.current_length_range(100, cfg) == (1, 21)   # half of the ramp of 200
    assert train_lib.training_progress(100, cfg) == 0.25
    cfg["schedule_steps"] = 200
    assert train_lib.current_length_range(50, cfg) == (1, 21)    # half of the ramp of 100
    assert train_lib.current_length_range(100, cfg) == (1, 41)
    assert train_lib.training_progress(100, cfg) == 0.5
    assert train_lib.training_progress(300, cfg) == 1.0


PNTM_TINY = ["model_config.d_model=16", "model_config.d_ff=16", "model_config.memory_width=8",
             "model_config.states=4", "train.batch_size=4", "train.train_lengths=[1,8]",
             "train.log_every=5", "train.checkpoint_every=5", "train.warmup_steps=2",
             "train.early_stop.every=0", "train.eval_at_end=false",
             "train.schedule_steps=0"]  # the schedules span the whole (tiny) budget


def test_a_run_extended_past_its_schedule_equals_the_shorter_run_up_to_there(tmp_path):
    """P-NTM's relax phase, value annealing and length curriculum over 20 steps, trained to 40
    (a cosine held until step 20, then decaying), stopped at 20: the same weights and metrics as
    a 20-step run at a constant rate. So an early-stopped run is the same under either budget."""
    short = config_lib.build_config("parity", "pntm", sets=[*PNTM_TINY, "train.curriculum=0.7",
                                                           "train.lr_schedule=constant"], steps=20)
    extended = config_lib.build_config(
        "parity", "pntm", steps=40, sets=[*PNTM_TINY, "train.curriculum=0.7",
                                          "train.lr_schedule=cosine", "train.lr_decay_start=0.5",
                                          "train.schedule_steps=20"])
    train(short, tmp_path / "short", quiet=True)
    start_run(tmp_path / "long", extended)
    assert train_run(tmp_path / "long", stop_at=20, quiet=True) is None
    assert_same_weights(tmp_path / "short", tmp_path / "long")
    assert metrics_without_time(tmp_path / "short") == metrics_without_time(tmp_path / "long")
    train_run(tmp_path / "long", quiet=True)  # and it trains on to 40, at progress 1
    assert state_of(tmp_path / "long")["step"] == 40


def pntm_cli_sets(*extra):
    return sets([*PNTM_TINY, "train.curriculum=0.7", *extra])


def test_a_finished_run_extended_at_a_late_decaying_rate_equals_the_extended_config(
        tmp_path, capsys):
    """20 steps of P-NTM at a constant rate (relax phase, value annealing, curriculum), then
    `pntm train --out RUN --steps 40 --set train.lr_schedule=cosine --set
    train.lr_decay_start=0.5`: the run a fresh 40-step config with `schedule_steps: 20` and
    that cosine makes, weights and metrics, and the config it saves says so. A plain
    `--steps 40` pins the schedules the same way."""
    resumed, fresh, plain = (str(tmp_path / name) for name in ("resumed", "fresh", "plain"))
    for out in (resumed, plain):
        assert main(["train", "--task", "parity", "--model", "pntm", "--steps", "20", "--out",
                     out, *pntm_cli_sets("train.lr_schedule=constant")]) == 0
    assert main(["train", "--out", resumed, "--steps", "40", "--set",
                 "train.lr_schedule=cosine", "--set", "train.lr_decay_start=0.5"]) == 0
    assert main(["train", "--task", "parity", "--model", "pntm", "--steps", "40", "--out", fresh,
                 *pntm_cli_sets("train.lr_schedule=cosine", "train.lr_decay_start=0.5",
                                "train.schedule_steps=20")]) == 0
    assert_same_weights(resumed, fresh)
    assert metrics_without_time(resumed) == metrics_without_time(fresh)
    assert RunDir(resumed).load_config()["train"] == RunDir(fresh).load_config()["train"]
    assert main(["train", "--out", plain, "--steps", "40"]) == 0
    saved = RunDir(plain).load_config()["train"]
    assert (saved["steps"], saved["schedule_steps"], saved["lr_schedule"]) == (40, 20, "constant")


def test_a_resumed_run_refuses_a_rate_that_changes_trained_steps(tmp_path, capsys):
    """A decay starting before the trained steps end, or a new base rate, is one line (exit 2)
    and leaves the config as it was."""
    out = str(tmp_path / "run")
    assert main(["train", "--task", "parity", "--model", "pntm", "--steps", "20", "--out", out,
                 *pntm_cli_sets("train.lr_schedule=constant")]) == 0
    before, _ = RunDir(out).load_config(), capsys.readouterr()
    assert_user_error(capsys, ["train", "--out", out, "--steps", "40", "--set",
                               "train.lr_schedule=cosine", "--set", "train.lr_decay_start=0.2"],
                      "rate of step 9", "already trained")
    assert_user_error(capsys, ["train", "--out", out, "--steps", "40", "--set", "train.lr=3e-4"],
                      "--set would change it")
    assert_user_error(capsys, ["train", "--out", out, "--set", "train.lr_schedule=linear"],
                      "train.lr_schedule")
    assert RunDir(out).load_config() == before


def test_schedule_steps_beyond_steps_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "parity", "--model", "lstm", "--out", str(out),
                 "--steps", "100", "--set", "train.schedule_steps=200"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.schedule_steps" in err
    assert not out.exists()


def scripted_checks(monkeypatch, scores):
    """Early-stop checks that return ``scores`` in turn (every length at that accuracy)."""
    it = iter(scores)

    def check(model, task, vocab, lengths, *args, **kwargs):
        score = next(it)
        return [{"length": n, "samples": 1, "token_accuracy": score, "sequence_accuracy": score}
                for n in lengths]

    monkeypatch.setattr(train_lib, "evaluate_lengths", check)


RESTORE = ["train.lr_schedule=constant", "train.curriculum=0", "train.early_stop.every=10",
           "train.early_stop.restore_best=true"]


def test_restore_best_evaluates_the_best_checks_weights(tmp_path, monkeypatch):
    """Checks at steps 10..40 score 0.5, 0.9, 0.9, 0.3: the weights evaluated and left in
    model.safetensors are those of step 30 (the latest of the equal best), which a run of 30
    steps ends with (a constant rate and no curriculum: the budget changes nothing before)."""
    scripted_checks(monkeypatch, [0.5, 0.9, 0.9, 0.3])
    report = train(tiny_config(40, *RESTORE), tmp_path / "a", quiet=True)
    assert report["restored_from_step"] == 30 and report["steps"] == 40
    scripted_checks(monkeypatch, [0.0, 0.0, 0.0])
    train(tiny_config(30, *RESTORE[:2], "train.early_stop.every=10"), tmp_path / "b", quiet=True)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    state = state_of(tmp_path / "a")
    assert state["step"] == 40 and state["best_check"]["step"] == 30  # training goes on from 40
    assert not torch.equal(state["model"]["to_logits.weight"], weights(tmp_path / "b")["to_logits.weight"])


def test_restore_best_survives_a_resume(tmp_path, monkeypatch):
    """Stopped at step 30, after the best check (step 20), and resumed: the same weights are
    restored as in an uninterrupted run."""
    scores = [0.5, 0.9, 0.3, 0.4]
    cfg = tiny_config(40, *RESTORE)
    scripted_checks(monkeypatch, scores)
    start_run(tmp_path / "a", cfg)
    assert train_run(tmp_path / "a", stop_at=30, quiet=True) is None
    scripted_checks(monkeypatch, scores[3:])
    assert train_run(tmp_path / "a", quiet=True)["restored_from_step"] == 20
    scripted_checks(monkeypatch, scores)
    train(cfg, tmp_path / "b", quiet=True)
    assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_restore_best_without_checks_is_one_line(tmp_path, capsys):
    from helpers import assert_user_error
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--out",
                               str(tmp_path / "run"), "--set", "train.early_stop.every=0",
                               "--set", "train.early_stop.restore_best=true"],
                      "train.early_stop.restore_best", "every > 0")
    assert not (tmp_path / "run").exists()


ROLLBACK = [*RESTORE[:3], "train.early_stop.rollback=0.5"]


def test_rollback_puts_the_best_checks_weights_and_optimizer_back(tmp_path, monkeypatch):
    """Checks at 10, 20, 30 score 0.5, 0.9, 0.3: 0.3 < 0.5 * 0.9, so after step 30 the model and
    the optimizer are those of step 20, as a 20-step run (constant rate, no curriculum) leaves
    them. Scores 0.9, 0.5, 0.5, 0.2: the drops to 0.5 (not below 0.45) do not roll back, 0.2
    does, to step 10. Training goes on from the step of the rollback with batches of its own."""
    scripted_checks(monkeypatch, [0.5, 0.9, 0.3])
    start_run(tmp_path / "a", tiny_config(40, *ROLLBACK))
    assert train_run(tmp_path / "a", stop_at=30, quiet=True) is None
    scripted_checks(monkeypatch, [0.5, 0.9])
    train(tiny_config(20, *ROLLBACK), tmp_path / "b", quiet=True)
    a, b = state_of(tmp_path / "a"), state_of(tmp_path / "b")
    assert a["step"] == 30 and a["rollbacks"] == [[30, 20]] and b["rollbacks"] == []
    for key, value in b["model"].items():
        assert torch.equal(a["model"][key], value), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for key, moments in b["optimizer"]["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(a["optimizer"]["state"][key][name], moments[name]), (key, name)
    scripted_checks(monkeypatch, [0.9, 0.5, 0.5, 0.2])
    train(tiny_config(40, *ROLLBACK), tmp_path / "c", quiet=True)
    assert state_of(tmp_path / "c")["rollbacks"] == [[40, 10]]


def test_rollback_survives_a_resume_and_is_reported(tmp_path, monkeypatch):
    """Stopped at step 30 (just after a rollback) and resumed: the same weights and the same
    rollbacks as an uninterrupted run, listed in eval.json."""
    scores = [0.5, 0.9, 0.3, 0.8, 0.2]
    cfg = tiny_config(50, *ROLLBACK)
    scripted_checks(monkeypatch, scores)
    start_run(tmp_path / "a", cfg)
    assert train_run(tmp_path / "a", stop_at=30, quiet=True) is None
    scripted_checks(monkeypatch, scores[3:])
    assert train_run(tmp_path / "a", quiet=True)["rollbacks"] == [[30, 20], [50, 20]]
    scripted_checks(monkeypatch, scores)
    report = train(cfg, tmp_path / "b", quiet=True)
    assert report["rollbacks"] == [[30, 20], [50, 20]]
    assert json.loads((tmp_path / "b" / "eval.json").read_text())["rollbacks"] == [[30, 20],
                                                                                 [50, 20]]
    assert_same_weights(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("extra, key, text", [
    (["train.early_stop.rollback=1.5"], "train.early_stop.rollback", "[0, 1)"),
    (["train.early_stop.rollback=0.5", "train.early_stop.every=0"], "train.early_stop.rollback",
     "every > 0"),
])
def test_bad_rollback_is_one_line(tmp_path, capsys, extra, key, text):
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--out",
                               str(tmp_path / "run"), *sets(extra)], key, text)
    assert not (tmp_path / "run").exists()


def test_snapshots_keep_every_nth_steps_weights_and_change_nothing(tmp_path):
    fixed = ["train.lr_schedule=constant", "train.curriculum=0", "train.eval_at_end=false"]
    train(tiny_config(30, *fixed, "train.snapshot_every=10"), tmp_path / "a", quiet=True)
    names = sorted(p.name for p in (tmp_path / "a" / "snapshots").iterdir())
    assert names == ["step-000010.safetensors", "step-000020.safetensors",
                     "step-000030.safetensors"]
    train(tiny_config(30, *fixed), tmp_path / "b", quiet=True)  # no snapshots: same training
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    train(tiny_config(20, *fixed), tmp_path / "c", quiet=True)
    snapshot = load_file(tmp_path / "a" / "snapshots" / "step-000020.safetensors")
    assert all(torch.equal(snapshot[k], v) for k, v in weights(tmp_path / "c").items())


def _padded_batch(model_vocab=12, batch=7, length=9, seed=0):
    """Inputs and targets of unequal target counts per sequence (IGNORE_INDEX in front)."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randint(4, model_vocab, (batch, length), generator=g)
    targets = torch.randint(4, model_vocab, (batch, length), generator=g)
    for row in range(batch):
        targets[row, : 1 + row] = tasks_lib.IGNORE_INDEX  # row r has length - 1 - r targets
    return inputs, targets


@pytest.mark.parametrize("model_name", ["lstm", "pntm"])
def test_micro_batches_sum_to_the_whole_batchs_gradient(model_name):
    """Slices of 1, 3 (uneven: 3 + 3 + 1) and 7 sequences: the same loss, the same count of
    right tokens and the same gradients as the whole batch in one pass."""
    torch.manual_seed(0)
    model = build_model(model_name, 12, 2, {})
    inputs, targets = _padded_batch()

    def run(micro):
        model.zero_grad(set_to_none=True)
        loss, right = train_lib.accumulate_gradients(model, inputs, targets, micro)
        return loss, right, {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.grad is not None}

    whole_loss, whole_right, whole = run(0)
    mask = targets != tasks_lib.IGNORE_INDEX
    by_hand = F.cross_entropy(model(inputs)[mask], targets[mask])
    assert torch.allclose(whole_loss, by_hand, atol=1e-6)
    for micro in (1, 3, 7, 100):
        loss, right, grads = run(micro)
        assert torch.allclose(loss, whole_loss, rtol=1e-5, atol=1e-6), micro
        assert right == whole_right
        assert grads.keys() == whole.keys()
        for name in grads:
            assert torch.allclose(grads[name], whole[name], rtol=1e-4, atol=1e-6), (micro, name)


def test_a_micro_batched_run_trains_as_the_whole_batch(tmp_path):
    """Ten steps at batch 8 in slices of 3: the weights and logged losses of the run at batch 8
    in one pass, up to float rounding."""
    fixed = ["train.lr_schedule=constant", "train.eval_at_end=false"]
    train(tiny_config(10, *fixed), tmp_path / "a", quiet=True)
    train(tiny_config(10, *fixed, "train.micro_batch=3"), tmp_path / "b", quiet=True)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key
    ra, rb = metrics_without_time(tmp_path / "a"), metrics_without_time(tmp_path / "b")
    assert [r["token_accuracy"] for r in ra] == [r["token_accuracy"] for r in rb]
    assert [r["loss"] for r in ra] == pytest.approx([r["loss"] for r in rb], rel=1e-5)


def test_the_memory_estimate_counts_the_slice_and_the_whole_batchs_tokens(monkeypatch):
    cfg = tiny_config(10, "train.batch_size=64")
    sliced = config_lib.merge(cfg, {"train": {"micro_batch": 4}})
    assert config_lib.sequences_per_pass(cfg["train"]) == 64
    assert config_lib.sequences_per_pass(sliced["train"]) == 4
    assert (config_lib.estimate_training_bytes(sliced, 12)
            < config_lib.estimate_training_bytes(cfg, 12))
    # a batch whose activations do not fit in 8 GiB but whose token ids do: refused whole,
    # accepted in slices; a batch whose token ids alone do not fit: refused either way
    big = config_lib.merge(cfg, {"train": {"batch_size": 10**6}})
    sliced_big = config_lib.merge(big, {"train": {"micro_batch": 64}})
    assert 16 * 10**6 * config_lib.training_sequence_length(big) < 8 * 2**30 < (
        config_lib.estimate_training_bytes(big, 12))
    monkeypatch.setattr(config_lib, "memory_available", lambda device=None: 8 * 2**30)
    with pytest.raises(config_lib.ConfigError, match="train.micro_batch: the same step"):
        config_lib.check_fits(big, 12)
    config_lib.check_fits(sliced_big, 12)
    huge = config_lib.merge(sliced_big, {"train": {"batch_size": 10**9}})
    with pytest.raises(config_lib.ConfigError, match="GiB"):
        config_lib.check_fits(huge, 12)


def test_negative_micro_batch_is_one_line(tmp_path, capsys):
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--out",
                               str(tmp_path / "run"), *sets(["train.micro_batch=-1"])],
                      "train.micro_batch", ">= 0")
    assert not (tmp_path / "run").exists()
