"""Write the static analysis CSVs into OUT (msFmkTransplt's columns first, then Rule, Severity, Source)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

from transplant.analysis.static import AFFINITY, PERFORMANCE, PRECISION, UNKNOWN, AnalysisRow, project_rows
from transplant.atomic import atomic_path

__all__ = ["REPORT_FILES", "analyse_migration", "write_analysis", "summary_lines"]

REPORT_FILES = (UNKNOWN, PRECISION, PERFORMANCE, AFFINITY)
_TAIL = ["Rule", "Severity", "Source"]
_COLUMNS = {
    UNKNOWN: ["File", "Start Line", "End Line", "OP", "Tips", *_TAIL],
    PRECISION: ["File", "Start Line", "End Line", "OP", "Tips", *_TAIL],
    PERFORMANCE: ["File", "Start Line", "End Line", "OP", "Tips", *_TAIL],
    AFFINITY: ["File", "Start Line", "End Line", "Api Type", "Api Call Name", "Affinity Api Name", "Tips", *_TAIL],
}


def analyse_migration(migration: Any) -> List[AnalysisRow]:
    """The analysis rows of a finished migration (its Python files, read again from SRC, in its order)."""
    from transplant.results import Status

    files = []
    for result in migration.results:
        if result.status not in (Status.CHANGED, Status.UNCHANGED) or not result.path.endswith(".py"):
            continue
        try:
            source = (migration.src_root / result.path).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        covered = [(c.line, c.before) for c in result.changes] + [(u.line, u.op) for u in result.unsupported]
        files.append((result.path, source, covered))
    return project_rows(files)


def _line(row: AnalysisRow) -> List[object]:
    start = row.line if row.file != "NA" else "NA"
    end = row.end_line if row.file != "NA" else "NA"
    tail = [row.rule, row.severity, row.source]
    if row.report == AFFINITY:
        return [row.file, start, end, row.api_type, row.op, row.affinity, row.tip, *tail]
    return [row.file, start, end, row.op, row.tip, *tail]


def write_analysis(rows: List[AnalysisRow], out: Path) -> Dict[str, int]:
    """Write the four CSVs (always all four, a header at least) atomically; returns rows per file."""
    counts: Dict[str, int] = {}
    for name in REPORT_FILES:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(_COLUMNS[name])
        selected = [r for r in rows if r.report == name]
        for row in selected:
            writer.writerow(_line(row))
        counts[name] = len(selected)
        with atomic_path(out / name) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return counts


def summary_lines(rows: List[AnalysisRow]) -> List[str]:
    """One line per CSV with rows: how many, and how many to review."""
    lines = []
    by_file: Dict[str, Tuple[int, int]] = {}
    tally = Counter((r.report, r.severity) for r in rows)
    for name in REPORT_FILES:
        total = sum(n for (report, _), n in tally.items() if report == name)
        if total:
            by_file[name] = (total, tally[(name, "review")])
            lines.append(f"analysis: {name}: {total} row(s), {tally[(name, 'review')]} to review")
    return lines
