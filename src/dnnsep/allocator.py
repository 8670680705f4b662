"""Opt-in: keep freed memory in the process for reuse (Linux with glibc), trading resident memory for speed.

glibc's malloc serves a block above its mmap threshold (128 KB at first, raised automatically up to
32 MB) with a fresh ``mmap`` and unmaps it on ``free``; threads other than the main one get arenas
of their own that give memory back eagerly.  PyTorch on CPU allocates and frees tensors of several
megabytes in every layer of every step, so the same memory is mapped again and again and each fresh
4 KB page costs a page fault.  :func:`keep_freed_memory` tells glibc (``mallopt``) to serve blocks of
up to ``limit`` bytes from one heap shared by all threads and to keep up to ``limit`` bytes free at
its top, as preloading jemalloc or tcmalloc does in PyTorch's CPU performance guide.

It makes CPU training steps faster but the process keeps what it once used (``bench/bench_model.py
--malloc``; the figures are in docs/benchmarks.md).  Hence opt-in: the command-line tools
call it when ``DNNSEP_MALLOC=reuse`` is set (:func:`dnnsep.cli.run`).  Off Linux or glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # from glibc's <malloc.h>
ENV = "DNNSEP_MALLOC"  # "reuse": the command-line tools call keep_freed_memory() at start


def keep_freed_memory(limit: int = 1 << 30) -> bool:
    """Make glibc reuse freed memory of blocks up to ``limit`` bytes (see the module doc).

    Returns True if glibc took the settings, False where there is no glibc (macOS, musl).  Call it
    first thing: the one-heap setting applies only to threads that have not allocated yet.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl's mallopt is a stub)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    limit = min(int(limit), 2**31 - 1)  # mallopt takes an int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, limit), (_M_TRIM_THRESHOLD, limit))
    return all([mallopt(param, value) == 1 for param, value in settings])


def from_environment() -> bool:
    """Call :func:`keep_freed_memory` if ``DNNSEP_MALLOC=reuse``; True if that took effect."""
    value = os.environ.get(ENV, "")
    if value not in ("", "default", "reuse"):
        print(f"warning: {ENV}={value!r} ignored: use 'reuse' or 'default'", file=sys.stderr)
    return value == "reuse" and keep_freed_memory()
