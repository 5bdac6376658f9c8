"""Rule kind ``module_alias``: the ``torch.cuda`` module held in a variable or picked by a conditional.

``CE = torch.cuda; CE.empty_cache()``, ``accel = torch.cuda if ok else None; accel.synchronize()``
and ``(torch.cuda if flag else torch.cuda).device_count()`` reach CUDA through the module *value*,
which no qualified-name rule sees. The value becomes ``torch.npu`` (TP112), so every call through
the variable reaches the NPU module. A name assigned that value is then followed like an import
alias: a use whose ``torch.cuda`` name is unsupported is reported with that rule's tip, and one
with no ``torch.npu`` counterpart in torch_npu 2.13 (its real names, ``transplant/data``) is
reported with the qualified name to write instead (TP567).
"""

from __future__ import annotations

import functools
import json
import re
from typing import Optional, Union

import libcst as cst

from transplant._paths import data_dir
from transplant.rewrite.names import build_dotted, dotted_name
from transplant.rewrite.passes import register_pass
from transplant.rewrite.qualnames import NameIndex

_CUDA, _NPU = "torch.cuda", "torch.npu"
# `cuda` not followed by `.` or `(`: the only spellings of the module as a value.
_BARE = re.compile(r"\bcuda\b(?![ \t]*[.(])")

Chain = Union[cst.Attribute, cst.Name]


class _Finder:
    """Bare ``torch.cuda`` values (with their ancestor stacks) and the names assigned one."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.values: list[tuple[Chain, list[cst.CSTNode]]] = []
        self.aliases: set[str] = set()
        self.uses: list[tuple[cst.Attribute, str, list[cst.CSTNode]]] = []

    def is_module(self, node: cst.CSTNode) -> bool:
        return isinstance(node, (cst.Name, cst.Attribute)) and self.ctx.qualified_name(node) == _CUDA

    def holds_module(self, value: cst.BaseExpression) -> bool:
        if self.is_module(value):
            return True
        return isinstance(value, cst.IfExp) and (self.holds_module(value.body) or self.holds_module(value.orelse))

    def walk(self, node: cst.CSTNode, stack: list[cst.CSTNode]) -> None:
        if isinstance(node, (cst.Import, cst.ImportFrom)):
            return
        if isinstance(node, cst.Assign) and self.holds_module(node.value):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.aliases.add(target.target.value)
        if isinstance(node, (cst.Attribute, cst.Name)):
            parent = stack[-1] if stack else None
            top = not (isinstance(parent, cst.Attribute) and parent.value is node)
            if top and self.is_module(node) and not self._is_name_position(node, parent):
                self.values.append((node, list(stack)))
                return
            if top and isinstance(node, cst.Attribute):
                dotted = dotted_name(node)
                if dotted is not None:
                    self.uses.append((node, dotted, list(stack)))
                    return
        stack.append(node)
        # an attribute's name (`x.cuda`) is not a use of anything: only its value is walked
        for child in (node.value,) if isinstance(node, cst.Attribute) else node.children:
            self.walk(child, stack)
        stack.pop()

    @staticmethod
    def _is_name_position(node: cst.CSTNode, parent: Optional[cst.CSTNode]) -> bool:
        # `cuda` as a keyword, parameter or definition name is not a use of the module
        if isinstance(parent, cst.Arg) and parent.keyword is node:
            return True
        return isinstance(parent, (cst.FunctionDef, cst.ClassDef, cst.Param, cst.AsName, cst.AssignTarget))


def _to_npu(updated: cst.CSTNode) -> cst.CSTNode:
    if isinstance(updated, cst.Attribute):
        return updated.with_changes(attr=cst.Name("npu"))
    return build_dotted(_NPU).with_changes(lpar=getattr(updated, "lpar", ()), rpar=getattr(updated, "rpar", ()))


def value_rule(rules: list) -> Optional[object]:
    """The rule that rewrites ``torch.cuda`` used as a value (TP112), unless only its report rule is selected."""
    return next((r for r in rules if getattr(r, "role", "") != "report"), None)


@register_pass("module_alias")
def module_alias_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``module_alias`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    if not _BARE.search(ctx.source_text or module.code):
        return
    rule = value_rule(rules)
    finder = _Finder(ctx)
    finder.walk(module, [])
    for node, stack in (finder.values if rule is not None else ()):
        before = ctx.code(node)
        if isinstance(node, cst.Name):
            ctx.add_import("torch", rule)
            after = _NPU
        else:
            after = before[: before.rfind("cuda")] + "npu"
        ctx.replace(node, _to_npu, ancestors=stack)
        ctx.record_change(node, rule, f"{_CUDA} -> {_NPU} (the module used as a value)", before=before, after=after)
    if not finder.aliases:
        return
    index = NameIndex.of(ctx.ruleset)
    report = next((r for r in rules if r.role == "report"), None)
    npu_names = _npu_names()
    for node, dotted, stack in finder.uses:
        root, _, rest = dotted.partition(".")
        if root not in finder.aliases or ctx.imports.binds(root) is not None:
            continue
        qual = f"{_CUDA}.{rest}"
        if f"torch_npu.npu.{rest}" in npu_names:
            continue  # the variable now holds torch.npu, which has this name
        hit = index.lookup(qual)
        if hit is not None and hit.target is None:
            ctx.record_unsupported(node, hit.rule, qual, hit.tip)
        elif report is not None:
            where = f"; write {hit.renamed(qual)} here" if hit is not None else ""
            ctx.record_unsupported(node, report, qual,
                                   f"{root} now holds torch.npu, which has no {rest}{where} (see transplant rules "
                                   f"{hit.rule.id if hit is not None else report.id})")


@functools.lru_cache(maxsize=1)
def _npu_names() -> frozenset[str]:
    """torch_npu 2.13's public qualified names (transplant/data, generated by tools/gen_api_facts.py)."""
    path = data_dir() / "torch_npu_names.json"
    return frozenset(json.loads(path.read_text(encoding="utf-8"))["qualified_names"])
