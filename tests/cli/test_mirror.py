"""SRC mirrored into OUT: byte-for-byte copies, rewrites, modes, symlinks, exclusions, encodings."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest

from cli_helpers import MODEL_PY, TRAIN_PY, UTILS_PY, tree_bytes, write_tree

REPORTS = {"change_list.csv", "unsupported_api.csv", "cuda_op_list.csv", "transplant_report.json",
           "transplant.log", "run_distributed_npu.sh", "transplant.diff", "transplant_report.html",
           "unknown_api.csv", "api_precision_advice.csv", "api_performance_advice.csv", "affinity_api_call.csv"}


def migrated(out: Path) -> dict[str, bytes | str]:
    """OUT without transplant's own files."""
    return {k: v for k, v in tree_bytes(out).items() if k not in REPORTS}


def test_every_file_mirrored_and_src_untouched(invoke, project: Path, tmp_path: Path) -> None:
    before = tree_bytes(project)
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out, "-j", "1")
    assert result.exit_code == 0, result.output
    assert tree_bytes(project) == before
    files = migrated(out)
    assert set(files) == set(before)
    # Non-Python and unchanged Python files: the very same bytes.
    for rel in ("data/weights.bin", "README.md", "models/__init__.py", "models/net.py"):
        assert files[rel] == before[rel], rel
    # Rewritten files: the specified migrations, nothing device-agnostic touched.
    train = files["train.py"].decode()
    assert "torch.npu.set_device(0)" in train and "torch.cuda.set_device" not in train
    assert '"--cuda"' in train and 'help="use cuda"' in train
    assert 'x.to("npu")' in files["models/utils.py"].decode()
    for rel, content in files.items():
        if rel.endswith(".py"):
            ast.parse(content)
    assert REPORTS <= set(tree_bytes(out))


def test_tally_on_stderr(invoke, project: Path, tmp_path: Path) -> None:
    result = invoke("-i", project, "-o", tmp_path / "out")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "4 Python file(s) scanned: 2 changed, 2 unchanged, 0 failed; 0 skipped; 2 other file(s) copied" \
        in result.stderr
    assert "change_list.csv:" in result.stderr and "unsupported_api.csv:" in result.stderr


def test_quiet_prints_nothing(invoke, project: Path, tmp_path: Path) -> None:
    result = invoke("-i", project, "-o", tmp_path / "out", "-q")
    assert result.exit_code == 0
    assert result.output == ""


def test_unchanged_files_are_not_reemitted(invoke, tmp_path: Path) -> None:
    """libcst's native parser does not round-trip trailing whitespace-only lines; we copy such files."""
    tricky = b"# cuda is mentioned, so the file is parsed\nx = 1\n  \n  \n"
    no_newline = b"import torch\ny = torch.zeros(1)"
    src = write_tree(tmp_path / "src", {"tricky.py": tricky, "plain.py": no_newline, "empty.py": b""})
    result = invoke("-i", src, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert migrated(tmp_path / "out") == {"tricky.py": tricky, "plain.py": no_newline, "empty.py": b""}


def test_file_modes_kept(invoke, project: Path, tmp_path: Path) -> None:
    (project / "train.py").chmod(0o750)
    (project / "README.md").chmod(0o600)
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out).exit_code == 0
    assert stat.S_IMODE((out / "train.py").stat().st_mode) == 0o750  # rewritten, mode kept
    assert stat.S_IMODE((out / "README.md").stat().st_mode) == 0o600


def test_symlinks_inside_src_reproduced_others_skipped(invoke, project: Path, tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"secret.py": b"import torch\ntorch.cuda.init()\n"})
    (project / "alias.py").symlink_to("train.py")
    (project / "models_link").symlink_to("models")
    (project / "escape.py").symlink_to(Path("..") / "outside" / "secret.py")
    (project / "absolute.py").symlink_to(outside / "secret.py")
    (project / "dangling.py").symlink_to("missing.py")
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out)
    assert result.exit_code == 0, result.output
    assert os.readlink(out / "alias.py") == "train.py"
    assert os.readlink(out / "models_link") == "models"
    for name in ("escape.py", "absolute.py", "dangling.py"):
        assert not (out / name).exists() and not (out / name).is_symlink(), name
    report = json.loads((out / "transplant_report.json").read_text())
    skipped = {row["file"]: row["reason"] for row in report["skipped"]}
    assert set(skipped) == {"escape.py", "absolute.py", "dangling.py"}
    assert all("symlink" in reason for reason in skipped.values())
    # The link target was not followed: the outside file was neither rewritten nor reported.
    assert tree_bytes(outside) == {"secret.py": b"import torch\ntorch.cuda.init()\n"}
    assert "secret" not in (out / "change_list.csv").read_text()


def test_exclude_copies_unchanged_and_counts_skipped(invoke, project: Path, tmp_path: Path) -> None:
    write_tree(project, {"vendor/lib/x.py": UTILS_PY, "tools/gen.py": UTILS_PY})
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out, "--exclude", "vendor", "--exclude", "tools/*.py",
                    "--exclude", "utils.py")
    assert result.exit_code == 0, result.output
    files = migrated(out)
    for rel in ("vendor/lib/x.py", "tools/gen.py", "models/utils.py"):
        assert files[rel] == UTILS_PY, rel
    report = json.loads((out / "transplant_report.json").read_text())
    assert {r["file"] for r in report["skipped"]} == {"vendor/lib/x.py", "tools/gen.py", "models/utils.py"}
    assert report["tally"]["skipped"] == 3
    assert "models/utils.py" not in (out / "change_list.csv").read_text()


def test_single_file_src(invoke, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke("-i", project / "train.py", "-o", out)
    assert result.exit_code == 0, result.output
    assert set(migrated(out)) == {"train.py"}
    assert "torch.npu.set_device(0)" in (out / "train.py").read_text()
    assert (out / "change_list.csv").read_text().splitlines()[1].startswith("train.py,")


def test_unparseable_files_copied_logged_and_listed(invoke, tmp_path: Path) -> None:
    py2 = b'import torch\nprint "cuda", torch.cuda.is_available()\n'
    undecodable = b"import torch\nx = '\xff\xfe cuda'\n"
    src = write_tree(tmp_path / "src", {"py2.py": py2, "bad.py": undecodable, "ok.py": UTILS_PY})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    files = migrated(out)
    assert files["py2.py"] == py2 and files["bad.py"] == undecodable
    assert 'x.to("npu")' in files["ok.py"].decode()
    report = json.loads((out / "transplant_report.json").read_text())
    assert {r["file"] for r in report["failed"]} == {"py2.py", "bad.py"}
    assert all(r["reason"] for r in report["failed"])
    assert report["tally"]["failed"] == 2
    assert "py2.py" in result.stderr and "bad.py" in result.stderr
    log = (out / "transplant.log").read_text()
    assert "FAILED    py2.py" in log and "FAILED    bad.py" in log


def test_encodings_and_crlf_round_trip(invoke, tmp_path: Path) -> None:
    latin1 = ("# -*- coding: latin-1 -*-\r\nimport torch\r\n# caf\xe9\r\ntorch.cuda.set_device(0)\r\n"
              ).encode("latin-1")
    crlf = b"import torch\r\n\r\ndef f(x):\r\n    return x.cuda()\r\n"
    bom = b"\xef\xbb\xbfimport torch\ntorch.cuda.set_device(1)\n"
    src = write_tree(tmp_path / "src", {"latin.py": latin1, "crlf.py": crlf, "bom.py": bom})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    files = migrated(out)
    latin_out = files["latin.py"]
    assert b"caf\xe9" in latin_out and b"torch.npu.set_device(0)" in latin_out
    assert latin_out.count(b"\r\n") == latin_out.count(b"\n")
    crlf_out = files["crlf.py"]
    assert b"x.npu()" in crlf_out
    assert crlf_out.count(b"\r\n") == crlf_out.count(b"\n")
    assert files["bom.py"].startswith(b"\xef\xbb\xbf") and b"torch.npu.set_device(1)" in files["bom.py"]


def test_idempotent_on_own_output(invoke, project: Path, tmp_path: Path) -> None:
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    assert invoke("-i", project, "-o", out1).exit_code == 0
    result = invoke("-i", out1, "-o", out2)
    assert result.exit_code == 0, result.output
    assert migrated(out2) == migrated(out1)
    assert (out2 / "change_list.csv").read_text().count("\n") == 1  # header only
    report = json.loads((out2 / "transplant_report.json").read_text())
    assert report["tally"]["changed"] == 0
    # The first run's reports at the root of SRC are replaced, not copied over.
    assert {r["file"] for r in report["skipped"]} == REPORTS


def test_jobs_two_matches_jobs_one(invoke, tmp_path: Path) -> None:
    files = {f"pkg{i % 3}/mod{i}.py": (UTILS_PY if i % 2 else MODEL_PY) for i in range(12)}
    files.update({"train.py": TRAIN_PY, "bad.py": b"print 'x'\n", "csrc/op.cpp":
                  b'PYBIND11_MODULE(ext, m) { m.def("fused", &fused); }\n'})
    src = write_tree(tmp_path / "src", files)
    out1, out2 = tmp_path / "j1", tmp_path / "j2"
    assert invoke("-i", src, "-o", out1, "-j", "1").exit_code == 0
    assert invoke("-i", src, "-o", out2, "-j", "2").exit_code == 0
    own = {"transplant_report.json", "transplant.log"}  # they name OUT; compared below
    assert {k: v for k, v in tree_bytes(out1).items() if k not in own} == \
        {k: v for k, v in tree_bytes(out2).items() if k not in own}
    log1, log2 = ((o / "transplant.log").read_text().splitlines() for o in (out1, out2))
    assert log1[1:] == log2[1:]
    r1 = json.loads((out1 / "transplant_report.json").read_text())
    r2 = json.loads((out2 / "transplant_report.json").read_text())
    for key in ("tally", "changes", "unsupported", "cuda_ops", "failed", "skipped", "entry"):
        assert r1[key] == r2[key], key


def test_force_writes_into_non_empty_out(invoke, project: Path, tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {"train.py": b"stale", "extra.txt": b"left alone"})
    result = invoke("-i", project, "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert "torch.npu.set_device(0)" in (out / "train.py").read_text()
    assert (out / "extra.txt").read_bytes() == b"left alone"


def test_no_temporary_files_left(invoke, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out).exit_code == 0
    assert not [p for p in out.rglob("*") if p.name.startswith(".transplant-") or p.suffix == ".tmp"]


@pytest.mark.parametrize("flag", ["--npu-fused-optimizers", "--amp", "--amp=bf16"])
def test_rule_options_accepted(invoke, project: Path, tmp_path: Path, flag: str) -> None:
    result = invoke("-i", project, "-o", tmp_path / "out", flag)
    assert result.exit_code == 0, result.output
    assert "torch.npu.set_device(0)" in (tmp_path / "out" / "train.py").read_text()


def test_project_modules_are_not_compiled_extensions(invoke, tmp_path: Path) -> None:
    """`import fused_cuda` is reported as a compiled CUDA extension unless the project defines it."""
    src = write_tree(tmp_path / "src", {
        "train.py": b"import torch\nimport ops_cuda\nimport fused_adam_cuda\n",
        "lib/ops_cuda.py": b"def op(x):\n    return x\n",
    })
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    report = json.loads((out / "transplant_report.json").read_text())
    ops = {row["OP"] for row in report["unsupported"]}
    assert "fused_adam_cuda" in ops
    assert "ops_cuda" not in ops


def test_excluded_symlinks(invoke, project: Path, tmp_path: Path) -> None:
    (project / "alias.py").symlink_to("train.py")
    (project / "abs.py").symlink_to(project / "train.py")
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out, "--exclude", "alias.py", "--exclude", "abs.py")
    assert result.exit_code == 0, result.output
    assert os.readlink(out / "alias.py") == "train.py"  # excluded: reproduced as it is
    assert not (out / "abs.py").is_symlink()


def test_symlink_through_src_name_points_at_migrated_copy(invoke, project: Path, tmp_path: Path) -> None:
    # `../src/train.py` from inside SRC reaches SRC's own file; reproduced as written, the link in OUT
    # would read the unmigrated original.
    (project / "alias.py").symlink_to(Path("..") / project.name / "train.py")
    (project / "models" / "up.py").symlink_to(Path("..") / ".." / project.name / "models" / "utils.py")
    (project / "models" / "pkg").symlink_to(Path("..") / ".." / project.name / "models")
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out)
    assert result.exit_code == 0, result.output
    assert os.readlink(out / "alias.py") == "train.py"
    assert os.readlink(out / "models" / "up.py") == "utils.py"
    assert os.readlink(out / "models" / "pkg") == "."
    assert (out / "alias.py").resolve() == (out / "train.py").resolve()
    assert (out / "alias.py").read_bytes() == (out / "train.py").read_bytes() != (project / "train.py").read_bytes()
