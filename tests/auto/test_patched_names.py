"""Every patched name runs with CUDA-style arguments on the emulated NPU (cases: emulated_cases.py)."""

from __future__ import annotations

import csv
from pathlib import Path


def test_case(case_run, emulated_case):
    assert case_run.results, f"the case worker crashed (exit {case_run.returncode}):\n{case_run.stderr[-3000:]}"
    result = case_run.results["cases"][emulated_case]
    assert result["ok"], result.get("error")


def test_every_patched_name_has_a_case(case_run):
    results = case_run.results
    covered = set(results["covered_dynamically"])
    for case in results["cases"].values():
        covered.update(case["covers"])
    patched = {name for name in results["patched"] if "@" not in name}  # "@dist": same patch, second alias
    assert len(patched) > 150
    assert sorted(patched - covered) == []


def test_banner_once_and_short(case_run):
    banners = [line for line in case_run.stderr.splitlines() if line.startswith("transplant.auto:")]
    assert len(banners) == 1, case_run.stderr[-2000:]
    assert "TRANSPLANT_AUTO_QUIET=1" in banners[0] and len(banners[0]) < 200


def test_runtime_change_log(case_run):
    """TRANSPLANT_AUTO_REPORT: change_list.csv columns (+ Count), first call site, shared rule ids."""
    with open(case_run.report, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["File", "Start Line", "End Line", "Operation Type", "Message", "Cell", "Column", "Rule",
                                 "Severity", "Before", "After", "Count"]
    by_message = {row["Message"].split(" ")[0].rstrip(":"): row for row in rows}
    available = by_message["torch.cuda.is_available"]
    assert available["Rule"] == "TP101" and available["File"] == "emulated_cases.py"
    lines = (Path(__file__).parent / "emulated_cases.py").read_text(encoding="utf-8").splitlines()
    first = lines[int(available["Start Line"]) - 1]
    assert "torch.cuda.is_available()" in first, first
    assert int(available["Count"]) >= 3
    zeros = [row for row in rows if row["Message"].startswith("torch.zeros:")]
    assert zeros and all(row["Operation Type"] == "MODIFY" and row["Severity"] == "safe" for row in zeros)
    assert {row["Before"] for row in zeros} >= {"'cuda'", "'cuda:0'", "torch.device('cuda')"}
    amp = by_message["torch.cuda.amp.GradScaler"]
    assert amp["Rule"].startswith("TP4"), amp
    unsupported = [row for row in rows if "has no NPU equivalent" in row["Message"]]
    assert unsupported and all(row["Rule"].startswith("TP5") and row["Severity"] == "review" for row in unsupported)
    checkpoint = [row for row in rows if row["Message"].startswith("torch.load restored")]
    assert checkpoint and checkpoint[0]["Before"] == "'cuda:0'" and checkpoint[0]["After"] == "'npu:0'"
    assert all(int(row["Start Line"]) > 0 for row in rows)
    # rows carry the id of the offline rule that makes the same change
    rules = {row["Message"].split(" ")[0].rstrip(":"): row["Rule"] for row in rows}
    assert rules["torch.zeros"] == "TP130" and rules["torch.Tensor.cuda"] == "TP120"
    assert rules["torch.Tensor.is_cuda"] == "TP121" and rules["torch.Tensor.type"] == "TP160"
    assert rules["torch.distributed.init_process_group"] == "TP140"
    assert rules["torch.distributed.is_nccl_available"] == "TP141"
    assert rules["torch.profiler.profile"] == "TP564"
    assert checkpoint[0]["Rule"] == "TP170"
    assert all(row["Rule"] for row in rows), [row for row in rows if not row["Rule"]]


def test_coverage_matches_transfer_to_npu(case_run):
    """Each name transfer_to_npu patches (transplant/data/transfer_to_npu.json) is ours too, or
    deliberately not with a stated reason (DIFFERENCES_FROM_TRANSFER_TO_NPU / the rule sets)."""
    coverage = case_run.results["transfer_to_npu"]
    assert len(coverage) > 250
    missing = sorted(name for name, status in coverage.items() if status == "MISSING")
    assert missing == []
    patched = [name for name, status in coverage.items() if status == "patched"]
    assert len(patched) > 100
