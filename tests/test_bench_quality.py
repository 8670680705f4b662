"""bench/bench_quality.py: its independent SI-SDRi, and a ``--tiny`` run end to end (slow)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import reference_si_sdr

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_quality.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_si_sdri_is_the_definitions_under_the_best_permutation():
    b = bench()
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((2, 4000))
    mixture = sources.sum(0)
    estimates = sources[::-1] + 0.1 * rng.standard_normal((2, 4000))  # swapped, slightly noisy
    expected = np.mean([reference_si_sdr(estimates[1 - j], sources[j]) - reference_si_sdr(mixture, sources[j])
                        for j in range(2)])  # fmt: skip
    assert b.si_sdri64(estimates, sources, mixture) == pytest.approx(expected, abs=1e-9)
    assert b.si_sdri64(np.stack([mixture, mixture]), sources, mixture) == pytest.approx(0.0, abs=1e-9)
    assert b.parse_arm("dm:dynamic_mixing=true,lr=1e-3,model.hidden=32") == (
        "dm", {"dynamic_mixing": True, "lr": 1e-3, "model.hidden": 32})  # fmt: skip
    assert b.interpolate([{"seconds": 10, "si_sdri": 2.0}, {"seconds": 20, "si_sdri": 4.0}], "seconds", 15) == 3.0


@pytest.mark.slow
def test_tiny_bench_runs_and_writes_its_curve(tmp_path):
    b = bench()
    assert b.main(["--tiny", "--out", str(tmp_path), "--asteroid", "auto"]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert "dnnsep" in results["summary"] and results["summary"]["dnnsep"]["steps"] > 0
    assert all(np.isfinite(p["si_sdri"]) for p in results["curves"]["dnnsep"])
    # every slice is also scored on the held-out engine's list: festival voices, none in training
    assert all(np.isfinite(p["si_sdri_held_out"]) for p in results["curves"]["dnnsep"])
    assert np.isfinite(results["summary"]["dnnsep"]["held_out_at_equal_time"]) and results["cpu"]["model"]
    speakers = (tmp_path / "held_out-corpus" / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    assert "| festival kal_diphone" in speakers and "espeak" not in speakers and "flite" not in speakers
    assert "festival" not in (tmp_path / "data-corpus" / "LibriSpeech" / "SPEAKERS.TXT").read_text()
    assert (tmp_path / "curve.png").stat().st_size > 5000
    assert results["asteroid"] == ("asteroid" in sys.modules or importlib.util.find_spec("asteroid") is not None)
