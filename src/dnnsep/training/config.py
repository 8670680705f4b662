"""Training configuration's schema: one YAML per experiment, each key's type, meaning and checks.

The recipe's ``conf/default.yaml`` is the single source of default values: :class:`TrainConfig`
declares each key's type and meaning but no value, so a config file must give every key (directly
or through ``extends: other.yaml``, which loads that file first and lets this one override it).
Unknown keys and values of the wrong type are errors naming the file and the key.

The model is a section of its own, ``model:``, which the model owns: its ``name`` (a registered
model, see :func:`dnnsep.models.get`) and any of its options; the model's config dataclass holds the
defaults and checks them.  ``extends`` merges a child's ``model:`` section into its parent's (unless
it names another model).  On the command line a model option is ``--model.<option> value``, or
``--<option> value`` when no training key has that name; ``--model.name NAME`` picks the model.
Only ``n_sources`` and ``sample_rate`` are shared: the data decide them and the model is given them.

A ``prepare:`` section, if present, holds options of the data preparation for ``run.sh``
(:func:`prepare_args`); the trainer ignores it.

Relative paths inside a config file (``dataset_dir``, ``extends``) are relative to that file's
directory; a ``--dataset_dir`` given on the command line is relative to the current directory.

This module is the schema; reading files and ``--key value`` overrides is :mod:`.config_files`'s,
naming the experiment directory :mod:`.experiment`'s (their functions are importable from here too).
"""

# (No ``from __future__ import annotations`` here: the field types are read at run time with
# typing.get_type_hints, so they are written as Optional[...] to work on Python 3.9.)
import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from .. import models
from ..errors import DnnsepError
from ..models.base import DATA_OPTIONS

# Keys that may differ when a run is resumed: where the data is and how this machine runs it.
RUNTIME_KEYS = ("dataset_dir", "num_workers", "device", "cpu_processes", "amp", "save_every_steps", "stop_after_epoch",
                "max_nonfinite", "max_minutes", "rir_root", "noise_root")  # fmt: skip
OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("plateau", "cosine")
LR_CLOCKS = ("steps", "time")
REVERBS = ("none", "rooms", "measured")
REVERB_TARGETS = ("reverberant", "direct")
NOISES = ("none", "synthetic", "files")
# Keys added after the first checkpoints were written, with the value that means "as before": a saved
# config without them (an older last.pth) is read with these (never defaults: conf/default.yaml has those).
ADDED_KEYS = {"speed_perturb": 0.0, "loss_threshold": None, "warmup_steps": 0, "lr_schedule": "plateau",
              "max_minutes": None, "cpu_processes": 1, "lr_clock": "steps", "reverb": "none", "rir_root": None,
              "rt60_min": 0.1, "rt60_max": 0.8, "reverb_target": "reverberant", "room_bank": 0, "room_life": 1,
              "noise": "none", "noise_root": None, "snr_min": -5.0, "snr_max": 15.0, "dry_share": 0.0}  # fmt: skip
PREPARE_KEY = "prepare"  # a config file's section of options for the data preparation (see prepare_args)
MODEL_KEY = "model"  # a config file's section of the model: its name and options
CORPUS_KEY = "corpus"  # a config file's section of options for the corpus's data script (see corpus_args)


def _key(help: str, choices: Optional[tuple] = None) -> Any:
    return field(metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class TrainConfig:
    """Every training option; values come from YAML (``conf/default.yaml``), never from here."""

    # -- data --
    dataset_dir: str = _key("directory written by prepare.sh (holds <n>mix/{train,valid,test}.json)")
    n_sources: int = _key("speakers per mixture (2 or 3: which lists to use)")
    segment_seconds: Optional[float] = _key("training segment length in seconds (null: as in the lists)")
    dynamic_mixing: bool = _key("mix new speaker pairs and gains every epoch (seeded per epoch)")
    speed_perturb: float = _key(
        "resample each training source by a factor drawn from 1-r, 1, 1+r (speed and pitch; 0: off)"
    )
    reverb: str = _key(
        "put each training mixture in a room: simulated shoeboxes (rooms) or measured responses (measured, "
        "rir_root); none: dry. Valid/test rooms come from the lists (prepare --reverb)",
        REVERBS,
    )
    rir_root: Optional[str] = _key("folder of measured impulse responses (*.wav) for reverb: measured")
    rt60_min: float = _key("shortest RT60 of simulated rooms, in seconds")
    rt60_max: float = _key("longest RT60 of simulated rooms, in seconds")
    reverb_target: str = _key(
        "what the model learns in a room: the reverberant sources (separation only) or direct (direct "
        "path plus 50 ms of early reflections, as WHAMR!'s)",
        REVERB_TARGETS,
    )
    room_bank: int = _key("rooms shared among an epoch's mixtures (0: a new room per mixture)")
    room_life: int = _key(
        "epochs each room of the bank serves (1: a new bank every epoch; n: a new 1/n of it every epoch, n "
        "times fewer rooms to simulate)"
    )
    noise: str = _key(
        "add noise to each training mixture: synthetic (coloured, babble, hum, bursts) or files (noise_root); "
        "none: clean",
        NOISES,
    )
    noise_root: Optional[str] = _key("folder of noise recordings for noise: files (null: <dataset_dir>/noise)")
    snr_min: float = _key("lowest SNR of the noise re the speech, in dB")
    snr_max: float = _key("highest SNR of the noise re the speech, in dB")
    dry_share: float = _key(
        "with reverb or noise: the share of training mixtures left dry and clean (no room, no noise), drawn "
        "per mixture and epoch (once, without dynamic mixing), so the model also learns plain separation "
        "(0: every mixture in a room, in noise)"
    )
    num_workers: int = _key("data loading processes (0: in the training process)")
    sample_rate: int = _key("sample rate in Hz (the data must match)")
    # -- model: its own section, {name: ..., option: value, ...} (see dnnsep.models) --
    model: dict = _key("the model's name and options (model.name, model.<option>)")
    # -- optimisation --
    batch_size: int = _key("examples per step (per process under torchrun; cpu_processes share them)")
    epochs: int = _key("maximum number of epochs")
    loss_threshold: Optional[float] = _key("soft-threshold the SI-SDR loss at this many dB (null: plain SI-SDR)")
    optimizer: str = _key("optimizer", OPTIMIZERS)
    lr: float = _key("initial learning rate")
    warmup_steps: int = _key(
        "raise the learning rate linearly from lr/warmup_steps to lr over this many steps (0: none)"
    )
    lr_schedule: str = _key(
        "plateau: lr times lr_factor on a plateau; cosine: also a cosine decay to 0 over all epochs", LR_SCHEDULES
    )
    lr_clock: str = _key(
        "steps: the cosine schedule runs over epochs x steps per epoch; time: over the max_minutes budget "
        "(fraction of the time spent), which then ends training (a run cut by time has annealed)",
        LR_CLOCKS,
    )
    weight_decay: float = _key("weight decay")
    clip_grad_norm: float = _key("clip the gradient norm to this value (0: no clipping)")
    seed: int = _key("seed of the initial weights, the data order and dynamic mixing")
    lr_patience: int = _key("halve the learning rate after this many epochs without improvement (0: never)")
    lr_factor: float = _key("factor applied to the learning rate on a plateau")
    early_stop_patience: int = _key("stop after this many epochs without improvement (0: never)")
    # -- running (may change when resuming) --
    device: str = _key("auto, cpu, cuda, cuda:N or mps")
    cpu_processes: int = _key(
        "on the CPU, train in this many processes of one thread each (DDP over gloo), sharing each batch"
    )
    amp: bool = _key(
        "mixed precision (dnnsep.training.amp): CUDA bfloat16 from compute capability 8, else float16, "
        "with a gradient scaler; bfloat16 on a CPU with bfloat16 instructions"
    )
    save_every_steps: int = _key("also write last.pth every this many steps (0: at the end of each epoch only)")
    stop_after_epoch: Optional[int] = _key("pause (resumably) after this epoch; null: run to the end")
    max_minutes: Optional[float] = _key(
        "pause (resumably, mid-epoch) after this many minutes of training; null: no limit"
    )
    max_nonfinite: int = _key("stop after this many non-finite losses in a row")

    # -------------------------------------------------------------------------------------------

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Validate and build; ``source`` names the file in error messages."""
        known = cls.keys()
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise DnnsepError(f"{source}: unknown key(s) {', '.join(unknown)} (known keys: {', '.join(known)})")
        missing = [k for k in known if k not in values]
        if missing:
            raise DnnsepError(f"{source}: missing key(s) {', '.join(missing)} (see conf/default.yaml)")
        hints = typing.get_type_hints(cls)
        checked = {k: _check_type(k, values[k], hints[k], source) for k in known if k != MODEL_KEY}
        checked[MODEL_KEY] = _model_section(values[MODEL_KEY], checked, source)
        cfg = cls(**checked)
        cfg._validate(source)
        return cfg

    def _validate(self, source: str) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise DnnsepError(f"{source}: {f.name} must be a finite number, got {value}")
        if self.seed < 0:
            raise DnnsepError(f"{source}: seed must not be negative, got {self.seed}")
        for f in dataclasses.fields(self):
            choices, value = f.metadata["choices"], getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise DnnsepError(f"{source}: {f.name}={value!r} is not one of {', '.join(choices)}")
        positive = ("n_sources", "batch_size", "epochs", "max_nonfinite", "cpu_processes", "room_life")
        non_negative = (
            "num_workers",
            "lr_patience",
            "early_stop_patience",
            "save_every_steps",
            "weight_decay",
            "clip_grad_norm",
            "warmup_steps",
            "room_bank",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise DnnsepError(f"{source}: {name} must be at least 1, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise DnnsepError(f"{source}: {name} must not be negative, got {getattr(self, name)}")
        if not self.lr > 0 or not 0 < self.lr_factor < 1:
            raise DnnsepError(f"{source}: need lr > 0 and 0 < lr_factor < 1, got {self.lr} and {self.lr_factor}")
        if self.batch_size % self.cpu_processes:
            raise DnnsepError(f"{source}: batch_size ({self.batch_size}) must be a multiple of cpu_processes "
                              f"({self.cpu_processes}), which share each batch")  # fmt: skip
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise DnnsepError(f"{source}: max_minutes must be positive or null, got {self.max_minutes}")
        if self.lr_clock == "time" and self.max_minutes is None:
            raise DnnsepError(f"{source}: lr_clock: time runs the schedule over max_minutes: set max_minutes")
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise DnnsepError(f"{source}: segment_seconds must be positive or null, got {self.segment_seconds}")
        if not 0 <= self.speed_perturb < 0.5:
            raise DnnsepError(f"{source}: speed_perturb must be in [0, 0.5), got {self.speed_perturb}")
        if not 0 <= self.dry_share < 1:
            raise DnnsepError(f"{source}: dry_share must be in [0, 1) (a share of the mixtures), got {self.dry_share}")
        if self.room_life > 1 and not self.room_bank and self.reverb != "none":
            raise DnnsepError(
                f"{source}: room_life {self.room_life}: the rooms of a bank serve epochs; set room_bank too"
            )
        if not 0 < self.rt60_min <= self.rt60_max:
            raise DnnsepError(
                f"{source}: need 0 < rt60_min <= rt60_max (seconds), got {self.rt60_min} and {self.rt60_max}"
            )
        if not self.snr_min <= self.snr_max:
            raise DnnsepError(f"{source}: snr_min ({self.snr_min} dB) must not exceed snr_max ({self.snr_max} dB)")
        if self.reverb == "measured" and not self.rir_root:
            raise DnnsepError(f"{source}: reverb: measured needs rir_root, a folder of impulse responses (*.wav)")
        if self.loss_threshold is not None and not self.loss_threshold > 0:
            raise DnnsepError(f"{source}: loss_threshold must be positive (dB) or null, got {self.loss_threshold}")
        if self.sample_rate < 1:
            raise DnnsepError(f"{source}: sample_rate must be positive, got {self.sample_rate}")

    @property
    def model_class(self) -> type:
        return models.get(self.model["name"])

    @functools.cached_property
    def model_config(self) -> models.ModelConfig:
        """The model's hyper-parameters (defaults such as ``stride=None`` resolved), with the data's
        ``n_sources`` and ``sample_rate``: a frozen object, built once per config."""
        options = {k: v for k, v in self.model.items() if k != "name"}
        return self.model_class.config_class.from_dict(
            {**options, "n_sources": self.n_sources, "sample_rate": self.sample_rate}
        )

    def build_model(self) -> models.MaskingModel:
        """A new model of this config (its initial weights drawn from torch's global generator)."""
        return self.model_class(self.model_config)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in declaration order (the model section with every option resolved)."""
        return {**dataclasses.asdict(self), MODEL_KEY: dict(self.model)}

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some keys changed; a model option may be given as ``hidden=`` or ``model.hidden=``."""
        values = self.to_dict()
        for key, value in changes.items():
            target = _override_target(key, values)
            if target is None:
                raise DnnsepError(f"unknown option {key}")
            if target == MODEL_KEY + ".name" and value != values[MODEL_KEY]["name"]:
                values[MODEL_KEY] = {"name": value}
            elif target.startswith(MODEL_KEY + "."):
                values[MODEL_KEY] = {**values[MODEL_KEY], target.split(".", 1)[1]: value}
            else:
                values[target] = value
        return TrainConfig.from_dict(values, source="override")

    def identity(self) -> dict[str, Any]:
        """The keys that define the experiment (all but :data:`RUNTIME_KEYS`), with resolved model values."""
        values = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}
        if self.lr_clock == "time":  # then the budget is the schedule's length, not a pause
            values["max_minutes"] = self.max_minutes
        values[MODEL_KEY] = {"name": self.model_class.config_name, **self.model_config.to_dict()}
        return values


_TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_type(key: str, value: Any, hint: Any, source: str) -> Any:
    """Return ``value`` as type ``hint`` (int -> float allowed, '1e-3' -> float) or raise naming the key."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) is Union and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    if value is None:
        if optional:
            return None
        raise DnnsepError(f"{source}: {key} must be {_TYPE_WORDS[base]}, not null")
    if base is float and isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, base) and not (base in (int, float) and isinstance(value, bool))
    if not ok:
        raise DnnsepError(f"{source}: {key} must be {_TYPE_WORDS[base]}{' or null' if optional else ''}, got {value!r}")
    return value


def _model_section(section: Any, data: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``model:`` section checked by its model's config, every option resolved: ``{name, options...}``."""
    if not isinstance(section, dict) or not isinstance(section.get("name"), str):
        raise DnnsepError(
            f"{source}: {MODEL_KEY} must be a section with a name (one of {', '.join(models.names())}) "
            f"and the model's options, got {section!r}"
        )
    try:
        cls = models.get(section["name"])
    except DnnsepError as err:
        raise DnnsepError(f"{source}: {MODEL_KEY}.name: {err}") from None
    options = {k: v for k, v in section.items() if k != "name"}
    shared = sorted(set(options) & set(DATA_OPTIONS))
    if shared:
        raise DnnsepError(f"{source}: {MODEL_KEY}.{shared[0]}: set {shared[0]} at the top level (the data decide it)")
    unknown = sorted(set(options) - set(cls.config_class.options()))
    if unknown:
        known = [k for k in cls.config_class.options() if k not in DATA_OPTIONS]
        raise DnnsepError(f"{source}: unknown {MODEL_KEY} option(s) {', '.join(unknown)} of {cls.config_name} "
                          f"(its options: {', '.join(known)})")  # fmt: skip
    types = cls.config_class.option_types()
    for key, value in options.items():
        base, optional = types[key]
        options[key] = _check_type(f"{MODEL_KEY}.{key}", value, Optional[base] if optional else base, source)
    try:
        config = cls.config_class.from_dict(
            {**options, **{k: data[k] for k in DATA_OPTIONS if isinstance(data.get(k), int)}}
        )
    except ValueError as err:
        raise DnnsepError(f"{source}: {MODEL_KEY}: {err}") from None
    resolved = {k: v for k, v in config.to_dict().items() if k not in DATA_OPTIONS}
    return {"name": cls.config_name, **resolved}


def upgrade_flat_config(values: dict[str, Any]) -> dict[str, Any]:
    """A saved config in today's shape: the keys of :data:`ADDED_KEYS` it lacks set to "as before", and
    one of dnnsep's format 1 (DPRNN's options among the training keys) given its model section.

    Training states written by the first release (``last.pth``, format 1) hold such configs.
    """
    values = {**{k: v for k, v in ADDED_KEYS.items() if k not in values}, **values}
    if MODEL_KEY in values:
        return values
    options = [k for k in models.DPRNNConfig.options() if k not in DATA_OPTIONS]
    section = {"name": "dprnn_tasnet", **{k: values[k] for k in options if k in values}}
    return {**{k: v for k, v in values.items() if k not in options}, MODEL_KEY: section}


def _override_target(key: str, values: dict[str, Any]) -> Optional[str]:
    """Where ``--key`` goes: a training key, ``model.<option>`` (also for a bare option name), or None."""
    if key in TrainConfig.keys() and key != MODEL_KEY:
        return key
    if key == MODEL_KEY:
        return MODEL_KEY + ".name"
    option = key.split(".", 1)[1] if key.startswith(MODEL_KEY + ".") else key
    if option == "name" and key.startswith(MODEL_KEY + "."):
        return MODEL_KEY + ".name"
    options = {k for name in models.names() for k in models.get(name).config_class.options()} - set(DATA_OPTIONS)
    return f"{MODEL_KEY}.{option}" if option in options else None


# the files and the command line (.config_files), the experiment's name (.experiment), under their old names
from .config_files import (  # noqa: E402 -- they import the schema above
    corpus_args,
    load_config,
    parse_value,
    prepare_args,
    read_yaml,
    save_yaml,
    section_args,
    value_type_name,
)
from .experiment import experiment_dir  # noqa: E402

__all__ = [
    "TrainConfig",
    "corpus_args",
    "experiment_dir",
    "load_config",
    "parse_value",
    "prepare_args",
    "read_yaml",
    "save_yaml",
    "section_args",
    "upgrade_flat_config",
    "value_type_name",
]
