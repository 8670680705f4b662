"""Normalisations: global (gLN) and cumulative (cLN) layer norm.

Both take channel-last tensors by default (``channel_dim=1`` for the convolutions' channels-first
``(batch, channels, frames)``) and are told which axis is the batch (and the time) axis: gLN uses
statistics over everything but the batch axis, cLN over everything up to and including the current
step of the time axis (so it never looks ahead along it), which is what makes the causal model causal.

>>> import torch
>>> x = torch.randn(4, 10, 2, 8)  # (chunk frames, chunks, batch, channels)
>>> GlobalLayerNorm(8)(x, batch_dim=2).shape
torch.Size([4, 10, 2, 8])
>>> y = CumulativeLayerNorm(8)(x, batch_dim=2, time_dim=1)
>>> torch.allclose(y[:, :3], CumulativeLayerNorm(8)(x[:, :3], batch_dim=2, time_dim=1), atol=1e-6)
True
>>> x = torch.randn(2, 8, 50)  # (batch, channels, frames)
>>> CumulativeLayerNorm(8)(x, batch_dim=0, time_dim=2, channel_dim=1).shape
torch.Size([2, 8, 50])
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

    def forward(self, x: torch.Tensor, *, batch_dim: int = 0, time_dim: int = 1, channel_dim: int = -1) -> torch.Tensor:
        scale, shift = self.scale_shift(x, batch_dim=batch_dim, time_dim=time_dim, channel_dim=channel_dim)
        return torch.addcmul(shift, x, scale)  # one pass over x

    def scale_shift(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, channel_dim: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale`` and ``shift`` with ``norm(x) == x * scale + shift``, both broadcastable to ``x``."""
        mean, var = self.moments(x, batch_dim=batch_dim, time_dim=time_dim)
        gain, bias = self.gain, self.bias
        if channel_dim % x.dim() != x.dim() - 1:  # (channels,) -> (channels, 1, ...) to broadcast along channel_dim
            trailing = (1,) * (x.dim() - 1 - channel_dim % x.dim())
            gain, bias = gain.view(-1, *trailing), bias.view(-1, *trailing)
        scale = torch.rsqrt(var + self.eps) * gain
        return scale, bias - mean * scale

    def moments(self, x: torch.Tensor, *, batch_dim: int, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class GlobalLayerNorm(_ChannelLastNorm):
    """Layer norm with one mean and variance per example, over all axes but ``batch_dim``.

    Shape: (..., channels) -> same; ``time_dim`` is accepted for symmetry with cLN and unused.
    """

    def moments(self, x: torch.Tensor, *, batch_dim: int, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        dims = [d for d in range(x.dim()) if d != batch_dim]
        # sums, not torch.var_mean: its Welford pass is several times slower on CPU
        mean = x.mean(dims, keepdim=True)
        if x.shape[batch_dim] == 1 or batch_dim == 0:  # a norm needs no copy of x (a 60 s mixture: 8 ms, not 45)
            count = x.numel() // x.shape[batch_dim]
            mean_square = torch.linalg.vector_norm(x, 2, dims, keepdim=True).square() / count
        else:  # a reduction that keeps a middle axis is slow for the norm, fast for x * x
            mean_square = (x * x).mean(dims, keepdim=True)
        return mean, mean_square.sub_(mean * mean).clamp_min_(0)


class CumulativeLayerNorm(_ChannelLastNorm):
    """Layer norm whose statistics at step t of ``time_dim`` use steps 0..t only (other axes whole).

    Shape: (..., channels) -> same.
    """

    def moments(self, x: torch.Tensor, *, batch_dim: int, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        dims = [d for d in range(x.dim()) if d not in (batch_dim, time_dim)]
        steps = x.shape[time_dim]
        per_step = x.numel() // (steps * x.shape[batch_dim])
        count_shape = [1] * x.dim()
        count_shape[time_dim] = steps
        count = per_step * torch.arange(1, steps + 1, device=x.device, dtype=x.dtype).view(count_shape)
        mean = x.sum(dims, keepdim=True).cumsum(time_dim) / count  # 1 on every axis but batch and time
        var = (x.pow(2).sum(dims, keepdim=True).cumsum(time_dim) / count - mean.pow(2)).clamp_min(0)
        return mean, var


def make_norm(kind: str, channels: int) -> nn.Module:
    """Build ``'gln'`` or ``'cln'`` over ``channels`` (the last axis)."""
    if kind == "gln":
        return GlobalLayerNorm(channels)
    if kind == "cln":
        return CumulativeLayerNorm(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
