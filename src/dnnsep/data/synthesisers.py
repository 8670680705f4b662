"""Voices of two more speech synthesisers for the offline corpus: flite and festival.

espeak-ng (:mod:`dnnsep.data.tts`) is a formant synthesiser: every voice shares its sound.  A model
trained on it alone learns that sound as much as it learns voices, so the corpus also draws speakers
from synthesisers built another way, both packages that run offline:

- **flite** 2.2 (``apt-get install flite``, ``brew install flite``): CMU's clustergen voices ``awb``
  (Scottish), ``rms`` and ``slt`` (US), statistical parametric synthesis.  On request
  (``--engine espeak+flite``): measured, the main job trained on espeak-ng and flite voices did 1.2 dB
  worse on festival's voices than on espeak-ng's alone, so it trains on espeak-ng's.
- **festival** 2.5 (``apt-get install festival`` and the voices of :data:`FESTIVAL_VOICES`; MacPorts
  ``port install festival``, not in Homebrew): diphone concatenation (US English ``kal_diphone`` and
  ``ked_diphone``; Italian, Finnish and Czech voices reading English with their own letter-to-sound
  rules, foreign accents as espeak-ng's ``de`` or ``es``), unit selection (a Russian voice) and an HTS
  voice (``cmu_us_slt_arctic_hts``).  The benches hold festival out of training: its voices test
  whether a model learnt voices or its engines' sound.

Each has a handful of voices, so one speaker here is a voice, a speed (the engine's duration stretch)
and a *warp*: the synthesised audio resampled so that its pitch and formants all move by the same
factor, as between a longer and a shorter vocal tract (0.87-1.15, about 2.4 semitones either way).
Two synthesisers can voice the same recorded person (``slt`` is in both): :func:`plan_voices` leaves
out, on request, the voices recorded from a person another engine voices, so a test of festival after
training on flite hears nobody it trained on.  flite's diphone voice ``kal16`` is left out: festival's
``kal_diphone`` is the same recording, and diphone synthesis stays unheard in training.

Tried and left out: pico2wave and MBROLA (not in Debian main), piper-tts and coqui-tts (their voices are
weights fetched from a hub at run time, not offline).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DnnsepError


@dataclass(frozen=True)
class Base:
    """One voice an engine ships: its name there, sex and the person it was recorded from."""

    name: str
    sex: str
    recorded: str


FESTIVAL_VOICES = (  # the Debian packages of the festival voices below
    "festvox-kallpc16k",
    "festvox-kdlpc16k",
    "festvox-us-slt-hts",
    "festvox-italp16k",
    "festvox-itapc16k",
    "festvox-suopuhe-lj",
    "festvox-suopuhe-mv",
    "festvox-czech-dita",
    "festvox-czech-machac",
    "festvox-ru",
)
ENGINES = {  # engine -> (binary, install hint, voices)
    "festival": ("festival", f"apt-get install festival {' '.join(FESTIVAL_VOICES)} / port install festival",
                 (Base("kal_diphone", "M", "kal"), Base("ked_diphone", "M", "ked"),
                  Base("cmu_us_slt_arctic_hts", "F", "slt"), Base("lp_diphone", "F", "lp"),
                  Base("pc_diphone", "M", "pc"), Base("suo_fi_lj_diphone", "F", "lj"),
                  Base("hy_fi_mv_diphone", "M", "mv"), Base("czech_dita", "F", "dita"),
                  Base("czech_machac", "M", "machac"), Base("msu_ru_nsh_clunits", "M", "nsh"))),
    "flite": ("flite", "apt-get install flite / brew install flite",
              (Base("awb", "M", "awb"), Base("rms", "M", "rms"), Base("slt", "F", "slt"))),
}  # fmt: skip
WARP = (0.87, 1.15)  # pitch and formants times this (resampling)
VOICE_UNITS = 4  # a voice counts as this many espeak variants when speakers are shared between engines
STRETCH = (0.85, 1.2)  # duration stretch: 0.85 faster ... 1.2 slower than the voice's own rate
PEAK = 0.7  # every utterance's peak, before resampling
WORDS_PER_MINUTE = 165  # about each voice's own rate: the first guess of how many words fill a length


@dataclass(frozen=True)
class EngineVoice:
    """One speaker of flite or festival: a voice, its duration stretch and a warp of pitch and formants."""

    engine: str
    variant: str  # the engine's voice name (the unit split between subsets, as espeak's variants)
    stretch: float
    warp: float
    sex: str

    @property
    def spec(self) -> str:
        """``'flite awb stretch 1.05 warp 0.93'``."""
        return f"{self.engine} {self.variant} stretch {self.stretch:.2f} warp {self.warp:.3f}"

    @property
    def speed(self) -> float:
        """Words per minute, roughly: the first guess of how many words fill a length."""
        return WORDS_PER_MINUTE * self.warp / self.stretch


def binary(engine: str) -> str | None:
    """The path of ``engine``'s program on the PATH, or None."""
    return shutil.which(ENGINES[engine][0])


@cache
def installed(engine: str) -> tuple[str, ...]:
    """The names of ``engine``'s voices that are installed here (none when the engine is not)."""
    path = binary(engine)
    if path is None:
        return ()
    if engine == "festival":
        done = subprocess.run([path, "--pipe"], input="(print (voice.list))", capture_output=True, text=True)
        have = set(done.stdout.strip().strip("()").split())
    else:
        done = subprocess.run([path, "-lv"], capture_output=True, text=True)
        have = set(done.stdout.split(":", 1)[-1].split())
    return tuple(b.name for b in ENGINES[engine][2] if b.name in have)


@cache
def version(engine: str) -> str:
    """The engine's version line, for the corpus's README."""
    path = binary(engine)
    done = subprocess.run([path, "--version"], capture_output=True, text=True) if path else None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()] if done else []
    line = next((line for line in lines if "version" in line.lower()), lines[0] if lines else "")
    return f"{engine} ({line})" if line else engine


def voices_by_subset(
    engine: str, *, subsets: Sequence[str], seed: int, avoid: frozenset[str] = frozenset()
) -> dict[str, list[Base]]:
    """The installed voices of ``engine`` (less those recorded from a person in ``avoid``), shuffled and split
    between ``subsets`` by ``seed``: the first (training) gets half, the others share the rest (:func:`split`)."""
    have = installed(engine)
    bases = [b for b in ENGINES[engine][2] if b.name in have and b.recorded not in avoid]
    rng = np.random.default_rng([seed, 7778, sorted(ENGINES).index(engine)])
    parts = split([bases[i] for i in rng.permutation(len(bases))], len(subsets))
    if not all(parts):
        hint = ENGINES[engine][1]
        raise DnnsepError(f"{engine}: {len(bases)} voice(s) usable here, too few to give each of {len(subsets)} "
                          f"subsets its own; install them ({hint})")  # fmt: skip
    return dict(zip(subsets, parts))


def plan_voices(
    engine: str,
    *,
    subsets: Sequence[str],
    n_speakers: int | Mapping[str, int],
    seed: int,
    content_seed: int | None = None,
    avoid: frozenset[str] = frozenset(),
) -> dict[str, list[EngineVoice]]:
    """``n_speakers`` voices of ``engine`` for each subset (or ``n_speakers[subset]``), all distinct, no engine
    voice in two subsets (:func:`voices_by_subset`).

    Within a subset the speakers take the voices in turn; the r-th speaker of a voice gets a warp in the
    r-th of equal bands of :data:`WARP` and a stretch drawn from :data:`STRETCH` (``content_seed``,
    default ``seed``, draws both).
    """
    content_seed = seed if content_seed is None else content_seed
    parts = voices_by_subset(engine, subsets=subsets, seed=seed, avoid=avoid)
    index = sorted(ENGINES).index(engine)
    plan = {}
    for s_index, subset in enumerate(subsets):
        rng = np.random.default_rng([content_seed, s_index, 7778, index])
        count = n_speakers if isinstance(n_speakers, int) else n_speakers[subset]
        names, voices = parts[subset], []
        rounds = max(1, -(-count // len(names)))
        for j in range(count):
            base = names[j % len(names)]
            place = (j // len(names) + rng.uniform(0.1, 0.9)) / rounds
            voices.append(EngineVoice(
                engine=engine, variant=base.name, sex=base.sex,
                stretch=round(float(rng.uniform(*STRETCH)), 2), warp=round(WARP[0] + place * (WARP[1] - WARP[0]), 3),
            ))  # fmt: skip
        plan[subset] = voices
    return plan


def recorded(engine: str) -> frozenset[str]:
    """The people ``engine``'s installed voices were recorded from."""
    return frozenset(b.recorded for b in ENGINES[engine][2] if b.name in installed(engine))


def split(items: list, n: int) -> list[list]:
    """The first part gets half (rounded up) but leaves one for each other part where there are enough; the other
    ``n - 1`` parts share the rest evenly.

    >>> split([1, 2, 3, 4, 5], 2), split([1, 2, 3], 3), split([1, 2, 3, 4, 5, 6, 7], 3)
    ([[1, 2, 3], [4, 5]], [[1], [2], [3]], [[1, 2, 3, 4], [5, 7], [6]])
    """
    if n == 1:
        return [items]
    first = -(-len(items) // 2)
    if len(items) >= n:
        first = min(first, len(items) - (n - 1))
    return [items[:first]] + [items[first:][k :: n - 1] for k in range(n - 1)]


def _synthesise(path: str, voice: EngineVoice, text: str, wav: Path) -> subprocess.CompletedProcess:
    stretch = voice.stretch * voice.warp  # the warp speeds the audio up: a longer stretch gives it back
    if voice.engine == "festival":
        said = text.replace("\\", " ").replace('"', " ")
        script = (f"(voice_{voice.variant})(Parameter.set 'Duration_Stretch {stretch:.3f})"
                  f"(set! u (SynthText \"{said}\"))(utt.wave.rescale u {PEAK} t)"
                  f"(utt.save.wave u \"{wav}\" 'riff)")  # fmt: skip
        return subprocess.run([path, "--pipe"], input=script, capture_output=True, text=True)
    return subprocess.run([path, "-voice", voice.variant, "--setf", f"duration_stretch={stretch:.3f}", "-t", text,
                           "-o", str(wav)], capture_output=True, text=True)  # fmt: skip


def speak(voice: EngineVoice, text: str) -> tuple[np.ndarray, int]:
    """``text`` read by ``voice``: (float64 samples, their rate after the warp).  Shape: (frames,).

    The warp is a declared rate: audio synthesised at ``r`` Hz and played at ``r * warp`` Hz has its
    pitch and formants moved by ``warp`` (and is ``warp`` times faster, which the stretch allows for).
    """
    path = binary(voice.engine)
    if path is None:
        raise DnnsepError(f"{voice.engine} not found on the PATH; install it ({ENGINES[voice.engine][1]})")
    # festival's Italian diphone voices stop on some phone sequences of a question ("SIOD ERROR: wrong type of
    # argument"): read it as a statement then, without commas
    tries = [text] if voice.engine != "festival" else [text, text.replace("?", ".").replace(",", "")]
    for said in tries:
        with tempfile.TemporaryDirectory(prefix="dnnsep-tts-") as tmp:
            wav = Path(tmp) / "out.wav"
            done = _synthesise(path, voice, said, wav)
            if done.returncode == 0 and wav.is_file() and "SIOD ERROR" not in done.stdout + done.stderr:
                audio, rate = sf.read(wav, dtype="float64")
                break
    else:
        raise DnnsepError(f"{voice.engine} ({voice.spec}) failed on {text!r}: "
                          f"{(done.stderr or done.stdout).strip()[:200]}")  # fmt: skip
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    peak = np.abs(audio).max()
    if peak > 0:  # voices differ in level (and festival's diphones clip at their own): all peak at PEAK
        audio = audio * (PEAK / peak)
    return audio, int(round(rate * voice.warp))
