"""P-NTM's training step captured as one CUDA graph computes what the eager step does.

Runs only where CUDA is available (a lent GPU machine; skipped elsewhere, CI included). The
capture needs a step free of host reads: the data-dependent early exits of the hard heads'
backward (``pntm.ops.hard_heads.capturing``) run to their static bound under capture."""

import pytest
import torch

from pntm.tools import bench

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("name", ["pntm", "pntm-write", "lstm"])
def test_captured_step_equals_eager_steps(name):
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tokens = bench.random_tokens(4, 97, torch.Generator().manual_seed(1)).to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    losses = {}
    for mode in ("eager", "cudagraph"):
        torch.manual_seed(0)
        model = bench.bench_model(name).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2,
                                      capturable=mode == "cudagraph")
        record, one_step = [], bench.training_step(model, optimizer, inputs, targets)

        def step():
            record.append(one_step().detach())

        run, _ = bench.prepare_step(step, mode, device, capture_warmup=3)
        if mode == "eager":
            for _ in range(8):
                run()
            losses[mode] = [float(x) for x in record]
        else:
            # 3 warm-up steps and the captured step ran once each; replay 4 more
            captured = record[-1]
            values = [float(x) for x in record[:3]]
            for _ in range(5):
                run()
                values.append(float(captured))
            losses[mode] = values[:8]
        losses[mode + "-params"] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert losses["eager"] == pytest.approx(losses["cudagraph"], rel=1e-4, abs=1e-5)
    torch.testing.assert_close(losses["eager-params"], losses["cudagraph-params"],
                               rtol=1e-3, atol=1e-4)
