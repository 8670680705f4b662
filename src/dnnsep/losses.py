"""Training objective: scale-invariant SDR and utterance-level permutation-invariant training.

>>> import torch
>>> ref = torch.randn(4, 2, 8000)  # (batch, n_sources, time)
>>> est = ref.flip(1) + 0.1 * torch.randn(4, 2, 8000)  # the right sources, in the wrong order
>>> si_sdr(est, ref).shape  # per source, in the given order
torch.Size([4, 2])
>>> out = pit_si_sdr(est, ref)
>>> out.perm[0].tolist()  # estimate matched to each reference
[1, 0]
>>> bool(out.si_sdr.min() > 15), torch.equal(reorder(est, out.perm), est.flip(1))
(True, True)
"""

from __future__ import annotations

import itertools
from functools import cache
from typing import NamedTuple

import numpy as np
import torch

EXHAUSTIVE_MAX_SOURCES = 4  # above this, PIT uses the Hungarian algorithm (n! grows too fast)


def si_sdr(
    estimate: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8, threshold_db: float | None = None
) -> torch.Tensor:
    """Scale-invariant SDR in dB along the last axis, after removing each signal's mean.

    ``10 log10(|a s|^2 / |a s - e|^2)`` with ``a = <e, s> / |s|^2``; ``eps`` keeps a silent target or
    a silent estimate finite (it gives a low or zero score, never NaN).  Leading axes broadcast.
    Half-precision inputs (float16, bfloat16: a model run under autocast) are cast to float32 first,
    so the score is at least float32.

    ``threshold_db`` (a training objective, not a measure): the soft-thresholded
    ``10 log10(|a s|^2 / (|a s - e|^2 + tau |a s|^2))`` with ``tau = 10^(-threshold_db / 10)``,
    which never exceeds ``threshold_db``; its gradient is the plain one times
    ``1 / (1 + 10^((SI-SDR - threshold_db) / 10))``, so examples already far above the threshold stop
    pulling the model (half weight at the threshold, 1/11 at 10 dB above it).

    Shape: estimate (..., time), target (..., time) -> (...).
    """
    if estimate.shape[-1] != target.shape[-1]:
        raise ValueError(f"estimate and target differ in length: {tuple(estimate.shape)} vs {tuple(target.shape)}")
    estimate, target = _at_least_float32(estimate), _at_least_float32(target)
    estimate = estimate - estimate.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    scale = (estimate * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target  # (..., time)
    noise = estimate - projection
    signal_power, noise_power = projection.pow(2).sum(-1), noise.pow(2).sum(-1)
    if threshold_db is not None:
        noise_power = noise_power + 10 ** (-threshold_db / 10) * signal_power
    return 10 * torch.log10((signal_power + eps) / (noise_power + eps))


def pairwise_si_sdr(
    estimates: torch.Tensor, targets: torch.Tensor, *, eps: float = 1e-8, threshold_db: float | None = None
) -> torch.Tensor:
    """SI-SDR of every estimate against every target: n^2 evaluations, each once (``threshold_db``: see :func:`si_sdr`).

    Shape: estimates (batch, n, time), targets (batch, n, time) -> (batch, n_estimates, n_targets).
    """
    _check_sources(estimates, targets)
    return si_sdr(estimates.unsqueeze(2), targets.unsqueeze(1), eps=eps, threshold_db=threshold_db)  # (b, n, 1|n, time)


class PITResult(NamedTuple):
    """``loss``: mean negative SI-SDR under the best permutation (a scalar to minimise);
    ``si_sdr``: (batch, n) SI-SDR of each target's matched estimate; ``perm``: (batch, n) long,
    ``perm[b, j]`` is the estimate matched to target ``j``."""

    loss: torch.Tensor
    si_sdr: torch.Tensor
    perm: torch.Tensor


def pit_si_sdr(
    estimates: torch.Tensor, targets: torch.Tensor, *, eps: float = 1e-8, threshold_db: float | None = None
) -> PITResult:
    """Utterance-level PIT with negative SI-SDR; exhaustive for n <= 4 sources, Hungarian beyond.

    ``threshold_db`` makes the scores (and the loss) the soft-thresholded SI-SDR of :func:`si_sdr`.

    Shape: estimates (batch, n, time), targets (batch, n, time) -> PITResult (see its doc).
    """
    scores = pairwise_si_sdr(estimates, targets, eps=eps, threshold_db=threshold_db)  # (batch, n_est, n_tgt)
    perm = best_permutation(scores.detach())
    matched = scores.gather(1, perm.unsqueeze(1)).squeeze(1)  # (batch, n): scores[b, perm[b, j], j]
    return PITResult(loss=-matched.mean(), si_sdr=matched, perm=perm)


def best_permutation(scores: torch.Tensor, *, method: str = "auto") -> torch.Tensor:
    """The assignment of estimates to targets that maximises the summed score.

    ``method`` is ``'exhaustive'`` (all n! permutations at once, vectorised), ``'hungarian'``, or
    ``'auto'`` (exhaustive up to :data:`EXHAUSTIVE_MAX_SOURCES` sources).

    Shape: scores (batch, n_est, n_tgt) -> perm (batch, n_tgt), long, on the scores' device.
    """
    if scores.dim() != 3 or scores.shape[1] != scores.shape[2]:
        raise ValueError(f"scores must be (batch, n, n), got shape {tuple(scores.shape)}")
    n = scores.shape[-1]
    if method == "auto":
        method = "exhaustive" if n <= EXHAUSTIVE_MAX_SOURCES else "hungarian"
    if method == "exhaustive":
        perms, columns = _permutations(n, scores.device)  # (n!, n), (n,)
        totals = scores[:, perms, columns].sum(-1)  # (batch, n!)
        return perms[totals.argmax(-1)]
    if method == "hungarian":
        cost = -scores.to(torch.float64).cpu().numpy()
        return torch.as_tensor(np.stack([hungarian(c) for c in cost]), device=scores.device)
    raise ValueError(f"method must be 'auto', 'exhaustive' or 'hungarian', got {method!r}")


def reorder(estimates: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Put estimates in target order: ``out[b, j] = estimates[b, perm[b, j]]``.

    Shape: estimates (batch, n, time), perm (batch, n) -> (batch, n, time).
    """
    if perm.shape != estimates.shape[:2]:
        raise ValueError(f"perm {tuple(perm.shape)} does not match estimates {tuple(estimates.shape)}")
    return estimates.gather(1, perm.unsqueeze(-1).expand_as(estimates))


def hungarian(cost: np.ndarray) -> np.ndarray:
    """Minimum-cost assignment of a square matrix (shortest augmenting paths, O(n^3)).

    Returns ``rows`` with ``rows[j]`` the row assigned to column ``j``.

    >>> hungarian(np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])).tolist()
    [1, 0, 2]
    """
    n = cost.shape[0]
    u, v = np.zeros(n + 1), np.zeros(n + 1)  # potentials of rows and columns (1-based, 0 = virtual)
    row_of = np.zeros(n + 1, dtype=np.int64)  # row_of[j]: row matched to column j (0 = none)
    for i in range(1, n + 1):
        row_of[0], j0 = i, 0
        dist = np.full(n + 1, np.inf)
        prev = np.zeros(n + 1, dtype=np.int64)
        used = np.zeros(n + 1, dtype=bool)
        while row_of[j0] != 0:  # grow a shortest-path tree until a free column is reached
            used[j0] = True
            i0 = row_of[j0]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (reduced < dist[1:])
            dist[1:][better], prev[1:][better] = reduced[better], j0
            j1 = 1 + int(np.argmin(np.where(free, dist[1:], np.inf)))
            delta = dist[j1]
            u[row_of[used]] += delta
            v[used] -= delta
            dist[1:][free] -= delta
            j0 = j1
        while j0:  # augment along the path
            j1 = prev[j0]
            row_of[j0] = row_of[j1]
            j0 = j1
    return row_of[1:] - 1


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@cache
def _permutations(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Every permutation of ``range(n)`` and ``range(n)`` itself, on ``device``: made once per device, since
    a copy from the host waits for a GPU (one host sync per loss otherwise).  Shape: (n!, n), (n,)."""
    perms = torch.tensor(list(itertools.permutations(range(n))), dtype=torch.long).view(-1, n)
    return perms.to(device), torch.arange(n, device=device)


def _check_sources(estimates: torch.Tensor, targets: torch.Tensor) -> None:
    if estimates.dim() != 3 or estimates.shape != targets.shape or estimates.shape[1] < 1:
        raise ValueError(
            "estimates and targets must both be (batch, n_sources, time) with n_sources >= 1, "
            f"got {tuple(estimates.shape)} and {tuple(targets.shape)}"
        )
