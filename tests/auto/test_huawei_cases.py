"""Issue #17 items 6-8 and the issue #15 runtime names, as a user runs them: an unmodified CUDA script
under ``transplant run`` with ``TRANSPLANT_AUTO=1`` (the script sits in tests/auto/scripts)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_transfer_to_npu_constructs_run_under_auto_mode(auto_env, auto_paths, tmp_path):
    out = tmp_path / "out.json"
    env = auto_env(TRANSPLANT_AUTO="1", TRANSPLANT_AUTO_QUIET="1")
    proc = subprocess.run([sys.executable, "-m", "transplant", "run", str(auto_paths["scripts"] / "huawei_auto_cases.py"),
                           str(out)], env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == {
        "lazy_to_cpu": "cpu", "lazy_to_cuda": "npu:0", "lazy_cuda": "npu:0", "lazy_npu": "npu:0",
        "generator": "npu:0", "kernel": "npu", "initial_seed": 1, "memory_snapshot": [], "nested_stats": {},
        "utilization": 0, "default_generators": True,
    }
