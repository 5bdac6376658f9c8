"""The reports of a run, written into OUT with the standard library, each file atomically.

* ``change_list.csv`` -- one row per edit. The first five columns are msFmkTransplt's, so scripts written
  for Huawei's tool keep working; ours follow.
* ``unsupported_api.csv`` -- one row per use of an API with no NPU equivalent (``Tips`` never empty).
* ``cuda_op_list.csv`` -- operators defined in the project's own C++/CUDA sources.
* ``transplant_report.json`` -- the same rows, the tally, and the failed/skipped files with reasons.
* ``transplant.log`` -- a readable account of the run.
* ``transplant.diff`` and ``transplant_report.html`` -- for the reviewer (``transplant.review``).

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
from transplant.report_format import CHANGE_COLUMNS, NATIVE_OP_COLUMNS, UNSUPPORTED_COLUMNS, write_csv
from transplant.results import Change, FileResult, Status

if TYPE_CHECKING:  # report reads migrate's records; it never drives a migration
    from transplant.migrate import Migration

#: A table: one list of cell values per row, in its columns' order.
Rows = list[list[object]]


def change_rows(migration: Migration) -> Rows:
    """change_list.csv as a table, ordered by file, then position."""
    rows = [
        [r.path, c.line, c.end_line, _value(c.operation), c.message, cell_label(c.cell, c.line), c.column, c.rule,
         c.severity, c.before, c.after]
        for r in migration.results
        for c in sorted(r.changes, key=lambda c: (c.cell or 0, c.line, c.column, c.end_line))
    ]
    return _cleaned_rows(rows)


def unsupported_rows(migration: Migration) -> Rows:
    """unsupported_api.csv as a table, ordered by file, then position."""
    rows = [
        # Tips are never empty (the rule loader enforces it); the fallback still points somewhere useful.
        [r.path, u.line, u.end_line, u.op, u.tip.strip() or f"no NPU equivalent: see `transplant rules {u.rule}`",
         cell_label(u.cell, u.line), u.rule]
        for r in migration.results
        for u in sorted(r.unsupported, key=lambda u: (u.cell or 0, u.line, u.column, u.end_line))
    ]
    return _cleaned_rows(rows)


def cell_label(cell: int | None, line: int) -> str:
    """The ``Cell`` column: ``cell N, line M`` for a notebook row, empty otherwise."""
    return "" if cell is None else f"cell {cell}, line {line}"


def native_op_rows(migration: Migration) -> Rows:
    """cuda_op_list.csv as a table, in the order the sources were walked."""
    rows = [[op.path, op.api, op.line] for op in migration.native_ops]
    return _cleaned_rows(rows)


def _cleaned_rows(rows: Rows) -> Rows:
    # The first column is a file name: shown on one line (a newline in a name must not look like a row).
    return [[one_line(value) if i == 0 and isinstance(value, str) else _clean(value) if isinstance(value, str)
             else value for i, value in enumerate(row)] for row in rows]


def _clean(text: str) -> str:
    """File names that are not valid UTF-8 (kept by Python as surrogate escapes) shown as ``\\xe9``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _value(operation: object) -> str:
    return str(getattr(operation, "value", operation))


def write_reports(migration: Migration, out: Path, ruleset: object = None) -> dict[str, Path]:
    """Write every report into ``out``; returns their paths by file name.

    ``ruleset`` (the run's rules) gives the HTML page and summaries each rule's message and severity.
    """
    from transplant.review import DIFF_NAME, HTML_NAME, write_diff, write_html

    changes = change_rows(migration)
    unsupported = unsupported_rows(migration)
    native = native_op_rows(migration)
    written: dict[str, Path] = {}

    for name, columns, rows in (("change_list.csv", CHANGE_COLUMNS, changes),
                                ("unsupported_api.csv", UNSUPPORTED_COLUMNS, unsupported),
                                ("cuda_op_list.csv", NATIVE_OP_COLUMNS, native)):
        written[name] = write_csv(out / name, columns, rows)
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
    written[DIFF_NAME] = write_diff(migration, out)
    written[HTML_NAME] = write_html(migration, out, ruleset)
    return written


def report_document(migration: Migration, changes: Rows | None = None,
                    unsupported: Rows | None = None, native: Rows | None = None) -> dict:
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
        "entry_candidates": list(migration.entry_candidates),
        "options": _options(migration),
        "tally": dataclasses.asdict(migration.tally),
        "by_rule": _by_rule(migration),
        "changes": _records(CHANGE_COLUMNS, changes),
        "unsupported": _records(UNSUPPORTED_COLUMNS, unsupported),
        "cuda_ops": _records(NATIVE_OP_COLUMNS, native),
        "failed": [{"file": r.path, "reason": r.reason} for r in migration.results if r.status is Status.FAILED],
        "skipped": [{"file": r.path, "reason": r.reason} for r in migration.results if r.status is Status.SKIPPED],
        "suppressed": [{"file": r.path, "line": row.line, "rule": row.rule,
                        "kind": "change" if isinstance(row, Change) else "unsupported"}
                       for r in migration.results for row in r.suppressed],
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
        "rewrite_configs": options.rules.rewrite_configs,
        "distributed": options.rules.distributed,
        "model": options.rules.model,
        "entry": options.entry,
        "respect_ignore": options.respect_ignore,
        "copy_vcs": options.copy_vcs,
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


def _records(columns: list[str], rows: Rows) -> list[dict]:
    return [dict(zip(columns, row)) for row in rows]


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
    elif len(migration.entry_candidates) > 1:
        lines.append("launcher not written: several entry scripts, re-run with --entry FILE: "
                     + ", ".join(migration.entry_candidates))
    lines.append("tally: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(migration.tally).items()))
    # One line per entry, whatever the file names hold (a newline in a name must not forge an entry).
    return "\n".join(one_line(line) for line in lines) + "\n"


def summary_lines(migration: Migration) -> list[str]:
    """The tally a person reads at the end of a run."""
    t = migration.tally
    others = [(t.notebooks, "notebook(s)"), (t.shell, "shell/Makefile/Dockerfile"),
              (t.requirements, "requirements"), (t.configs, "config(s)")]
    if any(count for count, _ in others):
        kinds = ", ".join(f"{count} {name}" for count, name in [(t.python, "Python"), *others] if count)
        scanned = f"{t.changed + t.unchanged + t.failed} file(s) scanned ({kinds})"
    else:
        scanned = f"{t.python} Python file(s) scanned"
    ignored = f"; {t.ignored} ignored by .gitignore/.ignore (copied unchanged)" if t.ignored else ""
    suppressed = f"; {t.suppressed} suppressed by `# transplant: ignore`" if t.suppressed else ""
    return [
        f"{scanned}: {t.changed} changed, {t.unchanged} unchanged, "
        f"{t.failed} failed; {t.skipped} skipped; {t.copied} other file(s) copied{ignored}",
        f"change_list.csv: {t.changes} row(s), unsupported_api.csv: {t.unsupported} row(s), "
        f"cuda_op_list.csv: {t.native_ops} row(s){suppressed}",
    ]


def unified_diff(result: FileResult, original: bytes) -> bytes:
    """A ``git diff``-style unified diff of one rewritten file, in the file's own bytes."""
    if result.new_source is None:
        return b""
    if result.kind == "notebook":  # the JSON diff is unreadable: one diff per changed cell
        from transplant.sources.notebook import cell_diff

        return cell_diff(original, result.new_source, result.path)
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
