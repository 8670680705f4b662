"""Separation models, and the registry that finds one by name.

Every model is an encoder -> masker -> decoder :class:`~dnnsep.models.base.MaskingModel` with a
config dataclass; tools never name a class: :func:`get` returns one by name and :func:`load`
rebuilds whichever model a checkpoint holds.

>>> get("dprnn_tasnet") is DPRNNTasNet, get("DPRNNTasNet") is DPRNNTasNet
(True, True)
>>> names()
['conv_tasnet', 'dprnn_tasnet']
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, DnnsepError
from .base import MaskingModel, ModelConfig
from .conv_tasnet import ConvTasNet, ConvTasNetConfig
from .dprnn_tasnet import DPRNNConfig, DPRNNTasNet

_REGISTRY: dict[str, type[MaskingModel]] = {}


def _key(name: str) -> str:
    """``DPRNNTasNet``, ``dprnn_tasnet`` and ``dprnn-tasnet`` are one name."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def register(cls: type[MaskingModel]) -> type[MaskingModel]:
    """Add a model class (usable as a decorator); checkpoints name it by ``model_name``, configs by ``config_name``."""
    _REGISTRY[_key(cls.model_name)] = cls
    _REGISTRY[_key(cls.config_name)] = cls
    return cls


def names() -> list[str]:
    """The registered models' config names."""
    return sorted(cls.config_name for cls in _REGISTRY.values())


def get(name: str) -> type[MaskingModel]:
    """The model class called ``name`` (its ``model_name`` or config name, any case)."""
    cls = _REGISTRY.get(_key(name))
    if cls is None:
        raise DnnsepError(f"unknown model {name!r}; known models: {', '.join(names())}")
    return cls


def from_checkpoint_dict(ckpt: dict[str, Any], *, source: str = "checkpoint") -> MaskingModel:
    """Rebuild whichever registered model an already loaded checkpoint dict holds."""
    name = ckpt.get("model_name")
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        what = "no dnnsep model" if name is None else f"an unknown model {str(name)[:80]!r}"
        raise CheckpointError(f"{source}: holds {what} (known models: {', '.join(names())})")
    return _REGISTRY[_key(name)].from_checkpoint_dict(ckpt, source=source)


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MaskingModel:
    """Rebuild whichever registered model the checkpoint at ``path`` holds (``weights_only=True``)."""
    return from_checkpoint_dict(load_checkpoint(path, map_location=map_location), source=str(path))


for _cls in (DPRNNTasNet, ConvTasNet):
    register(_cls)

__all__ = [
    "ConvTasNet",
    "ConvTasNetConfig",
    "DPRNNConfig",
    "DPRNNTasNet",
    "MaskingModel",
    "ModelConfig",
    "from_checkpoint_dict",
    "get",
    "load",
    "names",
    "register",
]
