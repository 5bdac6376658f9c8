"""Suppression comments: ``# transplant: ignore[TP541]`` or a bare ``# transplant: ignore``.

A comment suppresses the rows of the rules it names (an id, or an id prefix like ``TP5``; a bare comment
suppresses every rule) that start on its own line, or anywhere in the statement whose first line carries
it (a call spread over several lines is acknowledged on its first line, like ``# noqa`` in flake8/ruff).

Suppression is honoured everywhere because it is applied to the rewriter's result for the file, before
migration, ``--check`` and the reports see it:

* an unsupported-API row is removed (kept in :attr:`FileResult.suppressed`, counted in the tally);
* a change row is removed and its edit undone: the lines of the suppressed statement keep their
  original bytes. The rewritten file is compared line by line with the original (``difflib``); every
  differing block that lies inside suppressed statements only is restored to the original text. A
  block that mixes suppressed and unsuppressed lines is kept as rewritten (its rows stay, and a warning
  says so) rather than split at an arbitrary point. The result must still compile; otherwise the
  whole file is kept as the rewriter produced it, with the same warning.

Only comments count (found with :mod:`tokenize`): the text inside a string is never a suppression.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field, replace

from transplant.results import Change, FileResult, Status

_COMMENT = re.compile(r"#\s*transplant\s*:\s*ignore\b(?:\[(?P<codes>[^\]]*)\])?", re.IGNORECASE)
#: A suppression comment with no codes: every rule.
ALL_RULES: frozenset[str] = frozenset({""})


@dataclass
class Suppressions:
    """Where a file's suppression comments apply: line -> rule-id prefixes (``{""}`` = every rule)."""

    by_line: dict[int, frozenset[str]] = field(default_factory=dict)
    #: line -> first line of the (simple) statement, or of the compound statement's header, holding it
    statement_of: dict[int, int] = field(default_factory=dict)
    #: first line of a statement -> its last line (the span a comment on the first line covers)
    span: dict[int, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.by_line)

    def codes_for(self, line: int) -> frozenset[str]:
        """The rule prefixes suppressed for a row starting on ``line``."""
        own = self.by_line.get(line, frozenset())
        first = self.statement_of.get(line)
        if first is not None and first != line:
            own = own | self.by_line.get(first, frozenset())
        return own

    def suppresses(self, rule: str, line: int) -> bool:
        """Whether a row of ``rule`` starting on ``line`` is acknowledged by a comment."""
        return any(rule.startswith(prefix) for prefix in self.codes_for(line))

    def lines_of(self, line: int) -> range:
        """The original lines of the statement holding ``line`` (just ``line`` outside any statement)."""
        first = self.statement_of.get(line, line)
        return range(first, self.span.get(first, line) + 1)


def parse_codes(text: str | None) -> frozenset[str]:
    """``"TP541, tp1"`` -> ``{"TP541", "TP1"}``; None or empty (a bare comment) -> every rule."""
    if text is None:
        return ALL_RULES
    codes = frozenset(code.strip().upper() for code in text.split(",") if code.strip())
    return codes or ALL_RULES


def find_suppressions(text: str) -> Suppressions:
    """The suppression comments of one decoded Python source (empty if it does not tokenize)."""
    if "transplant" not in text:  # the cheap prefilter: nearly every file has no suppression at all
        return Suppressions()
    by_line: dict[int, frozenset[str]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                match = _COMMENT.match(token.string)
                if match:
                    line = token.start[0]
                    by_line[line] = by_line.get(line, frozenset()) | parse_codes(match.group("codes"))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return Suppressions()
    if not by_line:
        return Suppressions()
    statement_of, span = _statement_lines(text)
    return Suppressions(by_line, statement_of, span)


def _statement_lines(text: str) -> tuple[dict[int, int], dict[int, int]]:
    """line -> first line of its statement; first line -> last line (compound statements: the header)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}, {}
    statement_of: dict[int, int] = {}
    span: dict[int, int] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt):
            continue
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            # A compound statement: its comment covers the header only (``def f(...):`` over several lines).
            decorators = getattr(node, "decorator_list", [])
            first = min([node.lineno, *(d.lineno for d in decorators)])
            last = max(node.lineno, body[0].lineno - 1)
        else:
            first, last = node.lineno, node.end_lineno or node.lineno
        for line in range(first, last + 1):
            # Inner statements are walked after outer ones: the innermost statement wins.
            statement_of[line] = first
        span[first] = max(span.get(first, first), last)
    return statement_of, span


def apply_suppressions(result: FileResult, original: bytes, text: str | None = None) -> tuple[FileResult, list[str]]:
    """Remove the suppressed rows of ``result`` and undo their edits; returns the result and warnings.

    ``original`` is the file's bytes as read; ``text`` its decoded form (decoded here when None).
    An ``import torch_npu`` that only suppressed edits needed is not added either.
    """
    if not result.changes and not result.unsupported:
        return result, []
    if text is None:
        from transplant.rewrite import SourceError, decode_source

        try:
            text = decode_source(original)[0]
        except SourceError:
            return result, []
    marks = find_suppressions(text)
    if not marks:
        return result, []
    kept_unsupported = [u for u in result.unsupported if not marks.suppresses(u.rule, u.line)]
    dropped_unsupported = [u for u in result.unsupported if marks.suppresses(u.rule, u.line)]
    dropped = [c for c in result.changes if marks.suppresses(c.rule, c.line)]
    if not dropped and not dropped_unsupported:
        return result, []
    if not dropped or result.status is not Status.CHANGED or result.new_source is None:
        # No edit to undo (e.g. a file that could not be emitted losslessly keeps its rows, unapplied).
        kept = [c for c in result.changes if c not in dropped]
        return replace(result, changes=kept, unsupported=kept_unsupported,
                       suppressed=[*result.suppressed, *dropped, *dropped_unsupported]), []

    protected: set[int] = set()
    for change in dropped:
        protected.update(marks.lines_of(change.line))
        protected.update(range(change.line, change.end_line + 1))
    # A line that also carries an edit that stays must stay rewritten (a row never claims an edit the
    # file does not contain); the suppressed edit on it is then kept too, with a warning.
    for change in result.changes:
        if change not in dropped and change.operation.value != "INSERT":
            protected.difference_update(range(change.line, change.end_line + 1))
    restored = _restore_lines(original, result.new_source, protected)
    if restored != result.new_source and not _compiles(restored, result.path):
        restored = result.new_source  # never emit a file that does not parse: keep the rewrite whole
    still_different = _different_lines(original, restored)
    undone = [c for c in dropped if not set(range(c.line, c.end_line + 1)) & still_different]
    kept_changes = [c for c in result.changes if c not in undone]
    warnings = [f"{result.path}:{c.line}: `# transplant: ignore` for {c.rule} not honoured: its edit is "
                "entangled with edits that are not suppressed; the change was kept" for c in dropped
                if c not in undone]
    suppressed = [*result.suppressed, *undone, *dropped_unsupported]
    if kept_changes and all(_is_import_insert(c) for c in kept_changes) and _only_inserts(original, restored):
        suppressed.extend(kept_changes)  # the import was there for the suppressed edits only
        kept_changes, restored = [], original
    if restored == original:
        return replace(result, status=Status.UNCHANGED, new_source=None, changes=[],
                       unsupported=kept_unsupported, suppressed=suppressed), warnings
    return replace(result, new_source=restored, changes=kept_changes, unsupported=kept_unsupported,
                   suppressed=suppressed), warnings


def _is_import_insert(change: Change) -> bool:
    return change.operation.value == "INSERT" and not change.before and change.after.startswith("import ")


def _only_inserts(original: bytes, new: bytes) -> bool:
    a, b = original.splitlines(keepends=True), new.splitlines(keepends=True)
    return all(tag in ("equal", "insert")
               for tag, *_ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes())


def _restore_lines(original: bytes, new: bytes, protected: set[int]) -> bytes:
    """``new`` with the differing blocks that lie inside ``protected`` original lines put back.

    A block of the same length on both sides is decided line by line; a block that changes the line
    count and mixes protected and other lines is kept as rewritten (its rows are kept too).
    """
    a, b = original.splitlines(keepends=True), new.splitlines(keepends=True)
    out: list[bytes] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        lines = set(range(i1 + 1, i2 + 1))  # 1-based original lines of the block
        if tag == "equal":
            out.extend(a[i1:i2])
        elif tag == "insert" or not lines & protected:
            out.extend(b[j1:j2])
        elif lines <= protected:
            out.extend(a[i1:i2])
        elif i2 - i1 == j2 - j1:
            out.extend(a[i1 + k] if i1 + k + 1 in protected else b[j1 + k] for k in range(i2 - i1))
        else:
            out.extend(b[j1:j2])
    return b"".join(out)


def _different_lines(original: bytes, new: bytes) -> set[int]:
    """1-based original lines that differ in ``new`` (replaced or deleted)."""
    a, b = original.splitlines(keepends=True), new.splitlines(keepends=True)
    changed: set[int] = set()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            changed.update(range(i1 + 1, i2 + 1))
    return changed


def _compiles(source: bytes, path: str) -> bool:
    try:
        compile(source, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
