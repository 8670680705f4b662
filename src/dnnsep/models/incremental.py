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

- :class:`TCNStream`: Conv-TasNet's TCN masker; every frame goes through the network once, as soon
  as it is encoded, with each block's left-padded dilated depthwise conv carrying its last
  ``(conv_kernel - 1) * dilation`` inputs and every cLN (the input norm, two per block) its sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import masks_from_scores
from .conv_ops import prelu
from .dual_path import DualPathSeparator
from .norms import CumulativeLayerNorm
from .tcn import TCN, ConvBlock, pointwise


class RunningNorm:
    """A :class:`CumulativeLayerNorm` over a stream cut into pieces along its time axis.

    Offline, the statistics at step t are cumulative sums over steps 0..t of per-step sums (over
    every axis but batch and time); here the sums up to the last step seen are carried, in float32
    with a compensation term (Kahan's two-sum), so that each piece gets the statistics the whole
    would, on any device (MPS has no float64) and after any number of pieces.

    Shape: x (..., channels), or channels along ``channel_dim``; time along ``time_dim``, batch along
    ``batch_dim`` -> same.
    """

    def __init__(self, norm: CumulativeLayerNorm):
        self.norm = norm
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next step is step 0."""
        self.steps = 0
        self.sums, self.squares = (0.0, 0.0), (0.0, 0.0)  # (high, low) parts of the running totals

    def __call__(self, x: torch.Tensor, *, batch_dim: int, time_dim: int, channel_dim: int = -1) -> torch.Tensor:
        scale, shift = self.scale_shift(x, batch_dim=batch_dim, time_dim=time_dim, channel_dim=channel_dim)
        return torch.addcmul(shift, x, scale)

    def scale_shift(
        self, x: torch.Tensor, *, batch_dim: int, time_dim: int, channel_dim: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``norm(x) == x * scale + shift`` for the next ``x.shape[time_dim]`` steps; advances the sums."""
        dims = [d for d in range(x.dim()) if d not in (batch_dim, time_dim)]
        steps = x.shape[time_dim]
        per_step = x.numel() // (steps * x.shape[batch_dim])
        x32 = x.float()
        sums, self.sums = _carry(x32.sum(dims, keepdim=True).cumsum(time_dim), self.sums, time_dim)
        squares, self.squares = _carry(x32.pow(2).sum(dims, keepdim=True).cumsum(time_dim), self.squares, time_dim)
        count_shape = [1] * x.dim()
        count_shape[time_dim] = steps
        count = per_step * torch.arange(self.steps + 1, self.steps + steps + 1, device=x.device, dtype=x.dtype)
        count = count.view(count_shape)
        self.steps += steps
        mean = sums.to(x.dtype) / count  # sums: 1 on all axes but batch and time
        var = (squares.to(x.dtype) / count - mean.pow(2)).clamp_min(0)
        gain, bias = self.norm.affine(x.dim(), channel_dim)
        scale = torch.rsqrt(var + self.norm.eps) * gain
        return scale, bias - mean * scale


def _carry(
    local: torch.Tensor, total: tuple[torch.Tensor | float, torch.Tensor | float], time_dim: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Running totals ``total + local`` (``local``: this piece's float32 cumulative sums), and the new
    carried ``(high, low)`` pair at the piece's last step: the rounding error of each addition goes to
    ``low`` (two-sum), so the carried total stays exact to float32's last bit however long the stream.

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
        if separator.chunk_padding != "overlap" or separator.head != "linear":
            return "only chunk_padding 'overlap' and head 'linear' stream"
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
        return masks_from_scores(m, sep.mask)


class TCNStream:
    """:class:`TCN` (causal) on a stream of encoder frames; see :class:`dnnsep.streaming.MaskerStream`.

    Causal, every layer looks back only: the 1x1 convs and PReLUs work frame by frame, each
    depthwise conv reads its last ``(P-1) * dilation`` inputs, and each cLN's statistics at a frame
    are sums over the frames up to it.  So a pushed frame's mask is final at once (no look-ahead in
    frames: the model's ``latency`` is the encoder window's), and each push runs all its frames
    through the network together, layer by layer, as the offline pass runs the whole input.

    Carried: the input cLN's sums and each block's two (over frames), and per block its depthwise
    conv's last ``(P-1) * dilation`` inputs (the normalised hidden frames, a :class:`DelayLine`; at
    first zeros, the offline pass's left padding).  Nothing is recomputed: ``counts`` has the frames through the
    network and through its blocks (``frames * n_blocks`` offline).

    Shape: push: encoder frames (1, n_filters, frames) -> masks (1, n_sources, n_filters, frames).
    """

    @staticmethod
    def not_causal(separator: TCN) -> str | None:
        """Why this masker looks ahead (so cannot stream), or None."""
        why = []
        if any(block.left != _span(block.depthwise) for block in separator.blocks):
            why.append("its depthwise convolutions are padded on both sides")
        norms = [separator.norm] + [n for block in separator.blocks for n in (block.norm_in, block.norm_out)]
        if not all(isinstance(n, CumulativeLayerNorm) for n in norms):
            why.append("gLN looks at the whole input")
        return " and ".join(why) or None

    def __init__(self, separator: TCN):
        self.sep = separator
        self.in_norm = RunningNorm(separator.norm)
        self.block_norms = [(RunningNorm(b.norm_in), RunningNorm(b.norm_out)) for b in separator.blocks]
        self.history = [DelayLine(b.depthwise.weight, b.depthwise.in_channels, b.left) for b in separator.blocks]
        n_filters = separator.mask_conv.out_channels // separator.n_sources
        self.none = separator.mask_conv.weight.new_zeros(1, separator.n_sources, n_filters, 0)
        self.counts = {"frames": 0, "block_frames": 0}  # work done: frames through the network, and its blocks

    def push(self, w: torch.Tensor) -> torch.Tensor:
        sep = self.sep
        frames = w.shape[-1]
        if frames == 0:
            return self.none
        x = pointwise(sep.bottleneck, _normed(self.in_norm, w))  # (1, bottleneck, frames)
        skips = None
        for i, block in enumerate(sep.blocks):
            out = self._block(i, block, x)  # (1, residual + skip channels, frames)
            residual, skip = out.split([block.residual_channels, out.shape[1] - block.residual_channels], dim=1)
            skips = skip if skips is None else skips.add_(skip)  # in place: out is not read again
            if block.residual_channels:
                x = x + residual
        self.counts["frames"] += frames
        self.counts["block_frames"] += frames * len(sep.blocks)
        return sep.head(skips)  # (1, n_sources, n_filters, frames)

    def flush(self) -> torch.Tensor:
        """Nothing left: every pushed frame's mask has been returned."""
        return self.none

    def _block(self, i: int, block: ConvBlock, x: torch.Tensor) -> torch.Tensor:
        """:meth:`ConvBlock.forward` on the next frames, its cLN sums and depthwise inputs carried.

        Shape: (1, bottleneck, frames) -> (1, residual + skip channels, frames).
        """
        norm_in, norm_out = self.block_norms[i]
        y = prelu(pointwise(block.in_conv, x), block.prelu_in.weight)  # (1, hidden, frames)
        y = self._depthwise(i, block.depthwise, _normed(norm_in, y))  # (1, hidden, frames)
        return pointwise(block.out_conv, _normed(norm_out, prelu(y, block.prelu_out.weight)))

    def _depthwise(self, i: int, conv: torch.nn.Conv1d, y: torch.Tensor) -> torch.Tensor:
        """The causal depthwise conv on the next frames: ``out[t] = bias + sum_k w[k] * y[t - (P-1-k) * d]``.

        The taps in :func:`~dnnsep.models.conv_ops.depthwise_conv`'s order (the current frame's first),
        over the carried inputs followed by ``y``.  Shape: (1, hidden, frames) -> same.
        """
        frames, dilation = y.shape[-1], conv.dilation[0]
        z = self.history[i].extend(y)  # (1, hidden, span + frames): the last span inputs, then y
        weight = conv.weight[:, 0]  # (hidden, P)
        last = weight.shape[-1] - 1  # the tap on the current frame
        out = (y * weight[:, last:]).add_(conv.bias[:, None])
        for k in range(last):
            out.addcmul_(z[..., k * dilation : k * dilation + frames], weight[:, k : k + 1])
        return out


class DelayLine:
    """The last ``span`` frames of a stream of ``(1, channels, frames)`` tensors, zeros before its start.

    :meth:`extend` returns them followed by the new frames, one contiguous view of a buffer that has
    room for more: each frame is copied in once, and the last ``span`` moved to the front once the
    room is used up (so about once per ``span`` frames at most), instead of a concatenation of the
    whole ``span`` at every push.
    """

    def __init__(self, like: torch.Tensor, channels: int, span: int):
        self.span, self.room = span, max(span, 64)  # frames kept, and frames of room after them
        self.buffer = like.new_zeros(1, channels, span + self.room)  # (1, channels, span + room)
        self.end = span  # the buffer's frames before `end` are the stream's last

    def extend(self, y: torch.Tensor) -> torch.Tensor:
        """Shape: y (1, channels, frames) -> (1, channels, span + frames), the ``span`` frames before y then y."""
        frames, span = y.shape[-1], self.span
        if span == 0:
            return y
        if self.end + frames > self.buffer.shape[-1]:  # out of room: the last span frames to the front
            past = self.buffer[..., self.end - span : self.end].clone()
            if span + frames > self.buffer.shape[-1]:
                self.buffer = y.new_empty(1, y.shape[1], span + max(frames, self.room))
            self.buffer[..., :span] = past
            self.end = span
        self.buffer[..., self.end : self.end + frames] = y
        self.end += frames
        return self.buffer[..., self.end - span - frames : self.end]

    def reset(self) -> None:
        """Forget the past: zeros again (the offline pass's left padding)."""
        self.buffer = torch.zeros_like(self.buffer)
        self.end = self.span


def _span(conv: torch.nn.Conv1d) -> int:
    """The frames a conv reaches back (or ahead): ``(P-1) * dilation``."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0]


def _normed(norm: RunningNorm, x: torch.Tensor) -> torch.Tensor:
    """A cLN over the next frames of a channels-first tensor, as :mod:`.tcn` applies it offline.

    Shape: (1, channels, frames) -> same.
    """
    scale, shift = norm.scale_shift(x, batch_dim=0, time_dim=2, channel_dim=1)
    return (x * scale).add_(shift)
