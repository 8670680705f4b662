"""Training configuration: one YAML per experiment, validated keys, ``--name value`` overrides.

The recipe's ``conf/default.yaml`` is the single source of default values: :class:`TrainConfig`
declares each key's type and meaning but no value, so a config file must give every key (directly
or through ``extends: other.yaml``, which loads that file first and lets this one override it).
Unknown keys and values of the wrong type are errors naming the file and the key.

A ``prepare:`` section, if present, holds options of the data preparation for ``run.sh``
(:func:`prepare_args`); the trainer ignores it.

Relative paths inside a config file (``dataset_dir``, ``extends``) are relative to that file's
directory; a ``--dataset_dir`` given on the command line is relative to the current directory.

>>> parse_value("lr", "1e-3"), parse_value("stride", "null"), parse_value("causal", "yes")
(0.001, None, True)
>>> value_type_name("stride"), _num(1e-3), _num(5.0), _num(0.5)
('int|null', '1e-3', '5', '0.5')
"""

# (No ``from __future__ import annotations`` here: the field types are read at run time with
# typing.get_type_hints, so they are written as Optional[...] to work on Python 3.9.)
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ..errors import DnnsepError
from ..models import DPRNNConfig

# Keys that may differ when a run is resumed: where the data is and how this machine runs it.
RUNTIME_KEYS = ("dataset_dir", "num_workers", "device", "amp", "save_every_steps", "stop_after_epoch", "max_nonfinite")
OPTIMIZERS = ("adam", "adamw")
PREPARE_KEY = "prepare"  # a config file's section of options for the data preparation (see prepare_args)


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
    num_workers: int = _key("data loading processes (0: in the training process)")
    # -- model (see dnnsep.models.DPRNNConfig) --
    n_filters: int = _key("N: encoder filters")
    kernel_size: int = _key("L: encoder window in samples")
    stride: Optional[int] = _key("encoder hop in samples (null: kernel_size // 2)")
    bottleneck: Optional[int] = _key("F: channels inside the separator (null: n_filters)")
    hidden: int = _key("H: LSTM units per layer")
    chunk_size: int = _key("K: frames per chunk")
    hop_size: int = _key("P: frames between chunk starts")
    n_blocks: int = _key("B: dual-path blocks")
    mask: str = _key("mask non-linearity", ("sigmoid", "relu", "softmax"))
    norm: Optional[str] = _key("normalisation (null: gln, or cln when causal)", ("gln", "cln"))
    causal: bool = _key("causal (streaming) model")
    encoder_activation: str = _key("encoder non-linearity", ("relu", "linear"))
    sample_rate: int = _key("sample rate in Hz (the data must match)")
    # -- optimisation --
    batch_size: int = _key("examples per step (per process under torchrun)")
    epochs: int = _key("maximum number of epochs")
    optimizer: str = _key("optimizer", OPTIMIZERS)
    lr: float = _key("initial learning rate")
    weight_decay: float = _key("weight decay")
    clip_grad_norm: float = _key("clip the gradient norm to this value (0: no clipping)")
    seed: int = _key("seed of the initial weights, the data order and dynamic mixing")
    lr_patience: int = _key("halve the learning rate after this many epochs without improvement (0: never)")
    lr_factor: float = _key("factor applied to the learning rate on a plateau")
    early_stop_patience: int = _key("stop after this many epochs without improvement (0: never)")
    # -- running (may change when resuming) --
    device: str = _key("auto, cpu, cuda, cuda:N or mps")
    amp: bool = _key("mixed precision (CUDA only)")
    save_every_steps: int = _key("also write last.pth every this many steps (0: at the end of each epoch only)")
    stop_after_epoch: Optional[int] = _key("pause (resumably) after this epoch; null: run to the end")
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
        checked = {k: _check_type(k, values[k], hints[k], source) for k in known}
        cfg = cls(**checked)
        cfg._validate(source)
        return cfg

    def _validate(self, source: str) -> None:
        for f in dataclasses.fields(self):
            choices, value = f.metadata["choices"], getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise DnnsepError(f"{source}: {f.name}={value!r} is not one of {', '.join(choices)}")
        positive = ("n_sources", "batch_size", "epochs", "max_nonfinite")
        non_negative = (
            "num_workers",
            "lr_patience",
            "early_stop_patience",
            "save_every_steps",
            "weight_decay",
            "clip_grad_norm",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise DnnsepError(f"{source}: {name} must be at least 1, got {getattr(self, name)}")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise DnnsepError(f"{source}: {name} must not be negative, got {getattr(self, name)}")
        if not self.lr > 0 or not 0 < self.lr_factor < 1:
            raise DnnsepError(f"{source}: need lr > 0 and 0 < lr_factor < 1, got {self.lr} and {self.lr_factor}")
        if self.segment_seconds is not None and not self.segment_seconds > 0:
            raise DnnsepError(f"{source}: segment_seconds must be positive or null, got {self.segment_seconds}")
        try:
            self.model_config()
        except ValueError as err:
            raise DnnsepError(f"{source}: {err}") from None

    def model_config(self) -> DPRNNConfig:
        """The model's hyper-parameters (defaults such as ``stride=None`` resolved)."""
        names = [f.name for f in dataclasses.fields(DPRNNConfig)]
        return DPRNNConfig.from_dict({k: getattr(self, k) for k in names})

    def to_dict(self) -> dict[str, Any]:
        """Plain values, in declaration order."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some keys changed."""
        return TrainConfig.from_dict({**self.to_dict(), **changes}, source="override")

    def identity(self) -> dict[str, Any]:
        """The keys that define the experiment (all but :data:`RUNTIME_KEYS`), with resolved model values."""
        values = {k: v for k, v in self.to_dict().items() if k not in RUNTIME_KEYS}
        values.update(self.model_config().to_dict())  # stride/bottleneck/norm resolved
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


# -- files and command-line overrides -----------------------------------------------------------


def read_yaml(path: Union[str, os.PathLike]) -> dict[str, Any]:
    """Read a config file, following ``extends:``; relative paths become relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise DnnsepError(f"{path}: no such config file")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DnnsepError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise DnnsepError(f"{path}: expected 'key: value' lines, found a {type(values).__name__}")
    if isinstance(values.get("dataset_dir"), str):
        values["dataset_dir"] = os.path.normpath(path.parent / os.path.expanduser(values["dataset_dir"]))
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise DnnsepError(f"{path}: extends must name a YAML file, got {base!r}")
    return {**read_yaml(path.parent / base), **values}


def load_config(path: Union[str, os.PathLike], overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """Read ``path`` (see :func:`read_yaml`), apply ``overrides`` (already typed) and validate."""
    values = read_yaml(path)
    values.pop(PREPARE_KEY, None)
    for key in overrides or {}:
        if key not in TrainConfig.keys():
            raise DnnsepError(f"unknown option --{key}")
    return TrainConfig.from_dict({**values, **(overrides or {})}, source=str(path))


def prepare_args(path: Union[str, os.PathLike]) -> list[str]:
    """The ``prepare:`` section of a config file as command-line options for ``dnnsep.bin.prepare``.

    ``{subsets: [dev-clean, dev-clean, dev-clean], segment: 2}`` -> ``['--subsets', 'dev-clean',
    'dev-clean', 'dev-clean', '--segment', '2']``; ``true`` gives a bare flag, ``false``/``null`` nothing.
    The section is the recipe's business (run.sh's prepare stage), not the trainer's.
    """
    section = read_yaml(path).get(PREPARE_KEY) or {}
    if not isinstance(section, dict):
        raise DnnsepError(f"{path}: {PREPARE_KEY} must hold 'option: value' lines, got {section!r}")
    args: list[str] = []
    for key, value in section.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) or v is None for v in values):
            raise DnnsepError(f"{path}: {PREPARE_KEY}.{key} must be a value or a list of values, got {value!r}")
        if value is None or value is False:
            continue
        args.append(f"--{key}")
        if value is not True:
            args.extend(str(v) for v in values)
    return args


def parse_value(key: str, text: str) -> Any:
    """Parse the text of ``--key text`` as that key's type (``null``/``none`` for optional keys)."""
    hint = typing.get_type_hints(TrainConfig)[key]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) is Union and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    if optional and text.lower() in ("null", "none", "~"):
        return None
    try:
        if base is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                raise ValueError(text)
            return lowered in ("true", "yes", "1", "on")
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        raise DnnsepError(f"--{key}: expected {_TYPE_WORDS[base]}, got {text!r}") from None
    return text


def value_type_name(key: str) -> str:
    """Short type description for ``--help``: ``int``, ``float|null`` ..."""
    hint = typing.get_type_hints(TrainConfig)[key]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Union:
        return "|".join("null" if a is type(None) else a.__name__ for a in args)
    return hint.__name__


def save_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (all keys, plain values, absolute dataset_dir)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# -- experiment directory ----------------------------------------------------------------------


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


def experiment_dir(cfg: TrainConfig, out_dir: Union[str, os.PathLike]) -> Path:
    """``<out_dir>/<n>mix/trainable-trainable/sisdr/<model>/<separator options>/<training>/seed<seed>``.

    - model: ``N{n_filters}_L{kernel_size}_H{hidden}_K{chunk_size}_P{hop_size}_B{n_blocks}``
    - separator options: ``S{stride}_F{bottleneck}_{mask}_{norm}_{causal|noncausal}_enc-{encoder_activation}_sr{kHz}k``
    - training: ``b{batch_size}_e{epochs}_{optimizer}-lr{lr}-decay{weight_decay}_clip{clip_grad_norm}``,
      plus ``_dm`` with dynamic mixing and ``_seg{seconds}`` when segment_seconds is set.

    Every model option appears, so two different models never share a directory.
    (``trainable-trainable``: learned encoder and decoder; ``sisdr``: the PIT SI-SDR objective.)
    """
    m = cfg.model_config()
    model = f"N{m.n_filters}_L{m.kernel_size}_H{m.hidden}_K{m.chunk_size}_P{m.hop_size}_B{m.n_blocks}"
    causal = "causal" if m.causal else "noncausal"
    separator = f"S{m.stride}_F{m.bottleneck}_{m.mask}_{m.norm}_{causal}_enc-{m.encoder_activation}"
    separator += f"_sr{_num(m.sample_rate / 1000)}k"
    training = f"b{cfg.batch_size}_e{cfg.epochs}_{cfg.optimizer}-lr{_num(cfg.lr)}-decay{_num(cfg.weight_decay)}"
    training += f"_clip{_num(cfg.clip_grad_norm)}"
    if cfg.dynamic_mixing:
        training += "_dm"
    if cfg.segment_seconds is not None:
        training += f"_seg{_num(cfg.segment_seconds)}"
    return (
        Path(out_dir)
        / f"{cfg.n_sources}mix"
        / "trainable-trainable"
        / "sisdr"
        / model
        / separator
        / training
        / (f"seed{cfg.seed}")
    )
