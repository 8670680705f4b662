"""A small synthetic corpus in LibriSpeech's exact layout, for tests, demos and benchmarks.

The audio is speech-like rather than noise: each speaker has their own pitch, vocal-tract length
(formant scale), speaking rate and brightness; an utterance is words of 1-3 syllables, each a
voiced vowel (harmonics of a gliding f0, shaped by three formant resonances) with an optional
fricative onset (band-passed noise), separated by short pauses and longer phrase breaks.  Voices
differ enough that a separation model can learn to tell them apart.  NumPy only.

>>> audio = synthesize(np.random.default_rng(0), make_voices(np.random.default_rng(0), 1)[0], 8000, 16000)
>>> audio.shape, audio.dtype, bool(0.001 < np.sqrt(np.mean(audio ** 2)) < 0.2)
((8000,), dtype('float32'), True)
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DnnsepError
from .download import md5sum

SUBSETS = ("train-clean-100", "dev-clean", "test-clean")
# (F1, F2, F3) in Hz of ten English vowels for an adult male voice (Peterson & Barney, 1952).
VOWELS = np.array(
    [[270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
     [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [640, 1190, 2390], [490, 1350, 1690]],
    dtype=np.float64,
)  # fmt: skip
BANDWIDTHS = np.array([80.0, 110.0, 160.0])  # formant bandwidths in Hz
CONTROL = 32  # samples between updates of the harmonic weights (2 ms at 16 kHz)
LETTERS = ("EE", "I", "E", "A", "AH", "AW", "OO", "U", "UH", "ER")  # vowel spellings for the transcripts
ONSETS = "BDFGKLMNPRSTVZ"


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: mean pitch (Hz), formant scale, syllables per second, spectral tilt (dB/octave)."""

    f0: float
    formant_scale: float
    rate: float
    tilt_db: float
    sex: str


def make_voices(rng: np.random.Generator, n: int) -> list[Voice]:
    """``n`` voices with pitches spread over 85-255 Hz (log-spaced, jittered, shuffled), so all differ."""
    f0s = np.geomspace(85.0, 255.0, n) * rng.uniform(0.97, 1.03, n) if n > 1 else rng.uniform(85.0, 255.0, 1)
    voices = []
    for f0 in rng.permutation(f0s):
        scale = float(np.clip((f0 / 120.0) ** 0.3 * rng.uniform(0.95, 1.05), 0.85, 1.3))  # higher voice, shorter tract
        voices.append(Voice(float(f0), scale, float(rng.uniform(3.0, 5.5)), float(rng.uniform(-12, -6)),
                            "F" if f0 > 165 else "M"))  # fmt: skip
    return voices


def synthesize(rng: np.random.Generator, voice: Voice, frames: int, sample_rate: int) -> np.ndarray:
    """One utterance of ``frames`` samples in ``voice``.  Shape: (frames,), float32, RMS -32..-20 dBFS."""
    f0 = np.zeros(frames)  # per-sample pitch; 0 where unvoiced
    formants = np.tile(VOWELS[8] * voice.formant_scale, (frames, 1))  # (frames, 3)
    envelope = np.zeros(frames)
    noise_env = np.zeros(frames)
    t = int(rng.uniform(0.08, 0.25) * sample_rate)  # leading silence
    end = frames - int(0.1 * sample_rate)
    phrase_f0 = voice.f0 * rng.uniform(1.0, 1.15)
    while t < end:
        for _ in range(int(rng.integers(1, 4))):  # syllables of one word
            n = int(sample_rate / voice.rate * rng.uniform(0.7, 1.3))
            if rng.random() < 0.5:  # fricative onset
                m = min(int(rng.uniform(0.03, 0.08) * sample_rate), end - t)
                if m > 0:
                    noise_env[t : t + m] = np.hanning(m) * rng.uniform(0.05, 0.2)
                t += max(m, 0)
            n = min(n, end - t)
            if n <= 0:
                break
            envelope[t : t + n] = _tukey(n, int(0.04 * sample_rate)) * rng.uniform(0.6, 1.0)
            glide = np.linspace(rng.uniform(0.95, 1.1), rng.uniform(0.85, 1.0), n)  # a falling accent
            f0[t : t + n] = phrase_f0 * glide * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sample_rate))
            formants[t : t + n] = VOWELS[rng.integers(len(VOWELS))] * voice.formant_scale * rng.uniform(0.95, 1.05)
            t += n
        phrase_f0 *= 0.97  # declination
        if rng.random() < 0.2:  # phrase break: long pause, pitch reset
            t += int(rng.uniform(0.2, 0.4) * sample_rate)
            phrase_f0 = voice.f0 * rng.uniform(1.0, 1.15)
        else:
            t += int(rng.uniform(0.02, 0.1) * sample_rate)
    formants = _smooth(formants, int(0.02 * sample_rate))  # 20 ms formant transitions
    voiced = _harmonics(f0, formants, voice.tilt_db, sample_rate, rng) * envelope
    audio = voiced / (np.sqrt(np.mean(voiced**2)) + 1e-9) + _fricatives(noise_env, sample_rate, rng)
    audio += 1e-3 * rng.standard_normal(frames)  # room noise floor, ~-60 dB under the speech
    level = 10 ** (rng.uniform(-32.0, -20.0) / 20)
    audio *= level / (np.sqrt(np.mean(audio**2)) + 1e-9)
    return np.clip(audio, -0.99, 0.99).astype(np.float32)


def _harmonics(f0: np.ndarray, formants: np.ndarray, tilt_db: float, sample_rate: int, rng) -> np.ndarray:
    """Sum of harmonics ``k * f0(t)`` weighted by formant resonances.  Shape: (frames,) -> (frames,).

    Only voiced samples are computed; the harmonic weights (slowly varying) are evaluated every
    ``CONTROL`` samples, and ``exp(i k phase)`` is built by repeated multiplication instead of ``sin``.
    """
    out = np.zeros(len(f0))
    voiced = np.flatnonzero(f0 > 0)
    if not len(voiced):
        return out
    phase = (2 * np.pi / sample_rate * np.cumsum(f0))[voiced]  # (voiced,)
    f0_ctrl, formants_ctrl = f0[voiced][::CONTROL], formants[voiced][::CONTROL]  # (ctrl,), (ctrl, 3)
    rotor = np.exp(1j * phase)  # (voiced,)
    harmonic = np.ones_like(rotor)
    acc = np.zeros(len(voiced))
    for k in range(1, int(min(4000.0, 0.45 * sample_rate) / max(float(f0_ctrl.min()), 60.0)) + 1):
        harmonic *= rotor  # exp(i k phase)
        freq = k * f0_ctrl
        gain = sum(1 / (1 + ((freq - formants_ctrl[:, i]) / (BANDWIDTHS[i] / 2)) ** 2) / (i + 1) for i in range(3))
        gain *= 10 ** (tilt_db * np.log2(k) / 20) * (freq < 0.45 * sample_rate)
        offset = rng.uniform(0, 2 * np.pi)
        acc += np.repeat(gain, CONTROL)[: len(voiced)] * (
            harmonic.imag * np.cos(offset) + harmonic.real * np.sin(offset)
        )
    out[voiced] = acc
    return out


def _tukey(n: int, ramp: int) -> np.ndarray:
    """Ones with raised-cosine ramps of ``ramp`` samples at both ends (no clicks).  Shape: (n,)."""
    ramp = max(1, min(ramp, n // 2))
    window = np.ones(n)
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    window[:ramp], window[n - ramp :] = rise, rise[::-1]
    return window


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` samples along axis 0 (edges use the edge value).  Shape kept."""
    padded = np.concatenate([np.repeat(x[:1], width // 2, 0), x, np.repeat(x[-1:], width - width // 2, 0)])
    cumsum = np.concatenate([np.zeros_like(x[:1]), np.cumsum(padded, axis=0)])
    return (cumsum[width:] - cumsum[:-width])[: len(x)] / width


def _fricatives(noise_env: np.ndarray, sample_rate: int, rng) -> np.ndarray:
    """White noise band-passed to 2.5-7 kHz, shaped by ``noise_env``.  Shape: (frames,)."""
    spectrum = np.fft.rfft(rng.standard_normal(len(noise_env)))
    freqs = np.fft.rfftfreq(len(noise_env), 1 / sample_rate)
    spectrum *= (freqs > 2500) & (freqs < 7000)
    noise = np.fft.irfft(spectrum, n=len(noise_env))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-9) * noise_env


def make_corpus(
    root: str | os.PathLike,
    *,
    subsets: Sequence[str] = SUBSETS,
    n_speakers: int = 8,
    utts_per_speaker: int = 3,
    seconds: float | tuple[float, float] = (4.0, 6.0),
    seed: int = 0,
    sample_rate: int = 16000,
) -> Path:
    """Write ``<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` (+ ``*.trans.txt``,
    ``SPEAKERS.TXT``) and return ``<root>/LibriSpeech``: what ``prepare --librispeech_root`` takes.

    Speakers differ between subsets (ids ``1000+`` in the first subset, ``2000+`` in the second, ...),
    as in LibriSpeech.  Utterance lengths are uniform in ``seconds`` (a range, or one value).
    """
    if not 1 <= n_speakers <= 999 or utts_per_speaker < 1:
        raise DnnsepError(
            f"need 1 <= n_speakers <= 999 and utts_per_speaker >= 1, got {n_speakers}, {utts_per_speaker}"
        )
    low, high = (seconds, seconds) if isinstance(seconds, (int, float)) else seconds
    if not 0.5 <= low <= high:
        raise DnnsepError(f"seconds must be a range within [0.5, inf), got {seconds}")
    corpus = Path(root) / "LibriSpeech"
    speakers_txt = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for s_index, subset in enumerate(subsets):
        rng = np.random.default_rng([seed, s_index])
        for voice_index, voice in enumerate(make_voices(rng, n_speakers)):
            spk = str((s_index + 1) * 1000 + voice_index)
            chapter = str(int(spk) * 10 + 1)
            folder = corpus / subset / spk / chapter
            folder.mkdir(parents=True, exist_ok=True)
            lines, total = [], 0.0
            for u in range(utts_per_speaker):
                utt_rng = np.random.default_rng([seed, s_index, voice_index, u])
                frames = int(utt_rng.uniform(low, high) * sample_rate)
                utt = f"{spk}-{chapter}-{u:04d}"
                sf.write(folder / f"{utt}.flac", synthesize(utt_rng, voice, frames, sample_rate), sample_rate,
                         subtype="PCM_16")  # fmt: skip
                words = [
                    "".join(ONSETS[utt_rng.integers(len(ONSETS))] + LETTERS[utt_rng.integers(len(LETTERS))]
                            for _ in range(int(utt_rng.integers(1, 4))))
                    for _ in range(max(1, int(frames / sample_rate * 2)))
                ]  # fmt: skip
                lines.append(f"{utt} {' '.join(words)}")
                total += frames / sample_rate
            (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
            speakers_txt.append(f"{spk:<5}| {voice.sex} | {subset:<16} | {total / 60:5.2f} | Synthetic Voice {spk}")
    (corpus / "SPEAKERS.TXT").write_text("\n".join(speakers_txt) + "\n")
    (corpus / "README.TXT").write_text("Synthetic speech-like corpus in LibriSpeech's layout, made by dnnsep.\n")
    return corpus


def make_mirror(root: str | os.PathLike, mirror_dir: str | os.PathLike, subsets: Sequence[str] | None = None) -> Path:
    """Pack each subset of ``<root>/LibriSpeech`` into ``<mirror_dir>/<subset>.tar.gz`` (top folder
    ``LibriSpeech/``, like the official archives) and write ``<mirror_dir>/md5sum.txt``.

    The archives are byte-reproducible (sorted members, zeroed times and owners).  Serving
    ``mirror_dir`` over HTTP gives a ``--mirror`` for ``prepare``.  Returns ``mirror_dir``.
    """
    corpus = Path(root) / "LibriSpeech"
    mirror = Path(mirror_dir)
    mirror.mkdir(parents=True, exist_ok=True)
    if subsets is None:
        subsets = sorted(p.name for p in corpus.iterdir() if p.is_dir())
    lines = []
    for subset in subsets:
        if not (corpus / subset).is_dir():
            raise DnnsepError(f"{corpus / subset}: no such subset to pack")
        name = f"{subset}.tar.gz"
        buffer = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
                tar.add(corpus, arcname="LibriSpeech", recursive=False, filter=_reset)
                for top in sorted(corpus.iterdir()):
                    if top.is_file():
                        tar.add(top, arcname=f"LibriSpeech/{top.name}", filter=_reset)
                tar.add(corpus / subset, arcname=f"LibriSpeech/{subset}", filter=_reset)  # recursive, sorted
        (mirror / name).write_bytes(buffer.getvalue())
        lines.append(f"{md5sum(mirror / name, progress=False)}  {name}")
    (mirror / "md5sum.txt").write_text("\n".join(lines) + "\n")
    return mirror


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info
