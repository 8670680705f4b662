"""Which model a tool uses: the ``--model`` options shared by demo, separate, test and export, and loading.

Without ``--model``, a tool uses the best model of the most recent experiment under the recipe's
experiment folders (``exp*/``: ``exp/``, ``exp-synthetic/``, ...) and says which one; with none
there, the error names the command that makes one (the recipe's main job).  Any registered model
loads (:func:`dnnsep.models.load`), so no tool names a model class; so does a separator asteroid
published (its ``pytorch_model.bin``, or the folder holding it), converted, and the tool says which
model it is, where from, its sample rate and the licence its file states (:func:`describe`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from . import hub, models
from .device import guard_mps
from .errors import CheckpointError, DnnsepError
from .inference import non_finite_parameters
from .training.experiment import recipe_models

MAIN_JOB = "bash run.sh --config conf/mini.yaml"  # the recipe's main job, as the README gives it


def experiment_models(recipe_dir: str | os.PathLike, *, causal: bool | None = None) -> list[Path]:
    """Every experiment's ``best.pth`` under ``<recipe_dir>/exp*/``, the most recent first.

    ``causal=True`` keeps causal models only, as their checkpoints' ``model_args`` say
    (:func:`dnnsep.training.experiment.recipe_models`).
    """
    return recipe_models(recipe_dir, causal=causal)


def default_model_path(recipe_dir: str | os.PathLike, *, causal: bool | None = None, quiet: bool = False) -> Path:
    """The most recent experiment's ``best.pth`` (see :func:`experiment_models`); says which on stderr."""
    recipe = Path(recipe_dir).resolve()
    found = experiment_models(recipe, causal=causal)
    if not found:
        kind = "causal " if causal else ""
        how = "bash run.sh --config conf/causal.yaml" if causal else MAIN_JOB
        raise CheckpointError(
            f"no trained {kind}model under {recipe}/exp*/: make one with `{how}` in {recipe}, "
            "or pass --model PATH/TO/best.pth"
        )
    if not quiet:
        print(f"model: {found[0]} (the most recent under {recipe}/exp*/; --model PATH to choose)", file=sys.stderr)
    return found[0]


def load_model(
    model: str | os.PathLike | None,
    *,
    recipe_dir: str | os.PathLike,
    device: torch.device,
    causal: bool | None = None,
) -> tuple[models.MaskingModel, Path]:
    """The model at ``model`` (or :func:`default_model_path`) on ``device``, in eval mode: ``(model, path)``.

    ``model``: a checkpoint, asteroid's ``pytorch_model.bin``, a folder holding one (``path`` is then
    that file), or ``hf:OWNER/NAME[@REVISION]`` (:mod:`dnnsep.hub`; ``path`` is the cached file); a
    converted model is described on stderr (:func:`describe`).  Weights holding NaN or infinite values are
    refused (one line).  On MPS,
    :func:`~dnnsep.device.guard_mps` checks the model's output first and may keep it on the CPU (the
    model's device says where it runs).
    """
    if model is None:
        path = default_model_path(recipe_dir, causal=causal)
    elif hub.is_reference(model):
        path = models.model_file(model)  # downloaded, or from the cache
    else:
        path = Path(model).expanduser()
        if not path.exists():
            raise CheckpointError(f"{path}: no such model file or folder (--model)")
        path = models.model_file(path)
    net = models.load(path, map_location="cpu")
    broken = non_finite_parameters(net)
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise DnnsepError(f"{path}: the model's weights hold NaN or infinite values ({', '.join(broken[:3])}{more})")
    if net.provenance.get("format") != "dnnsep" or net.provenance.get("licence"):
        print(f"model: {path} ({describe(net)})", file=sys.stderr)
    net, _ = guard_mps(net.to(device).eval())
    return net, path


def describe(model: models.MaskingModel) -> str:
    """Which model, from which format, its sample rate and sources, and the licence its file states.

    >>> from dnnsep.models import DPRNNConfig, DPRNNTasNet
    >>> describe(DPRNNTasNet(DPRNNConfig(n_filters=8, kernel_size=4, hidden=8, n_blocks=1, sample_rate=8000)))
    "dnnsep's DPRNNTasNet, 8 kHz, 2 sources"
    """
    info = model.provenance
    fmt = info.get("format", "dnnsep")
    what = f"dnnsep's {model.model_name}"
    if fmt != "dnnsep":
        what = f"{fmt} {info.get('model', '?')} as {what}"
    what += f", {model.sample_rate / 1000:g} kHz, {model.n_sources} sources"
    return what + (f"; licence: {info['licence']}" if info.get("licence") else "")


def add_model_options(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """``--model``, ``--recipe_dir`` (hidden: the shell fronts fill it in) and, with ``device``, ``--device``."""
    parser.add_argument(
        "--model",
        metavar="PATH",
        help="model checkpoint, a published model's folder or hf:OWNER/NAME[@REVISION] "
        "(default: best.pth of the most recent experiment under the recipe's exp*/)",
    )
    parser.add_argument("--recipe_dir", default=".", help=argparse.SUPPRESS)
    if device:
        parser.add_argument(
            "--device",
            default="auto",
            help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps; DNNSEP_FORCE_MPS=1 skips the MPS check",
        )
