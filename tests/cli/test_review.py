"""OUT's transplant.diff and transplant_report.html, and the terminal's per-rule summary."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import REPO, TRAIN_PY, UTILS_PY, write_tree

from transplant._paths import rules_dir

PROPS = b"import torch\n\nname = torch.cuda.get_device_properties(0).name\nx = torch.zeros(1).cuda()\n"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "src", {
        "train.py": TRAIN_PY, "models/utils.py": UTILS_PY, "props.py": PROPS, "notes.txt": b"cuda\n",
        "mon.py": b"import torch\ntorch.backends.cudnn.benchmark = True\n",
    })


@pytest.mark.skipif(shutil.which("git") is None, reason="git applies the diff")
def test_diff_is_per_file_in_file_order_and_applies(invoke, src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    diff = (out / "transplant.diff").read_bytes()
    headers = re.findall(rb"^\+\+\+ b/(.*)$", diff, re.M)
    assert headers == [b"models/utils.py", b"props.py", b"train.py"]
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    subprocess.run(["git", "apply", "-p1", str(out / "transplant.diff")], cwd=copy, check=True)
    for rel in ("models/utils.py", "props.py", "train.py"):
        assert (copy / rel).read_bytes() == (out / rel).read_bytes()


def test_html_report_is_self_contained_and_puts_review_first(invoke, src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    page = (out / "transplant_report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r'\b(src|href)="https?:', page) and "@import" not in page
    assert "<link" not in page  # CSS is inline
    summary = page[page.index("By rule and severity"):page.index("<h2>Changes")]
    severities = re.findall(r'<td class="(review|safe)">', summary)
    assert severities == sorted(severities, key=lambda s: s != "review") and "review" in severities
    changes = page[page.index("<h2>Changes"):page.index("<h2>Unsupported")]
    items = re.findall(r'<div class="item"><h3><span class="(review|safe)">', changes)
    assert items[0] == "review" and items == sorted(items, key=lambda s: s != "review")
    # each change: its before/after snippet, from the original and the rewritten file
    assert html.escape("torch.cuda.get_device_properties(0)") in changes
    assert html.escape("torch.npu.get_device_properties(0)") in changes
    assert changes.count('<pre class="before">') == changes.count('<pre class="after">') == len(items)
    # every rule link points at an existing heading of the bundled rules/README.md
    readme = (rules_dir() / "README.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'href="[^"#]*README\.md#(tp\d+)"', page))
    assert anchors >= {"tp111", "tp120", "tp540"}
    assert all(f"### {a.upper()}" in readme for a in anchors)
    assert "cuDNN" in page[page.index("<h2>Unsupported"):]


def test_review_files_are_deterministic(src: Path, tmp_path: Path) -> None:
    """Byte-identical across runs, OUT folders, -j and hash seeds."""
    outputs = []
    for n, (seed, jobs) in enumerate((("0", "1"), ("123", "2"))):
        out = tmp_path / f"out{n}"
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        subprocess.run([sys.executable, "-m", "transplant", "-q", "-j", jobs, "-i", str(src), "-o", str(out)],
                       check=True, env=env, cwd=REPO, timeout=120)
        outputs.append({name: (out / name).read_bytes() for name in ("transplant.diff", "transplant_report.html",
                                                                     "change_list.csv", "unsupported_api.csv")})
    assert outputs[0] == outputs[1]


def test_terminal_summary_by_rule_and_severity(invoke, src: Path, tmp_path: Path) -> None:
    result = invoke("-i", src, "-o", tmp_path / "out")
    lines = result.stderr.splitlines()
    start = lines.index("transplant: by rule (review first):")
    rows = []
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) < 4 or parts[1] not in ("review", "safe"):
            break
        rows.append((parts[1], parts[2], int(parts[3])))
    assert rows[0][0] == "review" and [r[0] for r in rows] == sorted((r[0] for r in rows), key=lambda s: s != "review")
    assert ("review", "TP111", 1) in rows and ("safe", "TP120", 1) in rows and ("safe", "TP190", 3) in rows
    assert any(r[1] == "TP540" for r in rows)
