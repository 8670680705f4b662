"""Learned analysis / synthesis filterbanks: the TasNet encoder and decoder.

The encoder is a strided 1-D convolution from the waveform to ``n_filters`` channels, the decoder
its transposed counterpart.  :func:`pad_signal` pads any input of at least one sample so that every
sample is covered by the same number of windows; the model crops the decoder output back to the
input length.  (A model with ``signal_padding='none'``, asteroid's way, encodes the input as it is
and pads the decoder output with zeros at the end to the input length: see :mod:`.base`.)

>>> import torch
>>> enc, dec = Encoder(n_filters=64, kernel_size=16, stride=8), Decoder(n_filters=64, kernel_size=16, stride=8)
>>> x = torch.randn(3, 1000)
>>> padded, front = pad_signal(x, kernel_size=16, stride=8)
>>> padded.shape, front
(torch.Size([3, 1016]), 8)
>>> w = enc(padded)
>>> w.shape  # (batch, n_filters, frames)
torch.Size([3, 64, 126])
>>> dec(w).shape  # (batch, padded time)
torch.Size([3, 1016])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_ACTIVATIONS = ("relu", "linear")
SIGNAL_PADDINGS = ("overlap", "none")  # pad_signal's padding | none (asteroid's: the input as it is)


def pad_signal(x: torch.Tensor, *, kernel_size: int, stride: int) -> tuple[torch.Tensor, int]:
    """Pad the last axis so frames tile it exactly, with ``kernel_size - stride`` samples in front.

    The front padding lets the first samples be covered by as many windows as the middle ones; the
    back padding adds the same plus what is needed to complete the last frame.

    Shape: x: (..., time) -> (..., padded_time); also returns the number of samples added in front.
    """
    front = kernel_size - stride
    length = x.shape[-1] + 2 * front
    rest = (length - kernel_size) % stride
    back = front + (stride - rest) % stride
    return F.pad(x, (front, back)), front


class Encoder(nn.Module):
    """Conv1d from one channel to ``n_filters``, no bias, then ReLU (or nothing for ``'linear'``).

    Shape: (batch, time) -> (batch, n_filters, frames), frames = (time - kernel_size) // stride + 1.
    """

    def __init__(self, *, n_filters: int, kernel_size: int, stride: int, activation: str = "relu"):
        super().__init__()
        if activation not in ENCODER_ACTIVATIONS:
            raise ValueError(f"encoder_activation must be one of {ENCODER_ACTIVATIONS}, got {activation!r}")
        self.conv = nn.Conv1d(1, n_filters, kernel_size, stride=stride, bias=False)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv(x.unsqueeze(1))  # (batch, 1, time) -> (batch, n_filters, frames)
        return F.relu(w) if self.activation == "relu" else w


class Decoder(nn.Module):
    """Transposed Conv1d from ``n_filters`` channels back to one, no bias (overlap-add of bases).

    When ``stride`` divides ``kernel_size`` (TasNet's 50% overlap and the like) it runs as one matrix
    product, frames times bases, and ``kernel_size // stride`` shifted additions: the same sum as
    ``conv_transpose1d``, much faster on CPU (figures: bench/README.md).

    Shape: (batch, n_filters, frames) -> (batch, (frames - 1) * stride + kernel_size).
    """

    def __init__(self, *, n_filters: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(n_filters, 1, kernel_size, stride=stride, bias=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        (kernel,), (stride,) = self.conv.kernel_size, self.conv.stride
        if kernel % stride:
            return self.conv(w).squeeze(1)  # (batch, 1, time) -> (batch, time)
        batch, n_filters, frames = w.shape
        pieces = kernel // stride
        bases = torch.matmul(w.transpose(1, 2), self.conv.weight.view(n_filters, kernel))  # (batch, frames, kernel)
        bases = bases.view(batch, frames, pieces, stride)
        out = w.new_zeros(batch, frames + pieces - 1, stride)  # (batch, hops, stride)
        for j in range(pieces):
            out[:, j : j + frames] += bases[:, :, j]  # piece j of frame k lands at hop k + j
        return out.view(batch, -1)  # (batch, time)
