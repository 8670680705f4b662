"""Audio files in and out, and band-limited resampling.

- :func:`read_audio` reads anything libsndfile reads (WAV 16/24/32-bit and float, FLAC, OGG, AIFF,
  ...), downmixes to mono (saying so with a :class:`DownmixWarning`) and resamples on request.
  Missing, empty, corrupt, too short or non-finite input is a one-line :class:`~dnnsep.errors.AudioError`.
- :func:`write_wav` writes 16-bit PCM atomically (a temporary file, then a rename);
  :func:`write_wavs` writes several files all or nothing.
- :func:`resample` is a windowed-sinc (Kaiser) resampler for any rational rate ratio ``L/M``, run
  as a polyphase strided convolution: ``L`` phase filters, one output frame of ``L`` samples per
  ``M`` input samples.  Its cutoff is ``rolloff`` times the lower Nyquist frequency, so nothing
  above the new Nyquist frequency aliases (stopband below -85 dB with the defaults).

>>> import numpy as np
>>> x = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)  # 1 s at 44.1 kHz
>>> y = resample(x, 44100, 16000)
>>> y.shape, y.dtype  # (time,) -> (ceil(time * 16000 / 44100),)
((16000,), dtype('float32'))
>>> bool(np.abs(y[200:-200] - np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)[200:-200]).max() < 1e-3)
True
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from .checkpoint import create_temporary
from .errors import AudioError

# Extensions that directory scans pick up (anything libsndfile reads may still be passed by name).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".caf", ".w64", ".mp3")

_MAX_PHASE_WEIGHTS = 1 << 22  # L * taps above this: evaluate the filter per output instead of a table
_SUBPHASES = 4096  # filter table resolution (positions per input sample) for large-L ratios
_BLOCK_ELEMENTS = 1 << 22  # input (or output) samples per block: bounds the resampler's working memory


class DownmixWarning(UserWarning):
    """A multi-channel file was averaged to mono."""


# -- reading and writing -----------------------------------------------------------------------


def mono_block(block) -> np.ndarray:
    """A block of a live stream as float32 samples: float as it is, int16 scaled by 1/32768.

    Shape: (samples,) -> (samples,); anything else is refused in one line.
    """
    x = np.asarray(block)
    if x.ndim != 1:
        raise AudioError(f"a block must be mono samples (samples,), got shape {x.shape}")
    return x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32, copy=False)


def read_audio(
    path: str | os.PathLike, *, sample_rate: int | None = None, mono: bool = True, min_seconds: float = 0.0
) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 in [-1, 1] (integer formats) and return ``(audio, rate)``.

    ``mono=True`` averages the channels (with a :class:`DownmixWarning` naming the file when there
    were several); ``sample_rate`` resamples to that rate (the returned rate); files shorter than
    ``min_seconds`` (and empty ones) are refused.

    Shape: mono -> (time,); ``mono=False`` -> (channels, time).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")
    try:
        with sf.SoundFile(path) as f:
            rate, channels = f.samplerate, f.channels
            if mono and channels > 1:  # average block by block: never holds all channels at once
                blocks = [b.mean(axis=1) for b in f.blocks(blocksize=1 << 18, dtype="float32", always_2d=True)]
                audio = np.concatenate(blocks)[None] if blocks else np.zeros((1, 0), np.float32)
            else:
                audio = f.read(dtype="float32", always_2d=True).T  # (channels, time)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    audio = np.ascontiguousarray(audio, dtype=np.float32)  # (channels, time)
    if audio.shape[-1] == 0:
        raise AudioError(f"{path}: holds no audio samples (empty)")
    seconds = audio.shape[-1] / rate
    if seconds < min_seconds:
        raise AudioError(f"{path}: too short ({seconds:.3f} s; at least {min_seconds:g} s needed)")
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: holds NaN or infinite samples")
    if mono and channels > 1:
        warnings.warn(f"{path}: {channels} channels downmixed to mono (channel average)", DownmixWarning, stacklevel=2)
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return (audio[0] if mono else audio), rate


def write_wav(path: str | os.PathLike, audio: np.ndarray | torch.Tensor, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically (a temporary file beside ``path``, then a rename).

    Samples beyond [-1, 1) are clipped (scale first, see :func:`dnnsep.inference.scale_estimates`);
    ``x * 32768`` is rounded, so 16-bit audio read by :func:`read_audio` is written back bit-exactly.

    Shape: audio (time,) or (channels, time).
    """
    write_wavs({path: audio}, sample_rate)


def write_wavs(files: Mapping[str | os.PathLike, np.ndarray | torch.Tensor], sample_rate: int) -> None:
    """Write several WAV files (as :func:`write_wav`) all or nothing: every file is written to a
    temporary name first, and only when all are complete are they renamed into place.

    Shape: each audio (time,) or (channels, time).
    """
    frames = {Path(p): _pcm16(p, a) for p, a in files.items()}  # check everything before writing anything
    staged: dict[Path, str] = {}
    try:
        for path, pcm in frames.items():
            data = io.BytesIO()  # encoded in memory: a full disk is then a plain OSError from write()
            sf.write(data, pcm, int(sample_rate), subtype="PCM_16", format="WAV")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = create_temporary(path)  # .<name>.<host>-<pid>-<hex>.tmp, mode 0666 under the umask
            staged[path] = tmp
            with open(tmp, "wb") as f:
                f.write(data.getbuffer())
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in staged.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in staged.values():
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def _pcm16(path: str | os.PathLike, audio: np.ndarray | torch.Tensor) -> np.ndarray:
    """Float audio to int16 frames for soundfile.  Shape: (time,) or (channels, time) -> (time,) or (time, channels)."""
    a = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[0] > 64):
        raise ValueError(f"{path}: audio must be (time,) or (channels, time), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise AudioError(f"{path}: refusing to write NaN or infinite samples")
    scaled = a * np.float32(32768) if a.dtype == np.float32 else a.astype(np.float64) * 32768  # exact: a power of 2
    pcm = np.clip(np.round(scaled, out=scaled), -32768, 32767).astype(np.int16)
    return pcm.T if pcm.ndim == 2 else pcm


# -- resampling --------------------------------------------------------------------------------


def resample(
    x: np.ndarray | torch.Tensor,
    orig_sr: int,
    new_sr: int,
    *,
    rolloff: float = 0.9,
    zero_crossings: int = 32,
    beta: float = 8.6,
) -> np.ndarray | torch.Tensor:
    """Resample the last axis from ``orig_sr`` to ``new_sr`` Hz with a Kaiser-windowed sinc.

    Output sample ``n`` sits at input time ``n * orig_sr / new_sr``; the signal is taken as zero
    outside the input, and the output has ``ceil(time * new_sr / orig_sr)`` samples.  The lowpass
    cutoff is ``rolloff * min(orig_sr, new_sr) / 2``; the filter spans ``zero_crossings`` zero
    crossings on each side (longer: sharper transition); ``beta`` sets the Kaiser window (8.6:
    about -85 dB sidelobes).  Returns the same kind (numpy array or tensor) as given, float32
    (a tensor keeps its device).

    Shape: (..., time) -> (..., ceil(time * new_sr / orig_sr)).
    """
    if int(orig_sr) != orig_sr or int(new_sr) != new_sr or orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} and {new_sr}")
    if not 0 < rolloff <= 1 or zero_crossings < 1:
        raise ValueError(f"need 0 < rolloff <= 1 and zero_crossings >= 1, got {rolloff}, {zero_crossings}")
    is_numpy = not isinstance(x, torch.Tensor)
    t = torch.from_numpy(np.asarray(x, dtype=np.float32)) if is_numpy else x.float()
    if t.dim() == 0:
        raise ValueError("resample needs at least one axis (time)")
    g = math.gcd(int(orig_sr), int(new_sr))
    up, down = int(new_sr) // g, int(orig_sr) // g  # L, M
    if up == down:
        return np.array(x, dtype=np.float32) if is_numpy else t.clone()
    lead, n_in = t.shape[:-1], t.shape[-1]
    rows = t.reshape(math.prod(lead), n_in)  # (channels, time)
    n_out = -(-n_in * up // down)  # ceil
    cutoff = rolloff * min(1.0, up / down)  # in units of the input's Nyquist frequency
    half = zero_crossings / cutoff  # filter half-length in input samples
    if n_in == 0:
        y = rows.new_zeros(rows.shape[0], 0)
    elif up * (down + 2 * math.floor(half) + 1) <= _MAX_PHASE_WEIGHTS:
        y = _polyphase(rows, up, down, n_out, cutoff, half, beta)
    else:  # awkward ratios (e.g. 44100 -> 16001): a per-output filter, no L-phase table
        y = _direct(rows, up, down, n_out, cutoff, half, beta)
    y = y.reshape(*lead, n_out)
    return y.cpu().numpy() if is_numpy else y


class StreamResampler:
    """:func:`resample` over a stream that arrives in blocks: the same samples, block by block.

    :meth:`push` returns the output samples whose filter window the input received so far covers
    (each output lags its input by the filter's half-length, :attr:`delay` input samples: about 2 ms
    at 16 kHz); :meth:`flush`, at the end of the stream, the rest, the input taken as zero after its
    end as :func:`resample` takes it.  Concatenated, the outputs equal :func:`resample` of the whole
    stream (to float rounding).  Memory stays bounded: only the input the next outputs need is kept.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(4800).astype(np.float32)
    >>> stream = StreamResampler(48000, 16000)
    >>> y = np.concatenate([stream.push(x[i : i + 480]) for i in range(0, 4800, 480)] + [stream.flush()])
    >>> y.shape, bool(np.abs(y - resample(x, 48000, 16000)).max() < 1e-5)
    ((1600,), True)
    """

    def __init__(self, orig_sr: int, new_sr: int, **options: float):
        resample(np.zeros(1, np.float32), orig_sr, new_sr, **options)  # checks the rates and options
        self.orig_sr, self.new_sr, self.options = int(orig_sr), int(new_sr), options
        g = math.gcd(self.orig_sr, self.new_sr)
        self.up, self.down = self.new_sr // g, self.orig_sr // g
        cutoff = options.get("rolloff", 0.9) * min(1.0, self.up / self.down)
        self.delay = math.ceil(options.get("zero_crossings", 32) / cutoff) + 1  # input samples each output reads
        self.buffer = np.zeros(0, np.float32)
        self.start = 0  # the stream index of buffer[0], a multiple of ``down``
        self.received = 0  # input samples so far
        self.sent = 0  # output samples so far

    def push(self, block: np.ndarray) -> np.ndarray:
        """Shape: block (samples,) float -> (samples out,) float32."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, block])
        self.received += len(block)
        last = self.received - 1 - self.delay  # the latest input time an output may sit at
        return self._emit(-1 if last < 0 else last * self.up // self.down + 1)

    def flush(self) -> np.ndarray:
        """The outputs left at the end of the stream; the resampler then starts a new stream."""
        out = self._emit(-(-self.received * self.up // self.down))
        self.__init__(self.orig_sr, self.new_sr, **self.options)
        return out

    def _emit(self, end: int) -> np.ndarray:
        """Outputs ``sent .. end - 1``, from the buffer (taken as zero around it, as resample takes its input)."""
        if end <= self.sent or not len(self.buffer):
            return np.zeros(0, np.float32)
        if self.up == self.down:
            y = self.buffer
        else:
            y = resample(self.buffer, self.orig_sr, self.new_sr, **self.options)
        first = self.start * self.up // self.down  # the stream index of y[0]
        out = np.array(y[self.sent - first : end - first], dtype=np.float32)
        self.sent = end
        keep = max(self.start, (self.sent * self.down // self.up - self.delay) // self.down * self.down)
        self.buffer, self.start = self.buffer[keep - self.start :], keep
        return out


def _kernel(t: torch.Tensor, cutoff: float, half: float, beta: float) -> torch.Tensor:
    """Lowpass impulse response at input-sample offsets ``t`` (float64), zero for ``|t| > half``.

    ``cutoff * sinc(cutoff * t)`` has unit DC gain and passes up to ``cutoff`` x the input's Nyquist.
    """
    r = (t / half).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - r * r)) / torch.special.i0(torch.tensor(beta, dtype=t.dtype))
    return torch.where(t.abs() <= half, cutoff * torch.sinc(cutoff * t) * window, torch.zeros_like(t))


def _polyphase(x: torch.Tensor, up: int, down: int, n_out: int, cutoff: float, half: float, beta: float):
    """``y[q*L + p] = sum_j x[q*M + j] h(p*M/L - j)``: one strided conv1d with ``L`` output channels.

    Shape: x (channels, time) -> (channels, n_out).
    """
    lo = -math.floor(half)  # first input offset j any phase needs
    hi = math.floor((up - 1) * down / up + half)  # last one
    taps = hi - lo + 1
    phase = torch.arange(up, dtype=torch.float64) * down / up  # (L,) phase positions in input samples
    offsets = phase[:, None] - torch.arange(lo, hi + 1, dtype=torch.float64)  # (L, taps)
    weight = _kernel(offsets, cutoff, half, beta).to(x)[:, None, :]  # (L, 1, taps)
    frames = -(-n_out // up)  # output frames of L samples
    need = (frames - 1) * down + taps  # padded input length the last frame reads
    padded = F.pad(x, (-lo, max(0, need - x.shape[-1] + lo)))[:, None, :]  # (channels, 1, padded time)
    step = max(1, min(_BLOCK_ELEMENTS // down, _BLOCK_ELEMENTS // up))  # frames per block (bounded memory)
    out = []
    for f0 in range(0, frames, step):
        f1 = min(frames, f0 + step)
        seg = padded[..., f0 * down : (f1 - 1) * down + taps]
        out.append(F.conv1d(seg, weight, stride=down))  # (channels, L, f1 - f0)
    y = torch.cat(out, dim=-1).transpose(1, 2).reshape(x.shape[0], -1)  # (channels, frames * L)
    return y[:, :n_out]


def _direct(x: torch.Tensor, up: int, down: int, n_out: int, cutoff: float, half: float, beta: float):
    """Each output ``n`` from the inputs within ``half`` of its time ``n*M/L``, for ratios with a large ``L``.

    The filter at the output's fractional position comes from a table of ``_SUBPHASES`` positions
    per input sample, linearly interpolated (error below 1e-6 of full scale).

    Shape: x (channels, time) -> (channels, n_out).
    """
    reach = math.floor(half) + 1
    taps = 2 * reach + 1
    padded = F.pad(x, (reach, reach + 1))  # (channels, time + taps)
    windows = padded.unfold(-1, taps, 1)  # (channels, time + 1, taps), a view: row b is x[b - reach : b + reach + 1]
    grid = torch.arange(_SUBPHASES + 1, dtype=torch.float64) / _SUBPHASES  # (R + 1,) positions in [0, 1]
    j = torch.arange(-reach, reach + 1, dtype=torch.float64)  # (taps,)
    table = _kernel(grid[:, None] - j, cutoff, half, beta).to(x)  # (R + 1, taps)
    step = max(1, _BLOCK_ELEMENTS // (taps * x.shape[0]))
    out = []
    for n0 in range(0, n_out, step):
        n = torch.arange(n0, min(n_out, n0 + step), dtype=torch.int64)
        base = n * down // up  # integer part of the output's input time
        pos = (n * down % up).double() * (_SUBPHASES / up)  # fractional part, in table steps
        k = pos.long().clamp(max=_SUBPHASES - 1)
        a = (pos - k).to(x)[:, None]
        w = table[k] * (1 - a) + table[k + 1] * a  # (block, taps)
        out.append((windows[:, base] * w).sum(-1))  # (channels, block)
    return torch.cat(out, dim=-1)
