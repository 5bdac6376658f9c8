"""One run at a time per OUT: an exclusive, non-blocking ``flock`` on the OUT folder itself.

The lock lives on the folder's own file descriptor, so it leaves nothing in OUT, and the kernel
releases it when the process ends however it ends (``kill -9`` included): a stale lock cannot exist.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutLocked(Exception):
    """Another process holds the lock on OUT."""


@contextmanager
def locked_out(out: Path) -> Iterator[None]:
    """Hold the lock on the existing folder ``out`` for the block; :class:`OutLocked` if it is taken."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks, run unlocked
        yield
        return
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutLocked(str(out)) from None
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock (forked workers closed theirs)
