"""The libcst rewriter: ``rewrite_source(bytes, path, ruleset) -> FileResult``.

This module owns every per-file concern: encoding (PEP 263 cookie, UTF-8 BOM), line endings, the
substring prefilter, parse failures, and the rule that an unchanged file is never re-emitted (libcst
does not round-trip every file, so UNCHANGED means "copy the original bytes"). The rule kinds live in
one small module each (``qualnames``, ``method``, ``literals``, ``arguments``, ``imports``); the
traversal that drives them is in ``engine``; whole-module passes plug in through ``passes``.

Nothing here imports torch.
"""

from __future__ import annotations

import ast
import io
import re
from bisect import bisect_right
import tokenize
from typing import TYPE_CHECKING, Collection, Optional

import libcst as cst

from transplant.results import FileResult, Status
from transplant.rewrite.edits import Edit, Fix, OverlappingEdits, apply_edits
from transplant.rules import RuleSet

if TYPE_CHECKING:
    from transplant.rewrite.literals import FlowFacts

__all__ = ["rewrite_source", "decode_source"]

# Heuristic only for the failure message: lines that parse in Python 2 but not in Python 3.
_PY2_HINT = re.compile(rb"^\s*(print\s+[^\s(=]|exec\s+[\"']|except\s+[\w.]+\s*,\s*\w+\s*:)", re.M)


class SourceError(Exception):
    """The bytes cannot be decoded as Python source."""


def decode_source(source: bytes) -> tuple[str, str]:
    """(text, encoding) following PEP 263 and a UTF-8 BOM; ``encoding`` re-encodes the output."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError as exc:
        raise SourceError(f"bad encoding declaration: {exc.msg if hasattr(exc, 'msg') else exc}") from exc
    try:
        return source.decode(encoding), encoding
    except (UnicodeDecodeError, LookupError) as exc:
        line = source[: getattr(exc, "start", 0)].count(b"\n") + 1
        raise SourceError(f"line {line}: cannot decode as {encoding}: {exc}") from exc


_BRACKETS = re.compile(rb"[][(){}]")
_DEEP = 150


def _bracket_depth(source: bytes) -> tuple[int, int]:
    """(maximum bracket nesting, most lines inside one outermost bracket pair), counting brackets in
    strings and comments too (over-estimates: they only decide whether to look closer)."""
    depth = deepest = longest = 0
    opened = 0
    for match in _BRACKETS.finditer(source):
        if match.group() in b"([{":
            if depth == 0:
                opened = match.start()
            depth += 1
            if depth > deepest:
                deepest = depth
        else:
            depth -= 1
            if depth == 0:
                lines = source.count(b"\n", opened, match.start())
                if lines > longest:
                    longest = lines
    return deepest, longest


def _split_tail(text: str) -> tuple[str, str]:
    """Split off trailing whitespace-only lines, which libcst's native parser does not round-trip."""
    stripped = text.rstrip(" \t\f\r\n")
    if len(stripped) == len(text):
        return text, ""
    cut = len(stripped)
    newline = text.find("\n", cut)
    if newline < 0:
        return text, ""
    return text[: newline + 1], text[newline + 1:]


def _failure(path: str, reason: str) -> FileResult:
    return FileResult(path=path, status=Status.FAILED, reason=reason)


def rewrite_source(source: bytes, path: str, ruleset: RuleSet, *,
                   project_modules: Collection[str] = (), flow: Optional["FlowFacts"] = None) -> FileResult:
    """Rewrite one Python file's bytes with ``ruleset``.

    ``path`` is used in messages and rows (POSIX, relative to SRC). ``project_modules`` are the
    top-level module names defined by the project being migrated (so ``import my_ops_cuda`` of the
    project's own module is not reported as a compiled CUDA extension). ``flow`` carries names known
    from *other* files to hold a device or backend (``FlowFacts(device_names={"gpu_target"})``; the
    migration builds them with ``ProjectIndex.flow_for``); in-file flow is always resolved here.

    Returns CHANGED (with ``new_source`` in the file's own encoding and line endings), UNCHANGED
    (copy the original bytes; possibly with unsupported rows), or FAILED (undecodable or unparsable;
    ``reason`` names ``path:line``).
    """
    if not ruleset.may_apply(source):
        return FileResult(path=path, status=Status.UNCHANGED)
    try:
        text, encoding = decode_source(source)
    except SourceError as exc:
        return _failure(path, f"{path}: {exc}")
    body, tail = _split_tail(text)
    depth, spread = _bracket_depth(source)
    if depth > _DEEP or spread > _LONG_SPREAD or _LONG_LINE.search(source):
        # Deep nesting or a huge one-line expression: statements libcst cannot analyse (or parses in
        # minutes) are set aside first, the rest of the file is migrated.
        masked = _mask_deep(body, path, _MASK_DEPTH)
        if isinstance(masked, FileResult):
            return masked
        if masked[1]:
            return _rewrite_masked(body, masked, path, ruleset, text, tail, encoding, project_modules, flow)
    if depth > _DEEP:
        # libcst's native parser can overflow its stack (and kill the process) on absurd nesting;
        # CPython refuses more than 200 nested brackets anyway, so let it decide first.
        try:
            compile(body, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            line = getattr(exc, "lineno", None) or 1
            return _failure(path, f"{path}:{line}: cannot parse: {getattr(exc, 'msg', None) or type(exc).__name__}")
    try:
        module = cst.parse_module(body)
    except cst.ParserSyntaxError as exc:
        hint = " (Python 2 syntax?)" if _PY2_HINT.search(source) else ""
        line, col, message = exc.raw_line, exc.raw_column + 1, exc.message
        try:  # CPython's parser names the offending line more precisely than libcst's
            compile(body, path, "exec", dont_inherit=True)
        except SyntaxError as syn:
            line, col, message = syn.lineno or line, syn.offset or col, syn.msg
        except (ValueError, RecursionError, MemoryError):
            pass
        return _failure(path, f"{path}:{line}:{col}: syntax error{hint}: {message}")
    except (RecursionError, MemoryError, ValueError) as exc:  # pathological inputs; never crash the run
        return _failure(path, f"{path}:1: libcst could not parse the file: {type(exc).__name__}")

    try:
        return _rewrite_parsed(module, path, ruleset, text, body, tail, encoding, frozenset(project_modules), flow)
    except RecursionError:
        pass
    masked = _mask_deep(body, path, _RETRY_DEPTH)
    if isinstance(masked, FileResult):
        return masked
    if not masked[1]:
        return _failure(path, f"{path}:1: expressions nested too deeply to analyse")
    return _rewrite_masked(body, masked, path, ruleset, text, tail, encoding, project_modules, flow)


# Statements nested deeper than this (CPython ``ast`` depth) are set aside before libcst sees them when the
# file looks deep; after a RecursionError the file is retried with the lower bound.
_MASK_DEPTH = 400
_RETRY_DEPTH = 100
_LONG_LINE = re.compile(rb"[^\n]{4000}")
_LONG_SPREAD = 500  # lines inside one bracket pair (a generated 5,000-term sum takes libcst minutes)


def _ast_depth(node: ast.AST) -> int:
    deepest = 0
    todo = [(node, 1)]
    while todo:
        current, depth = todo.pop()
        if depth > deepest:
            deepest = depth
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(current))
    return deepest


def _mask_deep(body: str, path: str, limit: int) -> "FileResult | tuple[str, list[tuple[int, int]]]":
    """``body`` with every top-level statement deeper than ``limit`` blanked out, and their line ranges.

    Blanking keeps every offset and line: the statement's first line becomes ``0`` padded with spaces,
    its other lines spaces, so rows and edits of the rest of the file refer to the original text.
    """
    import sys

    limit_before = sys.getrecursionlimit()
    try:
        # CPython's own parser needs no Python stack for this, but building the ast objects counts depth
        sys.setrecursionlimit(max(limit_before, 30000))
        tree = ast.parse(body)
    except SyntaxError as exc:
        return _failure(path, f"{path}:{exc.lineno or 1}:{exc.offset or 1}: syntax error: {exc.msg}")
    except (ValueError, RecursionError, MemoryError) as exc:
        return _failure(path, f"{path}:1: cannot parse: {type(exc).__name__}")
    finally:
        sys.setrecursionlimit(limit_before)
    deep = []
    for stmt in tree.body:
        if _ast_depth(stmt) > limit:
            first = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", ())])
            deep.append((first, stmt.end_lineno or stmt.lineno))
    if not deep:
        return body, []
    lines = re.split(r"(\r\n|\r|\n)", body)  # text, newline, text, newline, ...
    for first, last in deep:
        for number in range(first, last + 1):
            i = 2 * (number - 1)
            if i < len(lines):
                width = len(lines[i])
                lines[i] = ("0" + " " * (width - 1)) if number == first and width else " " * width
    return "".join(lines), deep


def _rewrite_masked(body: str, masked: tuple[str, list[tuple[int, int]]], path: str, ruleset: RuleSet, text: str, tail: str,
                    encoding: str, project_modules: Collection[str], flow: Optional["FlowFacts"]) -> FileResult:
    """Migrate the file with its too-deep statements blanked out; each of them is a TP590 row."""
    from dataclasses import replace

    from transplant.results import Unsupported

    blanked, lines = masked
    try:
        module = cst.parse_module(blanked)
        result = _rewrite_parsed(module, path, ruleset, text, blanked, tail, encoding, frozenset(project_modules),
                                 flow, original=body)
    except (cst.ParserSyntaxError, RecursionError, MemoryError, ValueError):
        return _failure(path, f"{path}:{lines[0][0]}: expressions nested too deeply to analyse")
    rule = ruleset.get("TP590")
    if rule is None:
        return result
    rows = [Unsupported(rule=rule.id, line=first, end_line=last, op="(statement)", tip=rule.tip or rule.message,
                        column=1) for first, last in lines]
    merged = sorted([*result.unsupported, *rows], key=lambda r: (r.line, r.column, r.rule))
    return replace(result, unsupported=merged)


def _rewrite_parsed(module: cst.Module, path: str, ruleset: RuleSet, text: str, body: str, tail: str,
                    encoding: str, project_modules: frozenset[str], flow: Optional["FlowFacts"], *,
                    original: Optional[str] = None) -> FileResult:
    """``body`` is what was parsed; ``original`` (default: ``body``) the text the edits patch, same offsets."""
    from transplant.rewrite.engine import LostStatement, analyse, apply

    ctx = analyse(path, module, ruleset, project_modules, body, flow)
    located = ctx.locate()
    if not ctx.has_edits():
        changes, unsupported = ctx.finish_rows(located)
        return FileResult(path=path, status=Status.UNCHANGED, unsupported=unsupported)
    late = [s for s in located.spans if s.end > located.valid_until]
    if late:
        changes, unsupported = ctx.finish_rows(located)
        # Positions come from generating the original tree; past the first byte libcst would print
        # differently, they are not trustworthy. Only whole-module edits of such files get here.
        line = body.count("\n", 0, located.valid_until) + 1
        return FileResult(path=path, status=Status.FAILED, unsupported=unsupported,
                          reason=f"{path}:{line}: libcst cannot reproduce this file losslessly here; left unchanged")
    try:
        edits = apply(ctx, located)
    except LostStatement as lost:
        changes, unsupported = ctx.finish_rows(located)
        line = ctx.position(lost.node).start.line
        return FileResult(path=path, status=Status.FAILED, unsupported=unsupported,
                          reason=f"{path}:{line}: internal error: an edit would drop this statement; file left unchanged")
    changes, unsupported = ctx.finish_rows(located)
    try:
        target = body if original is None else original
        new_text = apply_edits(target, _fixes(target, edits, changes)) + tail
    except OverlappingEdits as exc:
        line = body.count("\n", 0, exc.second.start) + 1
        return FileResult(path=path, status=Status.FAILED, unsupported=unsupported,
                          reason=f"{path}:{line}: internal error: two edits overlap; file left unchanged")
    if new_text == text:
        return FileResult(path=path, status=Status.UNCHANGED, unsupported=unsupported)
    try:
        new_source = new_text.encode(encoding)
    except UnicodeEncodeError as exc:
        return _failure(path, f"{path}:1: the rewritten file cannot be encoded as {encoding}: {exc.reason}")
    return FileResult(path=path, status=Status.CHANGED, new_source=new_source, changes=changes,
                      unsupported=unsupported)


def _fixes(body: str, edits: list[Edit], changes: list) -> list[Fix]:  # type: ignore[type-arg]
    """Pair each change row with the edits on its lines (an edit without a row still applies)."""
    starts = [0] + [m.end() for m in re.finditer(r"\r\n|\r|\n", body)]
    spans = [(bisect_right(starts, e.start), bisect_right(starts, max(e.start, e.end - 1)), e) for e in edits]
    fixes: list[Fix] = []
    used: set[int] = set()
    for row in changes:
        mine = tuple(e for first, last, e in spans if first <= row.line <= last + 1)
        used.update(id(e) for e in mine)
        fixes.append(Fix(row.rule, mine, row, row.severity))
    fixes.extend(Fix("", (e,)) for _, _, e in spans if id(e) not in used)
    return fixes
