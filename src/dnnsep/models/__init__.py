"""Separation models."""

from .dprnn_tasnet import DPRNNConfig, DPRNNTasNet

__all__ = ["DPRNNConfig", "DPRNNTasNet"]
