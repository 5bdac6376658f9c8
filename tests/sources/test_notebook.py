"""Notebook front end: code cells through the Python engine, IPython lines through the shell rules,
the JSON layout kept exactly, rows per cell, and a migrated notebook that trains on the emulated NPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transplant.results import FileResult, Status
from transplant.rules import load_ruleset
from transplant.sources import migrate_file
from transplant.sources.notebook import cell_diff, cell_source, to_script

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "notebook"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def _rows(result) -> dict:
    return {
        "status": result.status.value,
        "changes": [[c.cell, c.line, c.column, c.rule, c.before, c.after] for c in result.changes],
        "unsupported": [[u.cell, u.line, u.rule, u.op] for u in result.unsupported],
    }


def _dump(rows: dict) -> str:
    def block(items: list) -> str:
        return "[]" if not items else "[\n" + ",\n".join("  " + json.dumps(i) for i in items) + "\n ]"

    return (f'{{"status": {json.dumps(rows["status"])},\n "changes": {block(rows["changes"])},\n'
            f' "unsupported": {block(rows["unsupported"])}}}\n')


CASES = sorted(FIXTURES.glob("*.in.ipynb"))


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_fixture(case: Path, ruleset, update_golden: bool) -> None:
    out_path = case.with_name(case.name.replace(".in.", ".out."))
    rows_path = case.with_name(case.name.replace(".in.ipynb", ".rows.json"))
    result = migrate_file(case.read_bytes(), case.name.replace(".in.", "."), ruleset)
    assert result.status is not Status.FAILED, result.reason
    if update_golden:
        if result.status is Status.CHANGED:
            out_path.write_bytes(result.new_source)
        elif out_path.exists():
            out_path.unlink()
        rows_path.write_text(_dump(_rows(result)), encoding="utf-8")
        return
    assert _rows(result) == json.loads(rows_path.read_text(encoding="utf-8"))
    if not out_path.exists():
        assert result.status is Status.UNCHANGED and result.new_source is None
        return
    assert result.new_source == out_path.read_bytes()
    again = migrate_file(result.new_source, case.name, ruleset)
    assert again.status is Status.UNCHANGED and not again.changes


def test_only_changed_cell_sources_differ(ruleset) -> None:
    source = (FIXTURES / "tiny_train.in.ipynb").read_bytes()
    result = migrate_file(source, "tiny_train.ipynb", ruleset)
    before, after = json.loads(source), json.loads(result.new_source)
    changed = set()
    for n, (a, b) in enumerate(zip(before["cells"], after["cells"]), start=1):
        if a != b:
            assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}
            changed.add(n)
    assert {k: v for k, v in before.items() if k != "cells"} == {k: v for k, v in after.items() if k != "cells"}
    assert changed == {c.cell for c in result.changes}
    # the string inside a triple-quoted literal that looks like a magic is not one
    assert "!not a magic CUDA_VISIBLE_DEVICES\n" in cell_source(after["cells"][5])
    # lines of the notebook text outside the changed cells are byte-identical
    old_lines, new_lines = source.decode().splitlines(), result.new_source.decode().splitlines()
    assert old_lines[:20] == new_lines[:20] and old_lines[-12:] == new_lines[-12:]


@pytest.mark.parametrize("indent,ensure_ascii", [(1, False), (2, True), (4, False), (None, False)])
def test_layouts_round_trip(ruleset, indent, ensure_ascii) -> None:
    nb = json.loads((FIXTURES / "tiny_train.in.ipynb").read_text(encoding="utf-8"))
    nb["cells"][0]["source"].append("Ünïcode ✓")
    source = (json.dumps(nb, indent=indent, ensure_ascii=ensure_ascii) + "\n").encode()
    result = migrate_file(source, "nb.ipynb", ruleset)
    assert result.status is Status.CHANGED
    if indent is None:  # one line: still one line
        assert result.new_source.decode().count("\n") == 1
    else:
        assert result.new_source.decode().count("\n") == source.decode().count("\n") + 1  # + import torch_npu
    assert json.loads(result.new_source)["metadata"] == nb["metadata"]
    assert ("\\u00dc" in result.new_source.decode()) is ensure_ascii


def test_unreproducible_layout_is_not_written(ruleset) -> None:
    nb = (FIXTURES / "tiny_train.in.ipynb").read_text(encoding="utf-8").replace('\n "metadata"', '\n  "metadata"', 1)
    result = migrate_file(nb.encode(), "odd.ipynb", ruleset)
    assert result.status is Status.FAILED and "layout" in result.reason and result.new_source is None


def test_cell_diff_is_per_cell(ruleset) -> None:
    source = (FIXTURES / "tiny_train.in.ipynb").read_bytes()
    result = migrate_file(source, "tiny_train.ipynb", ruleset)
    diff = cell_diff(source, result.new_source, "tiny_train.ipynb").decode()
    assert "--- a/tiny_train.ipynb (cell 3)" in diff
    assert "-device = 'cuda' if torch.cuda.is_available() else 'cpu'\n" in diff
    assert '"source"' not in diff


@pytest.mark.slow
def test_migrated_notebook_trains_on_emulated_npu(ruleset, tmp_path: Path) -> None:
    result = migrate_file((FIXTURES / "tiny_train.in.ipynb").read_bytes(), "tiny_train.ipynb", ruleset)
    script = tmp_path / "tiny_train.py"
    script.write_text(to_script(result.new_source), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "transplant", "run", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final loss" in done.stdout and "npu:0" in done.stdout


def test_engine_failure_leaves_the_notebook_and_claims_no_edit(ruleset, monkeypatch) -> None:
    import transplant.rewrite

    def failing(source, path, rules, **kwargs):
        return FileResult(path=path, status=Status.FAILED, reason=f"{path}:3: cannot parse")

    monkeypatch.setattr(transplant.rewrite, "rewrite_source", failing)
    source = (FIXTURES / "tiny_train.in.ipynb").read_bytes()
    result = migrate_file(source, "tiny_train.ipynb", ruleset)
    # the shell lines would have changed, but a notebook is written whole or not at all
    assert result.status is Status.FAILED and result.new_source is None and not result.changes
    assert result.reason == "tiny_train.ipynb:3: cannot parse"
    assert {u.rule for u in result.unsupported} >= {"TP630", "TP611"}


def test_not_json_is_a_clear_failure(ruleset) -> None:
    result = migrate_file(b"{not json", "broken.ipynb", ruleset)
    assert result.status is Status.FAILED and result.reason.startswith("broken.ipynb:1: not a notebook")


def test_pip_magics_get_requirement_rows(ruleset) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                     "source": ["%pip install torch==2.1.0+cu121 xformers\n", "!pip install -q bitsandbytes\n",
                                "import torch\n"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    result = migrate_file((json.dumps(nb, indent=1) + "\n").encode(), "setup.ipynb", ruleset)
    assert result.status is Status.UNCHANGED
    assert [(u.cell, u.line, u.rule, u.op) for u in result.unsupported] == [
        (1, 1, "TP660", "torch==2.1.0+cu121"), (1, 1, "TP662", "xformers"), (1, 2, "TP662", "bitsandbytes")]
