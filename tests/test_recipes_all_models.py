"""Every registered model through its own recipe directory: one tiny epoch with train.sh, then test.sh,
separate.sh and an ONNX export (checked by onnxruntime), parametrised over the models, not copied."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_MODELS

from dnnsep import models
from dnnsep.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EGS = ROOT / "egs" / "librispeech"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A tiny prepared dataset from a numpy corpus (fast; the recipe test covers the espeak one)."""
    tmp = tmp_path_factory.mktemp("data")
    run([sys.executable, "-m", "dnnsep.bin.make_corpus", str(tmp / "corpus"), "--engine", "numpy",
         "--n_speakers", "3", "--utts_per_speaker", "2", "--seconds", "1.5", "2", "--quiet"])  # fmt: skip
    run([sys.executable, "-m", "dnnsep.bin.prepare", str(tmp / "data"), "2", "--librispeech_root",
         str(tmp / "corpus"), "--segment", "1", "--eval_segment", "1", "--n_train", "6", "--n_valid", "2",
         "--n_test", "2", "--no_progress"])  # fmt: skip
    return tmp / "data"


def run(argv, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{argv}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_train_test_separate_export_in_the_models_own_recipe(name, dataset, tmp_path):
    recipe = EGS / name
    options = [a for k, v in TINY_MODELS[name].items() for a in (f"--model.{k}", str(v))]
    out = tmp_path / "exp"
    run(["bash", str(recipe / "train.sh"), "--config", "conf/mini.yaml", "--dataset_dir", str(dataset),
         "--epochs", "1", "--num_workers", "0", "--device", "cpu", *options, str(out)])  # fmt: skip
    (best,) = out.glob("**/model/best.pth")
    assert load_checkpoint(best)["model_name"] == models.get(name).model_name
    assert best.relative_to(out).parts[3] == models.get(name).config_class(**TINY_MODELS[name]).dir_names()[0]

    done = run(["bash", str(recipe / "test.sh"), "--model", str(best), "--out_dir", str(tmp_path / "eval")])
    assert "SI-SDRi" in done.stdout and (tmp_path / "eval" / "summary.json").is_file()

    wav = tmp_path / "talk.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    run(["bash", str(recipe / "separate.sh"), str(wav), "--model", str(best), "--out_dir", str(tmp_path / "sep")])
    wavs = sorted(p.name for p in (tmp_path / "sep" / "talk").glob("*.wav"))
    assert wavs == ["estimated-0.wav", "estimated-1.wav", "mixture.wav"]  # the input as heard, for report.html

    onnx = tmp_path / "model.onnx"
    done = run([sys.executable, "-m", "dnnsep.bin.export", "--format", "onnx", "--model", str(best),
                "--output", str(onnx)], cwd=tmp_path)  # fmt: skip
    assert onnx.is_file() and "largest difference from PyTorch" in (done.stdout + done.stderr)
