"""Issue 17's bad inputs: every one is one ``pntm: error:`` line with exit code 2 and no run
directory left behind (or, where the input is valid, a clean run), and run files read back are
checked field by field."""

import json
import math
import shutil

import pytest
import torch
import yaml

from helpers import assert_user_error, sets
from pntm import config as config_lib
from pntm import train as train_lib
from pntm.cli import main
from pntm.runs import RunDir

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["train.batch_size=4", "train.train_lengths=[1,4]", "train.log_every=1",
        "train.early_stop.every=0", "eval.lengths=1-4", "eval.samples=2",
        "train.checkpoint_every=2", "train.warmup_steps=1"]
LSTM = ["model_config.d_model=8", "model_config.num_layers=1"]
PNTM = ["model_config.d_model=8", "model_config.d_ff=8", "model_config.layers=1",
        "model_config.memory_width=4", "model_config.read_heads=1", "model_config.address_width=2"]


def train_args(out, model="lstm", task="parity", steps=2, extra=()):
    small = LSTM if model == "lstm" else PNTM if model == "pntm" else []
    return ["train", "--task", task, "--model", model, "--steps", str(steps), "--out", str(out),
            *sets(TINY + small + list(extra))]


# --------------------------------------------------------------------------- config values

BAD_CONFIGS = [  # (model, --set items or flags, a fragment of the one error line)
    ("lstm", ["--seed", str(2**32)], "seed"),
    ("lstm", ["--set", f"seed={2**32}"], "seed"),
    ("pntm", ["--set", "model_config.read_heads=0"], "read_heads"),
    ("pntm", ["--set", "model_config.memory_width=0"], "memory_width"),
    ("pntm", ["--set", "model_config.periods=[0]"], "periods"),
    ("pntm", ["--set", "model_config.periods=[997,991]"], "least common multiple"),
    ("pntm", ["--set", "model_config.scan_method=bogus"], "scan_method"),
    ("ntm", ["--set", "model_config.shift_range=-1"], "shift_range"),
    ("ntm", ["--set", "model_config.read_heads=0"], "read_heads"),
    ("ntm", ["--set", "model_config.memory_width=0"], "memory_width"),
    ("ntm", ["--set", "model_config.initial_memory=.nan"], "initial_memory"),
    ("pntm", ["--set", "model_config.d_model=0"], "d_model"),
    ("transformer", ["--set", "model_config.layers=0"], "layers"),
    ("pntm", ["--set", "model_config.layers=0"], "layers"),
    ("pntm", ["--set", "model_config.relax=[0.5,0.2]"], "relax"),
    ("pntm", ["--set", "model_config.initial_memory=.nan"], "initial_memory"),
    ("pntm", ["--set", "model_config.min_temperature=0"], "min_temperature"),
    ("lstm", ["--set", "train.lr=1e30"], "train.lr"),
    ("lstm", ["--set", "train.lr=.nan"], "train.lr"),
    ("lstm", ["--set", "train.weight_decay=.inf"], "train.weight_decay"),
    ("lstm", ["--set", "train.grad_clip=.nan"], "train.grad_clip"),
    ("lstm", ["--set", "train.adam_beta2=1"], "train.adam_beta2"),
    ("lstm", ["--set", "train.snapshot_every=-1"], "train.snapshot_every"),
    ("lstm", ["--set", "train.batch_size=1e9"], "GiB"),
    ("lstm", ["--set", "train.train_lengths=[1,1000000]"], "GiB"),
    ("lstm", ["--set", "train.train_lengths=[1,2000000]"], "train.train_lengths"),
    ("lstm", ["--set", "model_config.d_model=100000000"], "GiB"),
    ("lstm", ["--set", "eval.samples=1e9"], "eval.samples"),
]


@pytest.mark.parametrize("model, extra, fragment", BAD_CONFIGS)
def test_a_config_value_that_cannot_work_is_one_line_and_leaves_no_directory(
        tmp_path, capsys, model, extra, fragment):
    out = tmp_path / "deep" / "run"
    argv = ["train", "--task", "parity", "--model", model, "--steps", "1", "--out", str(out),
            *extra]
    assert_user_error(capsys, argv, fragment)
    assert not (tmp_path / "deep").exists()


def test_the_corrected_retry_after_a_refused_config_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert_user_error(capsys, train_args(out, "pntm", extra=["model_config.read_heads=0"]),
                      "read_heads")
    assert main(train_args(out, "pntm")) == 0


def test_pntm_without_address_tags_is_a_valid_model(tmp_path):
    """``periods: []`` is a decision, not an accident: cells carry no address tag."""
    assert main(train_args(tmp_path / "run", "pntm", steps=1,
                           extra=["model_config.periods=[]"])) == 0
    assert (tmp_path / "run" / "eval.json").is_file()


def test_the_python_api_checks_the_same_rules():
    from pntm.errors import ConfigError
    from pntm.models import build_model
    with pytest.raises(ConfigError, match="read_heads"):
        build_model("pntm", 6, 2, {"read_heads": 0})
    with pytest.raises(ConfigError, match="shift_range"):
        build_model("ntm", 6, 2, {"shift_range": -1})


def test_a_jsonl_example_too_long_for_memory_is_refused(tmp_path, capsys):
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"input": "01", "target": "1" * 5000}) + "\n")
    assert_user_error(capsys, ["train", "--data", str(data), "--model", "pntm", "--out",
                               str(tmp_path / "run")], "GiB", "5,005 tokens")
    assert not (tmp_path / "run").exists()


def test_the_memory_estimate_accepts_every_shipped_config():
    from pntm import tasks
    for task in tasks.REQUIRED_TASKS:
        for model in ("pntm", "ntm", "lstm", "transformer"):
            cfg = config_lib.build_config(task, model)
            assert config_lib.estimate_training_bytes(cfg, 12) < 8 * 2**30, (task, model)


# --------------------------------------------------------------------------- divergence

def _nan_from_step(monkeypatch, step):
    """Make the training loss NaN from ``step`` on (a run that diverges)."""
    real = train_lib.Trainer.train_step

    def train_step(self):
        if self.step >= step:
            monkeypatch.setattr(train_lib.F, "cross_entropy",
                                lambda *a, **k: torch.tensor(math.nan, requires_grad=True))
        return real(self)
    monkeypatch.setattr(train_lib.Trainer, "train_step", train_step)


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(
        tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    _nan_from_step(monkeypatch, 3)
    assert main(train_args(out, steps=6)) == 2
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("pntm: error:")]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]  # after the log
    assert "diverged at step 3" in errors[0] and "checkpoint at step 2" in errors[0]
    assert "nan" in errors[0] and "Traceback" not in err
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 2
    text = (out / "metrics.jsonl").read_text()
    rows = [json.loads(x, parse_constant=pytest.fail) for x in text.splitlines()]
    assert rows and all(math.isfinite(r["loss"]) for r in rows)


def test_divergence_before_the_first_checkpoint_leaves_no_directory(
        tmp_path, capsys, monkeypatch):
    _nan_from_step(monkeypatch, 1)
    assert main(train_args(tmp_path / "run", steps=6)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("pntm: error:") and "diverged at step 1" in last
    assert "no checkpoint" in last
    assert not (tmp_path / "run").exists()


def test_metrics_are_never_written_with_a_nan(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(ValueError):
        run.write_metrics([{"step": 1, "loss": math.nan}])


# --------------------------------------------------------------------------- run files

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 4-step lstm run on parity, copied by each test that damages it."""
    out = tmp_path_factory.mktemp("bad") / "run"
    assert main(train_args(out, steps=4)) == 0
    return out


@pytest.fixture
def run(finished, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def _edit_state(run, **fields):
    state = torch.load(run / "train_state.pt", weights_only=True)
    state.update(fields)
    torch.save(state, run / "train_state.pt")


@pytest.mark.parametrize("field, value", [("step", "4"), ("elapsed_seconds", "x"),
                                          ("early_stopped", 1), ("optimizer", [])])
def test_a_train_state_field_of_the_wrong_type_is_named(run, capsys, field, value):
    _edit_state(run, **{field: value})
    assert_user_error(capsys, ["train", "--out", str(run), "--steps", "6"], "train_state.pt",
                      f"'{field}'")


def test_a_metrics_row_without_step_is_named(run, capsys):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    del row["step"]
    (run / "metrics.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    assert_user_error(capsys, ["train", "--out", str(run), "--steps", "6"], "metrics.jsonl:1",
                      "'step'")


@pytest.mark.parametrize("edit, fragment", [
    (lambda e: e["lengths"][0].update(length="1"), "'length'"),
    (lambda e: e["lengths"][0].update(sequence_accuracy=math.nan), "'sequence_accuracy'"),
    (lambda e: e.update(seed="0"), "seed"),
])
def test_report_checks_each_eval_json_field(run, tmp_path, capsys, edit, fragment):
    report = json.loads((run / "eval.json").read_text())
    edit(report)
    (run / "eval.json").write_text(json.dumps(report))
    assert_user_error(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "R.md"),
                               "--no-plots"], "eval.json", fragment)
    assert not (tmp_path / "benchmark.json").exists()


def test_json_nested_very_deep_is_one_line(run, tmp_path, capsys):
    deep = "[" * 100_000 + "]" * 100_000
    (run / "eval.json").write_text(deep)
    assert_user_error(capsys, ["report", str(tmp_path), "--out", str(tmp_path / "R.md"),
                               "--no-plots"], "nested too deeply")
    (run / "metrics.jsonl").write_text(deep + "\n")
    assert_user_error(capsys, ["train", "--out", str(run), "--steps", "6"], "metrics.jsonl:1",
                      "nested too deeply")
    data = tmp_path / "deep.jsonl"
    data.write_text('{"input": "01", "target": ' + deep + "}\n")
    assert_user_error(capsys, ["train", "--data", str(data), "--model", "lstm", "--out",
                               str(tmp_path / "new")], "deep.jsonl:1", "nested too deeply")
    assert_user_error(capsys, ["train", "--task", "parity", "--model", "lstm", "--out",
                               str(tmp_path / "new"), "--set", "seed=" + deep], "nested")
    assert not (tmp_path / "new").exists()


def test_eval_data_from_a_device_is_one_line_not_a_forever_read(run, capsys):
    assert_user_error(capsys, ["eval", str(run), "--data", "/dev/zero"], "/dev/zero",
                      "not a regular file")
    assert_user_error(capsys, ["train", "--data", "/dev/zero", "--model", "lstm", "--out",
                               str(run.parent / "new")], "not a regular file")


def _edit_config(run, **fields):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.update(fields)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_a_config_with_another_task_of_the_same_vocabulary_is_refused(run, capsys):
    _edit_config(run, task="reverse")  # parity's tokens too: only the weights can tell
    assert_user_error(capsys, ["eval", str(run)], "config.yaml", "'task'", "model.safetensors")


def test_a_config_with_a_swapped_vocabulary_is_refused(run, capsys):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    vocab = cfg["vocab"]
    _edit_config(run, vocab=vocab[:4] + vocab[4:][::-1])
    assert_user_error(capsys, ["eval", str(run)], "config.yaml", "'vocab'")
    _edit_config(run, task="cycle_navigation", vocab=vocab)
    assert_user_error(capsys, ["generate", str(run), "01"], "config.yaml", "'vocab'")


def test_fewer_steps_than_a_run_has_trained_is_refused_and_keeps_its_config(run, capsys):
    before = (run / "config.yaml").read_bytes()
    assert_user_error(capsys, ["train", "--out", str(run), "--steps", "2"], "already trained 4",
                      "--steps 2")
    assert (run / "config.yaml").read_bytes() == before


def test_eval_reads_no_pickle(run, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pntm eval unpickled a file")
    monkeypatch.setattr(torch, "load", refuse)
    assert main(["eval", str(run), "--json", str(run / "again.json")]) == 0
    report = json.loads((run / "again.json").read_text())
    assert report["steps"] == 4 and report["train_seconds"] > 0
    assert report["provenance"]["threads"] == torch.get_num_threads()


def test_a_jsonl_run_reads_only_the_file_it_recorded(tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"input": s, "target": s[::-1]}) + "\n"
                            for s in ("01", "10", "011")))
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "lstm", "--steps", "2", "--out",
                 str(out), *sets(LSTM + ["train.batch_size=2", "eval.samples=2"])]) == 0
    capsys.readouterr()
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2 is not JSON\n")
    _edit_config(out, data={**yaml.safe_load((out / "config.yaml").read_text())["data"],
                            "path": str(secret)})
    line = assert_user_error(capsys, ["eval", str(out)], "sha256")
    assert "hunter2" not in line
    _edit_config(out, data={**yaml.safe_load((out / "config.yaml").read_text())["data"],
                            "path": "train.jsonl"})
    assert_user_error(capsys, ["eval", str(out)], "data.path", "absolute")


def test_threads_are_set_and_recorded(tmp_path):
    torch_threads = torch.get_num_threads()
    try:
        assert main([*train_args(tmp_path / "run", steps=1), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(torch_threads)
    prov = json.loads((tmp_path / "run" / "eval.json").read_text())["provenance"]
    assert prov["threads"] == 1 and prov["deterministic_algorithms"] in (True, False)


def test_a_40000_token_vocabulary_in_long_examples_is_refused_before_allocating(tmp_path, capsys):
    """Logits cost batch x length x vocabulary: the estimate counts them."""
    tokens = [f"t{i}" for i in range(40_000)]
    data = tmp_path / "wide.jsonl"
    data.write_text(json.dumps({"input": tokens, "target": ["t0"]}) + "\n")
    assert_user_error(capsys, ["train", "--data", str(data), "--model", "lstm", "--out",
                               str(tmp_path / "run")], "GiB", "40,004 tokens")
    assert not (tmp_path / "run").exists()


def test_a_file_too_large_to_read_whole_is_one_line(run, tmp_path, capsys):
    from pntm.safeio import MAX_FILE_BYTES
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used, nothing read
    assert_user_error(capsys, ["eval", str(run), "--data", str(huge)], "huge.jsonl",
                      "more than")


def test_an_allocation_that_fails_is_one_line(run, capsys, monkeypatch):
    from pntm import evaluate

    def refuse(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate "
                           "262144000000 bytes.")
    monkeypatch.setattr(evaluate, "evaluate_lengths", refuse)
    assert_user_error(capsys, ["eval", str(run), "--json", str(run / "x.json")],
                      "out of memory", "can't allocate")
