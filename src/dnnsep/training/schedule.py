"""The learning rate of each optimizer step: plateau halvings, a linear warm-up, and a cosine schedule
over the epochs or over a time budget.
"""

from __future__ import annotations

import math

from .config import TrainConfig


def learning_rate(cfg: TrainConfig, step: int, *, halvings: int, total_steps: int, budget_done: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based, over all epochs).

    ``lr`` times ``lr_factor`` per plateau halving so far (``halvings``), times ``(step + 1) /
    warmup_steps`` during the warm-up, times ``(1 + cos(pi * x)) / 2`` with the cosine schedule, where
    ``x`` is the fraction of the schedule done: ``step / total_steps`` (``lr_clock: steps``), or the
    fraction of the ``max_minutes`` budget spent, ``budget_done`` (``lr_clock: time``; the warm-up stays
    counted in steps: it steadies Adam's first updates, a matter of steps whatever the machine's speed).

    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(lr=1e-3, lr_factor=0.5, warmup_steps=10, lr_schedule="cosine", lr_clock="steps")
    >>> [round(learning_rate(cfg, s, halvings=0, total_steps=100, budget_done=0) * 1e3, 4) for s in (0, 9, 50, 100)]
    [0.1, 0.9801, 0.5, 0.0]
    """
    lr = cfg.lr * cfg.lr_factor**halvings
    if cfg.warmup_steps and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        done = budget_done if cfg.lr_clock == "time" else min(step, total_steps) / total_steps
        lr *= 0.5 * (1 + math.cos(math.pi * done))
    return lr
