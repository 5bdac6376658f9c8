"""Front end for dependency declarations: report CUDA-only packages and CUDA wheel pins, never rewrite.

Read: ``requirements*.txt`` (and ``*.txt`` under a ``requirements/`` folder), ``environment.yml``
(conda specs and its ``pip:`` list), ``pyproject.toml`` (``[project]`` dependencies and optional
dependencies), ``setup.py`` (string literals of ``install_requires=`` / ``extras_require=``; the file is
also migrated as Python). Each finding is an unsupported_api.csv row with the rule's tip (the kind
``requirement``): which torch + torch_npu pair to install, native AMP instead of apex, and so on.
The file itself is copied byte for byte: a dependency change needs a decision we cannot make.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Collection, Iterator

from transplant.results import FileResult, Status, Unsupported
from transplant.rules import RuleSet
from transplant.rules.model import StructuralRule

REQUIREMENT_KINDS = ("requirement",)

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def matches(rel: str) -> bool:
    """Whether this path declares dependencies we read (``setup.py`` is handled with the Python file)."""
    name = rel.rsplit("/", 1)[-1]
    parent = rel.rsplit("/", 2)[-2] if rel.count("/") else ""
    return ((name.startswith("requirements") and name.endswith(".txt"))
            or (parent == "requirements" and name.endswith(".txt"))
            or name in ("environment.yml", "environment.yaml", "pyproject.toml"))


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(text: str, rel: str) -> Iterator[tuple[int, str]]:
    """(line, requirement or option text) of each dependency declared by the file."""
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".txt"):
        for number, line in enumerate(text.splitlines(), start=1):
            body = re.split(r"(^|\s)#", line, maxsplit=1)[0].strip()
            if body:
                yield number, body
    elif name.startswith("environment."):
        section = ""
        for number, line in enumerate(text.splitlines(), start=1):
            top = re.match(r"([A-Za-z_][\w-]*)\s*:", line)
            if top:  # a top-level key: only `dependencies:` lists packages (`channels:` does not)
                section = top.group(1)
                continue
            item = re.match(r"\s*-\s+(?!pip:\s*$)([^#]+)", line)
            if item and section == "dependencies":
                yield number, item.group(1).strip().strip("'\"")
    elif name == "pyproject.toml":
        try:
            import tomllib
        except ImportError:  # Python < 3.11: no TOML reader in the standard library
            return
        try:
            data = tomllib.loads(text)
        except ValueError:
            return
        project = data.get("project", {}) if isinstance(data, dict) else {}
        specs = list(project.get("dependencies", []) or [])
        for group in (project.get("optional-dependencies", {}) or {}).values():
            specs += list(group or [])
        lines = text.splitlines()
        for spec in specs:
            if not isinstance(spec, str):
                continue
            number = next((i for i, line in enumerate(lines, start=1) if f'"{spec}"' in line or f"'{spec}'" in line), 1)
            yield number, spec
    elif name == "setup.py":
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("install_requires", "extras_require", "setup_requires"):
                for item in ast.walk(node.value):
                    if isinstance(item, ast.Constant) and isinstance(item.value, str):
                        yield item.lineno, item.value


def _findings(number: int, entry: str, rules: list[StructuralRule]) -> Iterator[Unsupported]:
    lowered = entry.lower()
    is_option = entry.startswith("-")
    match = None if is_option else _NAME.match(entry)
    package = _normal(match.group(1)) if match else ""
    # a conda spec `pytorch-cuda=11.8` / `cudatoolkit==11.3` names its package before the `=`
    for rule in rules:
        data = rule.data
        if "packages" in data and package:
            # an exact name wins over a glob (`nvidia-ml-py` over `nvidia-*`), then the longest glob
            patterns = sorted(data["packages"].items(), key=lambda item: ("*" in item[0], -len(item[0])))
            for pattern, tip in patterns:
                if fnmatch.fnmatchcase(package, _normal(pattern)):
                    yield Unsupported(rule.id, number, number, entry, tip or rule.tip)
                    break
        if "local_version" in data and package in {_normal(p) for p in data.get("local_version_packages", [])}:
            if re.search(data["local_version"], entry):
                yield Unsupported(rule.id, number, number, entry, rule.tip)
        if "index_url" in data and re.search(data["index_url"], lowered):
            yield Unsupported(rule.id, number, number, entry, rule.tip)


def entry_rows(entry: str, line: int, ruleset: RuleSet, column: int = 1) -> list[Unsupported]:
    """The rows of one requirement or index option (also used for ``pip install`` words in shell text)."""
    rules = [r for r in ruleset if isinstance(r, StructuralRule) and r.kind in REQUIREMENT_KINDS]
    return [Unsupported(u.rule, line, line, u.op, u.tip, column) for u in _findings(line, entry, rules)]


def requirement_rows(source: bytes, rel: str, ruleset: RuleSet) -> list[Unsupported]:
    """The rows of one dependency file (``rel`` decides how it is read)."""
    rules = [r for r in ruleset if isinstance(r, StructuralRule) and r.kind in REQUIREMENT_KINDS]
    if not rules:
        return []
    text = source.decode("utf-8", "replace")
    rows: list[Unsupported] = []
    for number, entry in _entries(text, rel):
        rows.extend(_findings(number, entry, rules))
    return rows


def migrate_requirements(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = ()) -> FileResult:
    """Rows only: the file is never rewritten."""
    return FileResult(path=rel, status=Status.UNCHANGED, unsupported=requirement_rows(source, rel, ruleset),
                      kind="requirements")
