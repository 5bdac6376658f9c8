"""Typed records that cross module boundaries: what the rewriter found in one file.

The rewriter (``transplant.rewrite``) produces a :class:`FileResult` per file; ``transplant.migrate``
collects them and ``transplant.report`` turns them into the CSV/JSON reports. Line numbers always refer
to the *original* file.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Operation(str, enum.Enum):
    """msFmkTransplt's ``Operation Type`` column."""

    INSERT = "INSERT"
    MODIFY = "MODIFY"
    DELETE = "DELETE"


class Status(str, enum.Enum):
    CHANGED = "changed"      # rewritten; new_source differs from the input
    UNCHANGED = "unchanged"  # parsed (or prefiltered), nothing to do: copy byte for byte
    SKIPPED = "skipped"      # deliberately not parsed (excluded, not Python, ...): copy byte for byte
    FAILED = "failed"        # could not be parsed/decoded: copy byte for byte, log the reason


@dataclass(frozen=True)
class Change:
    """One edit, one row of change_list.csv."""

    rule: str            # stable rule id, e.g. "TP101"
    line: int            # 1-based start line in the original file
    end_line: int
    column: int          # 1-based column of the start in the original file
    operation: Operation
    message: str
    severity: str        # "safe" | "review"
    before: str          # source text of the node before the edit ("" for INSERT)
    after: str           # source text after the edit ("" for DELETE)
    cell: int | None = None  # notebooks: 1-based cell number; line/end_line are then lines of that cell


@dataclass(frozen=True)
class Unsupported:
    """One use of an API with no NPU equivalent, one row of unsupported_api.csv."""

    rule: str            # stable rule id, e.g. "TP501"
    line: int
    end_line: int
    op: str              # the API as written / resolved, e.g. "torch.cuda.nvtx.range_push"
    tip: str             # never empty: what the user should do instead
    column: int = 1
    cell: int | None = None  # notebooks: 1-based cell number; line/end_line are then lines of that cell


@dataclass
class FileResult:
    path: str                         # POSIX path relative to SRC
    status: Status
    reason: str = ""                  # why skipped/failed (with line number where known)
    new_source: bytes | None = None   # only when status is CHANGED
    changes: list[Change] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    kind: str = "python"              # the front end that read it (transplant.sources): python, notebook, ...
    # rows acknowledged by a ``# transplant: ignore`` comment (edits undone; see transplant.suppress)
    suppressed: list[Change | Unsupported] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one line each, logged by the parent process
