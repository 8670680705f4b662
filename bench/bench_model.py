"""CPU speed and memory of DPRNN-TasNet, ours against asteroid's when it is importable.

Measures, for the seed recipe's config (B=3) and the paper's (B=6), on ``--threads`` threads:
parameter count; real-time factor (seconds of compute per second of audio) for a 5 s mixture;
time and peak memory for a 60 s mixture (each in a fresh process, so the peak is that pass's);
seconds per training step (batch 4 x 2 s: forward + PIT SI-SDR + backward + Adam).  Each figure is
the median of ``--repeats`` runs after a warm-up; models run in turn inside each repeat, so a busy
machine slows all of them alike.  ``--int8`` also times our model after torch's dynamic int8
quantisation of its LSTMs and linear layers (an experiment, not a library feature: on CPUs without
VNNI its quantised LSTM is slower than the fp32 oneDNN kernel; see the numbers it prints).

asteroid is never a dependency; to compare, install it into a scratch venv that sees this one::

    python3 -m venv --system-site-packages /tmp/astvenv
    /tmp/astvenv/bin/pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0
    /tmp/astvenv/bin/pip install scipy huggingface_hub
    /tmp/astvenv/bin/python bench/bench_model.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable

import torch

from dnnsep import DPRNNConfig, DPRNNTasNet
from dnnsep.losses import pit_si_sdr

CONFIGS = {"default": DPRNNConfig(), "paper": DPRNNConfig(n_blocks=6)}
SR = 16000


def build(kind: str, config: DPRNNConfig) -> torch.nn.Module:
    """``ours``, ``int8`` (ours, dynamically quantised) or ``asteroid``, in eval mode."""
    torch.manual_seed(0)
    if kind == "asteroid":
        from asteroid.models import DPRNNTasNet as AsteroidDPRNN

        return AsteroidDPRNN(
            config.n_sources,
            n_filters=config.n_filters,
            kernel_size=config.kernel_size,
            stride=config.stride,
            bn_chan=config.bottleneck,
            hid_size=config.hidden // 2,
            chunk_size=config.chunk_size,
            hop_size=config.hop_size,
            n_repeats=config.n_blocks,
            mask_act=config.mask,
        ).eval()
    model = DPRNNTasNet(config).eval()
    if kind == "int8":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    return model


def has_asteroid() -> bool:
    try:
        import asteroid.models  # noqa: F401
    except Exception:
        return False
    return True


def medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Warm each up once, then time them in turn ``repeats`` times; medians in seconds."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def inference(models: dict[str, torch.nn.Module], seconds: float, repeats: int) -> dict[str, float]:
    x = torch.randn(1, int(seconds * SR))

    def run(model):
        with torch.inference_mode():
            return model(x)

    return medians({name: (lambda m=m: run(m)) for name, m in models.items()}, repeats)


def train_step(models: dict[str, torch.nn.Module], repeats: int) -> dict[str, float]:
    mix, refs = torch.randn(4, 2 * SR), torch.randn(4, 2, 2 * SR)
    steps = {}
    for name, model in models.items():
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = pit_si_sdr(model(mix), refs).loss
            loss.backward()
            optimizer.step()

        steps[name] = step
    return medians(steps, repeats)


def peak_memory_child(kind: str, config_name: str, seconds: float, threads: int) -> dict[str, float]:
    """Run one long pass in a fresh process; its peak RSS above the loaded model, and its time."""
    code = "\n".join(
        [
            "import json, sys, time, torch",
            "sys.path.insert(0, 'bench')",
            "from bench_model import CONFIGS, build, rss_mb",
            f"torch.set_num_threads({threads})",
            f"model = build({kind!r}, CONFIGS[{config_name!r}])",
            f"x = torch.randn(1, int({seconds} * 16000))",
            "base, start = rss_mb(), time.perf_counter()",
            "with torch.inference_mode():",
            "    model(x)",
            "seconds = time.perf_counter() - start",
            "peak = rss_mb(peak=True)",
            "print(json.dumps({'seconds': seconds, 'peak_mb': peak, 'extra_mb': peak - base}))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_mb(peak: bool = False) -> float:
    """Current (Linux) or peak resident memory of this process, in MB."""
    if peak:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 / (1024 if sys.platform == "darwin" else 1)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--configs", default="default,paper", help="comma-separated: default, paper")
    parser.add_argument("--int8", action="store_true", help="also time dynamic int8 quantisation (experiment)")
    parser.add_argument("--long_seconds", type=float, default=60.0)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: rtf, long, train")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    kinds = ["ours"] + (["int8"] if args.int8 else []) + (["asteroid"] if has_asteroid() else [])
    print(f"torch {torch.__version__}, {args.threads} threads, models: {', '.join(kinds)}")
    results = {}
    for config_name in args.configs.split(","):
        config = CONFIGS[config_name]
        models = {kind: build(kind, config) for kind in kinds}
        r = results[config_name] = {
            "params": {
                k: sum(p.numel() for p in build(k if k != "int8" else "ours", config).parameters()) for k in kinds
            }
        }
        if "rtf" not in skip:
            r["rtf_5s"] = {k: v / 5.0 for k, v in inference(models, 5.0, args.repeats).items()}
        if "long" not in skip:
            r["long"] = {k: peak_memory_child(k, config_name, args.long_seconds, args.threads) for k in kinds}
        if "train" not in skip:
            r["train_step_s"] = train_step({k: m for k, m in models.items() if k != "int8"}, args.repeats)
        report(config_name, r, args.long_seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def report(name: str, r: dict, long_seconds: float) -> None:
    print(f"\n== {name} config ==")
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in r["params"].items()))
    rows = []
    if "rtf_5s" in r:
        rows.append(("RTF, 5 s", r["rtf_5s"]))
    if "long" in r:
        rows.append((f"RTF, {long_seconds:.0f} s", {k: v["seconds"] / long_seconds for k, v in r["long"].items()}))
        rows.append((f"peak MB above model, {long_seconds:.0f} s", {k: v["extra_mb"] for k, v in r["long"].items()}))
    if "train_step_s" in r:
        rows.append(("train step s (4 x 2 s)", r["train_step_s"]))
    for label, values in rows:
        line = f"{label:32s}" + "".join(f"{k:>9s} {v:8.3f}" for k, v in values.items())
        if "asteroid" in values:
            line += "   ours/asteroid " + " ".join(
                f"{k}={v / values['asteroid']:.2f}x" for k, v in values.items() if k != "asteroid"
            )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
