"""Objective evaluation on a mixture list: SI-SDR(i) always, SDR(i) with fast_bss_eval, PESQ/STOI if installed.

Per utterance, the estimates are matched to the references by permutation-invariant SI-SDR
(:func:`dnnsep.losses.pit_si_sdr`), and every score is the mean over sources:

- ``si_sdr``: SI-SDR of the estimates; ``si_sdri``: minus the SI-SDR of the mixture itself.
- ``sdr``/``sdri``: BSS-eval SDR (512-tap distortion filter, as ``mir_eval.separation``) computed by
  ``fast_bss_eval``, which picks its own best permutation, and its improvement over the mixture.
- ``pesq`` (wide band, 16 kHz; narrow band at 8 kHz) and ``stoi`` when ``pesq``/``pystoi`` are installed.

>>> import torch
>>> ref = torch.randn(2, 8000)  # (n_sources, time)
>>> scores = utterance_scores(ref.flip(0) + 0.01 * torch.randn(2, 8000), ref, ref.sum(0), sample_rate=8000)
>>> bool(scores["si_sdr"] > 30 and scores["si_sdri"] > 30)
True
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

import numpy as np
import torch

from ..losses import pit_si_sdr, reorder, si_sdr

BASE_COLUMNS = ("si_sdr", "si_sdri")


def optional_metrics() -> dict[str, Callable[..., float]]:
    """The extra metrics whose libraries are installed: ``{column: fn(ref (time,), est (time,), sample_rate)}``."""
    found: dict[str, Callable[..., float]] = {}
    if _module("fast_bss_eval"):
        found["sdr"] = found["sdri"] = _unused  # computed together in utterance_scores
    pesq = _module("pesq")
    if pesq is not None:
        found["pesq"] = lambda r, e, sr: float(pesq.pesq(sr, r, e, "wb" if sr == 16000 else "nb"))
    pystoi = _module("pystoi")
    if pystoi is not None:
        found["stoi"] = lambda r, e, sr: float(pystoi.stoi(r, e, sr, extended=False))
    return found


def columns(metrics: dict[str, Callable[..., float]]) -> tuple[str, ...]:
    return BASE_COLUMNS + tuple(metrics)


def utterance_scores(
    estimates: torch.Tensor,
    references: torch.Tensor,
    mixture: torch.Tensor,
    *,
    sample_rate: int,
    metrics: dict[str, Callable[..., float]] | None = None,
) -> dict[str, float]:
    """Scores of one separated utterance, each the mean over its sources (dB for SI-SDR and SDR).

    Shape: estimates (n_sources, time), references (n_sources, time), mixture (time,) -> {column: float}.
    """
    metrics = optional_metrics() if metrics is None else metrics
    est, ref, mix = (t.detach().to("cpu", torch.float64) for t in (estimates, references, mixture))
    pit = pit_si_sdr(est[None], ref[None])  # over (1, n_sources, time)
    baseline = si_sdr(mix.expand_as(ref), ref)  # (n_sources,) the mixture as every estimate
    ordered = reorder(est[None], pit.perm)[0]  # (n_sources, time) in reference order
    scores = {"si_sdr": pit.si_sdr.mean().item(), "si_sdri": (pit.si_sdr[0] - baseline).mean().item()}
    if "sdr" in metrics:
        import fast_bss_eval

        r, e, m = ref.numpy(), ordered.numpy(), np.broadcast_to(mix.numpy(), ref.shape)
        sdr = float(np.mean(fast_bss_eval.sdr(r, e)))
        scores.update(sdr=sdr, sdri=sdr - float(np.mean(fast_bss_eval.sdr(r, m))))
    for name, fn in metrics.items():
        if name in ("sdr", "sdri"):
            continue
        values = []
        for r, e in zip(ref.numpy(), ordered.numpy()):
            try:
                values.append(fn(r, e, sample_rate))
            except Exception:  # e.g. PESQ's "no utterance detected" on silence
                values.append(math.nan)
        scores[name] = float(np.mean(values))
    return scores


def summarize(rows: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    """Mean, standard deviation and count of the finite values of each column."""
    summary: dict[str, Any] = {"n_utterances": len(rows)}
    for name in names:
        values = np.array([row[name] for row in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[name] = {
            "mean": float(finite.mean()) if len(finite) else math.nan,
            "std": float(finite.std()) if len(finite) else math.nan,
            "n": int(len(finite)),
        }
    return summary


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # absent, or broken by an incompatible numpy
        return None


def _unused(*_: Any) -> float:
    return math.nan
