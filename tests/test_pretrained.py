"""Which model a tool uses without --model: the most recent experiment's best.pth, said aloud."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from dnnsep import CheckpointError, DPRNNConfig, DPRNNTasNet
from dnnsep.bin import separate
from dnnsep.pretrained import default_model_path, experiment_models

TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)
EXP = "2mix/trainable-trainable/sisdr/N16_L4_H16_K10_P5_B1/S2_F16_sigmoid_{norm}_{causal}_sr16k/b4_e3/seed111"


def _experiment(recipe, folder: str, *, causal: bool = False, age: float = 0.0):
    path = recipe / folder / EXP.format(norm="cln" if causal else "gln", causal="causal" if causal else "noncausal")
    path = path / "model" / "best.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    DPRNNTasNet(DPRNNConfig(**TINY, causal=causal)).save(path)
    stamp = path.stat().st_mtime - age
    os.utime(path, (stamp, stamp))
    return path


def test_the_most_recent_experiment_under_exp_folders_is_used_and_named(tmp_path, capsys):
    recipe = tmp_path / "recipe"
    older = _experiment(recipe, "exp", age=100)
    newer = _experiment(recipe, "exp-synthetic")  # the offline main job writes here
    causal = _experiment(recipe, "exp", causal=True, age=50)
    assert experiment_models(recipe) == [newer, causal, older]
    assert default_model_path(recipe) == newer
    assert f"model: {newer}" in capsys.readouterr().err
    assert default_model_path(recipe, causal=True) == causal  # what the live demo asks for
    sf.write(tmp_path / "a.wav", np.zeros(8000, dtype=np.float32) + 0.01, 16000)
    assert separate.main([str(tmp_path / "a.wav"), "--recipe_dir", str(recipe)]) == 0
    assert str(newer) in capsys.readouterr().err
    assert (recipe / "results" / "separated").is_dir()  # the default out_dir is under the recipe


def test_no_experiment_names_the_main_job(tmp_path):
    recipe = tmp_path / "recipe"
    (recipe / "exp").mkdir(parents=True)
    with pytest.raises(
        CheckpointError, match=r"no trained model under .*exp\*/: make one with `bash run\.sh --config conf/mini\.yaml`"
    ):
        default_model_path(recipe)
    with pytest.raises(CheckpointError, match=r"no trained causal model .*conf/causal\.yaml"):
        default_model_path(recipe, causal=True)
    sf.write(tmp_path / "a.wav", np.zeros(800, dtype=np.float32), 16000)
    with pytest.raises(CheckpointError, match="run.sh --config conf/mini.yaml"):
        separate.main([str(tmp_path / "a.wav"), "--recipe_dir", str(recipe)])
    shutil.rmtree(recipe)


def test_causal_models_are_told_by_their_model_args_not_their_directory_names(tmp_path):
    recipe = tmp_path / "recipe"
    causal = _experiment(recipe, "exp", causal=True, age=50)
    noncausal = _experiment(recipe, "exp-synthetic")
    # a directory name that says otherwise (renamed, or an older layout) changes nothing
    renamed = recipe / "exp" / "moved" / "model" / "best.pth"
    renamed.parent.mkdir(parents=True)
    shutil.copy(noncausal, renamed)
    misnamed = recipe / "exp" / "x_causal_y" / "seed1" / "model" / "best.pth"
    misnamed.parent.mkdir(parents=True)
    shutil.copy(noncausal, misnamed)
    os.utime(renamed, (0, 0)), os.utime(misnamed, (1, 1))
    assert experiment_models(recipe, causal=True) == [causal]
    assert experiment_models(recipe, causal=False) == [noncausal, misnamed, renamed]
    (recipe / "exp" / "broken" / "model").mkdir(parents=True)
    (recipe / "exp" / "broken" / "model" / "best.pth").write_bytes(b"not a checkpoint")
    assert experiment_models(recipe, causal=True) == [causal]  # an unreadable file is left out of a filtered list
