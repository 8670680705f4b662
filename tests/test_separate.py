"""separate.sh / python -m dnnsep.bin.separate: every input format, directories, errors, the default
model, and the recipe front sourced from bash and zsh and run with bash."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dnnsep import AudioError, CheckpointError, DnnsepError, DPRNNConfig, DPRNNTasNet
from dnnsep.bin import separate
from dnnsep.pretrained import default_model_path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "librispeech" / "dprnn_tasnet"
TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)


def speech_like(rate, seconds, seed=0):
    """Two amplitude-modulated harmonic "voices" (float32, peak about 0.8)."""
    t = np.arange(int(round(rate * seconds))) / rate
    rng = np.random.default_rng(seed)
    a = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6)) * (1 + np.sin(3 * t))
    b = sum(np.sin(2 * np.pi * 230 * k * t + rng.uniform(0, 6)) / k for k in range(1, 6)) * (1 + np.cos(2 * t))
    x = a + b
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    DPRNNTasNet(DPRNNConfig(**TINY)).eval().save(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One file per supported kind: (name, rate, frames, channels)."""
    root = tmp_path_factory.mktemp("inputs")
    (root / "sub").mkdir()
    kinds = [
        ("rate8k.wav", 8000, 1, "PCM_16", "WAV"),
        ("rate44k.wav", 44100, 1, "PCM_16", "WAV"),
        ("stereo.wav", 16000, 2, "PCM_16", "WAV"),
        ("deep.wav", 22050, 1, "PCM_24", "WAV"),
        ("float.wav", 16000, 1, "FLOAT", "WAV"),
        ("sub/lossless.flac", 48000, 1, "PCM_16", "FLAC"),
    ]
    info = {}
    for i, (name, rate, channels, subtype, fmt) in enumerate(kinds):
        x = speech_like(rate, 1.1 + 0.1 * i, seed=i)
        data = np.stack([x, 0.5 * x[::-1]], axis=1) if channels == 2 else x
        sf.write(root / name, data, rate, subtype=subtype, format=fmt)
        info[name] = (rate, len(x))
    (root / "notes.txt").write_text("not audio: ignored")
    return root, info


def check_outputs(out_dir, rel, rate, frames, n_sources=2):
    for k in range(n_sources):  # at the input's rate and length, whatever the model's rate (16 kHz here)
        path = out_dir / Path(rel).with_suffix("") / f"estimated-{k}.wav"
        meta = sf.info(path)
        assert (meta.samplerate, meta.channels, meta.subtype, meta.frames) == (rate, 1, "PCM_16", frames), path
        pcm = sf.read(path, dtype="int16")[0]
        assert np.abs(pcm.astype(int)).max() <= 0.99 * 32768 + 1  # scaled to fit: nothing clipped
    assert not (out_dir / Path(rel).with_suffix("") / f"estimated-{n_sources}.wav").exists()


def shell_env():
    return {**os.environ, "PYTHON": sys.executable}


# -- the library / CLI in-process -------------------------------------------------------------------


def test_every_format_in_a_directory(inputs, model_path, tmp_path, capsys):
    root, info = inputs
    assert separate.main([str(root), "--model", str(model_path), "--out_dir", str(tmp_path / "out")]) == 0
    for name, (rate, frames) in info.items():
        check_outputs(tmp_path / "out", name, rate, frames)
    assert not (tmp_path / "out" / "notes").exists()
    err = capsys.readouterr().err
    assert "stereo.wav: 2 channels downmixed to mono" in err
    assert "Separated 6 file(s)" in err
    assert "rate44k.wav: 44100 Hz resampled to the model's 16000 Hz; outputs at 44100 Hz" in err
    assert "float.wav: 16000 Hz" not in err  # at the model's rate: nothing to say


def test_an_8k_model_separates_a_16k_file_and_writes_16k_estimates_of_its_voices(tmp_path):
    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(**TINY, sample_rate=8000)).eval()
    model.save(tmp_path / "m8k.pth")
    x = speech_like(16000, 1.5)
    sf.write(tmp_path / "talk.wav", x, 16000)
    assert separate.main([str(tmp_path / "talk.wav"), "--model", str(tmp_path / "m8k.pth"), "--out_dir",
                          str(tmp_path / "o")]) == 0  # fmt: skip
    got = np.stack([sf.read(tmp_path / "o" / "talk" / f"estimated-{k}.wav")[0] for k in range(2)])
    assert sf.info(tmp_path / "o" / "talk" / "estimated-0.wav").samplerate == 16000 and got.shape == (2, len(x))
    # what the model gives at 8 kHz, brought back to 16 kHz by the same resampler
    from dnnsep.audio import resample
    from dnnsep.inference import scale_estimates

    mixture = resample(x, 16000, 8000)
    with torch.inference_mode():
        want = model(torch.from_numpy(mixture)[None])[0].numpy()
    want = resample(scale_estimates(want, mixture), 8000, 16000)[:, : len(x)]
    np.testing.assert_allclose(got, want, atol=2 / 32768 + 1e-3 * np.abs(want).max())


def test_single_long_file_in_chunks(tmp_path, model_path, capsys):
    sf.write(tmp_path / "long.wav", speech_like(16000, 3.3), 16000)
    argv = [str(tmp_path / "long.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "o")]
    assert separate.main([*argv, "--chunk_seconds", "1", "--overlap", "0.5"]) == 0
    check_outputs(tmp_path / "o", "long.wav", 16000, int(3.3 * 16000))
    out = capsys.readouterr().out.split()
    assert out == [str(tmp_path / "o" / "long" / f"estimated-{k}.wav") for k in range(2)]
    # existing outputs are kept unless --overwrite
    with pytest.raises(
        DnnsepError, match=r"long/estimated-0\.wav, .*long/estimated-1\.wav already exist: pass --overwrite"
    ):
        separate.main(argv)
    assert separate.main([*argv, "--overwrite", "--chunk_seconds", "0"]) == 0


@pytest.mark.parametrize(
    "content, message",
    [(b"", r"empty file \(0 bytes\)"), (b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk", "not a readable audio file")],
    ids=["empty", "corrupt"],
)
def test_corrupt_and_empty_files_are_one_line_errors(tmp_path, model_path, content, message):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(AudioError, match=message) as err:
        separate.main([str(tmp_path / "bad.wav"), "--model", str(model_path), "--out_dir", str(tmp_path / "o")])
    assert "bad.wav" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


def test_a_bad_file_in_a_directory_is_reported_and_skipped(tmp_path, model_path, capsys):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "good.wav", speech_like(16000, 1), 16000)
    (tmp_path / "in" / "broken.flac").write_bytes(b"fLaC" + bytes(100))
    sf.write(tmp_path / "in" / "tiny.wav", np.zeros(100, np.float32), 16000)  # 6 ms: too short
    code = separate.main([str(tmp_path / "in"), "--model", str(model_path), "--out_dir", str(tmp_path / "o")])
    assert code == 1
    check_outputs(tmp_path / "o", "good.wav", 16000, 16000)
    err = capsys.readouterr().err
    assert "broken.flac: not a readable audio file" in err and "tiny.wav: too short" in err
    assert "2 of 3 file(s) failed" in err and "Separated 1 file(s) (2 failed)" in err


def test_missing_inputs_and_models(tmp_path, model_path):
    with pytest.raises(AudioError, match="nothere.wav: no such file or directory"):
        separate.main([str(tmp_path / "nothere.wav"), "--model", str(model_path)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DnnsepError, match="no audio files"):
        separate.main([str(tmp_path / "empty"), "--model", str(model_path)])
    sf.write(tmp_path / "a.wav", speech_like(16000, 0.5), 16000)
    with pytest.raises(CheckpointError, match="nope.pth: no such model file"):
        separate.main([str(tmp_path / "a.wav"), "--model", str(tmp_path / "nope.pth")])


def test_default_model_is_the_most_recent_best_pth_under_exp(tmp_path, model_path, capsys):
    """Without --model: the most recent <recipe>/exp*/**/model/best.pth, named on stderr."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    sf.write(tmp_path / "a.wav", speech_like(16000, 0.5), 16000)
    with pytest.raises(CheckpointError, match=r"no trained model under .*exp\*/: make one with `bash run\.sh"):
        separate.main([str(tmp_path / "a.wav"), "--recipe_dir", str(recipe)])
    expected = recipe / "exp" / "2mix" / "some_experiment" / "model" / "best.pth"
    expected.parent.mkdir(parents=True)
    shutil.copy(model_path, expected)
    assert default_model_path(recipe, quiet=True) == expected.resolve()
    assert separate.main([str(tmp_path / "a.wav"), "--recipe_dir", str(recipe)]) == 0
    assert f"model: {expected.resolve()}" in capsys.readouterr().err
    check_outputs(recipe / "results" / "separated", "a.wav", 16000, 8000)  # default out_dir: under the recipe


# -- the recipe front, through the shells -------------------------------------------------------------


@pytest.mark.slow
def test_separate_sh_run_with_bash_sourced_from_zsh_and_bash(inputs, model_path, tmp_path):
    root, info = inputs
    script = RECIPE / "separate.sh"
    # bash separate.sh DIR, with relative paths resolved from the caller's directory
    os.symlink(root, tmp_path / "data")
    run = subprocess.run(
        ["bash", str(script), "data", "--model", str(model_path), "--out_dir", "out"],
        cwd=tmp_path, env=shell_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    for name, (rate, frames) in info.items():
        check_outputs(tmp_path / "out", name, rate, frames)
    # sourced from zsh: one file; the caller's shell carries on and sees the exit status
    cmd = f'. "{script}" data/float.wav --model "{model_path}" --out_dir zout; echo "rc=$?"; echo alive'
    run = subprocess.run(["zsh", "-c", cmd], cwd=tmp_path, env=shell_env(), capture_output=True, text=True)
    assert run.stdout.split()[-2:] == ["rc=0", "alive"], run.stderr
    check_outputs(tmp_path / "zout", "float.wav", *info["float.wav"])
    # sourced from bash, on a corrupt file: a one-line error, non-zero status, nothing written
    (tmp_path / "bad.wav").write_bytes(b"RIFFjunk")
    cmd = f'set -e; . "{script}" bad.wav --model "{model_path}" --out_dir bout || echo "rc=$?"; echo alive'
    run = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=shell_env(), capture_output=True, text=True)
    assert run.stdout.split() == ["rc=2", "alive"]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.wav: not a readable audio file" in errors[0]
    assert not (tmp_path / "bout").exists()
