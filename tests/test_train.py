"""Training: config and experiment directory, exact resume, plateau/early stop, atomic saves, non-finite
losses, refusals, and DDP with gloo on CPU.  A tiny model on in-memory sums of sinusoids."""

from __future__ import annotations

import itertools
import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dnnsep.checkpoint import load_checkpoint
from dnnsep.cli import run
from dnnsep.errors import CheckpointError, DnnsepError
from dnnsep.models import DPRNNTasNet
from dnnsep.training import distributed, experiment_dir, load_config
from dnnsep.training import start as start_module
from dnnsep.training import trainer as trainer_module
from dnnsep.training.config import TrainConfig, prepare_args
from dnnsep.training.sampler import EpochBatchSampler
from dnnsep.training.trainer import NonFiniteLossError, train

RECIPE = Path(__file__).resolve().parents[1] / "egs" / "librispeech" / "dprnn_tasnet"
DEFAULT = RECIPE / "conf" / "default.yaml"
TINY = dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1, batch_size=4,
            num_workers=0, device="cpu", lr=1e-2, epochs=4)  # fmt: skip
SEED_DIR = "2mix/trainable-trainable/sisdr/N64_L16_H256_K100_P50_B3/{sep}/b4_e100_adam-lr1e-3-decay0_clip5/seed111"


def tiny(**changes) -> TrainConfig:
    return load_config(DEFAULT, {**TINY, **changes})


class Sines(Dataset):
    """Two sources per item, each a sum of three sinusoids (one low band, one high band).

    Shape: item -> (mixture (length,), sources (2, length)); ``nan_items`` return NaN mixtures.
    """

    def __init__(self, n: int, *, length: int = 400, seed: int = 0, nan_items=()):
        rng = np.random.default_rng(seed)
        t = np.arange(length) / 16000
        self.items = []
        for i in range(n):
            srcs = []
            for low, high in ((100, 400), (1500, 4000)):
                f, a, ph = rng.uniform(low, high, 3), rng.uniform(0.1, 0.5, 3), rng.uniform(0, 2 * np.pi, 3)
                srcs.append((a[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0))
            sources = torch.tensor(np.stack(srcs), dtype=torch.float32)
            mixture = sources.sum(0) * (math.nan if i in nan_items else 1.0)
            self.items.append((mixture, sources))
        self.interrupt_after = None  # raise KeyboardInterrupt when this many more items were read
        self.epochs_seen = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        if self.interrupt_after is not None:
            if self.interrupt_after == 0:
                raise KeyboardInterrupt
            self.interrupt_after -= 1
        return self.items[i]


def data(n_train: int = 12, n_valid: int = 4, **kw):
    return {"train_set": Sines(n_train, **kw), "valid_set": Sines(n_valid, seed=1)}


def exp_of(cfg: TrainConfig, out: Path) -> Path:
    return experiment_dir(cfg, out)


# -- config ------------------------------------------------------------------------------------


def test_default_config_gives_the_seed_recipes_directory(tmp_path):
    cfg = load_config(DEFAULT)
    m = cfg.model_config
    assert cfg.model["name"] == "dprnn_tasnet"
    assert (m.n_filters, m.kernel_size, m.hidden, m.chunk_size, m.hop_size, m.n_blocks) == (
        64, 16, 256, 100, 50, 3)  # fmt: skip
    assert (m.mask, cfg.batch_size, cfg.epochs, cfg.optimizer, cfg.lr, cfg.weight_decay) == (
        "sigmoid", 4, 100, "adam", 1e-3, 0.0)  # fmt: skip
    assert (cfg.clip_grad_norm, cfg.seed, cfg.lr_patience, cfg.early_stop_patience) == (5.0, 111, 3, 5)
    sep = "S8_F64_sigmoid_gln_noncausal_sr16k"
    assert experiment_dir(cfg, "OUT").as_posix() == "OUT/" + SEED_DIR.format(sep=sep)
    assert Path(cfg.dataset_dir) == (RECIPE / ".." / "dataset").resolve()  # relative to the YAML file
    assert prepare_args(DEFAULT) == []


def test_every_data_and_training_option_changes_the_directory():
    """(Every model option too: tests/test_models.py, over the registry.)"""
    base = load_config(DEFAULT)
    for key, value in dict(batch_size=8, epochs=5, optimizer="adamw", lr=5e-4, weight_decay=1e-5, n_sources=3,
                           clip_grad_norm=0.0, seed=1, dynamic_mixing=True, segment_seconds=2.0,
                           sample_rate=8000).items():  # fmt: skip
        assert experiment_dir(base.replace(**{key: value}), "o") != experiment_dir(base, "o"), key


def test_model_section_merges_over_extends_and_refuses_what_is_not_the_models(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  hidden: 32\n")
    cfg = load_config(child)
    assert cfg.model["hidden"] == 32 and cfg.model["chunk_size"] == 100  # merged, not replaced
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  name: conv_tasnet\n")
    assert load_config(child).model_config.n_filters == 512  # another model: its own defaults
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  hiden: 32\n")
    with pytest.raises(DnnsepError, match="child.yaml: unknown model option.* hiden of dprnn_tasnet"):
        load_config(child)
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  n_sources: 3\n")
    with pytest.raises(DnnsepError, match="model.n_sources: set n_sources at the top level"):
        load_config(child)
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  name: tasnet9\n")
    with pytest.raises(DnnsepError, match="model.name: unknown model 'tasnet9'"):
        load_config(child)
    child.write_text(f"extends: {DEFAULT}\nmodel:\n  hidden: 7\n")
    with pytest.raises(DnnsepError, match="child.yaml: model: invalid hidden=7"):
        load_config(child)
    assert load_config(DEFAULT, {"hidden": 32}).model["hidden"] == 32  # a bare model option on the command line


def test_cpu_processes_must_share_the_batch_evenly():
    with pytest.raises(DnnsepError, match=r"batch_size \(4\) must be a multiple of cpu_processes \(3\)"):
        tiny(cpu_processes=3)
    assert tiny(cpu_processes=2).cpu_processes == 2


def test_mini_config_extends_default_and_carries_prepare_options():
    cfg = load_config(RECIPE / "conf" / "mini.yaml")
    assert cfg.model["hidden"] < 256 and Path(cfg.dataset_dir).name == "dataset-mini"
    assert cfg.batch_size == 4 and cfg.cpu_processes == 2  # its two CPU processes share each batch of 4
    assert cfg.max_minutes is not None and cfg.dynamic_mixing  # the 15-minute job's guard and its levers
    args = prepare_args(RECIPE / "conf" / "mini.yaml")
    assert args[:4] == ["--subsets", "dev-clean", "dev-clean", "test-clean"]  # held-out test voices


def test_config_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {DEFAULT}\nlearning_rate: 0.1\n")
    with pytest.raises(DnnsepError, match=r"bad.yaml: unknown key\(s\) learning_rate"):
        load_config(bad)
    bad.write_text(f"extends: {DEFAULT}\nbatch_size: four\n")
    with pytest.raises(DnnsepError, match="bad.yaml: batch_size must be an integer, got 'four'"):
        load_config(bad)
    bad.write_text("n_sources: 2\n")
    with pytest.raises(DnnsepError, match="missing key"):
        load_config(bad)
    bad.write_text(f"extends: {DEFAULT}\nhop_size: 30\n")  # does not divide chunk_size
    with pytest.raises(DnnsepError, match="hop_size"):
        load_config(bad)
    with pytest.raises(DnnsepError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_overrides_are_type_checked(capsys, tmp_path):
    from dnnsep.bin import train as train_cli

    assert train_cli.main(["--config", str(DEFAULT), "--lr", "5e-4", "--stride", "null", "--get", "lr"]) == 0
    assert capsys.readouterr().out.strip() == "0.0005"
    train_cli.main(["--config", str(DEFAULT), "--seed", "7", "--causal", "true", "--get", "experiment_dir", "o"])
    assert capsys.readouterr().out.strip().endswith("S8_F64_sigmoid_cln_causal_sr16k/"
                                                    "b4_e100_adam-lr1e-3-decay0_clip5/seed7")  # fmt: skip
    with pytest.raises(DnnsepError, match="--epochs: expected an integer, got 'many'"):
        train_cli.main(["--config", str(DEFAULT), "--epochs", "many", "--get", "epochs"])
    with pytest.raises(DnnsepError, match="--learning_rate: not an option"):
        train_cli.main(["--config", str(DEFAULT), "--learning_rate", "1", "o"])
    train_cli.main(
        ["--config", str(DEFAULT), "--model.name", "conv_tasnet", "--n_layers", "4", "--get", "model.n_layers"]
    )
    assert capsys.readouterr().out.strip() == "4"


# -- sampler -----------------------------------------------------------------------------------


def test_sampler_shards_cover_the_epoch_and_depend_only_on_seed_and_epoch():
    shards = [EpochBatchSampler(11, batch_size=2, seed=3, rank=r, world_size=2) for r in range(2)]
    for s in shards:
        s.set_epoch(5)
    seen = [i for s in shards for batch in s for i in batch]
    assert len(seen) == 12 and set(seen) == set(range(11))  # padded by one repeat, like DistributedSampler
    assert len(shards[0]) == len(shards[1]) == 3
    again = EpochBatchSampler(11, batch_size=2, seed=3, rank=1, world_size=2)
    again.set_epoch(5, start_step=2)
    assert list(again) == list(shards[1])[2:]
    valid = [EpochBatchSampler(5, batch_size=2, seed=0, shuffle=False, rank=r, world_size=2, pad=False) for r in (0, 1)]
    assert sorted(i for s in valid for b in s for i in b) == [0, 1, 2, 3, 4]


# -- training ----------------------------------------------------------------------------------


def test_exact_resume_two_plus_two_equals_four(tmp_path):
    straight = train(tiny(), tmp_path / "a", **data())
    cfg = tiny(stop_after_epoch=2)
    first = train(cfg, tmp_path / "b", **data())
    assert first["epoch"] == 2 and first["stopped"] is None
    last = exp_of(cfg, tmp_path / "b") / "model" / "last.pth"
    resumed = train(tiny(), tmp_path / "b", resume=last, **data())
    assert resumed["epoch"] == 4
    for key in ("train_loss", "valid_loss", "valid_si_sdri", "lr"):
        assert resumed["history"][key] == straight["history"][key], key
    a = load_checkpoint(exp_of(cfg, tmp_path / "a") / "model" / "last.pth")
    b = load_checkpoint(last)
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    assert b["progress"]["epoch"] == 4 and b["progress"]["stopped"].startswith("finished 4 epochs")
    log = (exp_of(cfg, tmp_path / "b") / "log" / "train.log").read_text()
    assert "resumed from" in log and "epoch 4/4" in log
    # the best model is portable: rebuilt from best.pth alone, it separates
    best = DPRNNTasNet.from_checkpoint(exp_of(cfg, tmp_path / "b") / "model" / "best.pth")
    assert best.separate(torch.randn(400)).shape == (2, 400)


def test_mid_epoch_resume_continues_exactly(tmp_path):
    cfg = tiny(epochs=2, save_every_steps=2)
    straight = train(cfg, tmp_path / "a", **data())
    sets = data()
    sets["train_set"].interrupt_after = 12 + 4 + 2  # epoch 1 (3 steps), step 1 of epoch 2, killed in step 2
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "b", **sets)
    last = exp_of(cfg, tmp_path / "b") / "model" / "last.pth"
    state = load_checkpoint(last)
    assert (state["progress"]["epoch"], state["progress"]["step"]) == (1, 1)  # saved at global step 4
    resumed_sets = data()
    resumed = train(cfg, tmp_path / "b", resume=last, **resumed_sets)
    assert resumed["history"]["train_loss"] == straight["history"]["train_loss"]
    assert resumed["history"]["valid_loss"] == straight["history"]["valid_loss"]
    a = load_checkpoint(exp_of(cfg, tmp_path / "a") / "model" / "last.pth")["state_dict"]
    b = load_checkpoint(last)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed_sets["train_set"].epochs_seen == [1]  # dynamic mixing is told which epoch it is


def test_adam_is_fused_on_the_cpu_from_torch_2_4_and_a_resume_keeps_the_update_it_began_with(tmp_path, monkeypatch):
    params = list(DPRNNTasNet(tiny().model_config).parameters())
    for version, fused in (("2.3.1", False), ("2.4.0+cpu", True), ("2.13.0", True), ("3.0.0", True), ("dev", False)):
        monkeypatch.setattr(torch, "__version__", version)
        assert start_module.fused_on_cpu(params) is fused, version
    monkeypatch.undo()
    assert not start_module.fused_on_cpu([torch.zeros(2, dtype=torch.int64)])
    assert not start_module.fused_on_cpu([torch.zeros(2, device="meta")])  # another device: torch's default
    # a CPU run updates as the predicate says for this torch (fused from 2.4, CI's), and its checkpoint says so
    run = tiny(epochs=2, stop_after_epoch=1)
    train(run, tmp_path / "f", **data())
    group = load_checkpoint(exp_of(run, tmp_path / "f") / "model" / "last.pth")["optimizer"]["param_groups"][0]
    assert group["fused"] is (True if start_module.fused_on_cpu(params) else None)
    # a run begun unfused (torch < 2.4, say) resumes unfused, exactly: the checkpoint's groups carry the choice
    monkeypatch.setattr(start_module, "fused_on_cpu", lambda params: False)
    straight = train(tiny(), tmp_path / "a", **data())
    cfg = tiny(stop_after_epoch=2)
    train(cfg, tmp_path / "b", **data())
    monkeypatch.undo()
    last = exp_of(cfg, tmp_path / "b") / "model" / "last.pth"
    assert not load_checkpoint(last)["optimizer"]["param_groups"][0]["fused"]
    resumed = train(tiny(), tmp_path / "b", resume=last, **data())
    assert resumed["history"]["train_loss"] == straight["history"]["train_loss"]
    a = load_checkpoint(exp_of(cfg, tmp_path / "a") / "model" / "last.pth")["state_dict"]
    b = load_checkpoint(last)
    assert all(torch.equal(a[k], b["state_dict"][k]) for k in a) and not b["optimizer"]["param_groups"][0]["fused"]
    # and a fused checkpoint resumed where the kernel is missing (torch 2.3, another device) updates unfused
    fused_last = exp_of(run, tmp_path / "f") / "model" / "last.pth"
    monkeypatch.setattr(start_module, "fused_on_cpu", lambda params: False)
    more = train(tiny(epochs=2), tmp_path / "f", resume=fused_last, **data())
    assert more["epoch"] == 2 and load_checkpoint(fused_last)["optimizer"]["param_groups"][0]["fused"] is None


def test_lr_halving_and_early_stopping_on_scripted_validation(tmp_path, monkeypatch):
    script = iter([5.0, 4.0, 4.5, 4.2, 4.1, 4.3, 4.4, 0.0])  # best at 2; halve after 3 bad epochs; stop after 5
    monkeypatch.setattr(trainer_module.Trainer, "validate", lambda self: (next(script), 1.0))
    plots = []
    real_plot = trainer_module.plot_history
    monkeypatch.setattr(trainer_module, "plot_history", lambda *a, **k: plots.append(k["events"]) or real_plot(*a, **k))
    cfg = tiny(epochs=20, lr=1e-3)
    result = train(cfg, tmp_path, **data(n_train=4))
    assert result["epoch"] == 7 and result["best_epoch"] == 2
    assert result["history"]["lr"] == [1e-3] * 5 + [5e-4] * 2
    state = load_checkpoint(exp_of(cfg, tmp_path) / "model" / "last.pth")
    assert state["progress"]["stopped"].startswith("early stopping after epoch 7: no improvement for 5 epochs")
    assert state["events"] == [[5, "lr 0.0005"], [7, "early stop"]]
    assert plots[-1] == {5: "lr 0.0005", 7: "early stop"}
    assert (exp_of(cfg, tmp_path) / "loss" / "loss.png").stat().st_size > 1000
    assert load_checkpoint(exp_of(cfg, tmp_path) / "model" / "best.pth")["epoch"] == 2
    assert "early stopping after epoch 7" in (exp_of(cfg, tmp_path) / "log" / "train.log").read_text()
    again = train(cfg, tmp_path, resume=exp_of(cfg, tmp_path) / "model" / "last.pth", **data(n_train=4))
    assert again["epoch"] == 7  # a finished run resumes to nothing


def test_loss_png_is_redrawn_at_most_every_plot_interval_and_at_the_end(tmp_path, monkeypatch):
    drawn = []  # epochs in the history of each plot drawn
    real_plot = trainer_module.plot_history
    monkeypatch.setattr(
        trainer_module,
        "plot_history",
        lambda path, h, **k: drawn.append(len(h["train_loss"])) or real_plot(path, h, **k),
    )
    monkeypatch.setattr(trainer_module, "PLOT_EVERY_SECONDS", 3600.0)
    cfg = tiny(epochs=4)
    train(cfg, tmp_path / "a", **data(n_train=4))
    assert drawn == [1, 4]  # the first epoch, then none within the interval but the last (the run ended)
    drawn.clear()
    monkeypatch.setattr(trainer_module, "PLOT_EVERY_SECONDS", 0.0)
    train(cfg, tmp_path / "b", **data(n_train=4))
    assert drawn == [1, 2, 3, 4]
    drawn.clear()  # a pause (a time slice, as max_minutes) draws what the interval held back
    monkeypatch.setattr(trainer_module, "PLOT_EVERY_SECONDS", 3600.0)
    trainer = trainer_module.Trainer(tiny(epochs=4, batch_size=1), tmp_path / "c", **data(n_train=4))
    monkeypatch.setattr(trainer, "_past_deadline", lambda: trainer.progress.epoch == 2 and trainer.progress.step == 1)
    trainer.fit(max_seconds=1e9)
    assert drawn == [1, 2] and trainer.progress.epoch == 2  # epoch 2's plot was held back, then drawn at the pause
    drawn.clear()  # so does a pause after an epoch (stop_after_epoch)
    train(tiny(epochs=4, stop_after_epoch=3), tmp_path / "d", **data(n_train=4))
    assert drawn == [1, 3]


def test_kill_during_save_leaves_the_previous_last_pth(tmp_path, monkeypatch):
    cfg = tiny(epochs=2, stop_after_epoch=1)
    train(cfg, tmp_path, **data(n_train=4))
    model_dir = exp_of(cfg, tmp_path) / "model"
    before = (model_dir / "last.pth").read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        if ".last.pth." not in str(f):  # best.pth may be written; the kill hits last.pth
            return
        with open(f, "r+b") as fh:  # half the bytes, then the "kill"
            fh.truncate(os.path.getsize(f) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(epochs=2), tmp_path, resume=model_dir / "last.pth", **data(n_train=4))
    monkeypatch.setattr(torch, "save", real_save)
    assert (model_dir / "last.pth").read_bytes() == before
    assert load_checkpoint(model_dir / "last.pth")["progress"]["epoch"] == 1
    assert sorted(p.name for p in model_dir.iterdir()) == ["best.pth", "last.pth"]  # no stray temporary file


def test_nonfinite_losses_are_skipped_then_stop_training(tmp_path):
    cfg = tiny(epochs=1, batch_size=1)
    result = train(cfg, tmp_path / "a", **data(n_train=6, nan_items={1, 4}))
    assert result["nonfinite_total"] == 2 and math.isfinite(result["history"]["train_loss"][0])
    assert "non-finite loss, step skipped" in (exp_of(cfg, tmp_path / "a") / "log" / "train.log").read_text()

    cfg = tiny(epochs=2, batch_size=1, max_nonfinite=3, stop_after_epoch=1)
    train(cfg, tmp_path / "b", **data(n_train=6))
    last = exp_of(cfg, tmp_path / "b") / "model" / "last.pth"
    before = load_checkpoint(last)
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row at epoch 2 step 3; the last good"):
        train(cfg, tmp_path / "b", resume=last, **data(n_train=6, nan_items=set(range(6))))
    after = load_checkpoint(last)
    assert after["progress"] == before["progress"]
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])


def test_refusals_existing_experiment_best_pth_and_other_config(tmp_path, capsys):
    cfg = tiny(epochs=1)
    train(cfg, tmp_path, **data(n_train=4))
    exp = exp_of(cfg, tmp_path)
    with pytest.raises(DnnsepError, match="experiment exists already; to continue it, pass .*last.pth as MODEL_PATH"):
        train(cfg, tmp_path, **data(n_train=4))
    with pytest.raises(CheckpointError, match="a model for inference .* resume from model/last.pth"):
        train(cfg, tmp_path, resume=exp / "model" / "best.pth", **data(n_train=4))
    with pytest.raises(CheckpointError, match=r"trained with other options \(lr=0.01 there, 0.02 now\)"):
        train(tiny(epochs=1, lr=2e-2), tmp_path / "other", resume=exp / "model" / "last.pth", **data(n_train=4))
    # the command line prints one line, no traceback, and exits 2
    from dnnsep.bin import train as train_cli

    argv = ["--config", str(DEFAULT), *[f"--{k}={v}" for k, v in TINY.items()], "--epochs", "1", str(tmp_path)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run(lambda _: train_cli.main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# -- DDP ---------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    result = train(tiny(epochs=1), out, **data(n_train=8))
    torch.save({"history": result["history"], "epoch": result["epoch"]}, Path(out) / f"rank{rank}.pt")


def test_ddp_gloo_two_processes_one_epoch_one_checkpoint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    exp = exp_of(tiny(epochs=1), tmp_path)
    assert sorted(p.name for p in (exp / "model").iterdir()) == ["best.pth", "last.pth"]
    state = load_checkpoint(exp / "model" / "last.pth")
    assert state["progress"]["epoch"] == 1 and state["sampler"]["world_size"] == 2
    assert state["model_name"] == "DPRNNTasNet" and not any(k.startswith("module.") for k in state["state_dict"])
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert results[0]["history"]["valid_loss"] == results[1]["history"]["valid_loss"]  # reduced over ranks
    assert results[0]["history"]["train_loss"] == results[1]["history"]["train_loss"]
    assert len((exp / "log" / "train.log").read_text().split("epoch 1/1  train")) == 2  # rank 0 logs once


def _deadline_worker(rank: int, world_size: int, port: int, out: str) -> None:
    """Rank 1's clock runs 10 s per reading, rank 0's not at all: only rank 1 sees fit()'s time run out."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    ticks = itertools.count(0, 10 if rank == 1 else 0)
    trainer_module.time.perf_counter = lambda: float(next(ticks))  # in this spawned process only
    trainer = trainer_module.Trainer(tiny(epochs=2), out, **data(n_train=16))
    trainer.fit(max_seconds=25)
    p = trainer.progress
    torch.save({"epoch": p.epoch, "step": p.step}, Path(out) / f"rank{rank}.pt")
    distributed.barrier(trainer.dist)  # then leave as `python -m dnnsep.bin.train` does under torchrun:
    distributed.shutdown()  # gloo's threads can abort a process that exits with the group still set up
    os._exit(0)


def _join_or_fail(context) -> None:
    """Wait for spawned DDP processes; a process left waiting would hang: give up after 2 minutes instead."""
    for _ in range(120):
        if context.join(timeout=1):
            return
    for process in context.processes:
        process.kill()
    pytest.fail("the DDP processes did not stop together")


def test_ddp_a_deadline_any_process_reaches_stops_them_all_at_the_same_step(tmp_path):
    """max_minutes under DDP: the processes agree to pause, so none is left waiting in an all-reduce."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.spawn(_deadline_worker, args=(2, port, str(tmp_path)), nprocs=2, join=False)
    _join_or_fail(context)
    stops = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert stops[0] == stops[1] == {"epoch": 0, "step": 1}  # paused after the first of the epoch's 2 steps


def _budget_worker(rank: int, world_size: int, port: int, out: str) -> None:
    """lr_clock time under DDP: rank 1's budget clock runs 5x rank 0's; both must take the same lr each step."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    ticks = itertools.count(0, 5 if rank == 1 else 1)
    cfg = tiny(lr_schedule="cosine", lr_clock="time", max_minutes=1.0, epochs=1000, lr_patience=0)
    dist, device = distributed.init("cpu")
    trainer = trainer_module.Trainer(cfg, out, **data(n_train=16), dist=dist, device=device)
    trainer._now = lambda: float(next(ticks))
    lrs = []
    real_step = trainer._step
    trainer._step = lambda m, s: (lrs.append(trainer.optimizer.param_groups[0]["lr"]), real_step(m, s))
    summary = trainer.fit()
    torch.save({"lrs": lrs, "stopped": summary["stopped"], "state": trainer.model.state_dict()},
               Path(out) / f"rank{rank}.pt")  # fmt: skip
    distributed.barrier(trainer.dist)
    distributed.shutdown()
    os._exit(0)


def test_ddp_processes_agree_on_the_time_budgets_learning_rate(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = torch.multiprocessing.spawn(_budget_worker, args=(2, port, str(tmp_path)), nprocs=2, join=False)
    _join_or_fail(context)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["lrs"] == ranks[1]["lrs"] and len(ranks[0]["lrs"]) > 2
    assert ranks[0]["stopped"] == ranks[1]["stopped"] and ranks[0]["stopped"].startswith("time budget")
    assert all(torch.equal(v, ranks[1]["state"][k]) for k, v in ranks[0]["state"].items())


def test_cpu_processes_trains_in_that_many_processes_as_one_with_their_batches_together(tmp_path):
    """cpu_processes: 2 share each batch: the weights of one process, from processes the same command starts."""
    import subprocess
    import sys

    from corpus import SEGMENT, tiny_corpus

    from dnnsep.bin import prepare

    class Factory:  # tiny_corpus wants a tmp_path_factory
        def getbasetemp(self):
            return tmp_path

    assert prepare.main([str(tmp_path / "data"), "2", "--librispeech_root", str(tiny_corpus(Factory())),
                         "--subsets", "dev-clean", "dev-clean", "test-clean", "--n_train", "8", "--no_progress",
                         *SEGMENT]) == 0  # fmt: skip
    options = {**TINY, "epochs": 1, "dataset_dir": str(tmp_path / "data")}
    argv = [sys.executable, "-m", "dnnsep.bin.train", "--config", str(DEFAULT)]
    argv += [f"--{k}={v}" for k, v in options.items()]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "OMP_NUM_THREADS")}
    runs, said = {}, {}
    for processes in (2, 1):
        out = tmp_path / f"p{processes}"
        done = subprocess.run([*argv, f"--cpu_processes={processes}", str(out)],
                              capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        said[processes] = done.stdout
        exp = experiment_dir(load_config(DEFAULT, options), out)
        log = (exp / "log" / "train.log").read_text()
        assert f"{processes} process(es)" in log
        runs[processes] = load_checkpoint(exp / "model" / "last.pth")
        assert runs[processes]["sampler"]["world_size"] == processes
    assert "2 processes (cpu_processes)" in said[2] and "cpu_processes" not in said[1]
    for name, weight in runs[1]["state_dict"].items():
        torch.testing.assert_close(runs[2]["state_dict"][name], weight, atol=1e-5, rtol=1e-4)


# -- one writer per experiment -------------------------------------------------------------------


class SlowSines(Sines):
    def __getitem__(self, i: int):
        import time

        time.sleep(0.5)
        return super().__getitem__(i)


def test_a_second_training_into_a_running_experiment_is_refused_then_runs_after_a_kill(tmp_path):
    """Two processes, one experiment: the second stops at once naming the first; after kill -9, a rerun runs."""
    import signal
    import subprocess
    import sys
    import time

    child = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_train import tiny, SlowSines, Sines\n"
        "from dnnsep.training.trainer import train\n"
        f"train(tiny(epochs=1), {str(tmp_path)!r}, train_set=SlowSines(40), valid_set=Sines(4))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stderr=subprocess.PIPE, text=True)
    try:
        lock = exp_of(tiny(epochs=1), tmp_path) / ".lock"
        deadline = time.time() + 60
        while not (lock.is_file() and lock.read_text().strip()) and time.time() < deadline:
            time.sleep(0.1)
        with pytest.raises(DnnsepError, match=rf"experiment in use by pid {proc.pid} on .*python"):
            train(tiny(epochs=1), tmp_path, **data())
        assert proc.poll() is None  # the first run goes on
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    summary = train(tiny(epochs=1), tmp_path, **data())  # killed at its start: a fresh run is allowed
    assert summary["epoch"] == 1


def test_malformed_configs_and_non_finite_values_are_one_line_errors(tmp_path, capsys):
    from dnnsep.bin import train as train_cli

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\n")
    b.write_text("extends: a.yaml\n")
    with pytest.raises(DnnsepError, match=r"extends itself \(a.yaml -> b.yaml -> a.yaml\)"):
        load_config(a)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(f"extends: {DEFAULT}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(DnnsepError, match="latin.yaml: not UTF-8 text"):
        load_config(latin)
    bad = tmp_path / "bad.yaml"
    for line, message in [("weight_decay: .nan", "weight_decay must be a finite number"),
                          ("clip_grad_norm: .inf", "clip_grad_norm must be a finite number"),
                          ("lr: .nan", "lr"), ("seed: -1", "seed must not be negative")]:  # fmt: skip
        bad.write_text(f"extends: {DEFAULT}\n{line}\n")
        with pytest.raises(DnnsepError, match=message):
            load_config(bad)
    with pytest.raises(DnnsepError, match="--lr: expected a number, got 'nan'"):
        train_cli.main(["--config", str(DEFAULT), "--lr", "nan", "--get", "lr"])
    bad.write_text(f"extends: {DEFAULT}\nmodel: dprnn_tasnet\n")
    with pytest.raises(DnnsepError, match="bad.yaml: model must be a section with a name"):
        load_config(bad)


# -- the recipe's levers: loss threshold, warm-up and schedule, speed perturbation, time slices ---


def test_levers_change_the_directory_and_old_configs_read_them_as_off():
    base = load_config(DEFAULT)
    assert (base.loss_threshold, base.warmup_steps, base.lr_schedule, base.speed_perturb) == (None, 0, "plateau", 0.0)
    thr = experiment_dir(base.replace(loss_threshold=30.0), "o").as_posix()
    assert "/sisdr_thr30/" in thr and thr.replace("sisdr_thr30", "sisdr") == experiment_dir(base, "o").as_posix()
    name = experiment_dir(base.replace(warmup_steps=200, lr_schedule="cosine", speed_perturb=0.05), "o").parts[-2]
    assert name == "b4_e100_adam-lr1e-3-decay0_clip5_sp5e-2_warm200_cos"
    saved = {k: v for k, v in base.to_dict().items() if k not in ("loss_threshold", "warmup_steps", "lr_schedule",
                                                                   "speed_perturb")}  # fmt: skip
    from dnnsep.training.config import upgrade_flat_config

    assert TrainConfig.from_dict(upgrade_flat_config(saved)) == base  # an older last.pth still resumes
    with pytest.raises(DnnsepError, match="speed_perturb"):
        base.replace(speed_perturb=0.7)
    with pytest.raises(DnnsepError, match="loss_threshold"):
        base.replace(loss_threshold=-3.0)


def test_warmup_and_cosine_give_the_stated_learning_rates(tmp_path, monkeypatch):
    seen = []
    real_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: seen.append(self.param_groups[0]["lr"])
                        or real_step(self, *a, **k))  # fmt: skip
    train(tiny(epochs=2, lr=1e-2, warmup_steps=4), tmp_path / "w", **data())  # 3 steps per epoch
    assert seen == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])
    seen.clear()
    train(tiny(epochs=2, lr=1e-2, warmup_steps=2, lr_schedule="cosine"), tmp_path / "c", **data())
    cosine = [0.5 * (1 + math.cos(math.pi * s / 6)) for s in range(6)]
    warm = [0.5, 1, 1, 1, 1, 1]
    assert seen == pytest.approx([1e-2 * w * c for w, c in zip(warm, cosine)])


def test_loss_threshold_and_speed_perturbation_reach_the_trainer(tmp_path, monkeypatch):
    calls = []
    real = trainer_module.pit_si_sdr
    monkeypatch.setattr(trainer_module, "pit_si_sdr", lambda *a, **k: calls.append(k) or real(*a, **k))
    train(tiny(epochs=1, loss_threshold=30.0), tmp_path, **data())
    assert calls[0] == {"threshold_db": 30.0}  # the training loss ...
    assert all(c == {} for c in calls[3:])  # ... but validation scores the plain SI-SDR
    made = {}

    class Recorder(list):  # stands in for MixtureDataset: records its arguments
        sample_rate, n_sources = 16000, 2

        def __init__(self, path, **kwargs):
            super().__init__([0])
            made[Path(path).stem] = kwargs

    monkeypatch.setattr("dnnsep.data.MixtureDataset", Recorder)
    (tmp_path / "lists" / "2mix").mkdir(parents=True)
    for split in ("train", "valid"):  # make_datasets wants both lists on disk
        (tmp_path / "lists" / "2mix" / f"{split}.json").write_text("{}")
    trainer_module.make_datasets(tiny(speed_perturb=0.05, dynamic_mixing=True, dataset_dir=str(tmp_path / "lists")))
    assert made["train"]["speed_perturb"] == 0.05 and made["train"]["dynamic_mixing"] is True
    assert "speed_perturb" not in made.get("valid", {})  # validation mixtures are never perturbed


def test_fit_max_seconds_pauses_mid_epoch_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = tiny(epochs=2)
    straight = train(cfg, tmp_path / "a", **data())
    clock = iter(range(0, 10_000, 10))  # every perf_counter call advances 10 s
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    paused = trainer_module.Trainer(cfg, tmp_path / "b", **data())
    paused.fit(max_seconds=15)  # pauses after the first step that ends past 15 s
    monkeypatch.undo()
    last = exp_of(cfg, tmp_path / "b") / "model" / "last.pth"
    progress = load_checkpoint(last)["progress"]
    assert progress["epoch"] == 0 and 0 < progress["step"] < 3
    resumed = train(cfg, tmp_path / "b", resume=last, **data())
    assert resumed["history"]["train_loss"] == straight["history"]["train_loss"]
    asked = []
    monkeypatch.setattr(trainer_module.Trainer, "fit", lambda self, max_seconds=None: asked.append(max_seconds))
    train(tiny(max_minutes=0.5), tmp_path / "c", **data())  # the config's max_minutes reaches fit
    assert asked == [30.0]


# -- the schedule over a time budget (lr_clock: time) ----------------------------------------------


class FakeClock:
    """A clock that advances ``per_step`` seconds with each training step and never otherwise."""

    def __init__(self, per_step: float):
        self.t, self.per_step = 1000.0, per_step

    def __call__(self) -> float:
        return self.t


def _timed_trainer(tmp_path, monkeypatch, *, per_step: float, **changes):
    cfg = tiny(lr_schedule="cosine", lr_clock="time", max_minutes=1.0, epochs=1000, lr_patience=0,
               early_stop_patience=0, **changes)  # fmt: skip
    trainer = trainer_module.Trainer(cfg, tmp_path, **data(n_train=12))
    clock = trainer._now = FakeClock(per_step)
    lrs = []
    real_step = trainer._step

    def step(mixture, sources):
        real_step(mixture, sources)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        clock.t += clock.per_step

    monkeypatch.setattr(trainer, "_step", step)
    return cfg, trainer, lrs


def test_the_cosine_runs_over_the_time_budget_and_ends_training_annealed(tmp_path, monkeypatch):
    cfg, trainer, lrs = _timed_trainer(tmp_path, monkeypatch, per_step=2.0)  # 60 s budget: 30 steps
    summary = trainer.fit()
    assert len(lrs) == 30 and summary["epoch"] == 10  # 3 steps an epoch; 1000 epochs were only a bound
    # step k runs at the fraction spent after step k-1, agreed at its end: 0 at the start, then 2k/60
    assert lrs[0] == pytest.approx(cfg.lr)
    assert lrs[15] == pytest.approx(cfg.lr * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half the budget: lr / 2
    assert lrs[-1] == pytest.approx(cfg.lr * 0.5 * (1 + math.cos(math.pi * 58 / 60)))  # at the floor, near 0
    assert lrs[-1] < 0.01 * cfg.lr
    assert summary["stopped"].startswith("time budget of 1 min spent after 10 epoch(s)")
    exp = exp_of(cfg, tmp_path)
    assert exp.parent.name.endswith("_cos_t1m")  # the directory says the schedule is over 1 minute
    log = (exp / "log" / "train.log").read_text()
    assert "schedule: cosine over a budget of 1 min of training (lr_clock: time)" in log
    assert load_checkpoint(exp / "model" / "last.pth")["progress"]["clock_seconds"] == pytest.approx(60.0)


def test_a_budget_spent_mid_epoch_validates_the_partial_epoch_and_resume_has_nothing_left(tmp_path, monkeypatch):
    cfg, trainer, lrs = _timed_trainer(tmp_path, monkeypatch, per_step=6.5)  # 60 s: the 10th step passes it
    summary = trainer.fit()
    assert len(lrs) == 10 and summary["epoch"] == 4  # 3 + 3 + 3 + 1: the partial 4th epoch is validated
    assert len(summary["history"]["valid_loss"]) == 4 and summary["stopped"].startswith("time budget")
    last = exp_of(cfg, tmp_path) / "model" / "last.pth"
    again = trainer_module.Trainer(cfg, tmp_path, resume=last, **data(n_train=12)).fit()
    assert again["epoch"] == 4  # nothing to do


def test_a_time_budget_resumed_continues_the_same_schedule(tmp_path, monkeypatch):
    cfg, trainer, lrs = _timed_trainer(tmp_path, monkeypatch, per_step=2.0, stop_after_epoch=5)
    trainer.fit()  # 15 steps, 30 s of the 60
    last = exp_of(cfg, tmp_path) / "model" / "last.pth"
    assert load_checkpoint(last)["progress"]["clock_seconds"] == pytest.approx(30.0)
    resumed = trainer_module.Trainer(cfg.replace(stop_after_epoch=None), tmp_path, resume=last, **data(n_train=12))
    clock = resumed._now = FakeClock(2.0)
    more = []
    real_step = resumed._step

    def step(mixture, sources):
        real_step(mixture, sources)
        more.append(resumed.optimizer.param_groups[0]["lr"])
        clock.t += 2.0

    monkeypatch.setattr(resumed, "_step", step)
    summary = resumed.fit()
    assert len(lrs) + len(more) == 30 and summary["epoch"] == 10
    assert more[0] == pytest.approx(cfg.lr * 0.5 * (1 + math.cos(math.pi * 0.5)))  # where the first run stopped


def test_lr_clock_time_needs_a_budget_and_keeps_it_on_resume():
    with pytest.raises(DnnsepError, match="lr_clock: time runs the schedule over max_minutes: set max_minutes"):
        tiny(lr_clock="time", max_minutes=None)
    a, b = tiny(lr_clock="time", max_minutes=1.0), tiny(lr_clock="time", max_minutes=2.0)
    assert a.identity() != b.identity()  # the budget defines the schedule: not a runtime option then
    assert tiny(max_minutes=1.0).identity() == tiny(max_minutes=2.0).identity()  # a pause only, as before
