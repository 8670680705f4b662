"""What many test files share: tiny configs of every registered model, and a float64 SI-SDR."""

from __future__ import annotations

import numpy as np

# Tiny options of each registered model (a test asserts every registered model has an entry).
TINY_MODELS = {
    "dprnn_tasnet": dict(n_filters=8, kernel_size=4, hidden=8, chunk_size=10, hop_size=5, n_blocks=1),
    "conv_tasnet": dict(
        n_filters=8, kernel_size=4, bottleneck=8, hidden=16, conv_kernel=3, n_layers=2, n_repeats=1, skip_channels=8
    ),
}

# For each model, another valid value of every option (a test asserts each changes the network and the
# experiment directory).  n_sources and sample_rate are the data's, set at the top level of a config.
OTHER_VALUES = {
    "dprnn_tasnet": dict(
        n_filters=12,
        kernel_size=8,
        stride=1,
        bottleneck=6,
        hidden=12,
        chunk_size=20,
        hop_size=10,
        n_blocks=2,
        mask="relu",
        norm="cln",
        causal=True,
        encoder_activation="linear",
    ),  # fmt: skip
    "conv_tasnet": dict(
        n_filters=12,
        kernel_size=8,
        stride=1,
        bottleneck=6,
        hidden=12,
        conv_kernel=5,
        n_layers=3,
        n_repeats=2,
        skip_channels=6,
        mask="relu",
        norm="cln",
        causal=True,
        encoder_activation="linear",
    ),  # fmt: skip
}


def reference_si_sdr(estimate: np.ndarray, target: np.ndarray) -> float:
    """SI-SDR in dB, in float64, from its definition (zero-mean signals, scaled target)."""
    estimate = np.asarray(estimate, np.float64) - np.mean(estimate)
    target = np.asarray(target, np.float64) - np.mean(target)
    scaled = np.dot(estimate, target) / np.dot(target, target) * target
    return float(10 * np.log10(np.sum(scaled**2) / np.sum((estimate - scaled) ** 2)))
