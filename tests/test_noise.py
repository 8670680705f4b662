"""Noise: SNR exactness, the synthetic kinds, noise folders split by split, bad options, and the
download of a noise corpus (resume, md5, truncated archive, members outside the corpus) against the
tests' loopback server."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest
import soundfile as sf
from corpus import MirrorServer

from dnnsep.bin import prepare
from dnnsep.data import noise
from dnnsep.data.lists import Rng
from dnnsep.errors import DnnsepError

SR = 8000


def snr_db(speech: np.ndarray, n: np.ndarray) -> float:
    return 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(n.astype(np.float64) ** 2))


def _talker(path, start, frames):
    return np.random.default_rng(len(path)).standard_normal(max(0, min(frames, 3000 - start))).astype(np.float32)


@pytest.mark.parametrize("kind", noise.KINDS)
def test_noise_lands_at_the_requested_snr_within_0_1_db(kind):
    speech = np.random.default_rng(0).standard_normal(SR).astype(np.float32) * 0.05
    params = {"kind": kind, "seed": 5, "snr_db": 0.0}
    if kind == "babble":
        params["talkers"] = [{"path": f"t{i}", "start": 0} for i in range(3)]
    raw = noise.render(params, SR, SR, _talker)
    assert raw.shape == (SR,) and np.isfinite(raw).all() and np.std(raw) > 0
    for target in (-5.0, 0.0, 7.3, 15.0):
        assert snr_db(speech, noise.scale_to_snr(speech, raw, target)) == pytest.approx(target, abs=0.1)


def test_coloured_noise_has_the_slope_of_its_colour():
    gen = np.random.default_rng(0)
    f = np.fft.rfftfreq(SR * 4, 1 / SR)
    band = (f > 50) & (f < 3000)
    for exponent in (1, 2):  # pink: -10 dB per decade of power, brown: -20
        power = np.abs(np.fft.rfft(noise.coloured(SR * 4, exponent, gen))) ** 2
        slope = np.polyfit(np.log10(f[band]), 10 * np.log10(power[band]), 1)[0]
        assert slope == pytest.approx(-10 * exponent, abs=2)


def test_hum_is_mains_frequency_and_harmonics():
    x = noise.render({"kind": "hum", "seed": 1, "snr_db": 0}, SR * 2, SR, _talker)
    f = np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(np.abs(np.fft.rfft(x)))]
    assert 49 < f < 51 or 59 < f < 61


@pytest.mark.parametrize("sample_rate", [SR, 400])  # at 400 Hz, harmonics from 200 Hz up are left out
def test_hum_is_its_harmonics_summed_as_written(sample_rate):
    """The recurrence that makes hum fast gives the sum of sines it stands for, with the same draws."""
    x = noise.render({"kind": "hum", "seed": 7, "snr_db": 0}, 3 * sample_rate, sample_rate, _talker)
    gen = np.random.default_rng(7)
    t = np.arange(3 * sample_rate) / sample_rate
    f0 = gen.choice([50.0, 60.0]) * gen.uniform(0.99, 1.01)
    want = np.zeros(len(t))
    for k in range(1, 8):
        if k * f0 < sample_rate / 2:
            want += gen.uniform(0.3, 1) / k * np.sin(2 * np.pi * k * f0 * t + gen.uniform(0, 2 * np.pi))
    want += 0.05 * noise.coloured(len(t), 1, gen)
    np.testing.assert_allclose(x, want, atol=1e-5)


def test_bursts_are_noise_under_an_envelope_with_10_ms_ramps():
    x = noise.render({"kind": "bursts", "seed": 3, "snr_db": 0}, SR * 4, SR, _talker)
    gen = np.random.default_rng(3)
    envelope, t = np.zeros(SR * 4), 0
    while t < len(envelope):  # the same draws as render's
        on = int(gen.uniform(0.05, 0.4) * SR)
        envelope[t : t + on] = gen.uniform(0.3, 1.0)
        t += on + int(gen.uniform(0.1, 0.8) * SR)
    ramp = np.hanning(int(0.01 * SR))
    envelope = np.convolve(envelope, ramp / ramp.sum(), mode="same")
    want = noise.coloured(len(envelope), 1, gen) * envelope + 1e-3 * gen.standard_normal(len(envelope))
    np.testing.assert_allclose(x, want, atol=1e-5)


def test_noise_files_are_split_by_folders_or_by_hash(tmp_path):
    tone = np.zeros(400, dtype=np.float32)
    for split in ("tr", "cv", "tt"):
        (tmp_path / "wham" / split).mkdir(parents=True)
        sf.write(tmp_path / "wham" / split / f"{split}.wav", tone, SR)
    assert [u.path for u in noise.noise_files(tmp_path / "wham", "valid", sample_rate=SR)] == ["cv/cv.wav"]
    (tmp_path / "flat").mkdir()
    for i in range(40):
        sf.write(tmp_path / "flat" / f"n{i}.wav", tone, SR)
    parts = {
        s: {u.path for u in noise.noise_files(tmp_path / "flat", s, sample_rate=SR)} for s in ("train", "valid", "test")
    }
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [32, 4, 4]
    assert not (parts["train"] & parts["test"])
    assert not (parts["valid"] & parts["test"]) and not (parts["train"] & parts["valid"])


def test_drawn_file_noise_is_reproducible_and_within_the_range(tmp_path):
    sf.write(tmp_path / "n.wav", np.zeros(1000, dtype=np.float32), SR)
    files = noise.noise_files(tmp_path, "train", sample_rate=SR)
    opts = noise.NoiseOptions(source="files", snr_db=(-5, 15), root=str(tmp_path))
    draws = [noise.draw_noise(Rng(i), opts, frames=300, files=files) for i in range(20)]
    assert draws == [noise.draw_noise(Rng(i), opts, frames=300, files=files) for i in range(20)]
    assert all(-5 <= d["snr_db"] <= 15 and 0 <= d["start"] <= 700 and d["file"] == "n.wav" for d in draws)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: noise.NoiseOptions(snr_db=(15.0, -5.0)), r"snr_min \(15 dB\) must not exceed snr_max"),
        (lambda p: noise.noise_files(p, "train", sample_rate=SR), r"noise_root .*: holds no"),
        (lambda p: noise.noise_files(p / "nowhere", "train", sample_rate=SR), r"noise_root .*: no such folder"),
        (lambda p: noise.NoiseOptions(source="files"), r"noise_root: noise: files needs"),
        (lambda p: prepare.main([str(p / "d"), "2", "--noise", "synthetic", "--snr", "15", "-5"]), r"--snr 15 -5"),
        (lambda p: prepare.main([str(p / "d"), "2", "--noise", "files"]), r"--noise_root"),
    ],
)
def test_bad_noise_options_are_one_line_errors_naming_the_option(tmp_path, make, match):
    with pytest.raises(DnnsepError, match=match) as err:
        make(tmp_path)
    assert "\n" not in str(err.value)


# -- downloadable corpora, against the loopback server --------------------------------------------


def _wav_bytes(seconds: float = 0.2) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(int(SR * seconds), dtype=np.float32), SR, format="WAV")
    return out.getvalue()


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _serve(tmp_path, name: str, data: bytes) -> MirrorServer:
    served = tmp_path / "served"
    served.mkdir(exist_ok=True)
    (served / name).write_bytes(data)
    (served / "md5sum.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
    return MirrorServer(served)


@pytest.fixture
def musan_archive(tmp_path):
    _tar(tmp_path / "musan.tar.gz", {f"musan/noise/free-sound/n{i}.wav": _wav_bytes() for i in range(12)})
    return (tmp_path / "musan.tar.gz").read_bytes()


def test_noise_corpus_download_resumes_then_extracts_and_states_its_licence(tmp_path, musan_archive, capsys):
    dataset = tmp_path / "data"
    with _serve(tmp_path, "musan.tar.gz", musan_archive) as server:
        server.drop_once["musan.tar.gz"] = len(musan_archive) // 2
        with pytest.raises(DnnsepError, match=r"musan\.tar\.gz: download interrupted .* rerun to resume"):
            noise.fetch_corpus(dataset, "musan", mirror=server.url, retries=0, progress=False)
        assert not (dataset / "noise" / "musan").exists()
        server.log.clear()
        folder = noise.fetch_corpus(dataset, "musan", mirror=server.url, retries=0, progress=False)
        assert server.requests_for("musan.tar.gz") == [
            ("musan.tar.gz", f"bytes={len(musan_archive) // 2}-", len(musan_archive) - len(musan_archive) // 2)
        ]
        assert len(list(folder.rglob("*.wav"))) == 12 and (folder / noise.MARKER).is_file()
        assert not (dataset / "downloads" / "musan.tar.gz").exists()
        server.log.clear()
        assert noise.fetch_corpus(dataset, "musan", mirror=server.url, progress=False) == folder
        assert server.log == []  # complete: not fetched again
    assert "licence CC BY 4.0" in capsys.readouterr().err


def test_noise_corpus_with_a_bad_md5_is_deleted_and_not_extracted(tmp_path, musan_archive):
    with _serve(tmp_path, "musan.tar.gz", musan_archive) as server:
        server.corrupt.add("musan.tar.gz")
        with pytest.raises(DnnsepError, match=r"musan\.tar\.gz: md5 mismatch .* deleted; rerun"):
            noise.fetch_corpus(tmp_path / "d", "musan", mirror=server.url, progress=False)
    assert not (tmp_path / "d" / "downloads" / "musan.tar.gz").exists()
    assert not (tmp_path / "d" / "noise" / "musan").exists()


def test_truncated_noise_archive_is_a_one_line_error_and_leaves_nothing_half_extracted(tmp_path, musan_archive):
    with _serve(tmp_path, "musan.tar.gz", musan_archive[: len(musan_archive) * 2 // 3]) as server:
        with pytest.raises(DnnsepError, match=r"musan\.tar\.gz: truncated or corrupt archive") as err:
            noise.fetch_corpus(tmp_path / "d", "musan", mirror=server.url, progress=False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "d" / "noise" / "musan").exists()
    assert not list((tmp_path / "d" / "noise").glob(".tmp-*"))


@pytest.mark.parametrize("bad", ["../evil.txt", "wham_noise/../../evil.txt", "/tmp/evil.txt", "other/x.wav"])
def test_noise_archive_members_outside_the_corpus_are_refused(tmp_path, bad):
    archive = tmp_path / "wham_noise.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("wham_noise/tr/a.wav", _wav_bytes())
        z.writestr(bad, b"evil")
    with _serve(tmp_path, "wham_noise.zip", archive.read_bytes()) as server:
        with pytest.raises(DnnsepError, match=r"wham_noise\.zip: unexpected member"):
            noise.fetch_corpus(tmp_path / "d", "wham_noise", mirror=server.url, progress=False)
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path / "d" / "noise" / "wham_noise").exists()
    tar = tmp_path / "musan.tar.gz"
    _tar(tar, {"musan/noise/a.wav": _wav_bytes(), bad.replace("wham_noise", "musan"): b"evil"})
    with pytest.raises(DnnsepError, match=r"musan\.tar\.gz: unexpected member"):
        noise.extract(tar, tmp_path / "out", top="musan")
    assert not list(tmp_path.rglob("evil.txt"))


def test_a_link_inside_a_noise_archive_is_refused(tmp_path):
    tar = tmp_path / "musan.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        link = tarfile.TarInfo("musan/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        t.addfile(link)
    with pytest.raises(DnnsepError, match="unexpected member 'musan/link'"):
        noise.extract(tar, tmp_path / "out", top="musan")


def test_prepare_downloads_a_noise_corpus_and_draws_its_files(tmp_path, capsys):
    from dnnsep.data.synthetic import make_corpus

    make_corpus(tmp_path / "corpus", n_speakers=4, utts_per_speaker=2, seconds=(1.2, 1.5), seed=0)
    out = io.BytesIO()
    sf.write(out, np.random.default_rng(0).standard_normal(20000).astype(np.float32) * 0.1, 16000, format="WAV")
    _tar(tmp_path / "musan16.tar.gz", {f"musan/noise/n{i}.wav": out.getvalue() for i in range(12)})
    with _serve(tmp_path, "musan.tar.gz", (tmp_path / "musan16.tar.gz").read_bytes()) as server:
        args = [str(tmp_path / "d"), "2", "--librispeech_root", str(tmp_path / "corpus"), "--no_progress"]
        args += ["--segment", "1", "--eval_segment", "1", "--noise_corpus", "musan", "--noise_mirror", server.url]
        assert prepare.main(args) == 0
    printed = capsys.readouterr()
    assert "licence CC BY 4.0" in printed.err and "noise from" in printed.out
    lst = json.loads((tmp_path / "d" / "2mix" / "test.json").read_text())
    assert all(m["scene"]["noise"]["file"].startswith("noise/musan/noise/n") for m in lst["mixtures"])
