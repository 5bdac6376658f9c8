"""The runtime change log: which patched APIs the program actually hit, where first, how often.

Every patch calls :func:`record` when it changes the meaning of a call (a CUDA device became
the NPU, ``torch.cuda.X`` ran ``torch.npu.X``, ...). The first hit of each distinct change captures
the user's call site; later hits only bump a counter, so the hot path is one dict lookup.
``TRANSPLANT_AUTO_REPORT=path.csv`` writes the table at exit in change_list.csv's column style,
so an auto run can be turned into an offline migration.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from transplant.report_format import AUTO_CHANGE_COLUMNS, write_csv

from ._policy import INTERNAL_PACKAGES

# change_list.csv's columns plus Count, defined once with the offline reports' columns.
COLUMNS = AUTO_CHANGE_COLUMNS


@dataclass
class Hit:
    """One distinct runtime change (API + before + after), its first user call site and count."""

    api: str
    kind: str          # device | redirect | method | attribute | backend | amp | checkpoint | policy | unsupported
    #                    | static (an edit the import hook's rewrite applied to the module's source)
    before: object
    after: object
    file: str
    line: int
    column: int
    count: int = 0
    rule: str = ""
    severity: str = "safe"
    message: str = ""
    operation: str = "MODIFY"
    end_line: int = 0


HITS: dict[tuple, Hit] = {}


def record(api: str, kind: str, before: object, after: object, depth: int = 2, **extra) -> None:
    """Count one hit; on the first one, remember the user's call site (``depth`` frames up)."""
    key = (api, before, after)
    rec = HITS.get(key)
    if rec is None:
        file, line, column = user_site(sys._getframe(depth))
        rec = HITS[key] = Hit(api, kind, before, after, file, line, column, **extra)
    rec.count += 1


def record_static(edits) -> None:
    """Log the edits the import hook applied to a module (``transplant.auto._rewrite_hook.StaticEdit``),
    once per process, as rows beside the runtime hits."""
    for edit in edits:
        key = ("static", edit.file, edit.line, edit.column, edit.rule, edit.before)
        if key not in HITS:
            HITS[key] = Hit(edit.rule, "static", edit.before, edit.after, edit.file, edit.line, edit.column, 1,
                            rule=edit.rule, severity=edit.severity, message=edit.message,
                            operation=edit.operation, end_line=edit.end_line)


def user_site(frame) -> tuple[str, int, int]:
    """File, line and column of the innermost frame outside torch/torch_npu/transplant."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "") or ""
        if name.partition(".")[0] not in INTERNAL_PACKAGES and not frame.f_code.co_filename.startswith("<frozen"):
            break
        frame = frame.f_back
    if frame is None:
        return "<unknown>", 0, 1
    return frame.f_code.co_filename, frame.f_lineno, _column(frame)


def _column(frame) -> int:
    try:
        positions = frame.f_code.co_positions()
        for index, position in enumerate(positions):
            if index == frame.f_lasti // 2:
                return (position[2] or 0) + 1
    except (AttributeError, ValueError):  # Python < 3.11 has no co_positions
        pass
    return 1


def _text(value: object) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return ""
    return str(value) if not _is_device(value) else f"torch.device({str(value)!r})"


def _is_device(value: object) -> bool:
    return type(value).__name__ == "device" and type(value).__module__ == "torch"


def rows(rule_ids: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The hit table as change_list-style rows, ordered by file and line."""
    rule_ids = rule_ids or {}
    out = []
    for hit in sorted(HITS.values(), key=lambda h: (h.file, h.line, h.column, h.api)):
        message = hit.message or _default_message(hit)
        static = hit.kind == "static"
        out.append(
            {
                "File": _relative(hit.file),
                "Start Line": str(hit.line),
                "End Line": str(hit.end_line or hit.line),
                "Operation Type": hit.operation,
                "Message": f"{message} (auto mode, rewritten at import)" if static
                else f"{message} (auto mode, {hit.count} call{'s' if hit.count != 1 else ''})",
                "Cell": "",
                "Column": str(hit.column),
                "Rule": hit.rule or rule_ids.get(hit.api, "") or rule_ids.get(f"kind:{hit.kind}", ""),
                "Severity": hit.severity,
                # a static row holds the source text itself, as change_list.csv does
                "Before": hit.before if static else _text(hit.before),
                "After": hit.after if static else _text(hit.after),
                "Count": "" if static else str(hit.count),
            }
        )
    return out


def _default_message(hit: Hit) -> str:
    if hit.kind == "redirect":
        return f"{hit.api} ran {hit.after}"
    if hit.kind == "method":
        return f"{hit.api} ran {hit.after}"
    return f"{hit.api}: {_text(hit.before)} -> {_text(hit.after)}"


def _relative(file: str) -> str:
    try:
        return Path(file).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return file


def report_path(path: str, environ=os.environ) -> Path:
    """Rank 0 (or a single process) writes ``path``; rank N > 0 writes ``<stem>.rankN<suffix>``."""
    target = Path(path)
    rank = environ.get("RANK", "")
    if rank.isdigit() and int(rank) > 0:
        target = target.with_name(f"{target.stem}.rank{rank}{target.suffix}")
    return target


def write_report(path: str | os.PathLike, rule_ids: dict[str, str] | None = None) -> Path:
    """Write the hit table to ``path`` (CSV with change_list.csv's columns plus Count)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_csv(target, COLUMNS, [[row[column] for column in COLUMNS] for row in rows(rule_ids)])
