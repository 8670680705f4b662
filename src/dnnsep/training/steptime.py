"""Where a training step's time goes: data wait, forward, backward, optimizer (opt-in).

``DNNSEP_PROFILE_STEPS=N`` times the first ``N`` steps of every epoch and the trainer logs one line
at the epoch's end.  On CUDA each phase boundary then calls ``torch.cuda.synchronize`` (otherwise
the timers would measure kernel launches, not kernels), which slows those steps a little; without
the variable no timer runs and nothing synchronises.

>>> t = StepTimes(2, torch.device("cpu"))
>>> for _ in range(3):
...     t.start()
...     for phase in PHASES:
...         t.mark(phase)
>>> t.steps, t.active
(2, False)
>>> t.summary().startswith("step time over 2 step(s): data ")
True
"""

from __future__ import annotations

import os
import time

import torch

from ..errors import DnnsepError

ENV = "DNNSEP_PROFILE_STEPS"
PHASES = ("data", "forward", "backward", "optimizer")  # data: waiting for the loader and the copy to the device


def profile_steps() -> int:
    """``DNNSEP_PROFILE_STEPS`` as a number of steps (0 when unset)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return 0
    try:
        steps = int(value)
    except ValueError:
        steps = -1
    if steps < 0:
        raise DnnsepError(f"{ENV}={value!r}: expected a number of steps (0 or more)")
    return steps


class StepTimes:
    """Seconds per phase summed over the first ``limit`` steps after :meth:`reset`.

    :meth:`start` opens a step (the data wait begins), :meth:`mark` closes the phase just run; a step
    counts once its optimizer phase is marked (a skipped step, non-finite, is left out).
    """

    def __init__(self, limit: int, device: torch.device):
        self.limit, self.device = limit, device
        self.reset()

    def reset(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.steps = 0
        self._last: float | None = None
        self._step: dict[str, float] = {}

    @property
    def active(self) -> bool:
        return self.steps < self.limit

    def start(self) -> None:
        self._last = self._now() if self.active else None
        self._step = {}

    def mark(self, phase: str) -> None:
        if self._last is None:
            return
        now = self._now()
        self._step[phase] = self._step.get(phase, 0.0) + now - self._last
        self._last = now
        if phase == PHASES[-1]:
            for k, v in self._step.items():
                self.seconds[k] += v
            self.steps += 1
            self._last = None

    def summary(self) -> str:
        n = max(self.steps, 1)
        parts = ", ".join(f"{k} {1000 * v / n:.1f}" for k, v in self.seconds.items())
        total = 1000 * sum(self.seconds.values()) / n
        sync = " (CUDA synchronised at each phase)" if self.device.type == "cuda" else ""
        return f"step time over {self.steps} step(s): {parts} ms; {total:.1f} ms/step{sync}"

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()
