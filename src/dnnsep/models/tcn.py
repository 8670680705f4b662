"""The temporal convolutional network (TCN) masker of Conv-TasNet (Luo and Mesgarani, TASLP 2019).

Input norm and a 1x1 bottleneck conv (N -> B); R repeats of X 1-D conv blocks of dilations 1, 2, ...,
2**(X-1), each adding a residual to its input and a skip output to a running sum; PReLU on the summed
skips, a 1x1 conv to one mask per source and filter, and the mask non-linearity.

A 1-D conv block (Fig. 1C of the paper)::

    x -> 1x1 conv B->H -> PReLU -> norm -> depthwise conv (kernel P, dilation d) -> PReLU -> norm
      -> 1x1 conv H->B (residual, added to x) and 1x1 conv H->Sc (skip, summed over all blocks)

The residual and skip convs run as one conv of ``B + Sc`` outputs (the same weights, one pass over
the block's hidden tensor); the last block has no residual conv, since nothing reads its residual.
Non-causal depthwise convs pad ``(P-1)*d`` zero frames evenly on both sides; causal ones pad on the
left only and the norms are cumulative (cLN), so no frame depends on later frames.

Speed on CPU (the same function, fewer passes over memory): tensors are channels first,
``(batch, channels, frames)``, so a 1x1 conv is one batched matrix product with its bias as the
addend (:func:`pointwise`); the depthwise conv and PReLU are the fast autograd functions of
:mod:`.conv_ops`; and each gLN, one affine map per example and channel, is folded into the weights and
bias of the linear layer after it (:func:`normed_pointwise`, :func:`normed_depthwise`) instead of
being applied to the block's largest tensors.  cLN, whose statistics change from frame to frame, is
applied as it is.

>>> import torch
>>> tcn = TCN(in_channels=16, bottleneck=8, hidden=12, skip_channels=6, kernel=3, n_layers=3, n_repeats=2,
...           n_sources=3, mask="softmax", norm="gln", causal=False)
>>> masks = tcn(torch.rand(2, 16, 250))  # (batch, in_channels, frames)
>>> masks.shape  # (batch, n_sources, in_channels, frames)
torch.Size([2, 3, 16, 250])
>>> torch.allclose(masks.sum(1), torch.ones(2, 16, 250))  # softmax is across sources
True
>>> [block.depthwise.dilation[0] for block in tcn.blocks]
[1, 2, 4, 1, 2, 4]
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .base import MASKS, masks_from_scores
from .conv_ops import depthwise_conv, depthwise_conv_on_past, prelu
from .norms import NORMS, CumulativeLayerNorm, GlobalLayerNorm, NormCarry, make_norm


def _norm(norm: nn.Module, x: torch.Tensor, carry: NormCarry | None = None) -> torch.Tensor:
    """A norm of :mod:`.norms` over a channels-first tensor (a cLN on a stream: its ``carry``).

    Shape: (batch, channels, frames) -> same.
    """
    scale, shift = norm.scale_shift(x, batch_dim=0, time_dim=2, channel_dim=1, carry=carry)
    return (x * scale).add_(shift)  # addcmul is several times slower when shift is (batch, channels, 1)


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv as one batched matrix product with the bias as its addend (faster than ``conv1d`` on CPU).

    Shape: (batch, in_channels, frames) -> (batch, out_channels, frames).
    """
    weight = conv.weight[:, :, 0].expand(x.shape[0], -1, -1)  # (batch, out, in), a view
    return torch.baddbmm(conv.bias[:, None], weight, x)


def normed_pointwise(conv: nn.Conv1d, norm: nn.Module, x: torch.Tensor, carry: NormCarry | None = None) -> torch.Tensor:
    """``pointwise(conv, norm(x))``; a gLN, one affine map per example and channel, is folded into the
    conv's weights and bias instead of normalising ``x``: ``W (scale x + shift) + b = (W scale) x + (W shift + b)``.

    Shape: (batch, in_channels, frames) -> (batch, out_channels, frames).
    """
    if not isinstance(norm, GlobalLayerNorm):
        return pointwise(conv, _norm(norm, x, carry))
    scale, shift = norm.scale_shift(x, batch_dim=0, time_dim=2, channel_dim=1)  # (batch, in, 1) each
    weight = conv.weight[:, :, 0]  # (out, in)
    bias = torch.baddbmm(conv.bias[:, None], weight.expand(x.shape[0], -1, -1), shift)  # (batch, out, 1)
    return torch.baddbmm(bias, weight * scale.transpose(1, 2), x)  # (batch, out, in) @ (batch, in, frames)


def normed_depthwise(
    conv: nn.Conv1d, norm: nn.Module, y: torch.Tensor, *, left: int, carry: ConvCarry | None = None
) -> torch.Tensor:
    """The depthwise ``conv`` over ``norm(y)``, zero-padded ``left`` frames on the left and the rest of
    ``(P-1) * dilation`` on the right; a gLN is folded into per-example weights and bias:
    ``w (scale y + shift) + b = (w scale) y + (b + shift w)``, the shift only where w reads ``y``.

    On a stream (causal: ``left`` is all of it), ``carry`` has the cLN's sums and the normalised
    frames before ``y`` that the conv reads (zeros before the first: the offline left padding).

    Shape: (batch, hidden, frames) -> same.
    """
    # (1, hidden, P) as a view, not a transpose: the weight's gradient then has the parameter's own
    # strides, which DDP's gradient buckets expect (it warns, and copies, otherwise)
    weight, bias = conv.weight.view(1, conv.out_channels, -1), conv.bias[:, None]  # (1, hidden, P), (hidden, 1)
    if carry is not None:
        z = carry.past.extend(_norm(norm, y, carry.norm_in))  # (1, hidden, left + frames)
        return depthwise_conv_on_past(z, weight, bias, dilation=conv.dilation[0], frames=y.shape[-1])
    if not isinstance(norm, GlobalLayerNorm):
        return depthwise_conv(_norm(norm, y), weight, bias, dilation=conv.dilation[0], left=left)
    scale, shift = norm.scale_shift(y, batch_dim=0, time_dim=2, channel_dim=1)  # (batch, hidden, 1) each
    tap_bias = shift * weight  # (batch, hidden, P)
    bias = bias + tap_bias.sum(-1, keepdim=True)  # (batch, hidden, 1)
    return depthwise_conv(y, weight * scale, bias, dilation=conv.dilation[0], left=left, tap_bias=tap_bias)


class ConvBlock(nn.Module):
    """One 1-D conv block: its residual and skip outputs, stacked along the channels.

    On a stream (causal blocks, batch 1), ``carry`` (a :class:`ConvCarry`) holds what the frames
    before ``x`` leave, and is updated.

    Shape: x (batch, bottleneck, frames) -> (batch, bottleneck + skip_channels, frames), or
    (batch, skip_channels, frames) for a block without a residual conv.
    """

    def __init__(
        self,
        *,
        bottleneck: int,
        hidden: int,
        skip_channels: int,
        kernel: int,
        dilation: int,
        norm: str,
        causal: bool,
        residual: bool = True,
    ):
        super().__init__()
        self.in_conv = nn.Conv1d(bottleneck, hidden, 1)
        self.prelu_in = nn.PReLU()
        self.norm_in = make_norm(norm, hidden)
        # holds the depthwise weights (hidden, 1, P); run by depthwise_conv, padded (P-1)*d frames in
        # all: on the left when causal, else split evenly (the extra frame on the right when odd)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, dilation=dilation, groups=hidden)
        self.left = (kernel - 1) * dilation if causal else (kernel - 1) * dilation // 2
        self.prelu_out = nn.PReLU()
        self.norm_out = make_norm(norm, hidden)
        self.residual_channels = bottleneck if residual else 0
        self.out_conv = nn.Conv1d(hidden, self.residual_channels + skip_channels, 1)  # residual and skip convs

    def forward(self, x: torch.Tensor, carry: ConvCarry | None = None) -> torch.Tensor:
        y = prelu(pointwise(self.in_conv, x), self.prelu_in.weight)  # (batch, hidden, frames)
        y = normed_depthwise(self.depthwise, self.norm_in, y, left=self.left, carry=carry)  # (batch, hidden, frames)
        norm_out = None if carry is None else carry.norm_out
        return normed_pointwise(self.out_conv, self.norm_out, prelu(y, self.prelu_out.weight), norm_out)

    @property
    def causal(self) -> bool:
        """Whether its depthwise conv reads past frames only."""
        return self.left == _span(self.depthwise)

    def carry(self) -> ConvCarry:
        """A fresh :class:`ConvCarry` for a stream through this block."""
        conv = self.depthwise
        return ConvCarry(NormCarry(), NormCarry(), DelayLine(conv.weight, conv.in_channels, self.left))


class ConvCarry(NamedTuple):
    """What a causal :class:`ConvBlock` carries along a stream."""

    norm_in: NormCarry  # the cLN's sums before the depthwise conv
    norm_out: NormCarry  # the cLN's sums after it
    past: DelayLine  # the depthwise conv's last (P-1) * dilation (normalised) inputs


class TCNCarry(NamedTuple):
    """What a causal :class:`TCN` carries along a stream: its input cLN's sums and each block's."""

    norm: NormCarry
    blocks: list[ConvCarry]


class TCN(nn.Module):
    """The TCN masker: from the encoder's output to one mask per source.

    Causal, every layer looks back only, so it streams frame by frame (:meth:`stream`): each frame's
    mask is final as soon as the frame is in, given the :class:`TCNCarry` of the frames before it.

    Shape: (batch, in_channels, frames) -> masks (batch, n_sources, in_channels, frames).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        bottleneck: int,
        hidden: int,
        skip_channels: int,
        kernel: int,
        n_layers: int,
        n_repeats: int,
        n_sources: int,
        mask: str,
        norm: str,
        causal: bool,
    ):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if causal and norm != "cln":
            raise ValueError(f"norm must be 'cln' for a causal TCN ('{norm}' looks ahead), got {norm!r}")
        self.n_sources, self.mask = n_sources, mask
        self.norm = make_norm(norm, in_channels)
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1)
        n_blocks = n_layers * n_repeats
        self.blocks = nn.ModuleList(
            ConvBlock(
                bottleneck=bottleneck,
                hidden=hidden,
                skip_channels=skip_channels,
                kernel=kernel,
                dilation=2 ** (i % n_layers),
                norm=norm,
                causal=causal,
                residual=i < n_blocks - 1,
            )
            for i in range(n_blocks)
        )
        self.prelu = nn.PReLU()
        self.mask_conv = nn.Conv1d(skip_channels, n_sources * in_channels, 1)

    def forward(self, w: torch.Tensor, carry: TCNCarry | None = None) -> torch.Tensor:
        x = normed_pointwise(self.bottleneck, self.norm, w, None if carry is None else carry.norm)
        skips, owned = None, False  # x: (batch, bottleneck, frames)
        for i, block in enumerate(self.blocks):
            out = block(x) if carry is None else block(x, carry.blocks[i])  # (batch, residual + skip, frames)
            # split, not two slices: its backward is one concatenation, theirs zero-filled copies
            residual, skip = out.split([block.residual_channels, out.shape[1] - block.residual_channels], dim=1)
            if skips is None:
                skips = skip
            elif owned:  # nothing saves the running sum for backward: add in place
                skips.add_(skip)
            else:
                skips, owned = skips + skip, True
            if block.residual_channels:
                x = x + residual  # not in place: the next block saves x
        return self.head(skips)

    def head(self, skips: torch.Tensor) -> torch.Tensor:
        """PReLU on the summed skips, the 1x1 conv to one mask per source and filter, the mask non-linearity.

        Shape: skips (batch, skip_channels, frames) -> masks (batch, n_sources, in_channels, frames).
        """
        batch, _, frames = skips.shape
        scores = pointwise(self.mask_conv, prelu(skips, self.prelu.weight))  # (batch, n_sources * channels, frames)
        scores = scores.view(batch, self.n_sources, -1, frames)  # split the sources
        return masks_from_scores(scores, self.mask)

    def not_causal(self) -> str | None:
        """Why this masker looks ahead (so cannot stream), or None."""
        why = []
        if not all(block.causal for block in self.blocks):
            why.append("its depthwise convolutions are padded on both sides")
        norms = [self.norm] + [n for block in self.blocks for n in (block.norm_in, block.norm_out)]
        if not all(isinstance(n, CumulativeLayerNorm) for n in norms):
            why.append("gLN looks at the whole input")
        return " and ".join(why) or None

    def stream(self) -> TCNStream:
        """This masker on a stream of encoder frames (a causal one: see :meth:`not_causal`)."""
        return TCNStream(self)


class TCNStream:
    """A causal :class:`TCN` on a stream of encoder frames: every frame through it once, as it comes.

    Each push runs the separator itself on the new frames, all its layers at once as offline, with
    its :class:`TCNCarry`; nothing is recomputed: ``counts`` has the frames through the network and
    through its blocks (``frames * n_blocks`` offline).

    Shape: push: encoder frames (1, n_filters, frames) -> masks (1, n_sources, n_filters, frames).
    """

    def __init__(self, separator: TCN):
        self.sep = separator
        self.carry = TCNCarry(NormCarry(), [block.carry() for block in separator.blocks])
        n_filters = separator.mask_conv.out_channels // separator.n_sources
        self.none = separator.mask_conv.weight.new_zeros(1, separator.n_sources, n_filters, 0)
        self.counts = {"frames": 0, "block_frames": 0}

    def push(self, w: torch.Tensor) -> torch.Tensor:
        frames = w.shape[-1]
        if frames == 0:
            return self.none
        self.counts["frames"] += frames
        self.counts["block_frames"] += frames * len(self.sep.blocks)
        return self.sep(w, self.carry)

    def flush(self) -> torch.Tensor:
        """Nothing left: every frame's mask came back with it."""
        return self.none


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


def _span(conv: nn.Conv1d) -> int:
    """The frames a conv reaches back (or ahead): ``(P-1) * dilation``."""
    return (conv.kernel_size[0] - 1) * conv.dilation[0]
