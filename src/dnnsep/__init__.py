"""dnnsep: end-to-end speech source separation (Dual-Path RNN TasNet) in PyTorch."""

__version__ = "0.1.0"

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
