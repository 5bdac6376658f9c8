"""``transplant run --op-report`` on the migrated Self-MM and ALBERT trainers: findings with the right call sites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e_support import EMULATOR_ENV, PYTHON, albert_args, run_process, selfmm_args

pytestmark = pytest.mark.slow


def _op_report(args: list, cwd: Path, report: Path, loss_log: Path) -> dict:
    run = run_process([PYTHON, "-m", "transplant", "run", "--op-report", str(report), *args], cwd=cwd,
                      env=EMULATOR_ENV, loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    assert "transplant: op report:" in run.stderr
    assert "CAUTION" not in run.stderr  # neither trainer uses an operator torch_npu 2.13 runs on the CPU
    return json.loads(report.with_suffix(".json").read_text(encoding="utf-8"))


def _sites(report: dict, rule: str, severity: str = "review") -> set:
    return {(f["file"], f["line"]) for f in report["findings"] if f["rule"] == rule and f["severity"] == severity}


def test_selfmm_op_report(selfmm_migrated: Path, selfmm_work: Path) -> None:
    args, loss_log = selfmm_args(selfmm_work, "op-report")
    args[args.index("--max_epochs") + 1] = "2"
    report = _op_report(args, selfmm_migrated, selfmm_work / "ops.csv", loss_log)
    assert report["steps"] > 0 and report["processes"] == 1
    assert not [f for f in report["findings"] if f["rule"] in ("TP750", "TP751", "TP752", "TP753")]
    # pack_padded_sequence in the audio/vision subnets: a data-dependent shape on Ascend
    assert ("models/multiTask/SELF_MM.py", 128) in _sites(report, "TP754")
    # boolean-mask indexing when the label centres are updated: a host sync and a data-dependent shape
    assert {("trains/multiTask/SELF_MM.py", 262), ("trains/multiTask/SELF_MM.py", 263)} <= _sites(report, "TP755")
    # the per-batch .cpu() of the predictions
    assert ("trains/multiTask/SELF_MM.py", 148) in _sites(report, "TP755")


def test_albert_op_report(albert_migrated: Path, albert_work: Path, albert_cpu) -> None:
    args, loss_log = albert_args(albert_work, "op-report")
    report = _op_report(args, albert_migrated, albert_work / "ops.csv", loss_log)
    assert report["steps"] == 20
    assert not [f for f in report["findings"] if f["rule"] in ("TP750", "TP751", "TP752", "TP753")]
    # collate_fn truncates every batch to its longest sequence: the shapes enter the NPU at the batch upload
    causes = [f for f in report["findings"] if f["rule"] == "TP754" and f["severity"] == "review"]
    assert [(f["file"], f["line"]) for f in causes] == [("run_classifier.py", 105)], causes
    assert "collate_fn" in causes[0]["tip"]
    # everything downstream follows from it (info, pointing at the cause)
    follows = [f for f in report["findings"] if f["rule"] == "TP754" and f["severity"] == "info"]
    assert follows and all("run_classifier.py:105" in f["tip"] for f in follows)
    # the three loss .item() calls per step
    assert {("run_classifier.py", 123), ("run_classifier.py", 124), ("run_classifier.py", 125)} <= _sites(report, "TP755")
