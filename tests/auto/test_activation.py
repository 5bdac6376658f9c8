"""TRANSPLANT_AUTO=1 arms auto mode in every process through transplant-auto.pth (children included);
the banner is shown once, on rank 0 only; without torch_npu `import torch` still works."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def _pth_env(auto_env, **extra):
    """Only the torch_npu stand-in on the path: no `transplant run` bootstrap imports transplant.auto."""
    from transplant.emulate.runner import boot_dir, shim_dir

    env = auto_env(**extra)
    env.pop("TRANSPLANT_EMULATE", None)
    parts = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and Path(p) != boot_dir()]
    assert str(shim_dir()) in parts
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def test_pth_is_installed_next_to_the_packages():
    found = [Path(d) / "transplant-auto.pth" for d in site.getsitepackages() if (Path(d) / "transplant-auto.pth").exists()]
    assert found, "transplant-auto.pth missing: reinstall with `pip install -e .` (setup.py ships it)"
    assert 'os.environ.get("TRANSPLANT_AUTO") == "1"' in found[0].read_text()


@pytest.mark.slow
def test_environment_switch_reaches_children(auto_env, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPTS / "children.py")], env=_pth_env(auto_env, TRANSPLANT_AUTO="1"),
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"parent": "npu:0", "auto_loaded": True, "spawn": "npu:0"}
    banners = [line for line in proc.stderr.splitlines() if line.startswith("transplant.auto: CUDA calls")]
    assert len(banners) == 1, proc.stderr


def test_no_banner_off_rank_zero_and_no_crash_without_torch_npu(auto_env, tmp_path):
    code = "import torch; print(torch.zeros(1, device='cuda').device)"
    proc = subprocess.run([sys.executable, "-c", code], env=_pth_env(auto_env, TRANSPLANT_AUTO="1", RANK="1"),
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "npu:0", proc.stderr
    assert "transplant.auto" not in proc.stderr
    # no torch_npu importable: `import torch` still works (unpatched), with one line saying why
    env = _pth_env(auto_env, TRANSPLANT_AUTO="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if "shim" not in p)
    proc = subprocess.run([sys.executable, "-c", "import torch; print(torch.ones(1).device)"], env=env,
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "cpu", proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("transplant.auto: not active: transplant.auto needs torch_npu"), lines
