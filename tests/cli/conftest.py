"""Fixtures for the command-line tests: a small project in tmp_path, and an in-process CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cli_helpers import MODEL_PY, TRAIN_PY, UTILS_PY, write_tree

from transplant.cli import cli


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small project: an entry script, a package, a binary file and a README with CRLF endings."""
    return write_tree(tmp_path / "src", {
        "train.py": TRAIN_PY,
        "models/__init__.py": b"",
        "models/net.py": MODEL_PY,
        "models/utils.py": UTILS_PY,
        "data/weights.bin": bytes(range(256)) * 4,
        "README.md": b"# demo\r\nuses cuda\r\n",
    })


@pytest.fixture
def invoke():
    """Run the click command in process; stdout and stderr are kept apart."""

    def run(*args: str | os.PathLike[str], input: str | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(cli, [os.fspath(a) for a in args], input=input, catch_exceptions=False)

    return run
