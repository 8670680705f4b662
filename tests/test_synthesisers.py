"""The offline corpus's other synthesisers, flite and festival: speakers shared out between engines, no voice
in two subsets, voices recorded from a person a training engine voices left out on request, the warp moving
pitch by its factor, deterministic bytes, and ``auto`` being espeak-ng alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dnnsep.bin import make_corpus as make_corpus_cli
from dnnsep.data import synthesisers, synthetic, tts
from dnnsep.data.librispeech import scan_subset
from dnnsep.data.synthesisers import EngineVoice
from dnnsep.errors import DnnsepError

TINY = dict(n_speakers=12, utts_per_speaker=1, seconds=(1.0, 2.0), seed=5, subsets=("dev-clean", "test-clean"))


def files(corpus: Path) -> dict[str, bytes]:
    return {p.relative_to(corpus).as_posix(): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file()}


def speakers(corpus: Path) -> dict[str, tuple[str, str]]:
    """speaker id -> (subset, voice) from SPEAKERS.TXT."""
    rows = [line.split("|") for line in (corpus / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    return {row[0].strip(): (row[2].strip(), row[4].strip()) for row in rows}


@pytest.fixture(scope="module")
def three_engines(tmp_path_factory) -> Path:
    return tts.make_offline_corpus(tmp_path_factory.mktemp("tts") / "a", engine="flite+espeak+festival", **TINY).path


def test_three_engines_share_each_subsets_speakers(three_engines):
    table = speakers(three_engines)
    for subset in TINY["subsets"]:
        engines = {voice.split()[0] for s, voice in table.values() if s == subset}
        assert engines == {"espeak-ng", "festival", "flite"}
        assert len(scan_subset(three_engines.parent, subset, progress=False)) == 12  # 16 kHz mono, or it raises
    # no engine voice in two subsets
    used = [{" ".join(v.split()[:2]) for s, v in table.values() if s == subset and not v.startswith("espeak")}
            for subset in TINY["subsets"]]  # fmt: skip
    assert used[0] and used[1] and not used[0] & used[1]
    readme = (three_engines / "README.TXT").read_text()
    assert "eSpeak NG" in readme and "festival" in readme and "flite-2.2" in readme


def test_same_seed_same_bytes(three_engines, tmp_path):
    again = tts.make_offline_corpus(tmp_path / "b", engine="espeak+festival+flite", **TINY).path
    assert files(again) == files(three_engines)


@pytest.mark.parametrize("engine", ["festival", "flite"])
def test_plan_gives_distinct_voices_and_no_voice_to_two_subsets(engine):
    subsets = synthetic.SUBSETS
    plan = synthesisers.plan_voices(engine, subsets=subsets, n_speakers=20, seed=1)
    voices = [v for s in subsets for v in plan[s]]
    assert len(voices) == 60 and len(set(voices)) == 60
    names = [{v.variant for v in plan[s]} for s in subsets]
    assert all(names) and not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])
    for subset in subsets:  # each voice's speakers spread over the warp range
        for name in {v.variant for v in plan[subset]}:
            warps = sorted(v.warp for v in plan[subset] if v.variant == name)
            assert len(warps) == 1 or (warps[-1] - warps[0] > 0.5 * (synthesisers.WARP[1] - synthesisers.WARP[0]))
            assert all(synthesisers.WARP[0] <= w <= synthesisers.WARP[1] for w in warps)


def test_avoid_leaves_out_people_a_training_engine_voices():
    every = {b.name for b in synthesisers.ENGINES["festival"][2]}
    plan = synthesisers.plan_voices("festival", subsets=["test-other"], n_speakers=30, seed=0,
                                    avoid=synthesisers.recorded("flite"))  # fmt: skip
    assert {v.variant for v in plan["test-other"]} == every - {"cmu_us_slt_arctic_hts"}  # flite has slt too
    plan = synthesisers.plan_voices("festival", subsets=["test-other"], n_speakers=30, seed=0)
    assert {v.variant for v in plan["test-other"]} == every
    with pytest.raises(DnnsepError, match="festival: 0 voice"):
        synthesisers.plan_voices("festival", subsets=["dev-clean"], n_speakers=2, seed=0,
                                 avoid=frozenset(b.recorded for b in synthesisers.ENGINES["festival"][2]))  # fmt: skip


@pytest.mark.parametrize("subsets", [("dev-clean", "test-clean"), synthetic.SUBSETS])
def test_engines_share_speakers_by_their_voices_so_no_voice_dominates(subsets):
    plan = tts.plan_speakers(("espeak", "flite"), subsets=subsets, n_speakers=200, seed=0)
    groups = tts.variant_groups(tts.espeak_binary(), subsets, 0)
    flite = synthesisers.voices_by_subset("flite", subsets=subsets, seed=0)
    for i, subset in enumerate(subsets):
        voices = plan[subset]
        assert len(voices) == 200 and len(set(voices)) == 200
        espeak_units = sum(len(parts[i]) for parts in groups.values())  # its variants there
        flite_units = synthesisers.VOICE_UNITS * len(flite[subset])
        n_flite = sum(isinstance(v, EngineVoice) for v in voices)
        assert abs(n_flite - 200 * flite_units / (espeak_units + flite_units)) < 1
        per_voice = [sum(getattr(v, "variant", None) == b.name for v in voices) for b in flite[subset]]
        assert max(per_voice) <= 200 * synthesisers.VOICE_UNITS / (espeak_units + flite_units) + 1
    # the speakers of the engines are interleaved, not in blocks
    kinds = [isinstance(v, EngineVoice) for v in plan[subsets[0]]]
    assert 0 < sum(kinds[:100]) < 100 and 0 < sum(kinds[100:]) < 100


def median_f0(audio: np.ndarray, rate: int) -> float:
    """The median pitch of voiced 40-ms frames, by autocorrelation (60-400 Hz), computed here."""
    frame, found = int(0.04 * rate), []
    for start in range(0, len(audio) - frame, frame):
        x = audio[start : start + frame]
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        c = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = rate // 400, rate // 60
        lag = lo + int(np.argmax(c[lo:hi]))
        if c[lag] > 0.4 * c[0]:
            found.append(rate / lag)
    return float(np.median(found))


@pytest.mark.parametrize("engine,voice", [("festival", "kal_diphone"), ("flite", "awb")])
def test_the_warp_moves_pitch_by_its_factor(engine, voice):
    f0 = {}
    for warp in (1.0, 1.15):
        v = EngineVoice(engine=engine, variant=voice, stretch=1.0, warp=warp, sex="M")
        audio, rate = synthesisers.speak(v, "The old house near the river was quiet, said Anna.")
        assert np.abs(audio).max() == pytest.approx(synthesisers.PEAK, abs=1e-3)
        f0[warp] = median_f0(tts.resample(audio, rate, 16000), 16000)
    assert f0[1.15] / f0[1.0] == pytest.approx(1.15, rel=0.05)


def test_auto_is_espeak_alone_and_a_missing_engine_is_named(tmp_path, capsys, monkeypatch):
    # the recipes' corpus: espeak-ng only (with flite beside it the main job did worse on festival's voices)
    assert tts.parse_engine("auto") == ("espeak",)
    argv = [str(tmp_path / "a"), "--engine", "espeak+flite", "--n_speakers", "24", "--utts_per_speaker", "1",
            "--seconds", "1", "1.5", "--subsets", "dev-clean", "test-clean"]  # fmt: skip
    assert make_corpus_cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("synthesised with espeak-ng + flite: 48 voices")
    monkeypatch.setattr(synthesisers, "installed", lambda engine: ())
    with pytest.raises(DnnsepError, match="festival or its voices not found .apt-get install festival"):
        tts.make_offline_corpus(tmp_path / "c", engine="espeak+festival", **TINY)


def test_wav_is_16_bit_16k(three_engines):
    info = sf.info(next(three_engines.rglob("*.flac")))
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 16000, 1)
