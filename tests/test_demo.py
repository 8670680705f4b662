"""demo.sh / python -m dnnsep.bin.demo with real capture through PyAudio (the [demo] extra).

There is no sound card in CI: ALSA's ``file`` plugin makes the default capture device read a raw
16-bit PCM file instead (reads are not paced, so "recording" takes no time, and past the end of the
file it repeats stale data, so the file is longer than any recording here).  ``ALSA_CONFIG_PATH``
points the child process at that configuration; a configuration without it has no capture device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import alsa_config, audio_env

from dnnsep import CheckpointError, DnnsepError, DPRNNConfig, DPRNNTasNet
from dnnsep.audio import resample
from dnnsep.bin import demo

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "librispeech" / "dprnn_tasnet"
RATE = 16000


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    DPRNNTasNet(DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)).save(path)
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """12 s of two harmonic "voices" at 16 kHz, int16, behind the default capture device."""
    directory = tmp_path_factory.mktemp("alsa")
    t = np.arange(12 * RATE) / RATE
    x = np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2.1 * t)) + 0.6 * np.sign(np.sin(2 * np.pi * 410 * t)) * (
        1 + np.cos(1.3 * t)
    )
    pcm = np.round(9000 * x).astype(np.int16)
    return alsa_config(directory, pcm), pcm


def env_with(conf: Path) -> dict:
    return {**os.environ, **audio_env(conf), "PYTHON": sys.executable}


def check_results(out: Path, pcm: np.ndarray, seconds: float = 5.0):
    mixture, rate = sf.read(out / "mixture.wav", dtype="int16")
    assert rate == RATE and sf.info(out / "mixture.wav").subtype == "PCM_16"
    np.testing.assert_array_equal(mixture, pcm[: int(seconds * RATE)])  # the file's first 5 s, exactly
    for k in range(2):
        est, rate = sf.read(out / f"estimated-{k}.wav", dtype="int16")
        assert rate == RATE and len(est) == len(mixture) and sf.info(out / f"estimated-{k}.wav").subtype == "PCM_16"
        assert np.abs(est.astype(int)).max() <= 0.99 * 32768 + 1  # scaled to fit: nothing clipped
        assert np.abs(est).max() > 0
    assert not (out / "estimated-2.wav").exists()
    assert (out / "spectrograms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def run_demo(args, conf, cwd=None):
    cmd = [sys.executable, "-m", "dnnsep.bin.demo", *args]
    return subprocess.run(cmd, cwd=cwd, env=env_with(conf), capture_output=True, text=True)


# -- recording through PyAudio ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("how", ["zsh-sourced", "bash-sourced", "bash"])
def test_demo_sh_records_and_separates(how, capture, model_path, tmp_path):
    conf, pcm = capture
    script = RECIPE / "demo.sh"
    args = f'--model "{model_path}" --out_dir results'
    if how == "bash":
        cmd = ["bash", "-c", f'bash "{script}" {args}; echo "rc=$?"']
    else:
        cmd = [how.split("-")[0], "-c", f'. "{script}" {args}; echo "rc=$?"; echo alive']
    run = subprocess.run(cmd, cwd=tmp_path, env=env_with(conf), capture_output=True, text=True)
    assert "rc=0" in run.stdout.split(), run.stderr
    if how != "bash":
        assert run.stdout.split()[-1] == "alive"  # the user's shell carries on
    assert "Now recording..." in run.stderr and "Stop recording" in run.stderr
    assert "Separated 5.0 s into 2 voices in" in run.stdout
    for name in ("mixture.wav", "estimated-0.wav", "estimated-1.wav", "spectrograms.png"):
        assert str(tmp_path / "results" / name) in run.stdout or f"results/{name}" in run.stdout
    check_results(tmp_path / "results", pcm)


def test_recording_at_another_rate_is_separated_at_the_models_and_written_at_its_own(capture, model_path, tmp_path):
    conf, pcm = capture
    run = run_demo(["--model", str(model_path), "--out_dir", str(tmp_path), "--sample_rate", "8000",
                    "--duration", "2", "--no_plot"], conf)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "note: recorded at 8000 Hz, separated at the model's 16000 Hz; files at 8000 Hz" in run.stderr
    mixture, rate = sf.read(tmp_path / "mixture.wav", dtype="int16")
    assert rate == 8000 and np.array_equal(mixture, pcm[: 2 * 8000])  # the device delivered the file's samples
    got = []
    for k in range(2):
        estimate, rate = sf.read(tmp_path / f"estimated-{k}.wav", dtype="float32")
        assert rate == 8000 and len(estimate) == 2 * 8000
        got.append(estimate)
    # the model's output on what it heard (the recording at its 16 kHz), brought back to 8 kHz
    from dnnsep.inference import protect_from_clipping, scale_estimates
    from dnnsep.models import load

    heard = resample((pcm[: 2 * 8000] / 32768.0).astype(np.float32), 8000, RATE)
    with torch.inference_mode():
        want = load(model_path).eval()(torch.from_numpy(heard)[None])[0].numpy()
    want = resample(scale_estimates(want, heard), RATE, 8000)[:, : 2 * 8000]
    want = protect_from_clipping(want, peak=0.99)[0]
    np.testing.assert_allclose(np.stack(got), want, atol=2 / 32768 + 1e-3 * np.abs(want).max())
    assert not (tmp_path / "spectrograms.png").exists()


def test_list_devices_marks_the_default(capture, tmp_path):
    conf, _ = capture
    run = run_demo(["--list_devices"], conf)
    assert run.returncode == 0, run.stderr
    assert "Input devices (* = system default):" in run.stdout
    assert any(line.lstrip().startswith("*") and "default" in line for line in run.stdout.splitlines())


# -- failures: clear messages, non-zero status, nothing written ------------------------------------


def test_no_capture_device(model_path, tmp_path):
    conf = alsa_config(tmp_path, None)
    out = tmp_path / "results"
    run = subprocess.run(
        ["bash", str(RECIPE / "demo.sh"), "--model", str(model_path), "--out_dir", str(out)],
        env=env_with(conf), capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no audio input device found: connect or enable a microphone")
    assert not out.exists()


def test_silent_recording_and_bad_device_index(model_path, tmp_path):
    conf = alsa_config(tmp_path, np.zeros(10 * RATE, np.int16))  # a muted or blocked microphone
    out = tmp_path / "results"
    run = run_demo(["--model", str(model_path), "--out_dir", str(out), "--duration", "1"], conf)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "is silent (-inf dBFS, below -60 dBFS)" in last and "Privacy & Security > Microphone" in last
    run = run_demo(["--model", str(model_path), "--out_dir", str(out), "--device_index", "42"], conf)
    assert run.returncode == 2 and "--device_index 42: no such input device" in run.stderr
    assert not out.exists()


# -- in-process pieces ---------------------------------------------------------------------------


def test_missing_model_is_reported_before_recording(tmp_path):
    (tmp_path / "exp").mkdir()
    with pytest.raises(CheckpointError, match=r"no trained model under .*exp\*/: make one with `bash run.sh"):
        demo.main(["--recipe_dir", str(tmp_path)])
    assert not (tmp_path / "results").exists()


def test_spectrograms_without_matplotlib(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib", "matplotlib.figure"]:
        monkeypatch.setitem(sys.modules, name, None)  # imports fail as if it were not installed
    note = demo.plot_spectrograms(tmp_path / "s.png", {"mixture": np.zeros(1600, np.float32)}, RATE)
    assert "matplotlib is not installed" in note and "pip install 'dnnsep[plot]'" in note
    assert not (tmp_path / "s.png").exists()


def test_a_read_only_output_folder_is_refused_before_recording(tmp_path, model_path, monkeypatch):
    """Checked first, so a recording is never made only to be thrown away."""
    from test_faults import tmpfs

    recorded = []
    monkeypatch.setattr(demo, "record", lambda *a, **k: recorded.append(1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(DnnsepError, match=r"file: is a file, not a directory \(--out_dir\)"):
        demo.main(["--model", str(model_path), "--device", "cpu", "--out_dir", str(tmp_path / "file")])
    with tmpfs(tmp_path / "ro", "ro,size=100k") as read_only:
        with pytest.raises(DnnsepError, match="ro: cannot write there .*choose another --out_dir"):
            demo.main(["--model", str(model_path), "--device", "cpu", "--out_dir", str(read_only)])
    assert recorded == []
