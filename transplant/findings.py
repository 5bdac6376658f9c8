"""What ``--check`` gates on: one :class:`Finding` per change row, unsupported use and unparseable file.

A baseline (``--write-baseline FILE``, then ``--check --baseline FILE``) records today's findings so
that a team can gate only on *new* CUDA code. Findings are matched by a fingerprint of file + rule +
the whitespace-normalised source text of the finding's lines, never by line number: code moving up
or down (lines added above it) keeps its fingerprint. Identical findings in one file (the same line
text twice) are matched as a multiset: a baseline entry absorbs one finding each.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transplant.atomic import atomic_path
from transplant.results import Status

if TYPE_CHECKING:
    from transplant.migrate import Migration

BASELINE_FORMAT = 1
#: Rule id of a file that could not be parsed (not a rule of the rule sets: nothing can be migrated).
PARSE_ERROR = "parse-error"


class BaselineError(Exception):
    """The baseline file cannot be read or is not a transplant baseline (one line, names the file)."""


@dataclass(frozen=True)
class Finding:
    """One thing ``--check`` reports, with a position in the original file."""

    path: str          # POSIX, relative to SRC
    line: int
    column: int
    end_line: int
    rule: str
    kind: str          # "change" | "unsupported" | "failed"
    severity: str      # "safe" | "review" | "error"
    message: str
    fingerprint: str


def collect(migration: Migration) -> list[Finding]:
    """Every finding of a run, in file order, then position."""
    findings: list[Finding] = []
    for result in migration.results:
        if result.status is Status.FAILED and not result.changes:
            findings.append(_finding(result.path, 1, 1, 1, PARSE_ERROR, "failed", "error", result.reason, ""))
        if not result.changes and not result.unsupported:
            continue
        lines = _source_lines(migration.src_root / result.path)
        for change in result.changes:
            text = _normalised(lines, change.line, change.end_line) or change.before + change.after
            findings.append(_finding(result.path, change.line, change.column, change.end_line, change.rule,
                                     "change", change.severity, change.message, text))
        for use in result.unsupported:
            text = _normalised(lines, use.line, use.end_line) or use.op
            findings.append(_finding(result.path, use.line, use.column, use.end_line, use.rule, "unsupported",
                                     "review", f"{use.op}: {use.tip}", text))
    findings.sort(key=lambda f: (tuple(f.path.split("/")), f.line, f.column, f.rule))
    return findings


def _finding(path: str, line: int, column: int, end_line: int, rule: str, kind: str, severity: str,
             message: str, text: str) -> Finding:
    digest = hashlib.sha256("\0".join((path, rule, kind, text)).encode("utf-8", "surrogateescape")).hexdigest()
    return Finding(path, line, column, end_line, rule, kind, severity, message, digest[:32])


def _source_lines(path: Path) -> list[str]:
    try:
        return path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def _normalised(lines: list[str], start: int, end: int) -> str:
    """The finding's source lines with all whitespace runs collapsed (re-indenting keeps a fingerprint)."""
    chunk = lines[max(start, 1) - 1: max(end, start)]
    return " ".join(" ".join(chunk).split())


# ---------------------------------------------------------------------------------------------------
# Baseline files


def baseline_document(findings: list[Finding]) -> dict:
    """The content of a baseline file: deterministic (no dates), sorted, one entry per finding."""
    return {
        "tool": "transplant",
        "format": BASELINE_FORMAT,
        "findings": [
            {"file": f.path, "rule": f.rule, "fingerprint": f.fingerprint, "line": f.line, "message": f.message}
            for f in findings
        ],
    }


def write_baseline(target: Path, findings: list[Finding]) -> Path:
    """Write the baseline atomically (a failed write keeps the previous baseline whole)."""
    data = json.dumps(baseline_document(findings), indent=2, ensure_ascii=False) + "\n"
    with atomic_path(target, 0o644) as tmp:
        tmp.write_text(data, encoding="utf-8")
    return target


def read_baseline(path: Path) -> Counter[tuple[str, str, str]]:
    """(file, rule, fingerprint) -> how many findings the baseline accepts."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"cannot read the baseline {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BaselineError(f"the baseline {path} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("tool") != "transplant" or \
            not isinstance(document.get("findings"), list):
        raise BaselineError(f"{path} is not a transplant baseline (write one with --write-baseline)")
    accepted: Counter[tuple[str, str, str]] = Counter()
    for entry in document["findings"]:
        try:
            accepted[(str(entry["file"]), str(entry["rule"]), str(entry["fingerprint"]))] += 1
        except (KeyError, TypeError) as exc:
            raise BaselineError(f"{path}: a baseline entry lacks file/rule/fingerprint: {entry!r}") from exc
    return accepted


@dataclass(frozen=True)
class Gate:
    """The findings that fail the check, and what the baseline absorbed."""

    new: list[Finding]
    baselined: int
    stale: int  # baseline entries that matched nothing (fixed since): the baseline can be rewritten


def apply_baseline(findings: list[Finding], accepted: Counter[tuple[str, str, str]] | None) -> Gate:
    """Split ``findings`` into new ones and those the baseline accepts."""
    if accepted is None:
        return Gate(new=list(findings), baselined=0, stale=0)
    left = Counter(accepted)
    new: list[Finding] = []
    for finding in findings:
        key = (finding.path, finding.rule, finding.fingerprint)
        if left[key] > 0:
            left[key] -= 1
        else:
            new.append(finding)
    return Gate(new=new, baselined=len(findings) - len(new), stale=sum(left.values()))
