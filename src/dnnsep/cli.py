"""What every command-line tool shares: one-line errors instead of tracebacks.

Each tool in :mod:`dnnsep.bin` has ``get_parser()`` and ``main(argv=None) -> int`` (callable from
tests in-process) and ends with ``if __name__ == "__main__": run(main)``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Callable, NoReturn

from .allocator import from_environment as _malloc_from_environment
from .errors import DnnsepError


def run(main: Callable[[Sequence[str] | None], int | None]) -> NoReturn:
    """Call ``main()``; print a :class:`DnnsepError` as ``error: ...`` and exit 2, Ctrl-C as 130.

    First, with ``DNNSEP_MALLOC=reuse`` set, glibc is told to keep freed memory (:mod:`dnnsep.allocator`).
    """
    _malloc_from_environment()
    try:
        code = main(None)
    except DnnsepError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)
