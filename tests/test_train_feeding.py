"""The trainer's GPU-facing parts, checked on CPU: the autocast dtype and scaler it picks (CUDA
capabilities faked), scaler resume, the one-sync CUDA step, persistent workers, the step-time
breakdown, and a tiny CPU run of bench/bench_gpu.py."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import data, exp_of, tiny  # the tiny config and in-memory data of the training tests
from torch.utils.data import DataLoader

from dnnsep.checkpoint import load_checkpoint, save_checkpoint
from dnnsep.training import amp
from dnnsep.training import trainer as trainer_module
from dnnsep.training.sampler import EpochBatchSampler, EpochItems, EpochKeys
from dnnsep.training.trainer import Trainer, train

ROOT = Path(__file__).resolve().parents[1]


def _fake_gpu(monkeypatch, *, bf16: bool, run_scaler_on_cpu: bool = False) -> None:
    """Make the trainer choose as on a CUDA GPU of compute capability 8.0 (bf16) or 7.5 (a T4)."""
    capability = (8, 0) if bf16 else (7, 5)
    monkeypatch.setattr(
        trainer_module, "amp_dtype", lambda device: amp.amp_dtype(torch.device("cuda"), capability=capability)
    )
    monkeypatch.setattr(
        trainer_module, "uses_scaler", lambda dtype, device: amp.uses_scaler(dtype, torch.device("cuda"))
    )
    if run_scaler_on_cpu:  # a CPU runs no float16 LSTMs (nor bfloat16 ones without the instructions): float32 + scaler
        monkeypatch.setattr(trainer_module, "amp_dtype", lambda device: None)
        monkeypatch.setattr(trainer_module, "uses_scaler", lambda dtype, device: True)


@pytest.mark.parametrize("bf16", [True, False])
def test_trainer_picks_the_autocast_dtype_and_scaler_for_the_gpu(tmp_path, monkeypatch, bf16):
    _fake_gpu(monkeypatch, bf16=bf16)
    trainer = Trainer(tiny(amp=True), tmp_path, **data(n_train=4))
    assert trainer.amp and trainer.amp_dtype == (torch.bfloat16 if bf16 else torch.float16)
    assert trainer.scaler.is_enabled()  # float16, and bfloat16 on CUDA (its cuDNN LSTMs run in float16)
    assert (
        "mixed precision (" + ("bfloat16" if bf16 else "float16") + " autocast with a gradient scaler)"
        in (trainer.exp / "log" / "train.log").read_text()
    )
    off = Trainer(tiny(amp=False), tmp_path / "off", **data(n_train=4))
    assert off.amp_dtype is None and not off.scaler.is_enabled()


def test_amp_is_ignored_on_a_cpu_without_bf16_with_a_log_line(tmp_path, monkeypatch):
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: False)
    trainer = Trainer(tiny(amp=True), tmp_path, **data(n_train=4))
    assert not trainer.amp and trainer.amp_dtype is None and not trainer.scaler.is_enabled()
    log = (trainer.exp / "log" / "train.log").read_text()
    assert "amp ignored: mixed precision needs CUDA or a CPU with bfloat16 instructions" in log


@pytest.mark.cpu_bf16
def test_amp_on_this_cpu_trains_under_bfloat16_autocast_where_it_has_the_instructions(tmp_path):
    seen = []
    cfg = tiny(amp=True, epochs=1)
    trainer = Trainer(cfg, tmp_path, **data(n_train=4))
    if not amp.cpu_has_bf16():  # (or DNNSEP_CPU_BF16=0): float32, and the log says why
        assert not trainer.amp and not trainer.scaler.is_enabled()
        assert "amp ignored" in (trainer.exp / "log" / "train.log").read_text()
        return
    trainer.model.register_forward_hook(
        lambda m, args, out: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
    )
    assert trainer.amp and trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    summary = trainer.fit()
    assert seen and all(s == (True, torch.bfloat16) for s in seen)  # training and validation steps alike
    assert math.isfinite(summary["history"]["train_loss"][0]) and math.isfinite(summary["history"]["valid_loss"][0])
    assert "mixed precision (bfloat16 autocast)" in (trainer.exp / "log" / "train.log").read_text()
    state = load_checkpoint(exp_of(cfg, tmp_path) / "model" / "last.pth")
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values())  # float32 master weights


def test_scaler_state_is_saved_and_restored_on_resume(tmp_path, monkeypatch):
    _fake_gpu(monkeypatch, bf16=False, run_scaler_on_cpu=True)
    cfg = tiny(amp=True, epochs=2, stop_after_epoch=1)
    result = train(cfg, tmp_path, **data(n_train=4))
    assert math.isfinite(result["history"]["train_loss"][0])
    last = exp_of(cfg, tmp_path) / "model" / "last.pth"
    state = load_checkpoint(last)
    assert state["scaler"]["scale"] == 2.0**16  # GradScaler's initial scale, no overflow in 1 epoch
    state["scaler"].update(scale=1234.0, _growth_tracker=7)
    save_checkpoint(state, last)
    resumed = Trainer(cfg, tmp_path, resume=last, **data(n_train=4))
    assert resumed.scaler.get_scale() == 1234.0 and resumed.scaler.state_dict()["_growth_tracker"] == 7
    summary = resumed.fit()
    assert summary["epoch"] == 2 and math.isfinite(summary["history"]["train_loss"][1])
    assert load_checkpoint(last)["scaler"]["_growth_tracker"] == 7 + 1  # epoch 2: one good step more
    monkeypatch.undo()  # without a scaler (no amp, or bfloat16) last.pth says so
    assert load_checkpoint(_train_plain(tmp_path / "plain"))["scaler"] is None


def _train_plain(out: Path) -> Path:
    cfg = tiny(epochs=1)
    train(cfg, out, **data(n_train=4))
    return exp_of(cfg, out) / "model" / "last.pth"


def test_one_sync_step_skips_counts_and_learns_as_the_cpu_step(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "LOSS_READ_EVERY", 2)  # the periodic read is taken too
    cfg = tiny(epochs=1, batch_size=1)
    want = train(cfg, tmp_path / "cpu", **data(n_train=6, nan_items={1, 4}))
    trainer = Trainer(cfg, tmp_path / "one_sync", **data(n_train=6, nan_items={1, 4}))
    trainer.one_sync = True  # the CUDA step, on CPU
    got = trainer.fit()
    assert got["nonfinite_total"] == want["nonfinite_total"] == 2
    assert got["history"]["train_loss"] == pytest.approx(want["history"]["train_loss"], rel=1e-12)
    assert got["history"]["valid_loss"] == pytest.approx(want["history"]["valid_loss"], rel=1e-12)
    log = (exp_of(cfg, tmp_path / "one_sync") / "log" / "train.log").read_text()
    assert log.count("non-finite loss, step skipped") == 2
    a = load_checkpoint(exp_of(cfg, tmp_path / "cpu") / "model" / "last.pth")["state_dict"]
    b = load_checkpoint(exp_of(cfg, tmp_path / "one_sync") / "model" / "last.pth")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_persistent_workers_read_each_epoch_for_its_epoch():
    class EpochData:
        epoch = -1

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.tensor([self.epoch, i])

    sampler = EpochBatchSampler(4, batch_size=2, seed=0)
    loader = DataLoader(
        EpochItems(EpochData()), batch_sampler=EpochKeys(sampler), num_workers=1, persistent_workers=True
    )
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == 2
        assert all(int(b[:, 0].unique()) == epoch for b in batches)  # the worker was told the epoch
        assert sorted(int(i) for b in batches for i in b[:, 1]) == [0, 1, 2, 3]


def test_loaders_with_workers_are_made_once_and_train_as_without(tmp_path, monkeypatch):
    made = []

    class Counting(DataLoader):
        def __init__(self, *args, **kw):
            made.append(kw)
            super().__init__(*args, **kw)

    monkeypatch.setattr(trainer_module, "DataLoader", Counting)
    cfg = tiny(epochs=2)
    train(cfg, tmp_path / "w0", **data(n_train=8))
    assert len(made) == 4  # without workers: a train and a valid loader per epoch, as before
    made.clear()
    train(cfg.replace(num_workers=1), tmp_path / "w1", **data(n_train=8))
    assert len(made) == 2 and all(kw["persistent_workers"] and not kw["pin_memory"] for kw in made)
    a = load_checkpoint(exp_of(cfg, tmp_path / "w0") / "model" / "last.pth")
    b = load_checkpoint(exp_of(cfg, tmp_path / "w1") / "model" / "last.pth")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_step_time_breakdown_is_logged_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("DNNSEP_PROFILE_STEPS", "2")
    cfg = tiny(epochs=1)
    train(cfg, tmp_path, **data(n_train=12))
    log = (exp_of(cfg, tmp_path) / "log" / "train.log").read_text()
    line = next(x for x in log.splitlines() if "step time over" in x)
    assert "epoch 1: step time over 2 step(s): data " in line
    assert all(f"{phase} " in line for phase in ("forward", "backward", "optimizer")) and "ms/step" in line
    monkeypatch.setenv("DNNSEP_PROFILE_STEPS", "soon")
    with pytest.raises(trainer_module.DnnsepError, match="DNNSEP_PROFILE_STEPS='soon': expected a number"):
        Trainer(cfg, tmp_path / "bad", **data(n_train=4))


@pytest.mark.slow
@pytest.mark.cpu_bf16
def test_bench_gpu_runs_tiny_on_cpu_without_asteroid():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--tiny", "--device", "cpu", "--without_asteroid"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "measuring dnnsep alone (--without_asteroid)" in out.stdout
    rows = [line.split()[0] for line in out.stdout.splitlines() if "/dnnsep" in line]
    precisions = ["fp32", "amp"] if amp.cpu_has_bf16() else ["fp32"]
    assert rows == [f"{c}/{p}/dnnsep" for c in ("default", "paper", "convtasnet") for p in precisions]
    assert "asteroid" not in "".join(rows)
