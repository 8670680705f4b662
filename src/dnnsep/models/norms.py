"""Normalisations: global (gLN) and cumulative (cLN) layer norm.

Both take channel-last tensors by default (``channel_dim=1`` for the convolutions' channels-first
``(batch, channels, frames)``) and are told which axis is the batch (and the time) axis: gLN uses
statistics over everything but the batch axis, cLN over everything up to and including the current
step of the time axis (so it never looks ahead along it), which is what makes the causal model causal.

Under mixed precision the statistics are computed in float32 whatever the input's dtype (a half
precision sum of squares over a whole utterance overflows or loses the mean), and the output is
float32 like ``torch.nn.LayerNorm``'s under autocast.

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

A stream cut along time gets, piece by piece, what the whole would get, when its cLN carries its
sums from piece to piece (:class:`NormCarry`):

>>> norm, carry = CumulativeLayerNorm(8), NormCarry()
>>> pieces = [norm(x[..., t : t + 7], batch_dim=0, time_dim=2, channel_dim=1, carry=carry) for t in range(0, 50, 7)]
>>> torch.allclose(torch.cat(pieces, -1), norm(x, batch_dim=0, time_dim=2, channel_dim=1), atol=1e-5)
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

    def forward(
        self,
        x: torch.Tensor,
        *,
        batch_dim: int = 0,
        time_dim: int = 1,
        channel_dim: int = -1,
        carry: NormCarry | None = None,
    ) -> torch.Tensor:
        scale, shift = self.scale_shift(x, batch_dim=batch_dim, time_dim=time_dim, channel_dim=channel_dim, carry=carry)
        return torch.addcmul(shift, x, scale)  # one pass over x

    def scale_shift(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, channel_dim: int = -1, carry: NormCarry | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale`` and ``shift`` with ``norm(x) == x * scale + shift``, both broadcastable to ``x``.

        Both are at least float32: half-precision inputs are cast up before their moments are taken.
        ``carry``: the statistics of the steps before ``x`` along ``time_dim`` (cLN on a stream), updated.
        """
        mean, var = self.moments(at_least_float32(x), batch_dim=batch_dim, time_dim=time_dim, carry=carry)
        gain, bias = self.affine(x.dim(), channel_dim)
        scale = torch.rsqrt(var + self.eps) * gain
        return scale, bias - mean * scale

    def affine(self, ndim: int, channel_dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """``gain`` and ``bias`` shaped to broadcast along ``channel_dim`` of an ``ndim``-axis tensor."""
        gain, bias = self.gain, self.bias
        if channel_dim % ndim != ndim - 1:  # (channels,) -> (channels, 1, ...) to broadcast along channel_dim
            trailing = (1,) * (ndim - 1 - channel_dim % ndim)
            gain, bias = gain.view(-1, *trailing), bias.view(-1, *trailing)
        return gain, bias

    def moments(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, carry: NormCarry | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class GlobalLayerNorm(_ChannelLastNorm):
    """Layer norm with one mean and variance per example, over all axes but ``batch_dim``.

    Shape: (..., channels) -> same; ``time_dim`` is accepted for symmetry with cLN and unused.
    """

    def moments(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, carry: NormCarry | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if carry is not None:
            raise ValueError("gLN looks at the whole input: it cannot run on a stream (use cLN)")
        if x.shape[batch_dim] == 1 or batch_dim == 0:
            return _batch_first_moments(x, batch_dim)
        # a reduction that keeps a middle axis adds up one element after another (slow, and its
        # rounding grows with the count): reduce a batch-first copy instead.  Means, not a norm over a
        # count of elements: torch.export fixed that count to the example's here (ONNX export)
        xb = x.movedim(batch_dim, 0).contiguous()  # (batch, ...)
        dims = list(range(1, x.dim()))
        mean = xb.mean(dims, keepdim=True)
        var = (xb * xb).mean(dims, keepdim=True).sub_(mean * mean).clamp_min_(0)
        return mean.movedim(0, batch_dim), var.movedim(0, batch_dim)


class CumulativeLayerNorm(_ChannelLastNorm):
    """Layer norm whose statistics at step t of ``time_dim`` use steps 0..t only (other axes whole).

    With a :class:`NormCarry`, ``x`` is the next piece of a stream along ``time_dim``: its steps are
    counted after the carried ones and their sums added to the carried sums.

    Shape: (..., channels) -> same.
    """

    def moments(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, carry: NormCarry | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dims = [d for d in range(x.dim()) if d not in (batch_dim, time_dim)]
        steps = x.shape[time_dim]
        per_step = x.numel() // (steps * x.shape[batch_dim])
        sums = x.sum(dims, keepdim=True).cumsum(time_dim)  # 1 on every axis but batch and time
        squares = x.pow(2).sum(dims, keepdim=True).cumsum(time_dim)
        first = 1
        if carry is not None:
            first = carry.steps + 1
            sums, squares = carry.advance(sums, squares, time_dim=time_dim)
        count_shape = [1] * x.dim()
        count_shape[time_dim] = steps
        count = per_step * torch.arange(first, first + steps, device=x.device, dtype=x.dtype).view(count_shape)
        mean = sums / count
        var = (squares / count - mean.pow(2)).clamp_min(0)
        return mean, var


class NormCarry:
    """What a :class:`CumulativeLayerNorm` carries along a stream cut into pieces: the steps seen and
    the running sums and sums of squares at the last of them.

    The sums are float32 with a compensation term (two-sum), so each piece gets the statistics the
    whole stream would, on any device (MPS has no float64) and after any number of pieces.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next step is step 0."""
        self.steps = 0
        self.sums: tuple = (0.0, 0.0)  # (high, low) parts of the running totals
        self.squares: tuple = (0.0, 0.0)

    def advance(self, sums: torch.Tensor, squares: torch.Tensor, *, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A piece's cumulative sums and sums of squares plus the carried ones; carries the new totals.

        Shape: (..., steps, ...) along ``time_dim``, each -> same.
        """
        self.steps += sums.shape[time_dim]
        sums, self.sums = _carried(sums, self.sums, time_dim)
        squares, self.squares = _carried(squares, self.squares, time_dim)
        return sums, squares


def _carried(
    local: torch.Tensor, total: tuple[torch.Tensor | float, torch.Tensor | float], time_dim: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Running totals ``total + local`` (``local``: this piece's cumulative sums), and the new carried
    ``(high, low)`` pair at the piece's last step: the rounding error of each addition goes to ``low``
    (two-sum), so the carried total stays exact to the last bit however long the stream.

    Shape: local (..., steps, ...) along ``time_dim`` -> (same, (pair of 1 along ``time_dim``)).
    """
    high, low = total
    s = local + high
    back = s - local
    low = (local - (s - back)) + (high - back) + low  # the error of s, plus what was carried before
    out = s + low
    last = out.shape[time_dim] - 1
    head = out.narrow(time_dim, last, 1)
    tail = low.narrow(time_dim, last, 1) - (head - s.narrow(time_dim, last, 1))  # what head left out of s + low
    return out, (head, tail)


def _batch_first_moments(x: torch.Tensor, batch_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """gLN's mean and variance of ``x`` whose batch axis is first (or of size 1), without a copy of ``x``.

    Sums, not torch.var_mean: its Welford pass is several times slower on CPU (see bench/README.md).
    """
    dims = [d for d in range(x.dim()) if d != batch_dim]
    mean = x.mean(dims, keepdim=True)
    mean_square = torch.linalg.vector_norm(x, 2, dims, keepdim=True).square() / (x.numel() // x.shape[batch_dim])
    return mean, mean_square.sub_(mean * mean).clamp_min_(0)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` cast up to float32 if it is in a half-precision dtype (float16, bfloat16), else ``x``."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def make_norm(kind: str, channels: int) -> nn.Module:
    """Build ``'gln'`` or ``'cln'`` over ``channels`` (the last axis)."""
    if kind == "gln":
        return GlobalLayerNorm(channels)
    if kind == "cln":
        return CumulativeLayerNorm(channels)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")
