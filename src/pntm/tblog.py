"""Optional TensorBoard logging of training metrics, beside ``metrics.jsonl``.

Turned on by ``train.tensorboard: true`` (or ``pntm train --tensorboard``); the event files go to
``RUN_DIR/tensorboard/`` (``tensorboard --logdir RUN_DIR``). ``metrics.jsonl`` stays the record
of a run: TensorBoard is a viewer, so it is an optional extra (``pip install 'pntm[tensorboard]'``)
imported only when asked for, and a missing install is a one-line error before any run directory
is created.

A resumed run re-logs the steps after its last checkpoint; the writer is opened with
``purge_step`` at the resumed step, so TensorBoard drops the stale events instead of showing the
same steps twice.
"""

from __future__ import annotations

from pathlib import Path

from pntm.errors import ConfigError

INSTALL_HINT = "pip install 'pntm[tensorboard]'"


def check_available() -> None:
    """Raise a one-line ConfigError when TensorBoard cannot be imported."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(f"train.tensorboard needs the tensorboard package, which is not "
                          f"installed ({INSTALL_HINT})") from None


class TensorBoardLog:
    """Scalars of metrics rows, under ``{group}/{key}``, at the row's ``step``."""

    def __init__(self, log_dir: str | Path, purge_step: int):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def write(self, row: dict, group: str = "train") -> None:
        step = row["step"]
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
