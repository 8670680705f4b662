"""Mixture lists: which utterances, which frames and which gains make each mixture.

A list is one JSON file, ``<dataset_dir>/<n>mix/<split>.json`` (:func:`list_path`), with paths
relative to ``dataset_dir`` so the dataset folder can be moved::

    {"format": "dnnsep-mixtures", "version": 1, "split": "train", "subset": "train-clean-100",
     "n_sources": 2, "sample_rate": 16000, "segment_frames": 64000, "seed": 0,
     "gain_db": [-2.5, 2.5], "level_dbfs": -25.0,
     "utterances": [{"path": "LibriSpeech/train-clean-100/19/198/19-198-0000.flac", "speaker": "19",
                     "frames": 225360}, ...],
     "mixtures": [{"id": "19-198-0000_8630-305212-0021", "frames": 64000,
                   "sources": [{"path": "...", "speaker": "19", "start": 81215, "gain_db": 1.37}, ...]},
                  ...]}

Source ``k`` of a mixture is ``x_k[start:start + frames]`` (``x_k`` the flac file's samples) scaled so
that its RMS is ``level_dbfs + gain_db`` dB re full scale; the mixture is the sum of its sources.
``segment_frames`` is the length of every mixture, or ``null`` when mixtures are whole utterances
(then ``frames`` is the shortest source, ``start`` is 0).  ``utterances`` is every file of the
subset: the pool that on-the-fly mixing draws from.

Version 2 adds, per mixture, a ``"scene"`` (room and noise, see :mod:`dnnsep.data.scene`) and at
the top ``"reverb_target"``; lists without scenes stay version 1.

Lists are the same, byte for byte, for a given seed on any Python >= 3.9 and any machine: inputs
are sorted, and randomness comes only from :class:`Rng`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write
from ..errors import DnnsepError
from .librispeech import Utterance

FORMAT = "dnnsep-mixtures"
VERSION = 1
SCENE_VERSION = 2  # lists whose mixtures carry rooms and noise: older readers refuse them
SPLITS = ("train", "valid", "test")


def list_path(dataset_dir: str | os.PathLike, n_sources: int, split: str) -> Path:
    """``<dataset_dir>/<n_sources>mix/<split>.json``.

    >>> list_path("data", 2, "train").as_posix()
    'data/2mix/train.json'
    """
    if split not in SPLITS:
        raise DnnsepError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return Path(dataset_dir) / f"{int(n_sources)}mix" / f"{split}.json"


class Rng:
    """Random numbers drawn from ``random.Random.random()`` only.

    Python guarantees that method's sequence for a given seed (int or str) on every version and
    platform, unlike ``randrange``/``shuffle``/``sample`` or NumPy's distributions, so lists and
    on-the-fly mixtures are reproducible everywhere.

    >>> Rng(0).uniform(0.0, 1.0)  # random.Random(0).random(), the same everywhere
    0.8444218515250481
    >>> rng = Rng("doc")
    >>> [rng.below(10) for _ in range(3)] == [r.below(10) for r in [Rng("doc")] for _ in range(3)]
    True
    >>> sorted(Rng(0).sample(["a", "b", "c"], 3))
    ['a', 'b', 'c']
    """

    def __init__(self, seed: int | str):
        self._random = random.Random(seed)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._random.random()

    def below(self, n: int) -> int:
        """An integer in ``[0, n)``."""
        return min(int(self._random.random() * n), n - 1)

    def choice(self, items: Sequence[Any]) -> Any:
        return items[self.below(len(items))]

    def sample(self, items: Sequence[Any], k: int) -> list[Any]:
        """``k`` distinct items, in random order (a partial Fisher-Yates shuffle)."""
        pool = list(items)
        for i in range(k):
            j = i + self.below(len(pool) - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]

    def shuffled(self, items: Sequence[Any]) -> list[Any]:
        return self.sample(items, len(items))


def utterance_id(path: str) -> str:
    """``'LibriSpeech/dev-clean/84/121123/84-121123-0000.flac' -> '84-121123-0000'``."""
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def by_speaker(utterances: Sequence[Utterance], min_frames: int = 0) -> dict[str, list[Utterance]]:
    """Utterances of at least ``min_frames`` grouped by speaker; speakers and utterances sorted."""
    groups: dict[str, list[Utterance]] = {}
    for utt in sorted(utterances, key=lambda u: u.path):
        if utt.frames >= min_frames:
            groups.setdefault(utt.speaker, []).append(utt)
    return {speaker: groups[speaker] for speaker in sorted(groups)}


def draw_sources(
    first: Utterance,
    groups: dict[str, list[Utterance]],
    *,
    n_sources: int,
    segment_frames: int | None,
    gain_db: float,
    rng: Rng,
) -> tuple[int, list[dict[str, Any]]]:
    """``first`` plus ``n_sources - 1`` utterances of other, distinct speakers, with starts and gains.

    Returns ``(frames, sources)`` in the list format (see module doc).  ``groups`` is :func:`by_speaker`
    of the eligible utterances (all at least ``segment_frames`` long).
    """
    others = [s for s in groups if s != first.speaker]
    utts = [first] + [rng.choice(groups[s]) for s in rng.sample(others, n_sources - 1)]
    frames = segment_frames if segment_frames is not None else min(u.frames for u in utts)
    sources = []
    for utt in utts:
        start = rng.below(utt.frames - frames + 1) if segment_frames is not None else 0
        gain = round(rng.uniform(-gain_db, gain_db), 2)
        sources.append({"path": utt.path, "speaker": utt.speaker, "start": start, "gain_db": gain})
    return frames, sources


def build_list(
    utterances: Sequence[Utterance],
    *,
    split: str,
    subset: str,
    n_sources: int,
    seed: int,
    segment_frames: int | None,
    n_mixtures: int | None = None,
    gain_db: float = 2.5,
    level_dbfs: float = -25.0,
    sample_rate: int = 16000,
) -> dict[str, Any]:
    """Mixtures of ``n_sources`` distinct speakers over ``utterances`` (see the module doc for the format).

    Each utterance at least ``segment_frames`` long is the first source of one mixture (in random
    order; ``n_mixtures`` takes fewer or cycles through them again); the others are drawn from
    other speakers, uniformly by speaker then by utterance.  Gains are uniform in
    ``[-gain_db, gain_db]``, so two sources differ by at most ``2 * gain_db`` dB.
    """
    if n_sources < 1:
        raise DnnsepError(f"n_sources must be >= 1, got {n_sources}")
    if gain_db < 0:
        raise DnnsepError(f"gain_db must be >= 0, got {gain_db}")
    groups = by_speaker(utterances, segment_frames or 1)
    if len(groups) < n_sources:
        need = f"at least {segment_frames / sample_rate:g} s long " if segment_frames else ""
        raise DnnsepError(
            f"{subset}: only {len(groups)} speaker(s) have utterances {need}; {n_sources} are needed per mixture"
            + ("; lower the segment length" if segment_frames else "")
        )
    eligible = [u for group in groups.values() for u in group]
    rng = Rng(f"{FORMAT}/{split}/{seed}")
    n_mixtures = len(eligible) if n_mixtures is None else n_mixtures
    mixtures, seen = [], set()
    order: list[Utterance] = []
    for i in range(n_mixtures):
        if i % len(eligible) == 0:
            order = rng.shuffled(eligible)
        frames, sources = draw_sources(
            order[i % len(eligible)],
            groups,
            n_sources=n_sources,
            segment_frames=segment_frames,
            gain_db=gain_db,
            rng=rng,
        )
        mix_id = base = "_".join(utterance_id(s["path"]) for s in sources)
        k = 1
        while mix_id in seen:
            k += 1
            mix_id = f"{base}#{k}"
        seen.add(mix_id)
        mixtures.append({"id": mix_id, "frames": frames, "sources": sources})
    return {
        "format": FORMAT,
        "version": VERSION,
        "split": split,
        "subset": subset,
        "n_sources": n_sources,
        "sample_rate": sample_rate,
        "segment_frames": segment_frames,
        "seed": seed,
        "gain_db": [-gain_db, gain_db],
        "level_dbfs": level_dbfs,
        "utterances": [
            {"path": u.path, "speaker": u.speaker, "frames": u.frames} for u in sorted(utterances, key=lambda u: u.path)
        ],
        "mixtures": mixtures,
    }


def dumps_list(lst: dict[str, Any]) -> str:
    """JSON text with one utterance or mixture per line: small diffs, byte-stable."""
    dump = lambda value: json.dumps(value, ensure_ascii=True, allow_nan=False)
    fields = []
    for key, value in lst.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            fields.append(f"{dump(key)}: [\n" + ",\n".join(dump(item) for item in value) + "\n]")
        else:
            fields.append(f"{dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_list(lst: dict[str, Any], path: str | os.PathLike, *, overwrite: bool = False) -> bool:
    """Write ``lst`` atomically; ``False`` when ``path`` already holds the same bytes.

    A different existing list is an error unless ``overwrite``: lists are never silently replaced.
    """
    path = Path(path)
    text = dumps_list(lst).encode()
    if path.exists():
        if path.read_bytes() == text:
            return False
        if not overwrite:
            raise DnnsepError(
                f"{path}: exists with other mixtures (another seed or option?); pass --overwrite to replace it"
            )

    atomic_write(path, lambda tmp: Path(tmp).write_bytes(text))
    return True


def read_list(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a list written by :func:`write_list`; one-line errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DnnsepError(f"{path}: no such mixture list; run egs/librispeech/common/prepare.sh first")
    try:
        lst = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise DnnsepError(f"{path}: not valid JSON ({err}); rerun prepare with --overwrite") from None
    if not isinstance(lst, dict) or lst.get("format") != FORMAT:
        raise DnnsepError(f'{path}: not a dnnsep mixture list (no "format": "{FORMAT}")')
    if lst.get("version") not in (VERSION, SCENE_VERSION):
        raise DnnsepError(
            f"{path}: list version {lst.get('version')}, this dnnsep reads versions {VERSION}-{SCENE_VERSION}; "
            "rerun prepare"
        )
    n = lst["n_sources"]
    for i, mix in enumerate(lst["mixtures"]):
        if len(mix["sources"]) != n:
            raise DnnsepError(f"{path}: mixture {i} ({mix['id']}) has {len(mix['sources'])} sources, expected {n}")
    return lst


def summarize(lst: dict[str, Any]) -> dict[str, Any]:
    """``{'mixtures': int, 'hours': float, 'speakers': int}`` of a list."""
    frames = sum(mix["frames"] for mix in lst["mixtures"])
    speakers = {src["speaker"] for mix in lst["mixtures"] for src in mix["sources"]}
    return {"mixtures": len(lst["mixtures"]), "hours": frames / lst["sample_rate"] / 3600, "speakers": len(speakers)}
