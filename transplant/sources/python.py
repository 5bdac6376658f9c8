"""Front end for Python files: the whole file is one segment for the libcst engine."""

from __future__ import annotations

from collections.abc import Collection

from transplant.results import FileResult
from transplant.rules import RuleSet


def matches(rel: str) -> bool:
    """Whether this path is a Python source file."""
    return rel.endswith(".py")


def migrate_python(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = ()) -> FileResult:
    """:func:`transplant.rewrite.rewrite_source` (imported lazily: libcst is heavy)."""
    from transplant.rewrite import rewrite_source

    return rewrite_source(source, rel, ruleset, project_modules=project_modules)
