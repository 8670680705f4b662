"""An experiment's layout, in one place: where its models, logs and evaluations are, and finding them.

::

    <experiment>/model/best.pth     the best model (for inference)
    <experiment>/model/last.pth     the training state (to resume)
    <experiment>/log/train.log      the training log
    <experiment>/loss/              the loss curve and its CSV
    <experiment>/eval/<split>-<model stem>/   an evaluation (results.csv, summary.json, report.html)

The experiment's directory itself is named from its config (:func:`experiment_dir`): every option that
changes what is trained is in the name.
The trainer, every tool (``evaluate``, ``share``, the default model of ``separate``/``demo``/``test``)
and the shell (``--get best_path,last_path``) ask this module; none spells the layout.  The most
recent experiment of a recipe is found by what its checkpoint's ``model_args`` say (causal or not),
never by parsing directory names.

>>> _num(1e-3), _num(5.0), _num(0.5)
('1e-3', '5', '0.5')
>>> exp = Experiment(Path("out/2mix/x/seed111"))
>>> exp.best.as_posix(), exp.eval_dir("test", "best").as_posix()
('out/2mix/x/seed111/model/best.pth', 'out/2mix/x/seed111/eval/test-best')
>>> Experiment.holding(Path("out/2mix/x/seed111/model/last.pth")) == exp, Experiment.holding(Path("m.pth"))
(True, None)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .config import TrainConfig

MODEL_DIR, EVAL_DIR, LOG_DIR, LOSS_DIR = "model", "eval", "log", "loss"
BEST, LAST = "best.pth", "last.pth"


@dataclass(frozen=True)
class Experiment:
    """One experiment's directory and the paths inside it."""

    root: Path

    @classmethod
    def holding(cls, checkpoint: str | os.PathLike) -> Experiment | None:
        """The experiment whose ``model/`` folder holds ``checkpoint``, or None for a file elsewhere."""
        path = Path(checkpoint)
        return cls(path.parent.parent) if path.parent.name == MODEL_DIR else None

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def best(self) -> Path:
        return self.model_dir / BEST

    @property
    def last(self) -> Path:
        return self.model_dir / LAST

    @property
    def log_dir(self) -> Path:
        return self.root / LOG_DIR

    @property
    def loss_dir(self) -> Path:
        return self.root / LOSS_DIR

    def eval_dir(self, split: str, stem: str) -> Path:
        """Where an evaluation of ``model/<stem>.pth`` on the ``split`` list goes."""
        return self.root / EVAL_DIR / f"{split}-{stem}"

    def summaries(self) -> list[Path]:
        """Every evaluation's ``summary.json``, by name."""
        return sorted((self.root / EVAL_DIR).glob("*/summary.json"))


def recipe_models(recipe_dir: str | os.PathLike, *, causal: bool | None = None) -> list[Path]:
    """Every experiment's ``best.pth`` under ``<recipe_dir>/exp*/``, the most recent first.

    ``causal``: keep only models whose checkpoint says ``causal: true`` (or ``false``) in its
    ``model_args``; a file that cannot be read is left out.
    """
    recipe = Path(recipe_dir)
    found = [p for d in sorted(recipe.glob("exp*")) if d.is_dir() for p in d.glob(f"**/{MODEL_DIR}/{BEST}")]
    if causal is not None:
        found = [p for p in found if is_causal(p) == causal]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def is_causal(checkpoint: Path) -> bool | None:
    """What a dnnsep checkpoint's ``model_args`` say of ``causal`` (None if it cannot be read)."""
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)  # tensors not read
    except Exception:
        return None
    args = ckpt.get("model_args") if isinstance(ckpt, dict) else None
    return bool(args.get("causal", False)) if isinstance(args, dict) else None


def _num(x: float) -> str:
    """Compact number for directory names: 5 -> '5', 0.5 -> '0.5', 0.001 -> '1e-3', 0 -> '0'."""
    if x == 0:
        return "0"
    if float(x).is_integer() and abs(x) < 1e5:
        return str(int(x))
    if 0.1 <= abs(x) < 1e5:
        return f"{x:g}"
    mantissa, exponent = f"{x:.6e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def experiment_dir(cfg: TrainConfig, out_dir: str | os.PathLike) -> Path:
    """``<out_dir>/<n>mix/<encoder>-<decoder>/<loss>/<model dims>/<model options>/<training>/seed<seed>``.

    The one place the name is computed: ``train.sh``, ``run.sh`` and the notebook ask for it with
    ``--get experiment_dir`` (and its files with ``--get best_path,last_path``).

    - encoder-decoder: ``trainable-trainable`` (learned filterbanks; ``trainable_linear`` for an
      encoder without ReLU);
    - loss: ``sisdr`` (negative SI-SDR under PIT), ``sisdr_thr{dB}`` with ``loss_threshold``;
    - model dims and options: the model's own names (e.g. ``N64_L16_H256_K100_P50_B3`` and
      ``S8_F64_sigmoid_gln_noncausal_sr16k``), which together name every option;
    - training: ``b{batch_size}_e{epochs}_{optimizer}-lr{lr}-decay{weight_decay}_clip{clip_grad_norm}``,
      plus ``_dm`` with dynamic mixing, ``_sp{r}`` with speed_perturb, ``_seg{seconds}`` when
      segment_seconds is set, ``_warm{steps}`` with warmup_steps, ``_cos`` with the cosine schedule and
      ``_t{minutes}m`` with ``lr_clock: time`` (the schedule over a budget of that many minutes);
    - data: ``_room{rt60_min}-{rt60_max}s_{reverb_target}`` with simulated rooms (``_rir_{reverb_target}``
      with measured ones), ``_bank{n}`` with room_bank (``_bank{n}x{life}`` with room_life),
      ``_noise-{syn|files}{snr_min}to{snr_max}dB`` with noise, ``_dry{share}`` with dry_share (and a room or noise).
    """
    m = cfg.model_config
    dims, options = m.dir_names()
    training = f"b{cfg.batch_size}_e{cfg.epochs}_{cfg.optimizer}-lr{_num(cfg.lr)}-decay{_num(cfg.weight_decay)}"
    training += f"_clip{_num(cfg.clip_grad_norm)}"
    if cfg.dynamic_mixing:
        training += "_dm"
    if cfg.speed_perturb:
        training += f"_sp{_num(cfg.speed_perturb)}"
    if cfg.segment_seconds is not None:
        training += f"_seg{_num(cfg.segment_seconds)}"
    if cfg.reverb == "rooms":
        training += f"_room{_num(cfg.rt60_min)}-{_num(cfg.rt60_max)}s_{cfg.reverb_target}"
    elif cfg.reverb == "measured":
        training += f"_rir_{cfg.reverb_target}"
    if cfg.reverb != "none" and cfg.room_bank:
        training += f"_bank{cfg.room_bank}" + (f"x{cfg.room_life}" if cfg.room_life > 1 else "")
    if cfg.noise != "none":
        training += f"_noise-{cfg.noise[:3]}{_num(cfg.snr_min)}to{_num(cfg.snr_max)}dB"
    if (cfg.reverb != "none" or cfg.noise != "none") and cfg.dry_share:
        training += f"_dry{_num(cfg.dry_share)}"
    if cfg.warmup_steps:
        training += f"_warm{cfg.warmup_steps}"
    if cfg.lr_schedule != "plateau":
        training += f"_{cfg.lr_schedule[:3]}"
    if cfg.lr_clock == "time":
        training += f"_t{_num(cfg.max_minutes)}m"
    loss = "sisdr" if cfg.loss_threshold is None else f"sisdr_thr{_num(cfg.loss_threshold)}"
    return (
        Path(out_dir)
        / f"{cfg.n_sources}mix"
        / m.filterbank_name()
        / loss
        / dims
        / options
        / training
        / f"seed{cfg.seed}"
    )
