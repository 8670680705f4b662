"""Rooms and noise in the data: lists that store them, dynamic mixing that redraws them per epoch,
streams that keep valid/test scenes out of training, the config's options and directory tags, and
evaluate's breakdown by condition."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyroomacoustics  # noqa: F401 -- a [dev] package (the tool check names it up front); never skipped
import pytest
import soundfile as sf
import torch
from corpus import tiny_corpus

from dnnsep.bin import prepare
from dnnsep.data import MixtureDataset, list_path
from dnnsep.data.lists import Rng
from dnnsep.data.noise import NoiseOptions
from dnnsep.data.rooms import RoomOptions
from dnnsep.data.scene import SceneOptions, options_from_config
from dnnsep.errors import DnnsepError
from dnnsep.training.config import TrainConfig, experiment_dir, load_config
from dnnsep.training.config import upgrade_flat_config as upgrade
from dnnsep.training.start import make_datasets

ROOMS = ["--reverb", "rooms", "--rt60", "0.2", "0.5", "--noise", "synthetic"]
SMALL = RoomOptions(rt60=(0.2, 0.5), length=(3.0, 4.0), width=(3.0, 4.0), height=(2.4, 2.8))
DEFAULT = "egs/librispeech/dprnn_tasnet/conf/default.yaml"


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture(scope="module")
def noisy(corpus_root, tmp_path_factory):
    """A dataset folder whose lists hold rooms and synthetic noise (direct-path targets)."""
    out = tmp_path_factory.mktemp("noisy")
    args = ["--librispeech_root", str(corpus_root), "--segment", "1", "--eval_segment", "1", "--no_progress"]
    assert prepare.main([str(out), "2", *args, *ROOMS, "--reverb_target", "direct"]) == 0
    return out


def test_lists_store_scenes_identically_per_seed_and_never_draw_trainings_streams(noisy, corpus_root, tmp_path):
    args = ["--librispeech_root", str(corpus_root), "--segment", "1", "--eval_segment", "1", "--no_progress"]
    assert prepare.main([str(tmp_path), "2", *args, *ROOMS, "--reverb_target", "direct"]) == 0
    for split in ("train", "valid", "test"):
        assert list_path(tmp_path, 2, split).read_bytes() == list_path(noisy, 2, split).read_bytes()
    lists = {s: json.loads(list_path(noisy, 2, s).read_text()) for s in ("train", "valid", "test")}
    assert all(lst["version"] == 2 and lst["reverb_target"] == "direct" for lst in lists.values())
    rooms = {s: [json.dumps(m["scene"]["room"]) for m in lst["mixtures"]] for s, lst in lists.items()}
    assert not set(rooms["train"]) & set(rooms["test"]) and not set(rooms["valid"]) & set(rooms["test"])
    train = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, seed=0, scene=SceneOptions(room=SMALL))
    drawn = {json.dumps(train.scene(i)["room"]) for i in range(len(train))}
    assert not drawn & set(rooms["test"])  # training's on-the-fly rooms come from other streams


def test_a_stored_scene_gives_a_noisy_reverberant_mixture_at_its_snr(noisy):
    rev = MixtureDataset(list_path(noisy, 2, "test"), reverb_target="reverberant")
    direct = MixtureDataset(list_path(noisy, 2, "test"))  # the list's choice: direct
    dry = MixtureDataset(list_path(noisy, 2, "test"), reverb_target="reverberant")
    dry.mixtures = [{k: v for k, v in m.items() if k != "scene"} for m in dry.mixtures]
    for i in range(3):
        mixture, sources = rev[i]
        _, targets = direct[i]
        n = mixture - sources.sum(0)  # the noise
        snr = 10 * torch.log10(sources.sum(0).double().square().sum() / n.double().square().sum())
        assert float(snr) == pytest.approx(rev.mixtures[i]["scene"]["noise"]["snr_db"], abs=0.1)
        assert not torch.allclose(targets, sources, atol=1e-3)  # direct-path targets differ from reverberant ones
        assert not torch.allclose(dry[i][1], sources, atol=1e-3)  # and the room changed the sources
        cond = rev.conditions(i)
        assert cond == {"rt60": rev.mixtures[i]["scene"]["room"]["rt60"], "snr_db": cond["snr_db"]}
        assert 0.2 <= cond["rt60"] <= 0.5 and -5 <= cond["snr_db"] <= 15


def test_dynamic_mixing_draws_a_new_room_and_noise_per_epoch_reproducibly(noisy):
    opts = SceneOptions(room=SMALL, noise=NoiseOptions(snr_db=(0.0, 10.0)))
    path = list_path(noisy, 2, "train")
    a = MixtureDataset(path, dynamic_mixing=True, seed=3, scene=opts)
    b = MixtureDataset(path, dynamic_mixing=True, seed=3, scene=opts)
    first = [a[i] for i in range(2)]
    for i in range(2):
        assert all(torch.equal(x, y) for x, y in zip(first[i], b[i]))
    conditions = [a.conditions(i) for i in range(4)]
    a.set_epoch(1)
    assert [a.conditions(i) for i in range(4)] != conditions
    assert not torch.equal(a[0][0], first[0][0])
    a.set_epoch(0)
    assert torch.equal(a[0][0], first[0][0]) and [a.conditions(i) for i in range(4)] == conditions
    other = MixtureDataset(path, dynamic_mixing=True, seed=4, scene=opts)
    assert [other.conditions(i) for i in range(4)] != conditions


def test_a_room_bank_shares_rooms_within_an_epoch_and_renews_them_each_epoch(noisy):
    opts = SceneOptions(room=SMALL, room_bank=2)
    data = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, seed=0, scene=opts)
    rooms0 = {json.dumps(data.scene(i)["room"]) for i in range(len(data))}
    data.set_epoch(1)
    rooms1 = {json.dumps(data.scene(i)["room"]) for i in range(len(data))}
    assert len(rooms0) == len(rooms1) == 2 and not rooms0 & rooms1


def test_a_room_life_renews_a_share_of_the_bank_each_epoch_and_simulates_each_room_once(noisy, monkeypatch):
    from dnnsep.data import rooms, scene

    monkeypatch.setattr(scene, "IR_CACHE", 2)  # the cache must keep the whole bank beyond it
    simulated = []
    simulate = rooms.simulate
    monkeypatch.setattr(rooms, "simulate", lambda room, sr: simulated.append(room) or simulate(room, sr))
    opts = SceneOptions(room=SMALL, room_bank=4, room_life=2)
    data = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, seed=0, scene=opts)
    assert len(data) >= 16  # enough draws to use each of the 4 rooms every epoch (checked below)
    seen = []  # the rooms of each epoch
    for epoch in range(6):
        data.set_epoch(epoch)
        for i in range(len(data)):
            data[i]
        seen.append({json.dumps(data.scene(i)["room"], sort_keys=True) for i in range(len(data))})
    assert all(len(s) == 4 for s in seen)
    for a, b in zip(seen, seen[1:]):
        assert len(a & b) == 2  # half the bank kept, half renewed
    for room in set().union(*seen):
        epochs = [e for e, s in enumerate(seen) if room in s]
        assert epochs == list(range(epochs[0], epochs[0] + len(epochs))) and len(epochs) <= 2
    assert len(simulated) == len(set().union(*seen)) == 4 + 2 * 5  # each room simulated once
    again = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, seed=0, scene=opts)
    again.set_epoch(5)
    assert {json.dumps(again.scene(i)["room"], sort_keys=True) for i in range(len(again))} == seen[5]
    with pytest.raises(DnnsepError, match="room_life 2: .* set room_bank too"):
        SceneOptions(room=SMALL, room_life=2)
    once = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, seed=0, scene=SceneOptions(room=SMALL,
                          room_bank=4))  # fmt: skip
    slot = Rng("scene train 0 3 0 bank").below(4)
    assert once._bank_key("scene train 0 3 0", 3) == f"room train 0 3 {slot}"  # as before room_life: same rooms
    with pytest.raises(DnnsepError, match="room_life must be at least 1"):
        SceneOptions(room=SMALL, room_bank=4, room_life=0)


def test_a_dry_share_leaves_that_share_of_training_draws_dry_and_clean_and_validation_none(noisy):
    opts = SceneOptions(room=SMALL, noise=NoiseOptions(snr_db=(0.0, 10.0)), room_bank=2, dry_share=0.5)
    path = list_path(noisy, 2, "train")
    data = MixtureDataset(path, dynamic_mixing=True, seed=5, scene=opts)
    plain = MixtureDataset(path, dynamic_mixing=True, seed=5)
    all_wet = MixtureDataset(path, dynamic_mixing=True, seed=5, scene=dataclasses.replace(opts, dry_share=0.0))
    dry = {}
    for epoch in range(30):
        data.set_epoch(epoch)
        dry[epoch] = [i for i in range(len(data)) if data.scene(i) is None]
    share = sum(map(len, dry.values())) / (30 * len(data))
    assert 0.35 <= share <= 0.65, share
    assert len({tuple(v) for v in dry.values()}) > 1  # other mixtures each epoch
    again = MixtureDataset(path, dynamic_mixing=True, seed=5, scene=opts)
    again.set_epoch(3)
    assert [i for i in range(len(again)) if again.scene(i) is None] == dry[3]
    for d in (data, plain, all_wet):
        d.set_epoch(3)
    wet = next(i for i in range(len(data)) if i not in dry[3])
    assert data.scene(wet) == all_wet.scene(wet)  # the wet ones keep the rooms and noise they had
    for i in (dry[3][0], wet):  # a dry one is the plain mixture; a wet one is not
        same = all(torch.equal(x, y) for x, y in zip(data[i], plain[i]))
        assert same == (i in dry[3])
    fixed = MixtureDataset(path, scene=dataclasses.replace(opts, dry_share=0.5))  # stored scenes, no dynamic mixing
    kept = [fixed.scene(i) for i in range(len(fixed))]
    assert None in kept and all(k is None or k == m["scene"] for k, m in zip(kept, fixed.mixtures))
    assert any(k is not None for k in kept)
    cfg = load_config(DEFAULT).replace(dataset_dir=str(noisy), reverb="rooms", noise="synthetic", dry_share=0.5)
    train, valid = make_datasets(cfg)
    assert train.scene_options.dry_share == 0.5 and valid.scene_options.dry_share == 0
    with pytest.raises(DnnsepError, match=r"dry_share must be in \[0, 1\)"):
        SceneOptions(room=SMALL, dry_share=1.0)


def test_noise_files_for_valid_and_test_are_never_trained_on(corpus_root, tmp_path):
    (tmp_path / "noise").mkdir()
    for i in range(30):
        sf.write(tmp_path / "noise" / f"n{i}.wav", np.full(20000, 0.01 * (i + 1), dtype=np.float32), 16000)
    args = ["--librispeech_root", str(corpus_root), "--segment", "1", "--eval_segment", "1", "--no_progress"]
    assert (
        prepare.main([str(tmp_path / "d"), "2", *args, "--noise", "files", "--noise_root", str(tmp_path / "noise")])
        == 0
    )
    used = {}
    for split in ("train", "valid", "test"):
        lst = json.loads(list_path(tmp_path / "d", 2, split).read_text())
        used[split] = {m["scene"]["noise"]["file"] for m in lst["mixtures"]}
        mixture, sources = MixtureDataset(list_path(tmp_path / "d", 2, split))[0]
        assert not torch.allclose(mixture, sources.sum(0))  # the file's noise is in the mixture
    assert not used["train"] & used["test"] and not used["train"] & used["valid"]
    opts = SceneOptions(noise=NoiseOptions(source="files", root=str(tmp_path / "noise")))
    train = MixtureDataset(list_path(tmp_path / "d", 2, "train"), dynamic_mixing=True, scene=opts)
    drawn = {train.scene(i)["noise"]["file"].rsplit("/", 1)[-1] for i in range(len(train))}
    assert not drawn & {f.rsplit("/", 1)[-1] for f in used["test"] | used["valid"]}


def test_config_options_tags_and_old_configs(tmp_path):
    base = load_config(DEFAULT)
    assert (base.reverb, base.noise, base.reverb_target) == ("none", "none", "reverberant")
    assert options_from_config(base) is None
    cfg = base.replace(reverb="rooms", reverb_target="direct", noise="synthetic", rt60_min=0.2, snr_max=10.0)
    name = experiment_dir(cfg, "o").parts[-2]
    assert name.endswith("_room0.2-0.8s_direct_noise-syn-5to10dB")
    assert experiment_dir(base, "o").parts[-2] == "b4_e100_adam-lr1e-3-decay0_clip5"
    opts = options_from_config(cfg)
    assert opts.room.rt60 == (0.2, 0.8) and opts.noise.source == "synthetic" and opts.noise.snr_db == (-5.0, 10.0)
    assert opts.describe().startswith("rooms RT60 0.2-0.8 s; noise synthetic (pink, brown, babble")
    dry = cfg.replace(dry_share=0.5)
    assert experiment_dir(dry, "o").parts[-2] == name + "_dry0.5"
    assert options_from_config(dry).dry_share == 0.5 and options_from_config(cfg).dry_share == 0
    assert options_from_config(dry).describe().endswith("; 50% of training mixtures dry and clean")
    banked = cfg.replace(room_bank=64, room_life=4)
    assert experiment_dir(banked, "o").parts[-2] == name.replace("_noise", "_bank64x4_noise")
    assert experiment_dir(banked.replace(room_life=1), "o").parts[-2] == name.replace("_noise", "_bank64_noise")
    assert options_from_config(banked).describe().startswith("rooms RT60 0.2-0.8 s, a bank of 64, each room serving 4")
    assert experiment_dir(base.replace(dry_share=0.5), "o") == experiment_dir(base, "o")  # nothing to leave dry
    old_keys = ("reverb", "noise", "rt60_min", "snr_min", "dry_share", "room_life")
    saved = {k: v for k, v in base.to_dict().items() if k not in old_keys}
    assert type(base).from_dict(upgrade(saved)) == base  # an older last.pth reads them as off
    for change, match in (
        (dict(rt60_min=-0.1), "rt60_min"),
        (dict(snr_min=20.0), r"snr_min \(20.0 dB\) must not exceed snr_max"),
        (dict(reverb="measured"), "rir_root"),
        (dict(noise="loud"), "noise='loud' is not one of"),
        (dict(dry_share=1.0), r"dry_share must be in \[0, 1\)"),
        (dict(dry_share=-0.1), "dry_share"),
        (dict(room_life=0), "room_life must be at least 1"),
        (dict(reverb="rooms", room_life=2), "room_life 2: .* set room_bank too"),
    ):
        with pytest.raises(DnnsepError, match=match) as err:
            base.replace(**change)
        assert "\n" not in str(err.value)


def test_recipe_configs_load_with_their_options():
    for model in ("dprnn_tasnet", "conv_tasnet", "sepformer"):
        for name in ("noisy_reverb", "mini_noisy_reverb"):
            cfg = load_config(f"egs/librispeech/{model}/conf/{name}.yaml")
            assert (cfg.reverb, cfg.reverb_target, cfg.noise, cfg.dynamic_mixing) == (
                "rooms",
                "direct",
                "synthetic",
                True,
            )
            assert cfg.model["name"] == model
            assert cfg.dry_share == (0.75 if name == "mini_noisy_reverb" else 0.0)


def test_the_noisy_reverberant_main_job_differs_from_the_clean_one_in_its_data_and_its_model_window_and_width():
    """bench_rooms_quality compares the two mini DPRNN jobs: same optimizer, schedule and budget; the noisy one
    has rooms and noise, and a 64-sample window with H=128 (docs/recipe-levers.md)."""
    clean = load_config("egs/librispeech/dprnn_tasnet/conf/mini.yaml")
    noisy = load_config("egs/librispeech/dprnn_tasnet/conf/mini_noisy_reverb.yaml")
    data = {"dataset_dir", "reverb", "rt60_min", "rt60_max", "reverb_target", "room_bank", "room_life", "noise",
            "snr_min", "snr_max", "dry_share", "model"}  # fmt: skip
    differ = {k for k in TrainConfig.keys() if getattr(clean, k) != getattr(noisy, k)}
    assert differ <= data, f"the two jobs differ in more than their data and model: {sorted(differ - data)}"
    assert {"reverb", "noise", "dry_share"} <= differ
    model = {k for k in clean.model.keys() | noisy.model.keys() if clean.model.get(k) != noisy.model.get(k)}
    assert model == {"kernel_size", "stride", "hidden"}  # the stride follows the window (half of it)
    assert (noisy.model["kernel_size"], noisy.model["stride"], noisy.model["hidden"]) == (64, 32, 128)


@pytest.mark.slow
def test_evaluate_reports_si_sdri_overall_and_by_rt60_and_snr_bins(noisy, tmp_path, capsys):
    from dnnsep.bin import evaluate
    from dnnsep.models import DPRNNConfig, DPRNNTasNet

    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1))
    path = tmp_path / "exp" / "model" / "best.pth"
    path.parent.mkdir(parents=True)
    config = {"dataset_dir": str(noisy), "reverb_target": "direct"}
    torch.save({**model.checkpoint(), "train_config": config}, path)
    argv = [str(path), "--n_examples", "0", "--report_rows", "0", "--device", "cpu", "--max_utterances", "6"]
    assert evaluate.main(argv) == 0
    out = tmp_path / "exp" / "eval" / "test-best"
    summary = json.loads((out / "summary.json").read_text())
    lst = json.loads(list_path(noisy, 2, "test").read_text())
    rt60s = [m["scene"]["room"]["rt60"] for m in lst["mixtures"][:6]]
    table = {b["bin"]: b for b in summary["by_condition"]["rt60"]}
    assert sum(b["count"] for b in table.values()) == len(rt60s) == summary["n_utterances"]
    assert table["0-0.3 s"]["count"] == sum(r < 0.3 for r in rt60s)
    snr = summary["by_condition"]["snr_db"]
    assert sum(b["count"] for b in snr) == len(rt60s) and {b["bin"] for b in snr} <= {
        "<0 dB",
        "0-5 dB",
        "5-10 dB",
        ">=10 dB",
    }
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header.endswith(",rt60,snr_db")
    printed = capsys.readouterr().out
    assert "SI-SDRi by rt60: 0-0.3 s:" in printed and "SI-SDRi by snr:" in printed


@pytest.mark.slow
def test_bench_rooms_tiny(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "rooms.json"
    subprocess.run([sys.executable, "bench/bench_rooms.py", "--tiny", "--out", str(out)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    result = json.loads(out.read_text())
    assert result["clean_ms_per_step"] > 0 and result["train_step_ms"] > 0
    slowdowns = {"slowdown_bank0", "slowdown_bank64", "slowdown_bank64x4", "slowdown_bank0_dry0.75",
                 "slowdown_bank64_dry0.75", "slowdown_bank64x4_dry0.75"}  # fmt: skip
    assert slowdowns == {k for k in result if k.startswith("slowdown")}
    assert result["rooms_noise_bank0_dry0.75_ms_per_step"] < result["rooms_noise_bank0_ms_per_step"]


def test_measured_responses_in_dynamic_mixing_and_in_lists(noisy, corpus_root, tmp_path):
    h = np.zeros(4000, dtype=np.float32)
    h[20] = 1.0
    h[40:] = 0.3 * np.exp(-np.arange(3960) / 600) * np.random.default_rng(0).standard_normal(3960)
    (tmp_path / "rirs").mkdir()
    for i in range(3):
        sf.write(tmp_path / "rirs" / f"r{i}.wav", h * (1 - 0.1 * i), 16000)
    opts = SceneOptions(rir_root=str(tmp_path / "rirs"))
    data = MixtureDataset(list_path(noisy, 2, "train"), dynamic_mixing=True, scene=opts, reverb_target="reverberant")
    mixture, sources = data[0]
    assert torch.allclose(mixture, sources.sum(0), atol=1e-5)  # reverberant targets, no noise
    assert 0.1 < data.conditions(0)["rt60"] < 1.0
    args = ["--librispeech_root", str(corpus_root), "--segment", "1", "--eval_segment", "1", "--no_progress"]
    assert (
        prepare.main([str(tmp_path / "d"), "2", *args, "--reverb", "measured", "--rir_root", str(tmp_path / "rirs")])
        == 0
    )
    test = MixtureDataset(list_path(tmp_path / "d", 2, "test"))  # reads the responses the list names
    assert all(p.endswith(".wav") for p in test.mixtures[0]["scene"]["room"]["rirs"])
    assert not torch.allclose(
        test[0][1], MixtureDataset(list_path(noisy, 2, "test"), reverb_target="reverberant")[0][1]
    )


def test_the_trainer_trains_on_the_configs_rooms_and_noise(noisy, tmp_path):
    """make_datasets passes the config's scene options: a training mixture is then not the sum of its clean
    sources, and the training log names the rooms and noise."""
    from dnnsep.training import load_config
    from dnnsep.training.start import make_datasets
    from dnnsep.training.trainer import Trainer

    options = dict(dataset_dir=str(noisy), dynamic_mixing=True, reverb="rooms", rt60_min=0.2, rt60_max=0.5,
                   noise="synthetic", reverb_target="reverberant", num_workers=0, device="cpu", epochs=1,
                   batch_size=2, n_filters=8, hidden=8, chunk_size=10, hop_size=5, n_blocks=1)  # fmt: skip
    cfg = load_config(Path(__file__).resolve().parents[1] / DEFAULT, options)
    train, valid = make_datasets(cfg)
    mixture, sources = train[0]
    assert not torch.allclose(mixture, sources.sum(0), atol=1e-3)  # rooms and noise were applied
    plain = make_datasets(cfg.replace(reverb="none", noise="none"))[0][0]
    assert torch.allclose(plain[0], plain[1].sum(0), atol=1e-5)  # and without them, as before
    trainer = Trainer(cfg, tmp_path)
    assert "rooms and noise: rooms RT60 0.2-0.5 s" in (trainer.exp / "log" / "train.log").read_text()
