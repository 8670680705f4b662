"""Separating recordings of any length with bounded memory, and scaling the estimates for listening.

:func:`separate_long` runs any separation model (``(batch, time) -> (batch, n_sources, time)``)
over overlapping chunks of ``chunk_seconds``, streaming: it holds one batch of chunks at a time
and writes into a preallocated output, so its working memory does not grow with the input.
Inputs no longer than one chunk are separated in one pass.

Chunk ``i`` starts at ``i * hop`` (``hop = chunk - overlap``); the last chunk is moved back to
end exactly at the end of the input, so every chunk has the same length and overlaps the one
before by at least ``overlap`` samples.  Each chunk's sources are put in the order of the
previous chunk's by the permutation that best matches the previous chunk on their common samples
(largest summed inner product, i.e. smallest squared difference; see :func:`best_permutation`),
so a voice does not jump between outputs.  Neighbours are cross-faded over the last ``overlap``
samples of the earlier chunk with complementary raised-cosine windows (``cos^2 + sin^2 = 1``), so
the weights of every sample sum to exactly one.

:class:`ChunkedStream` is that computation on a stream: it runs each chunk as soon as the input
covers it and returns the samples no later chunk changes, at a fixed latency of one chunk
(``separate_long`` is that stream over the whole input; live separation runs a model that looks
ahead this way).

:func:`scale_estimates` then brings each estimate to its level in the mixture (least-squares gain)
and scales all of them down together if any would clip.

>>> import torch
>>> identity = lambda x: torch.stack([x, 0.5 * x], dim=1)  # a "model": (batch, time) -> (batch, 2, time)
>>> mixture = torch.randn(50_000).numpy()
>>> est = separate_long(identity, mixture, sample_rate=8000, chunk_seconds=1.0, overlap=0.25)
>>> est.shape  # (time,) -> (n_sources, time)
(2, 50000)
>>> bool(abs(est[0] - mixture).max() < 1e-5)  # the cross-fades sum to one
True
>>> chunk_starts(50_000, chunk=8000, overlap=2000)[-3:]  # the last chunk ends at the input's end
[30000, 36000, 42000]
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from . import losses
from .audio import mono_block

Separator = Callable[[torch.Tensor], torch.Tensor]  # (batch, time) -> (batch, n_sources, time)

_SUM_BLOCK = 1 << 20  # samples per block when summing in float64


def chunk_starts(length: int, *, chunk: int, overlap: int) -> list[int]:
    """Start sample of each chunk of ``chunk`` samples covering ``[0, length)`` (see module doc)."""
    if length <= chunk:
        return [0]
    hop = chunk - overlap
    return list(range(0, length - chunk, hop)) + [length - chunk]


def separate_long(
    model: Separator,
    mixture: np.ndarray | torch.Tensor,
    *,
    sample_rate: int | None = None,
    chunk_seconds: float | None = 8.0,
    overlap: float = 0.25,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    align: bool = True,
    out: np.ndarray | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Separate a mixture of any length, chunk by chunk (see the module doc); returns float32.

    Args:
        model: ``(batch, time) -> (batch, n_sources, time)``, e.g. a ``DPRNNTasNet`` in eval
            mode.  It is called under ``torch.inference_mode()``; its mode is left as it is.
        sample_rate: to convert ``chunk_seconds``; default ``model.sample_rate``.
        chunk_seconds: chunk length; inputs no longer than this (or all, when None) are separated
            in one pass.
        overlap: fraction of a chunk shared with the next one, in ``(0, 0.5]``.
        batch_size: chunks per model call (working memory grows with it).
        device: where the model runs; default the model's device (CPU for a plain function).
        align: reorder each chunk's sources to match the previous chunk (turn off only to test).
        out: optional preallocated ``(n_sources, time)`` float32 array to write into (e.g. a
            ``np.memmap`` for inputs too long to keep in memory twice).
        progress: show a progress bar over chunks (on stderr).

    Shape: mixture (time,) -> (n_sources, time).
    """
    x = mixture.detach().cpu().numpy() if isinstance(mixture, torch.Tensor) else np.asarray(mixture)
    if x.ndim != 1 or x.shape[0] < 1:
        raise ValueError(f"mixture must be (time,) with time >= 1, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    length = x.shape[0]
    chunk, fade = chunk_plan(
        model, sample_rate=sample_rate, chunk_seconds=chunk_seconds, overlap=overlap, length=length
    )
    if length <= chunk:  # one pass
        y = _run(model, x[None], _model_device(model) if device is None else device)[0]  # (n_sources, length)
        if out is None:
            return y
        _check_out(out, y.shape[0], length)
        out[...] = y
        return out
    stream = ChunkedStream(model, chunk=chunk, fade=fade, batch_size=batch_size, device=device, align=align)
    n_chunks = len(chunk_starts(length, chunk=chunk, overlap=fade))
    bar = tqdm(total=n_chunks, desc="separating", unit="chunk", disable=not progress)
    stream.on_chunks = bar.update
    # the first push completes batch_size chunks, and each next one batch_size more: a full batch per model call
    bounds = [0, min(length, chunk + (batch_size - 1) * stream.hop)]
    while bounds[-1] < length:
        bounds.append(min(length, bounds[-1] + batch_size * stream.hop))
    est, done = out, 0
    for piece in [*zip(bounds, bounds[1:]), None]:
        y = stream.flush() if piece is None else stream.push(x[piece[0] : piece[1]])  # (n_sources, due)
        if y.shape[1] == 0:
            continue
        if est is None:
            est = np.zeros((stream.n_sources, length), dtype=np.float32)
        elif done == 0:
            _check_out(est, y.shape[0], length)
        est[:, done : done + y.shape[1]] = y
        done += y.shape[1]
    bar.close()
    return est


def _check_out(out: np.ndarray, n_sources: int, length: int) -> None:
    if out.shape != (n_sources, length):
        raise ValueError(f"out must have shape {(n_sources, length)}, got {out.shape}")


def chunk_plan(
    model: Separator, *, sample_rate: int | None, chunk_seconds: float | None, overlap: float, length: int | None
) -> tuple[int, int]:
    """``(chunk, fade)`` in samples for ``chunk_seconds`` and ``overlap``, checked (``length``: the
    input's, None for a stream; ``chunk_seconds=None``: the whole input in one chunk)."""
    rate = sample_rate if sample_rate is not None else getattr(model, "sample_rate", None)
    if rate is None:
        raise ValueError("sample_rate is needed (the model has no .sample_rate)")
    if not 0 < overlap <= 0.5:
        raise ValueError(f"overlap must be a fraction of a chunk in (0, 0.5], got {overlap}")
    if chunk_seconds is None and length is None:
        raise ValueError("a stream needs chunk_seconds")
    chunk = length if chunk_seconds is None else int(round(chunk_seconds * rate))
    fade = min(int(round(overlap * chunk)), chunk // 2)  # cross-fade length, in samples
    if (length is None or length > chunk) and (chunk < 2 or fade < 1):
        raise ValueError(f"chunk_seconds={chunk_seconds} at {rate} Hz is too short to chunk with overlap {overlap}")
    return chunk, fade


class ChunkedStream:
    """Any separation model on a stream, in overlapping chunks: :func:`separate_long`'s output, block by block.

    A model that looks ahead (a bidirectional RNN, a transformer) cannot run sample by sample; this
    runs it on each chunk of ``chunk`` samples as soon as the input covers it, the chunks starting
    every ``chunk - fade`` samples, each chunk's sources put in the previous chunk's order and
    cross-faded over ``fade`` samples (see the module doc).  At :meth:`flush`, a last chunk ends at
    the input's end (or, for an input no longer than a chunk, one pass separates it all).

    After pushing n samples in all, ``max(0, n - latency)`` samples per source have been returned
    (``latency = chunk``: a sample's chunk must be in before it is final); :meth:`flush` returns the
    rest.  Concatenated, the outputs equal ``separate_long`` on the whole input with the same chunks,
    for any split.  ``n_sources`` is the model's (for a plain function, None until its first call,
    and nothing is returned before that but ``(0, 0)`` arrays).

    Blocks are float (cast to float32) or int16 (scaled by 1/32768), as :class:`dnnsep.streaming.StreamingSeparator`'s.

    Shape: push: block (samples,) -> (n_sources, samples) float32; flush: () -> (n_sources, the rest).
    """

    def __init__(
        self,
        model: Separator,
        *,
        chunk: int,
        fade: int,
        batch_size: int = 1,
        device: torch.device | str | None = None,
        align: bool = True,
    ):
        if not 1 <= fade <= chunk // 2 or batch_size < 1:
            raise ValueError(f"need 1 <= fade <= chunk / 2 and batch_size >= 1, got {fade}, {chunk}, {batch_size}")
        self.model, self.chunk, self.fade, self.hop = model, chunk, fade, chunk - fade
        self.batch_size, self.align = batch_size, align
        self.device = _model_device(model) if device is None else device
        self.sample_rate = getattr(model, "sample_rate", None)
        self.latency = chunk
        self.on_chunks: Callable[[int], object] | None = None  # told how many chunks each model call ran
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.n_sources: int | None = getattr(self.model, "n_sources", None)
        self._x = np.zeros(0, np.float32)  # input from sample _x0 on
        self._x0 = 0
        self._next = 0  # the next regular chunk's start
        self._prev: tuple[int, np.ndarray] | None = None  # the last chunk run: start, aligned output (n_sources, chunk)
        self._ready: list[np.ndarray] = []  # final output not yet returned, in order
        self.pushed = self.emitted = 0
        self._done = False

    def push(self, block) -> np.ndarray:
        """Take the next input samples; return the output samples due (all but the last ``latency`` in)."""
        if self._done:
            raise ValueError("push() after flush(): call reset() to start a new stream")
        x = mono_block(block)
        self._x = np.concatenate([self._x, x])  # a copy: the caller may reuse its buffer
        self.pushed += len(x)
        starts = []
        while self._next + self.chunk <= self.pushed:
            starts.append(self._next)
            self._next += self.hop
        self._run(starts, last=False)
        return self._emit(self.pushed - self.latency)

    def flush(self) -> np.ndarray:
        """End the stream: the output samples not yet returned."""
        if self._done:
            raise ValueError("flush() twice: call reset() to start a new stream")
        self._done = True
        if self._prev is None:  # no chunk yet: the input is shorter than one chunk, one pass
            if self.pushed:
                self._run([0], last=True, width=self.pushed)
        elif self._prev[0] + self.chunk < self.pushed:  # a last chunk, ending at the input's end
            self._run([self.pushed - self.chunk], last=True)
        else:  # the last chunk run ends at the input's end: its tail is not faded out
            self._final_part(self._prev[1][:, self.chunk - self.fade :])
        return self._emit(self.pushed)

    def _run(self, starts: list[int], *, last: bool, width: int | None = None) -> None:
        """Separate the chunks at ``starts`` (in batches), align them and keep what is final."""
        width = width or self.chunk
        for b in range(0, len(starts), self.batch_size):
            batch = starts[b : b + self.batch_size]
            frames = np.stack([self._x[s - self._x0 : s - self._x0 + width] for s in batch])  # (batch, width)
            y = _run(self.model, frames, self.device)  # (batch, n_sources, width)
            self.n_sources = y.shape[1]
            for k, s in enumerate(batch):
                self._add(s, y[k], last=last and b + k == len(starts) - 1)
            if self.on_chunks is not None:
                self.on_chunks(len(batch))
        if self._prev is not None:  # the next chunk starts at or after the last one's start
            keep = self._prev[0] - self._x0
            self._x, self._x0 = self._x[keep:], self._prev[0]

    def _add(self, s: int, y: np.ndarray, *, last: bool) -> None:
        """One chunk's output (n_sources, width) at sample ``s``: cross-faded with the previous chunk's tail."""
        if self._prev is not None:
            prev_start, prev = self._prev
            prev_end = prev_start + prev.shape[1]
            if self.align:
                y = y[best_permutation(prev[:, s - prev_start :], y[:, : prev_end - s])]
            a = prev_end - self.fade - s  # where y fades in: nothing of it before (the previous chunk's alone)
            fade_in = _fade_in(self.fade)
            self._final_part(prev[:, prev.shape[1] - self.fade :] * fade_in[::-1] + y[:, a : a + self.fade] * fade_in)
            y_final = y[:, a + self.fade :]
        else:
            y_final = y
        if last:
            self._final_part(y_final)
        else:  # its last `fade` samples wait for the next chunk (or the end)
            self._final_part(y_final[:, : y_final.shape[1] - self.fade])
        self._prev = (s, y)

    def _final_part(self, y: np.ndarray) -> None:
        self._ready.append(np.ascontiguousarray(y, dtype=np.float32))

    def _emit(self, upto: int) -> np.ndarray:
        """The output samples ``emitted .. upto`` (none if upto <= emitted)."""
        n = min(upto, self.pushed) - self.emitted
        ready = np.concatenate(self._ready, axis=1) if len(self._ready) > 1 else None
        if ready is None:
            ready = self._ready[0] if self._ready else np.zeros((self.n_sources or 0, 0), np.float32)
        if n <= 0:
            self._ready = [ready] if ready.shape[1] else []
            return np.zeros((ready.shape[0], 0), np.float32)
        if n > ready.shape[1]:
            raise RuntimeError(f"the chunks lag more than the latency ({self.latency} samples)")  # a bug
        self._ready = [ready[:, n:]] if ready.shape[1] > n else []
        self.emitted += n
        return np.ascontiguousarray(ready[:, :n])


def best_permutation(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """The order of ``estimate``'s sources that best matches ``reference``: ``estimate[perm]``.

    Maximises the summed inner products ``sum_a <reference[a], estimate[perm[a]]>``, i.e. finds
    the permutation with the smallest squared difference (all permutations up to 4 sources, the
    Hungarian algorithm beyond; see :func:`dnnsep.losses.best_permutation`).

    Shape: reference (n_sources, time), estimate (n_sources, time) -> perm (n_sources,).

    >>> ref = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> best_permutation(ref, ref[::-1]).tolist()
    [1, 0]
    """
    if estimate.shape != reference.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, estimate {estimate.shape}")
    scores = estimate.astype(np.float64) @ reference.astype(np.float64).T  # (n_est, n_ref): <est_e, ref_r>
    return losses.best_permutation(torch.from_numpy(scores)[None])[0].numpy()


def rescale_to_mixture(estimates: np.ndarray, mixture: np.ndarray, *, eps: float = 1e-8) -> np.ndarray:
    """Scale each estimate by its least-squares gain onto the mixture, ``<m, e> / <e, e>``.

    Separation models trained with a scale-invariant loss leave each estimate's level arbitrary;
    this gain brings estimate ``e`` to the level (and polarity) at which it is present in ``m``:
    for ``m = s1 + s2`` with uncorrelated sources and ``e = c * s1``, it returns ``s1``.  Returns a
    new float32 array (sums in float64, block by block: no float64 copy of long inputs).

    Shape: estimates (n_sources, time), mixture (time,) -> (n_sources, time).

    >>> s = np.array([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])
    >>> rescale_to_mixture(np.array([10 * s[0], -0.1 * s[1]]), s.sum(0)).round(6).tolist()
    [[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]
    """
    cross, energy = np.zeros(estimates.shape[0]), np.zeros(estimates.shape[0])
    for i in range(0, estimates.shape[-1], _SUM_BLOCK):
        e = np.asarray(estimates[:, i : i + _SUM_BLOCK], dtype=np.float64)  # (n_sources, block)
        cross += e @ np.asarray(mixture[i : i + _SUM_BLOCK], dtype=np.float64)
        energy += (e * e).sum(axis=-1)
    gain = cross / (energy + eps)  # (n_sources,)
    return (estimates * gain[:, None].astype(np.float32)).astype(np.float32, copy=False)


def protect_from_clipping(
    signals: np.ndarray, *, peak: float = 0.99, inplace: bool = False
) -> tuple[np.ndarray, float]:
    """Scale all signals by one common gain (<= 1) so that no sample exceeds ``peak``.

    Returns ``(scaled signals, gain)``; one gain keeps the signals' relative levels.  With
    ``inplace`` (a float array), ``signals`` itself is scaled and returned.

    >>> protect_from_clipping(np.array([[0.5, -2.0], [0.1, 0.2]]), peak=1.0)[1]
    0.5
    """
    top = float(np.abs(signals).max()) if signals.size else 0.0
    gain = peak / top if top > peak else 1.0
    if inplace:
        signals *= signals.dtype.type(gain)
        return signals, gain
    return (signals * np.float32(gain)).astype(np.float32, copy=False), gain


def scale_estimates(estimates: np.ndarray, mixture: np.ndarray, *, peak: float = 0.99) -> np.ndarray:
    """:func:`rescale_to_mixture` then :func:`protect_from_clipping`: ready to write as 16-bit PCM.

    Returns a new float32 array.  Shape: estimates (n_sources, time), mixture (time,) -> (n_sources, time).
    """
    return protect_from_clipping(rescale_to_mixture(estimates, mixture), peak=peak, inplace=True)[0]


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the model's parameters and buffers holding NaN or infinite values (a broken checkpoint).

    >>> net = torch.nn.Linear(2, 1)
    >>> non_finite_parameters(net)
    []
    >>> with torch.no_grad():
    ...     _ = net.bias.fill_(float("nan"))
    >>> non_finite_parameters(net)
    ['bias']
    """
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [name for name, t in tensors if t.is_floating_point() and not bool(torch.isfinite(t).all())]


# -- helpers -----------------------------------------------------------------------------------


def _run(model: Separator, frames: np.ndarray, device: torch.device | str) -> np.ndarray:
    """Call the model on a batch of equal-length chunks.  Shape: (batch, time) -> (batch, n_sources, time)."""
    with torch.inference_mode():
        y = model(torch.from_numpy(frames).to(device))
    if y.dim() != 3 or y.shape[0] != frames.shape[0] or y.shape[2] != frames.shape[1]:
        raise ValueError(
            f"the model must map (batch, time) to (batch, n_sources, time): {tuple(frames.shape)} gave {tuple(y.shape)}"
        )
    return y.float().cpu().numpy()


def _model_device(model: Separator) -> torch.device:
    if isinstance(model, torch.nn.Module):
        param = next(model.parameters(), None)
        if param is not None:
            return param.device
    return torch.device("cpu")


@lru_cache(maxsize=16)
def _fade_in(n: int) -> np.ndarray:
    """``sin^2`` rising over ``n`` samples; its reverse is ``1 -`` it.  Shape: (n,)."""
    ramp = (np.sin(0.5 * math.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)
    ramp.flags.writeable = False  # cached: shared between calls
    return ramp
