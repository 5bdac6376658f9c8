"""Every torch API call in one Python file, resolved to its qualified name (stdlib :mod:`ast`, no torch).

Names are resolved through the file's imports and aliases (``import torch.nn as nn``, ``from torch import
optim``, ``from torch.optim import AdamW as A``) and, for method calls, through a cheap receiver-type table:
a name or ``self.attr`` assigned from a call of a resolved torch class has that type, so
``optimizer = torch.optim.AdamW(...)`` ... ``optimizer.step()`` is ``torch.optim.AdamW.step``. The table is
flow-insensitive per file (a key bound to anything else anywhere in the file has no type), which keeps
the work two linear passes over the file: no inference across files, no jedi.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

__all__ = ["ApiCall", "resolve_calls"]

# Roots whose calls are reported (torchvision for the affinity table; torch_npu calls are our own target).
ROOTS = ("torch", "torchvision")


@dataclass(frozen=True)
class ApiCall:
    """One call of a torch API."""

    name: str                    # qualified name, e.g. "torch.optim.AdamW.step"
    line: int                    # 1-based, in the original file
    end_line: int
    column: int                  # 1-based
    keywords: Tuple[Tuple[str, str], ...]   # keyword arguments as (name, source text)
    positional: int              # number of positional arguments
    via_receiver: bool           # resolved through the receiver-type table


def _dotted(node: ast.AST) -> Optional[List[str]]:
    parts: List[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


class _Resolver:
    def __init__(self, source: str) -> None:
        self.source = source
        self._lines = source.splitlines(keepends=True)  # for keyword values' source text, split once
        self.aliases: Dict[str, str] = {}      # local name -> qualified module/object
        self.types: Dict[str, str] = {}        # "optimizer" / "self.optimizer" -> qualified class
        self.bindings: Dict[str, set] = {}     # every value bound to a key (None: not a torch class)
        self.calls: List[ApiCall] = []

    # -- imports ----------------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                head = alias.name.split(".")[0]
                self.aliases[head] = head

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        for alias in node.names:
            if alias.name == "*":
                continue
            self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    # -- names ------------------------------------------------------------------------------------
    def qualify(self, node: ast.AST) -> Tuple[Optional[str], bool]:
        """The qualified name of ``node`` (a Name/Attribute chain) and whether a receiver type was used."""
        parts = _dotted(node)
        if not parts:
            return None, False
        for size in (2, 1):  # "self.optimizer.step" -> the type of "self.optimizer"
            if len(parts) > size:
                receiver = ".".join(parts[:size])
                if receiver in self.types:
                    return ".".join([self.types[receiver], *parts[size:]]), True
        head = self.aliases.get(parts[0])
        if head is None:
            return None, False
        return ".".join([head, *parts[1:]]), False

    # -- assignments feed the receiver-type table ----------------------------------------------------
    def _bind(self, target: ast.AST, value: ast.AST) -> None:
        parts = _dotted(target)
        if not parts or len(parts) > 2:
            return
        key = ".".join(parts)
        qualified = None
        if isinstance(value, ast.Call):
            qualified, _ = self.qualify(value.func)
        if not (qualified and qualified.split(".")[0] in ROOTS and _looks_like_class(qualified)):
            qualified = None
        self.bindings.setdefault(key, set()).add(qualified)

    def settle_types(self) -> None:
        """A key has a type only if every binding in the file gives it the same torch class."""
        self.types = {k: next(iter(v)) for k, v in self.bindings.items() if len(v) == 1 and None not in v}

    # -- calls ------------------------------------------------------------------------------------
    def record_call(self, node: ast.Call) -> None:
        name, via = self.qualify(node.func)
        if name and name.split(".")[0] in ROOTS:
            keywords = tuple((k.arg, self.segment(k.value)) for k in node.keywords if k.arg)
            self.calls.append(ApiCall(
                name=name, line=node.lineno, end_line=getattr(node, "end_lineno", node.lineno) or node.lineno,
                column=node.col_offset + 1, keywords=keywords, positional=len(node.args), via_receiver=via,
            ))

    def segment(self, node: ast.AST) -> str:
        """The source text of ``node`` (ast.get_source_segment splits the whole file on every call)."""
        end_line = getattr(node, "end_lineno", None)
        if end_line is None:
            return ""
        if node.lineno == end_line:
            return self._lines[node.lineno - 1].encode("utf-8")[node.col_offset:node.end_col_offset].decode(
                "utf-8", "replace")
        first = self._lines[node.lineno - 1].encode("utf-8")[node.col_offset:].decode("utf-8", "replace")
        last = self._lines[end_line - 1].encode("utf-8")[:node.end_col_offset].decode("utf-8", "replace")
        return first + "".join(self._lines[node.lineno:end_line - 1]) + last


def _looks_like_class(qualified: str) -> bool:
    return qualified.rsplit(".", 1)[-1][:1].isupper()


def resolve_calls(source: str) -> List[ApiCall]:
    """Every call of a torch/torchvision API in ``source``, in source order. Raises SyntaxError."""
    tree = ast.parse(source)
    resolver = _Resolver(source)
    # One walk collects the three kinds of node; imports may sit below their first use inside functions
    # and receiver types are settled over the whole file, so the order of the walk does not matter.
    imports: List[ast.AST] = []
    assigns: List[ast.AST] = []
    calls: List[ast.Call] = []
    for node in ast.walk(tree):
        kind = type(node)
        if kind is ast.Call:
            calls.append(node)
        elif kind is ast.Assign or kind is ast.AnnAssign:
            assigns.append(node)
        elif kind is ast.Import or kind is ast.ImportFrom:
            imports.append(node)
    for node in imports:
        if isinstance(node, ast.Import):
            resolver.visit_Import(node)
        else:
            resolver.visit_ImportFrom(node)
    for node in assigns:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                resolver._bind(target, node.value)
        elif node.value is not None:
            resolver._bind(node.target, node.value)
    resolver.settle_types()
    for node in calls:
        resolver.record_call(node)
    resolver.calls.sort(key=lambda c: (c.line, c.column, c.name))
    return resolver.calls
