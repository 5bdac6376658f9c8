"""``make demo`` (python -m transplant.demo): migrate the ALBERT trainer and verify it against the original."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from e2e_support import PYTHON, ROOT, run_process

pytestmark = pytest.mark.slow


def test_demo_migrates_verifies_and_summarises(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    run = run_process([PYTHON, "-m", "transplant.demo", "--workdir", str(workdir), "--steps", "4"], cwd=ROOT)
    assert run.returncode == 0, run.describe()
    out = run.stdout
    # the main change, before and after
    assert '- device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")' in out
    assert '+ device = torch.device("npu" if torch.npu.is_available() and not args.no_cuda else "cpu")' in out
    assert "+ torch.distributed.init_process_group(backend='hccl')" in out
    # the side-by-side table: both columns, equal on every step
    assert re.search(r"^step  loss: original \(cpu\) +loss: migrated \(emulated npu\)", out, re.M)
    rows = re.findall(r"^ +(\d+)  (\d+\.\d{10}) +(\d+\.\d{10}) +0  identical$", out, re.M)
    assert [int(step) for step, _, _ in rows] == [1, 2, 3, 4]
    assert all(a == b for _, a, b in rows)
    assert "PASS: 4 optimizer step(s) compared: bit-identical losses and parameters." in out
    report = workdir / "verify" / "verify_report.json"
    assert f"Report:    {report}" in out
    assert json.loads(report.read_text())["status"] == "parity"
    assert re.search(r"^Loss plot: \S+verify_loss\.(png|txt)$", out, re.M)
    # the migration reports
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
