"""An offline corpus that sounds like speech: synthesised voices reading generated sentences, in LibriSpeech's layout.

Where LibriSpeech cannot be downloaded, :func:`make_offline_corpus` writes a stand-in that ``prepare
--librispeech_root`` takes as it is.  Each speaker is one voice of one synthesiser; the voices are split
between the subsets, so the dev and test speakers are voices never heard in training.

- **espeak-ng** (``apt-get install espeak-ng``, also Homebrew), formant synthesis: an English accent (or,
  now and then, a Latin-script language reading English words), a voice variant (female or male), a
  pitch and a speed, all drawn from the seed; its ~80 usable variants x pitch x speed give as many
  distinct voices as a corpus needs, much faster than real time.
- **flite** and **festival** (:mod:`dnnsep.data.synthesisers`), statistical parametric and diphone
  synthesis: a few voices each, varied by speed and a warp of pitch and formants.

``engine='auto'`` (the recipes') is espeak-ng alone: with flite's voices beside it the main job scored
1.2 dB worse on festival's voices, an engine held out of training, and no better elsewhere
(``bench/results/main_job_engines_native.json``); the benches test on festival.  Without espeak the NumPy
synthesiser of :mod:`dnnsep.data.synthetic` is the last resort.

The audio is byte-identical for a seed on given engine versions (their output is deterministic;
resampling to 16 kHz is plain NumPy).

>>> words = sentence_words(np.random.default_rng(0), 12)
>>> len(words), words[-1][-1]
(12, '.')
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import DnnsepError
from . import synthesisers, synthetic
from .synthesisers import EngineVoice

SYNTHESISERS = ("espeak", "festival", "flite")
AUTO = ("espeak",)  # what 'auto' uses: with flite too the main job did worse on festival (main_job_engines_native)
ENGLISH = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")  # fmt: skip
OTHER_LANGUAGES = ("de", "nl", "es")  # read English words with their own letter-to-sound rules: foreign accents
# espeak-ng 1.51 variants by sex; robotic, whispering, child-like and novelty ones are left out.
FEMALE = ("Alicia", "Andrea", "Annie", "aunty", "belinda", "linda", "steph", "steph2", "steph3", "anika",
          "f1", "f2", "f3", "f4", "f5", "grandma")  # fmt: skip
MALE = ("adam", "Alex", "Andy", "antonio", "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed",
        "edward", "edward2", "Gene", "Gene2", "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4",
        "Jacky", "john", "kaukovalta", "Lee", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel",
        "Mike", "Nguyen", "pablo", "paul", "pedro", "RicishayMax", "RicishayMax2", "RicishayMax3", "rob",
        "robert", "Storm", "Tweaky", "AnxiousAndy", "grandpa", "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
        "klatt6", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "norbert", "sandro", "shelby", "travis",
        "victor")  # fmt: skip
PITCH = (12, 88)  # espeak -p range used (0-99; 50 is the variant's own pitch)
SPEED = (135, 185)  # espeak -s range used, words per minute
AMPLITUDE = 50  # espeak -a (default 100 clips some variants)
MARGIN = 0.1  # seconds of silence kept before and after the speech

NAMES = tuple("Anna Ben Clara David Emma Frank Grace Henry Iris Jack Laura Mark Nora Oliver Paul Rose".split())
ADJECTIVES = (
    "old young small large quiet busy bright dark cold warm green yellow heavy gentle sudden careful "
    "distant narrow simple strange little famous empty golden silver wooden ancient lazy clever happy"
)
NOUNS = (
    "house river garden window letter morning kitchen island village forest doctor teacher farmer sailor "
    "captain horse market mountain bridge table candle basket ladder winter summer evening question story "
    "picture journey station harbour orchard lantern kettle blanket pocket meadow castle carriage"
)
VERBS = (
    "found opened carried painted followed watched reached answered noticed cleaned visited crossed "
    "remembered wanted finished pulled lifted covered described mended borrowed ordered"
)
INTRANSITIVE = "waited smiled laughed listened wandered arrived rested whispered hurried travelled stayed returned"
ADVERBS = "slowly quietly early later again together carefully suddenly always often gladly softly"
PREPOSITIONS = "near behind across beside under over towards beyond along around through inside"
TEMPLATES = (  # A adjective, N noun, V verb, I intransitive verb, D adverb, P preposition, X name
    "the A N V the N .", "X V a A N P the N .", "we I D P the A N .", "after the N I , X V the A N .",
    "had X V the A N ?", "the A N and the N I D .", "X I D P the A N .", "when the N I , we V a N .",
    "where did the A N go ?", "X said that the N was A .", "there was a A N P the N .",
    "in the A N , X V the N D .", "the N V X P the N .", "X and X I P the N .",
)  # fmt: skip
WORDS = {key: tuple(value.split()) for key, value in
         dict(A=ADJECTIVES, N=NOUNS, V=VERBS, I=INTRANSITIVE, D=ADVERBS, P=PREPOSITIONS).items()}  # fmt: skip


@dataclass(frozen=True)
class EspeakVoice:
    """One speaker: espeak language/accent, variant, pitch (-p, 0-99), speed (-s, words per minute), sex."""

    language: str
    variant: str
    pitch: int
    speed: int
    sex: str

    @property
    def spec(self) -> str:
        """The espeak options, as typed: ``'en-us+f3 -p 57 -s 160'``."""
        return f"{self.language}+{self.variant} -p {self.pitch} -s {self.speed}"

    def args(self) -> list[str]:
        return ["-v", f"{self.language}+{self.variant}", "-p", str(self.pitch), "-s", str(self.speed)]


def espeak_binary() -> str | None:
    """The path of ``espeak-ng`` (or else ``espeak``) on the PATH, or None."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def parse_engine(engine: str) -> tuple[str, ...]:
    """The synthesisers an ``engine`` option names: ``'espeak+festival'`` -> ``('espeak', 'festival')``;
    ``'auto'``: :data:`AUTO` (``('numpy',)`` without espeak-ng).

    >>> parse_engine("flite+espeak")
    ('espeak', 'flite')
    """
    if engine == "auto":
        return AUTO if espeak_binary() else ("numpy",)
    names = tuple(engine.split("+"))
    if engine == "numpy":
        return names
    if not names or any(n not in SYNTHESISERS for n in names) or len(set(names)) < len(names):
        raise DnnsepError(f"engine must be auto, numpy or a '+' list of {', '.join(SYNTHESISERS)}, got {engine!r}")
    return tuple(sorted(names, key=SYNTHESISERS.index))


def missing(engine: str) -> str | None:
    """A line saying which synthesisers of ``engine`` are not installed here and how to install them, or None."""
    lines = []
    for name in parse_engine(engine):
        if name == "espeak" and not espeak_binary():
            lines.append("espeak-ng not found on the PATH (apt-get install espeak-ng / brew install espeak-ng)")
        elif name in synthesisers.ENGINES and not synthesisers.installed(name):
            lines.append(f"{name} or its voices not found ({synthesisers.ENGINES[name][1]})")
    return "; ".join(lines) or None


@cache
def installed(binary: str) -> tuple[frozenset[str], frozenset[str], str]:
    """(languages, variants, version line) of the espeak at ``binary``, from ``--voices`` and ``--voices=variant``."""
    languages = {line.split()[1] for line in _espeak_text(binary, "--voices").splitlines()[1:] if line.split()}
    variants = set(re.findall(r"!v/(\S+)", _espeak_text(binary, "--voices=variant")))
    return frozenset(languages), frozenset(variants), _espeak_text(binary, "--version").split("  Data at")[0].strip()


def _espeak_text(binary: str, *args: str) -> str:
    done = subprocess.run([binary, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise DnnsepError(f"{binary} {' '.join(args)} failed: {done.stderr.strip()[:200]}")
    return done.stdout


def variant_groups(binary: str, subsets: Sequence[str], seed: int) -> dict[str, list[list[str]]]:
    """The installed variants of each sex, shuffled and split between ``subsets`` by ``seed``: {sex: [variants of
    each subset]}, the first subset (training) half of them."""
    _, variants, _ = installed(binary)
    rng = np.random.default_rng([seed, 7777])
    groups = {sex: synthesisers.split(list(rng.permutation([v for v in names if v in variants])), len(subsets))
              for sex, names in (("F", FEMALE), ("M", MALE))}  # fmt: skip
    for sex, parts in groups.items():
        if not all(parts):
            raise DnnsepError(f"{binary}: too few {sex} variants to give each of {len(subsets)} subsets its own")
    return groups


def plan_voices(
    *, binary: str, subsets: Sequence[str], n_speakers: int, seed: int, content_seed: int | None = None
) -> dict[str, list[EspeakVoice]]:
    """The voice of each speaker of each subset (in speaker order), all distinct.

    The installed variants of each sex are shuffled and split by ``seed``: the first subset (training)
    gets half, the others share the rest, so no variant (hence no voice) is heard in two subsets.
    Within a subset the sexes are balanced, variants are used in turn, and speakers that share a
    variant get pitches in different bands; accents, pitches and speeds are drawn from
    ``content_seed`` (default: ``seed``), so another content seed gives new voices on the same split.
    """
    content_seed = seed if content_seed is None else content_seed
    languages, variants, _ = installed(binary)
    accents = [v for v in ENGLISH if v in languages]
    if not accents:
        raise DnnsepError(f"{binary} has none of the English voices {', '.join(ENGLISH)}; check espeak --voices")
    english, accents = accents, accents + [v for v in OTHER_LANGUAGES if v in languages]
    groups = variant_groups(binary, subsets, seed)
    plan, seen = {}, set()
    for s_index, subset in enumerate(subsets):
        rng = np.random.default_rng([content_seed, s_index, 7777])
        n_female = n_speakers // 2 + int(n_speakers % 2 and rng.random() < 0.5)
        sexes = rng.permutation(["F"] * n_female + ["M"] * (n_speakers - n_female))
        langs = list(rng.permutation(accents + english))  # English accents twice as often
        voices, count = [], {"F": 0, "M": 0}
        slots = {
            sex: rng.permutation(len(parts[s_index])) for sex, parts in groups.items()
        }  # pitch slot of each variant
        for i, sex in enumerate(sexes):
            names, j = groups[sex][s_index], count[sex]  # the j-th speaker of this sex
            count[sex] += 1
            rounds = -(-(n_female if sex == "F" else n_speakers - n_female) // len(names))
            # variants stratified over the pitch range; the r-th speaker of a variant shifted by r / rounds of it
            slot = slots[sex][j % len(names)] + rng.uniform(0.2, 0.8)
            place = (slot / len(names) + j // len(names) / rounds) % 1.0
            while True:
                voice = EspeakVoice(
                    language=str(langs[i % len(langs)]), variant=str(names[j % len(names)]),
                    pitch=int(round(PITCH[0] + place * (PITCH[1] - PITCH[0]))),
                    speed=int(rng.integers(SPEED[0], SPEED[1] + 1)), sex=str(sex),
                )  # fmt: skip
                if voice not in seen:
                    break
            seen.add(voice)
            voices.append(voice)
        plan[subset] = voices
    return plan


def sentence_words(rng: np.random.Generator, n_words: int) -> list[str]:
    """``n_words`` words of generated English sentences (punctuation attached; the last word ends a sentence)."""
    words: list[str] = []
    while len(words) < n_words:
        sentence = []
        for token in TEMPLATES[rng.integers(len(TEMPLATES))].split():
            if token in WORDS:
                sentence.append(str(WORDS[token][rng.integers(len(WORDS[token]))]))
            elif token == "X":
                sentence.append(str(NAMES[rng.integers(len(NAMES))]))
            elif token in ".,?":
                sentence[-1] += token
            else:
                sentence.append(token)
        sentence = [("an" if w == "a" and nxt[0] in "aeiou" else w) for w, nxt in zip(sentence, sentence[1:] + ["."])]
        sentence[0] = sentence[0].capitalize()
        words += sentence
    return _end(words[:n_words])


def _end(words: list[str]) -> list[str]:
    """``words`` with the last one ending a sentence."""
    return words[:-1] + [words[-1] if words[-1][-1] in ".?" else words[-1].rstrip(",") + "."]


def transcript(words: Sequence[str]) -> str:
    """LibriSpeech style: upper case, no punctuation.  ``['Hello,', 'there.'] -> 'HELLO THERE'``."""
    return " ".join(w.strip(".,?").upper() for w in words)


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling in the frequency domain (zero-padded, the top 5 % of the band tapered).

    Shape: (frames,) -> (round(frames * new_rate / orig_rate),).

    >>> t = np.arange(22050) / 22050
    >>> y = resample(np.sin(2 * np.pi * 1000 * t), 22050, 16000)
    >>> len(y), int(np.argmax(np.abs(np.fft.rfft(y)))), bool(np.abs(y[100:-100] - np.sin(2 * np.pi * 1000
    ...     * np.arange(16000) / 16000)[100:-100]).max() < 1e-3)
    (16000, 1000, True)
    """
    if orig_rate == new_rate:
        return audio.astype(np.float64)
    step = orig_rate // gcd(orig_rate, new_rate)  # input samples per whole number of output samples
    pad = step * -(-orig_rate // 20 // step)  # >= 50 ms of zeros each side, so nothing wraps around
    tail = pad + (-(len(audio) + 2 * pad)) % step
    padded = np.concatenate([np.zeros(pad), audio, np.zeros(tail)])  # (n,), n a multiple of step
    n, m = len(padded), len(padded) * new_rate // orig_rate
    spectrum = np.fft.rfft(padded)  # (n // 2 + 1,)
    keep = min(len(spectrum), m // 2 + 1)
    out = np.zeros(m // 2 + 1, dtype=complex)
    out[:keep] = spectrum[:keep]
    edge = int(0.05 * keep)
    out[keep - edge : keep] *= 0.5 + 0.5 * np.cos(np.pi * np.arange(1, edge + 1) / (edge + 1))
    y = np.fft.irfft(out, n=m) * (m / n)  # (m,)
    start = pad * new_rate // orig_rate
    return y[start : start + round(len(audio) * new_rate / orig_rate)]


def trim(audio: np.ndarray, sample_rate: int, *, threshold_db: float = -40.0) -> np.ndarray:
    """Drop leading/trailing silence (10 ms frames under ``threshold_db`` re the loudest), keeping ``MARGIN`` s."""
    frame = sample_rate // 100
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1))  # (n,)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    margin = int(MARGIN * sample_rate)
    return audio[max(0, loud[0] * frame - margin) : min(len(audio), (loud[-1] + 1) * frame + margin)]


def speak(binary: str, voice: EspeakVoice | EngineVoice, text: str) -> tuple[np.ndarray, int]:
    """``text`` read by ``voice``: (float64 samples, the engine's sample rate).  Shape: (frames,)."""
    if isinstance(voice, EngineVoice):
        return synthesisers.speak(voice, text)
    done = subprocess.run([binary, *voice.args(), "-a", str(AMPLITUDE), "--stdout", text], capture_output=True)
    if done.returncode != 0 or not done.stdout:
        raise DnnsepError(f"{binary} {voice.spec} failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float64")
    return audio, rate


def utterance(
    binary: str | None,
    voice: EspeakVoice | EngineVoice,
    rng: np.random.Generator,
    seconds: tuple[float, float],
    sample_rate: int,
) -> tuple[np.ndarray, str]:
    """A few sentences read by ``voice``, between ``seconds`` long where words allow.  Shape: (frames,), float32.

    The number of words is guessed from the speed, then corrected from the measured length (a bracketing
    search, up to 8 tries); the first try ends on a whole sentence when one ends within 3 words.
    """
    low, high = seconds
    target = rng.uniform(low, high)
    pool = sentence_words(rng, int(high * max(SPEED[1], voice.speed) / 60 * 3) + 8)
    n = max(1, round(target * voice.speed / 60 * 0.9))
    ends = [e for e in range(max(1, n - 3), n + 4) if e <= len(pool) and pool[e - 1][-1] in ".?"]
    n = min(ends, key=lambda e: abs(e - n)) if ends else n
    fewest, most = 1, len(pool)  # the word counts still worth trying
    best, best_miss = None, np.inf
    for _ in range(8):
        words = _end(pool[:n])
        audio, rate = speak(binary, voice, " ".join(words))
        audio = trim(audio, rate)
        length = len(audio) / rate
        miss = max(low - length, length - high, 0.0)
        if miss < best_miss:
            best, best_miss = (audio, rate, words), miss
        if miss == 0.0:
            break
        fewest, most = (n + 1, most) if length < low else (fewest, n - 1)
        if fewest > most:
            break
        n = min(most, max(fewest, round(n * target / length)))
    audio, rate, words = best
    audio = np.clip(resample(audio, rate, sample_rate), -1.0, 1.0)
    fade = np.sin(0.5 * np.pi * np.linspace(0.0, 1.0, min(len(audio) // 2, sample_rate // 100)))  # 10 ms, no clicks
    audio[: len(fade)] *= fade
    audio[len(audio) - len(fade) :] *= fade[::-1]
    return audio.astype(np.float32), transcript(words)


def plan_speakers(
    engines: Sequence[str],
    *,
    subsets: Sequence[str],
    n_speakers: int,
    seed: int,
    content_seed: int | None = None,
    avoid: Sequence[str] = (),
    binary: str | None = None,
) -> dict[str, list[EspeakVoice | EngineVoice]]:
    """Each subset's speakers, shared out between ``engines``, then shuffled.

    An engine's share of a subset's speakers is in proportion to the voices it has there: espeak-ng's
    variants, and :data:`~dnnsep.data.synthesisers.VOICE_UNITS` for each of another engine's voices (a
    voice warped over its range sounds like a few people, not like fifty), so no voice dominates a
    subset and few mixtures pair a voice with a warped copy of itself.  Each engine's voices are
    planned on their own (:func:`plan_voices` for espeak, :func:`dnnsep.data.synthesisers.plan_voices`
    for the others), so no voice is in two subsets.  ``avoid`` names engines a model was trained on:
    voices recorded from a person one of them voices are left out (festival's ``cmu_us_slt_arctic_hts``
    after flite's ``slt``).  One engine alone: its plan as it is.
    """
    content_seed = seed if content_seed is None else content_seed
    binary = binary or espeak_binary()
    if len(engines) == 1 and engines[0] == "espeak":
        return plan_voices(binary=binary, subsets=subsets, n_speakers=n_speakers, seed=seed, content_seed=content_seed)
    heard = frozenset().union(*(synthesisers.recorded(e) for e in avoid if e in synthesisers.ENGINES))
    units = {}  # engine -> {subset: voices there, in espeak variants}
    for engine in engines:
        if engine == "espeak":
            groups = variant_groups(binary, subsets, seed)
            units[engine] = {s: sum(len(parts[i]) for parts in groups.values()) for i, s in enumerate(subsets)}
        else:
            parts = synthesisers.voices_by_subset(engine, subsets=subsets, seed=seed, avoid=heard)
            units[engine] = {s: synthesisers.VOICE_UNITS * len(parts[s]) for s in subsets}
    counts = {e: {} for e in engines}  # largest remainder: each engine's share of each subset's speakers
    for subset in subsets:
        total = sum(units[e][subset] for e in engines)
        exact = {e: n_speakers * units[e][subset] / total for e in engines}
        share = {e: int(exact[e]) for e in engines}
        for e in sorted(engines, key=lambda e: share[e] - exact[e])[: n_speakers - sum(share.values())]:
            share[e] += 1
        for e in engines:
            counts[e][subset] = share[e]
    plans = []
    for engine in engines:
        if engine == "espeak":
            most = max(counts[engine].values())
            plan = plan_voices(binary=binary, subsets=subsets, n_speakers=most, seed=seed, content_seed=content_seed)
            plans.append({s: plan[s][: counts[engine][s]] for s in subsets})
        else:
            plans.append(synthesisers.plan_voices(engine, subsets=subsets, n_speakers=counts[engine], seed=seed,
                                                  content_seed=content_seed, avoid=heard))  # fmt: skip
    out = {}
    for s_index, subset in enumerate(subsets):
        voices = [v for plan in plans for v in plan[subset]]
        order = np.random.default_rng([content_seed, s_index, 7779]).permutation(len(voices))
        out[subset] = [voices[k] for k in order]
    return out


def make_corpus(
    root: str | os.PathLike,
    *,
    engines: Sequence[str] = ("espeak",),
    subsets: Sequence[str] = synthetic.SUBSETS,
    n_speakers: int = 8,
    utts_per_speaker: int = 3,
    seconds: float | tuple[float, float] = (4.0, 6.0),
    seed: int = 0,
    content_seed: int | None = None,
    only: Sequence[str] | None = None,
    avoid: Sequence[str] = (),
    sample_rate: int = 16000,
    workers: int = 2,
    binary: str | None = None,
) -> Path:
    """Like :func:`dnnsep.data.synthetic.make_corpus` (same layout, speaker ids, SPEAKERS.TXT) with the voices
    of one or more synthesisers (``engines``: espeak, festival, flite; :func:`plan_speakers`).

    Writes ``<root>/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` (16-bit, mono,
    ``sample_rate``) + ``*.trans.txt``, ``SPEAKERS.TXT`` (its NAME column is the engine and voice) and
    ``README.TXT``; returns ``<root>/LibriSpeech``.  ``workers`` utterances are synthesised at a time.

    ``content_seed`` (default ``seed``) draws the voices' accents, pitches, speeds and warps and the
    sentences, ``seed`` the split of voices between subsets; ``only`` writes those subsets alone (the
    split still made over all of ``subsets``): a fresh test subset, say, whose voices no training subset
    heard.  ``avoid``: engines a model to be tested was trained on (see :func:`plan_speakers`).
    """
    binary = binary or espeak_binary()
    lacking = missing("+".join(engines))
    if lacking:
        raise DnnsepError(f"{lacking}; or use engine='numpy'")
    if not 1 <= n_speakers <= 999 or utts_per_speaker < 1 or workers < 1:
        raise DnnsepError(f"need 1 <= n_speakers <= 999, utts_per_speaker >= 1, workers >= 1, "
                          f"got {n_speakers}, {utts_per_speaker}, {workers}")  # fmt: skip
    low, high = (seconds, seconds) if isinstance(seconds, (int, float)) else seconds
    if not 0.5 <= low <= high:
        raise DnnsepError(f"seconds must be a range within [0.5, inf), got {seconds}")
    plan = plan_speakers(engines, subsets=subsets, n_speakers=n_speakers, seed=seed, content_seed=content_seed,
                         avoid=avoid, binary=binary)  # fmt: skip
    content_seed = seed if content_seed is None else content_seed
    unknown = sorted(set(only or ()) - set(subsets))
    if unknown:
        raise DnnsepError(f"only: {', '.join(unknown)} not among the subsets {', '.join(subsets)}")
    corpus = Path(root) / "LibriSpeech"
    jobs = []  # (subset index, speaker index, utterance index, voice, folder)
    for s_index, subset in enumerate(subsets):
        if only and subset not in only:
            continue
        for v_index, voice in enumerate(plan[subset]):
            spk = (s_index + 1) * 1000 + v_index
            folder = corpus / subset / str(spk) / str(spk * 10 + 1)
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [(s_index, v_index, u, voice, folder) for u in range(utts_per_speaker)]

    def work(job) -> tuple[str, float]:
        s_index, v_index, u, voice, folder = job
        rng = np.random.default_rng([content_seed, s_index, v_index, u])
        audio, text = utterance(binary, voice, rng, (float(low), float(high)), sample_rate)
        utt = f"{folder.parent.name}-{folder.name}-{u:04d}"
        sf.write(folder / f"{utt}.flac", audio, sample_rate, subtype="PCM_16")
        return f"{utt} {text}", len(audio) / sample_rate

    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(work, jobs))
    speakers_txt = [";ID  |SEX| SUBSET           |MINUTES| NAME"]
    for start in range(0, len(jobs), utts_per_speaker):
        s_index, _, _, voice, folder = jobs[start]
        lines = [line for line, _ in done[start : start + utts_per_speaker]]
        minutes = sum(length for _, length in done[start : start + utts_per_speaker]) / 60
        (folder / f"{folder.parent.name}-{folder.name}.trans.txt").write_text("\n".join(lines) + "\n")
        name = voice.spec if isinstance(voice, EngineVoice) else f"espeak-ng {voice.spec}"
        speakers_txt.append(f"{folder.parent.name:<5}| {voice.sex} | {subsets[s_index]:<16} | {minutes:5.2f} | "
                            f"{name}")  # fmt: skip
    (corpus / "SPEAKERS.TXT").write_text("\n".join(speakers_txt) + "\n")
    made_with = [installed(binary)[2] if e == "espeak" else synthesisers.version(e) for e in engines]
    (corpus / "README.TXT").write_text(
        f"Offline speech corpus in LibriSpeech's layout, made by dnnsep with {'; '.join(made_with)}:\n"
        f"one {' or '.join(engines)} voice per speaker (SPEAKERS.TXT), reading generated sentences; "
        "no voice in two subsets.\n"
    )
    return corpus


@dataclass(frozen=True)
class OfflineCorpus:
    """What :func:`make_offline_corpus` wrote: the ``LibriSpeech`` folder, the engine(s) used, how many voices."""

    path: Path
    engine: str
    voices: int


def make_offline_corpus(
    root: str | os.PathLike,
    *,
    engine: str = "auto",
    subsets: Sequence[str] = synthetic.SUBSETS,
    n_speakers: int = 8,
    utts_per_speaker: int = 3,
    seconds: float | tuple[float, float] = (4.0, 6.0),
    seed: int = 0,
    workers: int = 2,
    content_seed: int | None = None,
    only: Sequence[str] | None = None,
    avoid: Sequence[str] = (),
) -> OfflineCorpus:
    """A LibriSpeech stand-in under ``<root>/LibriSpeech``: the voices of ``engine`` (a '+' list of
    synthesisers, :func:`parse_engine`; ``'auto'``: espeak-ng), else the NumPy
    synthesiser (``'numpy'``, or ``'auto'`` without espeak-ng).  ``engine`` names the engines used."""
    engines = parse_engine(engine)
    sizes = dict(subsets=subsets, n_speakers=n_speakers, utts_per_speaker=utts_per_speaker, seconds=seconds, seed=seed)
    if engines != ("numpy",):
        path = make_corpus(root, engines=engines, workers=workers, content_seed=content_seed, only=only, avoid=avoid,
                           **sizes)  # fmt: skip
    elif content_seed is not None or only or avoid:
        raise DnnsepError("content_seed, only and avoid need a speech synthesiser (espeak-ng, festival, flite)")
    else:
        path = synthetic.make_corpus(root, **sizes)
    return OfflineCorpus(path=path, engine="+".join(engines), voices=len(only or subsets) * n_speakers)
