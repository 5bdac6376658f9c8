"""Edits as data: ``Edit(start, end, text)`` in offsets of the original text, applied once.

The non-Python front ends (shell, notebook, config) record edits and apply them with
:func:`apply_edits`, which copies every untouched slice as it was and refuses overlapping edits
loudly (two rules claiming the same bytes is a bug, never something to resolve silently).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Edit:
    """Replace ``text[start:end]`` with ``replacement`` (offsets into the original text)."""

    start: int
    end: int
    replacement: str


class OverlappingEdits(ValueError):
    """Two edits claim overlapping ranges of the original text."""


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with every edit applied; untouched slices are copied verbatim."""
    ordered = sorted(set(edits))
    pieces: list[str] = []
    cursor = 0
    for edit in ordered:
        if edit.start < cursor or edit.end < edit.start:
            raise OverlappingEdits(f"edit at {edit.start}-{edit.end} overlaps an earlier edit ending at {cursor}")
        pieces.append(text[cursor:edit.start])
        pieces.append(edit.replacement)
        cursor = edit.end
    pieces.append(text[cursor:])
    return "".join(pieces)


class LineIndex:
    """Offsets to 1-based (line, column) of one text."""

    def __init__(self, text: str) -> None:
        self._starts = [0]
        for index, char in enumerate(text):
            if char == "\n":
                self._starts.append(index + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """(line, column), both 1-based, of ``offset``."""
        import bisect

        line = bisect.bisect_right(self._starts, offset) - 1
        return line + 1, offset - self._starts[line] + 1

    def line_span(self, line: int) -> tuple[int, int]:
        """Offsets of 1-based ``line`` (end excludes the newline)."""
        start = self._starts[line - 1]
        end = self._starts[line] - 1 if line < len(self._starts) else None
        return start, end if end is not None else -1
