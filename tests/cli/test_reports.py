"""The reports: exact headers (msFmkTransplt's first columns), rows, JSON, log."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from cli_helpers import write_tree

CHANGE_HEADER = ["File", "Start Line", "End Line", "Operation Type", "Message",
                 "Cell", "Column", "Rule", "Severity", "Before", "After"]
UNSUPPORTED_HEADER = ["File", "Start Line", "End Line", "OP", "Tips", "Cell", "Rule"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_empty_reports_have_headers(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.py": b"x = 1\n"})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    assert (out / "change_list.csv").read_text() == ",".join(CHANGE_HEADER) + "\n"
    assert (out / "unsupported_api.csv").read_text() == ",".join(UNSUPPORTED_HEADER) + "\n"
    assert (out / "cuda_op_list.csv").read_text().splitlines()[0].startswith("File,Api")
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["changes"] == [] and report["unsupported"] == [] and report["cuda_ops"] == []
    assert report["tally"]["python"] == 1 and report["tally"]["unchanged"] == 1


def test_change_rows(invoke, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out).exit_code == 0
    header, rows = read_csv(out / "change_list.csv")
    assert header == CHANGE_HEADER
    assert [r["File"] for r in rows] == sorted((r["File"] for r in rows), key=lambda f: f.split("/"))
    set_device = [r for r in rows if r["Before"] == "torch.cuda.set_device" or
                  r["Before"].startswith("torch.cuda.set_device")]
    assert set_device, rows
    row = set_device[0]
    assert row["File"] == "train.py" and row["Start Line"] == "10" and row["Operation Type"] == "MODIFY"
    assert row["Rule"].startswith("TP") and row["Severity"] in {"safe", "review"} and row["Message"]
    assert "npu" in row["After"]
    assert all(r["Operation Type"] in {"INSERT", "MODIFY", "DELETE"} for r in rows)
    assert all(int(r["Start Line"]) <= int(r["End Line"]) for r in rows)
    # Same rows in the JSON report.
    report = json.loads((out / "transplant_report.json").read_text())
    assert [{k: str(v) for k, v in row.items()} for row in report["changes"]] == rows
    assert report["tally"]["changes"] == len(rows)


def test_unsupported_rows_have_tips(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"tools/mon.py": b"import pynvml\n\npynvml.nvmlInit()\n"})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    header, rows = read_csv(out / "unsupported_api.csv")
    assert header == UNSUPPORTED_HEADER
    assert rows and all(r["File"] == "tools/mon.py" for r in rows)
    assert all(r["Tips"].strip() and r["Rule"].startswith("TP") for r in rows)
    assert any("pynvml" in r["OP"] for r in rows)
    report = json.loads((out / "transplant_report.json").read_text())
    assert len(report["unsupported"]) == len(rows) == report["tally"]["unsupported"]


def test_cuda_op_list(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {
        "csrc/ext.cpp": b'#include <torch/extension.h>\nPYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n'
                        b'  m.def("forward", &forward, "fwd");\n}\n',
        "csrc/kernels.cu": b'TORCH_LIBRARY(myops, m) {\n  m.def("scale(Tensor x) -> Tensor");\n}\n'
                           b'TORCH_LIBRARY_IMPL(myops, CUDA, m) {\n  m.impl("scale", &scale_cuda);\n}\n',
        "README.md": b'm.def("not_source", f)\n',
    })
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    header, rows = read_csv(out / "cuda_op_list.csv")
    assert header[:2] == ["File", "Api"]
    assert [(r["File"], r["Api"]) for r in rows] == [
        ("csrc/ext.cpp", "forward"), ("csrc/kernels.cu", "torch.ops.myops.scale")]
    # The sources themselves are copied byte for byte.
    assert (out / "csrc/kernels.cu").read_bytes() == (src / "csrc/kernels.cu").read_bytes()


def test_json_and_log(invoke, project: Path, tmp_path: Path) -> None:
    write_tree(project, {"legacy.py": b"import torch\nprint 'py2', torch.cuda.is_available()\n"})
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out, "--exclude", "README.md").exit_code == 0
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["tool"] == "transplant"
    assert report["entry"] == "train.py"
    assert set(report["tally"]) >= {"files", "python", "changed", "unchanged", "skipped", "failed", "changes",
                                    "unsupported", "native_ops"}
    assert report["failed"] == [{"file": "legacy.py", "reason": report["failed"][0]["reason"]}]
    assert report["skipped"] == [{"file": "README.md", "reason": "excluded by --exclude README.md"}]
    assert report["options"] == {"rules": [], "select": [], "ignore": [], "exclude": ["README.md"], "amp": None,
                                 "npu_fused_optimizers": False, "trust_pickles": False, "rewrite_configs": False,
                                 "distributed": False, "model": None,
                                 "entry": None, "respect_ignore": True, "copy_vcs": False,
                                 "file_timeout": 120.0, "max_memory_mib": 2048}
    by_rule = report["by_rule"]
    assert sum(v["changes"] for v in by_rule.values()) == report["tally"]["changes"]
    assert by_rule["TP101"]["changes"] >= 1 and list(by_rule) == sorted(by_rule)
    log = (out / "transplant.log").read_text()
    assert "CHANGED   train.py" in log and "FAILED    legacy.py" in log and "SKIPPED   README.md" in log
    assert "tally: files=7" in log


def test_report_paths_are_posix_relative(invoke, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out).exit_code == 0
    _, rows = read_csv(out / "change_list.csv")
    assert {r["File"] for r in rows} == {"train.py", "models/utils.py"}


def test_file_names_that_are_not_utf8(invoke, tmp_path: Path) -> None:
    import os

    src = tmp_path / "src"
    src.mkdir()
    name = os.fsdecode(b"caf\xe9.py")
    (src / name).write_bytes(b"import argparse\nimport torch\ntorch.cuda.set_device(0)\n"
                             b"if __name__ == '__main__':\n    argparse.ArgumentParser().parse_args()\n")
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert b"torch.npu.set_device(0)" in (out / name).read_bytes()
    _, rows = read_csv(out / "change_list.csv")
    assert {r["File"] for r in rows} == {"caf\\xe9.py"}
    assert json.loads((out / "transplant_report.json").read_text())["entry"] == "caf\\xe9.py"
    # The launcher names the real file (its bytes), not the escaped display form.
    assert b"default_entry='caf\xe9.py'\n" in (out / "run_distributed_npu.sh").read_bytes()


def test_file_names_cannot_forge_lines(invoke, tmp_path: Path) -> None:
    # A name holding a newline (and a terminal escape) must stay on its own line in every text output.
    evil = "x.py\nFAILED    forged.py: \x1b[2Kreason"
    src = write_tree(tmp_path / "src", {evil + ".py": b"import torch\nx = torch.zeros(1).cuda()\n",
                                        "bad\nname.py": b"x.cuda()\ndef (:\n"})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    log_lines = (out / "transplant.log").read_text(encoding="utf-8").splitlines()
    assert not any(line.startswith("FAILED    forged.py") for line in log_lines)
    assert "CHANGED   x.py\\nFAILED    forged.py: \\x1b[2Kreason.py: 2 edit(s), 0 unsupported use(s)" in log_lines
    assert any(line.startswith("FAILED    bad\\nname.py: ") for line in log_lines)
    assert "\x1b" not in (out / "transplant.log").read_text(encoding="utf-8")
    for line in result.stderr.splitlines():
        assert line.startswith("transplant: "), result.stderr
    assert "bad\\nname.py: not migrated" in result.stderr
    _, rows = read_csv(out / "change_list.csv")
    assert {r["File"] for r in rows} == {"x.py\\nFAILED    forged.py: \\x1b[2Kreason.py"}
    report = json.loads((out / "transplant_report.json").read_text(encoding="utf-8"))
    assert report["failed"][0]["file"] == "bad\nname.py"  # JSON escapes it itself: the exact name
    assert (out / (evil + ".py")).read_bytes() == b"import torch\nimport torch_npu\nx = torch.zeros(1).npu()\n"


def test_file_name_in_diff_header_is_quoted(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a\n+++ b/other.py": b"x.cuda()\n"})
    result = invoke("-i", src, "--diff")
    assert result.exit_code == 0, result.output
    headers = [line for line in result.stdout.splitlines() if line.startswith(("---", "+++"))]
    assert headers == ['--- "a/a\\n+++ b/other.py"', '+++ "b/a\\n+++ b/other.py"'], result.stdout


def test_auto_report_and_offline_report_share_their_header(tmp_path: Path) -> None:
    """One torch-free module owns the columns: the auto change log is change_list.csv's header + Count.

    In a fresh process: importing transplant.auto arms auto mode, which must not happen in this one.
    """
    import subprocess
    import sys

    from transplant import report_format

    assert report_format.CHANGE_COLUMNS == CHANGE_HEADER
    target = tmp_path / "auto.csv"
    code = ("import sys\nfrom transplant.auto import _record\n"
            "from transplant.report_format import AUTO_CHANGE_COLUMNS, CHANGE_COLUMNS\n"
            "assert _record.COLUMNS is AUTO_CHANGE_COLUMNS and AUTO_CHANGE_COLUMNS[:-1] == CHANGE_COLUMNS\n"
            "_record.record('torch.cuda.synchronize', 'redirect', 'torch.cuda.synchronize', "
            "'torch.npu.synchronize', depth=1)\n"
            "_record.write_report(sys.argv[1])\n"
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 0, done.stderr
    text = target.read_text(encoding="utf-8")
    assert text.splitlines()[0] == ",".join([*CHANGE_HEADER, "Count"])
    assert "\r" not in text and not list(tmp_path.glob(".transplant-*"))  # written through atomic.py
    header, rows = read_csv(target)
    assert rows[0]["Count"] == "1" and rows[0]["After"] == "'torch.npu.synchronize'"


def test_csv_quoting_matches_the_golden_style() -> None:
    from transplant.report_format import csv_text

    text = csv_text(["A", "B", "C"], [["x,y", 'say "hi"', 3], ["", None, "multi\nline"]])
    assert text == 'A,B,C\n"x,y","say ""hi""",3\n,,"multi\nline"\n'


def test_a_migration_never_imports_pandas_or_numpy(project: Path, tmp_path: Path) -> None:
    """The core install brings no numpy-dependent package: the reports use the csv module."""
    import subprocess
    import sys

    code = ("import sys\nfrom transplant.cli import main\n"
            "try:\n    main(['-q', '-j', '1', '-i', sys.argv[1], '-o', sys.argv[2]])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pandas', 'numpy', 'torch'))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code, str(project), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "change_list.csv").is_file()
