"""Where the shipped data lives, in a source checkout and in an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def rules_dir() -> Path:
    """The folder of the bundled JSON rule sets (top-level ``rules/``, shipped as ``transplant/ruledata``)."""
    installed = _PACKAGE / "ruledata"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / "rules"


def data_dir() -> Path:
    """Generated facts (e.g. torch_npu's public names) that the rules and tests read."""
    return _PACKAGE / "data"
