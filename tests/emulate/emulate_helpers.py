"""Subprocess helpers for the emulated-NPU tests (fresh interpreters, never left running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
SHIM_DIR = REPO / "transplant" / "emulate" / "shim"


def python_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The current environment with the repository importable; ``extra`` wins, except that an
    extra PYTHONPATH is put *in front of* the repository."""
    env = dict(os.environ)
    extra = dict(extra or {})
    front = [extra.pop("PYTHONPATH")] if "PYTHONPATH" in extra else []
    env["PYTHONPATH"] = os.pathsep.join(p for p in front + [str(REPO), env.get("PYTHONPATH", "")] if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    for name in ("TRANSPLANT_STRICT_CUDA", "TRANSPLANT_NATIVE", "TRANSPLANT_NPU_COUNT", "TRANSPLANT_NPU_RNG"):
        env.pop(name, None)  # the test decides
    env.update(extra)
    return env


def start_python(code: str, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
                 argv: Optional[List[str]] = None) -> subprocess.Popen:
    """Start ``python -c code`` (or ``python *argv``) in its own process group."""
    return subprocess.Popen(
        [sys.executable] + (argv if argv is not None else ["-c", code]),
        env=python_env(env),
        cwd=str(cwd) if cwd else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
    """Wait for ``proc``; kill it (never leave it behind) if it overruns."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"subprocess timed out after {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
    finally:
        try:  # the script's own children (if any) go with it
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_python(code: str, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with the repository importable."""
    return finish(start_python(code, env, cwd), timeout)


def repo_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """``base`` as given (default: this environment) with the repository importable and one OMP
    thread by default (2 shared cores: no oversubscription). Unlike ``python_env`` nothing is
    removed: tests that take variables away (e.g. PATH without a compiler) pass the whole env."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_in_group(argv: List[str], *, env: Dict[str, str], cwd: Optional[Path] = None,
                 timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``argv`` in its own process group with exactly ``env``; the group is killed afterwards."""
    proc = subprocess.Popen(argv, env=env, cwd=str(cwd) if cwd else None, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return finish(proc, timeout)


def run_runner(args: List[str], *, cwd: Path, env: Optional[Dict[str, str]] = None,
               timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m transplant.emulate.runner ARGS`` (what ``transplant run`` calls) in its own group."""
    return run_in_group([sys.executable, "-m", "transplant.emulate.runner", *args], env=repo_env(env),
                        cwd=cwd, timeout=timeout)
