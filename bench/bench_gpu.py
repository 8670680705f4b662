"""GPU speed and memory of DPRNN-TasNet and Conv-TasNet training and inference, ours against asteroid's
when importable.

For DPRNN's seed recipe config (B=3) and the paper's (B=6), and Conv-TasNet's paper config, in float32
and mixed precision (the policy of dnnsep.training.amp: bfloat16 autocast from compute capability 8,
else float16; on CUDA always with a gradient scaler):

- training steps per second on a batch of 4 x 4 s (forward, PIT SI-SDR in float32, backward,
  gradient clipping at 5, Adam), after warm-up steps, and the peak GPU memory of those steps;
- inference real-time factor (seconds of compute per second of audio) on one 60 s mixture, and its
  peak GPU memory.

Everything runs in this process, one model at a time (``torch.cuda.empty_cache`` and a peak-memory
reset between them).  ``--tiny --device cpu`` runs the same code with tiny sizes and a few steps, so
the script does not rot on machines without a GPU (peak memory is then not measured).

asteroid is never a dependency; to compare, install it into a scratch venv (see bench_model.py's
doc) and run this script with that venv's python.  Without it, or with ``--without_asteroid``, the
script measures dnnsep alone and says so.

    python3 bench/bench_gpu.py                       # on a CUDA machine
    python3 bench/bench_gpu.py --tiny --device cpu   # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_model, beside this file

from bench_model import build, has_asteroid  # noqa: E402  (the one place asteroid's model is built)

from dnnsep import ConvTasNetConfig, DPRNNConfig  # noqa: E402
from dnnsep.losses import pit_si_sdr  # noqa: E402
from dnnsep.training.amp import amp_dtype, autocast, uses_scaler  # noqa: E402

SR = 16000
# name: (config class, changes to its defaults); DPRNNConfig's defaults are the seed recipe's
CONFIGS = {"default": (DPRNNConfig, {}), "paper": (DPRNNConfig, {"n_blocks": 6}), "convtasnet": (ConvTasNetConfig, {})}
TINY = {  # --tiny: sizes of each model's configs
    DPRNNConfig: dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5),
    ConvTasNetConfig: dict(
        n_filters=16, kernel_size=4, bottleneck=8, hidden=16, n_layers=2, n_repeats=1, skip_channels=8
    ),
}


@dataclasses.dataclass
class Sizes:
    batch: int = 4
    train_seconds: float = 4.0
    long_seconds: float = 60.0
    warmup: int = 3
    steps: int = 20


TINY_SIZES = Sizes(batch=2, train_seconds=0.25, long_seconds=2.0, warmup=1, steps=2)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict):
    """Store the peak GPU memory allocated inside the block in ``out["peak_mb"]`` (None off CUDA)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    out["peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def train_speed(model: torch.nn.Module, device: torch.device, dtype, sizes: Sizes) -> dict:
    """Steps per second and peak memory of training steps on ``sizes.batch x sizes.train_seconds``."""
    generator = torch.Generator().manual_seed(0)
    length = int(sizes.train_seconds * SR)
    mixture = torch.randn(sizes.batch, length, generator=generator).to(device)
    sources = torch.randn(sizes.batch, 2, length, generator=generator).to(device)
    optimizer = torch.optim.Adam(model.train().parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=uses_scaler(dtype, device))

    def step():
        with autocast(device, dtype):
            estimates = model(mixture)
        loss = pit_si_sdr(estimates.float(), sources).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    out: dict = {}
    with peak_memory(device, out):
        for _ in range(sizes.warmup):
            step()
        sync(device)
        start = time.perf_counter()
        for _ in range(sizes.steps):
            step()
        sync(device)
        out["steps_per_s"] = sizes.steps / (time.perf_counter() - start)
    return out


def inference_speed(model: torch.nn.Module, device: torch.device, dtype, sizes: Sizes) -> dict:
    """Real-time factor and peak memory of one pass over a ``sizes.long_seconds`` mixture (after a short warm-up)."""
    model.eval()
    x = torch.randn(1, int(sizes.long_seconds * SR), generator=torch.Generator().manual_seed(1)).to(device)
    out: dict = {}
    with torch.inference_mode(), autocast(device, dtype):
        model(x[:, : SR // 2])  # warm-up: kernels chosen, memory pools made
        with peak_memory(device, out):
            sync(device)
            start = time.perf_counter()
            model(x)
            sync(device)
            out["rtf"] = (time.perf_counter() - start) / sizes.long_seconds
    return out


def run(kinds: list[str], config_names: list[str], device: torch.device, *, tiny: bool, sizes: Sizes) -> dict:
    precisions = {"fp32": None}
    mixed = amp_dtype(device)
    if mixed is not None:
        precisions["amp"] = mixed
    else:
        print(f"no mixed precision on {device} (see dnnsep.training.amp): float32 only")
    results: dict = {}
    for name in config_names:
        config_class, changes = CONFIGS[name]
        config = config_class(**changes, **(TINY[config_class] if tiny else {}))
        for precision, dtype in precisions.items():
            for kind in kinds:
                model = build(kind, config).to(device)
                row = {"params": sum(p.numel() for p in model.parameters()), "dtype": str(dtype or torch.float32)}
                row["train"] = train_speed(model, device, dtype, sizes)
                row["infer"] = inference_speed(model, device, dtype, sizes)
                results[f"{name}/{precision}/{'dnnsep' if kind == 'ours' else kind}"] = row
                del model
    return results


def report(results: dict, sizes: Sizes, device: torch.device) -> None:
    train_label = f"train steps/s ({sizes.batch} x {sizes.train_seconds:g} s)"
    infer_label = f"RTF ({sizes.long_seconds:g} s)"
    header = f"{'config/precision/model':32s} {'params':>10s} {train_label:>28s} {'peak MB':>9s}"
    header += f" {infer_label:>12s} {'peak MB':>9s}"
    print(header)
    print("-" * len(header))
    mb = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    for key, row in results.items():
        train, infer = row["train"], row["infer"]
        print(
            f"{key:32s} {row['params']:10,d} {train['steps_per_s']:28.2f} {mb(train['peak_mb']):>9s} "
            f"{infer['rtf']:12.4f} {mb(infer['peak_mb']):>9s}"
        )
    ratios = []
    for key, row in results.items():
        theirs = results.get(key.replace("/dnnsep", "/asteroid"))
        if key.endswith("/dnnsep") and theirs:
            speedup = row["train"]["steps_per_s"] / theirs["train"]["steps_per_s"]
            ratios.append(f"{key.rsplit('/', 1)[0]}: {speedup:.2f}x")
    if ratios:
        print("training steps/s, dnnsep / asteroid: " + ", ".join(ratios))
    if device.type != "cuda":
        print(f"note: on {device}, peak GPU memory is not measured")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--configs", default="default,paper,convtasnet", help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and a few steps: a smoke run")
    parser.add_argument("--without_asteroid", action="store_true", help="measure dnnsep alone")
    parser.add_argument("--steps", type=int, help="timed training steps (default: 20; --tiny: 2)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here: pass --device cpu (with --tiny for a smoke run)")
    sizes = dataclasses.replace(TINY_SIZES if args.tiny else Sizes())
    if args.steps:
        sizes.steps = args.steps
    kinds = ["ours"]
    if args.without_asteroid:
        why = "--without_asteroid"
    elif not has_asteroid():
        why = "asteroid is not importable"
    else:
        why = None
        kinds.append("asteroid")
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    print(f"torch {torch.__version__}, device {device}{gpu}{', tiny sizes' if args.tiny else ''}")
    if why:
        print(f"measuring dnnsep alone ({why})\n")
    results = run(kinds, args.configs.split(","), device, tiny=args.tiny, sizes=sizes)
    report(results, sizes, device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
