"""What the walk of SRC leaves alone, the way developer tools do (git, ruff, ripgrep).

* **Pruned folders** are never descended into and not copied into OUT: version-control data (``.git``,
  ``.hg``, ``.svn``: OUT is meant to become a reviewed commit; ``--copy-vcs`` copies them as they are),
  virtualenvs (any folder holding ``pyvenv.cfg``, or ``conda-meta``), ``__pycache__``, ``node_modules``,
  tool caches, ``*.egg-info``, and ``build``/``dist`` folders beside a ``setup.py``/``pyproject.toml``.
* **Ignored files** (``.gitignore`` and ``.ignore`` files, with git's pattern rules via the pathspec
  library; the files of SRC's parent folders up to the repository root count too) are copied unchanged,
  not migrated, and counted as ignored; ``--no-ignore`` migrates them like any other file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pathspec

IGNORE_FILE_NAMES = (".gitignore", ".ignore")
VCS_DIR_NAMES = frozenset({".git", ".hg", ".svn"})
_CACHE_DIR_NAMES = frozenset({"__pycache__", "node_modules", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
                              ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", ".eggs"})
_BUILD_DIR_NAMES = frozenset({"build", "dist"})
_PROJECT_FILES = ("setup.py", "pyproject.toml", "setup.cfg")


def pruned_reason(folder: Path, name: str, *, copy_vcs: bool = False) -> Optional[str]:
    """Why the walk does not enter ``folder`` (named ``name``), or None to walk it."""
    if name in VCS_DIR_NAMES:
        return None if copy_vcs else "version-control folder: not copied (use --copy-vcs to copy it)"
    if name in _CACHE_DIR_NAMES:
        return f"{name} folder: not copied"
    if name.endswith(".egg-info"):
        return "packaging metadata folder (*.egg-info): not copied"
    if (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta").is_dir():
        return "virtualenv: not copied"
    if name in _BUILD_DIR_NAMES and any((folder.parent / f).is_file() for f in _PROJECT_FILES):
        return f"{name} output folder beside {_first_project_file(folder.parent)}: not copied"
    return None


def _first_project_file(folder: Path) -> str:
    return next(f for f in _PROJECT_FILES if (folder / f).is_file())


@dataclass(frozen=True)
class _Spec:
    base: str                 # POSIX folder relative to the walk root whose ignore file this is ("" = root)
    source: str               # the ignore file, for the reason shown to the user
    spec: pathspec.PathSpec
    prepend: str = ""         # for a parent folder's file: the walk root's path from that folder


@dataclass(frozen=True)
class IgnoreRules:
    """The ignore files in force for one folder of the walk (outermost first)."""

    specs: tuple[_Spec, ...] = field(default_factory=tuple)

    @classmethod
    def for_root(cls, root: Path) -> "IgnoreRules":
        """The rules at the walk root: those of its parent folders up to the repository root, then its own."""
        chain: list[Path] = []
        here = root.resolve()
        for parent in here.parents:
            chain.append(parent)
            if (parent / ".git").exists() or (parent / ".hg").exists():
                break
        else:
            chain = []  # not inside a repository: parent folders' ignore files are not ours to honour
        rules = cls()
        for folder in reversed(chain):
            rules = rules._with_files(folder, "", display_prefix=str(folder) + os.sep,
                                      prepend=here.relative_to(folder).as_posix())
        return rules.entering(root, "")

    def entering(self, folder: Path, rel: str) -> "IgnoreRules":
        """The rules inside ``folder`` (POSIX ``rel`` from the walk root): its own ignore files added."""
        return self._with_files(folder, rel, display_prefix=f"{rel}/" if rel else "")

    def _with_files(self, folder: Path, base: str, display_prefix: str, prepend: str = "") -> "IgnoreRules":
        specs = list(self.specs)
        for name in IGNORE_FILE_NAMES:
            path = folder / name
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            specs.append(_Spec(base, display_prefix + name, pathspec.GitIgnoreSpec.from_lines(lines), prepend))
        return IgnoreRules(tuple(specs)) if len(specs) != len(self.specs) else self

    def ignored_by(self, rel: str, is_dir: bool) -> Optional[str]:
        """The ignore file that ignores ``rel`` (POSIX from the walk root), or None.

        As in git, the deepest file with a matching pattern decides, and a later pattern in one file
        overrides an earlier one (``!keep.py`` re-includes).
        """
        for item in reversed(self.specs):
            local = _relative_to(rel, item.base)
            if local is None:
                continue
            if item.prepend:
                local = f"{item.prepend}/{local}"
            candidate = local + "/" if is_dir else local
            decision = _decide(item.spec, candidate)
            if decision is None:
                continue
            return item.source if decision else None
        return None


def _relative_to(rel: str, base: str) -> Optional[str]:
    if not base:
        return rel
    prefix = base + "/"
    return rel[len(prefix):] if rel.startswith(prefix) else None


def _decide(spec: pathspec.PathSpec, path: str) -> Optional[bool]:
    check = getattr(spec, "check_file", None)
    if check is not None:
        return check(path).include
    return True if spec.match_file(path) else None  # pathspec < 1.0: a negation reads as no match
