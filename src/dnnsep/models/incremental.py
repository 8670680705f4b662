"""Maskers run incrementally: encoder frames in, masks of the same frames out, the past carried, not recomputed.

:mod:`dnnsep.streaming` does the framing, decoding and latency of any model; each model's masker
gets an adapter here that follows the protocol :class:`dnnsep.streaming.MaskerStream` documents.
The pieces a causal masker carries between calls:

- :class:`RunningNorm`: a cumulative layer norm (cLN) whose running sums outlive one call, so the
  statistics at each new step are those the offline pass computes over steps 0..t;
- :class:`DualPathStream`: DPRNN's dual-path masker; each chunk runs through the blocks once, as
  soon as its last frame is in, with the inter-chunk LSTM's state (one per chunk position) and the
  blocks' cLN sums carried from chunk to chunk, and the overlap-add's partial sums of the frames
  the next chunk still covers.

Conv-TasNet's adapter goes here too (its TCN: each left-padded dilated depthwise conv keeps its
last ``(conv_kernel - 1) * dilation`` inputs; its cLN over time is a :class:`RunningNorm`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dual_path import DualPathSeparator
from .norms import CumulativeLayerNorm


class RunningNorm:
    """A :class:`CumulativeLayerNorm` over a stream cut into pieces along its time axis.

    Offline, the statistics at step t are cumulative sums over steps 0..t of per-step sums (over
    every axis but batch and time); here the sums up to the last step seen are carried, in float64
    as torch's CPU ``cumsum`` accumulates, so each piece gets the statistics the whole would.

    Shape: x (..., channels), time along ``time_dim``, batch along ``batch_dim`` -> same.
    """

    def __init__(self, norm: CumulativeLayerNorm):
        self.norm = norm
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next step is step 0."""
        self.steps, self.sums, self.squares = 0, 0.0, 0.0

    def __call__(self, x: torch.Tensor, *, batch_dim: int, time_dim: int) -> torch.Tensor:
        scale, shift = self.scale_shift(x, batch_dim=batch_dim, time_dim=time_dim)
        return torch.addcmul(shift, x, scale)

    def scale_shift(self, x: torch.Tensor, *, batch_dim: int, time_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``norm(x) == x * scale + shift`` for the next ``x.shape[time_dim]`` steps; advances the sums."""
        dims = [d for d in range(x.dim()) if d not in (batch_dim, time_dim)]
        steps = x.shape[time_dim]
        per_step = x.numel() // (steps * x.shape[batch_dim])
        sums = x.sum(dims, keepdim=True).double().cumsum(time_dim) + self.sums  # 1 on all axes but batch and time
        squares = x.pow(2).sum(dims, keepdim=True).double().cumsum(time_dim) + self.squares
        self.sums, self.squares = sums.narrow(time_dim, steps - 1, 1), squares.narrow(time_dim, steps - 1, 1)
        count_shape = [1] * x.dim()
        count_shape[time_dim] = steps
        count = per_step * torch.arange(self.steps + 1, self.steps + steps + 1, device=x.device, dtype=x.dtype)
        count = count.view(count_shape)
        self.steps += steps
        mean = sums.to(x.dtype) / count
        var = (squares.to(x.dtype) / count - mean.pow(2)).clamp_min(0)
        scale = torch.rsqrt(var + self.norm.eps) * self.norm.gain
        return scale, self.norm.bias - mean * scale


class DualPathStream:
    """:class:`DualPathSeparator` (causal) on a stream of encoder frames; see :class:`dnnsep.streaming.MaskerStream`.

    The offline pass pads the bottleneck's output with ``edge = chunk_size - hop_size`` zero frames in
    front (and some at the back) and cuts chunks every ``hop_size`` frames.  Here ``pending`` holds
    the frames from the next chunk's start (the front padding first); a chunk runs once its last
    frame is in, each chunk once, several at a time when a push completes several.  Chunk s ends at
    frame (s + 1) * hop_size - 1 and finalises hop_size frames, so a frame's mask is ready at most
    ``chunk_size - 1`` frames after it (the model's ``latency`` counts ``chunk_size`` frames).

    Carried: the input cLN's sums, each block's two cLN sums (over chunks) and inter-chunk LSTM
    state (h, c), one per chunk position; ``pending`` (at most chunk_size - 1 bottleneck frames, the
    chunk overlap, never recomputed) and the overlap-add's partial sums of ``edge`` frames.

    Shape: push: encoder frames (1, n_filters, frames) -> masks (1, n_sources, n_filters, ready frames).
    """

    @staticmethod
    def not_causal(separator: DualPathSeparator) -> str | None:
        """Why this masker looks ahead (so cannot stream), or None."""
        if any(block.inter.rnn_reverse is not None for block in separator.blocks):
            return "its inter-chunk LSTM is bidirectional and gLN looks at the whole input"
        norms = [separator.in_norm] + [n for b in separator.blocks for n in (b.intra_norm, b.inter_norm)]
        if not all(isinstance(n, CumulativeLayerNorm) for n in norms):
            return "gLN looks at the whole input"
        return None

    def __init__(self, separator: DualPathSeparator):
        self.sep = separator
        self.chunk_size, self.hop_size = separator.chunk_size, separator.hop_size
        self.edge = self.chunk_size - self.hop_size
        self.in_norm = RunningNorm(separator.in_norm)
        self.block_norms = [(RunningNorm(b.intra_norm), RunningNorm(b.inter_norm)) for b in separator.blocks]
        self.lstm_state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(separator.blocks)
        weight = separator.bottleneck.weight
        zeros = weight.new_zeros(self.edge, 1, separator.bottleneck.out_features)  # (edge, batch, bottleneck)
        self.pending = zeros  # bottleneck frames from the next chunk's first: segment()'s front padding first
        self.tail = zeros  # overlap-add partial sums of the edge frames after the last final one
        self.front = self.edge  # overlap-add output frames still to drop (the front padding)
        self.n_filters = separator.mask_conv.out_features // separator.n_sources
        self.frames_in = self.frames_out = 0
        self.counts = {"frames": 0, "chunks": 0}  # work done: bottleneck frames, chunks through the blocks

    def push(self, w: torch.Tensor) -> torch.Tensor:
        x = self.in_norm(w.permute(2, 0, 1), batch_dim=1, time_dim=0)  # (frames, batch, n_filters)
        self.pending = torch.cat([self.pending, self.sep.bottleneck(x)])  # (pending frames, batch, bottleneck)
        self.frames_in += w.shape[-1]
        self.counts["frames"] += w.shape[-1]
        return self._run_chunks()

    def flush(self) -> torch.Tensor:
        """The masks of every frame left, the input having ended: segment()'s back padding, then the last chunks."""
        rest = (self.frames_in + 2 * self.edge - self.chunk_size) % self.hop_size
        back = self.edge + (self.hop_size - rest) % self.hop_size
        self.pending = F.pad(self.pending, (0, 0, 0, 0, 0, back))
        return self._run_chunks()

    def _run_chunks(self) -> torch.Tensor:
        chunk_size, hop = self.chunk_size, self.hop_size
        n_chunks = (self.pending.shape[0] - chunk_size) // hop + 1 if self.pending.shape[0] >= chunk_size else 0
        if n_chunks == 0:
            return self._masks(self.pending[:0])
        used = self.pending[: (n_chunks - 1) * hop + chunk_size]
        x = used.unfold(0, chunk_size, hop).permute(3, 0, 1, 2).contiguous()  # (chunk_size, chunks, batch, bottleneck)
        self.pending = self.pending[n_chunks * hop :]
        self.counts["chunks"] += n_chunks
        for i, block in enumerate(self.sep.blocks):
            x = self._block(i, block, x)
        frames = self._overlap_add(x)  # (n_chunks * hop, batch, bottleneck), final
        drop = min(self.front, frames.shape[0])
        self.front -= drop
        frames = frames[drop : drop + self.frames_in - self.frames_out]  # no back padding
        self.frames_out += frames.shape[0]
        return self._masks(frames)

    def _block(self, i: int, block, x: torch.Tensor) -> torch.Tensor:
        """:class:`DualPathBlock` on consecutive chunks, its cLN sums and inter-chunk LSTM state carried."""
        chunk_size, n_chunks, batch, channels = x.shape
        intra_norm, inter_norm = self.block_norms[i]
        y = block.intra(x.view(chunk_size, n_chunks * batch, channels)).view(x.shape)
        x = (x + intra_norm(y, batch_dim=2, time_dim=1)).transpose(0, 1).contiguous()  # (chunks, chunk_size, ...)
        h, self.lstm_state[i] = block.inter.rnn(x.view(n_chunks, chunk_size * batch, channels), self.lstm_state[i])
        y = block.inter.linear(h).view(x.shape)
        return (x + inter_norm(y, batch_dim=2, time_dim=0)).transpose(0, 1).contiguous()  # (chunk_size, chunks, ...)

    def _overlap_add(self, chunks: torch.Tensor) -> torch.Tensor:
        """Add consecutive chunks to the carried partial sums; the frames no later chunk covers are final.

        Shape: (chunk_size, chunks, batch, channels) -> (chunks * hop_size, batch, channels).
        """
        chunk_size, n_chunks, batch, channels = chunks.shape
        hop, pieces = self.hop_size, chunk_size // self.hop_size
        parts = chunks.view(pieces, hop, n_chunks, batch, channels)
        out = chunks.new_zeros(n_chunks + pieces - 1, hop, batch, channels)  # (hops, hop_size, batch, channels)
        out[: pieces - 1] = self.tail.view(pieces - 1, hop, batch, channels)
        for j in range(pieces):
            out[j : j + n_chunks] += parts[j].transpose(0, 1)  # (chunks, hop_size, batch, channels)
        self.tail = out[n_chunks:].reshape(-1, batch, channels)
        return out[:n_chunks].view(-1, batch, channels)

    def _masks(self, x: torch.Tensor) -> torch.Tensor:
        """The masker's head on final frames, as in :meth:`DualPathSeparator.forward`.

        Shape: (frames, batch, bottleneck) -> (batch, n_sources, n_filters, frames).
        """
        sep = self.sep
        frames, batch = x.shape[:2]
        m = sep.mask_conv(sep.out_act(x))  # (frames, batch, n_sources * n_filters)
        m = m.view(frames, batch, sep.n_sources, self.n_filters).permute(1, 2, 3, 0)
        if sep.mask == "sigmoid":
            return torch.sigmoid(m)
        if sep.mask == "relu":
            return F.relu(m)
        return torch.softmax(m, dim=1)
