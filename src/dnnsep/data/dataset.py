"""A PyTorch dataset over mixture lists: reads only the frames it needs, mixes on the fly if asked.

Each item is ``(mixture, sources)``, float32 tensors with ``mixture == sources.sum(0)``; source ``k``
is the list's ``[start, start + frames)`` slice of its flac file, scaled to an RMS of
``level_dbfs + gain_db`` dB re full scale (see :mod:`dnnsep.data.lists`).

With ``dynamic_mixing=True`` (training lists only), item ``i`` keeps the list's first source of
mixture ``i`` but draws new partners (other speakers), start frames and gains from a generator
seeded with ``(seed, epoch, i)``: every epoch differs, and any epoch can be reproduced or resumed
after :meth:`MixtureDataset.set_epoch`, whatever the number of DataLoader workers.

With ``speed_perturb=r`` each source of an item is resampled by a factor ``f`` drawn from
``(1 - r, 1, 1 + r)`` (seeded likewise): ``round(frames * f)`` frames of the file are read and squeezed
or stretched to ``frames``, which plays the speech ``f`` times faster and ``f`` times higher in pitch.

A small list (all its utterances within :data:`CACHE_MB` as float32, e.g. the main job's half hour)
keeps each file whole in memory once read, so an epoch decodes nothing twice: the same samples as
reading the slice from disk, without decoding it again (bench/README.md).  A large one (LibriSpeech's training
sets) reads the slices from disk every time.

A mixture may sit in a room and in noise (:mod:`dnnsep.data.scene`): then ``mixture`` is the sum of
the reverberant sources plus noise, and ``sources`` are the targets (``reverb_target``).  A list's
mixtures that carry a ``"scene"`` (written by ``prepare --reverb/--noise``) keep it; with ``scene``
options, the others (and every item under dynamic mixing) draw one from a generator seeded with
``(split, seed, epoch, index)`` (epoch 0 without dynamic mixing), the room from its bank's slot when the
options have a ``room_bank`` (:meth:`MixtureDataset._bank_key`).  A ``dry_share`` in the options leaves
that share of the items dry and clean, a stored scene too (the trainer gives its validation set none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from ..errors import AudioError, DnnsepError
from .librispeech import Utterance
from .lists import Rng, by_speaker, draw_sources, read_list
from .rooms import TARGETS
from .scene import SceneOptions, Scenes

SILENCE_RMS = 1e-4  # -80 dBFS: quieter slices are scaled as if this loud, so near-silence stays quiet
CACHE_MB = 512  # a list whose utterances fit in this many MB of float32 is kept in memory (per process)


class MixtureDataset(torch.utils.data.Dataset):
    """Mixtures of a list written by ``prepare`` (``<dataset_dir>/<n>mix/<split>.json``).

    Args:
        list_path: the JSON list; its paths are relative to its grandparent folder (``dataset_dir``).
        dynamic_mixing: draw new partners, starts and gains for every item and epoch (see module doc).
            Needs a fixed length: a list with ``segment_frames`` or ``segment_seconds``.
        seed: seeds on-the-fly mixing (unused otherwise).
        segment_seconds: crop every mixture to this length (from its first frame, or at random with
            dynamic mixing); mixtures shorter than it are left out (counted in ``n_dropped``).
            ``None`` keeps the list's lengths.

    Shape:
        ``dataset[i] -> (mixture: (time,), sources: (n_sources, time))``, float32 CPU tensors;
        ``time`` is the segment length, or the mixture's own length for full-utterance lists.
        speed_perturb: ``r``: resample every source by ``1 - r``, ``1`` or ``1 + r`` (see module doc); 0: off.
        scene: rooms and noise to draw where the list has none (see module doc); ``None``: the list's only.
        reverb_target: ``reverberant`` or ``direct`` targets in rooms (``None``: the list's choice, else
            ``reverberant``).
    """

    def __init__(
        self,
        list_path: str | os.PathLike,
        *,
        dynamic_mixing: bool = False,
        seed: int = 0,
        segment_seconds: float | None = None,
        speed_perturb: float = 0.0,
        scene: SceneOptions | None = None,
        reverb_target: str | None = None,
    ):
        if not 0 <= speed_perturb < 1:
            raise DnnsepError(f"speed_perturb must be in [0, 1), got {speed_perturb}")
        self.speed_perturb = float(speed_perturb)
        self.list_path = Path(list_path)
        lst = read_list(self.list_path)
        self.root = self.list_path.resolve().parent.parent
        self.sample_rate: int = lst["sample_rate"]
        self.n_sources: int = lst["n_sources"]
        self.level_dbfs: float = lst["level_dbfs"]
        self.gain_db: float = lst["gain_db"][1]
        self.split: str = lst["split"]
        self.segment_frames: int | None = lst["segment_frames"]
        if segment_seconds is not None:
            if segment_seconds <= 0:
                raise DnnsepError(f"segment_seconds must be > 0, got {segment_seconds}")
            self.segment_frames = round(segment_seconds * self.sample_rate)
        mixtures = lst["mixtures"]
        if segment_seconds is not None:
            mixtures = [m for m in mixtures if m["frames"] >= self.segment_frames]
        self.n_dropped = len(lst["mixtures"]) - len(mixtures)
        self.mixtures: list[dict[str, Any]] = mixtures
        self._file_frames = {u["path"]: u["frames"] for u in lst["utterances"]}
        small = 4 * sum(self._file_frames.values()) <= CACHE_MB * 2**20
        self._cache: dict[str, np.ndarray] | None = {} if small else None  # whole files read so far
        self.dynamic_mixing = dynamic_mixing
        self.seed = int(seed)
        self.epoch = 0
        self.reverb_target = reverb_target or lst.get("reverb_target", "reverberant")
        if self.reverb_target not in TARGETS:
            raise DnnsepError(f"reverb_target must be one of {', '.join(TARGETS)}, got {self.reverb_target!r}")
        pool = [Utterance(u["path"], u["speaker"], u["frames"]) for u in lst["utterances"]]
        self.scene_options = scene
        self.scenes = Scenes(scene, root=self.root, split=self.split, sample_rate=self.sample_rate, pool=pool,
                             read=self._read_plain)  # fmt: skip
        if dynamic_mixing:
            if self.segment_frames is None:
                raise DnnsepError(f"{self.list_path}: dynamic mixing needs fixed-length mixtures; pass segment_seconds")
            self._utterances = {u.path: u for u in pool}
            self._groups = by_speaker(pool, self.segment_frames)
            if len(self._groups) < self.n_sources:
                raise DnnsepError(
                    f"{self.list_path}: only {len(self._groups)} speaker(s) have utterances of "
                    f"{self.segment_frames / self.sample_rate:g} s; dynamic mixing needs {self.n_sources}"
                )
        if not self.mixtures:
            raise DnnsepError(f"{self.list_path}: no mixture is at least {segment_seconds} s long")

    def __len__(self) -> int:
        return len(self.mixtures)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose on-the-fly mixtures ``__getitem__`` returns (harmless otherwise)."""
        self.epoch = int(epoch)

    def mixture_id(self, index: int) -> str:
        """The list's id of mixture ``index`` (its utterance ids joined by ``_``), e.g. for result tables."""
        return self.mixtures[index]["id"]

    def spec(self, index: int) -> tuple[int, list[dict[str, Any]]]:
        """``(frames, sources)`` that item ``index`` reads (the list's, or this epoch's on-the-fly draw)."""
        mix = self.mixtures[index]
        if self.dynamic_mixing:
            rng = Rng(self.seed * 2**64 + self.epoch * 2**32 + index)
            first = self._utterances[mix["sources"][0]["path"]]
            return draw_sources(
                first,
                self._groups,
                n_sources=self.n_sources,
                segment_frames=self.segment_frames,
                gain_db=self.gain_db,
                rng=rng,
            )
        frames = mix["frames"] if self.segment_frames is None else min(mix["frames"], self.segment_frames)
        return frames, mix["sources"]

    def speed_factors(self, index: int, n: int) -> list[float]:
        """The resampling factor of each of item ``index``'s ``n`` sources this epoch (all 1 when off)."""
        if not self.speed_perturb:
            return [1.0] * n
        rng = Rng(f"speed {self.seed} {self.epoch} {index}")
        r = self.speed_perturb
        return [rng.choice((1 - r, 1.0, 1 + r)) for _ in range(n)]

    def scene(self, index: int, spec: tuple[int, list[dict[str, Any]]] | None = None) -> dict[str, Any] | None:
        """Item ``index``'s room and noise this epoch (see module doc), ``None`` for a dry, clean one."""
        mix, opts = self.mixtures[index], self.scene_options
        if opts is None:
            return None if self.dynamic_mixing else mix.get("scene")
        epoch = self.epoch if self.dynamic_mixing else 0
        key = f"scene {self.split} {self.seed} {epoch} {index}"
        if opts.dry_share and Rng(key + " dry").uniform(0, 1) < opts.dry_share:
            return None
        if not self.dynamic_mixing and "scene" in mix:
            return mix["scene"]
        frames, sources = spec or self.spec(index)
        bank_key = self._bank_key(key, epoch) if opts.room_bank else None
        speakers = {src["speaker"] for src in sources}
        return self.scenes.draw(key, n_sources=len(sources), frames=frames, speakers=speakers, bank_key=bank_key)

    def _bank_key(self, key: str, epoch: int) -> str:
        """The generator key of the bank room item ``key`` draws in ``epoch``: one of ``room_bank`` slots,
        whose room changes every ``room_life`` epochs (slot ``j`` at the epochs ``e`` with
        ``(e + j) % room_life == 0``: a new ``1 / room_life`` of the bank every epoch)."""
        opts = self.scene_options
        slot = Rng(key + " bank").below(opts.room_bank)
        if opts.room_life == 1:
            return f"room {self.split} {self.seed} {epoch} {slot}"
        generation = (epoch + slot % opts.room_life) // opts.room_life
        return f"room {self.split} {self.seed} slot {slot} life {opts.room_life} generation {generation}"

    def conditions(self, index: int) -> dict[str, float]:
        """``{"rt60": s, "snr_db": dB}`` of item ``index`` (what its scene has; empty when dry and clean)."""
        return self.scenes.conditions(self.scene(index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, sources = spec = self.spec(index)
        factors = self.speed_factors(index, len(sources))
        stacked = np.stack([self._read(src, frames, f) for src, f in zip(sources, factors)])  # (n_sources, time)
        scene = self.scene(index, spec)
        if scene:
            mixture, stacked = self.scenes.apply(scene, stacked, target=self.reverb_target)
        else:
            mixture = stacked.sum(axis=0)  # (time,)
        return torch.from_numpy(mixture), torch.from_numpy(stacked)

    def _read_plain(self, rel: str, start: int, frames: int) -> np.ndarray:
        """Frames of a file (relative to the list's folder, or absolute) as stored, fewer at its end.  Shape: (n,)."""
        whole = self._cache.get(rel) if self._cache is not None else None
        if whole is None and self._cache is not None and rel in self._file_frames:
            whole = self._cache[rel] = self._read_file(self.root / rel, 0, -1)
        if whole is not None:
            return whole[start : start + frames]
        if rel in self._file_frames:
            return self._read_file(self.root / rel, start, frames)
        path = self.root / rel  # a noise file: its first channel
        try:
            with sf.SoundFile(str(path)) as f:
                if f.samplerate != self.sample_rate:
                    raise AudioError(f"{path}: {f.samplerate} Hz, but {self.list_path} is at {self.sample_rate} Hz")
                f.seek(start)
                return f.read(frames, dtype="float32", always_2d=True)[:, 0]
        except AudioError:
            raise
        except Exception as err:
            raise AudioError(f"{path}: cannot read ({str(err).strip()[:200]})") from None

    def _read(self, src: dict[str, Any], frames: int, factor: float = 1.0) -> np.ndarray:
        """Frames ``[start, start + frames)`` of one file, level-normalised and gained.  Shape: (frames,).

        With ``factor != 1``, ``round(frames * factor)`` frames from ``start`` (moved back if the file
        ends first) resampled to ``frames``.
        """
        path = self.root / src["path"]
        start, wanted = src["start"], frames
        if factor != 1.0:
            available = self._file_frames.get(src["path"], start + frames)
            wanted = max(1, min(round(frames * factor), available))
            start = max(0, min(start, available - wanted))
        if self._cache is None:
            audio = self._read_file(path, start, wanted)
        else:
            whole = self._cache.get(src["path"])
            if whole is None:
                whole = self._cache[src["path"]] = self._read_file(path, 0, -1)
            audio = whole[start : start + wanted]
        if len(audio) < wanted:
            raise AudioError(
                f"{path}: ends at frame {start + len(audio)}, but {self.list_path} reads up to "
                f"{start + wanted}; the corpus changed since prepare: rerun it with --overwrite"
            )
        if wanted != frames:
            audio = change_length(audio, frames)
        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        scale = 10 ** ((self.level_dbfs + src["gain_db"]) / 20) / max(rms, SILENCE_RMS)
        return audio * np.float32(scale)

    def _read_file(self, path: Path, start: int, frames: int) -> np.ndarray:
        """``frames`` frames of ``path`` from ``start`` (-1: to the end), float32, checked.  Shape: (frames,)."""
        try:
            with sf.SoundFile(str(path)) as f:
                if f.samplerate != self.sample_rate:
                    raise AudioError(
                        f"{path}: {f.samplerate} Hz, but {self.list_path} is at {self.sample_rate} Hz; "
                        "resample the corpus or rerun prepare on one rate"
                    )
                if f.channels != 1:
                    raise AudioError(f"{path}: {f.channels} channels, expected mono")
                f.seek(start)
                return f.read(frames, dtype="float32")
        except AudioError:
            raise
        except Exception as err:  # missing file, unreadable, seek past the end
            reason = "no such file" if not path.is_file() else f"cannot read ({str(err).strip()[:200]})"
            raise AudioError(f"{path}: {reason}; is {self.root} complete?") from None


def change_length(audio: np.ndarray, frames: int) -> np.ndarray:
    """Resample ``audio`` to ``frames`` samples in the frequency domain (truncating or zero-padding its
    spectrum): played at the same rate, ``len(audio) / frames`` times faster and higher.

    Shape: (n,) -> (frames,), float32.

    >>> t = np.arange(2100) / 16000
    >>> y = change_length(np.sin(2 * np.pi * 500 * t), 2000)  # 1.05 times faster: 525 Hz
    >>> len(y), round(float(np.argmax(np.abs(np.fft.rfft(y)))) * 16000 / 2000)
    (2000, 528)
    """
    spectrum = np.fft.rfft(audio.astype(np.float64))  # (n // 2 + 1,)
    keep = min(len(spectrum), frames // 2 + 1)
    out = np.zeros(frames // 2 + 1, dtype=complex)
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, n=frames) * (frames / len(audio))).astype(np.float32)
