"""A project with every file kind, migrated through the command line: golden output, byte-identical
unchanged files, the tally and JSON report per kind, the Cell column, idempotency, any -j."""

from __future__ import annotations

import csv
import difflib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from transplant.cli import cli

TREE = Path(__file__).resolve().parents[2] / "fixtures" / "file_kinds"
SRC, EXPECTED = TREE / "src", TREE / "expected_npu"
# run-specific: timings, absolute paths (the HTML page names SRC and links the installed rule docs)
NOT_GOLDEN = {"transplant.log", "transplant_report.json", "transplant_report.html"}


def _run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() not in NOT_GOLDEN}


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kinds") / "out"
    code, _, err = _run("-i", SRC, "-o", out, "-j", "2")
    assert code == 0, err
    return out


def test_matches_golden(migrated: Path, update_golden: bool) -> None:
    actual = _files(migrated)
    if update_golden:
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for rel, data in actual.items():
            (EXPECTED / rel).parent.mkdir(parents=True, exist_ok=True)
            (EXPECTED / rel).write_bytes(data)
        return
    wanted = _files(EXPECTED)
    assert sorted(actual) == sorted(wanted)
    for rel in wanted:
        assert actual[rel] == wanted[rel], "\n".join(difflib.unified_diff(
            wanted[rel].decode().splitlines(), actual[rel].decode().splitlines(), rel, rel, lineterm=""))


def test_unchanged_files_are_byte_identical(migrated: Path) -> None:
    for rel in ("scripts/mentions.sh", "notebooks/plain.ipynb", "requirements.txt", "environment.yml",
                "README.md"):
        assert (migrated / rel).read_bytes() == (SRC / rel).read_bytes(), rel
    assert (migrated / "scripts/train.sh").stat().st_mode & 0o111  # modes kept


def test_tally_and_json_report_count_kinds(migrated: Path) -> None:
    report = json.loads((migrated / "transplant_report.json").read_text(encoding="utf-8"))
    tally = report["tally"]
    assert (tally["python"], tally["notebooks"], tally["shell"], tally["requirements"], tally["configs"]) == (1, 2, 4, 2, 2)
    assert tally["changed"] + tally["unchanged"] + tally["failed"] == 11
    cells = [row for row in report["changes"] if row["File"] == "notebooks/tiny_train.ipynb"]
    assert cells and all(row["Cell"].startswith("cell ") for row in cells)
    assert {"TP600", "TP610", "TP620", "TP680", "TP662"} <= set(report["by_rule"])
    log = (migrated / "transplant.log").read_text(encoding="utf-8")
    assert "notebooks=2" in log and "shell=4" in log


def test_cell_column(migrated: Path) -> None:
    with open(migrated / "change_list.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    nb = [r for r in rows if r["File"] == "notebooks/tiny_train.ipynb"]
    assert {"cell 3, line 1", "cell 5, line 2"} <= {r["Cell"] for r in nb}
    assert all(r["Cell"] == "" for r in rows if not r["File"].endswith(".ipynb"))
    with open(migrated / "change_list.csv", encoding="utf-8") as handle:
        assert handle.readline().startswith("File,Start Line,End Line,Operation Type,Message,Cell,")


def test_second_run_changes_nothing(migrated: Path, tmp_path: Path) -> None:
    code, _, err = _run("-i", migrated, "-o", tmp_path / "again", "--exclude", "transplant_report.json")
    assert code == 0, err
    with open(tmp_path / "again" / "change_list.csv", newline="", encoding="utf-8") as handle:
        assert list(csv.DictReader(handle)) == []


def test_same_output_with_one_job(migrated: Path, tmp_path: Path) -> None:
    code, _, err = _run("-i", SRC, "-o", tmp_path / "one", "-j", "1")
    assert code == 0, err
    assert _files(tmp_path / "one") == _files(migrated)


def test_diff_shows_notebook_cells(tmp_path: Path) -> None:
    code, out, _ = _run("-i", SRC, "--diff", "-j", "1")
    assert code == 0
    assert "--- a/notebooks/tiny_train.ipynb (cell 3)" in out
    assert "--- a/scripts/train.sh" in out and "+torchrun --nproc_per_node=8" in out


def test_check_fails_on_shell_work(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root).mkdir()
    (root / "run.sh").write_text("export CUDA_VISIBLE_DEVICES=0\n")
    code, _, err = _run("-i", root, "--check")
    assert code == 1 and "would change run.sh" in err
