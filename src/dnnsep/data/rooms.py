"""Reverberation: one microphone in a simulated shoebox room, or measured impulse responses.

Simulated rooms use pyroomacoustics (``pip install 'dnnsep[rooms]'``): a well-kept image-source
implementation with ``inverse_sabine`` to size it from a target RT60, faster and better tested than
code written here.  The absorption is Eyring's inverse rather than Sabine's (which ``inverse_sabine``
returns): image sources decay at Eyring's rate, so Sabine's absorption makes dry rooms measure drier
than asked.  The images run up to the order that covers the direct path plus :data:`EARLY_S` from
anywhere in the room (milliseconds); after that the response is Gaussian noise decaying by 60 dB in
``rt60`` seconds, at the level the images reach (the diffuse late model of gpuRIR, Diaz-Guerra et al.
2021), so a long RT60 costs no more than a short one.  Measured by Schroeder's T30, responses are
within 20% of ``rt60`` (within 12% from 0.2 s; below 0.15 s elongated rooms, whose images do not decay
exponentially, measure up to a third longer).

A room is a JSON-able dict, stored per mixture in a list or drawn per (seed, epoch, index)::

    {"size": [6.1, 4.8, 2.9], "rt60": 0.43, "mic": [3.0, 2.2, 1.4],
     "sources": [[1.2, 1.0, 1.6], [4.5, 3.3, 1.5]], "seed": 12345}

or, for measured responses, ``{"rirs": ["<file relative to rir_root>", ...], "rt60": <estimated>}``.

Each source ``k`` is convolved (FFT) with its own response ``h_k``; the mixture is the sum of the
reverberant sources.  The training target is the reverberant source (``reverb_target: reverberant``:
separation only), or ``direct``: the source convolved with ``h_k`` up to :data:`EARLY_S` after its
direct-path peak (direct path plus early reflections, as WHAMR!'s).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import DnnsepError
from .lists import Rng

SOUND_SPEED = 343.0  # m/s
EARLY_S = 0.050  # direct path plus early reflections: up to 50 ms after the direct-path peak
DIRECT_S = 0.0025  # the direct path's own spread: from 2.5 ms before its peak
TARGETS = ("reverberant", "direct")


@dataclass(frozen=True)
class RoomOptions:
    """Ranges rooms are drawn from (uniformly): RT60 in seconds, length/width/height in metres, and the
    least distance of any source from the walls and from the microphone."""

    rt60: tuple[float, float] = (0.1, 0.8)
    length: tuple[float, float] = (4.0, 10.0)
    width: tuple[float, float] = (3.0, 8.0)
    height: tuple[float, float] = (2.4, 3.5)
    min_distance: float = 0.5

    def __post_init__(self):
        lo, hi = self.rt60
        if not 0 < lo <= hi:
            raise DnnsepError(f"rt60 must be a range 0 < min <= max seconds, got {lo}..{hi}")
        for name in ("length", "width", "height"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise DnnsepError(f"room {name} must be a range 0 < min <= max metres, got {a}..{b}")
        room = min(self.length[0], self.width[0], self.height[0])
        if self.min_distance < 0 or room < 2 * self.min_distance + 0.1:
            raise DnnsepError(
                f"min_distance: a room {room:g} m across holds no source {self.min_distance:g} m from its walls; "
                "enlarge the room or lower min_distance"
            )


def _lazy_pra():
    try:
        import pyroomacoustics
    except ImportError:
        raise DnnsepError("simulated rooms need pyroomacoustics: pip install 'dnnsep[rooms]'") from None
    return pyroomacoustics


def draw_room(rng: Rng, n_sources: int, opts: RoomOptions) -> dict[str, Any]:
    """A room, a microphone and ``n_sources`` positions, each source ``opts.min_distance`` from the walls
    and from the microphone (redrawn until so; the microphone keeps that distance from the walls too)."""
    rt60 = round(rng.uniform(*opts.rt60), 3)
    for _ in range(100):  # a short RT60 needs a small room: walls absorb at most everything
        size = [round(rng.uniform(*r), 2) for r in (opts.length, opts.width, opts.height)]
        if sabine_absorption(size, rt60) < 1:
            break
    else:
        raise DnnsepError(f"rt60: {rt60:g} s needs a smaller room than {opts.length}x{opts.width}x{opts.height} m")
    d = opts.min_distance

    def point() -> list[float]:
        return [round(rng.uniform(d, s - d), 3) for s in size]

    mic = point()
    sources = []
    for _ in range(n_sources):
        for _ in range(1000):
            p = point()
            if math.dist(p, mic) >= d:
                break
        else:
            raise DnnsepError(f"min_distance: no place {d:g} m from the microphone in a {size} m room")
        sources.append(p)
    return {"size": size, "rt60": rt60, "mic": mic, "sources": sources,
            "seed": rng.below(2**31)}  # fmt: skip


def sabine_absorption(size: list[float], rt60: float) -> float:
    """The wall absorption coefficient that gives ``rt60`` in a room of ``size`` by Sabine's formula
    (what ``pyroomacoustics.inverse_sabine`` computes; above 1 the room cannot be that dry)."""
    lx, ly, lz = size
    volume, surface = lx * ly * lz, 2 * (lx * ly + lx * lz + ly * lz)
    return 24 * math.log(10) * volume / (SOUND_SPEED * surface * rt60)


def eyring_absorption(size: list[float], rt60: float) -> float:
    """The absorption by Eyring's formula, ``1 - exp(-sabine)``: image sources decay at Eyring's rate,
    which Sabine's overestimates in absorbent rooms (its rooms would measure drier than asked)."""
    return 1 - math.exp(-sabine_absorption(size, rt60))


def simulate(room: dict[str, Any], sample_rate: int) -> list[np.ndarray]:
    """The impulse response from each source of ``room`` to its microphone (see the module doc).

    Shape: -> n_sources arrays (taps,), float32, of about ``rt60`` seconds after the latest direct path.
    """
    pra = _lazy_pra()
    size, rt60 = room["size"], room["rt60"]
    _, sabine_order = pra.inverse_sabine(rt60, size)
    absorption = eyring_absorption(size, rt60)
    far = max(math.dist(s, room["mic"]) for s in room["sources"])
    reach = far + SOUND_SPEED * (EARLY_S + 0.02)  # metres the images must cover: direct path + early part
    order = max(1, min(sabine_order, math.ceil(reach / min(size)) + 1))
    sim = pra.ShoeBox(size, fs=sample_rate, materials=pra.Material(absorption), max_order=order, air_absorption=False)
    for s in room["sources"]:
        sim.add_source(s)
    sim.add_microphone(room["mic"])
    gen = np.random.default_rng(room["seed"])
    # the images are complete up to the time sound travels `order` times the smallest dimension
    complete = order * min(size) / SOUND_SPEED
    out = []
    for h in _compute_rir(pra, sim, sample_rate):
        h = np.asarray(h, dtype=np.float64)
        peak = direct_peak(h, sample_rate)
        out.append(_with_tail(h, peak, int(complete * sample_rate), rt60, sample_rate, gen).astype(np.float32))
    return out


def _compute_rir(pra, sim, sample_rate: int) -> list[np.ndarray]:
    """``sim.compute_rir()``'s responses to the first microphone, its high-pass filter (pyroomacoustics'
    ``rir_hpf_*`` constants) designed once per setting rather than once per room: the same arrays, about
    1 ms sooner per room.  The filter's switch is pyroomacoustics' global: off while ``compute_rir`` runs
    (a thread simulating rooms meanwhile would miss its filter; the data runs in one thread a process)."""
    enabled = pra.constants.get("rir_hpf_enable")
    pra.constants.set("rir_hpf_enable", False)
    try:
        sim.compute_rir()
    finally:
        pra.constants.set("rir_hpf_enable", enabled)
    if not enabled:
        return list(sim.rir[0])
    from scipy.signal import sosfiltfilt  # a dependency of pyroomacoustics

    kwargs = pra.constants.get("rir_hpf_kwargs")
    sos = _highpass(pra, sample_rate, pra.constants.get("rir_hpf_fc"), tuple(sorted(kwargs.items())))
    return [np.ascontiguousarray(sosfiltfilt(sos, h)) for h in sim.rir[0]]


@functools.lru_cache(maxsize=8)
def _highpass(pra, sample_rate: int, cutoff: float, kwargs: tuple) -> np.ndarray:
    return pra.utilities.design_highpass_filter_sos(sample_rate, cutoff, **dict(kwargs))


def _with_tail(h: np.ndarray, peak: int, join: int, rt60: float, sample_rate: int, gen) -> np.ndarray:
    """``h`` up to ``join`` (at least 60 ms after ``peak``), then noise decaying by 60 dB in ``rt60``, to
    ``rt60`` seconds past ``peak``, at the level ``h`` reaches from 20 ms after ``peak`` on (its energy
    there brought forward to ``join`` at that decay).

    Shape: (taps,) -> (taps',).
    """
    join = max(join, peak + int((EARLY_S + 0.01) * sample_rate))
    total = peak + int(rt60 * sample_rate) + 1
    h = np.pad(h, (0, max(0, join - len(h))))[:join]
    if join >= total:
        return h[:total]
    decay = 3 * math.log(10) / (rt60 * sample_rate)  # amplitude e-folding per sample: -60 dB in rt60
    start = peak + int(0.02 * sample_rate)  # the images' energy after the first reflections, brought
    t = np.arange(start - join, 0)  # forward to `join` at the target decay: the tail's level
    level = math.sqrt(float(np.mean(np.square(h[start:join]) * np.exp(2 * decay * t))))
    tail = gen.standard_normal(total - join) * level * np.exp(-decay * np.arange(total - join))
    return np.concatenate([h, tail])


def direct_peak(h: np.ndarray, sample_rate: int) -> int:
    """The direct path's peak: the largest sample within 1 ms of the first one at half the maximum (a
    reflection's images can add up above the direct path when source or microphone is near a wall)."""
    a = np.abs(h)
    first = int(np.argmax(a >= 0.5 * a.max()))
    return first + int(np.argmax(a[first : first + int(0.001 * sample_rate) + 1]))


def early_part(h: np.ndarray, sample_rate: int) -> np.ndarray:
    """``h`` from :data:`DIRECT_S` before its direct-path peak (:func:`direct_peak`) to :data:`EARLY_S`
    after it, zero elsewhere.  Shape: (taps,) -> (taps,)."""
    peak = direct_peak(h, sample_rate)
    out = np.zeros_like(h)
    lo, hi = max(0, peak - int(DIRECT_S * sample_rate)), peak + int(EARLY_S * sample_rate) + 1
    out[lo:hi] = h[lo:hi]
    return out


@functools.lru_cache(maxsize=4096)
def fast_length(n: int) -> int:
    """The least ``m >= n`` whose only prime factors are 2, 3 and 5 (fast FFT sizes).

    >>> fast_length(28801), fast_length(16)
    (29160, 16)
    """
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35 * (1 << max(0, (-(-n // p35) - 1).bit_length()))  # the least p35 * 2**k >= n
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def convolve(x: np.ndarray, h: np.ndarray, frames: int | None = None) -> np.ndarray:
    """``(x * h)[:frames]`` by FFT (``frames``: ``len(x)`` by default).  Shape: (n,), (taps,) -> (frames,)."""
    frames = len(x) if frames is None else frames
    size = fast_length(len(x) + len(h) - 1)
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:frames].astype(np.float32)


def reverberate(
    sources: np.ndarray, rirs: list[np.ndarray], *, target: str, sample_rate: int, spectra: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(reverberant, targets)``: each source convolved with its response, and its target (itself for
    ``reverberant``, its early part for ``direct``), both scaled so the reverberant source keeps the dry
    one's RMS (the list's gains hold).  ``spectra``: a cache of the responses' FFTs (by id and size).

    Shape: sources (n_sources, time) -> (n_sources, time), (n_sources, time).
    """
    if target not in TARGETS:
        raise DnnsepError(f"reverb_target must be one of {', '.join(TARGETS)}, got {target!r}")
    if len(rirs) != len(sources):
        raise DnnsepError(f"{len(rirs)} impulse responses for {len(sources)} sources")
    spectra = {} if spectra is None else spectra
    frames = sources.shape[-1]
    wet, tgt = [], []
    for x, h in zip(sources, rirs):
        size = fast_length(frames + len(h) - 1)
        key = (id(h), size, target)  # the cache holds h too: its id is not reused meanwhile
        if key not in spectra:
            early = early_part(h, sample_rate) if target == "direct" else None
            spectra[key] = (h, _spectrum(h, size), None if early is None else _spectrum(early, size))
        _, H, E = spectra[key]
        X = np.fft.rfft(x.astype(np.float32, copy=False), size)  # float32 FFTs in numpy 2: 0.8x the time
        y = np.fft.irfft(X * H, size)[:frames]
        scale = np.float32(_rms(x) / max(_rms(y), 1e-12))
        wet.append(y.astype(np.float32, copy=False) * scale)
        tgt.append(wet[-1] if E is None else np.fft.irfft(X * E, size)[:frames].astype(np.float32, copy=False) * scale)
    return np.stack(wet), np.stack(tgt)


def _spectrum(h: np.ndarray, size: int) -> np.ndarray:
    return np.fft.rfft(h.astype(np.float32, copy=False), size)  # complex64 (numpy 2; numpy 1: complex128)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# -- measured impulse responses ----------------------------------------------------------------


def rir_files(root: str | os.PathLike, sample_rate: int) -> list[str]:
    """The ``*.wav`` files under ``root`` (sorted, relative POSIX paths); one-line errors name ``rir_root``."""
    root = Path(root)
    if not root.is_dir():
        raise DnnsepError(f"rir_root {root}: no such folder")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.wav"))
    if not files:
        raise DnnsepError(f"rir_root {root}: holds no .wav impulse responses")
    return files


def read_rir(root: str | os.PathLike, name: str, sample_rate: int) -> np.ndarray:
    """A measured response (first channel, peak-normalised).  Shape: -> (taps,), float32."""
    path = Path(root) / name
    try:
        h, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise DnnsepError(f"rir_root: {path}: unreadable ({str(err).strip()[:120]})") from None
    if rate != sample_rate:
        raise DnnsepError(f"rir_root: {path} is at {rate} Hz, the data at {sample_rate} Hz; resample it")
    h = h[:, 0]
    return h / max(float(np.abs(h).max()), 1e-12)


def draw_measured(rng: Rng, n_sources: int, files: list[str]) -> dict[str, Any]:
    """One response per source, distinct where there are enough files."""
    picks = rng.sample(files, n_sources) if len(files) >= n_sources else [rng.choice(files) for _ in range(n_sources)]
    return {"rirs": picks}


def decay_time(h: np.ndarray, sample_rate: int) -> float:
    """RT60 estimated from ``h`` by Schroeder's backward integration, the -5..-25 dB slope (T20) times 3."""
    energy = np.cumsum(np.square(h[::-1], dtype=np.float64))[::-1]
    db = 10 * np.log10(np.maximum(energy / energy[0], 1e-30))
    i5, i25 = int(np.argmax(db <= -5)), int(np.argmax(db <= -25))
    if i25 <= i5:
        return float("nan")
    slope = np.polyfit(np.arange(i5, i25) / sample_rate, db[i5:i25], 1)[0]  # dB per second
    return float(-60 / slope)
