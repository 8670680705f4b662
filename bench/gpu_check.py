"""The prepared device check: dnnsep's CUDA path on one NVIDIA GPU, in a few minutes, from a clean checkout.

Run through ``bash bench/gpu_check.sh`` (which finds a Python and dnnsep's source); ``--cpu`` runs every
section on the CPU instead, so that the script does not rot where there is no GPU (the tests run it).
Writes ``gpu_check.json`` (every section, each with its checks) under ``--out`` and exits 1 if any
check failed.  Sections:

- ``environment``: GPU, compute capability, torch, CUDA and cuDNN, and the AMP dtype dnnsep picks;
- ``lstm``: a DPRNN block's BiLSTM as one fused call and as two split calls, values and gradients,
  TF32 off, against each other and against the CPU;
- ``training``: every registered model, one epoch in float32, bfloat16 (where the GPU has it) and
  float16 with a gradient scaler, then a resume for a second epoch: finite losses, the scaler's state
  saved and restored;
- ``syncs``: host syncs per training step (``torch.cuda.set_sync_debug_mode`` on CUDA; reads of
  tensor values on the CPU), at most one;
- ``portable``: ``best.pth`` loads with a plain ``torch.load`` (every storage on the CPU) and
  separates identically on the GPU and the CPU;
- ``bench_gpu``: ``bench/bench_gpu.py`` (both models, float32 and AMP, steps/s and peak memory, and
  asteroid's when importable): the figures, and the ratio to asteroid against the 1.5x target (reported,
  not a check: asteroid is rarely installed on a lent machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "dprnn_tasnet": ROOT / "egs" / "librispeech" / "dprnn_tasnet" / "conf" / "default.yaml",
    "conv_tasnet": ROOT / "egs" / "librispeech" / "conv_tasnet" / "conf" / "default.yaml",
    "sepformer": ROOT / "egs" / "librispeech" / "sepformer" / "conf" / "default.yaml",
}
SIZES = {  # small models: the check is of the code path, not of the recipe's sizes
    "dprnn_tasnet": dict(n_filters=32, kernel_size=8, hidden=32, chunk_size=20, hop_size=10, n_blocks=2),
    "conv_tasnet": dict(n_filters=32, kernel_size=8, bottleneck=16, hidden=32, n_layers=3, n_repeats=2,
                        skip_channels=16),
    "sepformer": dict(n_filters=32, kernel_size=8, chunk_size=20, hop_size=10, n_blocks=1, intra_layers=1,
                      inter_layers=1, heads=4, ffn=64),
}  # fmt: skip
SAMPLE_RATE = 16000
SYNC_STEPS = 5
MAX_SYNCS_PER_STEP = 1


class Sines(torch.utils.data.Dataset):
    """Two sources per item, each a sum of sinusoids (one low band, one high band).  Shape: (time,), (2, time)."""

    def __init__(self, n: int, *, seconds: float, seed: int):
        rng = np.random.default_rng(seed)
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        self.items = []
        for _ in range(n):
            bands = []
            for low, high in ((100, 400), (1500, 4000)):
                f, a, ph = rng.uniform(low, high, 3), rng.uniform(0.1, 0.5, 3), rng.uniform(0, 2 * np.pi, 3)
                bands.append((a[:, None] * np.sin(2 * np.pi * f[:, None] * t + ph[:, None])).sum(0))
            sources = torch.tensor(np.stack(bands), dtype=torch.float32)
            self.items.append((sources.sum(0), sources))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class Report:
    """The JSON being built: sections, each with named checks (True/False) and figures."""

    def __init__(self, out: Path, deadline: float):
        self.out, self.deadline = out, deadline
        self.data: dict = {"sections": {}, "failed": []}

    def section(self, name: str, fn, *args) -> None:
        if time.monotonic() > self.deadline:
            self.data["sections"][name] = {"error": "not run: the time limit was reached", "checks": {}}
            self.data["failed"].append(f"{name}: not run (time)")
            return
        start = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            result = fn(*args)
        except Exception as err:  # a section that crashes is a failed check, and the others still run
            traceback.print_exc()
            result = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", "checks": {}}
            self.data["failed"].append(f"{name}: {result['error']}")
        result["seconds"] = round(time.monotonic() - start, 2)
        for check, ok in result.get("checks", {}).items():
            print(f"   {'ok  ' if ok else 'FAIL'} {check}", flush=True)
            if not ok:
                self.data["failed"].append(f"{name}: {check}")
        self.data["sections"][name] = result
        self.write()

    def write(self) -> None:
        self.data["ok"] = not self.data["failed"]
        path = self.out / "gpu_check.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, path)


# -- sections ---------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    from dnnsep.training import amp

    info = {
        "torch": torch.__version__,
        "torch_file": torch.__file__,
        "python": sys.version.split()[0],
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_bf16": amp.cpu_has_bf16(),
        "git": _git_commit(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = list(torch.cuda.get_device_capability(device))
        info["memory_gb"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        info["is_bf16_supported"] = torch.cuda.is_bf16_supported()
    dtype = amp.amp_dtype(device)
    info["amp_dtype"] = str(dtype)
    info["amp"] = amp.describe(dtype, scaled=amp.uses_scaler(dtype, device)) if dtype else "ignored"
    checks = {}
    if device.type == "cuda":
        major = info["capability"][0]
        checks["amp dtype follows compute capability"] = dtype == (torch.bfloat16 if major >= 8 else torch.float16)
    return {**info, "checks": checks}


def lstm_paths(device: torch.device) -> dict:
    from dnnsep.models import lstm
    from dnnsep.models.dual_path import DualPathBlock, rnn_paths

    torch.manual_seed(0)
    intra, inter = rnn_paths(channels=16, hidden=32, causal=False)  # two BiLSTM pairs, intra and inter
    block = DualPathBlock(intra=intra, inter=inter, channels=16, norm="gln")
    x = torch.randn(20, 9, 3, 16)  # (chunk_size, chunks, batch, channels)
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    real_path = lstm._path_for
    results = {}
    try:
        for where, path in ((device, "fused"), (device, "plain"), (torch.device("cpu"), "cpu")):
            lstm._path_for = lambda x, p=path: p
            b = block.to(where)
            xi = x.to(where).requires_grad_()
            y = b(xi)
            grads = torch.autograd.grad(y.square().mean(), [xi, *b.parameters()])
            results[f"{where.type}/{path}"] = [y.detach().cpu(), *(g.cpu() for g in grads)]
    finally:
        lstm._path_for = real_path
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        block.to("cpu")

    def worst(a, b):  # largest difference relative to each tensor's largest value
        return max(float((u - v).abs().max() / v.abs().max().clamp_min(1e-12)) for u, v in zip(a, b))

    fused, plain, cpu = results[f"{device.type}/fused"], results[f"{device.type}/plain"], results["cpu/cpu"]
    diffs = {
        "fused_vs_split": worst(fused, plain),
        "fused_vs_cpu": worst(fused, cpu),
        "split_vs_cpu": worst(plain, cpu),
    }
    checks = {f"{k} < 1e-4 (values and gradients, TF32 off)": v < 1e-4 for k, v in diffs.items()}
    return {"relative_max_difference": diffs, "checks": checks}


def precisions(device: torch.device) -> dict[str, tuple[torch.dtype | None, bool]]:
    """name: (autocast dtype, gradient scaler) for the training section."""
    from dnnsep.training import amp

    if device.type == "cuda":
        out = {"fp32": (None, False)}
        if torch.cuda.get_device_capability(device)[0] >= amp.CUDA_BF16_CAPABILITY:
            out["bf16+scaler"] = (torch.bfloat16, True)
        out["fp16+scaler"] = (torch.float16, True)
        return out
    out = {"fp32": (None, False), "fp32+scaler": (None, True)}  # the scaler's code path, on any CPU
    if amp.cpu_has_bf16():
        out["bf16"] = (torch.bfloat16, False)
    return out


def training(device: torch.device, work: Path, state: dict) -> dict:
    from dnnsep import models
    from dnnsep.checkpoint import load_checkpoint
    from dnnsep.training import experiment_dir, load_config
    from dnnsep.training import trainer as trainer_module

    runs, checks = {}, {}
    real_amp, real_scaler = trainer_module.amp_dtype, trainer_module.uses_scaler
    n = 16 if device.type != "cpu" else 4  # the CPU's dry run: a batch an epoch
    data = {"train_set": Sines(n, seconds=1.0, seed=0), "valid_set": Sines(n // 4, seconds=1.0, seed=1)}
    try:
        for model in models.names():
            for name, (dtype, scaled) in precisions(device).items():
                trainer_module.amp_dtype = lambda d, dt=dtype: dt
                trainer_module.uses_scaler = lambda dt, d, s=scaled: s
                overrides = {f"model.{k}": v for k, v in SIZES[model].items()}
                overrides.update(batch_size=4, num_workers=0, device=str(device), epochs=2, stop_after_epoch=1,
                                 lr=1e-3, amp=dtype is not None)  # fmt: skip
                cfg = load_config(RECIPES[model], overrides)
                out = work / f"{model}-{name}"
                start = time.monotonic()
                first = trainer_module.train(cfg, out, **data)
                exp = experiment_dir(cfg, out)
                last = exp / "model" / "last.pth"
                saved = load_checkpoint(last)["scaler"]
                resumed = trainer_module.Trainer(cfg.replace(stop_after_epoch=None), out, resume=last, **data)
                restored = resumed.scaler.state_dict() if resumed.scaler.is_enabled() else None
                second = resumed.fit()
                losses = first["history"]["train_loss"] + second["history"]["train_loss"][1:]
                key = f"{model}/{name}"
                runs[key] = {"train_loss": losses, "valid_loss": second["history"]["valid_loss"],
                             "scaler": saved, "seconds": round(time.monotonic() - start, 2)}  # fmt: skip
                checks[f"{key}: two epochs, finite losses"] = len(losses) == 2 and all(map(math.isfinite, losses))
                if scaled:
                    checks[f"{key}: scaler state saved and restored"] = bool(saved) and restored == saved
                else:
                    checks[f"{key}: no scaler state"] = saved is None
                if model == "dprnn_tasnet" and name == "fp32":
                    state["best"] = exp / "model" / "best.pth"
    finally:
        trainer_module.amp_dtype, trainer_module.uses_scaler = real_amp, real_scaler
    return {"runs": runs, "checks": checks}


def syncs(device: torch.device, work: Path) -> dict:
    from dnnsep import models
    from dnnsep.models import conv_ops
    from dnnsep.training import load_config
    from dnnsep.training import trainer as trainer_module

    counts, checks = {}, {}
    real_read, real_slope = trainer_module.LOSS_READ_EVERY, conv_ops.slope_on_host
    trainer_module.LOSS_READ_EVERY = 10**9  # the loss is read once an epoch, outside the steps counted
    if device.type == "cpu":
        conv_ops.slope_on_host = lambda x: False  # the PReLU as on a GPU
    try:
        for model in models.names():
            for scaled in (False, True):
                overrides = {f"model.{k}": v for k, v in SIZES[model].items()}
                overrides.update(batch_size=4, num_workers=0, device=str(device), epochs=1)
                cfg = load_config(RECIPES[model], overrides)
                sets = {"train_set": Sines(8, seconds=1.0, seed=0), "valid_set": Sines(2, seconds=1.0, seed=1)}
                trainer = trainer_module.Trainer(cfg, work / f"{model}-{scaled}", **sets)
                if scaled:
                    trainer.scaler = torch.amp.GradScaler(device.type, enabled=True)
                trainer.one_sync = True  # what a CUDA device gets; forced on the CPU
                mixture, sources = next(iter(torch.utils.data.DataLoader(trainer.train_set, batch_size=4)))
                trainer._step(mixture, sources)  # warm-up: lazy initialisations happen once
                n = _count_syncs(device, trainer, mixture, sources)
                key = f"{model}/{'scaler' if scaled else 'plain'}"
                counts[key] = n / SYNC_STEPS
                checks[f"{key}: at most {MAX_SYNCS_PER_STEP} host sync per step"] = n <= MAX_SYNCS_PER_STEP * SYNC_STEPS
    finally:
        trainer_module.LOSS_READ_EVERY, conv_ops.slope_on_host = real_read, real_slope
    how = "torch.cuda.set_sync_debug_mode" if device.type == "cuda" else "reads of tensor values (CPU)"
    return {"per_step": counts, "counted_by": how, "checks": checks}


def _count_syncs(device: torch.device, trainer, mixture: torch.Tensor, sources: torch.Tensor) -> int:
    """Host syncs in :data:`SYNC_STEPS` training steps on one batch."""

    def run():
        for _ in range(SYNC_STEPS):
            trainer._step(mixture, sources)

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchronizing" in str(w.message) for w in caught)
    count = 0
    on_host = {id(s["step"]) for s in trainer.optimizer.state.values() if "step" in s}  # Adam keeps these on the host
    names = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "numpy")
    real = {name: getattr(torch.Tensor, name) for name in names}

    def counted(name):
        def read(t, *a, **k):
            nonlocal count
            count += id(t) not in on_host
            return real[name](t, *a, **k)

        return read

    try:
        for name in names:
            setattr(torch.Tensor, name, counted(name))
        run()
    finally:
        for name in names:
            setattr(torch.Tensor, name, real[name])
    return count


def portable(device: torch.device, state: dict) -> dict:
    from dnnsep import models

    best = state.get("best")
    if best is None:
        return {"error": "no best.pth: the training section did not make one", "checks": {"best.pth made": False}}
    locations = []

    def record(storage, where):
        locations.append(where)
        return storage

    torch.load(best, weights_only=True, map_location=record)  # what a plain torch.load would restore to
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        x = 0.1 * torch.randn(1, 2 * SAMPLE_RATE, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            on_cpu = models.load(best).eval()(x)
            on_device = models.load(best, map_location=device).eval()(x.to(device)).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    rms = float(on_cpu.square().mean().sqrt())
    diff = float((on_device - on_cpu).abs().max()) / max(rms, 1e-12)
    checks = {
        "every storage in best.pth is on the CPU": bool(locations) and set(locations) == {"cpu"},
        "GPU and CPU separations equal (max difference < 1e-4 x RMS, TF32 off)": diff < 1e-4,
    }
    return {"storage_locations": sorted(set(locations)), "difference_over_rms": diff, "checks": checks}


def bench_gpu(device: torch.device, work: Path) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_model import has_asteroid

    out = work / "bench_gpu.json"
    args = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", str(device), "--json", str(out)]
    args += ["--tiny", "--without_asteroid"] if device.type == "cpu" else ["--steps", "10"]
    done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    print(done.stdout[-4000:], done.stderr[-4000:], sep="\n", flush=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    ratios = {}
    for key, row in results.items():
        theirs = results.get(key.replace("/dnnsep", "/asteroid"))
        if key.endswith("/dnnsep") and theirs:
            ratios[key.rsplit("/", 1)[0]] = row["train"]["steps_per_s"] / theirs["train"]["steps_per_s"]
    amp_ratios = [v for k, v in ratios.items() if k.endswith("/amp")]
    return {
        "results": results,
        "asteroid": has_asteroid(),
        "train_speedup_over_asteroid": ratios,
        "target_1.5x_with_amp": (min(amp_ratios) >= 1.5) if amp_ratios else None,
        "checks": {"bench_gpu.py ran": done.returncode == 0 and bool(results)},
    }


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for gpu_check.json")
    parser.add_argument("--cpu", action="store_true", help="every section on the CPU: a dry run anywhere")
    parser.add_argument("--max_seconds", type=float, default=450.0, help="sections not started by then fail")
    args = parser.parse_args(argv)
    if args.cpu:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}): run with --cpu for a dry run")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, time.monotonic() + args.max_seconds)
    print(f"gpu_check: torch {torch.__version__} from {Path(torch.__file__).parent}, device {device}", flush=True)
    state: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        work = Path(tmp)
        report.section("environment", environment, device)
        report.section("lstm", lstm_paths, device)
        report.section("training", training, device, work, state)
        report.section("syncs", syncs, device, work)
        report.section("portable", portable, device, state)
        report.section("bench_gpu", bench_gpu, device, work)
    report.write()
    failed = report.data["failed"]
    print(f"gpu_check: {'all checks passed' if not failed else f'{len(failed)} failed: ' + '; '.join(failed)}")
    print(f"gpu_check: wrote {out / 'gpu_check.json'}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
