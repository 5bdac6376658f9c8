"""The reports of a run, written into OUT with pandas, each file atomically.

* ``change_list.csv`` -- one row per edit. The first five columns are msFmkTransplt's, so scripts written
  for Huawei's tool keep working; ours follow.
* ``unsupported_api.csv`` -- one row per use of an API with no NPU equivalent (``Tips`` never empty).
* ``cuda_op_list.csv`` -- operators defined in the project's own C++/CUDA sources.
* ``transplant_report.json`` -- the same rows, the tally, and the failed/skipped files with reasons.
* ``transplant.log`` -- a readable account of the run.

File paths are POSIX, relative to SRC. Empty reports still carry their header.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from transplant import __version__
from transplant.atomic import atomic_path
from transplant.display import one_line
from transplant.results import FileResult, Status

if TYPE_CHECKING:  # report reads migrate's records; it never drives a migration
    import pandas as pd

    from transplant.migrate import Migration

CHANGE_COLUMNS = ["File", "Start Line", "End Line", "Operation Type", "Message",
                  "Column", "Rule", "Severity", "Before", "After"]
UNSUPPORTED_COLUMNS = ["File", "Start Line", "End Line", "OP", "Tips", "Rule"]
NATIVE_OP_COLUMNS = ["File", "Api", "Line"]


def change_rows(migration: Migration) -> pd.DataFrame:
    """change_list.csv as a table, ordered by file, then position."""
    rows = [
        [r.path, c.line, c.end_line, _value(c.operation), c.message, c.column, c.rule, c.severity, c.before, c.after]
        for r in migration.results
        for c in sorted(r.changes, key=lambda c: (c.line, c.column, c.end_line))
    ]
    return _frame(rows, CHANGE_COLUMNS, ["Start Line", "End Line", "Column"])


def unsupported_rows(migration: Migration) -> pd.DataFrame:
    """unsupported_api.csv as a table, ordered by file, then position."""
    rows = [
        # Tips are never empty (the rule loader enforces it); the fallback still points somewhere useful.
        [r.path, u.line, u.end_line, u.op, u.tip.strip() or f"no NPU equivalent: see `transplant rules {u.rule}`",
         u.rule]
        for r in migration.results
        for u in sorted(r.unsupported, key=lambda u: (u.line, u.column, u.end_line))
    ]
    return _frame(rows, UNSUPPORTED_COLUMNS, ["Start Line", "End Line"])


def native_op_rows(migration: Migration) -> pd.DataFrame:
    """cuda_op_list.csv as a table, in the order the sources were walked."""
    rows = [[op.path, op.api, op.line] for op in migration.native_ops]
    return _frame(rows, NATIVE_OP_COLUMNS, ["Line"])


def _frame(rows: list[list[object]], columns: list[str], integers: list[str]) -> pd.DataFrame:
    # Imported here: pandas weighs ~50 MiB, and worker processes forked before the reports are
    # written should not carry it.
    import pandas as pd

    # The first column is a file name: shown on one line (a newline in a name must not look like a row).
    rows = [[one_line(value) if i == 0 and isinstance(value, str) else _clean(value) if isinstance(value, str)
             else value for i, value in enumerate(row)] for row in rows]
    frame = pd.DataFrame(rows, columns=columns)
    for column in integers:
        frame[column] = frame[column].astype("int64")
    for column in columns:
        if column not in integers:
            frame[column] = frame[column].astype("object")
    return frame


def _clean(text: str) -> str:
    """File names that are not valid UTF-8 (kept by Python as surrogate escapes) shown as ``\\xe9``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _value(operation: object) -> str:
    return str(getattr(operation, "value", operation))


def write_reports(migration: Migration, out: Path) -> dict[str, Path]:
    """Write every report into ``out``; returns their paths by file name."""
    changes = change_rows(migration)
    unsupported = unsupported_rows(migration)
    native = native_op_rows(migration)
    written: dict[str, Path] = {}

    def csv(name: str, frame: pd.DataFrame) -> None:
        written[name] = _atomic(out / name, lambda path: frame.to_csv(path, index=False, encoding="utf-8",
                                                                      lineterminator="\n"))

    csv("change_list.csv", changes)
    csv("unsupported_api.csv", unsupported)
    csv("cuda_op_list.csv", native)
    document = report_document(migration, changes, unsupported, native)
    written["transplant_report.json"] = _atomic(
        out / "transplant_report.json",
        lambda path: Path(path).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8"),
    )
    written["transplant.log"] = _atomic(
        out / "transplant.log",
        lambda path: Path(path).write_text(render_log(migration), encoding="utf-8"),
    )
    return written


def report_document(migration: Migration, changes: pd.DataFrame | None = None,
                    unsupported: pd.DataFrame | None = None, native: pd.DataFrame | None = None) -> dict:
    """The content of transplant_report.json."""
    changes = change_rows(migration) if changes is None else changes
    unsupported = unsupported_rows(migration) if unsupported is None else unsupported
    native = native_op_rows(migration) if native is None else native
    return _cleaned({
        "tool": "transplant",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": str(migration.src_root),
        "output": str(migration.out) if migration.out is not None else None,
        "entry": migration.entry,
        "options": _options(migration),
        "tally": dataclasses.asdict(migration.tally),
        "by_rule": _by_rule(migration),
        "changes": _records(changes),
        "unsupported": _records(unsupported),
        "cuda_ops": _records(native),
        "failed": [{"file": r.path, "reason": r.reason} for r in migration.results if r.status is Status.FAILED],
        "skipped": [{"file": r.path, "reason": r.reason} for r in migration.results if r.status is Status.SKIPPED],
    })


def _cleaned(value: object) -> object:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(k) if isinstance(k, str) else k: _cleaned(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cleaned(v) for v in value]
    return value


def _options(migration: Migration) -> dict[str, object]:
    """The settings of the run, so that a report can be reproduced."""
    options = migration.options
    if options is None:
        return {}
    return {
        "rules": list(options.rules.extra_files),
        "select": list(options.rules.select),
        "ignore": list(options.rules.ignore),
        "exclude": list(options.exclude),
        "amp": options.rules.amp,
        "npu_fused_optimizers": options.rules.npu_fused_optimizers,
        "trust_pickles": options.rules.trust_pickles,
        "entry": options.entry,
        "file_timeout": options.bounds.file_timeout,
        "max_memory_mib": options.bounds.max_memory_mib,
    }


def _by_rule(migration: Migration) -> dict[str, dict[str, int]]:
    """Rows per rule id (``{"TP101": {"changes": 3, "unsupported": 0}}``), sorted by id."""
    counts: dict[str, dict[str, int]] = {}
    for result in migration.results:
        for change in result.changes:
            counts.setdefault(change.rule, {"changes": 0, "unsupported": 0})["changes"] += 1
        for use in result.unsupported:
            counts.setdefault(use.rule, {"changes": 0, "unsupported": 0})["unsupported"] += 1
    return dict(sorted(counts.items()))


def _records(frame: pd.DataFrame) -> list[dict]:
    # Through JSON so that numpy integers become plain ints.
    return json.loads(frame.to_json(orient="records", force_ascii=False))


def render_log(migration: Migration) -> str:
    """transplant.log: one line per file that needs attention or changed, then the tally."""
    lines = [f"transplant {__version__}: {migration.src_root} -> {migration.out}"]
    for result in migration.results:
        if result.status is Status.FAILED:
            lines.append(f"FAILED    {result.path}: {result.reason} (copied unchanged)")
        elif result.status is Status.SKIPPED:
            lines.append(f"SKIPPED   {result.path}: {result.reason}")
        elif result.status is Status.CHANGED:
            lines.append(f"CHANGED   {result.path}: {len(result.changes)} edit(s), "
                         f"{len(result.unsupported)} unsupported use(s)")
        elif result.unsupported:
            lines.append(f"UNCHANGED {result.path}: {len(result.unsupported)} unsupported use(s)")
    for op in migration.native_ops:
        lines.append(f"NATIVE-OP {op.path}:{op.line}: {op.api} needs a hand port")
    if migration.entry:
        lines.append(f"launcher entry script: {migration.entry}")
    lines.append("tally: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(migration.tally).items()))
    # One line per entry, whatever the file names hold (a newline in a name must not forge an entry).
    return "\n".join(one_line(line) for line in lines) + "\n"


def summary_lines(migration: Migration) -> list[str]:
    """The tally a person reads at the end of a run."""
    t = migration.tally
    return [
        f"{t.python} Python file(s) scanned: {t.changed} changed, {t.unchanged} unchanged, "
        f"{t.failed} failed; {t.skipped} skipped; {t.copied} other file(s) copied",
        f"change_list.csv: {t.changes} row(s), unsupported_api.csv: {t.unsupported} row(s), "
        f"cuda_op_list.csv: {t.native_ops} row(s)",
    ]


def unified_diff(result: FileResult, original: bytes) -> bytes:
    """A ``git diff``-style unified diff of one rewritten file, in the file's own bytes."""
    if result.new_source is None:
        return b""
    shown = one_line(result.path)
    if shown == result.path:
        path = result.path.encode("utf-8", "surrogateescape")
        old, new = b"a/" + path, b"b/" + path
    else:  # as git does: a name that needs escapes is shown C-quoted, so it cannot forge diff lines
        quoted = shown.replace('"', '\\"').encode("utf-8")
        old, new = b'"a/' + quoted + b'"', b'"b/' + quoted + b'"'
    return b"".join(
        _ensure_newline(line)
        for line in difflib.diff_bytes(
            difflib.unified_diff,
            original.splitlines(keepends=True),
            result.new_source.splitlines(keepends=True),
            old,
            new,
        )
    )


def _ensure_newline(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n"


def _atomic(target: Path, write: Callable[[str], object]) -> Path:
    with atomic_path(target, 0o644) as tmp:
        write(str(tmp))
    return target
