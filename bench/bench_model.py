"""CPU speed and memory of DPRNN-TasNet, Conv-TasNet or SepFormer, ours against the original toolkit's.

Measures, for ``--model dprnn_tasnet`` (the default) the seed recipe's config (B=3), the paper's (B=6)
and the main job's (``mini``: conf/mini.yaml's model; ``mini_hop25``: the same with half-overlapping
chunks, as it was before), for ``--model conv_tasnet`` the paper's (N=512, L=16, B=128, H=512, P=3, X=8,
R=3, Sc=128, gLN, sigmoid), against asteroid's when it is importable; for ``--model sepformer`` the
paper's as SpeechBrain publishes it (``wsj02mix``: 8 kHz; ``whamr16k``: the same at 16 kHz; converted
options: SpeechBrain's paddings), against SpeechBrain's own modules computing its ``separate_batch``
when SpeechBrain is importable; on ``--threads`` threads:
parameter count; real-time factor (seconds of compute per second of audio) for a 5 s mixture;
time and peak memory for one pass over a 60 s mixture (no warm-up: what a user separating one file
sees); seconds per training step (batch 4 x 2 s: forward + PIT SI-SDR + backward + Adam).  Every
timing runs in a fresh process with one model, so no model inherits another's heap (on Linux the
allocator's state moves these figures by a third): ``--rounds`` rounds, models in turn in each, a
warm-up and ``--per_process`` timed runs in each process; the figure is the median of all runs.

``--int8`` also times our model after torch's dynamic int8 quantisation of its LSTMs and linear
layers (an experiment, not a library feature: on CPUs without VNNI its quantised LSTM is slower than
the fp32 oneDNN kernel; see the numbers it prints).

``--malloc reuse`` calls :func:`dnnsep.allocator.keep_freed_memory` first in every process, as
dnnsep's tools do with ``DNNSEP_MALLOC=reuse``; ``--malloc default`` (the default) leaves glibc's
malloc as it is.  Every model in a run gets the same allocator, so ratios compare model code.

asteroid is never a dependency; to compare, install it into a scratch venv that sees this one::

    python3 -m venv --system-site-packages /tmp/astvenv
    /tmp/astvenv/bin/pip install --no-deps asteroid==0.7.0 asteroid-filterbanks==0.4.0
    /tmp/astvenv/bin/pip install scipy huggingface_hub
    /tmp/astvenv/bin/python bench/bench_model.py --threads 2
    /tmp/astvenv/bin/python bench/bench_model.py --threads 2 --model conv_tasnet
    /tmp/astvenv/bin/pip install --no-deps speechbrain==1.1.0 hyperpyyaml ruamel.yaml sentencepiece joblib
    /tmp/astvenv/bin/python bench/bench_model.py --threads 2 --model sepformer --skip train

(SpeechBrain 1.1 imports torchaudio, which has no build for this torch: an import-only stand-in is
used where it is missing; separation never calls it.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from main_job import ISA_ENV, MINI, cpu  # this folder's: the main job's config, the CPU, --isa's variables

from dnnsep import models
from dnnsep.allocator import keep_freed_memory
from dnnsep.losses import pit_si_sdr
from dnnsep.training.config import load_config
from dnnsep.training.start import fused_on_cpu

DPRNNConfig, ConvTasNetConfig = models.get("dprnn_tasnet").config_class, models.get("conv_tasnet").config_class
SepFormerConfig = models.get("sepformer").config_class
MAIN_JOB = load_config(MINI).model_config  # the main job's model, as conf/mini.yaml has it
AS_SPEECHBRAIN = dict(signal_padding="none", chunk_padding="speechbrain")  # what its converted models compute
CONFIGS = {  # "tiny": a smoke run of the script (the tests run it), not a figure
    "dprnn_tasnet": {
        "default": DPRNNConfig(),
        "paper": DPRNNConfig(n_blocks=6),
        "mini": MAIN_JOB,
        "mini_hop25": dataclasses.replace(MAIN_JOB, hop_size=25),
        "tiny": DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1),
    },
    "conv_tasnet": {
        "paper": ConvTasNetConfig(),
        "tiny": ConvTasNetConfig(n_filters=16, kernel_size=4, bottleneck=8, hidden=16, n_layers=2, n_repeats=1,
                                 skip_channels=8),
    },
    "sepformer": {
        "wsj02mix": SepFormerConfig(sample_rate=8000, **AS_SPEECHBRAIN),
        "whamr16k": SepFormerConfig(sample_rate=16000, **AS_SPEECHBRAIN),
        "tiny": SepFormerConfig(n_filters=16, kernel_size=16, chunk_size=50, hop_size=25, n_blocks=1, intra_layers=1,
                                inter_layers=1, heads=2, ffn=16, **AS_SPEECHBRAIN),
    },
}  # fmt: skip
SR = 16000  # the rate of every model but SepFormer's (its config's)
LONG_SECONDS = 60.0


class SpeechBrainSepFormer(torch.nn.Module):
    """SpeechBrain's SepFormer modules as its published models build them, computing ``separate_batch``.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time) (SpeechBrain's is
    ``(batch, time, n_sources)``: the transpose is a view).
    """

    def __init__(self, config: models.ModelConfig):
        super().__init__()
        from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder, SBTransformerBlock

        def path(layers: int) -> torch.nn.Module:
            sizes = dict(d_model=config.bottleneck, nhead=config.heads, d_ffn=config.ffn)
            return SBTransformerBlock(
                num_layers=layers, dropout=0, use_positional_encoding=True, norm_before=True, **sizes
            )

        self.encoder = Encoder(kernel_size=config.kernel_size, out_channels=config.n_filters)
        self.masknet = Dual_Path_Model(
            in_channels=config.n_filters, out_channels=config.bottleneck, intra_model=path(config.intra_layers),
            inter_model=path(config.inter_layers), num_layers=config.n_blocks, norm="ln", K=config.chunk_size,
            num_spks=config.n_sources, skip_around_intra=True, linear_layer_after_inter_intra=False,
        )  # fmt: skip
        self.decoder = Decoder(in_channels=config.n_filters, out_channels=1, kernel_size=config.kernel_size,
                               stride=config.kernel_size // 2, bias=False)  # fmt: skip
        self.n_sources = config.n_sources

    def forward(self, mix: torch.Tensor) -> torch.Tensor:  # speechbrain.inference.separation.separate_batch
        mix_w = self.encoder(mix)
        est_mask = self.masknet(mix_w)
        sep_h = torch.stack([mix_w] * self.n_sources) * est_mask
        est = torch.cat([self.decoder(sep_h[i]).unsqueeze(-1) for i in range(self.n_sources)], dim=-1)
        t_origin, t_est = mix.size(1), est.size(1)
        est = F.pad(est, (0, 0, 0, t_origin - t_est)) if t_origin > t_est else est[:, :t_origin, :]
        return est.transpose(1, 2)


def _import_speechbrain() -> None:
    """Import SpeechBrain, with an import-only torchaudio stand-in where torchaudio is missing."""
    try:
        import torchaudio  # noqa: F401
    except ImportError:
        import types

        stand_in = types.ModuleType("torchaudio")
        stand_in.__version__ = "0.0 (bench stand-in)"
        stand_in.list_audio_backends = lambda: ["soundfile"]
        sys.modules["torchaudio"] = stand_in
    import speechbrain.lobes.models.dual_path  # noqa: F401


def build(kind: str, config: models.ModelConfig) -> torch.nn.Module:
    """``ours``, ``int8`` (ours, dynamically quantised), ``asteroid`` or ``speechbrain``, in eval mode."""
    torch.manual_seed(0)
    ours = next(models.get(name) for name in models.names() if isinstance(config, models.get(name).config_class))
    if isinstance(config, SepFormerConfig):
        if kind == "speechbrain":
            _import_speechbrain()
            return SpeechBrainSepFormer(config).eval()
        return ours(config).eval()
    if isinstance(config, ConvTasNetConfig):
        if kind != "asteroid":
            return ours(config).eval()
        from asteroid.models import ConvTasNet as AsteroidConvTasNet

        return AsteroidConvTasNet(
            config.n_sources,
            n_blocks=config.n_layers,
            n_repeats=config.n_repeats,
            bn_chan=config.bottleneck,
            hid_chan=config.hidden,
            skip_chan=config.skip_channels,
            conv_kernel_size=config.conv_kernel,
            norm_type={"gln": "gLN", "cln": "cLN"}[config.norm],
            causal=config.causal,
            mask_act=config.mask,
            kernel_size=config.kernel_size,
            n_filters=config.n_filters,
            stride=config.stride,
            sample_rate=config.sample_rate,
        ).eval()
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
    model = ours(config).eval()
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


def has_speechbrain() -> bool:
    try:
        _import_speechbrain()
    except Exception:
        return False
    return True


def peer(model_name: str) -> str | None:
    """The original toolkit timed beside ours, if importable: asteroid, or SpeechBrain for SepFormer."""
    if model_name == "sepformer":
        return "speechbrain" if has_speechbrain() else None
    return "asteroid" if has_asteroid() else None


def time_part(
    kind: str, model_name: str, config_name: str, part: str, repeats: int, long_seconds: float
) -> list[float]:
    """In this process: build one model, warm it up once, then time ``part`` ``repeats`` times (seconds).

    ``rtf``: one 5 s pass in inference mode; ``long``: one pass over ``long_seconds`` (no warm-up, as a
    user separating one file); ``train``: one training step on a batch of 4 x 2 s.
    """
    config = CONFIGS[model_name][config_name]
    model = build(kind, config)
    rate = config.sample_rate if isinstance(config, SepFormerConfig) else SR
    if part == "train":
        mix, refs = torch.randn(4, 2 * rate), torch.randn(4, config.n_sources, 2 * rate)
        params = list(model.train().parameters())
        # each toolkit's training update: dnnsep's trainer fuses Adam on the CPU, the others' loop over tensors
        fused = True if kind == "ours" and fused_on_cpu(params) else None
        optimizer = torch.optim.Adam(params, lr=1e-3, fused=fused)

        def run():
            optimizer.zero_grad(set_to_none=True)
            pit_si_sdr(model(mix), refs).loss.backward()
            optimizer.step()

    else:
        x = torch.randn(1, int((5.0 if part == "rtf" else long_seconds) * rate))

        def run():
            with torch.inference_mode():
                model(x)

    if part != "long":
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def child(kind: str, config_name: str, part: str, args: argparse.Namespace) -> dict:
    """Run :func:`time_part` in a fresh process, so no model inherits another's heap or warm caches."""
    command = [sys.executable, __file__, "--child", f"{kind},{config_name},{part}", "--threads", str(args.threads)]
    command += ["--model", args.model]
    command += ["--malloc", args.malloc, "--per_process", str(1 if part == "long" else args.per_process)]
    command += ["--long_seconds", str(args.long_seconds)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{kind} {part} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(kinds: list[str], config_name: str, part: str, args: argparse.Namespace) -> dict[str, dict]:
    """Median time per model over ``--rounds`` rounds; in each round every model runs in turn, each in a
    fresh process, so a busy machine slows all of them alike.  Also the largest peak memory seen."""
    times: dict[str, list[float]] = {k: [] for k in kinds}
    peaks: dict[str, float] = {k: 0.0 for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            r = child(kind, config_name, part, args)
            times[kind] += r["times"]
            peaks[kind] = max(peaks[kind], r["extra_mb"])
    return {k: {"seconds": statistics.median(times[k]), "extra_mb": peaks[k]} for k in kinds}


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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of fresh processes, models in turn")
    parser.add_argument("--per_process", type=int, default=3, help="timed runs per process after a warm-up")
    parser.add_argument("--model", choices=sorted(CONFIGS), default="dprnn_tasnet")
    parser.add_argument(
        "--configs",
        help="comma-separated: default, paper, mini, mini_hop25 (dprnn_tasnet); paper (conv_tasnet); wsj02mix, "
        "whamr16k (sepformer); tiny: a smoke run",
    )
    parser.add_argument("--int8", action="store_true", help="also time dynamic int8 quantisation (experiment)")
    parser.add_argument("--long_seconds", type=float, default=LONG_SECONDS)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: rtf, long, train")
    parser.add_argument("--malloc", choices=("default", "reuse"), default="default", help="see the module doc")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # KIND,CONFIG,PART: time one part in this process
    args = parser.parse_args(argv)
    if args.malloc == "reuse":
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    if args.child:
        kind, config_name, part = args.child.split(",")
        base = rss_mb()
        times = time_part(kind, args.model, config_name, part, args.per_process, args.long_seconds)
        print(json.dumps({"times": times, "extra_mb": rss_mb(peak=True) - base}))
        return 0
    configs = args.configs.split(",") if args.configs else [c for c in CONFIGS[args.model] if c != "tiny"]
    unknown = sorted(set(configs) - set(CONFIGS[args.model]))
    if unknown:
        parser.error(f"--configs: {unknown} not among {args.model}'s: {', '.join(CONFIGS[args.model])}")
    if args.int8 and args.model != "dprnn_tasnet":
        parser.error("--int8 quantises LSTMs and linear layers: dprnn_tasnet only")
    skip = set(filter(None, args.skip.split(",")))
    other = peer(args.model)
    kinds = ["ours"] + (["int8"] if args.int8 else []) + ([other] if other else [])
    print(f"{args.model}: torch {torch.__version__}, {args.threads} threads, malloc {args.malloc}, {', '.join(kinds)}")
    results = {}
    for config_name in configs:
        config = CONFIGS[args.model][config_name]
        r = results[config_name] = {
            "params": {k: sum(p.numel() for p in build(k, config).parameters()) for k in kinds if k != "int8"}
        }
        if "rtf" not in skip:
            r["rtf_5s"] = {k: v["seconds"] / 5.0 for k, v in measure(kinds, config_name, "rtf", args).items()}
        if "long" not in skip:
            r["long"] = measure(kinds, config_name, "long", args)
        if "train" not in skip:
            trained = [k for k in kinds if k != "int8"]
            r["train_step_s"] = {k: v["seconds"] for k, v in measure(trained, config_name, "train", args).items()}
        report(config_name, r, args.long_seconds)
    if args.json:
        isa = sorted({k for env in ISA_ENV.values() for k in env})  # as on another CPU, if set (main_job.py --isa)
        machine = {"cpu": cpu(), "torch": torch.__version__, "threads": args.threads, "kinds": kinds,
                   "env": {k: os.environ[k] for k in isa if k in os.environ}}  # fmt: skip
        with open(args.json, "w") as f:
            json.dump({**results, "machine": machine}, f, indent=2)
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
        line = f"{label:32s}" + "".join(f" {k:>11s} {v:8.3f}" for k, v in values.items())
        for other in ("asteroid", "speechbrain"):
            if other in values:
                line += f"   ours/{other} " + " ".join(
                    f"{k}={v / values[other]:.2f}x" for k, v in values.items() if k != other
                )
        print(line)


if __name__ == "__main__":
    sys.exit(main())
