"""Rule kind ``method_reference``: a ``.cuda`` method taken without calling it directly.

``x.cuda(...)`` is the ``method`` kind's. A bound ``.cuda`` that is called later is the same call:
``(x.cuda if c else y.cuda)()``, ``fn = model.cuda`` with ``fn()`` in the same scope, and
``getattr(x, 'cuda')(...)`` become ``.npu`` / ``getattr(x, 'npu')`` (TP113). ``getattr(x, 'cuda')``
whose result is not called here cannot be decided (a method, or a user attribute such as a flag) and
is reported (role ``undecided``, TP566). An uncalled ``x.cuda`` attribute (``args.cuda``) is a user
name and stays.
"""

from __future__ import annotations

import re
from typing import Optional

import libcst as cst

from transplant.rewrite.passes import register_pass

_MAYBE = re.compile(r"\.cuda\b(?![ \t]*\()|getattr\(")

_SCOPES = (cst.Module, cst.FunctionDef, cst.Lambda, cst.ClassDef)


def _method_attr(node: cst.CSTNode, ctx) -> Optional[cst.Attribute]:
    """``node`` if it is ``<receiver>.cuda`` on an object (not a module bound by an import)."""
    if not isinstance(node, cst.Attribute) or node.attr.value != "cuda":
        return None
    if isinstance(node.value, (cst.Name, cst.Attribute)) and ctx.qualified_name(node) is not None:
        return None  # torch.cuda and other imported modules: not a method
    return node


def _getattr_cuda(node: cst.CSTNode) -> Optional[cst.SimpleString]:
    """The ``'cuda'`` string of ``getattr(x, 'cuda'[, default])``."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == "getattr"):
        return None
    if len(node.args) not in (2, 3) or any(a.keyword is not None or a.star for a in node.args):
        return None
    name = node.args[1].value
    if isinstance(name, cst.SimpleString) and name.evaluated_value == "cuda":
        return name
    return None


class _Scope:
    def __init__(self) -> None:
        self.bound: dict[str, list[cst.Attribute]] = {}  # name -> `.cuda` values assigned to it
        self.called: set[str] = set()


class _Finder:
    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.rewrite: list[cst.Attribute] = []
        self.strings: list[cst.SimpleString] = []
        self.undecided: list[cst.Call] = []
        self.called_getattr: set[int] = set()

    def walk(self, node: cst.CSTNode, scope: _Scope) -> None:
        if isinstance(node, _SCOPES) and not isinstance(node, cst.Module):
            inner = _Scope()
            for child in node.children:
                self.walk(child, inner)
            self._close(inner)
            return
        if isinstance(node, cst.Call):
            func = node.func
            if isinstance(func, cst.IfExp):
                for branch in (func.body, func.orelse):
                    attr = _method_attr(branch, self.ctx)
                    if attr is not None:
                        self.rewrite.append(attr)
            elif isinstance(func, cst.Name):
                scope.called.add(func.value)
            string = _getattr_cuda(func)
            if string is not None:
                self.strings.append(string)
                self.called_getattr.add(id(func))
            if _getattr_cuda(node) is not None and id(node) not in self.called_getattr:
                self.undecided.append(node)
        if isinstance(node, cst.Assign) and len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            attr = _method_attr(node.value, self.ctx)
            if attr is not None:
                scope.bound.setdefault(node.targets[0].target.value, []).append(attr)
        for child in node.children:
            self.walk(child, scope)

    def _close(self, scope: _Scope) -> None:
        for name, values in scope.bound.items():
            if name in scope.called:
                self.rewrite.extend(values)


def _npu_string(updated: cst.SimpleString) -> cst.SimpleString:
    quote = updated.value[len(updated.prefix)]
    return updated.with_changes(value=f"{updated.prefix}{quote}npu{quote}")


@register_pass("method_reference")
def method_reference_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``method_reference`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    if not _MAYBE.search(ctx.source_text or module.code):
        return
    rewrite = next((r for r in rules if r.role != "undecided"), None)
    undecided = next((r for r in rules if r.role == "undecided"), None)
    finder = _Finder(ctx)
    top = _Scope()
    finder.walk(module, top)
    finder._close(top)
    # a getattr whose call is undecided only until an enclosing call turns out to call it
    finder.undecided = [c for c in finder.undecided if id(c) not in finder.called_getattr]
    if rewrite is not None:
        for attr in finder.rewrite:
            ctx.replace(attr.attr, lambda u: u.with_changes(value="npu"))
            before = ctx.code(attr)
            ctx.record_change(attr, rewrite, ".cuda method reference -> .npu", before=before,
                              after=before[: before.rfind("cuda")] + "npu")
        for string in finder.strings:
            ctx.replace(string, _npu_string)
            ctx.record_change(string, rewrite, "getattr(x, 'cuda') called -> getattr(x, 'npu')",
                              before=string.value, after=_npu_string(string).value)
    if undecided is not None:
        for call in finder.undecided:
            ctx.record_unsupported(call, undecided, ctx.code(call))
