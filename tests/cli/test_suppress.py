"""``# transplant: ignore[ID]`` / bare ``# transplant: ignore``: honoured by migration, --check and reports."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

from cli_helpers import write_tree

from transplant.suppress import find_suppressions, parse_codes

SOURCE = '''import torch
import torch.nn as nn

model = nn.Linear(2, 2).cuda()  # transplant: ignore[TP120]
x = torch.zeros(2, device="cuda")
net = nn.DataParallel(model, device_ids=[0, 1])  # transplant: ignore
y = torch.ones(
    3, device="cuda")  # a comment on a continuation line
z = torch.ones(  # transplant: ignore
    3, device="cuda")
w = torch.ones(2, device="cuda")  # transplant: ignore[TP540]
v = torch.ones(2, device="cuda")  # transplant: ignore[tp1, TP13]
note = "# transplant: ignore"; u = torch.ones(2, device="cuda")
torch.backends.cudnn.benchmark = True
'''


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_parse_codes_and_comment_positions() -> None:
    assert parse_codes(None) == frozenset({""}) and parse_codes(" ") == frozenset({""})
    assert parse_codes("tp541, TP1") == frozenset({"TP541", "TP1"})
    marks = find_suppressions(SOURCE)
    assert marks.suppresses("TP120", 4) and not marks.suppresses("TP130", 4)
    assert marks.suppresses("TP999", 6)
    assert marks.suppresses("TP130", 10)  # the statement's first line (9) covers its other lines
    assert not marks.suppresses("TP130", 8)
    assert marks.suppresses("TP130", 12)  # prefix TP13
    assert not marks.suppresses("TP130", 13)  # inside a string: not a comment


def test_migration_leaves_suppressed_statements_and_reports_them(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"train.py": SOURCE})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    new = (out / "train.py").read_text().splitlines()
    old = SOURCE.splitlines()
    ast.parse("\n".join(new))
    assert "import torch_npu" in new
    body = new[new.index("import torch_npu") + 1:]
    assert body[2] == old[3]                                   # .cuda() kept (TP120 suppressed)
    assert body[3] == 'x = torch.zeros(2, device="npu")'      # not suppressed
    assert body[6] == '    3, device="npu")  # a comment on a continuation line'
    assert body[7:9] == old[8:10]                              # bare comment on the first line
    assert body[9] == 'w = torch.ones(2, device="npu")  # transplant: ignore[TP540]'  # other rule named
    assert body[10] == old[11]
    assert body[11] == 'note = "# transplant: ignore"; u = torch.ones(2, device="npu")'
    changes = rows(out / "change_list.csv")
    assert {r["Start Line"] for r in changes if r["Rule"] != "TP190"} == {"5", "8", "11", "13"}
    unsupported = rows(out / "unsupported_api.csv")
    assert [r["Rule"] for r in unsupported] == ["TP540"]       # DataParallel (line 6) acknowledged
    report = json.loads((out / "transplant_report.json").read_text())
    suppressed = {(s["line"], s["rule"], s["kind"]) for s in report["suppressed"]}
    assert (4, "TP120", "change") in suppressed and (10, "TP130", "change") in suppressed
    assert (12, "TP130", "change") in suppressed and any(s[0] == 6 and s[2] == "unsupported" for s in suppressed)
    assert report["tally"]["suppressed"] == len(report["suppressed"]) == 4
    assert "4 suppressed" in result.stderr
    # A second run changes nothing more.
    again = tmp_path / "again"
    assert invoke("-i", out, "-o", again).exit_code == 0
    assert (again / "train.py").read_bytes() == (out / "train.py").read_bytes()


def test_check_passes_when_every_finding_is_acknowledged(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"train.py": (
        "import torch\n"
        "model = torch.nn.DataParallel(torch.nn.Linear(2, 2), device_ids=[0, 1])  # transplant: ignore[TP5]\n"
        "torch.backends.cudnn.benchmark = True  # transplant: ignore\n"
        "x = torch.zeros(2).cuda()  # transplant: ignore[TP120]\n")})
    result = invoke("-i", src, "--check")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    # three acknowledged uses, plus the `import torch_npu` that only the suppressed .cuda() needed
    assert "0 finding(s), 4 suppressed by comments" in result.stderr
    # Without the comments the same code fails the gate.
    plain = write_tree(tmp_path / "plain", {"train.py": (src / "train.py").read_text().replace(
        "# transplant: ignore", "#")})
    assert invoke("-i", plain, "--check").exit_code == 1


def test_the_import_is_not_added_for_suppressed_edits_only(invoke, tmp_path: Path) -> None:
    source = "import torch\n\nx = torch.zeros(2).cuda()  # transplant: ignore\n"
    src = write_tree(tmp_path / "src", {"a.py": source})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    assert (out / "a.py").read_text() == source
    assert rows(out / "change_list.csv") == []


def test_an_edit_entangled_with_an_unsuppressed_one_is_kept_with_a_warning(invoke, tmp_path: Path) -> None:
    """Both rows on one line, one rule suppressed: the line stays rewritten, so both rows stay (never a
    row without its edit), and the run says the comment was not honoured."""
    source = 'import torch\n\nx = torch.zeros(2, device="cuda").cuda()  # transplant: ignore[TP120]\n'
    src = write_tree(tmp_path / "src", {"a.py": source})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0
    assert 'x = torch.zeros(2, device="npu").npu()' in (out / "a.py").read_text()
    assert {r["Rule"] for r in rows(out / "change_list.csv")} == {"TP120", "TP130", "TP190"}
    assert "a.py:3: `# transplant: ignore` for TP120 not honoured" in result.stderr
