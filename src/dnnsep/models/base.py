"""What every encoder -> masker -> decoder model shares: its config's plumbing, wiring and checkpoints.

A model file holds a config dataclass (a :class:`ModelConfig`) and a :class:`MaskingModel` subclass
that builds its own masker (``make_separator``); everything else lives here:

- the forward wiring: pad, encode, estimate one mask per source, apply, decode, crop to the input
  (or, with ``signal_padding='none'``, asteroid's: encode the input as it is, pad the end with zeros);
- :meth:`MaskingModel.separate` for numpy arrays or tensors;
- checkpoints ``{model_name, model_args, state_dict}`` of plain values, which load under
  ``torch.load(..., weights_only=True)``, with the config's sizes checked against the weights'
  shapes before any tensor of the model is allocated;
- the model's part of the experiment directory's name (:meth:`ModelConfig.dir_names`).

The registry (:func:`dnnsep.models.get`, :func:`dnnsep.models.load`) finds a class by its name.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from .filterbanks import ENCODER_ACTIVATIONS, SIGNAL_PADDINGS, Decoder, Encoder, pad_signal

# Options the data decide, not the model's section of the config: the trainer passes them in.
DATA_OPTIONS = ("n_sources", "sample_rate")
MASKS = ("sigmoid", "relu", "softmax")  # a masker's non-linearity (softmax: across sources)


def masks_from_scores(scores: torch.Tensor, kind: str) -> torch.Tensor:
    """A masker's last step: sigmoid, relu, or softmax across sources.

    Shape: (batch, n_sources, channels, frames) -> same.
    """
    if kind == "softmax":
        return torch.softmax(scores, dim=1)
    return torch.sigmoid(scores) if kind == "sigmoid" else torch.relu(scores)


class ModelConfig:
    """Mixin for a model's frozen config dataclass: plain-value round trips, checks, directory names.

    A subclass declares its options as dataclass fields (with a ``#`` comment each) and implements
    :meth:`validate` and :meth:`dir_names`.  Shared options every masking model has: ``n_filters``,
    ``kernel_size``, ``stride``, ``n_sources``, ``mask``, ``causal``, ``encoder_activation``,
    ``signal_padding``, ``sample_rate``.
    """

    def _resolve(self, **defaults: Any) -> None:
        """Fill ``None`` fields from ``defaults`` (a frozen dataclass sets them through object.__setattr__)."""
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    def _check_integers(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")

    def _check(self, checks: list[tuple[str, bool, str]]) -> None:
        """Raise a ValueError naming the first option whose check fails."""
        for name, ok, what in checks:
            if not ok:
                raise ValueError(f"invalid {name}={getattr(self, name)!r}: {what}")

    def _check_shared(self) -> None:
        """The checks of the encoder/decoder options every masking model has."""
        self._check_integers("n_filters", "kernel_size", "stride", "n_sources", "sample_rate")
        self._check(
            [
                ("kernel_size", self.kernel_size >= 2, "must be at least 2"),
                ("stride", 1 <= self.stride <= self.kernel_size, f"must be in 1..kernel_size ({self.kernel_size})"),
                ("n_filters", self.n_filters >= 1, "must be at least 1"),
                ("n_sources", self.n_sources >= 1, "must be at least 1"),
                ("causal", isinstance(self.causal, bool), "must be true or false"),
                (
                    "encoder_activation",
                    self.encoder_activation in ENCODER_ACTIVATIONS,
                    f"must be one of {ENCODER_ACTIVATIONS}",
                ),
                ("signal_padding", self.signal_padding in SIGNAL_PADDINGS, f"must be one of {SIGNAL_PADDINGS}"),
                (
                    "signal_padding",
                    not (self.causal and self.signal_padding == "none"),
                    "a causal model streams with 'overlap' padding (its first samples covered by every window)",
                ),
                ("sample_rate", self.sample_rate >= 1, "must be positive"),
            ]
        )

    def _padding_name(self) -> str:
        """The directory-name part of ``signal_padding``: nothing for the default, so older names stay."""
        return "" if self.signal_padding == "overlap" else "_unpadded"

    @classmethod
    def options(cls) -> list[str]:
        """The option names, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def option_types(cls) -> dict[str, tuple[type, bool]]:
        """Each option's ``(type, may be None)`` from its annotation (``int | None``), for parsing options.

        Read from the annotation's text, so ``int | None`` works on Python 3.9 too.
        """
        types = {"int": int, "float": float, "str": str, "bool": bool}
        out = {}
        for f in dataclasses.fields(cls):
            words = [w.strip() for w in str(f.type).split("|")]
            out[f.name] = (types[next(w for w in words if w != "None")], "None" in words)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from plain values, refusing unknown keys (a misspelt option is an error)."""
        known = cls.options()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (ints, floats, strings, bools), safe for ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    def dir_names(self) -> tuple[str, str]:
        """The model's two parts of the experiment directory: ``(dimensions, other options)``.

        Together they name every option, so two different models never share a directory.
        """
        raise NotImplementedError

    def filterbank_name(self) -> str:
        """``<encoder>-<decoder>``: learned filterbanks (``trainable``), the encoder's non-linearity if not ReLU."""
        encoder = "trainable" if self.encoder_activation == "relu" else f"trainable_{self.encoder_activation}"
        return f"{encoder}-trainable"

    @property
    def latency(self) -> int:
        """Samples of look-ahead of a causal model (the model's file says what it is)."""
        raise NotImplementedError

    @property
    def blocks(self) -> int:
        """How many blocks the masker repeats: a checkpoint's weights must hold at least one tensor each."""
        raise NotImplementedError


class MaskingModel(nn.Module):
    """Encoder -> masker (``self.separator``) -> masks applied -> decoder, cropped to the input length.

    Subclasses set ``model_name``, ``config_name`` and ``config_class`` and implement :meth:`make_separator`, a module
    mapping the encoder's output ``(batch, n_filters, frames)`` to masks
    ``(batch, n_sources, n_filters, frames)``.

    Shape: mixture (batch, time) -> estimated sources (batch, n_sources, time), for any time >= 1
    (``time >= kernel_size`` with ``signal_padding='none'``).
    """

    model_name: ClassVar[str]  # how checkpoints name the class: ``DPRNNTasNet``
    config_name: ClassVar[str]  # how configs name it: ``dprnn_tasnet``
    config_class: ClassVar[type]
    # whether a causal one streams (dnnsep.streaming): its separator then has ``not_causal()``, saying why
    # it cannot, and ``stream()``, the masker on carried state: ``push(frames)`` -> masks of the frames
    # now final, ``flush()`` -> the rest, ``counts`` (work done)
    streams: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config if config is not None else self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.encoder = Encoder(
            n_filters=config.n_filters,
            kernel_size=config.kernel_size,
            stride=config.stride,
            activation=config.encoder_activation,
        )
        self.separator = self.make_separator(config)
        self.decoder = Decoder(n_filters=config.n_filters, kernel_size=config.kernel_size, stride=config.stride)
        self.provenance = {"format": "dnnsep"}  # where its weights come from; the registry fills it in on load
        self.trained_with: dict[str, Any] = {}  # a dnnsep checkpoint's training config (its data...), on load

    def make_separator(self, config: ModelConfig) -> nn.Module:
        raise NotImplementedError

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def n_sources(self) -> int:
        return self.config.n_sources

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        unpadded = self.config.signal_padding == "none"
        shortest = self.config.kernel_size if unpadded else 1
        if mixture.dim() != 2 or mixture.shape[-1] < shortest:
            raise ValueError(f"mixture must be (batch, time) with time >= {shortest}, got shape {tuple(mixture.shape)}")
        batch, time = mixture.shape
        if unpadded:  # asteroid's: the input as it is, the samples after the last full window left out
            padded, front = mixture, 0
        else:
            padded, front = pad_signal(mixture, kernel_size=self.config.kernel_size, stride=self.config.stride)
        w = self.encoder(padded)  # (batch, n_filters, frames)
        masks = self.separator(w)  # (batch, n_sources, n_filters, frames)
        masked = (masks * w.unsqueeze(1)).flatten(0, 1)  # (batch * n_sources, n_filters, frames)
        out = self.decoder(masked)  # (batch * n_sources, padded time), or at most time when unpadded
        if unpadded:
            out = F.pad(out, (0, time - out.shape[-1]))  # zeros after the last full window
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
    def from_checkpoint(cls, path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MaskingModel:
        """Rebuild a model saved by :meth:`save` (or a training checkpoint holding the same keys)."""
        ckpt = load_checkpoint(path, map_location=map_location)
        return cls.from_checkpoint_dict(ckpt, source=str(path))

    @classmethod
    def from_checkpoint_dict(cls, ckpt: dict[str, Any], *, source: str = "checkpoint") -> MaskingModel:
        """Rebuild from an already loaded checkpoint dict; errors name ``source``.

        The config's sizes are checked against the weights' shapes on the ``meta`` device first, so a
        small file whose config asks for a huge model is refused without allocating it (and, before
        that, its block count against the number of tensors, so that not even the meta model is huge).
        """
        name = ckpt.get("model_name")
        if name != cls.model_name or not isinstance(ckpt.get("model_args"), dict) or "state_dict" not in ckpt:
            what = f"a {_printable(name)!r} model" if name else "no dnnsep model"
            raise CheckpointError(f"{source}: holds {what}, expected a {cls.model_name!r} checkpoint")
        if not isinstance(ckpt["state_dict"], dict):
            raise CheckpointError(f"{source}: its state_dict is not a dict of tensors")
        try:
            config = cls.config_class.from_dict(ckpt["model_args"])
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: invalid model config: {_printable(err)}") from None
        if config.blocks > len(ckpt["state_dict"]):
            raise CheckpointError(
                f"{source}: weights do not match its config ({config.blocks} blocks, "
                f"{len(ckpt['state_dict'])} tensors in all)"
            )
        expected = _meta_shapes(cls, config)
        problems = state_dict_mismatch(expected, ckpt["state_dict"])
        if problems:
            raise CheckpointError(f"{source}: weights do not match its config ({problems})")
        model = cls(config)
        model.load_state_dict(ckpt["state_dict"])
        return model


def _meta_shapes(cls: type, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The state dict ``cls(config)`` would have, built on the meta device (no memory for weights)."""
    with torch.device("meta"):
        return cls(config).state_dict()


def state_dict_mismatch(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> str:
    """Describe missing, unexpected and mis-shaped entries in one short phrase ('' if none)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(_printable(k) for k in set(found) - set(expected))
    shapes = [
        f"{k}: {tuple(found[k].shape) if isinstance(found[k], torch.Tensor) else type(found[k]).__name__} "
        f"vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and (not isinstance(found[k], torch.Tensor) or found[k].shape != v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    return "; ".join(parts)


def _printable(value: Any) -> str:
    """``str(value)`` with control characters (terminal escape codes) replaced, at most 200 characters."""
    text = str(value)
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
