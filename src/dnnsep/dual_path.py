"""The dual-path RNN separator of DPRNN-TasNet (Luo, Chen and Yoshioka, ICASSP 2020).

A sequence of ``frames`` feature vectors is cut into overlapping chunks of ``chunk_size`` frames
with hop ``hop_size``; dual-path blocks alternate an RNN *inside* each chunk (local axis) with an
RNN *across* chunks (global axis); overlap-add turns the chunks back into a sequence.

Tensors inside the blocks are channel-last, ``(batch, chunks, chunk_size, channels)``, so the
linear layers, norms and residual sums act on the last axis without transposes.

>>> import torch
>>> x = torch.randn(2, 250, 16)  # (batch, frames, channels)
>>> chunks, frames = segment(x, chunk_size=100, hop_size=50)
>>> chunks.shape  # (batch, chunks, chunk_size, channels)
torch.Size([2, 6, 100, 16])
>>> overlap_add(chunks, frames=frames, hop_size=50).shape
torch.Size([2, 250, 16])
>>> sep = DualPathSeparator(in_channels=16, bottleneck=8, hidden=12, chunk_size=10, hop_size=5,
...                         n_blocks=2, n_sources=3, mask="softmax", norm="gln", causal=False)
>>> masks = sep(torch.rand(2, 16, 250))  # (batch, in_channels, frames)
>>> masks.shape  # (batch, n_sources, in_channels, frames)
torch.Size([2, 3, 16, 250])
>>> torch.allclose(masks.sum(1), torch.ones(2, 16, 250))  # softmax is across sources
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import make_norm

MASKS = ("sigmoid", "relu", "softmax")


def segment(x: torch.Tensor, *, chunk_size: int, hop_size: int) -> tuple[torch.Tensor, int]:
    """Cut a sequence into chunks of ``chunk_size`` frames every ``hop_size`` frames.

    Both ends are padded with ``chunk_size - hop_size`` zero frames (the back a little more to fill
    the last chunk), so with ``hop_size`` dividing ``chunk_size`` every frame lies in exactly
    ``chunk_size // hop_size`` chunks.

    Shape: x: (batch, frames, channels) -> (batch, chunks, chunk_size, channels); also returns frames.
    """
    frames = x.shape[1]
    edge = chunk_size - hop_size
    rest = (frames + 2 * edge - chunk_size) % hop_size
    x = F.pad(x, (0, 0, edge, edge + (hop_size - rest) % hop_size))  # pad the frame axis
    # unfold: (batch, chunks, channels, chunk_size), a strided view; transpose keeps it a view
    return x.unfold(1, chunk_size, hop_size).transpose(2, 3), frames


def overlap_add(chunks: torch.Tensor, *, frames: int, hop_size: int) -> torch.Tensor:
    """Sum overlapping chunks back into a sequence and drop the padding added by :func:`segment`.

    Shape: chunks: (batch, chunks, chunk_size, channels) -> (batch, frames, channels).
    """
    batch, n_chunks, chunk_size, channels = chunks.shape
    padded = (n_chunks - 1) * hop_size + chunk_size
    cols = chunks.permute(0, 3, 2, 1).reshape(batch, channels * chunk_size, n_chunks)  # fold's layout
    out = F.fold(cols, output_size=(padded, 1), kernel_size=(chunk_size, 1), stride=(hop_size, 1))
    edge = chunk_size - hop_size
    return out.view(batch, channels, padded)[:, :, edge : edge + frames].transpose(1, 2)


class DualPathBlock(nn.Module):
    """Intra-chunk BiLSTM then inter-chunk (Bi)LSTM, each followed by linear, norm and residual.

    The intra-chunk RNN is always bidirectional (``hidden // 2`` units per direction): it sees
    its own chunk only.  The inter-chunk RNN is bidirectional likewise, or, when ``causal``, a
    unidirectional LSTM of ``hidden`` units, so chunk s never sees chunks after s.

    Shape: (batch, chunks, chunk_size, channels) -> same.
    """

    def __init__(self, *, channels: int, hidden: int, norm: str, causal: bool):
        super().__init__()
        self.intra_rnn = nn.LSTM(channels, hidden // 2, batch_first=True, bidirectional=True)
        self.intra_linear = nn.Linear(hidden, channels)
        self.intra_norm = make_norm(norm, channels)
        inter_hidden = hidden if causal else hidden // 2
        self.inter_rnn = nn.LSTM(channels, inter_hidden, batch_first=True, bidirectional=not causal)
        self.inter_linear = nn.Linear(hidden, channels)
        self.inter_norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n_chunks, chunk_size, channels = x.shape
        # intra-chunk: each chunk is one sequence along chunk_size
        y = x.reshape(batch * n_chunks, chunk_size, channels)  # (batch * chunks, chunk_size, channels)
        y = self.intra_linear(self.intra_rnn(y)[0])
        x = x + self.intra_norm(y.view(batch, n_chunks, chunk_size, channels))
        # inter-chunk: each chunk position is one sequence along the chunks axis
        y = x.transpose(1, 2).reshape(batch * chunk_size, n_chunks, channels)  # (batch * chunk_size, chunks, channels)
        y = self.inter_linear(self.inter_rnn(y)[0])
        y = y.view(batch, chunk_size, n_chunks, channels).transpose(1, 2)  # (batch, chunks, chunk_size, channels)
        return x + self.inter_norm(y)


class DualPathSeparator(nn.Module):
    """Norm, bottleneck, chunking, dual-path blocks, overlap-add, PReLU and one mask per source.

    Shape: (batch, in_channels, frames) -> masks (batch, n_sources, in_channels, frames).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        bottleneck: int,
        hidden: int,
        chunk_size: int,
        hop_size: int,
        n_blocks: int,
        n_sources: int,
        mask: str,
        norm: str,
        causal: bool,
    ):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        self.chunk_size, self.hop_size = chunk_size, hop_size
        self.n_sources, self.mask = n_sources, mask
        self.in_norm = make_norm(norm, in_channels)
        self.bottleneck = nn.Linear(in_channels, bottleneck)  # a 1x1 conv on channel-last input
        self.blocks = nn.ModuleList(
            DualPathBlock(channels=bottleneck, hidden=hidden, norm=norm, causal=causal) for _ in range(n_blocks)
        )
        self.out_act = nn.PReLU()
        self.mask_conv = nn.Linear(bottleneck, n_sources * in_channels)  # a 1x1 conv again

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        batch, channels, frames = w.shape
        x = self.bottleneck(self.in_norm(w.transpose(1, 2)))  # (batch, frames, bottleneck)
        x, _ = segment(x, chunk_size=self.chunk_size, hop_size=self.hop_size)
        for block in self.blocks:
            x = block(x)  # (batch, chunks, chunk_size, bottleneck)
        x = overlap_add(x, frames=frames, hop_size=self.hop_size)  # (batch, frames, bottleneck)
        m = self.mask_conv(self.out_act(x))  # (batch, frames, n_sources * channels)
        m = m.view(batch, frames, self.n_sources, channels).permute(0, 2, 3, 1)  # (batch, n_sources, channels, frames)
        if self.mask == "sigmoid":
            return torch.sigmoid(m)
        if self.mask == "relu":
            return F.relu(m)
        return torch.softmax(m, dim=1)
