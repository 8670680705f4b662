"""Streaming separation (dnnsep.streaming) against the offline pass, per second of audio, on CPU.

For each thread count and block duration, pushes ``--seconds`` of speech-like audio through a
:class:`~dnnsep.streaming.StreamingSeparator` block by block, timing every ``push``; reports the
compute time per block (p50, p99, max) against the block's duration, the share of blocks that took
longer than their duration, the real-time factor (compute time / audio time) of streaming and of the
offline ``model.separate`` on the same audio, and the largest difference between the two outputs.
``--model`` names a model, built at a causal config with random weights (the compute is the same):
``dprnn_tasnet`` (the default), ``DPRNNConfig(causal=True)``; ``conv_tasnet``, the paper's size
``ConvTasNetConfig(causal=True)`` (N=512, B=128, H=512, X=8, R=3); ``conv_tasnet_small``, a
laptop-size Conv-TasNet (N=256, B=64, H=256, Sc=64, X=8, R=2); or it is a causal checkpoint's path.
The issue's targets: RTF <= 0.5 with 20 ms blocks on one thread, p99 block time under the block's
duration, and streaming compute at most 1.2x the offline pass's (the RTF and offline RTF columns; the
100 ms and 1 s blocks show where batch-1 kernels stop costing: a DPRNN chunk's LSTMs run at batch 1 when
a block completes one chunk, at batch 4 and 40 when it completes 4 or 40).  For DPRNN it also times the
LSTM calls a stream makes per chunk with nothing around them (:func:`lstm_floor`): a floor under the
streaming RTF with small blocks, whatever the engine does around those calls.

    python bench/bench_streaming.py [--seconds 15] [--blocks_ms 10 20 50 100 1000] [--threads 1 2] [--model NAME|PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_separate import SR, speech_like

from dnnsep import ConvTasNetConfig, DPRNNConfig, models
from dnnsep.models.dual_path import DualPathSeparator
from dnnsep.streaming import StreamingSeparator

# --model NAME: (the model's name, a causal config), built with random weights
CONFIGS = {
    "dprnn_tasnet": ("dprnn_tasnet", DPRNNConfig(causal=True)),
    "conv_tasnet": ("conv_tasnet", ConvTasNetConfig(causal=True)),
    "conv_tasnet_small": (
        "conv_tasnet",
        ConvTasNetConfig(causal=True, n_filters=256, bottleneck=64, hidden=256, skip_channels=64, n_repeats=2),
    ),
}


def time_stream(model, x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Push x in blocks of ``block`` samples; returns (seconds per push, the output (n_sources, time))."""
    stream = StreamingSeparator(model)
    times, outs = [], []
    for start in range(0, len(x), block):
        t = time.perf_counter()
        outs.append(stream.push(x[start : start + block]))
        times.append(time.perf_counter() - t)
    outs.append(stream.flush())
    return np.array(times), np.concatenate(outs, axis=1)


def lstm_floor(model, rounds: int = 50) -> float | None:
    """Seconds per second of audio that a DPRNN stream's LSTM calls alone take (None for other models).

    Streaming runs each chunk through the blocks once, when its last frame is in: per block the
    intra-chunk BiLSTM's two directions over ``chunk_size`` steps at batch 1, and one step of the
    inter-chunk LSTM at batch ``chunk_size``; a chunk completes every ``hop_size`` frames.  These are
    the calls the engine cannot batch (the latency contract runs each chunk as soon as it is
    complete); timed here with nothing else around them, their sum is a floor under the streaming RTF.
    """
    sep = model.separator
    if not isinstance(sep, DualPathSeparator):
        return None
    channels, k = sep.bottleneck.out_features, sep.chunk_size
    intra_x = torch.randn(k, 1, channels)  # one chunk, batch 1
    inter_x = torch.randn(1, k, channels)  # one step, a sequence per chunk position
    calls = []
    for block in sep.blocks:
        units = block.inter.rnn.hidden_size
        state = (torch.zeros(1, k, units), torch.zeros(1, k, units))
        calls += [lambda m=block.intra.rnn: m(intra_x), lambda m=block.intra.rnn_reverse: m(intra_x)]
        calls.append(lambda m=block.inter.rnn, s=state: m(inter_x, s))
    with torch.inference_mode():
        for call in calls:  # warm up
            call()
        start = time.perf_counter()
        for _ in range(rounds):
            for call in calls:
                call()
        per_chunk = (time.perf_counter() - start) / rounds
    chunks_per_second = SR / (sep.hop_size * model.config.stride)
    return per_chunk * chunks_per_second


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="audio per setting (15)")
    parser.add_argument("--blocks_ms", type=float, nargs="+", default=[10, 20, 50, 100, 1000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads")
    parser.add_argument(
        "--model",
        default="dprnn_tasnet",
        help=f"{', '.join(CONFIGS)} (a causal config, random weights) or a checkpoint",
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.model in CONFIGS:
        name, config = CONFIGS[args.model]
        model = models.get(name)(config)
        what = f"{type(model).model_name} {'/'.join(config.dir_names())} (random weights)"
    else:
        model = models.load(args.model)
        what = args.model
    model.eval()
    x = speech_like(args.seconds / 60).astype(np.float32) / 32768  # (time,)
    print(f"model {what}; {args.seconds:g} s of audio per setting; latency {model.config.latency} samples "
          f"({1000 * model.config.latency / SR:.1f} ms); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    header = (
        f"{'threads':>7} {'block ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'over %':>6} "
        f"{'RTF':>6} {'offline RTF':>11} {'max |diff|':>10}"
    )
    print(header, flush=True)
    rows, floors = [], []
    for threads in args.threads:
        torch.set_num_threads(threads)
        time_stream(model, x[:SR], SR // 50)  # warm up (allocations, the LSTM direction pool)
        start = time.perf_counter()
        expected = model.separate(x)
        offline_rtf = (time.perf_counter() - start) / args.seconds
        floor = lstm_floor(model)
        if floor is not None:
            print(f"{threads:>7} threads: a stream's LSTM calls alone (batch 1 per chunk): RTF {floor:.3f}, "
                  f"{floor / offline_rtf:.2f}x the offline pass's {offline_rtf:.3f}", flush=True)  # fmt: skip
            floors.append({"threads": threads, "lstm_floor_rtf": floor, "offline_rtf": offline_rtf})
        for ms in args.blocks_ms:
            block = int(round(ms * SR / 1000))
            times, out = time_stream(model, x, block)
            row = {
                "threads": threads,
                "block_ms": ms,
                "p50_ms": 1000 * float(np.percentile(times, 50)),
                "p99_ms": 1000 * float(np.percentile(times, 99)),
                "max_ms": 1000 * float(times.max()),
                "over_pct": 100 * float(np.mean(times > ms / 1000)),
                "rtf": float(times.sum()) / args.seconds,
                "offline_rtf": offline_rtf,
                "max_diff": float(np.abs(out - expected).max()),
            }
            rows.append(row)
            print(
                f"{threads:>7} {ms:>8g} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} {row['max_ms']:>7.2f} "
                f"{row['over_pct']:>6.1f} {row['rtf']:>6.3f} {offline_rtf:>11.3f} {row['max_diff']:>10.1e}",
                flush=True,
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end (a busy machine stretches the tail)")
    if args.json:
        Path(args.json).write_text(json.dumps({"blocks": rows, "lstm_floor": floors}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
