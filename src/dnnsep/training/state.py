"""Small pieces of training state that must survive a restart: the plateau schedule and RNG states.

>>> plateau = Plateau(lr_patience=3, stop_patience=5)
>>> [plateau.step(v) for v in [5.0, 4.0, 4.5, 4.2, 4.1, 3.9, 4.0, 4.0, 4.0, 4.0, 4.0]]  # doctest: +NORMALIZE_WHITESPACE
['improved', 'improved', 'wait', 'wait', 'halve', 'improved', 'wait', 'wait', 'halve', 'wait', 'stop']
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch


class Plateau:
    """Validation-loss bookkeeping: halve the learning rate after ``lr_patience`` epochs without
    improvement (again after each further ``lr_patience``), stop after ``stop_patience``.

    A patience of 0 disables that action.  Improvement means strictly below the best loss so far;
    a non-finite loss never improves.
    """

    def __init__(self, *, lr_patience: int, stop_patience: int):
        self.lr_patience, self.stop_patience = lr_patience, stop_patience
        self.best = math.inf
        self.best_epoch = 0  # 1-based epoch of the best loss (0: none yet)
        self.bad_epochs = 0  # epochs since the best loss
        self.epochs = 0  # epochs seen

    def step(self, valid_loss: float) -> str:
        """Record one epoch's validation loss; return 'improved', 'wait', 'halve' or 'stop'."""
        self.epochs += 1
        if math.isfinite(valid_loss) and valid_loss < self.best:
            self.best, self.best_epoch, self.bad_epochs = valid_loss, self.epochs, 0
            return "improved"
        self.bad_epochs += 1
        if self.stop_patience and self.bad_epochs >= self.stop_patience:
            return "stop"
        if self.lr_patience and self.bad_epochs % self.lr_patience == 0:
            return "halve"
        return "wait"

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "epochs": self.epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.bad_epochs, self.epochs = int(state["bad_epochs"]), int(state["epochs"])


def rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (CPU and every CUDA device), as plain values.

    >>> state = rng_state(); a = (random.random(), np.random.rand(), torch.rand(1).item())
    >>> set_rng_state(state); a == (random.random(), np.random.rand(), torch.rand(1).item())
    True
    """
    _, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA states only where CUDA is available)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
