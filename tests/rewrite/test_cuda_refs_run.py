"""CUDA reached indirectly (issue 17: module in a variable, method references, fork_rng's default,
partly ported torch.npu code), migrated and run on the emulated NPU with leftover CUDA made fatal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

TRAIN = b'''import torch
from helper import sync

CE = torch.cuda
accel = torch.cuda if torch.cuda.is_available() else None
count = (torch.cuda if torch.cuda.is_available() else torch.cuda).device_count()
CE.empty_cache()
accel.synchronize()
model = torch.nn.Linear(3, 1)
to_device = model.cuda
to_device()
x = torch.randn(4, 3)
y = (x.cuda if count > 0 else x.cpu)()
z = getattr(x, 'cuda')(non_blocking=True)
assert model.weight.device.type == y.device.type == z.device.type == "npu"

# fork_rng must fork the NPU generator: draws inside the block leave the outer stream alone
torch.manual_seed(0)
expected = torch.randn(2, device=y.device)
torch.manual_seed(0)
with torch.random.fork_rng():
    torch.randn(5, device=y.device)
assert torch.equal(torch.randn(2, device=y.device), expected)
sync()
print("OK", count, y.device)
'''

HELPER = b'''import torch


def sync():
    torch.npu.synchronize()
'''


@pytest.mark.slow
def test_indirect_cuda_runs_on_the_emulated_npu_after_migration(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    ruleset = load_ruleset()
    for name, source in (("train.py", TRAIN), ("helper.py", HELPER)):
        result = rewrite_source(source, name, ruleset)
        assert result.status is Status.CHANGED, (name, result.reason)
        (tmp_path / name).write_bytes(result.new_source)
    assert b"import torch_npu" in (tmp_path / "helper.py").read_bytes()
    assert b"fork_rng(device_type='npu')" in (tmp_path / "train.py").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "transplant.emulate.runner", "--strict-cuda", "train.py"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "TRANSPLANT_NPU_COUNT": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "OK 1 npu:0"


@pytest.mark.slow
def test_migrated_profiler_block_runs_on_the_emulated_npu(tmp_path: Path) -> None:
    """fixtures/rules/profiler/cuda_profile_block: the migrated torch_npu.profiler block records a trace."""
    pytest.importorskip("torch")
    source = (Path(__file__).resolve().parents[2] / "fixtures" / "rules" / "profiler" / "cuda_profile_block.in.py")
    result = rewrite_source(source.read_bytes(), "profile_run.py", load_ruleset())
    assert result.status is Status.CHANGED
    (tmp_path / "profile_run.py").write_bytes(result.new_source)
    proc = subprocess.run(
        [sys.executable, "-m", "transplant.emulate.runner", "--strict-cuda", "profile_run.py"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "TRANSPLANT_NPU_COUNT": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "OK True"
