"""--check as a CI gate: baseline files robust to line shifts, output formats, statistics, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import write_tree

OLD = "import torch\n\nmodel = torch.nn.DataParallel(torch.nn.Linear(2, 2), device_ids=[0, 1])\nx = torch.zeros(2).cuda()\n"


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", {"train.py": OLD, "lib/util.py": "import torch\ntorch.cuda.synchronize()\n"})


def test_baseline_gates_only_new_cuda_code(invoke, legacy: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "transplant-baseline.json"
    written = invoke("-i", legacy, "--write-baseline", baseline)
    assert written.exit_code == 0, written.output
    document = json.loads(baseline.read_text())
    assert document["tool"] == "transplant" and len(document["findings"]) >= 4
    assert all(set(e) >= {"file", "rule", "fingerprint"} for e in document["findings"])
    # Byte-identical when written again (no dates, sorted).
    again = tmp_path / "again.json"
    assert invoke("-i", legacy, "--write-baseline", again).exit_code == 0
    assert again.read_bytes() == baseline.read_bytes()

    assert invoke("-i", legacy, "--check").exit_code == 1
    clean = invoke("-i", legacy, "--check", "--baseline", baseline)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout == "" and "0 finding(s)" in clean.stderr and "in the baseline" in clean.stderr

    # Lines added above the old code shift every line number: the baseline still matches.
    (legacy / "train.py").write_text("import os\n# a new header comment\n\n" + OLD.replace("\n\n", "\n\n\n"))
    assert invoke("-i", legacy, "--check", "--baseline", baseline).exit_code == 0

    # New CUDA code fails the gate, and only the new finding is printed.
    with (legacy / "train.py").open("a") as handle:
        handle.write("y = torch.ones(3, device='cuda:1')\n")
    new = invoke("-i", legacy, "--check", "--baseline", baseline)
    assert new.exit_code == 1
    assert new.stdout.splitlines() == [f"{(legacy / 'train.py').as_posix()}:9:26: TP130 [safe] 'cuda:1' -> 'npu:1'"]


def test_identical_lines_are_counted_not_merged(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.py": "import torch\nx = torch.zeros(2).cuda()\n"})
    baseline = tmp_path / "b.json"
    assert invoke("-i", src, "--write-baseline", baseline).exit_code == 0
    (src / "a.py").write_text("import torch\nx = torch.zeros(2).cuda()\nx = torch.zeros(2).cuda()\n")
    result = invoke("-i", src, "--check", "--baseline", baseline)
    assert result.exit_code == 1 and len(result.stdout.splitlines()) == 1


def test_fixed_findings_are_reported_as_stale(invoke, legacy: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "b.json"
    assert invoke("-i", legacy, "--write-baseline", baseline).exit_code == 0
    (legacy / "lib/util.py").write_text("import torch\n")
    result = invoke("-i", legacy, "--check", "--baseline", baseline)
    assert result.exit_code == 0
    assert "baseline entr" in result.stderr and "fixed since" in result.stderr


def test_bad_and_missing_baselines(invoke, legacy: Path, tmp_path: Path) -> None:
    missing = invoke("-i", legacy, "--check", "--baseline", tmp_path / "nope.json")
    assert missing.exit_code == 3 and len(missing.stderr.splitlines()) == 1 and "nope.json" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"some": "thing"}')
    result = invoke("-i", legacy, "--check", "--baseline", bad)
    assert result.exit_code == 2 and "not a transplant baseline" in result.stderr


def test_usage_errors_exit_2(invoke, legacy: Path) -> None:
    for args in (["--statistics"], ["--output-format", "json"], ["--baseline", "x.json"]):
        result = invoke("-i", legacy, "-o", legacy.parent / "out", *args)
        assert result.exit_code == 2, args
        assert "goes with --check" in result.stderr
    assert invoke("-i", legacy, "--check", "--output-format", "xml").exit_code == 2
    mixed = invoke("-i", legacy, "--check", "--diff", "--output-format", "json")
    assert mixed.exit_code == 2 and "do not go with --diff" in mixed.stderr


def test_output_format_json(invoke, legacy: Path) -> None:
    result = invoke("-i", legacy, "--check", "--output-format", "json")
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert {f["rule"] for f in findings} >= {"TP120", "TP101"}
    assert all(set(f) >= {"file", "line", "column", "rule", "severity", "message", "fingerprint"} for f in findings)
    assert any(f["kind"] == "unsupported" for f in findings)


def test_output_format_github(invoke, legacy: Path) -> None:
    result = invoke("-i", legacy, "--check", "--output-format", "github")
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith(("::error file=", "::warning file=")) for line in lines)
    assert any("line=4," in line and "title=transplant TP120::" in line for line in lines)


def test_output_format_sarif(invoke, legacy: Path) -> None:
    result = invoke("-i", legacy, "--check", "--output-format", "sarif")
    document = json.loads(result.stdout)
    assert document["version"] == "2.1.0" and document["$schema"].endswith("sarif-2.1.0.json")
    run = document["runs"][0]
    assert run["tool"]["driver"]["name"] == "transplant"
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rule_ids == sorted(rule_ids)
    for item in run["results"]:
        assert rule_ids[item["ruleIndex"]] == item["ruleId"]
        region = item["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and item["partialFingerprints"]["transplant/v1"]


def test_statistics(invoke, legacy: Path) -> None:
    result = invoke("-i", legacy, "--check", "--statistics")
    assert result.exit_code == 1
    table = [line.split(None, 2) for line in result.stdout.splitlines()]
    counts = {row[1]: int(row[0]) for row in table}
    assert counts["TP120"] == 1 and counts["TP190"] == 2 and counts["TP101"] == 1
    assert [int(row[0]) for row in table] == sorted((int(row[0]) for row in table), reverse=True)
    as_json = json.loads(invoke("-i", legacy, "--check", "--statistics", "--output-format", "json").stdout)
    assert {item["rule"]: item["count"] for item in as_json} == counts
