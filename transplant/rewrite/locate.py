"""Where original nodes are in the original text: line/column for report rows, offsets for edits.

libcst has no cheap position lookup (``PositionProvider`` records every node through a full code
generation, several times the cost of printing). Here only the top-level statements that hold a node
we need are generated, each starting from its known place in the file: CPython's ``ast`` (C, a small
fraction of a libcst parse) gives each top-level statement's first line, and the generated text of the
statement is checked against the original text at that offset. Whatever does not check out (an
unusual layout, a statement ``ast`` numbers differently) falls back to generating the whole module.

Offsets are positions in the decoded text (see ``edits``).
"""

from __future__ import annotations

import ast
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

import libcst as cst
from libcst.metadata import CodePosition, CodeRange

try:  # libcst has no public hook into its code generator; this one has been stable since 0.3
    from libcst._nodes.internal import CodegenState
except ImportError:  # pragma: no cover - a future libcst
    CodegenState = None  # type: ignore[assignment,misc]

__all__ = ["Span", "Located", "locate", "generate"]

_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Span:
    """An outermost edited node: ``text[start:end]`` is its original code; ``indent`` its block indentation."""

    node: cst.CSTNode
    start: int
    end: int
    indent: tuple[str, ...]


@dataclass
class Located:
    """Positions found by :func:`locate`. ``valid_until``: offsets at or before it match the original."""

    ranges: dict[int, CodeRange] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    valid_until: int = 0
    seen: set[int] = field(default_factory=set)  # every root met (nested ones included)


class _Locator(CodegenState or object):  # type: ignore[misc]
    """Code generation that notes positions of ``targets`` and the spans of the outermost ``roots``."""

    def __init__(self, module: cst.Module, targets: set[int], roots: set[int], line: int = 1,
                 offset: int = 0, indent: Sequence[str] = ()) -> None:
        super().__init__(default_indent=module.default_indent, default_newline=module.default_newline)
        self.indent_tokens = list(indent)
        self.targets = targets
        self.roots = roots
        self.ranges: dict[int, CodeRange] = {}
        self.spans: list[Span] = []
        self.seen: set[int] = set()
        self._outer: dict[int, CodePosition] = {}
        self._open: Optional[cst.CSTNode] = None
        self._open_at = (0, ())
        self._counted = 0
        self._line = line
        self._col = 0
        self._offset = offset

    def _advance(self) -> None:
        tokens = self.tokens
        for i in range(self._counted, len(tokens)):
            t = tokens[i]
            self._offset += len(t)
            n = t.count("\n") + t.count("\r") - t.count("\r\n")
            if n:
                self._line += n
                self._col = len(t) - max(t.rfind("\n"), t.rfind("\r")) - 1
            else:
                self._col += len(t)
        self._counted = len(tokens)

    def _here(self) -> CodePosition:
        self._advance()
        return CodePosition(self._line, self._col)

    def before_codegen(self, node: cst.CSTNode) -> None:
        key = id(node)
        if key in self.roots:
            self.seen.add(key)
        if self._open is None and key in self.roots:
            self._advance()
            self._open = node
            self._open_at = (self._offset, tuple(self.indent_tokens))
        if key in self.targets:
            start = self._here()
            skip = len(getattr(node, "leading_lines", ()) or ())
            if skip:  # a statement's blank/comment lines above it are not the statement
                start = CodePosition(start.line + skip, 0)
            self._outer[key] = start

    def after_codegen(self, node: cst.CSTNode) -> None:
        key = id(node)
        if key in self.targets and key not in self.ranges:
            self.ranges[key] = CodeRange(self._outer.get(key, self._here()), self._here())
        if node is self._open:
            self._advance()
            start, indent = self._open_at
            self.spans.append(Span(node, start, self._offset, indent))
            self._open = None

    @contextmanager
    def record_syntactic_position(self, node: cst.CSTNode, *, start_node: Optional[cst.CSTNode] = None,
                                  end_node: Optional[cst.CSTNode] = None) -> Iterator[None]:
        # A statement's syntactic range (after its indentation), as libcst's PositionProvider reports it.
        if id(node) not in self.targets:
            yield
            return
        start = self._here()
        yield
        self.ranges[id(node)] = CodeRange(start, self._here())

    def pop_trailing_newline(self) -> None:
        if self.tokens:  # the module drops its last newline: keep the counters in step
            self._advance()
            last = self.tokens.pop()
            self._counted -= 1
            self._offset -= len(last)


def generate(module: cst.Module, node: cst.CSTNode, indent: Sequence[str]) -> str:
    """Code of a (new) node placed inside blocks indented by ``indent``."""
    state = CodegenState(default_indent=module.default_indent, default_newline=module.default_newline)
    state.indent_tokens = list(indent)
    node._codegen(state)
    return "".join(state.tokens)


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in _NEWLINE.finditer(text)]


def _top_level_lines(module: cst.Module, text: str) -> Optional[list[int]]:
    """1-based first line (leading blank/comment lines included) of each top-level libcst statement."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    body = tree.body
    k = 0
    lines: list[int] = []
    for stmt in module.body:
        if k >= len(body):
            return None
        first = body[k]
        if isinstance(stmt, cst.SimpleStatementLine):
            k += len(stmt.body)
            line = first.lineno
        else:
            k += 1
            line = first.lineno
            decorators = getattr(stmt, "decorators", ())
            if decorators:
                line = min(d.lineno for d in first.decorator_list) - len(decorators[0].leading_lines)
        lines.append(line - len(stmt.leading_lines))
    return lines if k == len(body) else None


def locate(module: cst.Module, text: str, targets: set[int], roots: set[int], tops: Iterable[cst.CSTNode],
           full: bool = False) -> Located:
    """Positions of ``targets`` and spans of the outermost ``roots``, generating only the statements ``tops``.

    ``tops`` are the top-level statements that contain every target and root; ``full`` (or a statement
    that does not check out) generates the whole module instead.
    """
    if not full:
        wanted = {id(t) for t in tops}
        lines = _top_level_lines(module, text) if wanted else []
        if lines is not None:
            starts = _line_starts(text)
            found = Located(valid_until=len(text))
            ok = True
            for stmt, line in zip(module.body, lines):
                if id(stmt) not in wanted:
                    continue
                if not 1 <= line <= len(starts):
                    ok = False
                    break
                offset = starts[line - 1]
                state = _Locator(module, targets, roots, line, offset)
                stmt._codegen(state)
                code = "".join(state.tokens)
                if text[offset:offset + len(code)] != code:
                    ok = False
                    break
                state._advance()
                found.ranges.update(state.ranges)
                found.spans.extend(state.spans)
                found.seen |= state.seen
            if ok:
                return found
    state = _Locator(module, targets, roots)
    module._codegen(state)
    state._advance()
    code = "".join(state.tokens)
    return Located(state.ranges, state.spans, _common_prefix(code, text), state.seen)


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search on C-speed slice comparisons)."""
    if a == b:
        return len(a)
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
