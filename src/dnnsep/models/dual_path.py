"""The dual-path RNN separator of DPRNN-TasNet (Luo, Chen and Yoshioka, ICASSP 2020).

A sequence of ``frames`` feature vectors is cut into overlapping chunks of ``chunk_size`` frames
with hop ``hop_size``; dual-path blocks alternate a model *inside* each chunk (local axis) with a
model *across* chunks (global axis); overlap-add turns the chunks back into a sequence.  The two
models are RNNs in DPRNN (:func:`rnn_paths`) and transformers in SepFormer
(:mod:`dnnsep.models.transformer`); the separator takes a factory of the pair.

Layout: tensors are kept sequence-first and channel-last, the layout the LSTM kernels take without a
copy: ``(chunk_size, chunks, batch, channels)`` for the intra-chunk RNN, whose sequences run along
the first axis and whose batch is ``chunks * batch``; one transposing copy per half-block gives
``(chunks, chunk_size, batch, channels)`` for the inter-chunk RNN.  Linear layers, norms and
residual sums act on the last axis in either layout.

>>> import torch
>>> x = torch.randn(250, 2, 16)  # (frames, batch, channels)
>>> chunks = segment(x, chunk_size=100, hop_size=50)
>>> chunks.shape  # (chunk_size, chunks, batch, channels)
torch.Size([100, 6, 2, 16])
>>> torch.equal(overlap_add(chunks, frames=250, hop_size=50), 2 * x)  # each frame lies in 2 chunks
True
>>> segment(x, chunk_size=100, hop_size=50, padding="chunk").shape  # asteroid's: 100 frames at each end
torch.Size([100, 8, 2, 16])
>>> torch.equal(overlap_add(segment(x, chunk_size=100, hop_size=50, padding="chunk"), frames=250, hop_size=50,
...                         padding="chunk"), 2 * x)
True
>>> paths = lambda: rnn_paths(channels=8, hidden=12, causal=False)  # one block's intra- and inter-chunk models
>>> sep = DualPathSeparator(in_channels=16, bottleneck=8, make_paths=paths, chunk_size=10, hop_size=5,
...                         n_blocks=2, n_sources=3, mask="softmax", norm="gln")
>>> masks = sep(torch.rand(2, 16, 250))  # (batch, in_channels, frames)
>>> masks.shape  # (batch, n_sources, in_channels, frames)
torch.Size([2, 3, 16, 250])
>>> torch.allclose(masks.sum(1), torch.ones(2, 16, 250))  # softmax is across sources
True
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .base import MASKS, masks_from_scores
from .lstm import rnn_projection
from .norms import CumulativeLayerNorm, NormCarry, make_norm

# zero frames at each end: chunk_size - hop_size | chunk_size (asteroid's) | SpeechBrain's: chunk_size - hop_size
# in front, and at the back as many more as make an even number of chunks (at least one frame)
CHUNK_PADDINGS = ("overlap", "chunk", "speechbrain")
HEADS = ("linear", "gated")  # the masker's output layers (see DualPathSeparator)


def chunk_edge(*, chunk_size: int, hop_size: int, padding: str = "overlap") -> int:
    """The zero frames :func:`segment` puts in front: ``chunk_size - hop_size``, or ``chunk_size`` (``'chunk'``)."""
    if padding not in CHUNK_PADDINGS:
        raise ValueError(f"chunk padding must be one of {CHUNK_PADDINGS}, got {padding!r}")
    return chunk_size if padding == "chunk" else chunk_size - hop_size


def _padding(frames: int, *, chunk_size: int, hop_size: int, padding: str) -> tuple[int, int]:
    """The zero frames :func:`segment` puts in front of and after ``frames`` frames."""
    edge = chunk_edge(chunk_size=chunk_size, hop_size=hop_size, padding=padding)
    rest = (frames + 2 * edge - chunk_size) % hop_size
    if padding == "chunk":
        back = edge - rest
    elif padding == "speechbrain":  # its Dual_Path_Model._padding: hop_size is chunk_size / 2 there
        back = edge + chunk_size - (edge + frames % chunk_size) % chunk_size
    else:
        back = edge + (hop_size - rest) % hop_size
    return edge, back


def segment(x: torch.Tensor, *, chunk_size: int, hop_size: int, padding: str = "overlap") -> torch.Tensor:
    """Cut a sequence into chunks of ``chunk_size`` frames every ``hop_size`` frames.

    ``padding='overlap'``: both ends are padded with ``chunk_size - hop_size`` zero frames (the back
    a little more to fill the last chunk).  ``'chunk'`` (asteroid's ``unfold``): both ends with
    ``chunk_size`` zero frames, the back less what would start a chunk it cannot fill; so the
    first chunk, and often the last, hold padding only.  ``'speechbrain'`` (with ``hop_size =
    chunk_size / 2``): the front as ``'overlap'``, the back with 1 to ``chunk_size`` frames more,
    so that the chunks are an even number.  Either way, with ``hop_size`` dividing
    ``chunk_size`` every frame lies in exactly ``chunk_size // hop_size`` chunks.

    Shape: x: (frames, batch, channels) -> (chunk_size, chunks, batch, channels), contiguous.
    """
    edge, back = _padding(x.shape[0], chunk_size=chunk_size, hop_size=hop_size, padding=padding)
    return _chunks(F.pad(x, (0, 0, 0, 0, edge, back)), chunk_size, hop_size)  # the frame axis padded


def _chunks(x: torch.Tensor, chunk_size: int, hop_size: int) -> torch.Tensor:
    """Every whole chunk of ``x``, from its first frame.

    Shape: (frames, batch, channels) -> (chunk_size, chunks, batch, channels), contiguous.
    """
    chunks = x.unfold(0, chunk_size, hop_size)  # (chunks, batch, channels, chunk_size), a view
    return chunks.permute(3, 0, 1, 2).contiguous()


def overlap_add(chunks: torch.Tensor, *, frames: int, hop_size: int, padding: str = "overlap") -> torch.Tensor:
    """Sum overlapping chunks back into a sequence and drop the padding added by :func:`segment`.

    Shape: chunks: (chunk_size, chunks, batch, channels) -> (frames, batch, channels).
    """
    chunk_size, _, batch, channels = chunks.shape
    edge = chunk_edge(chunk_size=chunk_size, hop_size=hop_size, padding=padding)
    return _overlap_hops(chunks, hop_size).view(-1, batch, channels)[edge : edge + frames]


def _overlap_hops(chunks: torch.Tensor, hop_size: int, before: torch.Tensor | None = None) -> torch.Tensor:
    """Consecutive chunks summed where they overlap, hop by hop, onto the sums ``before`` them.

    Vectorised over chunks: with ``chunk_size = r * hop_size``, the j-th hop-long piece of every chunk
    is added at once, r additions in all.  ``before``: the sums of the ``r - 1`` hops the chunks'
    first one starts with (the earlier chunks' part of them), zeros if None.

    Shape: chunks (chunk_size, chunks, batch, channels), before (r - 1, hop_size, batch, channels)
    -> (chunks + r - 1, hop_size, batch, channels).
    """
    chunk_size, n_chunks, batch, channels = chunks.shape
    pieces = chunk_size // hop_size
    parts = chunks.view(pieces, hop_size, n_chunks, batch, channels)
    out = chunks.new_zeros(n_chunks + pieces - 1, hop_size, batch, channels)  # (hops, hop_size, batch, channels)
    if before is not None:
        out[: pieces - 1] = before
    for j in range(pieces):
        out[j : j + n_chunks] += parts[j].transpose(0, 1)  # (chunks, hop_size, batch, channels)
    return out


class RNNProjection(nn.Module):
    """An LSTM over the first axis followed by a linear layer back to the input width.

    Bidirectional: two LSTMs of ``hidden // 2`` units, one reading the sequence backwards, each
    projected by its own linear layer and summed, which equals a BiLSTM followed by one linear layer
    on the concatenated outputs, without building that concatenation (on CPU the copy costs about a
    tenth of the LSTM time; on CUDA the pair runs as one fused BiLSTM call, see
    :mod:`dnnsep.models.lstm`).  Unidirectional: one LSTM of ``hidden`` units.

    On a stream (unidirectional only), ``carry`` holds the LSTM's state after the steps before ``x``
    and is updated, so consecutive pieces give what the whole sequence would.

    Shape: (time, batch, channels) -> (time, batch, channels).
    """

    def __init__(self, *, channels: int, hidden: int, bidirectional: bool):
        super().__init__()
        units = hidden // 2 if bidirectional else hidden
        self.rnn = nn.LSTM(channels, units)
        self.linear = nn.Linear(units, channels)
        self.rnn_reverse = nn.LSTM(channels, units) if bidirectional else None
        self.linear_reverse = nn.Linear(units, channels, bias=False) if bidirectional else None

    @property
    def causal(self) -> bool:
        """Whether step t depends on steps 0..t only (so it can run on a stream)."""
        return self.rnn_reverse is None

    def forward(self, x: torch.Tensor, carry: RNNCarry | None = None) -> torch.Tensor:
        if carry is None:
            return rnn_projection(self, x)  # how it runs fast on each device: see dnnsep.models.lstm
        if not self.causal:
            raise ValueError("a bidirectional LSTM reads its sequence backwards: it cannot run on a stream")
        h, carry.state = self.rnn(x, carry.state)  # (time, batch, units)
        return self.linear(h)


class RNNCarry:
    """What an :class:`RNNProjection` carries along a stream: its LSTM's ``(h, c)``, None before the first step."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None


def rnn_paths(*, channels: int, hidden: int, causal: bool) -> tuple[nn.Module, nn.Module]:
    """DPRNN's pair: an intra-chunk BiLSTM (``hidden // 2`` units per direction: it sees its own chunk
    only) and an inter-chunk BiLSTM likewise, or, when ``causal``, a unidirectional LSTM of ``hidden``
    units, so chunk s never sees chunks after s; each projected back to ``channels``."""
    intra = RNNProjection(channels=channels, hidden=hidden, bidirectional=True)
    return intra, RNNProjection(channels=channels, hidden=hidden, bidirectional=not causal)


class DualPathBlock(nn.Module):
    """The intra-chunk model then the inter-chunk model, each followed by a norm and a residual sum.

    ``intra`` and ``inter`` map ``(time, batch, channels)`` to the same shape, sequence first: the
    RNNs of :func:`rnn_paths`, or SepFormer's transformers.

    On a stream, ``carry`` (a :class:`BlockCarry`) holds what the chunks before ``x`` leave: the two
    cLNs' sums over chunks and the inter-chunk model's state, and is updated.

    Shape: (chunk_size, chunks, batch, channels) -> same.
    """

    def __init__(self, *, intra: nn.Module, inter: nn.Module, channels: int, norm: str):
        super().__init__()
        self.intra = intra
        self.intra_norm = make_norm(norm, channels)
        self.inter = inter
        self.inter_norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor, carry: BlockCarry | None = None) -> torch.Tensor:
        chunk_size, n_chunks, batch, channels = x.shape
        intra_norm, inter_norm, inter = (None, None, None) if carry is None else carry
        # intra-chunk: sequences along chunk_size, one per (chunk, example)
        y = self.intra(x.view(chunk_size, n_chunks * batch, channels)).view(x.shape)
        x = _add_norm_swapped(x, self.intra_norm, y, batch_dim=2, time_dim=1, carry=intra_norm)  # (chunks, ...)
        # inter-chunk: sequences along chunks, one per (chunk position, example)
        sequences = x.view(n_chunks, chunk_size * batch, channels)
        y = (self.inter(sequences) if inter is None else self.inter(sequences, inter)).view(x.shape)
        return _add_norm_swapped(x, self.inter_norm, y, batch_dim=2, time_dim=0, carry=inter_norm)  # (chunk_size, ...)

    def carry(self) -> BlockCarry:
        """A fresh :class:`BlockCarry` for a stream through this block."""
        return BlockCarry(NormCarry(), NormCarry(), RNNCarry())


class BlockCarry(NamedTuple):
    """What a :class:`DualPathBlock` carries along a stream of chunks."""

    intra_norm: NormCarry  # the intra-chunk cLN's sums, over chunks
    inter_norm: NormCarry  # the inter-chunk cLN's sums
    inter: RNNCarry  # the inter-chunk model's state: one per chunk position and example


def _add_norm_swapped(
    x: torch.Tensor, norm: nn.Module, y: torch.Tensor, *, batch_dim: int, time_dim: int, carry: NormCarry | None
):
    """The residual sum ``x + norm(y)`` with axes 0 and 1 swapped, contiguous (the next RNN's layout).

    Without autograd, ``y`` (an RNN's fresh output) is normalised in place and the sum written straight
    into the swapped layout: one new tensor and two passes instead of three of each.

    Shape: (a, b, batch, channels) -> (b, a, batch, channels).
    """
    if torch.is_grad_enabled():
        return (x + norm(y, batch_dim=batch_dim, time_dim=time_dim, carry=carry)).transpose(0, 1).contiguous()
    scale, shift = norm.scale_shift(y, batch_dim=batch_dim, time_dim=time_dim, carry=carry)
    if scale.dtype != y.dtype or x.dtype != y.dtype:  # mixed precision: float32 statistics, no in-place
        return (x + torch.addcmul(shift, y, scale)).transpose(0, 1).contiguous()
    out = x.new_empty(x.shape[1], x.shape[0], *x.shape[2:])
    torch.addcmul(shift, y, scale, out=y)  # norm(y), in place
    torch.add(x, y, out=out.transpose(0, 1))
    return out


class DualPathSeparator(nn.Module):
    """Norm, bottleneck, chunking, dual-path blocks, overlap-add, then the head: one mask per source.

    ``make_paths()`` gives each block its intra- and inter-chunk models (:func:`rnn_paths` for DPRNN).

    ``head='linear'``: PReLU and one linear layer to ``n_sources * in_channels`` scores.  ``'gated'``
    (asteroid's): PReLU on the chunks, a linear layer to ``n_sources * bottleneck`` channels (asteroid
    runs this 1x1 conv before the overlap-add; here it runs after it, its bias counted once per chunk
    that holds the frame), then per source ``tanh(gate_out(y)) * sigmoid(gate(y))`` and a linear
    layer without bias to ``in_channels`` scores.

    Shape: (batch, in_channels, frames) -> masks (batch, n_sources, in_channels, frames).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        bottleneck: int,
        make_paths: Callable[[], tuple[nn.Module, nn.Module]],
        chunk_size: int,
        hop_size: int,
        n_blocks: int,
        n_sources: int,
        mask: str,
        norm: str,
        chunk_padding: str = "overlap",
        head: str = "linear",
    ):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        chunk_edge(chunk_size=chunk_size, hop_size=hop_size, padding=chunk_padding)  # checks chunk_padding
        self.chunk_size, self.hop_size, self.chunk_padding = chunk_size, hop_size, chunk_padding
        self.in_channels, self.n_sources, self.mask, self.head = in_channels, n_sources, mask, head
        self.in_norm = make_norm(norm, in_channels)
        self.bottleneck = nn.Linear(in_channels, bottleneck)  # a 1x1 conv on channel-last input
        self.blocks = nn.ModuleList(
            DualPathBlock(**dict(zip(("intra", "inter"), make_paths())), channels=bottleneck, norm=norm)
            for _ in range(n_blocks)
        )
        self.out_act = nn.PReLU()
        if head == "linear":
            self.mask_conv = nn.Linear(bottleneck, n_sources * in_channels)  # a 1x1 conv again
        else:
            self.mask_conv = nn.Linear(bottleneck, n_sources * bottleneck)
            self.gate_out = nn.Linear(bottleneck, bottleneck)  # then tanh
            self.gate = nn.Linear(bottleneck, bottleneck)  # then sigmoid
            self.mask_out = nn.Linear(bottleneck, in_channels, bias=False)

    @classmethod
    def from_config(cls, config, make_paths: Callable[[], tuple[nn.Module, nn.Module]]) -> DualPathSeparator:
        """The separator a dual-path model's config describes (its shared option names), with ``make_paths``."""
        names = (
            "bottleneck",
            "chunk_size",
            "hop_size",
            "n_blocks",
            "n_sources",
            "mask",
            "norm",
            "chunk_padding",
            "head",
        )
        return cls(in_channels=config.n_filters, make_paths=make_paths, **{k: getattr(config, k) for k in names})

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        frames = w.shape[-1]
        chunking = dict(hop_size=self.hop_size, padding=self.chunk_padding)
        x = segment(self.embed(w), chunk_size=self.chunk_size, **chunking)
        for block in self.blocks:
            x = block(x)  # (chunk_size, chunks, batch, bottleneck)
        return self.masks(overlap_add(self.chunk_output(x), frames=frames, **chunking))

    def embed(self, w: torch.Tensor, carry: NormCarry | None = None) -> torch.Tensor:
        """The input norm and the bottleneck; ``carry``: the norm's sums over the frames before ``w``.

        Shape: (batch, in_channels, frames) -> (frames, batch, bottleneck).
        """
        x = self.in_norm(w.permute(2, 0, 1), batch_dim=1, time_dim=0, carry=carry)  # (frames, batch, in_channels)
        return self.bottleneck(x)

    def chunk_output(self, x: torch.Tensor) -> torch.Tensor:
        """What the head does on the chunks, before they are overlap-added: nothing, or the gated head's PReLU."""
        return self.out_act(x) if self.head == "gated" else x

    def masks(self, x: torch.Tensor) -> torch.Tensor:
        """The head on the overlap-added frames: one mask per source.

        Shape: (frames, batch, bottleneck) -> (batch, n_sources, in_channels, frames).
        """
        frames, batch = x.shape[:2]
        if self.head == "linear":
            m = self.mask_conv(self.out_act(x))  # (frames, batch, n_sources * in_channels)
            m = m.view(frames, batch, self.n_sources, self.in_channels)
        else:
            per_frame = self.chunk_size // self.hop_size  # chunks holding each frame: the bias counts that often
            y = F.linear(x, self.mask_conv.weight, self.mask_conv.bias * per_frame)  # (frames, batch, n_sources * F)
            y = y.view(frames, batch, self.n_sources, x.shape[-1])  # (frames, batch, n_sources, bottleneck)
            m = self.mask_out(torch.tanh(self.gate_out(y)) * torch.sigmoid(self.gate(y)))  # (..., n_sources, channels)
        m = m.permute(1, 2, 3, 0)  # (batch, n_sources, channels, frames)
        return masks_from_scores(m, self.mask)

    def not_causal(self) -> str | None:
        """Why this masker looks ahead by more than a chunk (so cannot stream), or None."""
        why = []
        inter = self.blocks[0].inter
        if not getattr(inter, "causal", False):
            kind = "LSTM is bidirectional" if isinstance(inter, RNNProjection) else "model attends to later chunks"
            why.append(f"its inter-chunk {kind}")
        norms = [self.in_norm] + [n for b in self.blocks for n in (b.intra_norm, b.inter_norm)]
        if not all(isinstance(n, CumulativeLayerNorm) for n in norms):
            why.append("gLN looks at the whole input")
        return " and ".join(why) or None

    def stream(self) -> DualPathStream:
        """This masker on a stream of encoder frames (a causal one: see :meth:`not_causal`)."""
        return DualPathStream(self)


class DualPathStream:
    """A causal :class:`DualPathSeparator` on a stream of encoder frames, each chunk through it once.

    The offline pass pads the bottleneck's output with ``edge`` zero frames in front (and some at the
    back) and cuts chunks every ``hop_size`` frames.  Here ``pending`` holds the frames from the next
    chunk's start (the front padding first); a chunk runs through the separator's blocks once its
    last frame is in, several at a time when a push completes several, each block carrying its
    :class:`BlockCarry`.  So a frame's mask is ready at most ``chunk_size - 1`` frames after it (the
    model's ``latency`` counts ``chunk_size`` frames).

    Carried besides: the input cLN's sums, ``pending`` (fewer than chunk_size bottleneck frames, the
    chunk overlap, never recomputed) and the overlap-add's sums of the hops later chunks still reach.
    ``counts`` has the work done: bottleneck frames, and chunks through the blocks.

    Shape: push: encoder frames (1, n_filters, frames) -> masks (1, n_sources, n_filters, ready frames).
    """

    def __init__(self, separator: DualPathSeparator):
        self.sep = separator
        self.chunk_size, self.hop_size = separator.chunk_size, separator.hop_size
        self.edge = chunk_edge(chunk_size=self.chunk_size, hop_size=self.hop_size, padding=separator.chunk_padding)
        self.in_norm = NormCarry()
        self.blocks = [block.carry() for block in separator.blocks]
        weight = separator.bottleneck.weight
        channels = separator.bottleneck.out_features
        self.pending = weight.new_zeros(self.edge, 1, channels)  # (frames, batch, bottleneck): the front padding
        overlap = self.chunk_size // self.hop_size - 1  # hops a chunk shares with the next
        self.tail = weight.new_zeros(overlap, self.hop_size, 1, channels)  # their sums so far
        self.front = self.edge  # overlap-added frames still to drop (the front padding)
        self.frames_in = self.frames_out = 0
        self.counts = {"frames": 0, "chunks": 0}

    def push(self, w: torch.Tensor) -> torch.Tensor:
        self.pending = torch.cat([self.pending, self.sep.embed(w, self.in_norm)])  # (pending frames, 1, bottleneck)
        self.frames_in += w.shape[-1]
        self.counts["frames"] += w.shape[-1]
        return self._run_chunks()

    def flush(self) -> torch.Tensor:
        """The masks of every frame left, the input having ended: segment()'s back padding, then the last chunks."""
        _, back = _padding(self.frames_in, chunk_size=self.chunk_size, hop_size=self.hop_size,
                           padding=self.sep.chunk_padding)  # fmt: skip
        self.pending = F.pad(self.pending, (0, 0, 0, 0, 0, back))
        return self._run_chunks()

    def _run_chunks(self) -> torch.Tensor:
        chunk_size, hop = self.chunk_size, self.hop_size
        n_chunks = (self.pending.shape[0] - chunk_size) // hop + 1 if self.pending.shape[0] >= chunk_size else 0
        if n_chunks == 0:
            return self.sep.masks(self.pending[:0])
        x = _chunks(self.pending, chunk_size, hop)  # (chunk_size, chunks, 1, bottleneck)
        self.pending = self.pending[n_chunks * hop :]
        self.counts["chunks"] += n_chunks
        for block, carry in zip(self.sep.blocks, self.blocks):
            x = block(x, carry)
        hops = _overlap_hops(self.sep.chunk_output(x), hop, self.tail)  # (chunks + overlap, hop, 1, bottleneck)
        self.tail = hops[n_chunks:]
        frames = hops[:n_chunks].view(n_chunks * hop, *x.shape[2:])  # final: no later chunk reaches them
        drop = min(self.front, frames.shape[0])
        self.front -= drop
        frames = frames[drop : drop + self.frames_in - self.frames_out]  # no back padding
        self.frames_out += frames.shape[0]
        return self.sep.masks(frames)
