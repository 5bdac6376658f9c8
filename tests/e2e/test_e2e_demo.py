"""``make demo`` (python -m transplant.demo): migrate the ALBERT trainer and train it on the emulated NPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_support import PYTHON, ROOT, run_process

pytestmark = pytest.mark.slow


def test_demo_migrates_trains_and_summarises(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run = run_process([PYTHON, "-m", "transplant.demo", "--workdir", str(workdir), "--steps", "4"], cwd=ROOT)
    assert run.returncode == 0, run.describe()
    out = run.stdout
    assert "Loss curve (4 steps on npu:0)" in out
    assert len(re.findall(r"^  step +\d+  loss \d+\.\d{4} ", out, re.M)) == 4
    assert re.search(r"^  change_list\.csv +[1-9]\d* row\(s\)$", out, re.M)
    assert re.search(r"^  unsupported_api\.csv +[1-9]\d* row\(s\)$", out, re.M)
    assert "torch.nn.DataParallel" in out  # a top unsupported row, with its tip
    assert (workdir / "albert_npu" / "run_distributed_npu.sh").is_file()
    # marked as the demo's own, so the next run may delete and recreate it
    assert (workdir / ".transplant-demo").is_file()


def test_demo_refuses_a_foreign_workdir(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("not the demo's")
    run = run_process([PYTHON, "-m", "transplant.demo", "--workdir", str(tmp_path)], cwd=ROOT)
    assert run.returncode != 0
    assert "was not made by the demo" in run.stderr
    assert (tmp_path / "keep.txt").read_text() == "not the demo's"
