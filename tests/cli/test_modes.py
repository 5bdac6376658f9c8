"""--diff and --check: nothing written; --check as a CI gate with exit codes."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from cli_helpers import MODEL_PY, tree_bytes, write_tree


def test_diff_prints_unified_diff_and_writes_nothing(invoke, project: Path, tmp_path: Path) -> None:
    before = tree_bytes(project)
    out = tmp_path / "out"
    result = invoke("-i", project, "-o", out, "--diff")
    assert result.exit_code == 0, result.output
    assert not out.exists()
    assert tree_bytes(project) == before
    diff = result.stdout
    assert "--- a/train.py\n+++ b/train.py\n" in diff
    assert "-    torch.cuda.set_device(0)\n" in diff and "+    torch.npu.set_device(0)\n" in diff
    assert "--- a/models/utils.py\n" in diff
    assert "models/net.py" not in diff  # unchanged files are not in the diff
    assert diff.index("a/models/utils.py") < diff.index("a/train.py")  # deterministic (walk) order


def test_diff_without_output_folder(invoke, project: Path) -> None:
    result = invoke("-i", project, "--diff", "-q")
    assert result.exit_code == 0
    assert "+    torch.npu.set_device(0)" in result.stdout


def test_diff_keeps_crlf_and_encoding(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"w.py": "import torch\r\n# \xe9\r\ntorch.cuda.set_device(0)\r\n"
                                        .encode("latin-1").replace(b"import", b"# coding: latin-1\r\nimport", 1)})
    result = invoke("-i", src, "--diff", "-q")
    assert result.exit_code == 0
    raw = result.stdout_bytes
    assert b"-torch.cuda.set_device(0)\r\n" in raw and b"+torch.npu.set_device(0)\r\n" in raw


def test_check_fails_when_something_would_change(invoke, project: Path, tmp_path: Path) -> None:
    before = tree_bytes(project)
    result = invoke("-i", project, "-o", tmp_path / "out", "--check")
    assert result.exit_code == 1
    assert not (tmp_path / "out").exists()
    assert tree_bytes(project) == before
    assert "2 changed" in result.stderr
    assert "would change models/utils.py" in result.stderr and "would change train.py" in result.stderr


def test_check_passes_on_clean_code(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"net.py": MODEL_PY, "notes.txt": b"cuda"})
    assert invoke("-i", src, "--check").exit_code == 0


def test_check_passes_on_migrated_output(invoke, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out).exit_code == 0
    result = invoke("-i", out, "--check")
    assert result.exit_code == 0, result.output


def test_check_fails_on_unsupported_use(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"mon.py": b"import pynvml\n\npynvml.nvmlInit()\n"})
    result = invoke("-i", src, "--check")
    assert result.exit_code == 1
    assert "unsupported_api.csv: 0 row(s)" not in result.stderr
    assert "mon.py: " in result.stderr and "unsupported API use(s)" in result.stderr


def test_check_fails_on_unparseable_file(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"old.py": b'print "cuda"\n'})
    assert invoke("-i", src, "--check").exit_code == 1


def test_diff_and_check_together(invoke, project: Path) -> None:
    result = invoke("-i", project, "--diff", "--check")
    assert result.exit_code == 1
    assert "+++ b/train.py" in result.stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(monkeypatch) -> None:
    from transplant.cli import _Progress

    for stream, expect_bar in ((_Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        progress = _Progress(quiet=False)
        progress.start(3)
        time.sleep(0.6)  # the bar appears after half a second on a terminal, after ten elsewhere
        for _ in range(3):
            progress.advance()
        progress.close()
        assert ("/3 [" in stream.getvalue()) is expect_bar  # tqdm: "  1/3 [00:00<...]"
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    progress = _Progress(quiet=True)
    progress.start(3)
    progress.advance()
    progress.close()
    assert quiet.getvalue() == ""
