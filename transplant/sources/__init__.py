"""File front ends: which files are migrated, by which reader, as which *kind*.

``migrate`` asks :func:`front_end_for` about every file of SRC; a file no front end claims is copied
byte for byte. Every front end returns the same :class:`~transplant.results.FileResult` rows, with
``FileResult.kind`` naming it (the tally and the JSON report count files per kind):

* ``python``        ``*.py``: the libcst engine (``transplant.rewrite``)
* ``notebook``      ``*.ipynb``: code cells through the same engine, IPython lines through the shell rules
* ``shell``         ``*.sh``/``*.bash``, Makefile recipes, Dockerfiles: bashlex + ``shell_*`` rules
* ``requirements``  ``requirements*.txt``, ``environment.yml``, ``setup.py``/``pyproject.toml`` dependencies:
                    rows only, never rewritten (``setup.py`` is also a Python file: both readers run)
* ``config``        YAML/JSON/INI files: review rows for device/backend keys (rewritten only on request)
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from transplant.results import FileResult
from transplant.rules import RuleSet


@dataclass(frozen=True)
class FrontEnd:
    """One reader of one kind of file: ``transplant.sources.<module>`` with a ``matches(rel)`` function
    and a ``migrate`` function ``(source, rel, ruleset, project_modules)`` (plus ``flow=`` when
    ``takes_flow``: the cross-file facts, Python only). The module is imported only when a file asks
    for it (libcst and bashlex are heavy)."""

    kind: str
    module: str
    function: str
    takes_flow: bool = False

    def _module(self) -> Any:
        return importlib.import_module(f"transplant.sources.{self.module}")

    def matches(self, rel: str) -> bool:
        return bool(self._module().matches(rel))

    def migrate(self, source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str],
                flow: Any = None) -> FileResult:
        migrate = getattr(self._module(), self.function)
        if self.takes_flow:
            return migrate(source, rel, ruleset, project_modules, flow=flow)
        return migrate(source, rel, ruleset, project_modules)


FRONT_ENDS: list[FrontEnd] = [
    FrontEnd("python", "python", "migrate_python", takes_flow=True),
    FrontEnd("notebook", "notebook", "migrate_notebook"),
    FrontEnd("shell", "shell", "migrate_shell"),
    FrontEnd("requirements", "requirements", "migrate_requirements"),
    FrontEnd("config", "config", "migrate_config"),
]


def source_rule_kinds() -> list[str]:
    """Every rule kind a non-Python front end handles (for the loader's unknown-kind check)."""
    from transplant.shell.kinds import SHELL_KINDS

    kinds = list(SHELL_KINDS)
    from transplant.sources.requirements import REQUIREMENT_KINDS

    kinds += list(REQUIREMENT_KINDS)
    from transplant.sources.config import CONFIG_KINDS

    kinds += list(CONFIG_KINDS) + ["notebook_cell"]
    return kinds


def front_end_for(rel: str) -> FrontEnd | None:
    """The front end that reads ``rel`` (POSIX path relative to SRC), or None (copied as is)."""
    for front_end in FRONT_ENDS:
        if front_end.matches(rel):
            return front_end
    return None


def migrate_file(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = (),
                 flow: Any = None) -> FileResult:
    """Migrate one file with its front end (``rel`` must have one). ``flow``: the cross-file facts
    of a Python file (``ProjectIndex.flow_for``); other kinds ignore it."""
    front_end = front_end_for(rel)
    if front_end is None:
        raise ValueError(f"no front end reads {rel}")
    result = front_end.migrate(source, rel, ruleset, project_modules, flow=flow)
    result.kind = front_end.kind
    return result
