"""What a reviewer reads after a migration: ``transplant.diff``, ``transplant_report.html``, the rule summary.

* ``transplant.diff`` -- one unified diff per rewritten file, in file order (``git apply`` reads it).
* ``transplant_report.html`` -- self-contained (inline CSS, no scripts, no external assets): the tally,
  a summary per rule and severity with ``review`` first, then every change (``review`` rows first) with
  its before/after snippet and a link to the rule's entry in ``rules/README.md``, then the unsupported
  uses with their tips.
* :func:`rule_summary_lines` -- the same per-rule summary for the terminal.

Everything is derived from the run's rows and the files on disk, in a fixed order, with no dates:
the same input gives byte-identical files.
"""

from __future__ import annotations

import difflib
import html
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from transplant import __version__
from transplant._paths import rules_dir
from transplant.atomic import atomic_path
from transplant.results import Status

if TYPE_CHECKING:
    from transplant.migrate import Migration

DIFF_NAME = "transplant.diff"
HTML_NAME = "transplant_report.html"
_SEVERITY_ORDER = {"review": 0, "safe": 1}
_CONTEXT = 1  # lines of context around a change's snippet


@dataclass(frozen=True)
class RuleInfo:
    """What the summary shows of a rule: its default severity and message."""

    severity: str
    message: str


def rule_infos(ruleset: Any) -> dict[str, RuleInfo]:
    """id -> RuleInfo for every loaded rule (empty without a rule set)."""
    if ruleset is None:
        return {}
    return {rule.id: RuleInfo(rule.severity, rule.message) for rule in ruleset.rules}


# ---------------------------------------------------------------------------------------------------
# transplant.diff


def file_diff(path: str, original: bytes, new: bytes) -> bytes:
    """A ``git diff``-style unified diff of one file, in the file's own bytes (b"" when equal)."""
    name = path.encode("utf-8", "surrogateescape")
    lines = difflib.diff_bytes(difflib.unified_diff, original.splitlines(keepends=True),
                               new.splitlines(keepends=True), b"a/" + name, b"b/" + name)
    return b"".join(line if line.endswith(b"\n") else line + b"\n\\ No newline at end of file\n" for line in lines)


def write_diff(migration: Migration, out: Path) -> Path:
    """``OUT/transplant.diff``: every rewritten file against its original, in file order."""
    chunks = [file_diff(r.path, (migration.src_root / r.path).read_bytes(), (out / r.path).read_bytes())
              for r in migration.results if r.status is Status.CHANGED]
    target = out / DIFF_NAME
    data = b"".join(chunks)
    with atomic_path(target, 0o644) as tmp:
        tmp.write_bytes(data)
    return target


# ---------------------------------------------------------------------------------------------------
# Per-rule summary


@dataclass(frozen=True)
class RuleCount:
    rule: str
    severity: str
    kind: str       # "change" | "unsupported"
    count: int
    message: str


def rule_counts(migration: Migration, infos: Mapping[str, RuleInfo]) -> list[RuleCount]:
    """Rows per (rule, severity, kind); ``review`` first, then by rule id."""
    counts: Counter[tuple[str, str, str]] = Counter()
    messages: dict[str, str] = {}
    for result in migration.results:
        for change in result.changes:
            counts[(change.rule, change.severity, "change")] += 1
            messages.setdefault(change.rule, change.message)
        for use in result.unsupported:
            info = infos.get(use.rule)
            counts[(use.rule, info.severity if info else "review", "unsupported")] += 1
            messages.setdefault(use.rule, use.op)
    rows = [RuleCount(rule, severity, kind, n, infos[rule].message if rule in infos else messages[rule])
            for (rule, severity, kind), n in counts.items()]
    rows.sort(key=lambda r: (_SEVERITY_ORDER.get(r.severity, 2), r.rule, r.kind))
    return rows


def rule_summary_lines(migration: Migration, ruleset: Any = None) -> list[str]:
    """The terminal's per-rule summary, ``review`` rows first (empty when nothing was found)."""
    rows = rule_counts(migration, rule_infos(ruleset))
    if not rows:
        return []
    width = max(len(str(r.count)) for r in rows)
    rule_width = max(len(r.rule) for r in rows)
    lines = ["by rule (review first):"]
    for r in rows:
        what = "change(s)" if r.kind == "change" else "unsupported use(s)"
        lines.append(f"  {r.severity:<6}  {r.rule:<{rule_width}}  {r.count:>{width}} {what:<18}  {r.message}")
    return lines


# ---------------------------------------------------------------------------------------------------
# transplant_report.html

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:75em;padding:0 1em;color:#1b1f23}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right}
.review{color:#9a3b00;font-weight:600}.safe{color:#1a7f37}
.item{border:1px solid #ddd;border-radius:4px;margin:.8em 0;padding:.5em .8em}
.item h3{font-size:1em;margin:.1em 0 .4em}
pre{background:#f6f8fa;margin:.3em 0;overflow-x:auto;padding:.4em .6em}
pre.before{border-left:3px solid #cf222e}pre.after{border-left:3px solid #1a7f37}
.label{color:#57606a;font-size:.85em}code{background:#f6f8fa;padding:0 .2em}
"""


def render_html(migration: Migration, out: Optional[Path], ruleset: Any = None) -> str:
    """The self-contained HTML review page of a run (``out``: where the rewritten files are)."""
    infos = rule_infos(ruleset)
    docs = _rule_docs()
    e = html.escape
    t = migration.tally
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>transplant report: {e(_text(migration.src_root.name or str(migration.src_root)))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>transplant {e(__version__)}: migration report</h1>",
        # OUT is not named: the page depends on the input and the rules only (two OUTs, same page).
        f"<p>Source <code>{e(_text(str(migration.src_root)))}</code></p>",
        "<h2>Tally</h2><table><tr>"
        + "".join(f"<th>{e(name)}</th>" for name in _TALLY_FIELDS) + "</tr><tr>"
        + "".join(f'<td class="n">{getattr(t, name)}</td>' for name in _TALLY_FIELDS) + "</tr></table>",
        "<h2>By rule and severity</h2>",
    ]
    counts = rule_counts(migration, infos)
    if counts:
        parts.append("<table><tr><th>severity</th><th>rule</th><th>rows</th><th>kind</th><th>message</th></tr>")
        for r in counts:
            parts.append(f'<tr><td class="{e(r.severity)}">{e(r.severity)}</td><td>{_rule_link(r.rule, docs)}</td>'
                         f'<td class="n">{r.count}</td><td>{"change" if r.kind == "change" else "unsupported"}</td>'
                         f"<td>{e(_text(r.message))}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>Nothing to change and nothing unsupported.</p>")

    changes = [(result, change) for result in migration.results for change in result.changes]
    changes.sort(key=lambda item: _SEVERITY_ORDER.get(item[1].severity, 2))  # stable: file order kept within
    parts.append(f"<h2>Changes ({len(changes)}), review first</h2>")
    files: dict[str, tuple[list[bytes], list[bytes], list]] = {}
    for result, change in changes:
        if result.path not in files:
            files[result.path] = _file_pair(migration, out, result.path)
        before, after = _snippet(files[result.path], change.line, change.end_line)
        parts.append(
            f'<div class="item"><h3><span class="{e(change.severity)}">{e(change.severity)}</span> '
            f"{_rule_link(change.rule, docs)} <code>{e(_text(result.path))}:{change.line}:{change.column}</code> "
            f"{e(change.operation.value)}</h3><div>{e(_text(change.message))}</div>"
            f'<div class="label">before</div><pre class="before">{e(before)}</pre>'
            f'<div class="label">after</div><pre class="after">{e(after)}</pre></div>')

    unsupported = [(result, use) for result in migration.results for use in result.unsupported]
    parts.append(f"<h2>Unsupported uses ({len(unsupported)})</h2>")
    for result, use in unsupported:
        lines = files.get(result.path) or _file_pair(migration, out, result.path)
        files[result.path] = lines
        code, _ = _snippet(lines, use.line, use.end_line)
        parts.append(
            f'<div class="item"><h3><span class="review">review</span> {_rule_link(use.rule, docs)} '
            f"<code>{e(_text(result.path))}:{use.line}:{use.column}</code> <code>{e(_text(use.op))}</code></h3>"
            f"<div>{e(_text(use.tip))}</div><pre>{e(code)}</pre></div>")

    problems = [r for r in migration.results if r.status in (Status.FAILED, Status.SKIPPED)]
    if problems:
        parts.append(f"<h2>Failed and skipped files ({len(problems)})</h2><table>"
                     "<tr><th>file</th><th>status</th><th>reason</th></tr>")
        for r in problems:
            parts.append(f"<tr><td><code>{e(_text(r.path))}</code></td><td>{e(r.status.value)}</td>"
                         f"<td>{e(_text(r.reason))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


_TALLY_FIELDS = ("python", "changed", "unchanged", "failed", "skipped", "ignored", "copied", "changes",
                 "unsupported", "suppressed", "native_ops")


def write_html(migration: Migration, out: Path, ruleset: Any = None) -> Path:
    """``OUT/transplant_report.html``, atomically."""
    target = out / HTML_NAME
    data = render_html(migration, out, ruleset).encode("utf-8")
    with atomic_path(target, 0o644) as tmp:
        tmp.write_bytes(data)
    return target


def _rule_docs() -> tuple[str, frozenset[str]]:
    """(URI of the bundled rules/README.md, the rule ids it documents)."""
    readme = rules_dir() / "README.md"
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError:
        return "", frozenset()
    ids = frozenset(line[4:].strip() for line in text.splitlines() if line.startswith("### "))
    return readme.resolve().as_uri(), ids


def _rule_link(rule: str, docs: tuple[str, frozenset[str]]) -> str:
    uri, ids = docs
    if rule in ids:
        return f'<a href="{html.escape(uri)}#{html.escape(rule.lower())}">{html.escape(rule)}</a>'
    return f"<b>{html.escape(rule)}</b>"  # a rule of the user's own rule file: `transplant rules ID` shows it


def _file_pair(migration: Migration, out: Optional[Path], path: str) -> tuple[list[bytes], list[bytes], list]:
    """Original and rewritten lines of one file, and their line-level opcodes."""
    try:
        original = (migration.src_root / path).read_bytes()
    except OSError:
        original = b""
    new = original
    if out is not None:
        try:
            new = (out / path).read_bytes()
        except OSError:
            pass
    a, b = original.splitlines(keepends=True), new.splitlines(keepends=True)
    return a, b, difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()


def _snippet(pair: tuple[list[bytes], list[bytes], list], line: int, end_line: int) -> tuple[str, str]:
    """The original lines ``line..end_line`` (with context) and the rewritten lines they became."""
    a, b, opcodes = pair
    first, last = max(line, 1) - 1, max(end_line, line)  # 0-based [first, last)
    j_first, j_last = _map(opcodes, first, start=True), _map(opcodes, last, start=False)
    for tag, i1, i2, j1, j2 in opcodes:  # widen to the whole changed block(s) touching the row
        if tag != "equal" and i1 <= last and i2 >= first and not (i1 == i2 and i1 not in (first, last)):
            first, last = min(first, i1), max(last, i2)
            j_first, j_last = min(j_first, j1), max(j_last, j2)
    lo, hi = max(first - _CONTEXT, 0), min(last + _CONTEXT, len(a))
    j_lo, j_hi = max(j_first - (first - lo), 0), min(j_last + (hi - last), len(b))
    return _decode(a[lo:hi]), _decode(b[j_lo:j_hi])


def _map(opcodes: list, index: int, *, start: bool) -> int:
    """An original line index to the rewritten file's (inside equal runs; block edges otherwise)."""
    for tag, i1, i2, j1, j2 in opcodes:
        if i1 <= index < i2 or (index == i2 and not start):
            return j1 + (index - i1) if tag == "equal" else (j1 if start else j2)
    return opcodes[-1][4] if opcodes else index


def _decode(lines: list[bytes]) -> str:
    return b"".join(lines).decode("utf-8", "replace").rstrip("\n")


def _text(value: str) -> str:
    """Surrogate-escaped names (non-UTF-8 file names) shown as ``\\xe9``."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
