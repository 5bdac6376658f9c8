"""The report formats: column lists of every CSV transplant writes, and the one CSV writer.

Torch-free and rewriter-free on purpose: the offline reports (``transplant.report``) and auto mode's
runtime change log (``transplant.auto._record``) both write ``change_list.csv``-style tables, so the
columns are defined here once and both go through :func:`write_csv` (the standard library ``csv``
module, atomically via :mod:`transplant.atomic`).

The first five columns of ``change_list.csv`` are Huawei msFmkTransplt's, so scripts written for its
reports keep working; ours follow.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from transplant.atomic import atomic_path

# "Cell" is empty except for notebooks ("cell 3, line 2"; Start/End Line are then lines of that cell).
CHANGE_COLUMNS = ["File", "Start Line", "End Line", "Operation Type", "Message",
                  "Cell", "Column", "Rule", "Severity", "Before", "After"]
#: auto mode's change log: change_list.csv's columns plus how often the change happened at run time.
AUTO_CHANGE_COLUMNS = [*CHANGE_COLUMNS, "Count"]
UNSUPPORTED_COLUMNS = ["File", "Start Line", "End Line", "OP", "Tips", "Cell", "Rule"]
NATIVE_OP_COLUMNS = ["File", "Api", "Line"]


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The CSV text of a table: header first, minimal quoting, ``\\n`` line ends, ``None`` as empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} values for {len(columns)} columns: {row!r}")
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def write_csv(target: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    """Write a table to ``target`` (UTF-8) atomically: the whole file or, on any failure, the old one."""
    data = csv_text(columns, rows).encode("utf-8")
    with atomic_path(target, 0o644) as tmp:
        tmp.write_bytes(data)
    return target
