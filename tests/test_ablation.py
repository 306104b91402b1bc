"""``pntm ablation``: the variants × tasks table, its equal-seed base, the config changes read
from the runs, and its bad inputs."""

from __future__ import annotations

import json

import yaml

from helpers import assert_user_error
from pntm import config as config_lib
from pntm import tasks
from pntm.cli import main
from pntm.tools.ablation import build_ablation, config_changes, render, write_ablation

LENGTHS = (1, 2, 8, 16)  # 1 and 2 are in the training range [1, 2]


def make_run(root, task, seed, test_seq, val_seq, **changes):
    """A finished run folder: its config (the shipped one with ``changes`` to model_config),
    eval.json with sequence accuracy ``test_seq`` at every length and eval-validation.json at
    ``val_seq``."""
    name = f"{task}-pntm-s{seed}"
    run = root / name
    run.mkdir(parents=True)
    sets = [f"model_config.{key}={value}" for key, value in changes.items()]
    cfg = config_lib.build_config(task, "pntm", seed=seed, sets=sets)
    cfg["vocab"] = tasks.get_task(task).vocab.to_list()
    (run / "config.yaml").write_text(config_lib.dump(cfg))
    rows = [{"length": n, "samples": 4, "sequence_accuracy": test_seq, "token_accuracy": 1.0}
            for n in LENGTHS]
    common = {"task": task, "model": "pntm", "seed": seed, "train_lengths": [1, 2],
              "steps": 100 * (seed + 1)}
    (run / "eval.json").write_text(json.dumps({**common, "lengths": rows, "lr": 1e-3,
                                               "train_seconds": 10.0 * (seed + 1)}))
    val = [{"length": 41, "samples": 4, "sequence_accuracy": val_seq,
            "token_accuracy": val_seq,
            "answer_token_accuracy": val_seq}]
    (run / "eval-validation.json").write_text(json.dumps({**common, "lengths": val}))


def folders(tmp_path):
    base, variants = tmp_path / "base", tmp_path / "ablation"
    for seed, acc in ((0, 1.0), (1, 0.5), (2, 1.0)):
        make_run(base, "parity", seed, acc, acc)
    make_run(base, "copy", 0, 1.0, 1.0)
    # without state heads: seed 0 fails, seed 1 succeeds; seed 2 was not run
    make_run(variants / "no-state-heads", "parity", 0, 0.5, 0.5, state_heads=0)
    make_run(variants / "no-state-heads", "parity", 1, 1.0, 1.0, state_heads=0)
    make_run(variants / "one-layer", "copy", 0, 0.25, 0.75, layers=1)
    return variants, base


def test_the_table_compares_equal_seeds_and_reads_the_change(tmp_path):
    variants, base = folders(tmp_path)
    ablation = build_ablation(str(variants), str(base), "pntm ablation test")
    assert ablation["tasks"] == ["parity", "copy"]  # report order: state tracking first
    rows = {row["name"]: row for row in ablation["rows"]}
    # base: seeds 0 and 1 only (the seeds a variant ran), not seed 2
    parity = rows["base"]["tasks"]["parity"]
    assert parity["seeds"] == [0, 1] and parity["succeeding"] == 1
    assert parity["selected_seed"] == 0  # validation 1.0 beats 0.5
    assert rows["no-state-heads"]["changes"] == ["state_heads 2 → 0"]
    assert rows["no-state-heads"]["tasks"]["parity"]["selected_seed"] == 1
    assert rows["no-state-heads"]["mean_steps"] == 150.0
    assert rows["one-layer"]["changes"] == ["layers 2 → 1"]
    assert "parity" not in rows["one-layer"]["tasks"]


def test_the_block_replaces_its_markers_and_keeps_the_prose(tmp_path):
    variants, base = folders(tmp_path)
    out = tmp_path / "R.md"
    out.write_text("intro\n\n<!-- ablation X -->\nold\n<!-- /ablation X -->\n\nafter\n")
    write_ablation(variants, base, out, command="cmd")  # appended: another folder's markers
    write_ablation(variants, base, out, command="cmd")  # replaced, not appended twice
    text = out.read_text()
    assert text.count(f"<!-- ablation {variants} vs {base} -->") == 1 and "old" in text
    assert "| no-state-heads | `state_heads 2 → 0` | 1/2, val 100.0%, 100.0% (16) | — | 150 |" in text
    assert "| one-layer | `layers 2 → 1` | — | 0/1, val 75.0%, 25.0% (0) | 100 |" in text
    assert "| base | — | 1/2, val 100.0%, 100.0% (16) | 1/1, val 100.0%, 100.0% (16) | 133 |" in text
    assert json.loads((variants / "ablation.json").read_text())["base_dir"] == str(base)


def test_a_renamed_key_is_not_a_change(tmp_path):
    variants, base = folders(tmp_path)
    old = base / "copy-pntm-s0" / "config.yaml"  # made before window: token_shift, shift_tokens
    cfg = yaml.safe_load(old.read_text())
    del cfg["model_config"]["window"]
    cfg["model_config"].update(token_shift=True, shift_tokens=3)
    old.write_text(yaml.safe_dump(cfg))
    new = variants / "one-layer" / "copy-pntm-s0" / "config.yaml"
    cfg = yaml.safe_load(new.read_text())
    cfg["model_config"]["window"] = 3
    new.write_text(yaml.safe_dump(cfg))
    rows = {row["name"]: row for row in build_ablation(str(variants), str(base), "c")["rows"]}
    assert rows["one-layer"]["changes"] == ["layers 2 → 1"]


def test_config_changes_list_every_differing_key():
    base = {"model_config.layers": 2, "model_config.periods": [], "train.lr": 1e-3}
    variant = {"model_config.layers": 1, "model_config.periods": [2, 3], "train.lr": 1e-3,
               "model_config.extra": True}
    assert config_changes(base, variant) == ["extra — → true", "layers 2 → 1",
                                             "periods [] → [2, 3]"]


def test_bad_folders_are_one_line_errors(tmp_path, capsys, monkeypatch):
    variants, base = folders(tmp_path)
    monkeypatch.chdir(tmp_path)  # a failure to fail must not write the checkout's RESULTS.md
    assert_user_error(capsys, ["ablation", str(tmp_path / "nope"), "--base", str(base)],
                      "no such variants folder")
    (tmp_path / "empty").mkdir()
    assert_user_error(capsys, ["ablation", str(tmp_path / "empty"), "--base", str(base)],
                      "no variant folder with finished runs")
    make_run(tmp_path / "other", "parity", 9, 1.0, 1.0)
    assert_user_error(capsys, ["ablation", str(variants), "--base", str(tmp_path / "other")],
                      "no variant run", "to be compared with")
    assert not (variants / "ablation.json").exists()  # nothing written


def test_runs_without_a_base_twin_are_left_out_and_listed(tmp_path):
    variants, base = folders(tmp_path)
    make_run(variants / "no-state-heads", "copy", 5, 1.0, 1.0, state_heads=0)  # base: copy s0
    make_run(variants / "other-base", "parity", 7, 1.0, 1.0, layers=3)  # nothing comparable
    ablation = build_ablation(str(variants), str(base), "c")
    rows = {row["name"]: row for row in ablation["rows"]}
    assert "other-base" not in rows
    assert "copy" not in rows["no-state-heads"]["tasks"]  # seed 5 has no base run
    assert rows["no-state-heads"]["tasks"]["parity"]["seeds"] == [0, 1]
    assert ablation["without_base_run"] == ["no-state-heads/copy-pntm-s5",
                                            "other-base/parity-pntm-s7"]
    out = tmp_path / "R.md"
    block = write_ablation(variants, base, out, command="cmd")["block"]
    assert ("(left out): no-state-heads/copy-pntm-s5, other-base/parity-pntm-s7." in block)


def test_cli_prints_the_table(tmp_path, capsys):
    variants, base = folders(tmp_path)
    assert main(["ablation", str(variants), "--base", str(base),
                 "--out", str(tmp_path / "R.md")]) == 0
    assert "| one-layer |" in capsys.readouterr().out


def test_bookkeeping_keys_are_not_changes(tmp_path):
    variants, base = folders(tmp_path)
    cfg_path = variants / "one-layer" / "copy-pntm-s0" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["train"].update(snapshot_every=50, checkpoint_every=7, log_every=3)
    cfg_path.write_text(yaml.safe_dump(cfg))
    rows = {row["name"]: row for row in build_ablation(str(variants), str(base), "c")["rows"]}
    assert rows["one-layer"]["changes"] == ["layers 2 → 1"]


def test_a_nested_change_names_its_key(tmp_path):
    """A change inside a table (``train.early_stop``) names that key, not the whole table, and
    a key added to the table's defaults since a run was made is not a change."""
    variants, base = folders(tmp_path)
    path = variants / "one-layer" / "copy-pntm-s0" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["train"]["early_stop"]["start"] = 0.5
    path.write_text(yaml.safe_dump(cfg))
    old = base / "copy-pntm-s0" / "config.yaml"
    cfg = yaml.safe_load(old.read_text())
    del cfg["train"]["early_stop"]["rollback"]  # a run made before the key existed
    old.write_text(yaml.safe_dump(cfg))
    rows = {row["name"]: row for row in build_ablation(str(variants), str(base), "c")["rows"]}
    assert rows["one-layer"]["changes"] == ["layers 2 → 1", "early_stop.start 0.35 → 0.5"]


def test_a_difference_only_some_runs_have_is_listed_apart(tmp_path):
    """The change column holds what every run of a variant changed; a base run made with
    another setting (here parity seed 1's base trained 4,000 steps) is named below the table
    with its own difference, not folded into the variant's change."""
    variants, base = folders(tmp_path)
    path = base / "parity-pntm-s1" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["train"]["steps"] = 4000
    path.write_text(yaml.safe_dump(cfg))
    ablation = build_ablation(str(variants), str(base), "c")
    rows = {row["name"]: row for row in ablation["rows"]}
    shipped = config_lib.build_config("parity", "pntm")["train"]["steps"]
    assert rows["no-state-heads"]["changes"] == ["state_heads 2 → 0"]
    assert rows["no-state-heads"]["also_differs"] == {
        "parity-pntm-s1": [f"steps 4000 → {shipped}"]}
    assert rows["one-layer"]["also_differs"] == {}
    text = render(ablation)
    assert (f"Also different from their base run, beside the variant's change: "
            f"no-state-heads/parity-pntm-s1 (`steps 4000 → {shipped}`).") in text


def test_a_base_run_that_differs_in_several_variants_is_named_once(tmp_path):
    """A base run made with another setting differs the same way from each variant's run of
    its task and seed: the note below the table names it once, with those variants."""
    variants, base = folders(tmp_path)
    make_run(variants / "no-state-heads", "copy", 0, 1.0, 1.0, state_heads=0)
    make_run(variants / "one-layer", "parity", 0, 1.0, 1.0, layers=1)
    path = base / "copy-pntm-s0" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["train"]["steps"] = 4000
    path.write_text(yaml.safe_dump(cfg))
    ablation = build_ablation(str(variants), str(base), "c")
    names = [row["name"] for row in ablation["rows"]
             if "copy-pntm-s0" in row["also_differs"]]
    assert names == ["no-state-heads", "one-layer"]
    shipped = config_lib.build_config("copy", "pntm")["train"]["steps"]
    text = render(ablation)
    assert text.count("copy-pntm-s0") == 1
    assert (f"copy-pntm-s0 in {', '.join(names[:-1])} and {names[-1]} "
            f"(`steps 4000 → {shipped}`)") in text
