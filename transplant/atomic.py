"""Atomic writes shared by the migration, the reports and the launcher: a whole file or none."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Temporary files carry this name, so a later `--force` run can remove what a `kill -9` left behind.
TEMP_PREFIX = ".transplant-"
TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(target: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; what the block writes there replaces ``target`` whole.

    The name is chosen before the file exists and the file is only created inside the block: an
    interrupt (KeyboardInterrupt, or SIGTERM which the CLI turns into one) at any point leaves no
    temporary file and no half-written ``target``. ``mode`` is applied before the rename.
    """
    tmp = target.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
