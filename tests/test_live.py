"""python -m dnnsep.bin.demo --live: real capture and playback through PyAudio and ALSA's file plugin.

No sound card in CI: ALSA's ``file`` plugin makes the default device read capture from a raw 16-bit
file and write what is played to another (neither is paced, so separation always runs behind the
"microphone" and the backlog warning shows).  ``ALSA_CONFIG_PATH`` points the child at it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import alsa_config, audio_env

from dnnsep import CheckpointError, ConvTasNet, ConvTasNetConfig, DnnsepError, DPRNNConfig, DPRNNTasNet, models
from dnnsep import live as live_module
from dnnsep.bin import demo
from dnnsep.inference import separate_long
from dnnsep.live import LiveWavs, StatusLine, to_pcm16
from dnnsep.streaming import StreamingSeparator

RATE = 16000
TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)
TINY_CONV_TASNET = dict(n_filters=16, kernel_size=16, bottleneck=8, hidden=16, skip_channels=8, n_layers=3, n_repeats=2)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    DPRNNTasNet(DPRNNConfig(causal=True, **TINY)).save(directory / "causal.pth")
    DPRNNTasNet(DPRNNConfig(**TINY)).save(directory / "noncausal.pth")
    ConvTasNet(ConvTasNetConfig(causal=True, **TINY_CONV_TASNET)).save(directory / "conv_tasnet_causal.pth")
    return directory


@pytest.fixture
def capture(tmp_path):
    """60 s of two speech-like harmonic "voices" (syllable-rate envelopes) behind the default devices."""
    t = np.arange(60 * RATE) / RATE
    voice = np.sin(2 * np.pi * 150 * t + 3 * np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 2 * t) ** 2
    other = 0.6 * np.sign(np.sin(2 * np.pi * 410 * t)) * np.cos(2 * np.pi * 1.3 * t) ** 2
    pcm = np.round(9000 * (voice + other)).astype(np.int16)
    return alsa_config(tmp_path, pcm, played=tmp_path / "played.raw"), pcm


def live(args, conf, **kwargs):
    cmd = [sys.executable, "-m", "dnnsep.bin.demo", "--live", "--device", "cpu", *args]
    return subprocess.Popen(cmd, env={**os.environ, **audio_env(conf)}, text=True, **kwargs)


def read_results(out: Path, n_sources: int = 2) -> tuple[np.ndarray, list[np.ndarray]]:
    """mixture.wav and estimated-<k>.wav as int16, checking each is a complete 16-bit WAV of the same length."""
    mixture, rate = sf.read(out / "mixture.wav", dtype="int16")
    assert rate == RATE and sf.info(out / "mixture.wav").subtype == "PCM_16"
    estimates = []
    for k in range(n_sources):
        est, rate = sf.read(out / f"estimated-{k}.wav", dtype="int16")
        assert rate == RATE and len(est) == len(mixture)
        estimates.append(est)
    assert not list(out.glob(".*.part"))  # no temporary files left
    return mixture, estimates


def check_against_the_engine(model_path: Path, mixture: np.ndarray, estimates: list[np.ndarray]) -> None:
    """The files hold the streaming engine's output on the captured audio (pushed here in other blocks)."""
    engine = StreamingSeparator(models.load(model_path).eval())
    blocks = [engine.push(mixture[i : i + 1234]) for i in range(0, len(mixture), 1234)]
    expected = to_pcm16(np.concatenate([*blocks, engine.flush()], axis=1))
    for k, est in enumerate(estimates):
        assert np.abs(est.astype(int) - expected[k]).max() <= 1  # float rounding may flip the last bit


@pytest.mark.slow
@pytest.mark.parametrize("name,latency_ms", [("causal.pth", 2), ("conv_tasnet_causal.pth", 1)])
def test_live_for_n_seconds_writes_and_plays(name, latency_ms, capture, models_dir, tmp_path):
    conf, pcm = capture
    out = tmp_path / "results" / "live"
    run = live(["--model", str(models_dir / name), "--seconds", "3", "--play", "1", "--out_dir", str(out)],
               conf, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "Separated 3.0 s live into 2 voices, real-time factor" in stdout
    assert f"latency {latency_ms} ms + 20 ms blocks" in stderr
    assert "live " in stderr and "voice 0 [" in stderr and "voice 1 [" in stderr and "RTF " in stderr
    assert "warning: behind, backlog" in stderr  # the file plugin "records" faster than real time
    mixture, estimates = read_results(out)
    np.testing.assert_array_equal(mixture, pcm[: 3 * RATE])  # every captured sample, none dropped
    check_against_the_engine(models_dir / name, mixture, estimates)
    played = np.fromfile(tmp_path / "played.raw", "<i2")
    np.testing.assert_array_equal(played, estimates[1])  # voice 1, all of it, as written
    assert np.abs(estimates[1]).max() > 0


def check_resampled(model_path: Path, mixture: np.ndarray, estimates: list[np.ndarray], rate: int) -> None:
    """The files hold: the capture resampled to the model's rate, the streaming engine, its voices resampled back."""
    from dnnsep.audio import resample

    engine = StreamingSeparator(models.load(model_path).eval())
    x = resample(mixture.astype(np.float32) / 32768, rate, RATE)
    blocks = [engine.push(x[i : i + 1234]) for i in range(0, len(x), 1234)]
    voices = np.concatenate([*blocks, engine.flush()], axis=1)  # (n_sources, model-rate samples)
    expected = to_pcm16(resample(voices, RATE, rate)[:, : len(mixture)])
    for k, est in enumerate(estimates):
        assert np.abs(est.astype(int) - expected[k]).max() <= 2  # float rounding, in two resamplers and the model


@pytest.mark.slow
def test_live_at_another_rate_resamples_both_ways_and_writes_at_the_devices_rate(capture, models_dir, tmp_path):
    conf, pcm = capture  # the same raw samples, now taken as 48 kHz
    out = tmp_path / "out"
    run = live(["--model", str(models_dir / "causal.pth"), "--seconds", "1", "--sample_rate", "48000", "--play", "1",
                "--out_dir", str(out)], conf, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "records at 48000 Hz: resampled to the model's 16000 Hz, the voices back to 48000 Hz" in stderr
    mixture, rate = sf.read(out / "mixture.wav", dtype="int16")
    assert rate == 48000 and "Separated 1.0 s live" in stdout
    np.testing.assert_array_equal(mixture, pcm[:48000])  # every captured sample, at the device's rate
    estimates = [sf.read(out / f"estimated-{k}.wav", dtype="int16") for k in range(2)]
    assert all(r == 48000 and len(e) == len(mixture) for e, r in estimates)
    check_resampled(models_dir / "causal.pth", mixture, [e for e, _ in estimates], 48000)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "played.raw", "<i2"), estimates[1][0])


@pytest.mark.slow
def test_a_device_that_cannot_record_at_the_models_rate_records_at_its_own(capture, models_dir, tmp_path):
    from conftest import FAKE_AUDIO

    conf, pcm = capture
    files = json.loads(conf.with_suffix(".json").read_text())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(FAKE_AUDIO), os.environ.get("PYTHONPATH")])),
           "DNNSEP_FAKE_AUDIO_IN": files["in"], "DNNSEP_FAKE_AUDIO_RATE": "44100"}  # fmt: skip
    model = str(models_dir / "causal.pth")
    cmd = [sys.executable, "-m", "dnnsep.bin.demo", "--live", "--device", "cpu", "--model", model, "--seconds", "0.5",
           "--out_dir", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "records at 44100 Hz: resampled to the model's 16000 Hz" in done.stderr
    mixture, rate = sf.read(tmp_path / "out" / "mixture.wav", dtype="int16")
    assert rate == 44100 and len(mixture) == 22050
    estimate, rate = sf.read(tmp_path / "out" / "estimated-0.wav", dtype="int16")
    assert rate == 44100 and len(estimate) == 22050
    env["DNNSEP_FAKE_AUDIO_RATE"] = "1"  # a device that records at no usable rate
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith(
        "cannot record 16-bit mono at 16000 Hz, nor at its own rate"
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_run_leaves_complete_files(sig, capture, models_dir, tmp_path):
    conf, pcm = capture
    out = tmp_path / "out"
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        run = live(["--model", str(models_dir / "causal.pth"), "--seconds", "50", "--out_dir", str(out)], conf,
                   stdout=subprocess.PIPE, stderr=err)  # fmt: skip
        deadline = time.monotonic() + 60
        while "live " not in log.read_text() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        time.sleep(0.5)  # mid-run: some blocks separated, many more queued
        run.send_signal(sig)
        stdout, _ = run.communicate(timeout=60)
    assert run.returncode == 0, log.read_text()
    assert "stopped by a signal" in stdout
    mixture, estimates = read_results(out)
    assert 0 < len(mixture) < 50 * RATE
    np.testing.assert_array_equal(mixture, pcm[: len(mixture)])
    check_against_the_engine(models_dir / "causal.pth", mixture, estimates)


@pytest.mark.slow
def test_no_capture_device(models_dir, tmp_path):
    conf = alsa_config(tmp_path, None)
    out = tmp_path / "out"
    run = live(["--model", str(models_dir / "causal.pth"), "--out_dir", str(out)], conf,
               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 2
    assert stderr.strip().splitlines()[-1].startswith("error: no audio input device found")
    assert not out.exists()


@pytest.mark.slow
def test_a_model_that_looks_ahead_runs_on_windows(capture, models_dir, tmp_path):
    conf, pcm = capture
    out = tmp_path / "out"
    run = live(["--model", str(models_dir / "noncausal.pth"), "--seconds", "3", "--window_seconds", "0.5", "--play",
                "0", "--out_dir", str(out)], conf, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert (
        "note: DPRNNTasNet: not causal (its inter-chunk LSTM is bidirectional and gLN looks at the whole input): "
        "separated in 0.5 s windows overlapping by 25%, so the voices come 0.5 s late"
    ) in stderr
    assert "latency 500 ms + 20 ms blocks" in stderr
    assert "Separated 3.0 s live into 2 voices" in stdout
    mixture, estimates = read_results(out)
    np.testing.assert_array_equal(mixture, pcm[: 3 * RATE])
    # the files hold the chunked pass over the whole recording (separate.sh's with 0.5 s chunks)
    model = models.load(models_dir / "noncausal.pth").eval()
    expected = to_pcm16(separate_long(model, mixture.astype(np.float32) / 32768, chunk_seconds=0.5, overlap=0.25))
    for k, est in enumerate(estimates):
        assert np.abs(est.astype(int) - expected[k]).max() <= 1
    np.testing.assert_array_equal(np.fromfile(tmp_path / "played.raw", "<i2"), estimates[0])
    assert np.abs(estimates[0]).max() > 0


def test_the_default_model_is_the_most_recent_causal_one(tmp_path):
    with pytest.raises(CheckpointError, match=r"no trained causal model under .*conf/causal\.yaml"):
        demo.main(["--live", "--recipe_dir", str(tmp_path)])
    assert not (tmp_path / "results").exists()


def test_bad_live_options(models_dir):
    for args, message in [
        (["--play", "2"], r"--play 2: the model separates 2 voices \(0\.\.1\)"),
        (["--seconds", "0"], "--seconds must be positive"),
        (["--sample_rate", "800"], r"--sample_rate must be at least 1000 Hz"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--window_seconds", "0"], r"--window_seconds must be in 0\.1\.\.60"),
    ]:
        with pytest.raises(DnnsepError, match=message):
            demo.main(["--live", "--model", str(models_dir / "causal.pth"), "--device", "cpu", *args])


@pytest.mark.parametrize("args,expected", [([], 1), (["--threads", "2"], 2)])
def test_live_streams_on_one_cpu_thread_unless_told(args, expected, models_dir, monkeypatch, capsys):
    seen = {}

    def run_live(engine, **kwargs):  # the devices are tested above; here, the threads it runs on
        seen["threads"] = torch.get_num_threads()
        return {"samples": 0, "seconds": 0.0, "rate": 16000, "rtf": 0.0, "stopped": "", "files": []}

    monkeypatch.setattr(live_module, "run_live", run_live)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert demo.main(["--live", "--model", str(models_dir / "causal.pth"), "--device", "cpu", *args]) == 0
        assert seen["threads"] == expected and torch.get_num_threads() == 3  # restored afterwards
    finally:
        torch.set_num_threads(before)
    assert f"20 ms blocks, {expected} thread" in capsys.readouterr().err


def test_live_wavs_are_complete_after_each_close(tmp_path):
    (tmp_path / "estimated-5.wav").write_bytes(b"stale")  # from a model with more voices
    wavs = LiveWavs(tmp_path, 2, RATE)
    assert not (tmp_path / "mixture.wav").exists()  # only complete files under the final names
    rng = np.random.default_rng(0)
    blocks = [rng.integers(-3000, 3000, (3, n)).astype(np.int16) for n in (0, 1, 320, 17)]
    for b in blocks:
        wavs.write(b[0], b[1:])
    paths = wavs.close()
    assert [p.name for p in paths] == ["mixture.wav", "estimated-0.wav", "estimated-1.wav"]
    mixture, estimates = read_results(tmp_path)
    np.testing.assert_array_equal(mixture, np.concatenate([b[0] for b in blocks]))
    np.testing.assert_array_equal(estimates[1], np.concatenate([b[2] for b in blocks]))
    assert not (tmp_path / "estimated-5.wav").exists()


def test_status_line_warns_as_soon_as_it_falls_behind_not_at_the_next_refresh():
    stream = io.StringIO()  # not a tty: a line a second
    meter = StatusLine(stream, 2, RATE)
    block = np.zeros((2, 320), np.float32)
    meter.update(block, seconds=0.02, rtf=0.1, backlog=0.0)  # the first line
    meter.update(block, seconds=0.04, rtf=0.1, backlog=0.1)  # within the second, not behind: no line
    assert stream.getvalue().count("\n") == 1
    meter.update(block, seconds=0.06, rtf=0.1, backlog=0.5)  # behind: a line now, not a second later
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "warning: behind, backlog 0.5 s" in lines[1]
    meter.update(block, seconds=0.08, rtf=0.1, backlog=0.6)  # still behind: back to a line a second
    assert len(stream.getvalue().splitlines()) == 2
