"""Safe checkpoint I/O: atomic writes, and loading that never runs code from the file.

Checkpoints hold plain values only (dicts, lists, numbers, strings, tensors), so they load with
``torch.load(..., weights_only=True)``; a file from the internet cannot execute anything.  Allowed
besides, because published models' metadata hold them (asteroid's ``infos``): numpy scalars, each a
number rebuilt from its dtype and bytes, and ``torch.__version__``, a string (:func:`metadata_globals`).

Every atomic write of this toolkit goes through a hidden temporary beside its target,
``.<name>.<host>-<pid>-<random>.tmp`` (:func:`temporary_path`); a writer killed mid-write leaves
one behind, which :func:`remove_stale_temporaries` deletes at the next start in that folder once
its writer is known to be dead (never a live writer's file).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import pickle
import re
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.torch_version import TorchVersion

from .errors import CheckpointError
from .locking import host_tag, process_alive

# .<name>.<host>-<pid>-<random>.tmp; older versions wrote .<name>.<random>.tmp (no writer recorded)
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?[A-Za-z0-9_]{6,16}\.tmp")
_FULL_BELOW = 1 << 20  # torch.save failing with less free space than this: the disk is full
STALE_AGE_S = 600.0  # a temporary whose writer cannot be checked (another host, old name) is stale after this


def temporary_path(path: str | os.PathLike) -> Path:
    """A new hidden temporary name beside ``path`` that records this writer: ``.<name>.<host>-<pid>-<hex>.tmp``."""
    path = Path(path)
    return path.parent / f".{path.name}.{host_tag()}-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def create_temporary(path: str | os.PathLike) -> str:
    """Create (exclusively, empty, with the usual permissions under the umask) a :func:`temporary_path` for ``path``."""
    while True:
        tmp = str(temporary_path(path))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def is_stale_temporary(path: str | os.PathLike, *, now: float | None = None, max_age: float = STALE_AGE_S) -> bool:
    """Whether ``path`` is a temporary of this toolkit that no live writer will finish.

    Its writer is recorded in the name: on this host it is stale once that pid is gone; from
    another host (or with an older name) once it has not been written to for ``max_age`` seconds.
    """
    path = Path(path)
    match = _TEMPORARY.fullmatch(path.name)
    if match is None:
        return False
    try:
        info = path.lstat()
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if match.group("host") == host_tag() and match.group("pid") is not None:
        return int(match.group("pid")) != os.getpid() and not process_alive(int(match.group("pid")))
    return (time.time() if now is None else now) - info.st_mtime > max_age


def remove_stale_temporaries(folder: str | os.PathLike, *, quiet: bool = False) -> list[Path]:
    """Delete the stale temporaries (:func:`is_stale_temporary`) directly in ``folder``; returns them.

    Says how many on stderr unless ``quiet``.  A missing folder, or one that cannot be listed, has none.
    """
    folder = Path(folder)
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".tmp")]
    except OSError:
        return []
    removed, now = [], time.time()
    for name in names:
        path = folder / name
        if is_stale_temporary(path, now=now):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError:  # read-only or someone else's: leave it
                continue
            removed.append(path)
    if removed and not quiet:
        print(
            f"note: removed {len(removed)} unfinished temporary file(s) of an interrupted run in {folder}",
            file=sys.stderr,
        )
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    A failure during ``write`` leaves any previous ``path`` untouched and no stray file; a kill
    leaves the previous ``path`` and a temporary that :func:`remove_stale_temporaries` recognises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temporary(path)  # made with mode 0666 under the umask: the usual permissions
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` written atomically (see :func:`atomic_write`), every tensor moved to the CPU first
    (:func:`on_cpu`), so that a checkpoint written on a GPU loads with a plain ``torch.load`` anywhere.

    A full disk is an ``OSError`` (ENOSPC) naming ``path``: torch's own writer reports it as an
    obscure ``RuntimeError`` from its zip writer (``inline_container.cc``).
    """
    obj = on_cpu(obj)
    atomic_write(path, lambda tmp: _torch_save(obj, tmp, path))


def on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (in dicts, lists and tuples, at any depth) on the CPU; CPU tensors
    and other values are kept as they are, not copied."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.detach().to("cpu")
    if isinstance(obj, dict):
        return type(obj)((k, on_cpu(v)) for k, v in obj.items()) if type(obj) in _MAPPINGS else obj
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


_MAPPINGS = (dict, collections.OrderedDict)


def _torch_save(obj: Any, tmp: str, path: str | os.PathLike) -> None:
    try:
        torch.save(obj, tmp)
    except RuntimeError as err:
        if shutil.disk_usage(os.path.dirname(tmp) or ".").free < _FULL_BELOW:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from err
        raise


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with _allowing(metadata_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # holds pickled objects (or is no torch file at all)
        raise CheckpointError(_unpickling_message(path, err)) from None
    except Exception as err:  # corrupt, truncated, not a torch file
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable dnnsep checkpoint ({_printable(reason)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not a dnnsep checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    return ckpt


def _allowing(extra: list) -> contextlib.AbstractContextManager:
    """``torch.serialization.safe_globals(extra)``; nothing more allowed on torch < 2.5, which lacks it."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(extra) if allow is not None else contextlib.nullcontext()


def metadata_globals() -> list:
    """What ``torch.load(weights_only=True)`` may rebuild here besides plain values and tensors.

    A numpy scalar pickles as ``scalar(dtype, bytes)``; files written under numpy 1 name the
    function ``numpy.core.multiarray.scalar``, under numpy 2 ``numpy._core.multiarray.scalar``; a
    dtype is rebuilt as ``numpy.dtype(code)``, then given its byte order (under numpy 2 an instance
    of ``numpy.dtypes.Float64DType`` and the like: the numeric ones are allowed, not objects or strings).
    ``torch.__version__`` (asteroid's ``infos`` store it) is a ``TorchVersion``, a ``str`` subclass
    rebuilt from its text.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    numeric = [f"{kind}DType" for kind in _NUMERIC_DTYPES]
    dtypes = [(getattr(np.dtypes, n), f"numpy.dtypes.{n}") for n in numeric if hasattr(getattr(np, "dtypes", None), n)]
    return [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        (np.dtype, "numpy.dtype"),
        *dtypes,
        (TorchVersion, "torch.torch_version.TorchVersion"),
    ]


_NUMERIC_DTYPES = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
_NUMERIC_DTYPES += ("Float16", "Float32", "Float64", "Complex64", "Complex128")


def _unpickling_message(path: Path, err: Exception) -> str:
    """Refusing a file that holds pickled objects: what it holds, and torch's warning about running such files.

    Never suggests loading it unsafely: dnnsep checkpoints hold plain values only.
    """
    text = str(err)
    what = ""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?: was not an allowed global| Please|\n\n|$)", text, re.S)
    if match:
        what = f" ({_printable(' '.join(match.group(1).split()))})"
    elif text.strip():
        what = f" ({_printable(text.strip().splitlines()[0])})"
    if "Unsupported global" in text:
        held = f"it holds pickled Python objects{what}, not only plain values and tensors"
    else:
        held = f"it is not a checkpoint of plain values and tensors{what}"
    return (
        f"{path}: not a readable dnnsep checkpoint: {held}. Loading such a file can result in arbitrary "
        "code execution: do it only if you got the file from a trusted source. dnnsep checkpoints hold "
        "{model_name, model_args, state_dict}; re-save the model that way from a copy you trust"
    )


def _printable(text: str, limit: int = 200) -> str:
    """One line without control characters (terminal escape codes from the file), at most ``limit`` characters."""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]
