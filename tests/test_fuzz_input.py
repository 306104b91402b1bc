"""Fuzzing the command line's inputs: any ``--set key=value`` and any JSONL lines end in a
clean run or in one ``pntm: error:`` line with exit code 2 and no run directory."""

import itertools
import json

import torch
import yaml
from helpers import sets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pntm import config as config_lib
from pntm.cli import main

torch.set_num_threads(1)  # tiny models; the machine is shared

BASE = ["model_config.d_model=4", "model_config.num_layers=1", "train.batch_size=2",
        "train.train_lengths=[1,3]", "train.log_every=1", "train.early_stop.every=0",
        "train.eval_at_end=false", "eval.lengths=1-3", "eval.samples=1"]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
COUNTER = itertools.count()


def leaf_keys(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaf_keys(value, path + ".")
        else:
            yield path


KEYS = sorted(leaf_keys(config_lib.defaults_for("lstm")))
keys = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=12))
values = st.one_of(
    st.integers(-3, 40), st.sampled_from([0, -1, 2**32, 10**9, 10**6, 1e30]),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.text(max_size=10), st.lists(st.integers(-2, 12), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
value_texts = st.one_of(values.map(lambda v: yaml.safe_dump(v, default_flow_style=True)
                                   .replace("\n...\n", "").strip()),
                        st.text(max_size=16))


def check_outcome(code, err, out):
    """A clean run, or one error line (the last line of stderr) and no directory."""
    assert "Traceback" not in err, err
    if code == 0:
        assert (out / "config.yaml").is_file()
        return
    errors = [line for line in err.splitlines() if line.startswith("pntm: error:")]
    assert code == 2 and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert not out.exists(), err


@FUZZ
@given(key=keys, text=value_texts)
def test_any_set_is_a_clean_run_or_one_error_line(tmp_path, capsys, key, text):
    out = tmp_path / f"run{next(COUNTER)}"
    code = main(["train", "--task", "parity", "--model", "lstm", "--steps", "1",
                 "--out", str(out), *sets([*BASE, f"{key}={text}"])])
    check_outcome(code, capsys.readouterr().err, out)


tokens = st.one_of(st.text(max_size=3), st.sampled_from(["<pad>", "<eos>", "0", "1"]))
fields = st.one_of(st.text(max_size=5), st.lists(tokens, max_size=4), st.integers(),
                   st.none(), st.lists(st.integers(), max_size=2))
valid = st.builds(lambda i, t: json.dumps({"input": i, "target": t}),
                  st.text("01ab", min_size=1, max_size=4), st.text("01", min_size=1, max_size=3))
lines = st.one_of(
    valid, valid, valid,  # a file is refused at its first bad line: keep most lines good
    st.builds(lambda i, t: json.dumps({"input": i, "target": t}), fields, fields),
    st.builds(lambda i: json.dumps({"input": i}), fields),
    st.text(max_size=20),
    st.sampled_from(['{"input": "01", "target": "1"}', "[]", "null", "", "{", "\ufeff{}"]))


@FUZZ
@given(body=st.lists(lines, min_size=1, max_size=4))
def test_any_jsonl_file_is_a_clean_run_or_one_error_line(tmp_path, capsys, body):
    n = next(COUNTER)
    data, out = tmp_path / f"data{n}.jsonl", tmp_path / f"run{n}"
    data.write_text("\n".join(body) + "\n", encoding="utf-8", errors="surrogatepass")
    flags = sets(item for item in BASE if not item.startswith("train.train_lengths"))
    code = main(["train", "--data", str(data), "--model", "lstm", "--steps", "1",
                 "--out", str(out), *flags])
    check_outcome(code, capsys.readouterr().err, out)
