"""Atomic writes shared by the migration, the reports and the launcher: a whole file or none.

Temporary names are unique to the run (a random token drawn once per process, then a counter) and
each temporary file is created with ``O_EXCL``: no file a user has, nor one another run is writing,
can be taken for ours, and a run only ever deletes the temporaries it created itself.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary files carry this name, so the mirror can recognise (and not copy) what a `kill -9` left.
TEMP_PREFIX = ".transplant-"
TEMP_SUFFIX = ".tmp"

_RUN_TOKEN = secrets.token_hex(8)
_counter = itertools.count()


_TEMP_NAME = re.compile(r"\.transplant-[0-9a-f]{16}-[0-9]+-[0-9]+\.tmp")


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of our temporary names (left by a run that was killed outright)."""
    return _TEMP_NAME.fullmatch(name) is not None


def temp_name() -> str:
    """A temporary file name no other file can have: this run's token and a fresh number."""
    return f"{TEMP_PREFIX}{_RUN_TOKEN}-{os.getpid()}-{next(_counter)}{TEMP_SUFFIX}"


@contextmanager
def atomic_path(target: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; what the block writes there replaces ``target`` whole.

    The name is chosen before the file exists and the file is only created inside the block: an
    interrupt (KeyboardInterrupt, or SIGTERM which the CLI turns into one) at any point leaves no
    temporary file and no half-written ``target``. ``mode`` is applied before the rename. An I/O error
    on the temporary file (disk full, ...) is re-raised naming ``target``, the file the user knows.
    """
    tmp = target.parent / temp_name()
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None or os.fspath(exc.filename) == os.fspath(tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(target)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_symlink(target: Path, link_text: str) -> None:
    """Create (or replace) the symlink ``target`` -> ``link_text`` in one rename."""
    with atomic_path(target) as tmp:
        os.symlink(link_text, tmp)
