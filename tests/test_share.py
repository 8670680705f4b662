"""A trained model shared as a Hub folder (dnnsep.bin.share): its card, and loading it back by hf: reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from test_train import data, tiny

from dnnsep import models, pretrained
from dnnsep.checkpoint import load_checkpoint
from dnnsep.training.evaluation import summarize
from dnnsep.training.trainer import train

PUBLISHED = Path(__file__).parent / "data" / "published"


@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    """best.pth of a one-epoch run, and an evaluation of it as evaluate.py writes its summary."""
    out = tmp_path_factory.mktemp("exp")
    summary = train(tiny(epochs=1), out, **data())
    best = summary["experiment_dir"] / "model" / "best.pth"
    rows = [{"si_sdri": 7.0, "sdri": 7.5}, {"si_sdri": 8.0, "sdri": 8.5}]
    for name, model in (("test-best", best), ("test-last", best.parent / "last.pth")):
        folder = summary["experiment_dir"] / "eval" / name
        folder.mkdir(parents=True)
        text = json.dumps({"model": str(model.resolve()), "split": "test", **summarize(rows, ("si_sdri", "sdri"))})
        (folder / "summary.json").write_text(text)
    return best


def share(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dnnsep.bin.share", *args], capture_output=True, text=True, timeout=120
    )


def test_share_writes_weights_card_and_config_that_load_back(experiment, tmp_path):
    out = tmp_path / "hub" / "my-dprnn"
    done = share(str(out), "--model", str(experiment), "--repo", "me/my-dprnn", "--licence", "mit")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.yaml", "pytorch_model.bin"]
    assert "test figures: test-best 7.50 dB" in done.stdout and "hf upload me/my-dprnn" in done.stdout
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "mit" and front["library_name"] == "dnnsep" and "dprnn_tasnet" in front["tags"]
    assert "| test-best | 2 | 7.50 | 8.00 | - | - |" in card  # this checkpoint's figures, not last.pth's
    assert "test-last" not in card and "hf upload me/my-dprnn" in card and "--model hf:me/my-dprnn" in card
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["name"] == "dprnn_tasnet" and config["train_config"]["epochs"] == 1
    ckpt = load_checkpoint(out / "pytorch_model.bin")  # weights_only
    assert ckpt["card"]["licence"] == "mit" and ckpt["card"]["figures"][0]["si_sdri"] == 7.5
    shared, path = pretrained.load_model(out, recipe_dir=tmp_path, device="cpu")
    original = models.load(experiment).eval()
    x = torch.randn(1, 1600)
    with torch.no_grad():
        torch.testing.assert_close(shared(x), original(x), rtol=0, atol=0)
    assert path == out / "pytorch_model.bin" and shared.provenance["licence"] == "mit"


def test_share_refuses_an_existing_folder_and_models_it_did_not_train(experiment, tmp_path):
    (tmp_path / "taken").mkdir()
    done = share(str(tmp_path / "taken"), "--model", str(experiment))
    assert done.returncode == 2 and done.stderr.strip().endswith(
        "already exists; give a new folder (share writes a whole folder)"
    )
    done = share(str(tmp_path / "new"), "--model", str(PUBLISHED / "sepformer_8k_2src"))
    said = done.stderr.strip().splitlines()
    assert done.returncode == 2 and said[-1].endswith("a speechbrain model; share shares models trained with dnnsep")
    assert said[0].startswith("model: ") and len(said) == 2  # which model it is, then the error
    assert not (tmp_path / "new").exists()
