"""Separation models, and the registry that finds one by name.

Every model is an encoder -> masker -> decoder :class:`~dnnsep.models.base.MaskingModel` with a
config dataclass; tools never name a class: :func:`get` returns one by name and :func:`load`
rebuilds whichever model a checkpoint holds: dnnsep's own, a separator asteroid published
(``pytorch_model.bin``, or a folder holding one), converted by :mod:`.asteroid_format`, or a SepFormer
SpeechBrain published (a folder of ``hyperparams.yaml`` and ``*.ckpt``), converted by
:mod:`.speechbrain_format`.  The model's ``provenance`` says which (``{"format": "dnnsep"}``, or the
toolkit's format, model and licence).

>>> get("dprnn_tasnet") is DPRNNTasNet, get("DPRNNTasNet") is DPRNNTasNet
(True, True)
>>> names()
['conv_tasnet', 'dprnn_tasnet', 'sepformer']
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from .. import hub
from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, DnnsepError
from . import asteroid_format, speechbrain_format
from .base import MaskingModel, ModelConfig
from .conv_tasnet import ConvTasNet, ConvTasNetConfig
from .dprnn_tasnet import DPRNNConfig, DPRNNTasNet
from .sepformer import SepFormer, SepFormerConfig

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
    """Rebuild whichever registered model an already loaded checkpoint dict holds (dnnsep's or asteroid's)."""
    if asteroid_format.is_asteroid(ckpt):
        model = from_checkpoint_dict(asteroid_format.to_dnnsep(ckpt, source=source), source=source)
        model.provenance = asteroid_format.provenance(ckpt)
        return model
    name = ckpt.get("model_name")
    if not isinstance(name, str) or _key(name) not in _REGISTRY:
        what = "no dnnsep model" if name is None else f"an unknown model {str(name)[:80]!r}"
        raise CheckpointError(f"{source}: holds {what} (known models: {', '.join(names())})")
    model = _REGISTRY[_key(name)].from_checkpoint_dict(ckpt, source=source)
    if isinstance(ckpt.get("train_config"), dict):
        model.trained_with = ckpt["train_config"]
    card = ckpt.get("card")  # a model shared with dnnsep.bin.share: its card's licence
    if isinstance(card, dict) and isinstance(card.get("licence"), str):
        model.provenance = {"format": "dnnsep", "model": model.model_name, "licence": card["licence"][:200]}
    return model


WEIGHT_FILES = (asteroid_format.FILE_NAME, "best.pth")  # a folder's weights: published (or shared) | dnnsep's


def model_file(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: the file itself; in a folder, its ``pytorch_model.bin`` (asteroid's, or a
    shared dnnsep model's) or ``best.pth``, or the folder itself when it holds a SpeechBrain separator
    (``hyperparams.yaml`` and its ``*.ckpt``); ``hf:OWNER/NAME[@REVISION]``: that repository's, downloaded
    (:mod:`dnnsep.hub`)."""
    if hub.is_reference(path):
        return model_file(hub.download(path))
    path = Path(path)
    if path.name == speechbrain_format.HYPERPARAMS and path.is_file():
        return path.parent
    if not path.is_dir() or speechbrain_format.is_folder(path):
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(
        f"{path}: is a directory without a model ({', '.join(WEIGHT_FILES)}, or SpeechBrain's "
        f"{speechbrain_format.HYPERPARAMS}); pass a checkpoint file"
    )


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> MaskingModel:
    """Rebuild whichever registered model the checkpoint at ``path`` holds (``weights_only=True``).

    ``path``: a dnnsep checkpoint, asteroid's ``pytorch_model.bin``, a SpeechBrain separator's folder, a
    folder holding one of these, or ``hf:OWNER/NAME[@REVISION]`` (a Hugging Face Hub repository holding one).
    """
    path = model_file(path)
    if speechbrain_format.is_folder(path):
        model = from_checkpoint_dict(speechbrain_format.to_dnnsep(path), source=str(path))
        model.provenance = speechbrain_format.provenance(path)
        return model.to(map_location)
    return from_checkpoint_dict(load_checkpoint(path, map_location=map_location), source=str(path))


for _cls in (DPRNNTasNet, ConvTasNet, SepFormer):
    register(_cls)

__all__ = [
    "ConvTasNet",
    "ConvTasNetConfig",
    "DPRNNConfig",
    "DPRNNTasNet",
    "MaskingModel",
    "ModelConfig",
    "SepFormer",
    "SepFormerConfig",
    "from_checkpoint_dict",
    "get",
    "load",
    "model_file",
    "names",
    "register",
]
