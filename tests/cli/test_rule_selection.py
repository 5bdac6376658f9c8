"""-r/--rules, --select and --ignore reach the rewriter."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import write_tree

SOURCE = b'import torch\nimport mylib\n\ntorch.cuda.set_device(0)\nx = torch.ones(1).to("cuda")\nmylib.cuda_thing()\n'


def rules_of(out: Path) -> set[str]:
    report = json.loads((out / "transplant_report.json").read_text())
    return {row["Rule"] for row in report["changes"]}


def migrate(invoke, tmp_path: Path, *args: str) -> tuple[str, set[str]]:
    src = write_tree(tmp_path / "src", {"a.py": SOURCE})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out, *args)
    assert result.exit_code == 0, result.output
    return (out / "a.py").read_text(), rules_of(out)


def test_all_rules_by_default(invoke, tmp_path: Path) -> None:
    text, rules = migrate(invoke, tmp_path)
    assert "torch.npu.set_device(0)" in text and '.to("npu")' in text
    assert {"TP101", "TP130"} <= rules


def test_ignore_prefix(invoke, tmp_path: Path) -> None:
    text, rules = migrate(invoke, tmp_path, "--ignore", "TP10")
    assert "torch.cuda.set_device(0)" in text and '.to("npu")' in text
    assert not any(rule.startswith("TP10") for rule in rules)


def test_select_prefix(invoke, tmp_path: Path) -> None:
    text, rules = migrate(invoke, tmp_path, "--select", "TP101", "--select", "TP19")
    assert "torch.npu.set_device(0)" in text and '.to("cuda")' in text
    assert rules and all(rule.startswith(("TP101", "TP19")) for rule in rules)


def test_extra_rule_file(invoke, tmp_path: Path) -> None:
    extra = tmp_path / "mine.json"
    extra.write_text(json.dumps({"name": "mine", "description": "project rules", "rules": [
        {"id": "TP998", "kind": "rename", "severity": "review", "message": "mylib device call",
         "map": {"mylib.cuda_thing": "mylib.npu_thing"}}]}))
    text, rules = migrate(invoke, tmp_path, "-r", extra)
    assert "mylib.npu_thing()" in text and "TP998" in rules
