"""Auto-mode tests run their patched code in subprocesses on the emulated NPU.

Auto mode and the emulator both patch torch process-wide, so nothing here imports them into the
pytest process (other helpers' tests share it). ``emulated_cases.py`` runs once per session in a
subprocess; each of its cases becomes one parametrised test (see test_patched_names.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPTS = HERE / "scripts"


def emulator_env(**extra: str) -> dict[str, str]:
    """The environment `transplant run` gives its children, plus ``extra``."""
    from transplant.emulate.runner import child_environment  # plain function: activates nothing here

    env = child_environment()
    env.pop("TRANSPLANT_AUTO", None)
    env.pop("TRANSPLANT_AUTO_REPORT", None)
    env.pop("TRANSPLANT_AUTO_BANNER_SHOWN", None)
    env.pop("RANK", None)
    env.pop("TRANSPLANT_AUTO_REWRITE", None)
    env.pop("TRANSPLANT_AUTO_ROOTS", None)
    # transplant itself must be importable from a source checkout
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    env.update(extra)
    return env


@dataclass
class CaseRun:
    results: dict
    stderr: str
    report: Path
    returncode: int


_CACHE: dict = {}


def run_cases(tmp_root: Path) -> CaseRun:
    """Run emulated_cases.py once (cached for the session)."""
    if "run" not in _CACHE:
        tmp_root.mkdir(parents=True, exist_ok=True)
        result_path = tmp_root / "cases.json"
        report = tmp_root / "auto_changes.csv"
        proc = subprocess.run(
            [sys.executable, str(HERE / "emulated_cases.py"), str(result_path)],
            # the cases exercise the runtime patches: the import hook would rewrite their CUDA calls
            env=emulator_env(TRANSPLANT_AUTO_REPORT=str(report), TRANSPLANT_AUTO_REWRITE="0"),
            cwd=str(HERE),
            capture_output=True,
            text=True,
            timeout=300,
        )
        results = json.loads(result_path.read_text()) if result_path.exists() else {}
        _CACHE["run"] = CaseRun(results, proc.stderr, report, proc.returncode)
    return _CACHE["run"]


def _tmp_root(config: pytest.Config) -> Path:
    import tempfile

    if "tmp" not in _CACHE:
        _CACHE["tmp"] = Path(tempfile.mkdtemp(prefix="transplant-auto-"))
    return _CACHE["tmp"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "emulated_case" in metafunc.fixturenames:
        run = run_cases(_tmp_root(metafunc.config))
        names = sorted(run.results.get("cases", {})) or ["<worker crashed>"]
        metafunc.parametrize("emulated_case", names)


@pytest.fixture(scope="session")
def auto_env():
    """``auto_env(**extra)``: environment of a process running on the emulated NPU."""
    return emulator_env


@pytest.fixture(scope="session")
def auto_paths() -> dict:
    return {"root": ROOT, "scripts": SCRIPTS}


@pytest.fixture(scope="session")
def case_run(request: pytest.FixtureRequest) -> CaseRun:
    return run_cases(_tmp_root(request.config))


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    tmp = _CACHE.pop("tmp", None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
