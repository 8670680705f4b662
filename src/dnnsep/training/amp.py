"""Mixed precision: the one place that decides which autocast dtype a device gets, and whether it
needs a gradient scaler.

``amp: true`` in the training config asks for mixed precision.  The policy:

- **CUDA, compute capability 8 or more** (A100, A10, L4, H100, RTX 30xx and newer): bfloat16
  autocast.  Under autocast cuDNN's LSTM kernel runs in float16 whatever dtype was asked (torch's
  ``AutocastRNN``), so the DPRNN's LSTM gradients have float16's range: a
  :class:`torch.amp.GradScaler` runs with bfloat16 too (its cost is one fused unscale a step).
- **CUDA below 8** (T4, V100, P100: no bfloat16 compute, though ``torch.cuda.is_bf16_supported()``
  says True by emulation): float16 autocast with a GradScaler, whose scale is saved in
  ``last.pth`` and restored on resume.
- **CPU with bfloat16 instructions** (the ``avx512_bf16`` or ``amx_bf16`` flag: recent AMD EPYC and
  Ryzen, Intel Xeon since Cooper Lake): bfloat16 autocast, which oneDNN's LSTM and matmul kernels run
  natively; no scaler (bfloat16 has float32's range).  Other CPUs (AVX2, and AVX-512 without BF16,
  where bfloat16 is emulated and slower) and MPS: ignored, with a line in the training log.
  ``DNNSEP_CPU_BF16=0`` turns the CPU's bfloat16 off, ``=1`` on (for a CPU that has the instructions
  but does not report them); unset or ``auto`` reads the CPU's flags.

The SI-SDR loss and the norms' statistics stay in float32 under autocast (see :mod:`dnnsep.losses`
and :mod:`dnnsep.models.norms`).

>>> cuda = torch.device("cuda")
>>> amp_dtype(cuda, capability=(7, 5)), amp_dtype(cuda, capability=(8, 0))  # a T4, an A100
(torch.float16, torch.bfloat16)
>>> cpu = torch.device("cpu")
>>> uses_scaler(torch.float16, cuda), uses_scaler(torch.bfloat16, cuda), uses_scaler(torch.bfloat16, cpu)
(True, True, False)
>>> amp_dtype(torch.device("cpu"), bf16_supported=False) is None, amp_dtype(torch.device("mps")) is None
(True, True)
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from functools import cache

import torch

from ..errors import DnnsepError

CPU_BF16_ENV = "DNNSEP_CPU_BF16"
CUDA_BF16_CAPABILITY = 8  # the first major compute capability with bfloat16 arithmetic (Ampere)
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # as /proc/cpuinfo spells them


def amp_dtype(
    device: torch.device, *, capability: tuple[int, int] | None = None, bf16_supported: bool | None = None
) -> torch.dtype | None:
    """The autocast dtype for mixed precision on ``device``, or None where it is not used.

    ``capability``: a CUDA device's compute capability (by default the device's own);
    ``bf16_supported``: whether this CPU runs bfloat16 natively (by default :func:`cpu_has_bf16`).
    """
    if device.type == "cuda":
        if capability is None:
            capability = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if capability[0] >= CUDA_BF16_CAPABILITY else torch.float16
    if device.type == "cpu":
        if bf16_supported is None:
            bf16_supported = cpu_has_bf16()
        return torch.bfloat16 if bf16_supported else None
    return None


def uses_scaler(dtype: torch.dtype | None, device: torch.device) -> bool:
    """Whether training under autocast to ``dtype`` on ``device`` needs loss scaling: float16 anywhere,
    and bfloat16 on CUDA, whose autocast runs cuDNN's LSTMs in float16."""
    return dtype == torch.float16 or (dtype == torch.bfloat16 and device.type == "cuda")


def cpu_has_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (:data:`CPU_BF16_FLAGS`), unless ``DNNSEP_CPU_BF16``
    says otherwise (``0`` off, ``1`` on, ``auto`` or unset: the CPU's flags)."""
    forced = os.environ.get(CPU_BF16_ENV, "auto").strip().lower()
    if forced in ("0", "1"):
        return forced == "1"
    if forced not in ("", "auto"):
        raise DnnsepError(f"{CPU_BF16_ENV}={forced!r}: use 0 (off), 1 (on) or auto (the CPU's flags)")
    return bf16_in_flags(cpu_flags())


def bf16_in_flags(flags: frozenset[str] | set[str]) -> bool:
    """Whether a CPU with these feature flags (lower case, as in /proc/cpuinfo) runs bfloat16 natively.

    >>> bf16_in_flags({"avx2", "avx512f", "avx512bw"}), bf16_in_flags({"avx2", "avx512f", "avx512_bf16"})
    (False, True)
    """
    return bool(CPU_BF16_FLAGS & set(flags))


@cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags, lower case: /proc/cpuinfo's ``flags`` on Linux, ``sysctl`` on an
    Intel Mac (with /proc/cpuinfo's spelling of the bfloat16 flags); empty elsewhere."""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("flags"):
                        return frozenset(line.split(":", 1)[1].split())
        except OSError:
            pass
        return frozenset()
    if platform.system() == "Darwin" and platform.machine() == "x86_64":
        try:
            names = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.features", "machdep.cpu.leaf7_features"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.lower()
        except (OSError, subprocess.SubprocessError):
            return frozenset()
        spelt = {"avx512bf16": "avx512_bf16", "amxbf16": "amx_bf16"}
        return frozenset(spelt.get(name, name) for name in names.split())
    return frozenset()


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for ``dtype=None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def describe(dtype: torch.dtype | None, *, scaled: bool) -> str:
    """One line for logs: what mixed precision does (``scaled``: with a gradient scaler).

    >>> describe(torch.float16, scaled=True)
    'float16 autocast with a gradient scaler'
    """
    if dtype is None:
        return "float32 (no autocast)"
    return str(dtype).replace("torch.", "") + " autocast" + (" with a gradient scaler" if scaled else "")
