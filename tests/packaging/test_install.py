"""Installing transplant-npu into an Ascend-like environment changes nothing the user already has.

A fresh venv holds stand-ins of an Ascend stack: numpy 1.26 (torch_npu's usual pin) and a torch other
than 2.13 (a tiny local wheel named ``torch``, version 2.1.0, so nothing is downloaded for it). Our
wheel is built from this checkout and installed, then ``[emulate]``: ``pip freeze`` before and after
differs only by our own dependencies, numpy and torch stay as they were, and ``transplant run``
refuses the other torch in one line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

FAKE_TORCH = "2.1.0"
NUMPY = "1.26.4"


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV")}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env, **kwargs)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def fake_torch_wheel(folder: Path) -> Path:
    """A minimal, valid wheel of a package named torch (a stand-in: no code beyond __version__)."""
    dist = f"torch-{FAKE_TORCH}.dist-info"
    files = {
        "torch/__init__.py": f'__version__ = "{FAKE_TORCH}"\n'.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {FAKE_TORCH}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: transplant-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/top_level.txt": b"torch\n",
    }
    record = [_record_line(name, data) for name, data in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"torch-{FAKE_TORCH}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return wheel


def build_our_wheel(tmp_path: Path, wheels: Path) -> tuple[Path, str]:
    """Build from a copy of the checkout (the build writes build/ and *.egg-info next to the sources)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "transplant", source / "transplant", ignore=ignore)
    shutil.copytree(REPO / "rules", source / "rules", ignore=ignore)
    # With build isolation, as a user's `pip install` builds: pyproject.toml's build requirements are used.
    proc = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", str(source), "-w", str(wheels)])
    built = list(wheels.glob("transplant_npu-*.whl"))
    assert len(built) == 1, proc.stdout
    return built[0], proc.stdout + proc.stderr


def freeze(python: Path) -> dict[str, str]:
    lines = _run([str(python), "-m", "pip", "freeze", "--all"]).stdout.splitlines()
    pins = {}
    for line in lines:
        name, sep, version = line.partition("==")
        if not sep:  # a direct reference: "name @ file:///..."
            name, _, version = line.partition(" @ ")
        pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Our wheel (built once for the module) and the build's output."""
    tmp = tmp_path_factory.mktemp("build")
    return build_our_wheel(tmp, tmp / "wheels")


def test_wheel_builds_without_warnings_and_ships_the_licence(built: tuple[Path, str]) -> None:
    wheel, log = built
    problems = [line for line in log.splitlines()
                if re.search(r"BuildBackendWarning|Deprecat|would be ignored|^\s*warning:", line, re.I)
                and "Location 'file:" not in line]
    assert problems == []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "Name: transplant-npu" in metadata and "License-Expression: Apache-2.0" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = [r for r in requires if "extra ==" not in r]
    assert not any(re.search(r"\b(pandas|numpy|torch|torch-npu)\b", r) for r in core), core
    assert not any("torch" in r for r in requires if "extra == \"emulate\"" in r)
    assert "transplant/emulate/native/npu_guard.cpp" in names and "transplant/ruledata/schema.json" in names


def test_install_leaves_an_ascend_stack_alone(built: tuple[Path, str], tmp_path: Path) -> None:
    ours = built[0]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    fake_torch_wheel(wheels)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", f"numpy=={NUMPY}", f"torch=={FAKE_TORCH}",
          "--find-links", str(wheels)])
    before = freeze(python)
    assert before["numpy"] == NUMPY and before["torch"] == FAKE_TORCH

    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", str(ours)])
    after = freeze(python)
    assert {name: after.get(name) for name in before} == before  # nothing upgraded, downgraded or removed
    added = set(after) - set(before)
    assert "transplant-npu" in added
    assert not added & {"pandas", "numpy", "torch", "torch-npu", "scipy", "pyarrow"}, added

    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", f"{ours}[emulate]"])
    with_extra = freeze(python)
    assert with_extra["torch"] == FAKE_TORCH and with_extra["numpy"] == NUMPY

    # The offline migration works there; the emulator refuses the other torch in one line.
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("import torch\ntorch.cuda.set_device(0)\n")
    transplant = venv / "bin" / "transplant"
    _run([str(transplant), "-q", "-i", str(project), "-o", str(tmp_path / "out")], cwd=tmp_path)
    assert "torch.npu.set_device(0)" in (tmp_path / "out" / "train.py").read_text()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TRANSPLANT_EMULATE_ANY_TORCH")}
    refused = subprocess.run([str(transplant), "run", str(project / "train.py")], capture_output=True, text=True,
                             timeout=120, env=env, cwd=tmp_path)
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and f"torch {FAKE_TORCH} is installed" in lines[0] and "2.13.0" in lines[0]
