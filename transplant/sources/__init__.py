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

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from transplant.results import FileResult
from transplant.rules import RuleSet

Migrate = Callable[..., FileResult]  # (source, rel, ruleset, project_modules, flow=None)


@dataclass(frozen=True)
class FrontEnd:
    """One reader of one kind of file."""

    kind: str
    matches: Callable[[str], bool]
    migrate: Migrate


def _python(source: bytes, rel: str, ruleset: RuleSet, modules: Collection[str], flow: Any = None) -> FileResult:
    from transplant.sources.python import migrate_python

    result = migrate_python(source, rel, ruleset, modules, flow=flow)
    if rel.rsplit("/", 1)[-1] == "setup.py":  # also a dependency declaration: its rows join the file's
        from transplant.sources.requirements import requirement_rows

        result.unsupported = [*result.unsupported, *requirement_rows(source, rel, ruleset)]
    return result


def _requirements(source: bytes, rel: str, ruleset: RuleSet, modules: Collection[str], flow: Any = None) -> FileResult:
    from transplant.sources.requirements import migrate_requirements

    return migrate_requirements(source, rel, ruleset, modules)


def _config(source: bytes, rel: str, ruleset: RuleSet, modules: Collection[str], flow: Any = None) -> FileResult:
    from transplant.sources.config import migrate_config

    return migrate_config(source, rel, ruleset, modules)


def _is_config(rel: str) -> bool:
    from transplant.sources.config import matches

    return matches(rel)


def _is_requirements(rel: str) -> bool:
    from transplant.sources.requirements import matches

    return matches(rel)


def _shell(source: bytes, rel: str, ruleset: RuleSet, modules: Collection[str], flow: Any = None) -> FileResult:
    from transplant.sources.shell import migrate_shell

    return migrate_shell(source, rel, ruleset, modules)


def _notebook(source: bytes, rel: str, ruleset: RuleSet, modules: Collection[str], flow: Any = None) -> FileResult:
    from transplant.sources.notebook import migrate_notebook

    return migrate_notebook(source, rel, ruleset, modules)


def _is_notebook(rel: str) -> bool:
    from transplant.sources.notebook import matches

    return matches(rel)


def _is_python(rel: str) -> bool:
    from transplant.sources.python import matches

    return matches(rel)


def _is_shell(rel: str) -> bool:
    from transplant.sources.shell import matches

    return matches(rel)


FRONT_ENDS: list[FrontEnd] = [
    FrontEnd("python", _is_python, _python),
    FrontEnd("notebook", _is_notebook, _notebook),
    FrontEnd("shell", _is_shell, _shell),
    FrontEnd("requirements", _is_requirements, _requirements),
    FrontEnd("config", _is_config, _config),
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
