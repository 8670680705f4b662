"""Device choice: CUDA, then Apple MPS, then CPU, unless one is forced; and a check of MPS's results.

``--device auto`` (the default) takes the first available of ``cuda``, ``mps``, ``cpu``; ``cpu``,
``cuda``, ``cuda:N`` and ``mps`` force one.

Apple's MPS backend has had kernels that give wrong results for some models and torch versions.
Before a model first runs on MPS in a process, :func:`guard_mps` compares its output on a fixed
input with the CPU's; beyond :data:`MPS_TOLERANCE` (or if the MPS pass fails) it moves the model to
the CPU and prints one line saying so.  ``DNNSEP_FORCE_MPS=1`` skips the check and keeps MPS.
"""

from __future__ import annotations

import copy
import os
import sys

import torch
from torch import nn

from .errors import DnnsepError

FORCE_MPS_ENV = "DNNSEP_FORCE_MPS"
MPS_TOLERANCE = 1e-3  # largest difference from the CPU's output allowed, relative to its largest value
CHECK_SECONDS = 0.5  # length of the fixed input

_mps_verdicts: dict[str, str | None] = {}  # per model architecture in this process: None (fine) or why not


def select_device(name: str | None = None) -> torch.device:
    """Return ``torch.device(name)`` if given (checked to exist), else the best available one:
    CUDA, then MPS, then CPU (``name`` None, ``""`` or ``"auto"``)."""
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


def guard_mps(model: nn.Module, *, forward=None, what: str = "") -> tuple[nn.Module, torch.device]:
    """``(model, device)``: unchanged unless ``model`` is on MPS and its MPS output disagrees with the CPU's.

    Then the model is moved to the CPU (one line on stderr says why and how to force MPS) and the CPU
    is returned.  The check runs once per architecture per process, in inference mode, on a copy of
    the model moved to the CPU; the model's train/eval mode and the global RNG are left as they were.
    A model that does not take ``(batch, time)`` audio is compared on its first input alike, so pass
    audio models only.  ``forward(model, x, device)`` (default: the offline pass, in inference mode)
    is what is compared, e.g. a streaming pass; ``what`` names it in the key and the message.  Shape of
    the fixed input: (1, ``CHECK_SECONDS`` * sample rate).
    """
    device = _model_device(model)
    if device.type != "mps" or os.environ.get(FORCE_MPS_ENV, "") == "1":
        return model, device
    key = f"{what}{type(model).__qualname__}:{getattr(model, 'config', '')!r}"
    if key not in _mps_verdicts:
        _mps_verdicts[key] = _compare_with_cpu(model, device, forward or _forward)
    why = _mps_verdicts[key]
    if why is None:
        return model, device
    running = f"running {what} on the CPU" if what else "running on the CPU"
    print(f"note: {running}, not MPS: {why}; set {FORCE_MPS_ENV}=1 to use MPS anyway", file=sys.stderr)
    return model.to("cpu"), torch.device("cpu")


def _compare_with_cpu(model: nn.Module, device: torch.device, forward) -> str | None:
    """None if ``model`` (on ``device``) gives the CPU's output on a fixed input, else what differed."""
    sample_rate = int(getattr(model, "sample_rate", 16000))
    generator = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(1, int(CHECK_SECONDS * sample_rate), generator=generator)  # (1, time)
    training = model.training
    try:
        model.eval()
        reference = forward(copy.deepcopy(model).to("cpu"), x, torch.device("cpu"))
        try:
            got = forward(model, x, device)
        except (RuntimeError, TypeError, NotImplementedError) as err:  # an operator or dtype MPS lacks, a kernel error
            return f"the model fails on MPS ({str(err).splitlines()[0][:200]})"
    finally:
        model.train(training)
    if got.shape != reference.shape or not torch.isfinite(got).all():
        return "the model's MPS output is malformed or not finite on a test input"
    error = float((got - reference).abs().max()) / max(float(reference.abs().max()), 1e-12)
    if error > MPS_TOLERANCE:
        return f"its MPS output differs from the CPU's by {error:.2g} (relative; tolerance {MPS_TOLERANCE:g})"
    return None


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``model`` (on ``device``) applied to ``x``, the output as float32 on the CPU."""
    with torch.inference_mode():
        return model(x.to(device)).float().to("cpu")


def _model_device(model: nn.Module) -> torch.device:
    for param in model.parameters():
        return param.device
    return torch.device("cpu")
