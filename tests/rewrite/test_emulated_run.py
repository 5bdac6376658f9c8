"""A migrated CUDA snippet really runs on the emulated NPU with leftover CUDA use made fatal.

``--strict-cuda`` turns any CUDA call the migration missed (``torch.cuda.*``, ``.cuda()``, a
``'cuda'`` device) into an error, so a zero exit means every construct in the snippet was migrated.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

SNIPPET = b'''import os
import sys
import torch

os.environ["CUDA_VISIBLE_DEVICES"] = "0"
device = "cuda"  # a config default, as in nanoGPT
device_type = "cuda" if "cuda" in device else "cpu"
assert torch.cuda.is_available()
torch.cuda.manual_seed_all(0)
model = torch.nn.Linear(4, 2).cuda()
x = torch.randn(8, 4, device="cuda:0")
with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
    y = model(x)
assert y.is_cuda
t = x.to(f"cuda:{0}")
path = sys.argv[1]
torch.save(model.state_dict(), path)
state = torch.load(path)
if t.device.type == "cuda":
    torch.cuda.synchronize()
print("OK", y.device.type, torch.cuda.device_count() >= 1, os.environ.get("ASCEND_RT_VISIBLE_DEVICES"))
'''


def _run(script: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "transplant.emulate.runner", "--strict-cuda", str(script), str(tmp_path / "m.pt")],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )


@pytest.mark.slow
def test_migrated_snippet_runs_on_emulated_npu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    result = rewrite_source(SNIPPET, "train.py", load_ruleset())
    assert result.status is Status.CHANGED
    migrated = tmp_path / "train_npu.py"
    migrated.write_bytes(result.new_source)
    proc = _run(migrated, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "OK npu True 0"
