"""Rule kind ``import``: add ``import torch_npu`` where the NPU is used; remove imports; requested imports.

``insert``: a file that ends up using the NPU (some recorded change has ``needs_torch_npu``) gets one
``import torch_npu`` right after its first torch import — at module level if there is one, else the
first one in a function body (a lazy import); never inside ``try:``, where a missing torch_npu would
silently take the fallback branch. Files without any torch import get none (they use tensors created
elsewhere; the entry script imports torch). A file that already imports torch_npu gets none, so a
second run changes nothing.

``remove``: import statements of the listed modules are deleted (a block left empty gets ``pass``).

Requested imports (``FileContext.add_import``, e.g. ``import torch`` when a rename produced a full
``torch.npu.X`` in a file that only did ``from torch import cuda``) go to the same place.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence

import libcst as cst

from transplant.results import Operation
from transplant.rewrite.context import FileContext
from transplant.rewrite.names import build_dotted, iter_small_statements, module_name
from transplant.rules import ImportRule, Rule


def _flat(u: object) -> list:
    return list(u.nodes) if isinstance(u, cst.FlattenSentinel) else [u]


def _import_line(module: str) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine(body=[cst.Import(names=[cst.ImportAlias(name=build_dotted(module))])])


def _imports_torch(line: cst.CSTNode) -> bool:
    if not isinstance(line, cst.SimpleStatementLine):
        return False
    for small in line.body:
        if isinstance(small, cst.Import):
            if any(module_name(a.name).split(".", 1)[0] == "torch" for a in small.names):  # type: ignore[arg-type]
                return True
        elif isinstance(small, cst.ImportFrom) and not small.relative:
            if module_name(small.module).split(".", 1)[0] == "torch":
                return True
    return False


def _nested_lines(body: Sequence[cst.CSTNode]) -> Iterator[tuple[cst.CSTNode, list[cst.CSTNode]]]:
    """(statement line, its ancestors below the module) outside try blocks, depth first."""
    for stmt in body:
        if isinstance(stmt, cst.SimpleStatementLine):
            yield stmt, []
        elif isinstance(stmt, cst.Try) or isinstance(stmt, getattr(cst, "TryStar", cst.Try)):
            continue
        else:
            block = getattr(stmt, "body", None)
            if isinstance(block, cst.IndentedBlock):
                for line, path in _nested_lines(block.body):
                    yield line, [stmt, block, *path]


class ImportEdits:
    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.insert_rule: Optional[ImportRule] = None
        self.remove: dict[str, ImportRule] = {}
        for rule in ctx.ruleset:
            if isinstance(rule, ImportRule):
                if rule.insert and self.insert_rule is None:
                    self.insert_rule = rule
                for mod in rule.remove:
                    self.remove.setdefault(mod, rule)

    def finish(self) -> None:
        if self.remove:
            self._remove()
        wanted: list[tuple[str, Rule]] = list(self.ctx.required_imports)
        rule = self.insert_rule
        if rule is not None and self.ctx.npu_needed_by is not None and not self._imports(rule.insert):
            wanted.append((rule.insert, rule))
        wanted = [(m, r) for m, r in wanted if not (m == "torch" and self._imports("torch"))]
        if not wanted:
            return
        anchor = self._anchor()
        if anchor is None:
            if all(m != "torch" for m, _ in wanted):
                # no usable torch import: do not add torch_npu (see module docstring); if torch is only
                # imported inside try:, say so — the changed code needs torch_npu imported somewhere
                if rule is not None and "torch" in {m.split(".", 1)[0] for m in self.ctx.imports.imported_modules}:
                    self.ctx.record_unsupported(
                        None, rule, f"import {rule.insert}",
                        f"this file imports torch only inside try:, so `import {rule.insert}` was not added; import it "
                        f"where torch is imported (or in the entry script) so the NPU is registered", line=1)
                return
            self._insert_top(wanted)
            return
        line, path = anchor
        new_lines = [_import_line(m) for m, _ in wanted]
        ancestors = [self.ctx.module, *path]
        # `import torch.npu.amp` (a renamed `import torch.cuda.amp`) needs torch_npu first.
        before = any(m == "torch_npu" for m, _ in wanted) and self._imports_npu_after_rename(line)

        def edit(u: object, _new=new_lines, _before=before) -> cst.FlattenSentinel:
            # `u` is the anchor line, or several lines if another edit already split it
            nodes = list(u.nodes) if isinstance(u, cst.FlattenSentinel) else [u]
            if _before:
                # the anchor keeps its comments/blank lines above the inserted imports
                lead = getattr(nodes[0], "leading_lines", ())
                first = _new[0].with_changes(leading_lines=lead)
                return cst.FlattenSentinel([first, *_new[1:], nodes[0].with_changes(leading_lines=()), *nodes[1:]])
            return cst.FlattenSentinel([*nodes, *_new])

        self.ctx.replace(line, edit, ancestors=ancestors)
        for module, r in wanted:
            self.ctx.record_change(line, r, f"insert `import {module}`", after=f"import {module}",
                                   operation=Operation.INSERT, after_node=not before)

    # ------------------------------------------------------------ helpers
    def _imports(self, module: str) -> bool:
        imports = self.ctx.imports
        if module == "torch":
            return imports.binds("torch") == "torch"
        return any(m == module or m.startswith(module + ".") for m in imports.imported_modules)

    def _imports_npu_after_rename(self, line: cst.CSTNode) -> bool:
        from transplant.rewrite.qualnames import NameIndex

        index = NameIndex.of(self.ctx.ruleset)
        assert isinstance(line, cst.SimpleStatementLine)
        for small in line.body:
            names: list[str] = []
            if isinstance(small, cst.Import):
                names = [module_name(a.name) for a in small.names]  # type: ignore[arg-type]
            elif isinstance(small, cst.ImportFrom) and not small.relative:
                mod = module_name(small.module)
                names = [mod] if isinstance(small.names, cst.ImportStar) else [f"{mod}.{a.evaluated_name}" for a in small.names]
            if any(index.rename_of(n).startswith("torch.npu") for n in names):
                return True
        return False

    def _anchor(self) -> Optional[tuple[cst.CSTNode, list[cst.CSTNode]]]:
        body = self.ctx.module.body
        for stmt in body:
            if _imports_torch(stmt):
                return stmt, []
        for line, path in _nested_lines(body):
            if path and _imports_torch(line):
                return line, path
        return None

    def _insert_top(self, wanted: list[tuple[str, Rule]]) -> None:
        body = self.ctx.module.body
        index = 0
        for i, stmt in enumerate(body):
            if not isinstance(stmt, cst.SimpleStatementLine):
                break
            small = stmt.body[0]
            is_doc = i == 0 and isinstance(small, cst.Expr) and isinstance(small.value, (cst.SimpleString, cst.ConcatenatedString))
            is_future = isinstance(small, cst.ImportFrom) and module_name(small.module) == "__future__"
            if is_doc or is_future:
                index = i + 1
            else:
                break
        new_lines = [_import_line(m) for m, _ in wanted]
        if index == 0:
            if not body:
                return
            target = body[0]
            self.ctx.replace(target, lambda u, _n=new_lines: cst.FlattenSentinel([*_n, *_flat(u)]), ancestors=[self.ctx.module])
            for module, r in wanted:
                self.ctx.record_change(target, r, f"insert `import {module}`", after=f"import {module}",
                                       operation=Operation.INSERT)
        else:
            target = body[index - 1]
            self.ctx.replace(target, lambda u, _n=new_lines: cst.FlattenSentinel([*_flat(u), *_n]), ancestors=[self.ctx.module])
            for module, r in wanted:
                self.ctx.record_change(target, r, f"insert `import {module}`", after=f"import {module}",
                                       operation=Operation.INSERT, after_node=True)

    def _remove(self) -> None:
        def doomed(small: cst.BaseSmallStatement) -> Optional[ImportRule]:
            if isinstance(small, cst.Import):
                hits = [self._removal(module_name(a.name)) for a in small.names]  # type: ignore[arg-type]
                return hits[0] if hits and all(hits) else None
            if isinstance(small, cst.ImportFrom) and not small.relative:
                return self._removal(module_name(small.module))
            return None

        for line, small in list(iter_small_statements(self.ctx.module)):
            rule = doomed(small)
            if rule is None or not isinstance(line, cst.SimpleStatementLine):
                continue
            code = self.ctx.code(small)
            if len(line.body) > 1:
                self.ctx.replace(small, lambda u: cst.RemovalSentinel.REMOVE)
            else:
                parent = self.ctx.parent(line)
                alone = isinstance(parent, cst.IndentedBlock) and len(parent.body) == 1
                if alone:
                    self.ctx.replace(line, lambda u: u.with_changes(body=[cst.Pass()]))  # type: ignore[attr-defined]
                else:
                    self.ctx.replace(line, lambda u: cst.RemovalSentinel.REMOVE)
            self.ctx.record_change(small, rule, f"remove `{code}`", before=code, operation=Operation.DELETE)

    def _removal(self, name: str) -> Optional[ImportRule]:
        for mod, rule in self.remove.items():
            if name == mod or name.startswith(mod + "."):
                return rule
        return None
