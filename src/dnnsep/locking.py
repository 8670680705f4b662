"""One writer per folder: an advisory lock on ``<folder>/.lock`` that names its holder.

    with hold(dataset_dir, what="dataset folder"):
        ...  # a second process (prepare, a trainer) trying the same folder fails at once

The lock is ``fcntl.flock`` on ``<folder>/.lock``, which the kernel releases when its holder
exits, however it exits.  The file holds the holder's pid, host, command and start time (JSON),
so a refusal says which process to wait for or stop: ``<folder> is in use by pid 1234 on host
(python -m dnnsep.bin.prepare ...), since 2024-05-01 12:00:00``.

A lock whose recorded holder is dead on this host is *stale* and is taken over with a note on
stderr: either nothing holds the flock any more (its holder was killed) or a child that inherited
the descriptor (a forked worker outliving its parent) still does; in that case the old file is
removed and a new one locked.  Locks held from another host are never broken.

The file is left in place on release (emptied): removing it would let two processes lock two
different files.  Advisory only: it guards against a second dnnsep tool, not against ``rm``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DnnsepError

LOCK_NAME = ".lock"


def hostname() -> str:
    return socket.gethostname() or "localhost"


def host_tag() -> str:
    """Eight hex digits naming this host (in temporary file names, see :mod:`dnnsep.checkpoint`)."""
    return f"{zlib.crc32(hostname().encode()):08x}"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (an exited, unreaped child)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):  # no /proc (macOS): os.kill's answer stands
        return True


@contextlib.contextmanager
def hold(path_dir: str | os.PathLike, what: str = "experiment") -> Iterator[Path]:
    """Hold the lock of folder ``path_dir`` (made if missing) for the ``with`` block; yields the lock file.

    Raises a one-line :class:`DnnsepError` at once when another live process holds it; ``what``
    names the folder's role in that message ("experiment", "dataset folder").
    """
    folder = Path(path_dir)
    if folder.exists() and not folder.is_dir():
        raise DnnsepError(f"{folder}: is a file, not a directory ({what})")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(folder, path, what)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # released cleanly: nothing to report to the next holder
        os.close(fd)  # releases the flock


def _acquire(folder: Path, path: Path, what: str) -> int:
    """Open and flock ``path``; take over a stale lock; return the descriptor."""
    for _ in range(5):  # a few rounds: another process may break or replace the file meanwhile
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held: by a live process (refuse), or by an orphan of a dead one (break)
            holder = _read(fd)
            if not _stale(holder):
                os.close(fd)
                raise DnnsepError(
                    f"{folder}: {what} in use by {_describe(holder)}; wait for it to finish or stop it"
                ) from None
            # the recorded holder is dead, but a process that inherited its descriptor holds the flock
            _note(
                folder,
                f"the lock's holder, {_describe(holder)}, is no longer running but a process it "
                "started still holds the lock's descriptor; breaking the lock",
            )
            with contextlib.suppress(FileNotFoundError):
                if _same_file(fd, path):
                    path.unlink()
            os.close(fd)
            continue
        if not _same_file(fd, path):  # the file was replaced while we waited for it: lock the new one
            os.close(fd)
            continue
        previous = _read(fd)
        if previous.get("pid"):
            _note(folder, f"taking over the lock left by {_describe(previous)}, which no longer holds it")
        _write(fd, path)
        return fd
    raise DnnsepError(f"{path}: could not take the lock (other processes keep replacing it); try again")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _write(fd: int, path: Path) -> None:
    info = {
        "pid": os.getpid(),
        "host": hostname(),
        "command": " ".join([Path(sys.executable).name, *sys.argv])[:500],
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    data = (json.dumps(info) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        raise


def _read(fd: int) -> dict[str, Any]:
    """The holder's record, ``{}`` when empty or unreadable (a holder still writing it, or an old file)."""
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8", errors="replace")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    pid = info.get("pid")
    info["pid"] = pid if isinstance(pid, int) and not isinstance(pid, bool) else None
    return info


def _stale(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder is a process of this host that no longer runs."""
    return holder.get("pid") is not None and holder.get("host") == hostname() and not process_alive(holder["pid"])


def _describe(holder: dict[str, Any]) -> str:
    if holder.get("pid") is None:
        return "another process (it has not said which yet)"
    text = f"pid {holder['pid']} on {holder.get('host', '?')}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    if holder.get("since"):
        text += f", since {holder['since']}"
    return "".join(c if c.isprintable() else "?" for c in text)[:600]


def _note(folder: Path, message: str) -> None:
    print(f"note: {folder}: {message}", file=sys.stderr)
