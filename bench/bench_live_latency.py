"""End-to-end latency of the live demo, from capture to playback, through ALSA's file plugins.

``demo.sh --live --play 0`` reads its "microphone" from a raw file and writes what it plays to another
(ALSA's ``file`` PCM plugin, as the tests use).  The model is a causal DPRNN-TasNet built to pass its
input through unchanged (identity filterbanks with a square-root Hann window at 50% overlap, masks of
1), so the played signal is the captured one: the lag that maximises their correlation shows that every
captured sample is played, in order, none dropped or repeated (the played stream is the capture,
sample for sample).  The played stream starts late instead: sample i is written once capture sample
i + latency has arrived, which the engine reports (counted here).  The file plugin is not paced (it
reads faster than real time), so wall-clock figures come from the engine itself: on a real device a
sample is heard after

    the engine's latency (counted) + one capture block + the time to separate a block (p99)

plus the sound card's own buffers, which are the system's, not dnnsep's.

    python bench/bench_live_latency.py [--block_ms 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dnnsep.models import DPRNNConfig, DPRNNTasNet
from dnnsep.streaming import StreamingSeparator

RATE = 16000


def pass_through_model() -> DPRNNTasNet:
    """A causal DPRNN-TasNet whose estimates equal its input (after the streaming latency)."""
    torch.manual_seed(0)
    config = DPRNNConfig(n_filters=16, kernel_size=16, hidden=32, chunk_size=50, hop_size=25, n_blocks=1,
                         causal=True, encoder_activation="linear")  # fmt: skip
    model = DPRNNTasNet(config).eval()
    window = torch.hann_window(16, periodic=True).sqrt()  # w**2 overlap-adds to 1 at hop 8
    with torch.no_grad():
        model.encoder.conv.weight.copy_(torch.diag(window).unsqueeze(1))  # (16 filters, 1, 16 taps)
        model.decoder.conv.weight.copy_(torch.diag(window).unsqueeze(1))
        model.separator.mask_conv.weight.zero_()
        model.separator.mask_conv.bias.fill_(30.0)  # sigmoid(30) = 1: every mask passes everything
    return model


def alsa(directory: Path, pcm: np.ndarray) -> Path:
    pcm.astype("<i2").tofile(directory / "capture.raw")
    conf = directory / "asound.conf"
    conf.write_text(
        "</usr/share/alsa/alsa.conf>\npcm.!default {\n  type file\n  slave.pcm \"null\"\n"
        f"  file \"{directory / 'played.raw'}\"\n  infile \"{directory / 'capture.raw'}\"\n  format \"raw\"\n}}\n"
    )  # fmt: skip
    return conf


def delay(reference: np.ndarray, delayed: np.ndarray, most: int) -> int:
    """The lag in 0..most samples that best aligns ``delayed`` with ``reference`` (normalised correlation)."""
    n = min(len(reference), len(delayed)) - most
    scores = [np.dot(reference[:n], delayed[lag : lag + n]) for lag in range(most + 1)]
    return int(np.argmax(scores))


def default_model(args, block: int) -> tuple[str, int, float]:
    """The default causal DPRNN-TasNet (random weights): its latency and p99 time per block on 1 thread."""
    model = DPRNNTasNet(DPRNNConfig(causal=True)).eval()
    stream = StreamingSeparator(model)
    pcm = np.random.default_rng(1).standard_normal(int(args.seconds * RATE)).astype(np.float32) * 0.1
    times = []
    for i in range(0, len(pcm), block):
        start = time.perf_counter()
        stream.push(pcm[i : i + block])
        times.append(time.perf_counter() - start)
    return "the default causal DPRNN-TasNet", stream.latency, float(np.percentile(times, 99)) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block_ms", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    pcm = np.round(8000 * rng.standard_normal(int(60 * RATE)).clip(-3, 3)).astype(np.int16)  # > --seconds: fresh
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = tmp / "pass.pth"
        model = pass_through_model()
        model.save(model_path)
        engine = StreamingSeparator(model)
        conf = alsa(tmp, pcm)
        cmd = [sys.executable, "-m", "dnnsep.bin.demo", "--live", "--device", "cpu", "--model", str(model_path),
               "--seconds", f"{args.seconds:g}", "--play", "0", "--block_ms", f"{args.block_ms:g}",
               "--out_dir", str(tmp / "out")]  # fmt: skip
        done = subprocess.run(cmd, env={**os.environ, "ALSA_CONFIG_PATH": str(conf)}, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        played = np.fromfile(tmp / "played.raw", "<i2").astype(np.float64)
        captured = pcm[: len(played)].astype(np.float64)
        lag = delay(captured, played, most=4 * engine.latency)
        residual = played[lag:] - captured[: len(played) - lag]
        snr = 10 * math.log10(np.sum(captured**2) / max(np.sum(residual[16:-16] ** 2), 1e-9))

        block = int(round(args.block_ms * RATE / 1000))
        times, behind = [], set()
        stream = StreamingSeparator(model)
        torch.set_num_threads(1)
        pushed = emitted = 0
        for i in range(0, len(pcm[: int(args.seconds * RATE)]), block):
            start = time.perf_counter()
            emitted += stream.push(pcm[i : i + block]).shape[1]
            times.append(time.perf_counter() - start)
            pushed += len(pcm[i : i + block])
            behind.add(pushed - emitted)  # samples captured but not yet out
    p99 = float(np.percentile(times, 99)) * 1000
    ms = 1000 / RATE
    print(f"played {len(played) / RATE:.1f} s through ALSA's file plugins, {args.block_ms:g} ms blocks")
    print(f"played vs captured: aligned at lag {lag} samples, pass-through SNR {snr:.0f} dB (every sample, in order)")
    most = max(behind)
    print(f"played stream behind the capture: at most {most} samples ({most * ms:.1f} ms) after a block, "
          f"the engine's latency {engine.latency} samples ({engine.latency * ms:.1f} ms)")  # fmt: skip
    for name, latency, block_p99 in [("this pass-through model", engine.latency, p99), default_model(args, block)]:
        total = latency * ms + args.block_ms + block_p99
        print(f"end to end on a device, {name}: latency {latency * ms:.1f} ms + one block {args.block_ms:g} ms "
              f"+ p99 processing {block_p99:.1f} ms (1 thread) = {total:.1f} ms + the sound card")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
