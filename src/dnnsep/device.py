"""Device choice: CUDA, then Apple MPS, then CPU, unless one is forced."""

from __future__ import annotations

import torch

from .errors import DnnsepError


def select_device(name: str | None = None) -> torch.device:
    """Return ``torch.device(name)`` if given (checked to exist), else the best available one."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DnnsepError(f"unknown device {name!r}: use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DnnsepError(f"device {name!r} asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DnnsepError(f"device {name!r} asked for, but Apple MPS is not available here")
    return device
