"""Normalisations over channel-last tensors: global (gLN) and cumulative (cLN) layer norm.

Both take ``(batch, time, ..., channels)``: gLN uses statistics over everything but the batch axis,
cLN over everything up to and including the current step of axis 1 (so it never looks ahead along
that axis), which is what makes the causal model causal.

>>> import torch
>>> x = torch.randn(2, 10, 4, 8)  # (batch, chunks, chunk frames, channels)
>>> GlobalLayerNorm(8)(x).shape
torch.Size([2, 10, 4, 8])
>>> y = CumulativeLayerNorm(8)(x)
>>> torch.allclose(y[:, :3], CumulativeLayerNorm(8)(x[:, :3]))  # no look-ahead along axis 1
True
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("gln", "cln")


class _ChannelLastNorm(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps


class GlobalLayerNorm(_ChannelLastNorm):
    """Layer norm with one mean and variance per example, over all axes but the first.

    Shape: (batch, ..., channels) -> same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gain + self.bias


class CumulativeLayerNorm(_ChannelLastNorm):
    """Layer norm whose statistics at step t of axis 1 use steps 0..t only (all other axes whole).

    Shape: (batch, time, ..., channels) -> same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps = x.shape[:2]
        flat = x.reshape(batch, steps, -1)  # (batch, time, features per step)
        per_step = flat.shape[-1]
        s1 = flat.sum(-1).cumsum(1)  # (batch, time)
        s2 = flat.pow(2).sum(-1).cumsum(1)
        count = per_step * torch.arange(1, steps + 1, device=x.device, dtype=x.dtype)
        mean = s1 / count
        var = (s2 / count - mean.pow(2)).clamp_min(0)
        shape = (batch, steps) + (1,) * (x.dim() - 2)
        mean, var = mean.view(shape), var.view(shape)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.gain + self.bias


def make_norm(kind: str, channels: int) -> nn.Module:
    """Build ``'gln'`` or ``'cln'`` over ``channels`` (the last axis)."""
    if kind == "gln":
        return GlobalLayerNorm(channels)
    if kind == "cln":
        return CumulativeLayerNorm(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
