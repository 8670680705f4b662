"""The streaming and live benchmarks run (so they do not rot), and streaming still equals offline there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_live_latency_bench_plays_every_captured_sample_in_order():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_live_latency.py"), "--seconds", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "aligned at lag 0 samples" in done.stdout and "end to end on a device" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dprnn_tasnet", "conv_tasnet_small"])
def test_streaming_bench_runs_and_matches_the_offline_pass(model):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_streaming.py"), "--model", model,
                           "--seconds", "1", "--blocks_ms", "20", "--threads", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    row = [line.split() for line in done.stdout.splitlines() if line.split()[:2] == ["1", "20"]]
    assert row and float(row[0][-1]) < 1e-4, done.stdout  # max |diff| against the offline pass
    floor = [line for line in done.stdout.splitlines() if "LSTM calls alone" in line]
    assert len(floor) == (model == "dprnn_tasnet"), done.stdout  # the batch-1 floor: DPRNN only
