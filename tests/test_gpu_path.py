"""The GPU path, checked on any CPU: the AMP policy by compute capability and CPU flags, the float16
PReLU gradient, host syncs in a training step, checkpoints on the CPU, float32 streaming (MPS has no
float64), the torch version check and the NCCL device binding.  bench/gpu_check.sh runs the same on a
real GPU."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import DEFAULT, data, exp_of, tiny
from torch.utils._python_dispatch import TorchDispatchMode

from dnnsep import checkpoint, models
from dnnsep.errors import DnnsepError
from dnnsep.models import ConvTasNet, ConvTasNetConfig, DPRNNConfig, DPRNNTasNet, conv_ops
from dnnsep.models.norms import CumulativeLayerNorm, NormCarry
from dnnsep.streaming import StreamingSeparator
from dnnsep.training import amp, distributed, load_config
from dnnsep.training import trainer as trainer_module
from dnnsep.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONV_TASNET = ROOT / "egs" / "librispeech" / "conv_tasnet" / "conf" / "default.yaml"

# -- the AMP policy --------------------------------------------------------------------------------

# /proc/cpuinfo flags of real machines (abridged to the vector extensions)
AVX2_ONLY = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"  # most laptops, EPYC Rome
AVX512_NO_BF16 = AVX2_ONLY + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"  # Skylake/Cascade Lake
AVX512_BF16 = AVX512_NO_BF16 + " avx512_bf16 avx512_vbmi2 gfni vaes"  # Cooper Lake, EPYC Genoa
AMX = AVX512_NO_BF16 + " avx512_fp16 amx_bf16 amx_tile amx_int8"  # Sapphire Rapids


@pytest.mark.parametrize(
    "flags, native", [(AVX2_ONLY, False), (AVX512_NO_BF16, False), (AVX512_BF16, True), (AMX, True), ("", False)]
)
def test_cpu_bf16_predicate_on_recorded_flag_sets(flags, native):
    assert amp.bf16_in_flags(frozenset(flags.split())) is native


def test_cpu_bf16_reads_the_flags_unless_the_environment_forces_it(monkeypatch):
    monkeypatch.delenv(amp.CPU_BF16_ENV, raising=False)
    for flags, native in ((AVX512_NO_BF16, False), (AVX512_BF16, True)):
        monkeypatch.setattr(amp, "cpu_flags", lambda f=flags: frozenset(f.split()))
        assert amp.cpu_has_bf16() is native
        assert amp.amp_dtype(torch.device("cpu")) == (torch.bfloat16 if native else None)
    monkeypatch.setenv(amp.CPU_BF16_ENV, "0")
    assert not amp.cpu_has_bf16()  # forced off on a BF16 CPU
    monkeypatch.setattr(amp, "cpu_flags", lambda: frozenset(AVX2_ONLY.split()))
    monkeypatch.setenv(amp.CPU_BF16_ENV, "1")
    assert amp.cpu_has_bf16()
    monkeypatch.setenv(amp.CPU_BF16_ENV, "maybe")
    with pytest.raises(DnnsepError, match="DNNSEP_CPU_BF16='maybe': use 0"):
        amp.cpu_has_bf16()


def test_this_machines_flags_are_read():
    flags = amp.cpu_flags.__wrapped__()  # uncached
    if sys.platform.startswith("linux"):
        assert "sse2" in flags or not Path("/proc/cpuinfo").read_text().count("sse2")  # x86 Linux reports sse2


@pytest.mark.parametrize(
    "capability, dtype",
    [((6, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_cuda_amp_dtype_follows_the_compute_capability_not_is_bf16_supported(monkeypatch, capability, dtype):
    # torch.cuda.is_bf16_supported() says True on a T4 (emulation): the policy must not ask it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert amp.amp_dtype(cuda) == dtype == amp.amp_dtype(cuda, capability=capability)
    assert amp.uses_scaler(dtype, cuda)  # float16, and bfloat16 (cuDNN's LSTM under autocast is float16)
    assert not amp.uses_scaler(torch.bfloat16, torch.device("cpu")) and not amp.uses_scaler(None, cuda)


def test_the_trainer_takes_a_scaler_for_bf16_on_cuda_and_logs_the_policy(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "amp_dtype", lambda device: torch.bfloat16)
    monkeypatch.setattr(
        trainer_module, "uses_scaler", lambda dtype, device: amp.uses_scaler(dtype, torch.device("cuda"))
    )
    trainer = Trainer(tiny(amp=True), tmp_path, **data(n_train=4))
    assert trainer.scaler.is_enabled()
    assert (
        "mixed precision (bfloat16 autocast with a gradient scaler)" in (trainer.exp / "log" / "train.log").read_text()
    )


# -- the PReLU: float16 gradient, no host read of the slope off the CPU ---------------------------


def test_prelu_slope_gradient_of_float16_activations_is_summed_in_float32():
    torch.manual_seed(0)
    x = -torch.rand(300_000).to(torch.float16) * 4  # all below zero: every product counts
    grad = torch.full_like(x, 512.0)  # a GradScaler's scale times a small gradient
    weight = torch.tensor([0.25], requires_grad=True)
    y = conv_ops.prelu(x.requires_grad_(), weight)
    (got,) = torch.autograd.grad(y, weight, grad)
    want = float((grad.double() * x.detach().double()).sum())  # about -3e8: past float16's 65504
    assert math.isfinite(float(got)) and float(got) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prelu_device_form_equals_the_cpu_form(monkeypatch, dtype):
    torch.manual_seed(0)
    x, grad = torch.randn(2, 8, 300).to(dtype), torch.randn(2, 8, 300).to(dtype)
    weight = torch.tensor([0.2], requires_grad=True)

    def run():
        xx = x.clone().requires_grad_()
        y = conv_ops.prelu(xx, weight)
        gx, gw = torch.autograd.grad(y, (xx, weight), grad)
        return y, gx, gw

    want = run()
    monkeypatch.setattr(conv_ops, "slope_on_host", lambda x: False)  # as on a GPU: the slope stays a tensor
    for a, b in zip(run(), want):
        torch.testing.assert_close(a, b, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=1e-6)


# -- one host sync per training step --------------------------------------------------------------


class HostReads:
    """Counts the reads of tensor values into Python (each one a host sync on a GPU), but for the
    optimizer's step counts, which torch keeps on the host whatever the device (a read costs nothing)."""

    METHODS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy")

    def __init__(self, monkeypatch, optimizer):
        self.count = 0
        on_host = {id(state["step"]) for state in optimizer.state.values() if "step" in state}
        for name in self.METHODS:
            real = getattr(torch.Tensor, name)

            def counted(t, *a, _real=real, **k):
                self.count += id(t) not in on_host
                return _real(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


@pytest.mark.parametrize("model", ["dprnn", "conv_tasnet"])
@pytest.mark.parametrize("scaled", [False, True], ids=["fp32", "scaler"])
def test_a_gpu_training_step_reads_the_device_once(tmp_path, monkeypatch, model, scaled):
    monkeypatch.setattr(trainer_module, "LOSS_READ_EVERY", 1000)  # the loss is read once an epoch, apart
    if scaled:  # as under AMP on CUDA: a GradScaler in the step (bfloat16 autocast, since this is a CPU)
        monkeypatch.setattr(trainer_module, "amp_dtype", lambda device: None)
        monkeypatch.setattr(trainer_module, "uses_scaler", lambda dtype, device: True)
    cfg = tiny(epochs=1, batch_size=2)
    if model == "conv_tasnet":  # its 2 x 1 blocks hold PReLUs, whose slope a GPU would have to read
        keep = {k: getattr(cfg, k) for k in ("batch_size", "num_workers", "device", "epochs")}
        sizes = dict(n_filters=8, kernel_size=4, bottleneck=8, hidden=8, n_layers=2, n_repeats=1, skip_channels=8)
        cfg = load_config(CONV_TASNET, {**keep, **{f"model.{k}": v for k, v in sizes.items()}})
    trainer = Trainer(cfg, tmp_path, **data(n_train=8))
    trainer.one_sync = True  # the CUDA step, on CPU
    monkeypatch.setattr(conv_ops, "slope_on_host", lambda x: False)  # the PReLU as on a GPU
    mixture, sources = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    trainer._step(mixture, sources)  # warm: lazy initialisations (the scaler's scale) are not per step
    reads = HostReads(monkeypatch, trainer.optimizer)
    for _ in range(3):
        trainer._step(mixture, sources)
    assert reads.count == 3  # one per step: the finite-loss-and-gradient flags
    assert trainer.progress.loss_count == 4 and trainer.progress.nonfinite_total == 0
    if scaled:
        assert trainer.scaler.state_dict()["_growth_tracker"] == 4  # every step went through the scaler


def test_one_sync_step_leaves_a_float16_overflow_to_the_scaler(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "amp_dtype", lambda device: None)
    monkeypatch.setattr(trainer_module, "uses_scaler", lambda dtype, device: True)
    trainer = Trainer(tiny(epochs=1, batch_size=2), tmp_path, **data(n_train=4))
    trainer.one_sync = True
    mixture, sources = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=2)))
    trainer._step(mixture, sources)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.scaler.update(new_scale=3e38)  # the scaled loss's gradients overflow float32
    trainer._step(mixture, sources)
    assert trainer.scaler.get_scale() == pytest.approx(1.5e38)  # backed off
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())  # no update
    assert trainer.progress.nonfinite_total == 0  # the scaler's skip, not a fault
    trainer.scaler.update(new_scale=2.0**10)
    trainer._step(mixture, sources)
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def test_the_permutation_table_is_made_once_per_device():
    from dnnsep.losses import _permutations

    assert _permutations(3, torch.device("cpu"))[0] is _permutations(3, torch.device("cpu"))[0]


# -- checkpoints ----------------------------------------------------------------------------------


def test_checkpoints_are_written_with_every_tensor_on_the_cpu(tmp_path, monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():  # tensors that say they are on a GPU, without one
        weights = {"w": torch.empty(3, device="cuda"), "b": torch.empty(2, device="cuda")}
        ckpt = {"state_dict": weights, "optimizer": {"state": {0: {"exp_avg": torch.empty(3, device="cuda")}}},
                "history": [1.0], "pair": (torch.empty(1, device="cuda"), 2)}  # fmt: skip
    seen = []
    monkeypatch.setattr(checkpoint, "_torch_save", lambda obj, tmp, path: seen.append(obj))
    checkpoint.save_checkpoint(ckpt, tmp_path / "best.pth")
    (saved,) = seen
    devices = []

    def walk(o):
        if isinstance(o, torch.Tensor):
            devices.append(o.device.type)
        elif isinstance(o, dict):
            [walk(v) for v in o.values()]
        elif isinstance(o, (list, tuple)):
            [walk(v) for v in o]

    walk(saved)
    assert devices == ["cpu"] * 4
    assert saved["history"] == [1.0] and saved["pair"][1] == 2


def test_a_trained_checkpoint_loads_with_a_plain_torch_load(tmp_path):
    cfg = tiny(epochs=1)
    trainer_module.train(cfg, tmp_path, **data(n_train=4))
    for name in ("best.pth", "last.pth"):
        locations = []

        def record(storage, where, seen=locations):
            seen.append(where)
            return storage

        torch.load(exp_of(cfg, tmp_path) / "model" / name, weights_only=True, map_location=record)
        assert locations and set(locations) == {"cpu"}


# -- streaming in float32 (MPS has no float64) ----------------------------------------------------


class Dtypes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.seen.add(t.dtype)
        return out


@pytest.mark.parametrize("name", ["dprnn", "conv_tasnet"])
def test_the_streaming_engine_computes_in_float32_only(name):
    torch.manual_seed(0)
    if name == "dprnn":
        model = DPRNNTasNet(DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1,
                                        causal=True))  # fmt: skip
    else:
        model = ConvTasNet(ConvTasNetConfig(n_filters=8, kernel_size=4, bottleneck=8, hidden=8, n_layers=2,
                                            n_repeats=1, skip_channels=8, causal=True))  # fmt: skip
    model.eval()
    x = np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1
    engine = StreamingSeparator(model)
    spy = Dtypes()
    with spy:
        out = np.concatenate([engine.push(x[i : i + 160]) for i in range(0, 1600, 160)] + [engine.flush()], axis=1)
    assert torch.float64 not in spy.seen and torch.float32 in spy.seen
    with torch.inference_mode():
        want = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(out, want, atol=1e-4 * np.abs(want).max())


def test_cln_carried_in_float32_stays_with_the_offline_norm_over_thousands_of_pieces():
    torch.manual_seed(0)
    norm = CumulativeLayerNorm(4)
    x = 50.0 + torch.randn(1, 30_000, 4)  # (batch, time, channels): a large mean, 6000 pieces of 5 steps
    with torch.no_grad():
        want = norm(x)  # offline, float32 (the CPU's cumsum accumulates in float64)
        carry = NormCarry()
        got = torch.cat([norm(x[:, i : i + 5], batch_dim=0, time_dim=1, carry=carry) for i in range(0, 30_000, 5)], 1)
    # the offline float32 norm is itself ~1e-3 from float64's here; a plain float32 carry drifts to 1.6e-2
    torch.testing.assert_close(got, want, rtol=0, atol=3e-3)


# -- torch's version, NCCL's device ---------------------------------------------------------------


def test_an_older_torch_is_refused_at_import_in_one_line(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.2.2'\n")
    done = subprocess.run([sys.executable, "-c", "import dnnsep"], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{tmp_path}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert (
        "dnnsep needs torch >= 2.3, but this Python has torch 2.2.2: upgrade with pip install -U 'torch>=2.3'" in last
    )
    assert "torch>=2.3" in (ROOT / "requirements.txt").read_text()


def test_nccl_is_bound_to_the_process_gpu(monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "select_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: calls.append(("init", a, k)))
    info, device = distributed.init("auto")
    assert device == torch.device("cuda", 1)
    assert calls[-1] == ("init", ("nccl",), {"device_id": torch.device("cuda", 1)})


def test_default_config_still_loads():
    assert load_config(DEFAULT).amp in (True, False)


# -- the prepared device check ---------------------------------------------------------------------

SECTIONS = ["environment", "lstm", "training", "syncs", "portable", "bench_gpu"]


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu_writes_every_section(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu"], capture_output=True, text=True,
                          env={**os.environ, "OUT": str(tmp_path)}, timeout=600)  # fmt: skip
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert done.returncode == 0 and report["ok"] and report["failed"] == [], done.stdout[-3000:]
    assert list(report["sections"]) == SECTIONS
    assert all(report["sections"][s]["checks"] for s in SECTIONS if s != "environment")  # each checked something
    runs = report["sections"]["training"]["runs"]
    assert {k.split("/")[0] for k in runs} == set(models.names()) and any("scaler" in k for k in runs)
    assert set(report["sections"]["syncs"]["per_step"].values()) == {1.0}
    assert "gpu_check: all checks passed" in (tmp_path / "gpu_check.log").read_text()


@pytest.mark.slow
def test_gpu_check_fails_when_a_section_cannot_run(tmp_path):
    command = ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--max_seconds", "0"]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "OUT": str(tmp_path)}, timeout=300
    )
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert done.returncode == 1 and not report["ok"] and list(report["sections"]) == SECTIONS
    assert "environment: not run (time)" in report["failed"]


def test_the_live_stream_is_checked_on_mps_and_falls_back_to_the_cpu_where_it_fails(monkeypatch, capsys):
    from dnnsep import device as device_module
    from dnnsep import streaming

    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1,
                                    causal=True))  # fmt: skip
    mps = torch.device("mps")
    real = streaming._stream_forward
    calls = []

    def stream_forward(m, x, device):  # the stream on "MPS" fails as float64 state did there
        calls.append(device.type)
        if device.type == "mps":
            raise TypeError("Cannot convert a MPS Tensor to float64 dtype as the MPS framework doesn't support float64")
        return real(m, x, device)

    monkeypatch.setattr(streaming, "_stream_forward", stream_forward)
    monkeypatch.setattr(device_module, "_mps_verdicts", {})
    monkeypatch.setattr(device_module, "_model_device", lambda m: mps if m is model else torch.device("cpu"))
    monkeypatch.delenv(device_module.FORCE_MPS_ENV, raising=False)
    moved = []
    monkeypatch.setattr(model, "to", lambda d: moved.append(torch.device(d)) or model)
    got = streaming.guard_mps_stream(model)
    assert got is model and moved[-1] == torch.device("cpu") and calls == ["cpu", "mps"]  # a copy went too
    err = capsys.readouterr().err
    assert "note: running the live stream on the CPU, not MPS: the model fails on MPS (Cannot convert" in err
    # the check is the real stream: on the CPU it equals the offline pass
    x = 0.1 * torch.randn(1, 1600)
    with torch.inference_mode():
        torch.testing.assert_close(real(model, x, torch.device("cpu")), model(x), atol=1e-4, rtol=0)
