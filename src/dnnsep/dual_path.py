"""The dual-path RNN separator of DPRNN-TasNet (Luo, Chen and Yoshioka, ICASSP 2020).

A sequence of ``frames`` feature vectors is cut into overlapping chunks of ``chunk_size`` frames
with hop ``hop_size``; dual-path blocks alternate an RNN *inside* each chunk (local axis) with an
RNN *across* chunks (global axis); overlap-add turns the chunks back into a sequence.

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
>>> sep = DualPathSeparator(in_channels=16, bottleneck=8, hidden=12, chunk_size=10, hop_size=5,
...                         n_blocks=2, n_sources=3, mask="softmax", norm="gln", causal=False)
>>> masks = sep(torch.rand(2, 16, 250))  # (batch, in_channels, frames)
>>> masks.shape  # (batch, n_sources, in_channels, frames)
torch.Size([2, 3, 16, 250])
>>> torch.allclose(masks.sum(1), torch.ones(2, 16, 250))  # softmax is across sources
True
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import nn

from .norms import make_norm

MASKS = ("sigmoid", "relu", "softmax")
LSTM_BATCH_SLICE = 128  # sequences per LSTM call on CPU (see _lstm_then_linear)
LSTM_TIME_SLICE = 256  # steps per LSTM call on CPU, the state carried across (see _lstm_then_linear)

_direction_pool: tuple[int, ThreadPoolExecutor] | None = None  # (intra-op threads it was made for, pool)


def _pool_for_directions() -> ThreadPoolExecutor | None:
    """Two worker threads, each with half of torch's intra-op threads, for the two LSTM directions (CPU).

    On CPU the two directions of a BiLSTM are independent; running them side by side, each on half
    the cores, beats running them one after the other on all cores (no per-step barrier between
    threads, which a busy machine makes costly).  Made on first use, again if the thread count changes.
    """
    global _direction_pool
    threads = torch.get_num_threads()
    if threads < 2 or torch.jit.is_tracing() or torch.compiler.is_compiling():  # tracers see one thread only
        return None
    if _cpu_autocast():  # autocast is per thread: the pool's threads would run the LSTMs without it
        return None
    if _direction_pool is None or _direction_pool[0] != threads:
        if _direction_pool is not None:
            _direction_pool[1].shutdown(wait=False)
        pool = ThreadPoolExecutor(
            2, thread_name_prefix="dnnsep-lstm", initializer=torch.set_num_threads, initargs=(threads // 2,)
        )
        _direction_pool = (threads, pool)
    return _direction_pool[1]


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def segment(x: torch.Tensor, *, chunk_size: int, hop_size: int) -> torch.Tensor:
    """Cut a sequence into chunks of ``chunk_size`` frames every ``hop_size`` frames.

    Both ends are padded with ``chunk_size - hop_size`` zero frames (the back a little more to fill
    the last chunk), so with ``hop_size`` dividing ``chunk_size`` every frame lies in exactly
    ``chunk_size // hop_size`` chunks.

    Shape: x: (frames, batch, channels) -> (chunk_size, chunks, batch, channels), contiguous.
    """
    edge = chunk_size - hop_size
    rest = (x.shape[0] + 2 * edge - chunk_size) % hop_size
    x = F.pad(x, (0, 0, 0, 0, edge, edge + (hop_size - rest) % hop_size))  # pad the frame axis
    chunks = x.unfold(0, chunk_size, hop_size)  # (chunks, batch, channels, chunk_size), a view
    return chunks.permute(3, 0, 1, 2).contiguous()


def overlap_add(chunks: torch.Tensor, *, frames: int, hop_size: int) -> torch.Tensor:
    """Sum overlapping chunks back into a sequence and drop the padding added by :func:`segment`.

    Vectorised over chunks: with ``chunk_size = r * hop_size``, the j-th hop-long piece of every chunk
    is added at once, r additions in all.

    Shape: chunks: (chunk_size, chunks, batch, channels) -> (frames, batch, channels).
    """
    chunk_size, n_chunks, batch, channels = chunks.shape
    pieces = chunk_size // hop_size
    parts = chunks.view(pieces, hop_size, n_chunks, batch, channels)
    out = chunks.new_zeros(n_chunks + pieces - 1, hop_size, batch, channels)  # (hops, hop_size, batch, channels)
    for j in range(pieces):
        out[j : j + n_chunks] += parts[j].transpose(0, 1)  # (chunks, hop_size, batch, channels)
    edge = chunk_size - hop_size
    return out.view(-1, batch, channels)[edge : edge + frames]


class RNNProjection(nn.Module):
    """An LSTM over the first axis followed by a linear layer back to the input width.

    Bidirectional: two LSTMs of ``hidden // 2`` units, one reading the sequence backwards, each
    projected by its own linear layer and summed, which equals a BiLSTM followed by one linear layer
    on the concatenated outputs, without building that concatenation (on CPU the copy costs about a
    tenth of the LSTM time).  Unidirectional: one LSTM of ``hidden`` units.

    Shape: (time, batch, channels) -> (time, batch, channels).
    """

    def __init__(self, *, channels: int, hidden: int, bidirectional: bool):
        super().__init__()
        units = hidden // 2 if bidirectional else hidden
        self.rnn = nn.LSTM(channels, units)
        self.linear = nn.Linear(units, channels)
        self.rnn_reverse = nn.LSTM(channels, units) if bidirectional else None
        self.linear_reverse = nn.Linear(units, channels, bias=False) if bidirectional else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rnn_reverse is None:
            return self._forward_direction(x)
        pool = _pool_for_directions() if x.device.type == "cpu" else None
        directions = (self._forward_direction, self._backward_direction)
        if pool is None:
            return directions[0](x) + directions[1](x)
        if torch.is_grad_enabled():
            params = [p for module in (self.rnn, self.linear) for p in module.parameters()]
            params_reverse = [p for module in (self.rnn_reverse, self.linear_reverse) for p in module.parameters()]
            return _SideBySide.apply(x, pool, directions, len(params), *params, *params_reverse)
        inference = torch.is_inference_mode_enabled()  # grad modes are per thread: pass them on

        def run(direction):
            with torch.inference_mode(inference), torch.no_grad():
                return direction(x)

        forward, backward = (pool.submit(run, d) for d in directions)
        return forward.result().add_(backward.result())  # no autograd here: sum in place

    def _forward_direction(self, x: torch.Tensor) -> torch.Tensor:
        return _lstm_then_linear(self.rnn, self.linear, x)  # (time, batch, channels)

    def _backward_direction(self, x: torch.Tensor) -> torch.Tensor:
        return _lstm_then_linear(self.rnn_reverse, self.linear_reverse, x, reverse=True)  # reads backwards


def _lstm_then_linear(rnn: nn.LSTM, linear: nn.Linear, x: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
    """``linear(rnn(x))``, or with ``reverse`` the same over the time-reversed ``x``, reversed back.

    On CPU, a large input goes in pieces written into the output as each is done, so it is never
    copied whole: slices of at most :data:`LSTM_BATCH_SLICE` sequences, which the LSTM kernel runs
    faster per frame than one huge batch (its per-step working set stays in cache; ~7% for a training
    step), and, along time, segments of at most :data:`LSTM_TIME_SLICE` steps that pass the LSTM's
    state on to the next (the same result: a 60 s mixture's inter-chunk LSTM needs 50 MB of kernel
    workspace per direction instead of 500 MB).  A reverse pass takes the segments from the end.

    Shape: (time, batch, channels) -> (time, batch, channels).
    """
    time, batch = x.shape[:2]
    if x.device.type != "cpu" or (batch <= LSTM_BATCH_SLICE and time <= LSTM_TIME_SLICE):
        y = linear(rnn(x.flip(0) if reverse else x)[0])
        return y.flip(0) if reverse else y
    out = x.new_empty(time, batch, linear.out_features)
    starts = range(0, time, LSTM_TIME_SLICE)
    for i in range(0, batch, LSTM_BATCH_SLICE):
        state = None  # (h, c) carried from one time segment to the next
        for t in reversed(starts) if reverse else starts:
            part = x[t : t + LSTM_TIME_SLICE, i : i + LSTM_BATCH_SLICE]  # (steps, slice, channels), a view
            h, state = rnn(part.flip(0) if reverse else part.contiguous(), state)
            y = linear(h)
            out[t : t + LSTM_TIME_SLICE, i : i + LSTM_BATCH_SLICE] = y.flip(0) if reverse else y
    return out


class _SideBySide(torch.autograd.Function):
    """Training on CPU: both directions, forward and backward passes alike, in the two pool threads.

    Each direction records its own graph in its own thread; the backward pass differentiates the two
    graphs side by side and hands the gradients of the input and of every parameter back to autograd.
    """

    @staticmethod
    def forward(ctx, x, pool, directions, n_forward_params, *params):
        def run(direction):
            with torch.enable_grad():
                xi = x.detach().requires_grad_()
                return xi, direction(xi)

        ctx.runs = [f.result() for f in [pool.submit(run, d) for d in directions]]
        ctx.pool, ctx.split = pool, n_forward_params
        ctx.params = (params[:n_forward_params], params[n_forward_params:])
        return ctx.runs[0][1].detach() + ctx.runs[1][1].detach()

    @staticmethod
    def backward(ctx, grad):
        def run(i):
            xi, y = ctx.runs[i]
            return torch.autograd.grad(y, [xi, *ctx.params[i]], grad)

        (gx0, *g0), (gx1, *g1) = (f.result() for f in [ctx.pool.submit(run, i) for i in (0, 1)])
        ctx.runs = None  # free both graphs
        return (gx0 + gx1, None, None, None, *g0, *g1)


class DualPathBlock(nn.Module):
    """Intra-chunk BiLSTM then inter-chunk (Bi)LSTM, each followed by linear, norm and residual.

    The intra-chunk RNN is always bidirectional (``hidden // 2`` units per direction): it sees
    its own chunk only.  The inter-chunk RNN is bidirectional likewise, or, when ``causal``, a
    unidirectional LSTM of ``hidden`` units, so chunk s never sees chunks after s.

    Shape: (chunk_size, chunks, batch, channels) -> same.
    """

    def __init__(self, *, channels: int, hidden: int, norm: str, causal: bool):
        super().__init__()
        self.intra = RNNProjection(channels=channels, hidden=hidden, bidirectional=True)
        self.intra_norm = make_norm(norm, channels)
        self.inter = RNNProjection(channels=channels, hidden=hidden, bidirectional=not causal)
        self.inter_norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunk_size, n_chunks, batch, channels = x.shape
        # intra-chunk: sequences along chunk_size, one per (chunk, example)
        y = self.intra(x.view(chunk_size, n_chunks * batch, channels)).view(x.shape)
        x = _add_norm_swapped(x, self.intra_norm, y, batch_dim=2, time_dim=1)  # (chunks, chunk_size, ...)
        # inter-chunk: sequences along chunks, one per (chunk position, example)
        y = self.inter(x.view(n_chunks, chunk_size * batch, channels)).view(x.shape)
        return _add_norm_swapped(x, self.inter_norm, y, batch_dim=2, time_dim=0)  # (chunk_size, chunks, ...)


def _add_norm_swapped(x: torch.Tensor, norm: nn.Module, y: torch.Tensor, *, batch_dim: int, time_dim: int):
    """The residual sum ``x + norm(y)`` with axes 0 and 1 swapped, contiguous (the next RNN's layout).

    Without autograd, ``y`` (an RNN's fresh output) is normalised in place and the sum written straight
    into the swapped layout: one new tensor and two passes instead of three of each.

    Shape: (a, b, batch, channels) -> (b, a, batch, channels).
    """
    if torch.is_grad_enabled():
        return (x + norm(y, batch_dim=batch_dim, time_dim=time_dim)).transpose(0, 1).contiguous()
    scale, shift = norm.scale_shift(y, batch_dim=batch_dim, time_dim=time_dim)
    out = x.new_empty(x.shape[1], x.shape[0], *x.shape[2:])
    torch.addcmul(shift, y, scale, out=y)  # norm(y), in place
    torch.add(x, y, out=out.transpose(0, 1))
    return out


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
        x = self.in_norm(w.permute(2, 0, 1), batch_dim=1, time_dim=0)  # (frames, batch, in_channels)
        x = segment(self.bottleneck(x), chunk_size=self.chunk_size, hop_size=self.hop_size)
        for block in self.blocks:
            x = block(x)  # (chunk_size, chunks, batch, bottleneck)
        x = overlap_add(x, frames=frames, hop_size=self.hop_size)  # (frames, batch, bottleneck)
        m = self.mask_conv(self.out_act(x))  # (frames, batch, n_sources * in_channels)
        m = m.view(frames, batch, self.n_sources, channels).permute(1, 2, 3, 0)  # (batch, n_sources, channels, frames)
        if self.mask == "sigmoid":
            return torch.sigmoid(m)
        if self.mask == "relu":
            return F.relu(m)
        return torch.softmax(m, dim=1)
