"""Dual-Path RNN TasNet: learned encoder -> dual-path RNN masks -> learned decoder.

>>> import torch
>>> model = DPRNNTasNet(DPRNNConfig(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1))
>>> model(torch.randn(3, 799)).shape  # (batch, time) -> (batch, n_sources, time)
torch.Size([3, 2, 799])
>>> model.separate(torch.randn(799)).shape  # (time,) -> (n_sources, time)
torch.Size([2, 799])
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..dual_path import MASKS, DualPathSeparator
from ..errors import CheckpointError
from ..filterbanks import Decoder, Encoder, pad_signal
from ..norms import NORMS


@dataclass(frozen=True)
class DPRNNConfig:
    """Hyper-parameters of :class:`DPRNNTasNet`; the defaults are the seed recipe's.

    ``stride`` defaults to ``kernel_size // 2``, ``bottleneck`` to ``n_filters`` and ``norm`` to
    ``'cln'`` when ``causal`` else ``'gln'``.  A causal model (``causal=True``) has an algorithmic
    latency of ``chunk_size * stride + kernel_size`` samples (see :attr:`latency`).
    """

    n_filters: int = 64  # N: encoder filters
    kernel_size: int = 16  # L: encoder window, in samples
    stride: int | None = None  # encoder hop, in samples
    bottleneck: int | None = None  # F: channels inside the separator
    hidden: int = 256  # H: LSTM units per layer, both directions together
    chunk_size: int = 100  # K: frames per chunk
    hop_size: int = 50  # P: frames between chunk starts
    n_blocks: int = 3  # B: dual-path blocks
    n_sources: int = 2
    mask: str = "sigmoid"  # sigmoid | relu | softmax (across sources)
    norm: str | None = None  # gln | cln
    causal: bool = False
    encoder_activation: str = "relu"  # relu | linear
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        if self.stride is None:
            fix("stride", self.kernel_size // 2)
        if self.bottleneck is None:
            fix("bottleneck", self.n_filters)
        if self.norm is None:
            fix("norm", "cln" if self.causal else "gln")
        self._validate()

    def _validate(self) -> None:
        for name in (
            "n_filters",
            "kernel_size",
            "stride",
            "bottleneck",
            "hidden",
            "chunk_size",
            "hop_size",
            "n_blocks",
            "n_sources",
            "sample_rate",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        checks = [
            ("kernel_size", self.kernel_size >= 2, "must be at least 2"),
            ("stride", 1 <= self.stride <= self.kernel_size, f"must be in 1..kernel_size ({self.kernel_size})"),
            ("n_filters", self.n_filters >= 1, "must be at least 1"),
            ("bottleneck", self.bottleneck >= 1, "must be at least 1"),
            (
                "hidden",
                self.hidden >= 2 and (self.causal or self.hidden % 2 == 0),
                "must be an even number >= 2 (it is split between the two LSTM directions)",
            ),
            ("chunk_size", self.chunk_size >= 2, "must be at least 2"),
            ("hop_size", 1 <= self.hop_size <= self.chunk_size, f"must be in 1..chunk_size ({self.chunk_size})"),
            (
                "hop_size",
                self.chunk_size % self.hop_size == 0,
                f"must divide chunk_size ({self.chunk_size}) so every frame is in the same number of chunks",
            ),
            ("n_blocks", self.n_blocks >= 1, "must be at least 1"),
            ("n_sources", self.n_sources >= 1, "must be at least 1"),
            ("mask", self.mask in MASKS, f"must be one of {MASKS}"),
            ("norm", self.norm in NORMS, f"must be one of {NORMS}"),
            ("norm", not (self.causal and self.norm == "gln"), "'gln' looks ahead; a causal model needs 'cln'"),
            ("causal", isinstance(self.causal, bool), "must be true or false"),
            ("encoder_activation", self.encoder_activation in ("relu", "linear"), "must be 'relu' or 'linear'"),
            ("sample_rate", self.sample_rate >= 1, "must be positive"),
        ]
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"invalid {name}={getattr(self, name)!r}: {what}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DPRNNConfig:
        """Build from plain values, refusing unknown keys (a misspelt option is an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (ints, strings, bools), safe for ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @property
    def latency(self) -> int:
        """Samples of look-ahead of a causal model: one chunk of frames plus one window."""
        return self.chunk_size * self.stride + self.kernel_size


class DPRNNTasNet(nn.Module):
    """Dual-Path RNN TasNet.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time), for any time >= 1.
    """

    model_name = "DPRNNTasNet"

    def __init__(self, config: DPRNNConfig | None = None):
        super().__init__()
        self.config = config = config or DPRNNConfig()
        self.encoder = Encoder(
            n_filters=config.n_filters,
            kernel_size=config.kernel_size,
            stride=config.stride,
            activation=config.encoder_activation,
        )
        self.separator = DualPathSeparator(
            in_channels=config.n_filters,
            bottleneck=config.bottleneck,
            hidden=config.hidden,
            chunk_size=config.chunk_size,
            hop_size=config.hop_size,
            n_blocks=config.n_blocks,
            n_sources=config.n_sources,
            mask=config.mask,
            norm=config.norm,
            causal=config.causal,
        )
        self.decoder = Decoder(n_filters=config.n_filters, kernel_size=config.kernel_size, stride=config.stride)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        if mixture.dim() != 2 or mixture.shape[-1] < 1:
            raise ValueError(f"mixture must be (batch, time) with time >= 1, got shape {tuple(mixture.shape)}")
        batch, time = mixture.shape
        padded, front = pad_signal(mixture, kernel_size=self.config.kernel_size, stride=self.config.stride)
        w = self.encoder(padded)  # (batch, n_filters, frames)
        masks = self.separator(w)  # (batch, n_sources, n_filters, frames)
        masked = (masks * w.unsqueeze(1)).flatten(0, 1)  # (batch * n_sources, n_filters, frames)
        out = self.decoder(masked)  # (batch * n_sources, padded time)
        return out[:, front : front + time].reshape(batch, self.config.n_sources, time)

    def separate(self, mixture: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Separate one mixture ``(time,)`` or a batch ``(batch, time)`` in inference mode.

        Runs on the model's device; returns the same kind (tensor or numpy array) as given, a
        tensor on the input's device.  Mode (train/eval) is left as it is.

        Shape: (time,) -> (n_sources, time); (batch, time) -> (batch, n_sources, time).
        """
        is_numpy = isinstance(mixture, np.ndarray)
        x = torch.from_numpy(np.asarray(mixture, dtype=np.float32)) if is_numpy else mixture
        if x.dim() not in (1, 2):
            raise ValueError(f"mixture must be (time,) or (batch, time), got shape {tuple(x.shape)}")
        with torch.inference_mode():
            y = self(x.reshape(-1, x.shape[-1]).to(self.device, torch.float32))  # (batch, n_sources, time)
        y = y[0] if x.dim() == 1 else y
        return y.cpu().numpy() if is_numpy else y.to(x.device)

    # -- checkpoints: {model_name, model_args, state_dict}, plain values only ------------------------

    def checkpoint(self) -> dict[str, Any]:
        """What :meth:`from_checkpoint` needs: the model's name, config and weights."""
        return {"model_name": self.model_name, "model_args": self.config.to_dict(), "state_dict": self.state_dict()}

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`checkpoint` to ``path`` atomically (a temporary file, then a rename)."""
        save_checkpoint(self.checkpoint(), path)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> DPRNNTasNet:
        """Rebuild a model saved by :meth:`save` (or a training checkpoint holding the same keys)."""
        ckpt = load_checkpoint(path, map_location=map_location)
        return cls.from_checkpoint_dict(ckpt, source=str(path))

    @classmethod
    def from_checkpoint_dict(cls, ckpt: dict[str, Any], *, source: str = "checkpoint") -> DPRNNTasNet:
        """Rebuild from an already loaded checkpoint dict; errors name ``source``."""
        name = ckpt.get("model_name")
        if name != cls.model_name or not isinstance(ckpt.get("model_args"), dict) or "state_dict" not in ckpt:
            what = f"a {name!r} model" if name else "no dnnsep model"
            raise CheckpointError(f"{source}: holds {what}, expected a {cls.model_name!r} checkpoint")
        try:
            model = cls(DPRNNConfig.from_dict(ckpt["model_args"]))
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: invalid model config: {err}") from None
        problems = _state_dict_mismatch(model.state_dict(), ckpt["state_dict"])
        if problems:
            raise CheckpointError(f"{source}: weights do not match its config ({problems})")
        model.load_state_dict(ckpt["state_dict"])
        return model


def _state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """Describe missing, unexpected and mis-shaped entries in one short phrase ('' if none)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {tuple(found[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and (not isinstance(found[k], torch.Tensor) or found[k].shape != v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)
