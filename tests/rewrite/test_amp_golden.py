"""Before/after fixtures of the apex and AMP rules (``fixtures/rules/{apex,amp}/*.in.py``).

For each ``NAME.in.py`` the migrated source must equal ``NAME.out.py`` and the report rows must equal
``NAME.rows`` (one line per change / unsupported row). A first line ``# transplant-options: {...}``
passes run options (``amp``, ``npu_fused_optimizers``). Goldens change only with ``--update-golden``.
A second migration of the output changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transplant.results import FileResult, Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "fixtures" / "rules" / "apex").glob("*.in.py")) + sorted(
    (ROOT / "fixtures" / "rules" / "amp").glob("*.in.py"))
OPTIONS_PREFIX = "# transplant-options:"


def options_of(path: Path) -> dict:
    first = path.read_text().splitlines()[0]
    return json.loads(first[len(OPTIONS_PREFIX):]) if first.startswith(OPTIONS_PREFIX) else {}


def migrate(path: Path) -> FileResult:
    return rewrite_source(path.read_bytes(), path.name, load_ruleset(options=options_of(path)))


def render_rows(result: FileResult) -> str:
    lines = [f"change {c.rule} {c.line}:{c.column} {c.operation.value} [{c.severity}] {c.message} => {c.after}"
             for c in result.changes]
    lines += [f"unsupported {u.rule} {u.line}:{u.column} {u.op} :: {u.tip}" for u in result.unsupported]
    return "\n".join(lines) + "\n"


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name[:-len('.in.py')]}"


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_golden(path: Path, update_golden: bool) -> None:
    result = migrate(path)
    assert result.status is not Status.FAILED, result.reason
    output = result.new_source if result.status is Status.CHANGED else path.read_bytes()
    compile(output, path.name, "exec")
    out_path = path.with_name(path.name.replace(".in.py", ".out.py"))
    rows_path = path.with_name(path.name.replace(".in.py", ".rows"))
    rows = render_rows(result)
    if update_golden:
        out_path.write_bytes(output)
        rows_path.write_text(rows)
    assert output.decode() == out_path.read_text(), f"migrated {path.name} differs from {out_path.name}"
    assert rows == rows_path.read_text(), f"rows of {path.name} differ from {rows_path.name}"


@pytest.mark.parametrize("path", FIXTURES, ids=fixture_id)
def test_second_run_changes_nothing(path: Path) -> None:
    first = migrate(path)
    if first.status is not Status.CHANGED:
        return
    again = rewrite_source(first.new_source, path.name, load_ruleset(options=options_of(path)))
    assert again.status is Status.UNCHANGED, [c.message for c in again.changes]
    assert not [c for c in again.changes if c.rule.startswith("TP4")]
