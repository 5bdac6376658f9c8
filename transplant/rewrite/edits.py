"""Edits are data: a replacement of one range of the original text, and the one function that applies them.

Every change the rewriter makes to a file ends up as an :class:`Edit` of the ORIGINAL source (offsets are
positions in the decoded text, i.e. code points; the file's own encoding is applied once, at the end, so
PEP 263 files work the same as UTF-8 ones). :func:`apply_edits` copies every byte outside the edits as it
is, so untouched text is identical by construction, whatever libcst would have printed for it.

A :class:`Fix` ties edits to the report: the rule that asked for them, the change row, and the row's
severity, so an edit and its row travel together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from transplant.results import Change

__all__ = ["Edit", "Fix", "OverlappingEdits", "apply_edits"]


@dataclass(frozen=True)
class Edit:
    """Replace ``source[start:end]`` by ``text`` (``start == end``: an insertion)."""

    start: int
    end: int
    text: str

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad edit range {self.start}..{self.end}")


@dataclass(frozen=True)
class Fix:
    """What one rule did at one place: its edits, its change row (if any) and that row's severity."""

    rule: str
    edits: tuple[Edit, ...]
    row: Optional[Change] = None
    severity: str = "safe"


class OverlappingEdits(ValueError):
    """Two different edits touch the same range of the original: applying both would lose one."""

    def __init__(self, first: Edit, second: Edit) -> None:
        super().__init__(f"edits overlap: {first.start}..{first.end} and {second.start}..{second.end}")
        self.first = first
        self.second = second


def apply_edits(source: str, fixes: Iterable[Fix]) -> str:
    """``source`` with every edit of ``fixes`` applied; untouched slices are copied unchanged.

    The same edit shared by several fixes (one replaced statement carrying two rows) is applied once.
    Different edits whose ranges overlap raise :class:`OverlappingEdits`; two insertions at one offset are
    applied in the order given. Edits beyond the end of ``source`` raise ``ValueError``.
    """
    unique: dict[Edit, int] = {}
    for fix in fixes:
        for edit in fix.edits:
            unique.setdefault(edit, len(unique))
    ordered = sorted(unique, key=lambda e: (e.start, e.end, unique[e]))
    parts: list[str] = []
    cursor = 0
    previous: Optional[Edit] = None
    for edit in ordered:
        if edit.end > len(source):
            raise ValueError(f"edit {edit.start}..{edit.end} is beyond the end of the source ({len(source)})")
        if previous is not None and edit.start < previous.end:
            raise OverlappingEdits(previous, edit)
        parts.append(source[cursor:edit.start])
        parts.append(edit.text)
        cursor = edit.end
        previous = edit
    parts.append(source[cursor:])
    return "".join(parts)
