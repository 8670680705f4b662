"""dnnsep: end-to-end speech source separation (Dual-Path RNN TasNet) in PyTorch."""

__version__ = "0.1.0"
MIN_TORCH = (2, 3)  # torch.amp.GradScaler(device), torch.compiler.is_compiling; requirements.txt says the same


def torch_version() -> tuple[int, int] | None:
    """torch's (major, minor), or None where its version string does not begin with them (a custom build)."""
    import re

    import torch

    found = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(found[1]), int(found[2])) if found else None


def _check_torch() -> None:
    """Refuse an older torch at import, in one line, rather than with an AttributeError mid-run."""
    import torch

    found = torch_version()
    if found and found < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise ImportError(
            f"dnnsep needs torch >= {need}, but this Python has torch {torch.__version__}: upgrade with "
            f"pip install -U 'torch>={need}' (Intel Macs stop at torch 2.2: use an Apple Silicon Mac, Linux or Colab)"
        )


_check_torch()

from .errors import AudioError, CheckpointError, DnnsepError  # noqa: E402
from .models import ConvTasNet, ConvTasNetConfig, DPRNNConfig, DPRNNTasNet  # noqa: E402

__all__ = [
    "AudioError",
    "CheckpointError",
    "ConvTasNet",
    "ConvTasNetConfig",
    "DPRNNConfig",
    "DPRNNTasNet",
    "DnnsepError",
    "__version__",
]
