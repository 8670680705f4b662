"""Peak memory and time of ``python -m dnnsep.bin.separate`` on long files (chunked separation).

For each length in ``--minutes`` (default 1, 5 and 10), writes a 16 kHz 16-bit WAV of speech-like
noise and separates it with the default-size DPRNN-TasNet (random weights unless ``--model``: the
compute is the same) in a fresh process, the way a user would; reports that process's peak
resident memory (``wait4``'s ``ru_maxrss``: Python, torch, the model, the audio and the chunked
separation together), its wall time, and the time per minute of audio, which stays flat when time
is linear in length.  The issue's target: a 10-minute file under 1 GB on CPU.

    python bench/bench_separate.py [--minutes 1 5 10] [--threads 2] [--chunk_seconds 8] [--overlap 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from dnnsep import models

SR = 16000


def speech_like(minutes: float, seed: int = 0) -> np.ndarray:
    """Pink-ish noise in syllable-rate bursts, written block by block.  Shape: (time,) int16."""
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * SR)
    out = np.empty(n, np.int16)
    block = 60 * SR
    for start in range(0, n, block):
        size = min(block, n - start)
        white = rng.standard_normal(size)
        smooth = np.convolve(white, np.ones(8) / 8, mode="same")  # tilt towards low frequencies
        t = (start + np.arange(size)) / SR
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2  # ~4 Hz syllables
        out[start : start + size] = np.clip(6000 * smooth * envelope, -32768, 32767).astype(np.int16)
    return out


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """Run ``cmd``; returns (peak RSS in MB, wall seconds, exit status, stderr)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    wall = time.perf_counter() - start
    return usage.ru_maxrss / 1024, wall, proc.returncode, text  # Linux: ru_maxrss in KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads in the child")
    parser.add_argument("--chunk_seconds", type=float, default=8.0)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--model", help="a checkpoint (default: the default-size model, random weights)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            torch.manual_seed(0)
            model = str(Path(tmp) / "default.pth")
            models.get("dprnn_tasnet")().save(model)
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        print(f"model {model if args.model else 'the default DPRNN-TasNet (random weights)'}; {args.threads} threads; "
              f"chunks of {args.chunk_seconds:g} s, overlap {args.overlap:g}", flush=True)  # fmt: skip
        print(f"{'minutes':>8} {'peak RSS MB':>12} {'wall s':>9} {'s / audio min':>14}", flush=True)
        for minutes in args.minutes:
            wav = Path(tmp) / f"{minutes:g}min.wav"
            sf.write(wav, speech_like(minutes), SR, subtype="PCM_16")
            cmd = [
                sys.executable, "-m", "dnnsep.bin.separate", str(wav), "--model", model,
                "--out_dir", str(Path(tmp) / "out"), "--overwrite", "--device", "cpu",
                "--chunk_seconds", str(args.chunk_seconds), "--overlap", str(args.overlap),
            ]  # fmt: skip
            peak, wall, code, err = run_child(cmd, env)
            if code != 0:
                print(err, file=sys.stderr)
                return code
            rows.append({"minutes": minutes, "peak_rss_mb": round(peak, 1), "wall_s": round(wall, 1)})
            print(f"{minutes:>8g} {peak:>12.0f} {wall:>9.1f} {wall / minutes:>14.1f}", flush=True)
            wav.unlink()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
