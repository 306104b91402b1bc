"""``pntm bench``: tiny runs of every benchmark write the documented JSON; mistakes are one line."""

import json
import time

import pytest
import torch

from pntm.cli import main
from pntm.tools import bench
from pntm.tools.bench_report import train_table

torch.set_num_threads(1)  # tiny models; the machine is shared

TINY = ["--batch", "2", "--repeats", "1", "--warmup", "0"]
TRAIN_KEYS = {"model", "length", "batch", "step_seconds", "tokens_per_second",
              "peak_memory_bytes", "parameters", "timed_steps"}


def load(path):
    report = json.loads(path.read_text())
    assert set(report) == {"device", "provenance", "results"}
    assert report["device"].startswith("cpu (")
    assert report["provenance"]["command"].startswith("pntm bench")
    assert "git_commit" in report["provenance"] and "peak_memory" in report["provenance"]
    return report


def test_training_step_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "pntm,lstm", "--lengths", "8,16", "--device", "cpu",
                 *TINY, "--json", str(out)]) == 0
    results = load(out)["results"]
    assert [(r["model"], r["length"]) for r in results] == [
        ("pntm", 8), ("pntm", 16), ("lstm", 8), ("lstm", 16)]
    for r in results:
        assert set(r) == TRAIN_KEYS
        assert r["batch"] == 2 and r["step_seconds"] > 0 and r["tokens_per_second"] > 0
        assert r["parameters"] > 0 and r["peak_memory_bytes"] >= 0
    table = capsys.readouterr().out
    assert "pntm" in table and "lstm" in table


def test_tokens_hold_the_tokens_per_step(tmp_path, capsys):
    """``--tokens N``: batch N / length at each length; the table says so, and P-NTM's time per
    token compares lengths by tokens, not by steps."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "pntm", "--lengths", "4,8,256", "--tokens", "512",
                 "--device", "cpu", "--repeats", "1", "--warmup", "0",
                 "--json", str(out)]) == 0
    results = load(out)["results"]
    assert [(r["length"], r["batch"]) for r in results] == [(4, 128), (8, 64), (256, 2)]
    for r in results:
        assert r["tokens_per_second"] * r["step_seconds"] == pytest.approx(512)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["length", "batch"] and printed[3].split()[:2] == ["256", "2"]
    table = train_table(results)  # RESULTS.md's block
    assert "512 tokens per step (batch = 512 / length)" in table
    assert table.split("| 256 | ")[1].split("|")[1].strip() == "1.00"


def test_micro_batch_slices_the_step_and_says_so(tmp_path, capsys):
    """``--micro-batch N``: the rows and the table name the slices; the step is
    ``train.accumulate_gradients``'s, so the bench's AdamW step equals the whole batch's."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "pntm", "--lengths", "8", "--batch", "5",
                 "--micro-batch", "2", "--device", "cpu", "--repeats", "1", "--warmup", "0",
                 "--json", str(out)]) == 0
    results = load(out)["results"]
    assert [(r["batch"], r["micro_batch"]) for r in results] == [(5, 2)]
    assert "batch 5, forward and backward in micro-batches of 2 sequences" in train_table(results)
    after = {}
    for micro in (0, 2):
        torch.manual_seed(0)
        model = bench.bench_model("pntm")
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        tokens = bench.random_tokens(5, 9, torch.Generator().manual_seed(1))
        bench.training_step(model, optimizer, tokens[:, :-1], tokens[:, 1:], micro)()
        after[micro] = [p.detach().clone() for p in model.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(after[0], after[2]))
    capsys.readouterr()
    assert main(["bench", "--decode", "--models", "pntm", "--micro-batch", "2"]) == 2
    assert capsys.readouterr().err.strip() == ("pntm: error: --micro-batch is for the training "
                                               "step, not --decode")


def test_time_per_token_columns_for_the_tape_and_the_learned_writer():
    """RESULTS' block: each P-NTM writer's time per token at each length against its own at
    256, from the step time, the length and the row's batch (hand-computed here)."""
    rows = [{"model": m, "length": t, "batch": b, "step_seconds": s, "parameters": 1}
            for m, t, b, s in [("pntm", 64, 32, 0.01), ("pntm", 256, 32, 0.04),
                               ("pntm", 4096, 2, 0.06), ("pntm-write", 64, 32, 0.02),
                               ("pntm-write", 256, 32, 0.05), ("pntm-write", 4096, 2, 0.05)]]
    lines = train_table(rows).splitlines()
    assert lines[0] == ("| length | pntm | pntm-write | P-NTM time per token vs 256 | "
                        "learned writer time per token vs 256 |")
    assert lines[2].endswith("| – | – |")                     # 64: before the reference
    assert lines[3].endswith("| 1.00 | 1.00 |")
    assert lines[4].endswith("| 1.50 | 1.00 |")  # 0.06/(4096*2) over 0.04/(256*32); 0.05 of 0.05


def test_set_overrides_the_pntm_models_only(tmp_path):
    """``--set model_config.KEY=VALUE`` reaches P-NTM and its variants (the built model and the
    JSON's model_configs say so), not the other models."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "pntm,pntm-write,lstm", "--lengths", "4", "--device",
                 "cpu", *TINY, "--set", "model_config.memory_width=7", "--json",
                 str(out)]) == 0
    report = load(out)
    configs = report["provenance"]["model_configs"]
    assert configs["pntm"]["memory_width"] == 7 and configs["pntm-write"]["memory_width"] == 7
    assert configs["pntm-write"]["tape_writer"] is False and "memory_width" not in configs["lstm"]
    params = {r["model"]: r["parameters"] for r in report["results"]}
    default = bench.parameter_count(bench.bench_model("pntm"))
    assert params["pntm"] == bench.parameter_count(bench.bench_model("pntm",
                                                                    {"memory_width": 7}))
    assert params["pntm"] != default


def test_ratio_line_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bench.png"
    assert main(["bench", "--models", "pntm,ntm", "--lengths", "4", "--device", "cpu", *TINY,
                 "--plot", str(plot)]) == 0
    assert "NTM/P-NTM" in capsys.readouterr().out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_limit_skips_longer_lengths(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "lstm", "--lengths", "16,4,8", "--device", "cpu", *TINY,
                 "--time-limit", "1e-9", "--json", str(out)]) == 0
    results = load(out)["results"]
    assert [r["length"] for r in results] == [4, 8, 16]
    assert results[0]["step_seconds"] > 0 and not results[0].get("skipped")
    assert all(r["skipped"] is True and r["step_seconds"] is None for r in results[1:])


def test_time_limit_monkeypatched(monkeypatch):
    calls = []
    real = bench.time_call

    def slow(fn, device, warmup, repeats, time_limit):
        calls.append(1)
        seconds, _, timed = real(fn, device, warmup, repeats, time_limit)
        return seconds, True, timed  # as if the step exceeded the limit

    monkeypatch.setattr(bench, "time_call", slow)
    results = bench.bench_training(["lstm"], [4, 8], 2, torch.device("cpu"), 1, 0, 60.0,
                                   log=lambda message: None)
    assert len(calls) == 1 and results[1]["skipped"] is True


def test_scan_tiny(tmp_path):
    out = tmp_path / "scan.json"
    assert main(["bench", "--scan", "--lengths", "4,8", "--device", "cpu", *TINY,
                 "--json", str(out)]) == 0
    results = load(out)["results"]
    assert {r["method"] for r in results} == set(bench.METHODS)
    assert {r["shape"].split()[0] for r in results} == {"heads", "memory"}
    assert len(results) == 2 * 2 * len(bench.METHODS)
    for r in results:
        assert set(r) == {"method", "shape", "length", "forward_seconds", "backward_seconds"}
        assert r["forward_seconds"] > 0 and r["backward_seconds"] > 0


def test_decode_tiny(tmp_path):
    out = tmp_path / "decode.json"
    assert main(["bench", "--decode", "--contexts", "4,8", "--models", "pntm,transformer",
                 "--device", "cpu", *TINY, "--json", str(out)]) == 0
    results = load(out)["results"]
    assert [(r["model"], r["context"]) for r in results] == [
        ("pntm", 4), ("pntm", 8), ("transformer", 4), ("transformer", 8)]
    for r in results:
        assert r["new_tokens"] == bench.NEW_TOKENS and r["batch"] == 2
        assert r["prefill_seconds"] > 0 and r["tokens_per_second"] > 0


@pytest.mark.parametrize("argv, fragment", [
    (["--models", "pntm,nope"], "nope"),
    (["--models", "pntm,,ntm"], "--models"),
    (["--lengths", "8,x"], "--lengths"),
    (["--lengths", "0,8"], "--lengths"),
    (["--lengths", ""], "--lengths"),
    (["--batch", "0"], "--batch"),
    (["--time-limit", "0"], "--time-limit"),
    (["--time-limit", "soon"], "--time-limit"),
    (["--scan", "--decode"], "--decode"),
    (["--batch", "2", "--tokens", "8"], "--tokens"),
    (["--tokens", "0"], "--tokens"),
    (["--tokens", "100", "--lengths", "8,16"], "multiple of length 8"),
    (["--scan", "--tokens", "64", "--lengths", "8"], "--tokens"),
    (["--decode", "--tokens", "64"], "--tokens"),
    (["--contexts", "8"], "--contexts"),
    (["--decode", "--contexts", "8,-1"], "--contexts"),
    (["--scan", "--models", "pntm"], "--models"),
    (["--set", "train.lr=1"], "model_config"),
    (["--set", "model_config.memory_width"], "--set"),
    (["--set", "model_config.nope=1"], "nope"),
    (["--set", "model_config.memory_width=-3"], "memory_width"),
    (["--models", "lstm", "--set", "model_config.memory_width=8"], "P-NTM"),
    (["--scan", "--set", "model_config.memory_width=8"], "P-NTM"),
    (["--models", "pntm+fast"], "+fast"),
    (["--models", "pntm+cudagraph"], "CUDA graphs"),
    (["--decode", "--models", "pntm+compile"], "--decode"),
])
def test_user_errors_are_one_line(capsys, argv, fragment):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error:") and err.count("\n") == 1 and fragment in err


def test_cuda_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--models", "lstm", "--lengths", "4", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pntm: error:") and "cuda" in err and err.count("\n") == 1


def test_plot_without_matplotlib(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["bench", "--models", "lstm", "--lengths", "4", "--device", "cpu",
                 "--plot", "x.png"]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and err.count("\n") == 1


def test_relaxed_pntm_variant_runs_the_fourier_path():
    from pntm.tools.bench import bench_model, parse_models

    assert parse_models("pntm,pntm-relaxed") == ["pntm", "pntm-relaxed"]
    hard, relaxed = bench_model("pntm").train(), bench_model("pntm-relaxed").train()
    assert all(layer.uses_positions() for layer in hard.layers)
    assert not any(layer.uses_positions() for layer in relaxed.layers)


def test_the_shipped_variant_is_the_shipped_model_hard():
    """``pntm-shipped`` builds the model of configs/pntm.yaml itself (not the NTM-sized P-NTM
    with its keys over it), every head hard; ``--set`` still reaches it."""
    from pntm.config_files import package_config

    shipped = package_config("pntm")["model_config"]
    assert bench.bench_config("pntm-shipped") == shipped
    model = bench.bench_model("pntm-shipped").train()
    assert len(model.layers) == shipped["layers"] and shipped["layers"] != 1
    assert all(layer.uses_positions() for layer in model.layers)
    assert bench.bench_config("pntm-shipped", {"states": 8})["states"] == 8
    assert bench.parameter_count(model) > 2 * bench.parameter_count(bench.bench_model("pntm"))


def test_a_step_over_the_limit_is_still_measured_after_its_warm_up():
    """The first (warm-up) call over the limit is not the figure: one untimed call, then the
    median of up to three timed ones."""
    durations = iter([0.05, 0.001, 0.002, 0.003, 0.004, 0.005])

    def fn():
        time.sleep(next(durations))

    seconds, over, timed = bench.time_call(fn, torch.device("cpu"), 2, 5, time_limit=0.02)
    assert over and timed == 3
    assert 0.001 < seconds < 0.02  # the median of 1, 2 and 3 ms (plus sleep overhead)


def test_peers_train_and_decode_tiny(tmp_path):
    pytest.importorskip("mambapy")
    pytest.importorskip("xlstm")
    peers = "transformer-rand,mamba,deltanet,slstm"
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", peers, "--lengths", "8", "--device", "cpu", *TINY,
                 "--json", str(out)]) == 0
    report = load(out)
    assert [r["model"] for r in report["results"]] == peers.split(",")
    assert all(r["step_seconds"] > 0 for r in report["results"])
    assert report["provenance"]["model_configs"]["transformer-rand"]["positional"] == "randomized"
    assert main(["bench", "--decode", "--models", peers, "--contexts", "4", "--device", "cpu",
                 *TINY, "--json", str(out)]) == 0
    assert all(r["tokens_per_second"] > 0 for r in load(out)["results"])


def test_default_models_leave_out_a_missing_extra(monkeypatch):
    monkeypatch.setattr(bench, "available_models", lambda: ["pntm", "lstm", "deltanet"])
    monkeypatch.setattr(bench, "MISSING_EXTRAS", {"mamba": "peers", "slstm": "peers"})
    notes = []
    assert bench.default_models("pntm,mamba,deltanet,slstm", log=notes.append) == [
        "pntm", "deltanet"]
    assert notes == ["bench: leaving out mamba (needs pip install 'pntm[peers]')",
                     "bench: leaving out slstm (needs pip install 'pntm[peers]')"]


def test_cpu_peak_memory_is_each_measurement_own():
    """On Linux the RSS high-water mark is reset per measurement: a small allocation after a
    large one is still seen (the old high-water growth reported 0 there)."""
    if not bench.reset_rss_peak():
        pytest.skip("the RSS high-water mark cannot be reset here")
    cpu = torch.device("cpu")
    sizes = {}
    for mib in (256, 64):
        with bench.PeakMemory(cpu) as peak:
            block = torch.ones(mib * 2**18)  # mib MiB of float32, touched
            del block
        sizes[mib] = peak.bytes / 2**20
    assert 240 < sizes[256] < 300 and 56 < sizes[64] < 100
    assert "VmHWM" in bench.peak_memory_kind(cpu)


def test_step_modes_name_the_model_and_how_its_step_runs():
    assert bench.split_step_mode("pntm-write+cudagraph") == ("pntm-write", "cudagraph")
    assert bench.split_step_mode("lstm") == ("lstm", "eager")
    assert bench.parse_models("pntm,pntm+compile") == ["pntm", "pntm+compile"]
    assert bench.bench_config("pntm-write+compile") == bench.bench_config("pntm-write")


def test_a_compiled_step_is_timed_after_its_compilation(tmp_path):
    """``NAME+compile``: the first call (compilation) is untimed and reported on its own, and
    the provenance says what the mode is."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--models", "lstm,lstm+compile", "--lengths", "6", "--device", "cpu",
                 *TINY, "--json", str(out)]) == 0
    report = load(out)
    eager, compiled = report["results"]
    assert compiled["model"] == "lstm+compile" and compiled["prepare_seconds"] > 0
    assert "prepare_seconds" not in eager and compiled["step_seconds"] > 0
    assert set(report["provenance"]["step_modes"]) == {"compile"}


def test_a_step_that_cannot_be_prepared_is_reported_not_raised(monkeypatch):
    """A compiler or capture failure is a measurement: the row keeps its error line and the
    model's longer lengths are skipped, the other models still run."""
    def broken(step, mode, device, capture_warmup=3):
        if mode != "eager":
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        return step, None

    monkeypatch.setattr(bench, "prepare_step", broken)
    rows = bench.bench_training(["lstm+compile", "lstm"], [4, 8], 2, torch.device("cpu"), 1, 0,
                                60.0, log=lambda message: None)
    assert [r.get("skipped", False) for r in rows] == [True, True, False, False]
    assert rows[0]["error"] == "RuntimeError: operation not permitted when stream is capturing"
    assert rows[1]["skip_reason"] == "its step failed at length 4"
