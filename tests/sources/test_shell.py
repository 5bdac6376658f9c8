"""Shell front end: before/after fixture pairs (``fixtures/sources/shell/NAME.in.EXT``).

``NAME.out.EXT`` is the expected migration (absent: the file must stay byte-identical);
``NAME.rows.json`` the expected rows. The path the front end sees is ``NAME.EXT`` (so ``.mk`` is read
as a Makefile and ``.Dockerfile`` as a Dockerfile). Goldens change only with ``pytest --update-golden``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rules import load_ruleset
from transplant.sources import front_end_for, migrate_file
from transplant.sources.edits import Edit, OverlappingEdits, apply_edits

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "shell"
CASES = sorted(p for p in FIXTURES.iterdir() if ".in." in p.name)


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _names(case: Path) -> tuple[str, Path, Path]:
    stem, ext = case.name.split(".in.", 1)
    return f"{stem}.{ext}", case.with_name(f"{stem}.out.{ext}"), case.with_name(f"{stem}.rows.json")


def _rows(result) -> dict:
    return {
        "status": result.status.value,
        "changes": [[c.line, c.column, c.rule, c.before, c.after] for c in result.changes],
        "unsupported": [[u.line, u.column, u.rule, u.op] for u in result.unsupported],
    }


def _dump(rows: dict) -> str:
    def block(items: list) -> str:
        return "[]" if not items else "[\n" + ",\n".join("  " + json.dumps(i) for i in items) + "\n ]"

    return (f'{{"status": {json.dumps(rows["status"])},\n "changes": {block(rows["changes"])},\n'
            f' "unsupported": {block(rows["unsupported"])}}}\n')


def _shellcheck_codes(path: Path) -> list[str]:
    done = subprocess.run(["shellcheck", "-f", "json", str(path)], capture_output=True, text=True)
    return sorted(f"SC{item['code']}" for item in json.loads(done.stdout or "[]"))


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_fixture(case: Path, ruleset, update_golden: bool, tmp_path: Path) -> None:
    rel, out_path, rows_path = _names(case)
    assert front_end_for(rel) is not None and front_end_for(rel).kind == "shell"
    result = migrate_file(case.read_bytes(), rel, ruleset)
    assert result.status is not Status.FAILED, result.reason
    rows = _rows(result)
    if update_golden:
        if result.status is Status.CHANGED:
            out_path.write_bytes(result.new_source)
        elif out_path.exists():
            out_path.unlink()
        rows_path.write_text(_dump(rows), encoding="utf-8")
        return
    assert rows == json.loads(rows_path.read_text(encoding="utf-8"))
    if not out_path.exists():
        assert result.status is Status.UNCHANGED and result.new_source is None, "must stay byte-identical"
        return
    assert result.status is Status.CHANGED and result.changes
    assert result.new_source == out_path.read_bytes()
    # a second run changes nothing (and reports no edit)
    again = migrate_file(result.new_source, rel, ruleset)
    assert again.status is Status.UNCHANGED and not again.changes
    if rel.endswith(".sh"):
        migrated = tmp_path / rel
        migrated.write_bytes(result.new_source)
        assert subprocess.run(["bash", "-n", str(migrated)], capture_output=True).returncode == 0
        if shutil.which("shellcheck"):
            assert _shellcheck_codes(migrated) == _shellcheck_codes(case)


def test_there_are_negative_cases() -> None:
    negatives = [c for c in CASES if not _names(c)[1].exists()]
    assert {c.name for c in negatives} >= {"mentions_only.in.sh", "plain_image.in.Dockerfile"}


def test_unparsed_lines_are_rows_not_rewrites(ruleset) -> None:
    source = (FIXTURES / "unparsed.in.sh").read_bytes()
    result = migrate_file(source, "unparsed.sh", ruleset)
    assert result.status is Status.UNCHANGED
    assert [(u.rule, u.line) for u in result.unsupported] == [("TP650", 4)]


def test_dockerfile_exec_form_stays_json(ruleset) -> None:
    result = migrate_file((FIXTURES / "cuda_image.in.Dockerfile").read_bytes(), "Dockerfile", ruleset)
    cmd = [line for line in result.new_source.decode().splitlines() if line.startswith("CMD")][0]
    assert json.loads(cmd[len("CMD "):]) == ["torchrun", "--nproc_per_node", "8", "train.py", "--backend", "hccl"]


def test_rule_selection_reaches_shell_rules() -> None:
    ruleset = load_ruleset(ignore=("TP6",))
    result = migrate_file((FIXTURES / "env_vars.in.sh").read_bytes(), "env_vars.sh", ruleset)
    assert result.status is Status.UNCHANGED and not result.changes


def test_apply_edits_refuses_overlaps() -> None:
    assert apply_edits("abcdef", [Edit(4, 5, "E"), Edit(0, 1, "A")]) == "AbcdEf"
    with pytest.raises(OverlappingEdits):
        apply_edits("abcdef", [Edit(0, 3, "x"), Edit(2, 4, "y")])


def test_parse_time_is_bounded_on_odd_input(ruleset) -> None:
    # an unmatched quote on line 1 and 3,000 lines after it: regions grow by doubling, within a budget
    from transplant.shell.model import ShellScan
    from transplant.shell.parse import MAX_REGION_LINES, parse_into

    text = 'echo "open\n' + "export CUDA_VISIBLE_DEVICES=0\n" * 3000
    scan = ShellScan(text)
    parse_into(scan, 0, len(text))
    assert len(scan.unparsed) <= 2 * MAX_REGION_LINES
    assert len(scan.commands) >= 3000 - 2 * MAX_REGION_LINES
