"""The structural-pass plug-in contract (transplant.rewrite.passes)."""

from __future__ import annotations

import json

import libcst as cst

from transplant.results import Operation, Status
from transplant.rewrite import rewrite_source
from transplant.rewrite.passes import register_pass
from transplant.rules import load_ruleset

SOURCE = b"""import torch


def train(model, x):
    with torch.no_grad():
        y = model(x.cuda())
    return y
"""


@register_pass("test_wrap_with")
def _wrap_with(module: cst.Module, ctx, rules) -> None:
    """Replace every `with torch.no_grad():` statement by `with torch.inference_mode():` (test-only kind)."""
    rule = rules[0]
    for stmt in module.body:
        if not isinstance(stmt, cst.FunctionDef):
            continue
        for inner in stmt.body.body:
            if isinstance(inner, cst.With) and ctx.qualified_name(inner.items[0].item.func) == "torch.no_grad":
                def edit(updated, _rule=rule):
                    item = updated.items[0].with_changes(item=cst.parse_expression("torch.inference_mode()"))
                    return updated.with_changes(items=[item])

                ctx.replace(inner, edit)
                ctx.record_change(inner, rule, "no_grad -> inference_mode", before="torch.no_grad()",
                                  after="torch.inference_mode()")
                ctx.record_unsupported(inner.items[0].item, rule, "torch.no_grad", "test tip")


def test_pass_edits_compose_and_rows_use_original_lines(tmp_path) -> None:
    rules = tmp_path / "pass.json"
    rules.write_text(json.dumps({"name": "t", "rules": [
        {"id": "TP990", "kind": "test_wrap_with", "severity": "review", "message": "m", "triggers": ["no_grad"],
         "needs_torch_npu": False}]}))
    result = rewrite_source(SOURCE, "p.py", load_ruleset([rules]))
    assert result.status is Status.CHANGED
    text = result.new_source.decode()
    # the pass's statement edit and the main traversal's .cuda() edit inside it both applied
    assert "with torch.inference_mode():\n        y = model(x.npu())" in text
    assert text.startswith("import torch\nimport torch_npu\n")
    rows = {(c.rule, c.line, c.operation) for c in result.changes}
    # line 5 of the ORIGINAL file, although an import was inserted above it
    assert ("TP990", 5, Operation.MODIFY) in rows and ("TP120", 6, Operation.MODIFY) in rows
    assert [(u.rule, u.line) for u in result.unsupported] == [("TP990", 5)]
    second = rewrite_source(result.new_source, "p.py", load_ruleset([rules]))
    assert second.status is Status.UNCHANGED


def test_pass_not_run_without_its_trigger(tmp_path) -> None:
    rules = tmp_path / "pass.json"
    rules.write_text(json.dumps({"name": "t", "rules": [
        {"id": "TP990", "kind": "test_wrap_with", "severity": "review", "message": "m", "triggers": ["zzz_absent"]}]}))
    result = rewrite_source(SOURCE, "p.py", load_ruleset([rules]))
    assert all(c.rule != "TP990" for c in result.changes)
