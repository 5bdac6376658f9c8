"""Rule kind ``method``: attribute renames on any receiver (``x.cuda(...)`` -> ``x.npu(...)``, ``x.is_cuda`` -> ``x.is_npu``).

The receiver is not type-checked (a static tool cannot know it is a tensor), with two guards: a receiver
that is a CUDA library module (``numba.cuda``, ``cupy.cuda``) is left alone (those are reported by the
unsupported rules), and ``is_cuda`` is left alone in a file that defines its own ``is_cuda`` attribute,
method or parameter.
"""

from __future__ import annotations

from typing import Sequence

import libcst as cst

from transplant.rewrite.context import FileContext
from transplant.rules import MethodRule, UnsupportedRule


_MODULES_WITH_CUDA = frozenset({"numba", "cupy", "pycuda", "jax", "tensorflow", "cuda"})


class MethodRenames:
    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.calls: dict[str, tuple[str, MethodRule]] = {}
        self.attributes: dict[str, tuple[str, MethodRule]] = {}
        for rule in ctx.ruleset:
            if isinstance(rule, MethodRule):
                for old, new in rule.calls.items():
                    self.calls.setdefault(old, (new, rule))
                for old, new in rule.attributes.items():
                    self.attributes.setdefault(old, (new, rule))
        # x.cpu().state_dict(): last method name -> [(previous method name, tip, rule)]
        self.chains: dict[str, list[tuple[str, str, UnsupportedRule]]] = {}
        for rule in ctx.ruleset:
            if isinstance(rule, UnsupportedRule):
                for chain, tip in rule.method_chains.items():
                    first, last = chain.rsplit(".", 1)
                    self.chains.setdefault(last, []).append((first.rsplit(".", 1)[-1], rule.tip_for(tip), rule))
        self.names = set(self.calls) | set(self.attributes)
        self.pending: list[tuple[cst.Attribute, list[cst.CSTNode], str, MethodRule, str]] = []
        self.user_defined: set[str] = set()  # attribute names the file defines itself

    def attribute(self, node: cst.Attribute, stack: Sequence[cst.CSTNode]) -> None:
        attr = node.attr.value
        if attr in self.chains:
            self._chain(node, attr, stack)
        if attr not in self.names:
            return
        parent = stack[-1] if stack else None
        if isinstance(parent, cst.AssignTarget) or (isinstance(parent, (cst.AnnAssign, cst.AugAssign)) and parent.target is node):
            self.user_defined.add(attr)
            return
        receiver = self.ctx.imports.qualify(node.value) if isinstance(node.value, (cst.Name, cst.Attribute)) else None
        if receiver is not None and receiver.split(".", 1)[0] in _MODULES_WITH_CUDA:
            # `numba.cuda`, `cupy.cuda`: a submodule of a CUDA library, not a tensor method
            return
        is_call = isinstance(parent, cst.Call) and parent.func is node
        if is_call and attr in self.calls:
            new, rule = self.calls[attr]
            self.pending.append((node, list(stack), new, rule, f".{attr}(...) -> .{new}(...)"))
        elif attr in self.attributes:
            new, rule = self.attributes[attr]
            self.pending.append((node, list(stack), new, rule, f".{attr} -> .{new}"))

    def _chain(self, node: cst.Attribute, attr: str, stack: Sequence[cst.CSTNode]) -> None:
        """Report ``x.cpu().state_dict()``-style chains (unsupported ``method_chains``)."""
        parent = stack[-1] if stack else None
        inner = node.value
        if not (isinstance(parent, cst.Call) and parent.func is node and isinstance(inner, cst.Call)
                and isinstance(inner.func, cst.Attribute)):
            return
        for previous, tip, rule in self.chains[attr]:
            if inner.func.attr.value == previous:
                self.ctx.record_unsupported(node, rule, f".{previous}().{attr}()", tip)

    def definition(self, name: str) -> None:
        """The file defines ``def name`` / a parameter ``name``: renaming its uses would break them."""
        if name in self.attributes:
            self.user_defined.add(name)

    def finish(self) -> None:
        for node, ancestors, new, rule, message in self.pending:
            attr = node.attr.value
            if attr in self.user_defined and attr in self.attributes and attr not in self.calls:
                continue
            self.ctx.replace(node, lambda u, _n=new: u.with_changes(attr=u.attr.with_changes(value=_n)),  # type: ignore[attr-defined]
                             ancestors=ancestors)
            before = self.ctx.code(node)
            after = before[: len(before) - len(attr)] + new if before.endswith(attr) else "." + new
            if len(before) > 80:  # a long receiver expression: the row shows its tail
                before, after = "..." + before[-60:], "..." + after[-60:]
            self.ctx.record_change(node, rule, message, before=before, after=after)
