"""The house every model lives in: the registry, checkpoints that name their model, options that
all count, and the first release's DPRNN checkpoints still loading, separating and resuming."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import OTHER_VALUES, TINY_MODELS

from dnnsep import models
from dnnsep.errors import CheckpointError, DnnsepError
from dnnsep.training import experiment_dir, load_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "egs" / "librispeech" / "dprnn_tasnet" / "conf" / "default.yaml"
V1 = Path(__file__).parent / "data" / "v1_dprnn"


def build(name: str, **changes) -> models.MaskingModel:
    cls = models.get(name)
    torch.manual_seed(0)
    return cls(cls.config_class(**{**TINY_MODELS[name], **changes})).eval()


def test_every_registered_model_has_tiny_options_and_other_values():
    assert sorted(TINY_MODELS) == sorted(OTHER_VALUES) == models.names()
    for name in models.names():
        options = [k for k in models.get(name).config_class.options() if k not in ("n_sources", "sample_rate")]
        assert sorted(OTHER_VALUES[name]) == sorted(options), name


def test_get_finds_a_model_by_either_name_and_refuses_an_unknown_one():
    assert models.get("DPRNNTasNet") is models.get("dprnn_tasnet") is models.DPRNNTasNet
    assert models.get("ConvTasNet") is models.get("conv-tasnet") is models.ConvTasNet
    with pytest.raises(DnnsepError, match="unknown model 'tasnet9'; known models: conv_tasnet, dprnn_tasnet"):
        models.get("tasnet9")


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_save_then_load_without_naming_the_class_gives_identical_outputs(tmp_path, name):
    model = build(name)
    model.save(tmp_path / "m.pth")
    loaded = models.load(tmp_path / "m.pth")
    assert type(loaded) is type(model) and loaded.config == model.config
    x = torch.randn(2, 1234)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_every_option_changes_the_network_and_the_experiment_directory(name):
    base_cfg = load_config(DEFAULT, {"model.name": name, **TINY_MODELS[name]})
    base = build(name)
    x = torch.randn(1, 810)  # a length at which every padding option pads differently
    with torch.no_grad():
        want = base(x)
    shapes = {k: v.shape for k, v in base.state_dict().items()}
    for key, value in OTHER_VALUES[name].items():
        changes = {key: value, **({"norm": "cln"} if key == "causal" else {})}
        other = build(name, **changes)
        other_shapes = {k: v.shape for k, v in other.state_dict().items()}
        if other_shapes == shapes:
            with torch.no_grad():
                same = torch.allclose(other(x), want, atol=1e-6)
                if same:  # an option that acts while training only (dropout): the same seed in train mode
                    torch.manual_seed(1), base.train(), other.train()
                    y = other(x)
                    torch.manual_seed(1)
                    same = torch.allclose(y, base(x), atol=1e-6)
                    base.eval()
                assert not same, f"{name}.{key} does not change the network"
        cfg = base_cfg.replace(**changes)
        assert experiment_dir(cfg, "o") != experiment_dir(base_cfg, "o"), f"{name}.{key} is not in the directory"


def test_a_checkpoint_of_an_unknown_or_mismatched_model_is_refused(tmp_path):
    model = build("dprnn_tasnet")
    ckpt = model.checkpoint()
    torch.save({**ckpt, "model_name": "Nope\x1b[31m"}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match="unknown model 'Nope.*known models: conv_tasnet, dprnn_tasnet") as err:
        models.load(tmp_path / "unknown.pth")
    assert "\x1b" not in str(err.value)
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "n_filters": 10**7}}, tmp_path / "huge.pth")
    with pytest.raises(CheckpointError, match="weights do not match its config"):  # checked on the meta device
        models.load(tmp_path / "huge.pth")


# -- the first release's checkpoints (format 1, DPRNN), kept under tests/data/v1_dprnn --------------


def test_version_1_best_pth_loads_and_separates_as_it_did():
    model = models.load(V1 / "best.pth").eval()
    reference = torch.load(V1 / "reference.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(model(reference["input"]), reference["output"], rtol=0, atol=1e-6)
    assert model.separate(reference["input"][0].numpy()).shape == (2, 400)


def test_version_1_last_pth_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    from test_train import data, tiny

    from dnnsep.training.trainer import train

    resume = tmp_path / "v1-last.pth"
    shutil.copy(V1 / "last.pth", resume)
    cfg = tiny(epochs=2)  # the options the version-1 run was made with
    summary = train(cfg, tmp_path / "exp", resume=resume, **data())
    assert summary["epoch"] == 2
    state = torch.load(summary["experiment_dir"] / "model" / "last.pth", weights_only=True)
    want = torch.load(V1 / "after_two_epochs.pt", weights_only=True)
    for key, value in want["state_dict"].items():
        torch.testing.assert_close(state["state_dict"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert state["history"]["valid_loss"] == pytest.approx(want["history"]["valid_loss"], abs=1e-6)
    assert state["format_version"] == 2 and state["train_config"]["model"]["name"] == "dprnn_tasnet"
