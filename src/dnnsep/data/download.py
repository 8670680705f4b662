"""Downloads that survive a flaky connection: HTTP Range resume, md5 checks, one-line errors.

:func:`download` writes ``<dest>.part`` and renames it to ``<dest>`` once complete; a rerun after
an interruption asks the server only for the missing bytes (``Range: bytes=N-``).  Only the
standard library is used (``urllib``), so it works wherever Python does.

>>> parse_md5sum("42e2234ba48799c1f50f24a7926300a1  dev-clean.tar.gz\\n", source="md5sum.txt")
{'dev-clean.tar.gz': '42e2234ba48799c1f50f24a7926300a1'}
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .. import __version__
from ..errors import DnnsepError

CHUNK = 1 << 20  # bytes per read/write
BACKOFF_S = 2.0  # first wait before retrying an interrupted download; doubles each time, at most 30 s
USER_AGENT = f"dnnsep/{__version__} (python-urllib)"
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class _Interrupted(Exception):
    """The connection broke mid-transfer (retryable)."""


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``.

    >>> human_bytes(6387309499)
    '5.9 GiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is 'no space left on device' (or a quota)."""
    return isinstance(err, OSError) and err.errno in _DISK_FULL


def check_free_space(directory: str | os.PathLike, needed: int, *, what: str) -> None:
    """Raise a one-line :class:`DnnsepError` when ``directory`` has less than ``needed`` bytes free."""
    directory = Path(directory)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise DnnsepError(
            f"{directory}: not enough free space for {what} (needs {human_bytes(needed)}, "
            f"{human_bytes(free)} free); free some space or choose another DATASET_DIR, then rerun"
        )


def md5sum(path: str | os.PathLike, *, progress: bool = True) -> str:
    """The hex md5 of a file, read in 1 MiB chunks (with a progress bar for big files)."""
    path = Path(path)
    digest = hashlib.md5(usedforsecurity=False)
    size = path.stat().st_size
    with open(path, "rb") as f, _bar(size, 0, f"md5 {path.name}", progress and size > 64 * CHUNK) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, expected: str, *, progress: bool = True) -> None:
    """Check ``path`` against ``expected``; on a mismatch delete it and raise a one-line error."""
    path = Path(path)
    got = md5sum(path, progress=progress)
    if got != expected.lower():
        path.unlink()
        raise DnnsepError(
            f"{path}: md5 mismatch (got {got}, expected {expected}): the file is corrupt and was deleted; "
            "rerun to download it again (if this repeats, the server's copy is bad: try --mirror)"
        )


def parse_md5sum(text: str, *, source: str) -> dict[str, str]:
    """Parse ``md5sum`` output (``<32 hex>  <name>`` or ``<32 hex> *<name>`` per line) into ``{name: md5}``."""
    sums = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"\s*([0-9a-fA-F]{32})\s+\*?(.+?)\s*", line)
        if not match:
            raise DnnsepError(f"{source}: line {lineno} is not in md5sum format ('<md5>  <file name>'): {line[:80]!r}")
        sums[match.group(2).split("/")[-1]] = match.group(1).lower()
    return sums


def fetch_text(url: str, *, timeout: float = 60.0, retries: int = 3) -> str:
    """A small text file (e.g. ``md5sum.txt``), with the same errors and retries as :func:`download`."""
    for attempt in range(retries + 1):
        try:
            with _open(url, 0, timeout) as resp:
                return resp.read().decode("utf-8", errors="replace")
        except (_Interrupted, OSError, http.client.HTTPException) as err:
            if attempt == retries:
                raise DnnsepError(f"{url}: download failed ({_reason(err)}); check your connection and rerun") from None
            time.sleep(min(BACKOFF_S * 2**attempt, 30))
    raise AssertionError  # unreachable


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    space_factor: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest`` through ``<dest>.part``, resuming that file if it exists.

    A broken connection is retried ``retries`` times (each retry resumes, waiting 2, 4, 8... s);
    after that the one-line error says to rerun, which resumes too.  Before fetching, the folder
    must have room for the missing bytes plus ``(space_factor - 1)`` times the file's size (e.g.
    to extract it afterwards).  Returns ``dest``.
    """
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, timeout=timeout, progress=progress, space_factor=space_factor)
            break
        except _Interrupted as err:
            if attempt >= retries:
                have = part.stat().st_size if part.exists() else 0
                raise DnnsepError(
                    f"{url}: download interrupted after {human_bytes(have)} ({err}); "
                    f"rerun to resume it from {part}" + ("" if have else " (check your connection)")
                ) from None
            attempt += 1
            wait = min(BACKOFF_S * 2 ** (attempt - 1), 30)
            print(f"{dest.name}: {err}; retrying in {wait:.0f} s ({attempt}/{retries})", file=sys.stderr)
            time.sleep(wait)
    os.replace(part, dest)
    return dest


def _fetch_once(url: str, part: Path, *, timeout: float, progress: bool, space_factor: float) -> None:
    """One HTTP request that appends the missing bytes to ``part``; raises :class:`_Interrupted`."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to fetch: `part` is complete (or longer than the file)
            total = _content_range_total(err.headers.get("Content-Range", ""))
            if total == offset:
                return
            part.unlink()
            raise _Interrupted(f"partial file {part.name} is longer than the server's; restarting") from None
        raise
    with resp:
        if offset and resp.status == 206:
            start = _content_range_start(resp.headers.get("Content-Range", ""))
            if start != offset:  # appending would corrupt the file: stop, and say how to start over
                got = "without saying which bytes" if start is None else f"with bytes from {start}"
                raise DnnsepError(
                    f"{url}: the server answered the request to resume at byte {offset} {got}; "
                    f"delete the partial file {part} and rerun to download it from the start"
                )
            mode = "ab"
        else:  # 200: a fresh download, or a server that ignores Range
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is not None:
            what = f"downloading {part.name[: -len('.part')]}" + (" and extracting it" if space_factor > 1 else "")
            check_free_space(part.parent, int(total - offset + (space_factor - 1) * total), what=what)
        try:
            with open(part, mode) as f, _bar(total, offset, part.name[: -len(".part")], progress) as bar:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as err:
                        raise _Interrupted(_reason(err)) from None
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        except OSError as err:
            if is_disk_full(err):
                raise DnnsepError(
                    f"{part}: disk full while downloading ({human_bytes(shutil.disk_usage(part.parent).free)} free); "
                    "free some space and rerun: the download resumes where it stopped"
                ) from None
            raise
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Interrupted(f"connection closed at {human_bytes(size)} of {human_bytes(total)}")
    if total is not None and size > total:
        part.unlink()
        raise DnnsepError(f"{url}: got more bytes than announced ({size} > {total}); deleted {part}, rerun")


def _open(url: str, offset: int, timeout: float):
    """``urlopen`` with a Range header from ``offset``; turns network failures into one-line errors."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            raise  # handled by the caller
        if err.code >= 500 or err.code == 429:
            raise _Interrupted(f"HTTP {err.code} {err.reason}") from None
        raise DnnsepError(f"{url}: HTTP {err.code} {err.reason}; check the address (and --mirror)") from None
    except (OSError, http.client.HTTPException) as err:  # URLError, refused, timeout, DNS failure
        raise _Interrupted(f"cannot reach the server: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or err
    text = str(reason).strip() or type(reason).__name__
    return text.splitlines()[0][:200]


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-", value.strip())
    return int(match.group(1)) if match else None


def _content_range_total(value: str) -> int | None:
    match = re.search(r"/(\d+)\s*$", value.strip())
    return int(match.group(1)) if match else None


def _bar(total: int | None, initial: int, desc: str, progress: bool) -> tqdm:
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not progress,
        mininterval=0.5,
        file=sys.stderr,
        leave=False,
    )
