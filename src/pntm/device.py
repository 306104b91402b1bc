"""Pick the torch device a command runs on."""

import torch

from pntm.errors import PntmError


def resolve_device(name: str | None = None) -> torch.device:
    """``None`` means CUDA when available, else CPU; ``"cuda"`` without CUDA is a user error."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PntmError(f"unknown device '{name}' (use cpu or cuda)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PntmError("--device cuda was asked for, but this PyTorch build sees no CUDA GPU")
    if device.type not in ("cpu", "cuda"):
        raise PntmError(f"unsupported device '{name}' (use cpu or cuda)")
    return device
