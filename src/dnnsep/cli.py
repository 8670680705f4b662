"""What every command-line tool shares: one-line errors instead of tracebacks, and the name it was called by.

Each tool in :mod:`dnnsep.bin` has ``get_parser()`` and ``main(argv=None) -> int`` (callable from
tests in-process) and ends with ``if __name__ == "__main__": run(main)``.  Its parser's ``prog`` is
``prog("python -m dnnsep.bin.<tool>")``: a shell front that runs it sets ``DNNSEP_PROG`` (e.g.
``DNNSEP_PROG=separate.sh``) so that help and argparse errors name the command the user typed.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, NoReturn

from .allocator import from_environment as _malloc_from_environment
from .errors import DnnsepError

PROG_VARIABLE = "DNNSEP_PROG"  # set by the shell fronts to their own name, e.g. separate.sh

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def prog(default: str) -> str:
    """The name help and usage messages give the tool: ``$DNNSEP_PROG`` when a shell front set it, else ``default``.

    >>> os.environ.pop(PROG_VARIABLE, None) and None
    >>> prog("python -m dnnsep.bin.separate")
    'python -m dnnsep.bin.separate'
    """
    name = printable(os.environ.get(PROG_VARIABLE, "")).strip()
    return name or default


def printable(text: object, *, limit: int = 500) -> str:
    """``str(text)`` on one line: control characters (terminal escape codes, newlines) become ``?``.

    For anything taken from a file or another process before it is printed.

    >>> printable("evil\\x1b[2Jname\\nline two")
    'evil?[2Jname?line two'
    """
    return "".join(c if c.isprintable() else "?" for c in str(text))[:limit]


def os_error(err: OSError, path: str | os.PathLike | None = None) -> DnnsepError:
    """A one-line :class:`DnnsepError` for a failed file operation, naming the path and what to do.

    ``path`` is used when the error names no file (e.g. a failed write to an open file).
    """
    where = err.filename if err.filename is not None else path
    where = printable(os.fsdecode(where)) if where is not None else "file system"
    code = err.errno
    if code in _DISK_FULL:
        free = _free_space(where)
        return DnnsepError(f"{where}: no space left on device{free}; free some space or write elsewhere, then rerun")
    if code == errno.EROFS:
        return DnnsepError(f"{where}: read-only file system; choose a writable folder")
    if code in (errno.EACCES, errno.EPERM):
        return DnnsepError(f"{where}: permission denied; choose a folder you can write to")
    if code == errno.ENOTDIR:
        return DnnsepError(f"{where}: part of this path is a file, not a directory")
    if code == errno.EISDIR:
        return DnnsepError(f"{where}: is a directory, not a file")
    if code == errno.EEXIST:
        return DnnsepError(f"{where}: already exists (a file where a directory is needed?)")
    reason = err.strerror or type(err).__name__
    return DnnsepError(f"{where}: {printable(reason, limit=200)}")


def _free_space(where: str) -> str:
    path = Path(where)
    for folder in (path, *path.parents):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            continue
        return f" ({free / 1024:.0f} KiB free)" if free < 1 << 20 else f" ({free / 1024**2:.1f} MiB free)"
    return ""


def need_directory(path: str | os.PathLike, *, what: str) -> Path:
    """``path`` as a Path, refusing (one line) a path that exists and is not a directory."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise DnnsepError(f"{path}: is a file, not a directory ({what})")
    for parent in path.parents:  # a file where a folder of the path should be
        if parent.exists():
            if not parent.is_dir():
                raise DnnsepError(f"{parent}: is a file, not a directory (in {what} {path})")
            break
    return path


def need_writable_directory(path: str | os.PathLike, *, what: str) -> Path:
    """:func:`need_directory`, proved writable by a file written (and removed) in it or, where it does
    not exist yet, in its nearest existing parent; nothing is created."""
    import tempfile

    path = need_directory(path, what=what)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise DnnsepError(f"{path}: cannot write there ({err.strerror or err}); choose another {what}") from None
    return path


def check_number(
    option: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    allow: Sequence[float] = (),
) -> None:
    """Refuse (one line, naming ``option``) a NaN, infinite or out-of-range value.

    ``low``/``high`` bound the value (inclusive; ``low_open``: ``> low``); values in ``allow``
    (e.g. ``0`` for "off") pass whatever the bounds.

    >>> check_number("--overlap", float("nan"), low=0, high=0.5, low_open=True)
    Traceback (most recent call last):
    ...
    dnnsep.errors.DnnsepError: --overlap must be a finite number in (0, 0.5], got nan
    """
    if value in allow and math.isfinite(value):
        return
    ok = math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or value <= high)
    if not ok:
        lo = "(-inf" if low is None else f"({low:g}" if low_open else f"[{low:g}"
        hi = "inf)" if high is None else f"{high:g}]"
        extra = "".join(f" or {a:g}" for a in allow)
        raise DnnsepError(f"{option} must be a finite number in {lo}, {hi}{extra}, got {value}")


def run(main: Callable[[Sequence[str] | None], int | None]) -> NoReturn:
    """Call ``main()``; print a :class:`DnnsepError` as ``error: ...`` and exit 2, Ctrl-C as 130.

    A file-system error that reached here (disk full, read-only, permission denied, a file where a
    folder should be) is printed the same way, on one line naming the path.  Messages are printed
    without control characters, so text from a file cannot drive the terminal.

    First, with ``DNNSEP_MALLOC=reuse`` set, glibc is told to keep freed memory (:mod:`dnnsep.allocator`).
    """
    _malloc_from_environment()
    try:
        code = main(None)
    except DnnsepError as err:
        print(f"error: {printable(err, limit=2000)}", file=sys.stderr)
        code = 2
    except OSError as err:  # the user's disk or paths, not a bug: one line, no traceback
        print(f"error: {printable(os_error(err), limit=2000)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
