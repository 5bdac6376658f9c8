"""Helpers for the analysis tests: run a tiny script under ``transplant run`` in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["TRANSPLANT_NPU_COUNT"] = "1"
    env.pop("TORCH_NPU_FALLBACK_CPU_DISABLE", None)
    env.update(extra or {})
    return env


@pytest.fixture
def run_script(tmp_path: Path):
    """``run_script(code, op_report=True, env=...)`` -> (completed process, report JSON or None)."""

    def run(code: str, *, op_report: bool = True, env: Optional[Dict[str, str]] = None,
            name: str = "script.py") -> Tuple[subprocess.CompletedProcess, Optional[dict]]:
        script = tmp_path / name
        script.write_text(textwrap.dedent(code).lstrip("\n"), encoding="utf-8")
        command: List[str] = [sys.executable, "-m", "transplant", "run"]
        report = tmp_path / "report.csv"
        if op_report:
            command += ["--op-report", str(report)]
        done = subprocess.run([*command, script.name], cwd=tmp_path, env=_env(env), capture_output=True,
                              text=True, timeout=300)
        data = None
        if op_report and (tmp_path / "report.json").is_file():
            data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
        return done, data

    return run


@pytest.fixture(scope="session")
def npu():
    """The emulated NPU in this pytest process (tests/emulate/conftest.py moves every user of it to the end)."""
    import torch

    import transplant.emulate as emulate

    emulate.activate()
    return torch.npu
