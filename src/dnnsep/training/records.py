"""What an experiment directory records besides checkpoints: environment, log, loss table and plot.

All files are written atomically, so an interrupted run never leaves a half-written one.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from .. import __version__
from ..checkpoint import atomic_write

HISTORY_KEYS = ("train_loss", "valid_loss", "valid_si_sdri", "lr", "seconds")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def git_commit() -> dict[str, Any]:
    """The dnnsep checkout's commit and whether it has local changes (``unknown`` outside git)."""
    root = Path(__file__).resolve().parents[3]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit or "unknown", "dirty": bool(status) if status is not None else None}


def environment(device: torch.device, world_size: int) -> dict[str, Any]:
    """Versions and machine facts worth keeping beside a model (plain values)."""
    versions = {"dnnsep": __version__, "python": platform.python_version(), "torch": str(torch.__version__)}
    for name in ("numpy", "soundfile", "PyYAML", "tqdm", "matplotlib", "fast_bss_eval", "pesq", "pystoi"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:  # an optional library that is not installed
            pass
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": command_line(),
        "cwd": os.getcwd(),
        "git": git_commit(),
        "versions": versions,
        "platform": platform.platform(),
        "device": str(device),
        "world_size": world_size,
    }
    if device.type == "cuda":
        env["cuda"] = {"version": torch.version.cuda, "gpu": torch.cuda.get_device_name(device)}
    return env


def command_line() -> str:
    """The command that started this process, as one that runs again (from the same directory).

    ``python -m dnnsep.bin.train ...`` rather than the path of ``train.py`` (which does not run as a
    script: its imports are relative); the recipe front that started it, if any, is noted.
    """
    argv = list(sys.argv)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name.startswith("dnnsep."):
        argv = ["-m", spec.name, *argv[1:]]
    text = shlex.join([os.path.basename(sys.executable), *argv])
    front = os.environ.get("DNNSEP_PROG")
    return f"{text}  # via {front}" if front else text


def write_environment(path: str | os.PathLike, env: dict[str, Any]) -> None:
    write_text(path, yaml.safe_dump(env, sort_keys=False))


class _TqdmHandler(logging.StreamHandler):
    """Log lines that do not break a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def make_logger(log_file: str | os.PathLike | None, *, name: str = "dnnsep.train") -> logging.Logger:
    """A logger to stderr (and appended to ``log_file``); ``log_file=None`` for non-main processes."""
    logger = logging.getLogger(f"{name}.{id(object())}")  # one per run: tests run several in a process
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if log_file is None:
        logger.addHandler(logging.NullHandler())
        return logger
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(to_file)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def write_history_csv(path: str | os.PathLike, history: dict[str, list[float]]) -> None:
    """``epoch,train_loss,valid_loss,valid_si_sdri,lr,seconds``, one row per finished epoch."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *HISTORY_KEYS])
    for i in range(len(history["train_loss"])):
        writer.writerow([i + 1, *(f"{history[k][i]:.6g}" for k in HISTORY_KEYS)])
    write_text(path, out.getvalue())


_warned_no_matplotlib = False


def plot_history(
    path: str | os.PathLike,
    history: dict[str, list[float]],
    *,
    title: str = "",
    events: dict[int, str] | None = None,
    logger: logging.Logger | None = None,
) -> bool:
    """Draw train/valid loss per epoch into a PNG, marking ``events`` ({epoch: 'lr halved' ...}).

    Returns False (after one log message) when matplotlib is not installed.  Uses matplotlib's
    object API, not pyplot, so it touches no global state (a notebook's backend is left alone).
    """
    global _warned_no_matplotlib
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        if not _warned_no_matplotlib and logger is not None:
            logger.info(
                "matplotlib is not installed, so no loss/loss.png (pip install matplotlib); "
                "the numbers are in loss/loss.csv"
            )
        _warned_no_matplotlib = True
        return False
    epochs = list(range(1, len(history["train_loss"]) + 1))
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(epochs, history["train_loss"], marker=".", label="train")
    ax.plot(epochs, history["valid_loss"], marker=".", label="valid")
    finite = [(v, e) for e, v in zip(epochs, history["valid_loss"]) if math.isfinite(v)]
    if finite:  # the best epoch: the model in best.pth
        best, best_epoch = min(finite)
        ax.plot([best_epoch], [best], marker="*", markersize=14, color="C1", linestyle="none",
                label=f"best: epoch {best_epoch} ({best:.2f})")  # fmt: skip
    for epoch, label in sorted((events or {}).items()):
        ax.axvline(epoch, color="grey", linestyle=":", linewidth=1)
        ax.annotate(
            label,
            (epoch, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(-2, 0),
            textcoords="offset points",
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="grey",
            annotation_clip=True,
        )
    ax.set_xlim(0.5, max(len(epochs), 1) + 0.5)  # room on both sides, so labels stay inside the frame
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (negative SI-SDR, dB)")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return True
