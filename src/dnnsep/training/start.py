"""What a training run checks and builds before its first step: the refusals (an experiment that
exists, a state that cannot be resumed or was trained with other options), the data sets, the
optimizer, the batch each process trains.

:func:`preflight` runs the checks in one process, so that a multi-process launch fails with one
clean message before it starts its processes; :class:`~dnnsep.training.trainer.Trainer` runs them in each.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from .. import torch_version
from ..checkpoint import load_checkpoint
from ..errors import CheckpointError, DnnsepError
from ..locking import hold
from . import distributed
from .config import TrainConfig, experiment_dir, upgrade_flat_config
from .experiment import Experiment

TRAINING_KIND = "dnnsep-training-state"  # marks last.pth: only these can be resumed
MODEL_KIND = "dnnsep-model"  # marks best.pth: a model for inference
FORMAT_VERSION = 2  # last.pth's; 2: the model has its own config section (1: the first release)
RESUMABLE_FORMATS = (1, 2)


def check_start(cfg: TrainConfig, exp: Path, resume: str | os.PathLike | None) -> dict[str, Any] | None:
    """Refuse what must not happen: overwriting an experiment, resuming from best.pth or another config.

    Returns the loaded ``resume`` checkpoint (None for a fresh start).
    """
    last_path = Experiment(exp).last
    if resume is None:
        best = Experiment(exp).best
        if last_path.exists() or best.exists():
            how = (
                f"to continue it, pass {last_path} as MODEL_PATH (same options); "
                if last_path.exists()
                else "it has no model/last.pth to continue from; "
            )
            raise DnnsepError(
                f"{exp}: experiment exists already; {how}to start over, delete that directory; "
                "to run another beside it, change an option (e.g. --seed) or OUT_DIR"
            )
        # a config.yaml without checkpoints: a run that died at its start; this one starts it again
        return None
    ckpt = load_checkpoint(resume)
    if ckpt.get("kind") != TRAINING_KIND:
        what = "a model for inference (like best.pth)" if "state_dict" in ckpt else "not a dnnsep training state"
        raise CheckpointError(f"{resume}: {what}, cannot resume from it; resume from model/last.pth instead")
    if ckpt.get("format_version") not in RESUMABLE_FORMATS:
        raise CheckpointError(
            f"{resume}: training state format {str(ckpt.get('format_version'))[:20]}, this dnnsep resumes "
            f"formats {', '.join(map(str, RESUMABLE_FORMATS))}"
        )
    if not isinstance(ckpt.get("train_config"), dict):
        raise CheckpointError(f"{resume}: holds no training config, cannot resume from it")
    try:
        saved = TrainConfig.from_dict(upgrade_flat_config(ckpt["train_config"]), source=str(resume)).identity()
    except DnnsepError as err:
        raise CheckpointError(f"{resume}: its config is not valid here ({err})") from None
    now = cfg.identity()
    diff = [f"{k}={saved.get(k)!r} there, {now[k]!r} now" for k in now if saved.get(k) != now[k]]
    if diff:
        raise CheckpointError(
            f"{resume}: trained with other options ({'; '.join(diff)}); resume with the options in its "
            "config.yaml, or start a new experiment"
        )
    if last_path.exists() and not os.path.samefile(last_path, resume):
        raise DnnsepError(f"{last_path} exists and is not {resume}: resume from it, or use another OUT_DIR")
    return ckpt


def preflight(cfg: TrainConfig, out_dir: str | os.PathLike, resume: str | os.PathLike | None = None) -> Path:
    """Everything :class:`Trainer` checks before training (refusals, data lists), in one process.

    Lets a multi-process launch fail with one clean message before starting its processes.
    """
    exp = experiment_dir(cfg, out_dir)
    with hold(exp, what="experiment"):  # refused at once while another run holds it
        check_start(cfg, exp, resume)
    make_datasets(cfg)
    return exp


def fused_on_cpu(params: list[torch.Tensor]) -> bool:
    """Whether Adam's fused kernel serves these parameters: on the CPU, from torch 2.4.

    One kernel updates every parameter, instead of a loop of small ops per tensor: a small model's many
    tensors make that loop a few percent of a CPU step (``bench/bench_model.py --skip rtf,long`` times a
    training step with it).  Other devices keep torch's default.  A checkpoint's optimizer state carries
    the choice (torch restores the saved groups' options), so a resumed run updates as it began.
    """
    version = torch_version()
    on_cpu = all(p.device.type == "cpu" and p.dtype.is_floating_point for p in params)
    return version is not None and version >= (2, 4) and on_cpu


def unfuse_where_unsupported(optimizer: torch.optim.Optimizer) -> None:
    """After loading a checkpoint's optimizer state: a fused update it carries runs here only where
    :func:`fused_on_cpu` allows it (a CPU run resumed on a GPU, or under torch 2.3, updates as torch's default)."""
    for group in optimizer.param_groups:
        if group.get("fused") and not fused_on_cpu(group["params"]):
            group["fused"] = None


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    params = list(model.parameters())
    fused = True if fused_on_cpu(params) else None  # None: torch's default
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def collate_by_length(items: list[tuple[Any, Any]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Stack equal-length items into one batch, else one batch per item (full-length utterances).

    Shape: [(mixture (time,), sources (n_sources, time))] -> [(mixture (b, time), sources (b, n_sources, time))].
    """
    if len({item[0].shape[-1] for item in items}) == 1:
        return [default_collate(items)]
    return [default_collate([item]) for item in items]


def make_datasets(cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """The training and validation sets of the mixture lists under ``cfg.dataset_dir``."""
    from ..data import MixtureDataset, list_path  # here, so that training code imports without the data code
    from ..data.scene import options_from_config

    scene = {"scene": options_from_config(cfg), "reverb_target": cfg.reverb_target}  # rooms and noise, if any
    sets = []
    for split in ("train", "valid"):
        path = list_path(cfg.dataset_dir, cfg.n_sources, split)
        if not path.is_file():
            raise DnnsepError(
                f"{path}: no such mixture list; prepare the data first (egs/librispeech/common/prepare.sh "
                f"{cfg.dataset_dir} {cfg.n_sources}) or point --dataset_dir at it"
            )
        if split == "train":
            data = MixtureDataset(
                path,
                dynamic_mixing=cfg.dynamic_mixing,
                seed=cfg.seed,
                segment_seconds=cfg.segment_seconds,
                speed_perturb=cfg.speed_perturb,
                **scene,
            )
        else:  # validation: every mixture as its list has it, or in a room and noise (never a dry share)
            opts = scene["scene"] and dataclasses.replace(scene["scene"], dry_share=0.0, room_life=1)
            data = MixtureDataset(path, scene=opts, reverb_target=cfg.reverb_target)
        if data.sample_rate != cfg.sample_rate or data.n_sources != cfg.n_sources:
            raise DnnsepError(
                f"{path}: {data.n_sources} sources at {data.sample_rate} Hz, but the config asks for "
                f"{cfg.n_sources} at {cfg.sample_rate} Hz"
            )
        if len(data) == 0:
            raise DnnsepError(f"{path}: holds no mixtures")
        sets.append(data)
    return sets[0], sets[1]


def process_batch(cfg: TrainConfig, dist: distributed.Dist, device: torch.device) -> int:
    """Examples per step in this process: ``batch_size``, shared out when the config's ``cpu_processes``
    run it on the CPU (they train the batches one process would); under torchrun otherwise, per process."""
    if device.type == "cpu" and dist.world_size == cfg.cpu_processes > 1:
        return cfg.batch_size // cfg.cpu_processes
    return cfg.batch_size
