"""Mixed precision: which autocast dtype a device gets, and whether it needs a gradient scaler.

``amp: true`` in the training config asks for mixed precision.  On CUDA it runs under bfloat16
autocast where the GPU supports it (Ampere and newer: float32's range, so no loss scaling), else
float16 with a :class:`torch.amp.GradScaler`.  Elsewhere it is ignored (the trainer logs a line):
CPU autocast is slower than float32 for this model, and MPS autocast is not dependable yet.  The
SI-SDR loss and the norms' statistics stay in float32 under autocast (see :mod:`dnnsep.losses` and
:mod:`dnnsep.models.norms`).

>>> amp_dtype(torch.device("cuda"), bf16_supported=True), amp_dtype(torch.device("cuda"), bf16_supported=False)
(torch.bfloat16, torch.float16)
>>> amp_dtype(torch.device("cpu")) is None, uses_scaler(torch.float16), uses_scaler(torch.bfloat16)
(True, True, False)
"""

from __future__ import annotations

import contextlib

import torch


def amp_dtype(device: torch.device, *, bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype for mixed precision on ``device``, or None where it is not used (not CUDA).

    ``bf16_supported`` defaults to ``torch.cuda.is_bf16_supported()`` (pass it to decide without a GPU).
    """
    if device.type != "cuda":
        return None
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return torch.bfloat16 if bf16_supported else torch.float16


def uses_scaler(dtype: torch.dtype | None) -> bool:
    """Whether training under autocast to ``dtype`` needs loss scaling (float16's range is too small)."""
    return dtype == torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
