"""A mixture's acoustic scene: a room (simulated or measured responses) and noise, drawn and applied.

A scene is ``{"room": {...}}``, ``{"noise": {...}}`` or both (formats in :mod:`dnnsep.data.rooms` and
:mod:`dnnsep.data.noise`), stored under a mixture's ``"scene"`` in a list, or drawn by
:class:`MixtureDataset` per (seed, epoch, index).  Applied to the dry sources (as the list reads
them), it gives ``mixture = sum(reverberant sources) + noise`` and the targets (reverberant or
direct-path sources, see :mod:`dnnsep.data.rooms`); the noise is scaled to its SNR re the sum of
the reverberant sources.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DnnsepError
from . import noise as noise_mod
from . import rooms
from .librispeech import Utterance
from .lists import FORMAT, SCENE_VERSION, Rng, by_speaker

IR_CACHE = 64  # impulse response sets kept per process, beyond a room bank's (which fits whole)


@dataclass(frozen=True)
class SceneOptions:
    """What to draw: ``room`` (simulated rooms' ranges) or ``rir_root`` (measured responses, WAVs), and
    ``noise``; ``room_bank``: rooms shared out among an epoch's mixtures (0: one per mixture), each serving
    ``room_life`` epochs (a new ``1 / room_life`` of the bank every epoch, staggered);
    ``dry_share``: the share of a training set's mixtures left dry and clean (see :meth:`MixtureDataset.scene`)."""

    room: rooms.RoomOptions | None = None
    rir_root: str | None = None
    noise: noise_mod.NoiseOptions | None = None
    room_bank: int = 0
    room_life: int = 1
    dry_share: float = 0.0

    def __post_init__(self):
        if self.room is not None and self.rir_root is not None:
            raise DnnsepError("rir_root: measured responses replace simulated rooms; give one of them")
        if self.room_bank < 0:
            raise DnnsepError(f"room_bank must not be negative, got {self.room_bank}")
        if self.room_life < 1:
            raise DnnsepError(f"room_life must be at least 1 (epochs a bank room serves), got {self.room_life}")
        if self.room_life > 1 and not self.room_bank and self.reverb:
            raise DnnsepError(f"room_life {self.room_life}: the rooms of a bank serve epochs; set room_bank too")
        if not 0 <= self.dry_share < 1:
            raise DnnsepError(f"dry_share must be in [0, 1) (a share of the mixtures), got {self.dry_share}")

    def _bank(self) -> str:
        if not self.room_bank:
            return ""
        if self.room_life == 1:
            return f", {self.room_bank} per epoch"
        return f", a bank of {self.room_bank}, each room serving {self.room_life} epochs"

    @property
    def reverb(self) -> bool:
        return self.room is not None or self.rir_root is not None

    def describe(self) -> str:
        """One line for logs, e.g. ``rooms RT60 0.1-0.8 s; noise synthetic (pink, ...) at -5..15 dB``."""
        parts = []
        if self.room is not None:
            parts.append(f"rooms RT60 {self.room.rt60[0]:g}-{self.room.rt60[1]:g} s" + self._bank())
        elif self.rir_root is not None:
            parts.append(f"measured responses from {self.rir_root}")
        if self.noise is not None:
            what = (
                f"files from {self.noise.root}"
                if self.noise.source == "files"
                else "synthetic (" + ", ".join(noise_mod.KINDS) + ")"
            )
            parts.append(f"noise {what} at {self.noise.snr_db[0]:g}..{self.noise.snr_db[1]:g} dB")
        if parts and self.dry_share:
            parts.append(f"{self.dry_share * 100:g}% of training mixtures dry and clean")
        return "; ".join(parts) or "dry and clean"


class Scenes:
    """Draws and applies scenes for one list (its ``split``, its utterance pool, its folder ``root``)."""

    def __init__(self, opts: SceneOptions | None, *, root: Path, split: str, sample_rate: int,
                 pool: list[Utterance], read: Callable[[str, int, int], np.ndarray]):  # fmt: skip
        self.opts, self.root, self.split, self.sample_rate, self.read = opts, root, split, sample_rate, read
        self.groups = by_speaker(pool, 1)  # babble's talkers
        self._irs: OrderedDict[str, tuple[list[np.ndarray], dict]] = OrderedDict()  # responses, their FFTs
        self._rir_files: list[str] = []
        self._noise_files: list[Utterance] = []
        self._noise_prefix = ""
        if opts is None:
            return
        if opts.rir_root is not None:
            prefix = _under(Path(opts.rir_root), root)
            self._rir_files = [f"{prefix}/{f}" for f in rooms.rir_files(opts.rir_root, sample_rate)]
        if opts.noise is not None and opts.noise.source == "files":
            self._noise_files = noise_mod.noise_files(opts.noise.root, split, sample_rate=sample_rate)
            self._noise_prefix = _under(Path(opts.noise.root), root)

    def draw(self, key: str, *, n_sources: int, frames: int, speakers: set[str], bank_key: str | None = None) -> dict:
        """A scene from the generator seeded with ``key``; the room from ``bank_key``'s when given."""
        opts, scene = self.opts, {}
        rng = Rng(key)
        if opts.room is not None:
            scene["room"] = rooms.draw_room(Rng(bank_key) if bank_key else rng, n_sources, opts.room)
        elif opts.rir_root is not None:
            scene["room"] = rooms.draw_measured(Rng(bank_key) if bank_key else rng, n_sources, self._rir_files)
        if opts.noise is not None:
            talkers = {s: group for s, group in self.groups.items() if s not in speakers}
            scene["noise"] = noise_mod.draw_noise(rng, opts.noise, frames=frames, files=self._noise_files,
                                                  talkers=talkers, root=self._noise_prefix)  # fmt: skip
        return scene

    def responses(self, room: dict[str, Any]) -> list[np.ndarray]:
        """The impulse responses of ``room`` (cached).  Shape: n_sources arrays (taps,)."""
        return self._entry(room)[0]

    def _entry(self, room: dict[str, Any]) -> tuple[list[np.ndarray], dict]:
        key = json.dumps(room, sort_keys=True)
        entry = self._irs.get(key)
        if entry is None:
            if "rirs" in room:  # paths relative to the list's folder, or absolute
                irs = [rooms.read_rir(self.root, name, self.sample_rate) for name in room["rirs"]]
            else:
                irs = rooms.simulate(room, self.sample_rate)
            entry = self._irs[key] = (irs, {})
            if len(self._irs) > IR_CACHE + self._bank_kept():
                self._irs.popitem(last=False)
        else:
            self._irs.move_to_end(key)
        return entry

    def _bank_kept(self) -> int:
        """Room sets kept beyond :data:`IR_CACHE`: a whole bank whose rooms serve several epochs."""
        return self.opts.room_bank if self.opts is not None and self.opts.room_life > 1 else 0

    def apply(self, scene: dict[str, Any], dry: np.ndarray, *, target: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mixture, targets)`` of the dry sources in ``scene``.

        Shape: dry (n_sources, time) -> mixture (time,), targets (n_sources, time).
        """
        wet, targets = dry, dry
        if "room" in scene:
            irs, spectra = self._entry(scene["room"])
            wet, targets = rooms.reverberate(dry, irs, target=target, sample_rate=self.sample_rate, spectra=spectra)
        mixture = wet.sum(axis=0)  # (time,)
        if "noise" in scene:
            n = noise_mod.render(scene["noise"], dry.shape[-1], self.sample_rate, self.read)
            mixture = mixture + noise_mod.scale_to_snr(mixture, n, scene["noise"]["snr_db"])
        return mixture.astype(np.float32), np.ascontiguousarray(targets, dtype=np.float32)

    def conditions(self, scene: dict[str, Any] | None) -> dict[str, float]:
        """``{"rt60": s, "snr_db": dB}`` of a scene (what it has); measured rooms: the responses' mean T20."""
        out: dict[str, float] = {}
        if not scene:
            return out
        room = scene.get("room")
        if room is not None:
            if "rt60" in room:
                out["rt60"] = float(room["rt60"])
            else:
                out["rt60"] = float(np.mean([rooms.decay_time(h, self.sample_rate) for h in self.responses(room)]))
        if "noise" in scene:
            out["snr_db"] = float(scene["noise"]["snr_db"])
        return out


def _under(folder: Path, root: Path) -> str:
    """``folder`` relative to ``root`` when it lies under it (the dataset folder can move), else absolute."""
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(folder.resolve())


def add_scenes(lst: dict[str, Any], opts: SceneOptions, *, root: Path, reverb_target: str) -> dict[str, Any]:
    """``lst`` (built by :func:`dnnsep.data.lists.build_list`) with a scene per mixture, from a stream of
    its own per split and seed (never one that training's on-the-fly draws use), as version 2."""
    if reverb_target not in rooms.TARGETS:
        raise DnnsepError(f"reverb_target must be one of {', '.join(rooms.TARGETS)}, got {reverb_target!r}")
    pool = [Utterance(u["path"], u["speaker"], u["frames"]) for u in lst["utterances"]]
    scenes = Scenes(opts, root=root, split=lst["split"], sample_rate=lst["sample_rate"], pool=pool,
                    read=lambda *args: np.zeros(0, dtype=np.float32))  # fmt: skip
    mixtures = []
    for i, mix in enumerate(lst["mixtures"]):
        key = f"{FORMAT}/scene/{lst['split']}/{lst['seed']}/{i}"
        speakers = {src["speaker"] for src in mix["sources"]}
        scene = scenes.draw(key, n_sources=len(mix["sources"]), frames=mix["frames"], speakers=speakers)
        mixtures.append({**mix, "scene": scene})
    out = {k: v for k, v in lst.items() if k != "mixtures"}
    out.update(version=SCENE_VERSION, reverb_target=reverb_target, mixtures=mixtures)
    return out


def options_from_config(cfg: Any) -> SceneOptions | None:
    """The scene options of a training config (its ``reverb``, ``rt60_*``, ``rir_root``, ``room_bank``, ``room_life``,
    ``noise``, ``noise_root``, ``snr_*``, ``dry_share`` keys), ``None`` when it asks for neither room nor noise.

    The trainer passes them, with ``reverb_target=cfg.reverb_target``, to both of its datasets (the
    validation set's with no ``dry_share``)::

        MixtureDataset(path, ..., scene=options_from_config(cfg), reverb_target=cfg.reverb_target)
    """
    if cfg.reverb == "none" and cfg.noise == "none":
        return None
    noise = None
    if cfg.noise != "none":
        root = cfg.noise_root or str(Path(cfg.dataset_dir) / "noise")
        noise = noise_mod.NoiseOptions(source=cfg.noise, snr_db=(cfg.snr_min, cfg.snr_max), root=root)
    return SceneOptions(
        room=rooms.RoomOptions(rt60=(cfg.rt60_min, cfg.rt60_max)) if cfg.reverb == "rooms" else None,
        rir_root=cfg.rir_root if cfg.reverb == "measured" else None,
        noise=noise,
        room_bank=cfg.room_bank,
        room_life=cfg.room_life,
        dry_share=cfg.dry_share,
    )
