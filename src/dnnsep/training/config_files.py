"""Config files and the command line: reading YAML with ``extends:``, a file's sections, ``--key value``.

The schema (:class:`~dnnsep.training.config.TrainConfig`: each key's type, meaning and checks) is in
:mod:`.config`; this module reads files and typed overrides into it; the experiment directory named
from a config is in :mod:`.experiment`.

>>> parse_value("lr", "1e-3"), parse_value("segment_seconds", "null"), parse_value("dynamic_mixing", "yes")
(0.001, None, True)
>>> parse_value("model.stride", "null", model="dprnn_tasnet"), parse_value("causal", "on", model="dprnn_tasnet")
(None, True)
>>> value_type_name("segment_seconds")
'float|null'
"""

# (No ``from __future__ import annotations``, as in .config: types are read at run time.)
import math
import os
import typing
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from .. import models
from ..errors import DnnsepError
from .config import _TYPE_WORDS, CORPUS_KEY, MODEL_KEY, PREPARE_KEY, TrainConfig, _override_target


def read_yaml(path: Union[str, os.PathLike], _seen: tuple = ()) -> dict[str, Any]:
    """Read a config file, following ``extends:``; relative paths become relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise DnnsepError(f"{path}: no such config file" + (f" (extended by {_seen[-1]})" if _seen else ""))
    if path.resolve() in _seen:
        chain = " -> ".join(p.name for p in (*_seen, path.resolve()))
        raise DnnsepError(f"{path}: extends itself ({chain}); remove one of the extends: lines")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DnnsepError(f"{path}: not UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as err:
        raise DnnsepError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except OSError as err:
        raise DnnsepError(f"{path}: cannot be read ({err.strerror or err})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise DnnsepError(f"{path}: expected 'key: value' lines, found a {type(values).__name__}")
    for key in ("dataset_dir", "rir_root", "noise_root"):
        if isinstance(values.get(key), str):
            values[key] = os.path.normpath(path.parent / os.path.expanduser(values[key]))
    base = values.pop("extends", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise DnnsepError(f"{path}: extends must name a YAML file, got {base!r}")
    parent = read_yaml(path.parent / base, (*_seen, path.resolve()))
    merged = {**parent, **values}
    below, here = parent.get(MODEL_KEY), values.get(MODEL_KEY)
    if isinstance(below, dict) and isinstance(here, dict) and here.get("name", below.get("name")) == below.get("name"):
        merged[MODEL_KEY] = {**below, **here}  # the same model: options merge
    return merged


def load_config(path: Union[str, os.PathLike], overrides: Optional[dict[str, Any]] = None) -> TrainConfig:
    """Read ``path`` (see :func:`read_yaml`), apply ``overrides`` (already typed) and validate."""
    values = read_yaml(path)
    values.pop(PREPARE_KEY, None)
    values.pop(CORPUS_KEY, None)
    section = dict(values.get(MODEL_KEY) or {}) if isinstance(values.get(MODEL_KEY), dict) else values.get(MODEL_KEY)
    for key, value in (overrides or {}).items():
        target = _override_target(key, values)
        if target is None:
            raise DnnsepError(f"unknown option --{key}")
        if target == MODEL_KEY + ".name" and isinstance(section, dict) and value != section.get("name"):
            section = {}  # another model: its own defaults
        if target.startswith(MODEL_KEY + "."):
            section = section if isinstance(section, dict) else {}
            section[target.split(".", 1)[1]] = value
        else:
            values[target] = value
    if section is not None:
        values[MODEL_KEY] = section
    return TrainConfig.from_dict(values, source=str(path))


def prepare_args(path: Union[str, os.PathLike]) -> list[str]:
    """The ``prepare:`` section of a config file as command-line options for ``dnnsep.bin.prepare``.

    ``{subsets: [dev-clean, dev-clean, dev-clean], segment: 2}`` -> ``['--subsets', 'dev-clean',
    'dev-clean', 'dev-clean', '--segment', '2']``; ``true`` gives a bare flag, ``false``/``null`` nothing.
    The section is the recipe's business (run.sh's prepare stage), not the trainer's.
    """
    return section_args(path, PREPARE_KEY)


def corpus_args(path: Union[str, os.PathLike]) -> list[str]:
    """The ``corpus:`` section (options of the corpus's data script, e.g. ``synthetic_speakers: 20``) as
    command-line options, like :func:`prepare_args`."""
    return section_args(path, CORPUS_KEY)


def section_args(path: Union[str, os.PathLike], key: str) -> list[str]:
    """A config file's section of ``option: value`` lines as ``--option value`` arguments."""
    section = read_yaml(path).get(key) or {}
    if not isinstance(section, dict):
        raise DnnsepError(f"{path}: {key} must hold 'option: value' lines, got {section!r}")
    args: list[str] = []
    for name, value in section.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) or v is None for v in values):
            raise DnnsepError(f"{path}: {key}.{name} must be a value or a list of values, got {value!r}")
        if value is None or value is False:
            continue
        args.append(f"--{name}")
        if value is not True:
            args.extend(str(v) for v in values)
    return args


def parse_value(key: str, text: str, *, model: Optional[str] = None) -> Any:
    """Parse the text of ``--key text`` as that key's type (``null``/``none`` for optional keys).

    A model option (``model.hidden`` or ``hidden``) takes its type from ``model``'s config.
    """
    base, optional = _key_type(key, model)
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
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
    except ValueError:
        raise DnnsepError(f"--{key}: expected {_TYPE_WORDS[base]}, got {text!r}") from None
    return text


def _key_type(key: str, model: Optional[str]) -> tuple[type, bool]:
    """``(type, may be null)`` of a training key or of a model option."""
    if key in TrainConfig.keys() and key != MODEL_KEY:
        hint = typing.get_type_hints(TrainConfig)[key]
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) is Union and type(None) in args
        return (next(a for a in args if a is not type(None)) if optional else hint), optional
    option = key.split(".", 1)[1] if key.startswith(MODEL_KEY + ".") else key
    if option == "name" or key == MODEL_KEY:
        return str, False
    types = models.get(model or "dprnn_tasnet").config_class.option_types()
    if option not in types:
        raise DnnsepError(f"--{key}: not an option of {model or 'dprnn_tasnet'}")
    return types[option]


def value_type_name(key: str) -> str:
    """Short type description for ``--help``: ``int``, ``float|null`` ..."""
    base, optional = _key_type(key, None)
    return base.__name__ + ("|null" if optional else "")


def save_yaml(cfg: TrainConfig) -> str:
    """The resolved config as YAML text (all keys, plain values, absolute dataset_dir)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
