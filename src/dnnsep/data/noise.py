"""Noise added to a mixture at an SNR drawn per mixture (default -5..+15 dB re the speech, LibriMix-like).

Three sources, the run's config (``noise:``) says which:

- ``files``: audio files under ``noise_root`` (``*.wav``/``*.flac``, at the data's rate; the first
  channel).  Folders named ``tr``/``train``, ``cv``/``valid``/``dev`` and ``tt``/``test``/``eval``
  (WHAM!'s and others' layout) give each split its own files; otherwise each file goes to one split
  by the order of their paths' hashes (8 in 10 train, 1 valid, 1 test), so valid and test noise is never trained on.
- a downloadable corpus, fetched by :func:`fetch_corpus` (``prepare --noise_corpus NAME``) into
  ``<dataset_dir>/noise/<NAME>`` and then read as ``files``; see :data:`CORPORA` for each licence.
- ``synthetic`` (offline): coloured noise (pink, brown), babble of 3-5 other speakers of the list's
  own subset, mains hum (50 or 60 Hz and harmonics over a faint pink floor), and bursts (pink noise
  switched on and off at random): one kind per mixture.

A mixture's noise is a JSON-able dict stored in lists or drawn per (seed, epoch, index)::

    {"file": "noise/musan/noise/free-sound/noise-free-sound-0001.wav", "start": 1234, "snr_db": 3.2}
    {"kind": "babble", "seed": 99, "snr_db": -1.5, "talkers": [{"path": "...", "start": 0}, ...]}

The synthetic kinds draw their samples from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import DnnsepError
from .download import download, fetch_text, parse_md5sum, verify_md5
from .librispeech import Utterance
from .lists import Rng
from .rooms import convolve

SOURCES = ("synthetic", "files")
KINDS = ("pink", "brown", "babble", "hum", "bursts")
SPLIT_FOLDERS = {"train": ("tr", "train"), "valid": ("cv", "valid", "dev"), "test": ("tt", "test", "eval")}
EXTENSIONS = (".wav", ".flac")
MARKER = ".dnnsep-complete"


@dataclass(frozen=True)
class Corpus:
    """A downloadable noise corpus: ``<url>/<archive>``, whose members all lie under ``top/``."""

    url: str
    archive: str
    top: str
    md5: str | None  # None: the publisher gives none; checked by the archive's own CRCs (zip) instead
    licence: str


CORPORA = {
    # WHAM! noise (Wichern et al. 2019): recorded in cafes, bars, restaurants; tr/cv/tt folders. 17 GB.
    "wham_noise": Corpus(
        url="https://my-bucket-a8b4b49c25c811ee9a7e8bba05fa24c7.s3.amazonaws.com",
        archive="wham_noise.zip",
        top="wham_noise",
        md5=None,
        licence="CC BY-NC 4.0: non-commercial use only",
    ),
    # MUSAN (Snyder et al. 2015), OpenSLR 17: noise/, music/, speech/. 11 GB.  md5 as checked by
    # wenet-e2e/wespeaker's download script.
    "musan": Corpus(
        url="https://www.openslr.org/resources/17",
        archive="musan.tar.gz",
        top="musan",
        md5="0c472d4fc0c5141eca47ad1ffeb2a7df",
        licence="CC BY 4.0: commercial use allowed with attribution",
    ),
}


@dataclass(frozen=True)
class NoiseOptions:
    """Where noise comes from (:data:`SOURCES`), its folder for ``files``, and the SNR range in dB."""

    source: str = "synthetic"
    snr_db: tuple[float, float] = (-5.0, 15.0)
    root: str | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise DnnsepError(f"noise must be one of none, {', '.join(SOURCES)}, got {self.source!r}")
        lo, hi = self.snr_db
        if not lo <= hi:
            raise DnnsepError(f"snr_min ({lo:g} dB) must not exceed snr_max ({hi:g} dB)")
        if self.source == "files" and not self.root:
            raise DnnsepError("noise_root: noise: files needs a folder of noise recordings")


def noise_files(root: str | os.PathLike, split: str, *, sample_rate: int) -> list[Utterance]:
    """The noise files of ``split`` under ``root`` (see the module doc), sorted, with their lengths.

    ``Utterance.path`` is relative to ``root``; ``speaker`` is unused ("noise").
    """
    root = Path(root)
    if not root.is_dir():
        raise DnnsepError(f"noise_root {root}: no such folder")
    every = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not every:
        raise DnnsepError(f"noise_root {root}: holds no {'/'.join(EXTENSIONS)} files")
    by_folder = [f for f in every if set(PurePosixPath(f).parts[:-1]) & set(SPLIT_FOLDERS[split])]
    named = any(set(PurePosixPath(f).parts[:-1]) & set(sum(SPLIT_FOLDERS.values(), ())) for f in every)
    files = by_folder if named else hash_split(every)[split]
    if not files:
        raise DnnsepError(f"noise_root {root}: no noise files for the {split} split; add more files")
    out = []
    for rel in files:
        info = sf.info(str(root / rel))
        if info.samplerate != sample_rate:
            raise DnnsepError(f"noise_root: {root / rel} is at {info.samplerate} Hz, the data at {sample_rate} Hz")
        out.append(Utterance(rel, "noise", info.frames))
    return out


def hash_split(paths: Sequence[str]) -> dict[str, list[str]]:
    """``paths`` ordered by the md5 of each: the first tenth (at least one) is test, the next valid, the
    rest train; a file keeps its split when others are added, unless it sits near a boundary."""
    ordered = sorted(paths, key=lambda p: hashlib.md5(p.encode(), usedforsecurity=False).hexdigest())
    k = max(1, len(ordered) // 10) if len(ordered) >= 3 else 0
    return {"test": sorted(ordered[:k]), "valid": sorted(ordered[k : 2 * k]), "train": sorted(ordered[2 * k :])}


def draw_noise(
    rng: Rng,
    opts: NoiseOptions,
    *,
    frames: int,
    files: Sequence[Utterance] = (),
    talkers: dict[str, list[Utterance]] | None = None,
    root: str = "",
) -> dict[str, Any]:
    """One mixture's noise (see the module doc): a file of ``files`` (paths under ``root``) at a random
    start, or a synthetic kind; babble takes 3-5 talkers of distinct speakers from ``talkers`` (the
    other speakers' utterances, by speaker)."""
    snr = round(rng.uniform(*opts.snr_db), 2)
    if opts.source == "files":
        f = rng.choice(files)
        return {"file": f"{root}/{f.path}" if root else f.path, "start": rng.below(max(1, f.frames - frames + 1)),
                "snr_db": snr}  # fmt: skip
    speakers = sorted(talkers or {})
    kind = rng.choice(KINDS if len(speakers) >= 3 else [k for k in KINDS if k != "babble"])
    noise: dict[str, Any] = {"kind": kind, "seed": rng.below(2**31), "snr_db": snr}
    if kind == "babble":
        picked = [rng.choice(talkers[s]) for s in rng.sample(speakers, 3 + rng.below(min(3, len(speakers) - 2)))]
        noise["talkers"] = [{"path": u.path, "start": rng.below(max(1, u.frames - frames + 1))} for u in picked]
    return noise


def render(
    noise: dict[str, Any], frames: int, sample_rate: int, read: Callable[[str, int, int], np.ndarray]
) -> np.ndarray:
    """The noise signal (unscaled).  ``read(path, start, frames)`` reads a file's frames (fewer at its end).

    Shape: -> (frames,), float32.
    """
    if "file" in noise:
        return _loop(read(noise["file"], noise["start"], frames), frames)
    gen = np.random.default_rng(noise["seed"])
    kind = noise["kind"]
    if kind in ("pink", "brown"):
        return coloured(frames, 1 if kind == "pink" else 2, gen)
    if kind == "babble":
        out = np.zeros(frames, dtype=np.float32)
        for t in noise["talkers"]:
            x = _loop(read(t["path"], t["start"], frames), frames)
            out += x / max(_rms(x), 1e-4)
        return out
    if kind == "hum":  # mains hum: 7 harmonics of random amplitude and phase, and a little pink noise
        f0 = gen.choice([50.0, 60.0]) * gen.uniform(0.99, 1.01)
        x = 2 * np.pi * f0 / sample_rate * np.arange(frames)
        hum = np.zeros(frames)
        s, c = np.sin(x), np.cos(x)  # sin(k x), cos(k x) for k = 1
        c1 = c
        s_prev, c_prev = np.zeros(frames), np.ones(frames)  # k = 0
        for k in range(1, 8):
            if k * f0 >= sample_rate / 2:
                break
            if k > 1:  # Chebyshev's recurrence: one sin and cos for all 7
                s, s_prev = 2 * c1 * s - s_prev, s
                c, c_prev = 2 * c1 * c - c_prev, c
            amplitude, phase = gen.uniform(0.3, 1) / k, gen.uniform(0, 2 * np.pi)
            hum += amplitude * math.cos(phase) * s + amplitude * math.sin(phase) * c  # a sin(k x + phase)
        return (hum + 0.05 * coloured(frames, 1, gen)).astype(np.float32)
    if kind == "bursts":
        envelope = np.zeros(frames)
        t = 0
        while t < frames:  # on 50-400 ms, off 100-800 ms
            on = int(gen.uniform(0.05, 0.4) * sample_rate)
            envelope[t : t + on] = gen.uniform(0.3, 1.0)
            t += on + int(gen.uniform(0.1, 0.8) * sample_rate)
        ramp = np.hanning(max(3, int(0.01 * sample_rate)))
        half = (len(ramp) - 1) // 2  # 10-ms ramps: np.convolve(envelope, ramp, mode="same"), by FFT
        envelope = convolve(envelope, ramp / ramp.sum(), frames + half)[half:]
        return (coloured(frames, 1, gen) * envelope + 1e-3 * gen.standard_normal(frames)).astype(np.float32)
    raise DnnsepError(f"unknown synthetic noise kind {kind!r} (known: {', '.join(KINDS)}); rerun prepare")


def coloured(frames: int, exponent: float, gen: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power falling as ``1 / f**exponent`` (1: pink, 2: brown), unit RMS.  Shape: (frames,)."""
    spectrum = np.fft.rfft(gen.standard_normal(frames))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / f ** (exponent / 2), frames)
    return (x / max(_rms(x), 1e-12)).astype(np.float32)


def scale_to_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``noise`` scaled so that ``10 log10(power(speech) / power(noise)) == snr_db``.  Shape: (time,) -> (time,)."""
    return (noise * (_rms(speech) / max(_rms(noise), 1e-12) / 10 ** (snr_db / 20))).astype(np.float32)


def _loop(x: np.ndarray, frames: int) -> np.ndarray:
    """``x`` repeated up to ``frames`` samples (a short noise file loops).  Shape: (n,) -> (frames,)."""
    if len(x) == 0:
        return np.zeros(frames, dtype=np.float32)
    return np.resize(x, frames).astype(np.float32) if len(x) < frames else x[:frames]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# -- downloadable corpora -----------------------------------------------------------------------


def fetch_corpus(
    dataset_dir: str | os.PathLike,
    name: str,
    *,
    mirror: str | None = None,
    retries: int = 3,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download, check and extract noise corpus ``name`` into ``<dataset_dir>/noise/<name>`` (once: a
    complete copy is not fetched again); returns that folder.  ``mirror`` replaces the publisher's
    address and its ``<mirror>/md5sum.txt`` gives the md5.  The licence is printed."""
    if name not in CORPORA:
        raise DnnsepError(f"--noise_corpus {name!r}: not one of {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    final = Path(dataset_dir) / "noise" / name
    print(f"{name}: licence {corpus.licence}", file=sys.stderr)
    if (final / MARKER).is_file():
        return final
    base = (mirror or corpus.url).rstrip("/")
    md5 = corpus.md5
    if mirror:
        md5s = parse_md5sum(fetch_text(f"{base}/md5sum.txt", retries=retries), source=f"{base}/md5sum.txt")
        md5 = md5s.get(corpus.archive, corpus.md5)
    archive = download(f"{base}/{corpus.archive}", Path(dataset_dir) / "downloads" / corpus.archive,
                       retries=retries, progress=progress, space_factor=2.05)  # fmt: skip
    if md5:
        verify_md5(archive, md5, progress=progress)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=final.parent))
    try:
        n = extract(archive, tmp, top=corpus.top)
        (tmp / corpus.top / MARKER).write_text(f"{corpus.archive} {n} files\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / corpus.top, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not keep_archive:
        archive.unlink()
    return final


def extract(archive: Path, dest: Path, *, top: str) -> int:
    """Extract a .tar.gz or .zip whose members are all plain files or folders under ``top/`` (no links,
    no ``..``, no absolute paths: anything else is refused before it is written); returns the file count."""
    n = 0
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                    _check(info.filename.rstrip("/"), not is_link, archive, top)
                for info in z.infolist():
                    z.extract(info, dest)
                    n += not info.is_dir()
        else:
            with tarfile.open(archive, mode="r|gz") as tar:
                for member in tar:
                    _check(member.name, member.isreg() or member.isdir(), archive, top)
                    tar.extract(member, dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
                    n += member.isreg()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DnnsepError(
            f"{archive}: truncated or corrupt archive ({err}); delete it and rerun to download it again"
        ) from None
    return n


def _check(name: str, plain: bool, archive: Path, top: str) -> None:
    parts = PurePosixPath(name).parts
    if not plain or not parts or parts[0] != top or ".." in parts or name.startswith("/"):
        raise DnnsepError(f"{archive}: unexpected member {name!r} (not a file under {top}/); not extracted")


def describe(noise: dict[str, Any]) -> str:
    """``'synthetic babble'`` or ``'file'``: what the run used, for logs."""
    return f"synthetic {noise['kind']}" if "kind" in noise else "file"


def snr_of(speech: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(power(speech) / power(noise))`` in dB."""
    return 10 * math.log10(max(_rms(speech), 1e-12) ** 2 / max(_rms(noise), 1e-12) ** 2)
