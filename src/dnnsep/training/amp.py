"""Mixed precision: which autocast dtype a device gets, and whether it needs a gradient scaler.

``amp: true`` in the training config asks for mixed precision.  On CUDA it runs under bfloat16
autocast where the GPU supports it (Ampere and newer: float32's range, so no loss scaling), else
float16 with a :class:`torch.amp.GradScaler`.  On a CPU with bfloat16 instructions (AVX-512 BF16 or
AMX: recent AMD EPYC and Ryzen, Intel Xeon since Cooper Lake) it runs under bfloat16 autocast, which
oneDNN's LSTM and matmul kernels run natively: a DPRNN training step takes 0.5-0.75x the float32
time there (bench/README.md).  Elsewhere it is ignored (the trainer logs a line): on a CPU without
those instructions bfloat16 is emulated and slower than float32, and MPS autocast is not dependable
yet.  The SI-SDR loss and the norms' statistics stay in float32 under autocast (see
:mod:`dnnsep.losses` and :mod:`dnnsep.models.norms`).

>>> amp_dtype(torch.device("cuda"), bf16_supported=True), amp_dtype(torch.device("cuda"), bf16_supported=False)
(torch.bfloat16, torch.float16)
>>> amp_dtype(torch.device("cpu"), bf16_supported=True), amp_dtype(torch.device("cpu"), bf16_supported=False)
(torch.bfloat16, None)
>>> amp_dtype(torch.device("mps")) is None, uses_scaler(torch.float16), uses_scaler(torch.bfloat16)
(True, True, False)
"""

from __future__ import annotations

import contextlib

import torch


def amp_dtype(device: torch.device, *, bf16_supported: bool | None = None) -> torch.dtype | None:
    """The autocast dtype for mixed precision on ``device``, or None where it is not used.

    ``bf16_supported``: whether the device runs bfloat16 natively; by default
    ``torch.cuda.is_bf16_supported()`` on CUDA and :func:`cpu_has_bf16` on the CPU (pass it to decide
    for another machine).  CUDA without bfloat16 gets float16; a CPU without it, None.
    """
    if device.type == "cuda":
        if bf16_supported is None:
            bf16_supported = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16_supported else torch.float16
    if device.type == "cpu":
        if bf16_supported is None:
            bf16_supported = cpu_has_bf16()
        return torch.bfloat16 if bf16_supported else None
    return None


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions that oneDNN uses (AVX-512 BF16, AMX), so CPU autocast pays."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or an older torch
        return False


def uses_scaler(dtype: torch.dtype | None) -> bool:
    """Whether training under autocast to ``dtype`` needs loss scaling (float16's range is too small)."""
    return dtype == torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
