"""SepFormer's intra- and inter-chunk model: a pre-norm transformer encoder over one axis of the chunks.

Each path adds sinusoidal positions (computed for the sequence's length at every call, so any length
works), runs ``layers`` pre-norm layers (layer norm, multi-head self-attention, residual; layer
norm, feed-forward with ReLU, residual) and ends with a layer norm, as in Subakan et al. (2021) and
SpeechBrain's ``SBTransformerBlock`` with ``norm_before``.  The attention's weights are laid out as
:class:`torch.nn.MultiheadAttention`'s (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and the
attention itself is :func:`torch.nn.functional.scaled_dot_product_attention` (the fused kernels).

Layout: a path takes and gives sequence-first tensors, as :class:`~dnnsep.models.dual_path.DualPathBlock`
does; its layers run batch first.

>>> import torch
>>> path = TransformerPath(channels=16, layers=2, heads=4, ffn=32)
>>> path(torch.randn(250, 3, 16)).shape  # (time, batch, channels) -> same
torch.Size([250, 3, 16])
>>> positions(4, 6)[1]  # sin, cos of position 1 at frequencies 1, 10000^(-2/6), 10000^(-4/6)
tensor([0.8415, 0.5403, 0.0464, 0.9989, 0.0022, 1.0000])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def positions(length: int, channels: int, *, device: torch.device | None = None) -> torch.Tensor:
    """Sinusoidal position codes: ``sin(p * f_i)`` at even channels, ``cos(p * f_i)`` at odd ones,
    ``f_i = 10000^(-2i / channels)``; computed in float32 as SpeechBrain computes its table.

    Shape: -> (length, channels), float32.
    """
    steps = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, channels, 2, device=device).float() * -(math.log(10000.0) / channels))
    out = torch.empty(length, channels, device=device)
    out[:, 0::2] = torch.sin(steps * freqs)
    out[:, 1::2] = torch.cos(steps * freqs)
    return out


class SelfAttention(nn.Module):
    """Multi-head self-attention with :class:`torch.nn.MultiheadAttention`'s parameters.

    Short sequences (at most :attr:`SHORT` steps: the inter-chunk path's, a few chunks) take two batched
    matrix products and a softmax, faster there on a CPU than the fused kernel, which longer ones take
    (its memory does not grow with the square of the length).

    Shape: (batch, time, channels) -> same.
    """

    SHORT = 96

    def __init__(self, channels: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be a multiple of heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * channels, channels))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * channels))
        self.out_proj = nn.Linear(channels, channels)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (batch, time, 3 * channels)
        q, k, v = qkv.view(batch, time, 3, self.heads, channels // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if time <= self.SHORT and not dropout and x.device.type == "cpu":
            scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2))  # (batch, heads, time, time)
            y = torch.matmul(torch.softmax(scores, dim=-1), v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (batch, heads, time, head channels)
        return self.out_proj(y.transpose(1, 2).reshape(batch, time, channels))


class TransformerLayer(nn.Module):
    """Pre-norm: ``x + attention(norm1(x))``, then ``x + ffn(norm2(x))``.

    Shape: (batch, time, channels) -> same.
    """

    def __init__(self, *, channels: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels, eps=1e-6)
        self.attention = SelfAttention(channels, heads, dropout)
        self.norm2 = nn.LayerNorm(channels, eps=1e-6)
        self.ffn_in = nn.Linear(channels, ffn)
        self.ffn_out = nn.Linear(ffn, channels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, train = self.dropout, self.training
        x = _residual(x, F.dropout(self.attention(self.norm1(x)), p, train))
        h = F.relu(self.ffn_in(self.norm2(x)), inplace=True)  # in place: the linear layer's fresh output
        return _residual(x, F.dropout(self.ffn_out(F.dropout(h, p, train)), p, train))


def _residual(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x + y``; without autograd, into ``y`` (a sub-layer's fresh output), saving a tensor's allocation."""
    return x + y if torch.is_grad_enabled() or y.dtype != x.dtype else y.add_(x)


class TransformerPath(nn.Module):
    """Positions added, ``layers`` :class:`TransformerLayer`, a final layer norm.

    The layers run batch first: one transposing copy in and one out, instead of one per layer.

    Shape: (time, batch, channels) -> same.
    """

    def __init__(self, *, channels: int, layers: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(channels=channels, heads=heads, ffn=ffn, dropout=dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time, batch, channels = x.shape
        codes = positions(time, channels, device=x.device).to(x.dtype)  # (time, channels)
        if torch.is_grad_enabled():
            y = (x.transpose(0, 1) + codes).contiguous()  # batch first
        else:  # the same, written straight into a contiguous tensor
            y = torch.add(x.transpose(0, 1), codes, out=x.new_empty(batch, time, channels))
        for layer in self.layers:
            y = layer(y)
        return self.norm(y).transpose(0, 1).contiguous()
