"""The offline corpus: espeak-ng voices in LibriSpeech's layout, deterministic, one voice per speaker, none in
two subsets; the numpy synthesiser when espeak-ng is missing.  (festival and flite: test_synthesisers.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dnnsep.bin import make_corpus as make_corpus_cli
from dnnsep.bin import prepare
from dnnsep.data import synthetic, tts
from dnnsep.data.librispeech import scan_subset
from dnnsep.errors import DnnsepError

TINY = dict(n_speakers=2, utts_per_speaker=2, seconds=(1.0, 2.0), seed=3)


def files(corpus: Path) -> dict[str, bytes]:
    return {p.relative_to(corpus).as_posix(): p.read_bytes() for p in sorted(corpus.rglob("*")) if p.is_file()}


def no_espeak(monkeypatch) -> None:
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)


@pytest.fixture(scope="module")
def espeak_corpus(tmp_path_factory) -> Path:
    return tts.make_offline_corpus(tmp_path_factory.mktemp("tts") / "a", engine="espeak", **TINY).path


def test_numpy_engine_is_the_synthetic_corpus(tmp_path):
    made = tts.make_offline_corpus(tmp_path / "a", engine="numpy", **TINY)
    assert made.engine == "numpy" and made.voices == 6 and made.path == tmp_path / "a" / "LibriSpeech"
    assert files(made.path) == files(synthetic.make_corpus(tmp_path / "b", **TINY))


def test_auto_falls_back_to_numpy_without_espeak(tmp_path, monkeypatch, capsys):
    no_espeak(monkeypatch)
    assert tts.parse_engine("auto") == ("numpy",)
    assert tts.make_offline_corpus(tmp_path / "a", subsets=("dev-clean",), **TINY).engine == "numpy"
    with pytest.raises(DnnsepError, match="espeak-ng not found"):
        tts.make_offline_corpus(tmp_path / "b", engine="espeak", **TINY)
    assert make_corpus_cli.main([str(tmp_path / "c"), "--n_speakers", "2", "--utts_per_speaker", "1",
                                 "--seconds", "1", "1.5", "--subsets", "dev-clean"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("espeak-ng not found: numpy synthesiser")
    assert (tmp_path / "c" / "LibriSpeech" / "dev-clean").is_dir()


@pytest.mark.parametrize("engine", ["mbrola", "espeak+espeak", "espeak+", "numpy+espeak"])
def test_bad_engine_is_refused(tmp_path, engine):
    with pytest.raises(DnnsepError, match="engine must be auto, numpy or a '\\+' list of espeak, festival, flite"):
        tts.make_offline_corpus(tmp_path, engine=engine)


def test_layout_is_librispeech_and_prepare_takes_it(espeak_corpus, tmp_path):
    reference = synthetic.make_corpus(tmp_path / "numpy", **TINY)
    assert files(espeak_corpus).keys() == files(reference).keys()  # same folders, names, SPEAKERS.TXT, ...
    for subset in synthetic.SUBSETS:
        utterances = scan_subset(espeak_corpus.parent, subset, progress=False)  # 16 kHz mono, or it raises
        assert len(utterances) == 4 and all(16000 <= u.frames <= 2 * 16000 for u in utterances)
        for trans in (espeak_corpus / subset).glob("*/*/*.trans.txt"):
            ids = [line.split(" ", 1)[0] for line in trans.read_text().splitlines()]
            assert ids == sorted(p.stem for p in trans.parent.glob("*.flac"))
            assert all(line.split(" ", 1)[1].replace(" ", "").isalpha() for line in trans.read_text().splitlines())
    info = sf.info(next(espeak_corpus.rglob("*.flac")))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", 16000, 1)
    assert prepare.main([str(tmp_path / "data"), "2", "--librispeech_root", str(espeak_corpus.parent),
                         "--no_progress", "--segment", "1", "--eval_segment", "1"]) == 0  # fmt: skip
    assert (tmp_path / "data" / "2mix" / "test.json").is_file()


def test_same_seed_same_bytes(espeak_corpus, tmp_path):
    again = tts.make_offline_corpus(tmp_path / "b", engine="espeak", **TINY).path
    assert files(again) == files(espeak_corpus)
    other = tts.make_offline_corpus(tmp_path / "c", engine="espeak", **{**TINY, "seed": 4}).path
    assert (
        files(other)["dev-clean/2000/20001/2000-20001-0000.flac"]
        != files(again)["dev-clean/2000/20001/2000-20001-0000.flac"]
    )


def test_speakers_txt_names_each_speakers_voice(espeak_corpus):
    rows = [line.split("|") for line in (espeak_corpus / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    voices = {row[0].strip(): row[4].strip() for row in rows}
    assert len(voices) == 6 and len(set(voices.values())) == 6
    assert all(voice.startswith("espeak-ng ") and " -p " in voice for voice in voices.values())


@pytest.mark.parametrize("seed", [0, 1])
def test_voices_are_distinct_and_no_subset_shares_one(seed):
    plan = tts.plan_voices(binary=tts.espeak_binary(), subsets=synthetic.SUBSETS, n_speakers=30, seed=seed)
    voices = [v for subset in synthetic.SUBSETS for v in plan[subset]]
    assert len(voices) == 90 and len({v.spec for v in voices}) == 90
    variants = [{v.variant for v in plan[subset]} for subset in synthetic.SUBSETS]
    assert not (variants[0] & variants[1] or variants[0] & variants[2] or variants[1] & variants[2])
    for subset in synthetic.SUBSETS:
        sexes = [v.sex for v in plan[subset]]
        assert sexes.count("F") == sexes.count("M") == 15
        pitches = [v.pitch for v in plan[subset]]
        assert min(pitches) < 30 and max(pitches) > 70  # spread over the range
        for variant in {v.variant for v in plan[subset]}:  # speakers sharing a variant: pitches far apart
            same = sorted(v.pitch for v in plan[subset] if v.variant == variant)
            assert all(b - a >= 10 for a, b in zip(same, same[1:])), (variant, same)


def test_cli_says_espeak(tmp_path, capsys):
    argv = [str(tmp_path / "c"), "--engine", "espeak", "--n_speakers", "2", "--utts_per_speaker", "1",
            "--seconds", "1", "1.5", "--subsets", "test-clean", "--mirror_dir", str(tmp_path / "mirror")]  # fmt: skip
    assert make_corpus_cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("synthesised with espeak-ng: 2 voices")
    assert (tmp_path / "mirror" / "test-clean.tar.gz").is_file()


def test_resample_keeps_a_tone_and_its_level():
    t = np.arange(2205) / 22050
    tone = 0.5 * np.sin(2 * np.pi * 3000 * t + 0.3)
    y = tts.resample(tone, 22050, 16000)
    expected = 0.5 * np.sin(2 * np.pi * 3000 * np.arange(1600) / 16000 + 0.3)
    assert y.shape == (1600,) and np.abs(y[50:-50] - expected[50:-50]).max() < 2e-3
    assert tts.resample(tone, 22050, 22050).shape == tone.shape


def test_espeak_binary_prefers_espeak_ng(monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: f"/bin/{name}" if name in ("espeak", "espeak-ng") else None)
    assert tts.espeak_binary() == "/bin/espeak-ng"
    monkeypatch.setattr(tts.shutil, "which", lambda name: "/bin/espeak" if name == "espeak" else None)
    assert tts.espeak_binary() == "/bin/espeak" and tts.parse_engine("auto") == ("espeak",)
