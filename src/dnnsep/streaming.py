"""Separate a stream block by block, with the causal model's output exactly, at a fixed latency.

>>> import numpy as np, torch
>>> from dnnsep import DPRNNConfig, DPRNNTasNet
>>> torch.manual_seed(0) and None
>>> model = DPRNNTasNet(DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5,
...                                 n_blocks=1, causal=True)).eval()
>>> stream = StreamingSeparator(model)
>>> stream.latency == model.config.latency == 24  # samples
True
>>> x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
>>> parts = [stream.push(x[:7]), stream.push(x[7:500]), stream.push(x[500:]), stream.flush()]
>>> [p.shape for p in parts]  # (n_sources, samples): all but the last `latency` samples pushed, then the rest
[(2, 0), (2, 476), (2, 500), (2, 24)]
>>> offline = model.separate(x)  # (n_sources, time)
>>> bool(np.abs(np.concatenate(parts, axis=1) - offline).max() < 1e-4)
True

:class:`StreamingSeparator` is the same for every model: it buffers the input, frames it for the
encoder (the offline pass's front padding first, its back padding at :meth:`~StreamingSeparator.flush`),
applies the masks, overlap-adds the decoder's output, and emits each sample ``latency`` samples
after it came in.  The masker is the model's own business: a model that streams says so
(``streams = True``) and its separator's ``stream()`` runs the separator's own blocks on carried
state, following the :class:`MaskerStream` protocol (:class:`dnnsep.models.dual_path.DualPathStream`,
:class:`dnnsep.models.tcn.TCNStream`).  ``tests/test_streaming.py`` checks every such model against
its offline pass (give it a tiny config there).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from . import models
from .audio import mono_block
from .errors import DnnsepError
from .models.base import MaskingModel


class MaskerStream(Protocol):
    """A model's masker run incrementally, for one stream (batch 1).

    ``push(w)`` takes the next encoder frames and returns the masks of the next frames whose masks
    are final (none, some, or more than given), in order; ``flush()``, called once when the input
    has ended, returns the masks of all the remaining frames.  Concatenated, the masks equal the
    offline masker's ``separator(w)`` on all the frames, for any split of ``w``.  The stream's
    look-ahead, in frames, must fit the model's ``config.latency`` (the engine checks on every push:
    a sample is due ``latency`` samples after it came in).  ``counts`` says how much work was done
    (frames, chunks...), for tests that the past is not recomputed.

    The model's separator makes one (``separator.stream()``) and says why it cannot
    (``separator.not_causal()``: it looks ahead), or None.

    Shape: push: w (1, n_filters, frames) -> masks (1, n_sources, n_filters, ready frames).
    """

    counts: dict[str, int]

    def push(self, w: torch.Tensor) -> torch.Tensor: ...

    def flush(self) -> torch.Tensor: ...


def streaming_models() -> list[str]:
    """The ``model_name`` of every registered model that streams when causal."""
    return sorted(models.get(name).model_name for name in models.names() if models.get(name).streams)


def not_streamable(model: MaskingModel) -> str | None:
    """Why ``model`` cannot stream (one line), or None."""
    name = type(model).model_name
    if not type(model).streams:
        return f"{name}: its masker does not stream (models that stream: {', '.join(streaming_models())})"
    why = model.separator.not_causal()
    if why is None and not model.config.causal:
        why = "its config says causal: false"
    if why is not None:
        return f"{name}: not causal ({why}); train a causal model (conf/causal.yaml)"
    return None


def check_streamable(model: MaskingModel) -> None:
    """A one-line :class:`DnnsepError` if ``model`` cannot stream."""
    why = not_streamable(model)
    if why is not None:
        raise DnnsepError(why)


class StreamingSeparator:
    """Separate a stream pushed in blocks of any size; the output equals ``model(x)`` on the whole input.

    After pushing n samples in all, ``max(0, n - latency)`` samples per source have been returned;
    :meth:`flush` returns the rest, so the outputs concatenated have the input's length and equal the
    offline causal model's output (to float rounding).  Blocks are float (any dtype, cast to float32)
    or int16 (scaled by 1/32768).  Runs on the model's device, in inference mode; the model is not
    changed (call ``model.eval()`` first if it has dropout, as for offline use).

    Shape: push: block (samples,) -> (n_sources, samples) float32; flush: () -> (n_sources, the rest).
    """

    def __init__(self, model: MaskingModel):
        check_streamable(model)
        self.model = model
        config = model.config
        self.kernel_size, self.stride = config.kernel_size, config.stride
        self.n_sources, self.sample_rate = config.n_sources, config.sample_rate
        self.latency = int(config.latency)  # samples from a sample's arrival to its output; fixed
        self.reset()

    def reset(self) -> None:
        """Start a new stream (the model's state and all buffers forgotten)."""
        self.masker: MaskerStream = self.model.separator.stream()
        front = self.kernel_size - self.stride  # pad_signal()'s front padding
        self._samples = np.zeros(front, np.float32)  # padded input from the next frame's first sample
        self._skip = front  # decoded samples still to drop (the front padding)
        self._frames = None  # encoder frames whose masks are not yet back: (1, n_filters, frames)
        self._tail = None  # decoder output past the last decoded frame's hop: (n_sources, kernel - stride)
        self._ready = np.zeros((self.n_sources, 0), np.float32)  # final output not yet emitted
        self.pushed = self.emitted = 0  # samples in, samples out (per source)
        self.counts = {"encoded_frames": 0, "decoded_frames": 0}
        self._done = False

    @property
    def work(self) -> dict[str, int]:
        """Frames encoded and decoded, and the masker's counts (its chunks...), since :meth:`reset`."""
        return {**self.counts, **self.masker.counts}

    def push(self, block) -> np.ndarray:
        """Take the next input samples; return the output samples due (all but the last ``latency`` in)."""
        if self._done:
            raise DnnsepError("push() after flush(): call reset() to start a new stream")
        x = mono_block(block)
        self.pushed += len(x)
        self._samples = np.concatenate([self._samples, x]) if len(self._samples) else x
        if len(self._samples) >= self.kernel_size:
            with torch.inference_mode():
                self._advance()
        return self._emit(self.pushed - self.latency)

    def flush(self) -> np.ndarray:
        """End the stream: the output samples not yet returned (``latency`` of them, fewer if fewer came in)."""
        if self._done:
            raise DnnsepError("flush() twice: call reset() to start a new stream")
        self._done = True
        if self.pushed == 0:
            return self._ready
        # pad_signal()'s back padding: frames tile the padded signal exactly
        front = self.kernel_size - self.stride
        rest = (self.pushed + 2 * front - self.kernel_size) % self.stride
        back = front + (self.stride - rest) % self.stride
        self._samples = np.concatenate([self._samples, np.zeros(back, np.float32)])
        with torch.inference_mode():
            self._advance()
            self._decode(self.masker.flush())
        return self._emit(self.pushed)

    def _advance(self) -> None:
        """Encode every whole frame in the buffer, pass them to the masker, decode the masks it returns."""
        kernel, stride = self.kernel_size, self.stride
        n = (len(self._samples) - kernel) // stride + 1 if len(self._samples) >= kernel else 0
        if n == 0:
            return
        used = torch.from_numpy(self._samples[: (n - 1) * stride + kernel]).to(self.model.device)
        self._samples = self._samples[n * stride :]
        w = self.model.encoder(used[None])  # (1, n_filters, n)
        self.counts["encoded_frames"] += n
        self._frames = w if self._frames is None else torch.cat([self._frames, w], dim=-1)
        self._decode(self.masker.push(w))

    def _decode(self, masks: torch.Tensor) -> None:
        """Mask the oldest frames, decode them, overlap-add with the carried tail; keep the final samples.

        Shape: masks (1, n_sources, n_filters, m) for the oldest m frames not yet decoded.
        """
        m = masks.shape[-1]
        if m == 0:
            return
        w, self._frames = self._frames[..., :m], self._frames[..., m:]
        masked = (masks * w.unsqueeze(1)).flatten(0, 1)  # (n_sources, n_filters, m)
        out = self.model.decoder(masked)  # (n_sources, (m - 1) * stride + kernel)
        overlap = self.kernel_size - self.stride
        if self._tail is not None:
            out[:, :overlap] += self._tail
        final = m * self.stride  # no later frame reaches these samples
        self._tail = out[:, final:].clone()
        self.counts["decoded_frames"] += m
        done = out[:, :final].cpu().numpy()
        skip = min(self._skip, done.shape[1])
        self._skip -= skip
        self._ready = np.concatenate([self._ready, done[:, skip:]], axis=1)

    def _emit(self, upto: int) -> np.ndarray:
        """The output samples ``emitted .. upto`` (none if upto <= emitted)."""
        n = min(upto, self.pushed) - self.emitted
        if n <= 0:
            return np.zeros((self.n_sources, 0), np.float32)
        if n > self._ready.shape[1]:
            raise RuntimeError(
                f"{type(self.masker).__name__} lags more than the model's latency ({self.latency} samples): "
                f"{n} samples due, {self._ready.shape[1]} ready"
            )
        out, self._ready = self._ready[:, :n], self._ready[:, n:]
        self.emitted += n
        return np.ascontiguousarray(out)


def guard_mps_stream(model: MaskingModel) -> MaskingModel:
    """``model``, or a CPU copy where its streaming pass on MPS fails or disagrees with the CPU's (checked once
    per architecture, on a fixed input pushed in 20-ms blocks; see :func:`dnnsep.device.guard_mps`)."""
    from .device import guard_mps

    return guard_mps(model, forward=_stream_forward, what="the live stream")[0]


def _stream_forward(model: MaskingModel, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` (1, time) pushed through a :class:`StreamingSeparator` of ``model`` in 20-ms blocks; float32 on the CPU."""
    engine = StreamingSeparator(model.eval())
    samples, block = x[0].numpy(), max(1, engine.sample_rate // 50)
    pieces = [engine.push(samples[i : i + block]) for i in range(0, len(samples), block)] + [engine.flush()]
    return torch.from_numpy(np.concatenate(pieces, axis=1))[None]
