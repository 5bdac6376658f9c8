"""Before/after fixture pairs per rule kind (``fixtures/rules/<kind>/NAME.in.py``).

``NAME.out.py`` is the expected migration; a case without it is a *negative* case whose input must
stay byte-identical (status not CHANGED). ``NAME.rows.json`` holds the expected report rows. Goldens
change only with ``pytest --update-golden``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "rules"
KINDS = ("rename", "method", "device", "backend", "envvar", "tensor_type", "arguments", "import", "unsupported", "profiler",
         "module_alias", "method_reference", "fork_rng", "npu_import", "multi_npu")
CASES = sorted(p for kind in KINDS for p in (FIXTURES / kind).glob("*.in.py"))


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _rows(result) -> dict:
    return {
        "status": result.status.value,
        "changes": [[c.line, c.end_line, c.rule, c.operation.value, c.before, c.after] for c in result.changes],
        "unsupported": [[u.line, u.rule, u.op] for u in result.unsupported],
    }


def _dump(rows: dict) -> str:
    """One report row per line: goldens that read (and diff) well."""
    def block(items: list) -> str:
        return "[]" if not items else "[\n" + ",\n".join("  " + json.dumps(i) for i in items) + "\n ]"

    return (f'{{"status": {json.dumps(rows["status"])},\n "changes": {block(rows["changes"])},\n'
            f' "unsupported": {block(rows["unsupported"])}}}\n')


def test_every_kind_has_positive_and_negative_cases():
    for kind in KINDS:
        ins = list((FIXTURES / kind).glob("*.in.py"))
        outs = [p for p in ins if p.with_name(p.name.replace(".in.py", ".out.py")).exists()]
        if kind == "unsupported":  # never changes code: positive cases are the ones with rows
            rows = [json.loads(p.with_name(p.name.replace(".in.py", ".rows.json")).read_text()) for p in ins]
            assert any(r["unsupported"] for r in rows) and any(not r["unsupported"] for r in rows)
            continue
        assert outs, f"{kind}: no positive fixture"
        assert len(outs) < len(ins), f"{kind}: no negative (must-stay-identical) fixture"


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name[:-6]}" for p in CASES])
def test_fixture(case: Path, ruleset, update_golden: bool) -> None:
    source = case.read_bytes()
    result = rewrite_source(source, case.name, ruleset)
    assert result.status is not Status.FAILED, result.reason
    out_path = case.with_name(case.name.replace(".in.py", ".out.py"))
    rows_path = case.with_name(case.name.replace(".in.py", ".rows.json"))
    rows = _rows(result)
    if update_golden:
        if result.status is Status.CHANGED:
            out_path.write_bytes(result.new_source)
        elif out_path.exists():
            out_path.unlink()
        rows_path.write_text(_dump(rows), encoding="utf-8")
        return
    if out_path.exists():
        assert result.status is Status.CHANGED
        assert result.new_source.decode() == out_path.read_text(encoding="utf-8")
        ast.parse(result.new_source)
        # every edit is accounted for by at least one change row
        assert result.changes
    else:
        assert result.status is Status.UNCHANGED, "negative fixture must stay byte-identical"
        assert result.new_source is None
    assert rows == json.loads(rows_path.read_text(encoding="utf-8"))
