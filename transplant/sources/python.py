"""Front end for Python files: the whole file is one segment for the libcst engine."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from transplant.results import FileResult
from transplant.rules import RuleSet


def matches(rel: str) -> bool:
    """Whether this path is a Python source file."""
    return rel.endswith(".py")


def migrate_python(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = (),
                   flow: Any = None) -> FileResult:
    """:func:`transplant.rewrite.rewrite_source` (imported lazily: libcst is heavy); ``flow`` carries
    the cross-file facts of this file (``transplant.project.index.ProjectIndex.flow_for``)."""
    from transplant.rewrite import rewrite_source

    result = rewrite_source(source, rel, ruleset, project_modules=project_modules, flow=flow)
    if rel.rsplit("/", 1)[-1] == "setup.py":  # also a dependency declaration: its rows join the file's
        from transplant.sources.requirements import requirement_rows

        result.unsupported = [*result.unsupported, *requirement_rows(source, rel, ruleset)]
    return result
