"""SepFormer's intra- and inter-chunk model: a pre-norm transformer encoder over one axis of the chunks.

Each path adds sinusoidal positions (computed for the sequence's length at every call, so any length
works), runs ``layers`` pre-norm layers (layer norm, multi-head self-attention, residual; layer
norm, feed-forward with ReLU, residual) and ends with a layer norm, as in Subakan et al. (2021) and
SpeechBrain's ``SBTransformerBlock`` with ``norm_before``.  The attention's weights are laid out as
:class:`torch.nn.MultiheadAttention`'s (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and the
attention itself is :func:`torch.nn.functional.scaled_dot_product_attention` (the fused kernels).

Layout: sequence first, as :class:`~dnnsep.models.dual_path.DualPathBlock` gives it.

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

    Shape: (time, batch, channels) -> same.
    """

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
        time, batch, channels = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)  # (time, batch, 3 * channels)
        qkv = qkv.view(time, batch, 3, self.heads, channels // self.heads).permute(2, 1, 3, 0, 4)
        y = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], dropout_p=self.dropout if self.training else 0.0
        )  # (batch, heads, time, head channels)
        return self.out_proj(y.permute(2, 0, 1, 3).reshape(time, batch, channels))


class TransformerLayer(nn.Module):
    """Pre-norm: ``x + attention(norm1(x))``, then ``x + ffn(norm2(x))``.

    Shape: (time, batch, channels) -> same.
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
        x = x + F.dropout(self.attention(self.norm1(x)), p, train)
        h = F.dropout(F.relu(self.ffn_in(self.norm2(x))), p, train)
        return x + F.dropout(self.ffn_out(h), p, train)


class TransformerPath(nn.Module):
    """Positions added, ``layers`` :class:`TransformerLayer`, a final layer norm.

    Shape: (time, batch, channels) -> same.
    """

    def __init__(self, *, channels: int, layers: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(channels=channels, heads=heads, ffn=ffn, dropout=dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(channels, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + positions(x.shape[0], x.shape[-1], device=x.device).unsqueeze(1).to(x.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
