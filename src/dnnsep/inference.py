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
    rate = sample_rate if sample_rate is not None else getattr(model, "sample_rate", None)
    if rate is None:
        raise ValueError("sample_rate is needed (the model has no .sample_rate)")
    if not 0 < overlap <= 0.5:
        raise ValueError(f"overlap must be a fraction of a chunk in (0, 0.5], got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    length = x.shape[0]
    chunk = length if chunk_seconds is None else int(round(chunk_seconds * rate))
    fade = int(round(overlap * chunk))  # cross-fade length, in samples
    if length > chunk and (chunk < 2 or fade < 1):
        raise ValueError(f"chunk_seconds={chunk_seconds} at {rate} Hz is too short to chunk with overlap {overlap}")
    if device is None:
        device = _model_device(model)
    starts = chunk_starts(length, chunk=chunk, overlap=fade)
    width = min(chunk, length)
    prev_end, prev_tail, est = 0, None, out  # prev_tail: previous chunk's aligned estimates past the next start
    bar = tqdm(total=len(starts), desc="separating", unit="chunk", disable=not progress or len(starts) == 1)
    for b0 in range(0, len(starts), batch_size):
        batch = starts[b0 : b0 + batch_size]
        frames = np.stack([x[s : s + width] for s in batch])  # (batch, width)
        y = _run(model, frames, device)  # (batch, n_sources, width)
        if est is None:
            est = np.zeros((y.shape[1], length), dtype=np.float32)
        elif b0 == 0:
            if est.shape != (y.shape[1], length):
                raise ValueError(f"out must have shape {(y.shape[1], length)}, got {est.shape}")
            est[...] = 0.0
        for k, s in enumerate(batch):
            i = b0 + k
            yi = y[k]  # (n_sources, width)
            if i > 0 and align:
                yi = yi[best_permutation(prev_tail, yi[:, : prev_end - s])]
            w = np.ones(width, dtype=np.float32)
            if i > 0:  # fade in over the previous chunk's last `fade` samples; before them, weight 0
                a = prev_end - fade - s
                w[:a] = 0.0
                w[a : a + fade] = _fade_in(fade)
            if i < len(starts) - 1:  # fade out over the last `fade` samples
                w[width - fade :] *= _fade_in(fade)[::-1]
                prev_tail = yi[:, starts[i + 1] - s :]  # (n_sources, overlap with the next chunk)
            est[:, s : s + width] += yi * w
            prev_end = s + width
        bar.update(len(batch))
    bar.close()
    return est


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
