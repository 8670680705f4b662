"""bench/bench_live_latency.py runs (so it does not rot) and finds the played stream aligned with the capture."""

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
