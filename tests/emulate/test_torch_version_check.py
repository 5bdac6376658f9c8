"""``transplant run`` checks its torch before starting anything, and says in one line what to install."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from transplant.cli import cli
from transplant.emulate import requirements
from transplant.emulate.requirements import REQUIRED_TORCH, EmulatorRequirementError, check_torch


def test_the_required_torch_passes_with_or_without_a_local_tag() -> None:
    assert check_torch(version_of=lambda name: "2.13.0+cpu", environ={}) == "2.13.0+cpu"
    assert check_torch(version_of=lambda name: "2.13.0", environ={}) == "2.13.0"


def test_no_torch_names_what_to_install() -> None:
    with pytest.raises(EmulatorRequirementError) as info:
        check_torch(version_of=lambda name: None, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert f"pip install torch=={REQUIRED_TORCH} 'transplant-npu[emulate]'" in message


@pytest.mark.parametrize("other", ["2.1.0", "2.13.1", "2.12.0+cpu", "2.13.0rc1"])
def test_another_torch_is_refused_with_the_reason(other: str) -> None:
    with pytest.raises(EmulatorRequirementError) as info:
        check_torch(version_of=lambda name: other, environ={})
    message = str(info.value)
    assert "\n" not in message and f"torch {other} is installed" in message and "validated" in message
    assert requirements.OVERRIDE_VARIABLE in message


def test_the_override_accepts_another_torch() -> None:
    assert check_torch(version_of=lambda name: "2.1.0", environ={requirements.OVERRIDE_VARIABLE: "1"}) == "2.1.0"


@pytest.mark.parametrize("installed", [None, "2.1.0"])
def test_transplant_run_refuses_in_one_line_before_starting_the_script(
        installed: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(requirements, "_installed_version", lambda name: installed)
    monkeypatch.delenv(requirements.OVERRIDE_VARIABLE, raising=False)
    marker = tmp_path / "ran"
    script = tmp_path / "train.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\nimport torch\n")
    result = CliRunner().invoke(cli, ["run", str(script)], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("transplant: error: transplant run needs torch 2.13.0")
    assert "pip install" in lines[0]
    assert not marker.exists()
