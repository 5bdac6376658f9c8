"""Rule kinds ``rename`` and ``unsupported`` (names): qualified names matched through imports and aliases.

One longest-prefix index holds every rename key and every unsupported name, so a longer key always
wins (``torch.cuda`` may be renamed while ``torch.cuda.nvtx`` is reported as unsupported). A key that
covers an import's binding rewrites the import statement (``from torch.cuda.amp import autocast`` ->
``from torch.amp import autocast``) and leaves the uses alone; a key below the binding rewrites the use
(``torch.cuda.synchronize()`` -> ``torch.npu.synchronize()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import libcst as cst

from transplant.rewrite.context import FileContext
from transplant.results import Operation
from transplant.rewrite.names import build_dotted, module_name
from transplant.rules import RenameRule, Rule, RuleSet, UnsupportedRule


@dataclass(frozen=True)
class NameHit:
    key: str
    rule: Rule
    target: Optional[str]  # None: unsupported
    tip: str

    def renamed(self, qualname: str) -> str:
        assert self.target is not None
        return self.target + qualname[len(self.key):]


class NameIndex:
    """Longest-prefix lookup over rename keys and unsupported names."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.entries: dict[str, NameHit] = {}
        for rule in ruleset:
            if isinstance(rule, RenameRule):
                for key, target in rule.map.items():
                    self.entries.setdefault(key, NameHit(key, rule, target, ""))
        for rule in ruleset:
            if isinstance(rule, UnsupportedRule):
                for key, tip in rule.names.items():
                    # An unsupported name beats a rename of the very same key: never invent an API.
                    self.entries[key] = NameHit(key, rule, None, rule.tip_for(tip))
        self.roots = {k.split(".", 1)[0] for k in self.entries}

    @classmethod
    def of(cls, ruleset: RuleSet) -> "NameIndex":
        index = ruleset.cache.get("name_index")
        if index is None:
            index = ruleset.cache["name_index"] = cls(ruleset)
        return index  # type: ignore[return-value]

    def lookup(self, qualname: str) -> Optional[NameHit]:
        if qualname.split(".", 1)[0] not in self.roots:
            return None
        name = qualname
        while True:
            hit = self.entries.get(name)
            if hit is not None:
                return hit
            cut = name.rfind(".")
            if cut < 0:
                return None
            name = name[:cut]

    def rename_of(self, qualname: str) -> str:
        """``qualname`` after renaming (itself when no rename applies)."""
        hit = self.lookup(qualname)
        return hit.renamed(qualname) if hit is not None and hit.target is not None else qualname


def _covers(key: str, name: str) -> bool:
    return name == key or name.startswith(key + ".")


class QualifiedNames:
    """Handler for chains, bare names and import statements."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.index = NameIndex.of(ctx.ruleset)
        self.suffix_rules = [r for r in ctx.ruleset if isinstance(r, UnsupportedRule) and r.module_suffixes]
        # Aliases of CUDA modules (``import torch.cuda as tc``): removed when every use was rewritten to
        # a full path, so no stale CUDA import is left behind.
        self._aliases: dict[str, tuple[Union[cst.Import, cst.ImportFrom], cst.ImportAlias, tuple[cst.CSTNode, ...]]] = {}
        self._rewritten: dict[str, Rule] = {}
        self._kept: set[str] = set()
        # the rule that rewrites ``torch.cuda`` used as a value (kind ``module_alias``), if selected
        self._module_value_rule: Optional[Rule] = next(
            (r for r in ctx.ruleset if r.kind == "module_alias" and getattr(r, "role", "") != "report"), None)

    # ------------------------------------------------------------ uses
    def chain(self, node: Union[cst.Attribute, cst.Name], dotted: str, stack: Sequence[cst.CSTNode]) -> None:
        imports = self.ctx.imports
        root, _, _rest = dotted.partition(".")
        binding = imports.binds(root)
        if binding is None:
            return
        qual = binding + dotted[len(root):]
        hit = self.index.lookup(qual)
        if hit is None:
            self._kept.add(root)
            return
        if hit.target is None:
            self._kept.add(root)
            self.ctx.record_unsupported(node, hit.rule, qual, hit.tip)
            return
        if _covers(hit.key, binding):
            self._kept.add(root)
            return  # the import statement that binds `root` is renamed instead
        new_qual = hit.renamed(qual)
        new_binding = self.index.rename_of(binding)
        if new_qual.startswith(new_binding + "."):
            new_text = root + new_qual[len(new_binding):]
        else:
            new_text = new_qual
            new_root = new_qual.split(".", 1)[0]
            if imports.binds(new_root) != new_root:
                self.ctx.add_import(new_root, hit.rule)
        if new_text == dotted:
            self._kept.add(root)
            return
        if new_text == root or new_text.startswith(root + "."):
            self._kept.add(root)
        else:
            self._rewritten.setdefault(root, hit.rule)
        self.ctx.replace(node, lambda updated, _t=new_text: _with_dotted(updated, _t), ancestors=stack)
        self.ctx.record_change(node, hit.rule, f"{qual} -> {new_qual}", before=dotted, after=new_text)

    def name(self, node: cst.Name, stack: Sequence[cst.CSTNode]) -> None:
        """A bare name bound by ``from X import name``: report unsupported uses (imports are renamed)."""
        binding = self.ctx.imports.binds(node.value)
        if binding is not None:
            value_rule = self._module_value_rule if binding == "torch.cuda" else None
            if value_rule is not None:
                # the module used as a value (``register(tc)``) becomes ``torch.npu`` (module_alias pass)
                self._rewritten.setdefault(node.value, value_rule)
            else:
                self._kept.add(node.value)  # a bare use (an argument, a re-export, ``del``) needs the import
        if binding is None or "." not in binding:
            return
        hit = self.index.lookup(binding)
        if hit is not None and hit.target is None:
            self.ctx.record_unsupported(node, hit.rule, binding, hit.tip)

    # ------------------------------------------------------------ imports
    def import_(self, node: cst.Import, stack: Sequence[cst.CSTNode]) -> None:
        new_aliases = []
        changed = []
        for alias in node.names:
            name = module_name(alias.name)  # type: ignore[arg-type]
            self._suffix_check(alias, name)
            hit = self.index.lookup(name)
            if hit is None:
                self._note_alias(node, alias, name, stack)
                new_aliases.append(alias)
                continue
            if hit.target is None:
                self.ctx.record_unsupported(alias, hit.rule, name, hit.tip)
                new_aliases.append(alias)
                continue
            new = hit.renamed(name)
            new_aliases.append(alias.with_changes(name=build_dotted(new)))
            changed.append((hit, name, new))
        if not changed:
            return

        def edit(updated: cst.CSTNode, _aliases=new_aliases) -> cst.CSTNode:
            assert isinstance(updated, cst.Import)
            return updated.with_changes(names=_aliases)

        self.ctx.replace(node, edit, ancestors=stack)
        for hit, old, new in changed:
            self.ctx.record_change(node, hit.rule, f"import {old} -> import {new}", before=f"import {old}", after=f"import {new}")

    def import_from(self, node: cst.ImportFrom, stack: Sequence[cst.CSTNode]) -> None:
        if node.relative:
            return
        mod = module_name(node.module)
        self._suffix_check(node, mod)
        if isinstance(node.names, cst.ImportStar):
            hit = self.index.lookup(mod)
            if hit is None:
                return
            if hit.target is None:
                self.ctx.record_unsupported(node, hit.rule, mod, hit.tip)
                return
            new_mod = hit.renamed(mod)
            self.ctx.replace(node, lambda u, _m=new_mod: u.with_changes(module=build_dotted(_m)), ancestors=stack)
            self.ctx.record_change(node, hit.rule, f"from {mod} import * -> from {new_mod} import *",
                                   before=f"from {mod} import *", after=f"from {new_mod} import *")
            return
        groups: dict[str, list[cst.ImportAlias]] = {}
        kept: list[cst.ImportAlias] = []
        rows = []
        for alias in node.names:
            name = alias.evaluated_name
            qual = f"{mod}.{name}"
            hit = self.index.lookup(qual)
            if hit is None or hit.target is None:
                if hit is not None:
                    self.ctx.record_unsupported(alias, hit.rule, qual, hit.tip)
                else:
                    self._note_alias(node, alias, qual, stack)
                kept.append(alias)
                continue
            new_qual = hit.renamed(qual)
            new_mod, _, new_name = new_qual.rpartition(".")
            if not new_mod:
                kept.append(alias)  # renamed to a top-level module: cannot be a from-import; leave it
                continue
            local = alias.evaluated_alias or name
            asname = (alias.asname or cst.AsName(name=cst.Name(local))) if local != new_name else None
            groups.setdefault(new_mod, []).append(alias.with_changes(name=cst.Name(new_name), asname=asname))
            rows.append((hit, qual, new_qual))
        if not groups:
            return
        for hit, old, new in rows:
            self.ctx.record_change(node, hit.rule, f"{old} -> {new}", before=old, after=new)
        if len(groups) == 1 and not kept:
            # one target module: rename in place, keeping the layout (parentheses, commas, comments)
            (new_mod, aliases), = groups.items()
            self.ctx.replace(node, lambda u, _m=new_mod, _a=aliases: u.with_changes(module=build_dotted(_m), names=_a),
                             ancestors=stack)
            return
        # Several target modules: the renamed names move to new statements (one line each when the
        # statement has its own line); the rest stay where they were.
        moved = [cst.ImportFrom(module=build_dotted(m), names=[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in aliases])
                 for m, aliases in groups.items()]
        parenthesized = node.lpar is not None
        if kept and not parenthesized:
            kept = kept[:-1] + [kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)]

        def keep_part(u: cst.ImportFrom) -> list[cst.ImportFrom]:
            return [u.with_changes(names=kept)] if kept else []

        line = stack[-1] if stack else None
        if isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1:
            def edit_line(u: cst.CSTNode) -> cst.FlattenSentinel:
                assert isinstance(u, cst.SimpleStatementLine)
                small = u.body[0]
                assert isinstance(small, cst.ImportFrom)
                parts = keep_part(small) + moved
                lines = [u.with_changes(body=[parts[0]])]
                lines += [cst.SimpleStatementLine(body=[p]) for p in parts[1:]]
                return cst.FlattenSentinel(lines)

            self.ctx.replace(line, edit_line, ancestors=stack[:-1])
        else:
            self.ctx.replace(node, lambda u: cst.FlattenSentinel(keep_part(u) + moved), ancestors=stack)  # type: ignore[arg-type]

    def _note_alias(self, node: Union[cst.Import, cst.ImportFrom], alias: cst.ImportAlias, qual: str,
                    stack: Sequence[cst.CSTNode]) -> None:
        local = alias.evaluated_alias if isinstance(node, cst.Import) else (alias.evaluated_alias or alias.evaluated_name)
        if local and (qual == "torch.cuda" or qual.startswith("torch.cuda.")) and self.ctx.imports.binds(local) == qual:
            self._aliases.setdefault(local, (node, alias, tuple(stack)))

    def finish(self) -> None:
        """Remove CUDA module aliases whose every use was rewritten to a full ``torch.npu`` path."""
        for local, (node, alias, stack) in self._aliases.items():
            rule = self._rewritten.get(local)
            if rule is None or local in self._kept:
                continue
            code = self.ctx.code(node)
            names = node.names
            assert not isinstance(names, cst.ImportStar)
            line = stack[-1] if stack else None
            if len(names) > 1:
                def drop_alias(u: cst.CSTNode, _name=local) -> cst.CSTNode:
                    keep = [a for a in u.names if (a.evaluated_alias or (a.evaluated_name if isinstance(u, cst.ImportFrom)
                                                                          else None)) != _name]  # type: ignore[attr-defined]
                    keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                    return u.with_changes(names=keep)  # type: ignore[attr-defined]

                self.ctx.replace(node, drop_alias, ancestors=stack)
                what = f"`{self.ctx.code(alias).rstrip(', ')}` from `{code}`"
            elif isinstance(line, cst.SimpleStatementLine) and len(line.body) > 1:
                self.ctx.replace(node, lambda u: cst.RemovalSentinel.REMOVE, ancestors=stack)
                what = f"`{code}`"
            elif isinstance(line, cst.SimpleStatementLine):
                block = stack[-2] if len(stack) > 1 else None
                if isinstance(block, cst.IndentedBlock) and len(block.body) == 1:
                    self.ctx.replace(line, lambda u: u.with_changes(body=[cst.Pass()]), ancestors=stack[:-1])
                else:
                    self.ctx.replace(line, lambda u: cst.FlattenSentinel([]), ancestors=stack[:-1])  # later edits may add to it
                what = f"`{code}`"
            else:
                continue
            self.ctx.record_change(node, rule, f"remove {what}: every use now names torch.npu in full", before=code,
                                   operation=Operation.DELETE)

    def _suffix_check(self, node: cst.CSTNode, name: str) -> None:
        """Compiled CUDA extension modules (``import fused_adam_cuda``) that the project does not define."""
        if not self.suffix_rules or not name:
            return
        top = name.split(".", 1)[0]
        if top in self.ctx.project_modules:
            return
        for rule in self.suffix_rules:
            for suffix, tip in rule.module_suffixes.items():  # type: ignore[attr-defined]
                if top.endswith(suffix) and top != suffix.lstrip("_"):
                    self.ctx.record_unsupported(node, rule, name, rule.tip_for(tip))  # type: ignore[attr-defined]
                    return


def _with_dotted(updated: cst.CSTNode, text: str) -> cst.CSTNode:
    new = build_dotted(text)
    if isinstance(updated, (cst.Attribute, cst.Name)):
        return new.with_changes(lpar=updated.lpar, rpar=updated.rpar)
    return new


__all__ = ["NameIndex", "NameHit", "QualifiedNames"]
