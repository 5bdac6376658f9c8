"""The ``apex`` structural pass: apex → native torch for one file, imports included.

One pass handles every apex rewrite because they share the imports: ``import apex`` may serve
``apex.amp`` and ``apex.optimizers`` at once and may only go when *every* use was rewritten. Rules of
kind ``apex`` in ``rules/apex.json`` select the parts by ``role``:

* ``amp`` / ``amp_unsupported`` — :mod:`transplant.rewrite.apex_amp`;
* ``normalization``, ``optimizers``, ``parallel`` — :mod:`transplant.rewrite.apex_native`;
* ``unsupported`` — apex uses that a selected part could not rewrite with the same meaning;
* ``imports`` — rows for the apex imports rewritten to torch or removed.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from transplant.results import Operation
from transplant.rewrite import amp_common as c
from transplant.rewrite.apex_amp import AmpRuleIds, plan_apex_amp
from transplant.rewrite.apex_native import NativePlanner, Target, canonical


def apex_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``apex`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    if "apex" not in ctx.source_text:  # the decoded original: no code generation needed to ask
        return
    roles = {r.role: r for r in rules}
    analysis = c.Analysis(module, ctx.imports)
    ctx.lend_parents(analysis.parent)
    editor = c.StatementEditor()
    findings = c.Findings()
    consumed: set[int] = set()
    torch_name = c.torch_alias(module) or "torch"
    needs_torch = False
    amp_consumed_any = False

    amp_rule = roles.get("amp")
    if amp_rule is not None:
        report = roles.get("amp_unsupported", amp_rule)
        ids = AmpRuleIds(rewrite=amp_rule.id, unsupported=report.id, tip=report.tip or AmpRuleIds.tip)
        amp_editor, amp_findings, amp_consumed = plan_apex_amp(analysis, ids)
        findings.changes += amp_findings.changes
        findings.unsupported += amp_findings.unsupported
        if amp_editor is not None:
            editor.merge(amp_editor)
            consumed |= amp_consumed
            needs_torch = amp_consumed_any = True

    def rule_id(role: str) -> Optional[str]:
        rule = roles.get(role)
        return rule.id if rule is not None else None

    native = NativePlanner(analysis, editor, findings, rule_id, dict(ctx.options), torch_name).run()
    consumed |= native.consumed
    needs_torch = needs_torch or native.needs_torch

    imports_rule = roles.get("imports")
    if imports_rule is not None:
        plan_apex_imports(analysis, editor, findings, consumed, native.moved, imports_rule.id)
    if editor.empty:
        findings.emit(ctx)
        return
    row_rule = (amp_rule if amp_consumed_any else None) or imports_rule
    if row_rule is not None:
        for emptied in editor.emptied_ifs(analysis):
            findings.changes.append(analysis.change(
                row_rule.id, emptied, Operation.DELETE, "`if` block removed: everything in it was apex set-up "
                "that the rewrite replaced", "safe", after="",
                before="if " + analysis.module.code_for_node(emptied.test) + ":"))
    if needs_torch and c.torch_alias(module) is None:
        needing = amp_rule if amp_consumed_any else roles.get("optimizers") or roles.get("parallel")
        ctx.add_import("torch", needing or rules[0])
    if native.needs_torch_npu and c.torch_alias(module) is None:
        # The engine adds ``import torch_npu`` (our rows need it) only next to a torch import.
        ctx.add_import("torch", roles.get("optimizers") or rules[0])
    editor.commit(ctx, analysis)
    findings.emit(ctx)


def plan_apex_imports(analysis: c.Analysis, editor: c.StatementEditor, findings: c.Findings, consumed: set[int],
                      moved: dict[str, Target], rule: str) -> None:
    """Rewrite imports of moved apex classes to torch (keeping local names); drop apex names left unused.

    ``try: <only removed apex imports> except ImportError: ...`` goes entirely: its handler could only
    run when the import failed, which can no longer happen.
    """
    uses = list(analysis.uses_under("apex"))
    removed: list[cst.SimpleStatementLine] = []
    for line in c.import_lines(analysis.module):
        if len(line.body) != 1:
            continue
        small = line.body[0]
        if isinstance(small, cst.ImportFrom):
            if small.relative or isinstance(small.names, cst.ImportStar) or small.module is None:
                continue
            module_text = c.dotted_name_of(small.module)
        elif isinstance(small, cst.Import):
            module_text = ""
        else:
            continue
        if module_text != "apex" and not module_text.startswith("apex.") and not any(
                c.dotted_name_of(a.name).split(".")[0] == "apex" for a in small.names):  # type: ignore[union-attr]
            continue
        scope = analysis.scope_of(line)
        keep: list[cst.ImportAlias] = []
        torch_imports: dict[str, list[cst.ImportAlias]] = {}
        notes: list[str] = []
        for alias in small.names:  # type: ignore[union-attr]
            local, qualified = c.alias_binding(alias, module_text)
            if not (qualified == "apex" or qualified.startswith("apex.")):
                keep.append(alias)
                continue
            key = canonical(qualified)
            target = moved.get(f"apex.{key[0]}.{key[1]}") if key else None
            if target is not None and isinstance(small, cst.ImportFrom):
                asname = None if local == target.name else cst.AsName(name=cst.Name(local))
                torch_imports.setdefault(target.module, []).append(cst.ImportAlias(name=cst.Name(target.name),
                                                                                  asname=asname))
                notes.append(f"{local} -> {target.dotted}")
                continue
            live = [u for u, _q in uses if not c.is_consumed(analysis, u, consumed)
                    and c.root_name(u) == local and c.visible(analysis, u, scope)]
            if live:
                keep.append(alias)
            else:
                notes.append(f"{local} removed (every use rewritten)")
        if len(keep) == len(small.names):  # type: ignore[arg-type]
            continue
        new_lines: list[cst.SimpleStatementLine] = []
        if keep:
            fixed = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) if i == len(keep) - 1 else a
                     for i, a in enumerate(keep)]
            new_lines.append(line.with_changes(body=[small.with_changes(names=fixed)]))
        for target_module, aliases in torch_imports.items():
            commas = [a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                      for a in aliases[:-1]] + aliases[-1:]
            statement = cst.SimpleStatementLine(body=[cst.ImportFrom(module=c.dotted(target_module),
                                                                     names=commas)])
            new_lines.append(statement if new_lines else statement.with_changes(leading_lines=line.leading_lines))
        after = "; ".join(analysis.module.code_for_node(s).strip() for s in new_lines)
        findings.changes.append(analysis.change(
            rule, line, Operation.MODIFY if new_lines else Operation.DELETE,
            "apex import: " + ", ".join(notes), "safe", after=after))
        if not new_lines:
            editor.remove(line)
            removed.append(line)
        else:
            editor.replace_stmt[line] = lambda upd, new=new_lines: [
                new[0].with_changes(leading_lines=upd.leading_lines)] + new[1:]
    removed_ids = {id(l) for l in removed}
    for line in removed:
        block = analysis.parent(line)
        owner = analysis.parent(block) if block is not None else None
        if not isinstance(owner, cst.Try) or owner.body is not block:
            continue
        if not all(id(s) in removed_ids for s in block.body):  # type: ignore[union-attr]
            continue
        if owner.orelse is not None or owner.finalbody is not None:
            continue
        if all(c.catches_import_error(h) for h in owner.handlers):
            for s in block.body:  # type: ignore[union-attr]
                editor.replace_stmt.pop(s, None)
            editor.remove(owner)
            findings.changes.append(analysis.change(
                rule, owner, Operation.DELETE, "try/except ImportError around the removed apex import removed "
                "(its handler could only run if that import failed)", "safe", after="", before="try:"))
