"""Properties of the rewriter on every fixture and on the project's own source tree.

Output parses; a second run changes nothing; a file the rules do not touch is reported UNCHANGED (so
it is copied byte for byte); a file without any trigger substring is not even parsed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_FILES = sorted((ROOT / "fixtures").rglob("*.py"))
PROJECT_FILES = sorted(p for d in ("transplant", "tests") for p in (ROOT / d).rglob("*.py"))


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _check(path: Path, ruleset) -> None:
    source = path.read_bytes()
    rel = path.relative_to(ROOT).as_posix()
    first = rewrite_source(source, rel, ruleset)
    if first.status is Status.FAILED:
        # only files that really are not Python 3 may fail
        with pytest.raises(SyntaxError):
            ast.parse(source)
        return
    if first.status is not Status.CHANGED:
        assert first.new_source is None and not first.changes, rel
        return
    assert first.changes, f"{rel}: changed without a change row"
    ast.parse(first.new_source)
    second = rewrite_source(first.new_source, rel, ruleset)
    assert second.status is Status.UNCHANGED, f"{rel}: second run changed {second.changes}"
    assert not second.changes


def test_fixture_tree_properties(ruleset) -> None:
    assert FIXTURE_FILES
    for path in FIXTURE_FILES:
        _check(path, ruleset)


@pytest.mark.slow
def test_project_tree_properties(ruleset) -> None:
    assert PROJECT_FILES
    for path in PROJECT_FILES:
        _check(path, ruleset)


def test_files_without_triggers_are_not_parsed(ruleset) -> None:
    # not even valid Python: a parse would fail, so UNCHANGED proves the prefilter skipped it
    result = rewrite_source(b"def broken(:\n    return 1\n", "x.py", ruleset)
    assert result.status is Status.UNCHANGED


def test_device_agnostic_files_are_unchanged(ruleset) -> None:
    source = b"import torch\n\ndef f(x, device):\n    return x.to(device)  # no CUDA here\n"
    assert rewrite_source(source, "agnostic.py", ruleset).status is Status.UNCHANGED
