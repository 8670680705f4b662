"""Evaluation: scores against independent formulas, and the evaluate CLI on a tiny prepared corpus."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from dnnsep.bin import evaluate, prepare
from dnnsep.data.synthetic import make_corpus
from dnnsep.errors import CheckpointError, DnnsepError
from dnnsep.models import DPRNNConfig, DPRNNTasNet
from dnnsep.training.evaluation import optional_metrics, summarize, utterance_scores

TINY_MODEL = DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1)


def si_sdr_np(est: np.ndarray, ref: np.ndarray) -> float:
    est, ref = est - est.mean(), ref - ref.mean()
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


def bss_sdr_np(est: np.ndarray, ref: np.ndarray, taps: int = 512) -> float:
    """BSS-eval v3 SDR (as mir_eval.separation): project the zero-padded estimate on the reference's delays."""
    n = len(ref) + taps - 1
    delays = np.stack([np.concatenate([np.zeros(d), ref, np.zeros(taps - 1 - d)]) for d in range(taps)], 1)
    padded = np.concatenate([est, np.zeros(taps - 1)])
    coef = np.linalg.solve(delays.T @ delays, delays.T @ padded)  # normal equations
    target = delays @ coef
    assert target.shape == (n,)
    return 10 * np.log10((target @ target) / ((padded - target) @ (padded - target)))


def test_scores_match_independent_formulas_in_reference_order():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 2000))
    mixture = ref.sum(0)
    est = np.stack([ref[1] + 0.3 * rng.standard_normal(2000), 0.5 * ref[0] + 0.2 * ref[1]])  # swapped order
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    scores = utterance_scores(t(est), t(ref), t(mixture), sample_rate=16000, metrics=optional_metrics())
    expect = np.mean([si_sdr_np(est[1], ref[0]), si_sdr_np(est[0], ref[1])])
    baseline = np.mean([si_sdr_np(mixture, ref[0]), si_sdr_np(mixture, ref[1])])
    assert scores["si_sdr"] == pytest.approx(expect, abs=1e-3)
    assert scores["si_sdri"] == pytest.approx(expect - baseline, abs=1e-3)
    sdr = np.mean([bss_sdr_np(est[1], ref[0]), bss_sdr_np(est[0], ref[1])])
    sdr_mix = np.mean([bss_sdr_np(mixture, ref[0]), bss_sdr_np(mixture, ref[1])])
    assert scores["sdr"] == pytest.approx(sdr, abs=0.05)
    assert scores["sdri"] == pytest.approx(sdr - sdr_mix, abs=0.05)


def test_summary_ignores_non_finite_values():
    rows = [{"si_sdr": 1.0}, {"si_sdr": 3.0}, {"si_sdr": math.nan}]
    summary = summarize(rows, ("si_sdr",))
    assert summary["n_utterances"] == 3 and summary["si_sdr"] == {"mean": 2.0, "std": 1.0, "n": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    make_corpus(base / "corpus", subsets=("dev-clean",), n_speakers=3, utts_per_speaker=2, seconds=(1.0, 1.5))
    args = [str(base / "data"), "2", "--librispeech_root", str(base / "corpus"), "--no_progress"]
    args += ["--subsets", "dev-clean", "dev-clean", "dev-clean", "--segment", "0.5", "--eval_segment", "full"]
    assert prepare.main([*args, "--n_test", "3"]) == 0
    return base / "data"


def test_evaluate_writes_csv_summary_and_examples(dataset, tmp_path, capsys):
    torch.manual_seed(0)
    model = DPRNNTasNet(TINY_MODEL)
    path = tmp_path / "exp" / "model" / "best.pth"
    path.parent.mkdir(parents=True)
    torch.save({**model.checkpoint(), "train_config": {"dataset_dir": str(dataset)}}, path)
    assert evaluate.main([str(path), "--n_examples", "2", "--device", "cpu"]) == 0
    out = tmp_path / "exp" / "eval" / "test-best"
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "id",
        "seconds",
        "si_sdr",
        "si_sdri",
        "sdr",
        "sdri",
        *(k for k in ("pesq", "stoi") if k in optional_metrics()),
    ]
    assert len(rows) == 3 and all(math.isfinite(float(r["si_sdri"])) for r in rows)
    assert len({r["seconds"] for r in rows}) > 1  # full-length utterances, each its own length
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_utterances"] == 3
    assert summary["si_sdri"]["mean"] == pytest.approx(np.mean([float(r["si_sdri"]) for r in rows]), abs=1e-3)
    examples = sorted(p.name for p in (out / "examples").iterdir())
    assert examples == sorted(r["id"] for r in rows[:2])
    wavs = sorted(p.name for p in (out / "examples" / examples[0]).iterdir())
    assert wavs == ["mixture.wav", "s1.wav", "s1_ref.wav", "s2.wav", "s2_ref.wav"]
    info = sf.info(str(out / "examples" / examples[0] / "s1.wav"))
    assert info.samplerate == 16000 and info.subtype == "PCM_16"
    assert "SI-SDRi" in capsys.readouterr().out


def test_evaluate_errors_are_one_line(dataset, tmp_path):
    path = tmp_path / "m.pth"
    DPRNNTasNet(TINY_MODEL).save(path)  # no train_config inside
    with pytest.raises(DnnsepError, match="does not say which data it was trained on; pass --dataset_dir"):
        evaluate.main([str(path)])
    with pytest.raises(DnnsepError, match="no such mixture list"):
        evaluate.main([str(path), "--dataset_dir", str(tmp_path)])
    with pytest.raises(CheckpointError, match=r"missing.pth: no such model file or folder \(--model\)"):
        evaluate.main([str(tmp_path / "missing.pth"), "--dataset_dir", str(dataset)])
