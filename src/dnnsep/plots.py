"""Pictures for people: spectrograms of a mixture and its estimates (matplotlib, the ``[plot]`` extra)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from .checkpoint import atomic_write


def plot_spectrograms(path: str | os.PathLike, signals: dict[str, np.ndarray], sample_rate: int) -> str | None:
    """One spectrogram panel per signal, all on one colour scale (dB, 80 dB range); atomic write.

    Returns None, or a message saying why nothing was drawn (matplotlib missing).
    Shape: each signal (time,).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed, so no spectrograms.png: pip install 'dnnsep[plot]'"
    n_fft = 2 ** round(math.log2(0.032 * sample_rate))  # about 32 ms
    window = torch.hann_window(n_fft)
    specs = {}
    for title, x in signals.items():
        stft = torch.stft(
            torch.from_numpy(np.ascontiguousarray(x)), n_fft, n_fft // 4, window=window, return_complex=True
        )
        specs[title] = (20 * torch.log10(stft.abs() + 1e-8)).numpy()  # (freqs, frames)
    top = max(float(s.max()) for s in specs.values())
    seconds = len(next(iter(signals.values()))) / sample_rate
    fig = Figure(figsize=(8, 1.9 * len(specs) + 0.6), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(specs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, spec) in zip(axes, specs.items()):
        image = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sample_rate / 2000),
        )
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(image, ax=list(axes), label="dB")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return None
