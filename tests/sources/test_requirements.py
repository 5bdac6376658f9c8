"""Dependency files: rows for CUDA-only packages and CUDA wheel pins; the files are never rewritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rules import load_ruleset
from transplant.sources import front_end_for, migrate_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "requirements"


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _rows(name: str, ruleset, rel: str | None = None) -> list[tuple[str, int, str]]:
    result = migrate_file((FIXTURES / name).read_bytes(), rel or name, ruleset)
    assert result.status is Status.UNCHANGED and result.new_source is None
    assert all(u.tip.strip() for u in result.unsupported)
    return [(u.rule, u.line, u.op) for u in result.unsupported]


def test_requirements_txt(ruleset) -> None:
    rows = _rows("requirements.txt", ruleset)
    assert rows[:3] == [("TP661", 2, "--extra-index-url https://download.pytorch.org/whl/cu117"),
                        ("TP660", 3, "torch==1.13.1+cu117"), ("TP660", 4, "torchvision==0.14.1+cu117")]
    assert [r[1] for r in rows if r[0] == "TP662"] == [6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert not any(r[1] in (1, 5, 15) for r in rows)  # a comment, numpy, transformers


def test_environment_yml(ruleset) -> None:
    assert _rows("environment.yml", ruleset) == [
        ("TP662", 8, "pytorch-cuda=11.8"), ("TP662", 9, "cudatoolkit=11.8"), ("TP662", 12, "pynvml==11.5.0")]


def test_pyproject_and_setup_py(ruleset, tmp_path: Path) -> None:
    pyproject = b'[project]\nname = "x"\ndependencies = [\n  "torch==2.0.1+cu118",\n  "einops",\n]\n' \
                b'[project.optional-dependencies]\nfast = ["xformers>=0.0.20"]\n'
    result = migrate_file(pyproject, "pyproject.toml", ruleset)
    assert [(u.rule, u.line) for u in result.unsupported] == [("TP660", 4), ("TP662", 8)]
    setup = b"from setuptools import setup\nsetup(name='x', install_requires=[\n    'pynvml', 'tqdm'])\n"
    result = migrate_file(setup, "setup.py", ruleset)
    assert front_end_for("setup.py").kind == "python"
    assert [(u.rule, u.line, u.op) for u in result.unsupported] == [("TP662", 3, "pynvml")]


def test_other_txt_files_are_not_read() -> None:
    assert front_end_for("docs/notes.txt") is None
    assert front_end_for("requirements/dev.txt").kind == "requirements"
    assert front_end_for("requirements-gpu.txt").kind == "requirements"
