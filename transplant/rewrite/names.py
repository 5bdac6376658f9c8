"""A cheap import-alias table: which dotted name does a local ``Name``/``Attribute`` chain refer to?

Instead of libcst's full ``QualifiedNameProvider`` (scope analysis of every node, several times the cost
of a parse), this walks only *statements* — module body and the bodies of compound statements, so
function-local imports (``def train(): from apex import amp``) count — and records what each import
binds. It is flow-insensitive: a name bound by an import anywhere in the file resolves everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import libcst as cst


# Fields that only hold whitespace, comments or punctuation: never worth walking into.
_SKIP_FIELDS = frozenset({
    "lpar", "rpar", "comma", "equal", "semicolon", "colon", "newline", "header", "footer", "leading_lines",
    "lines_after_decorators", "trailing_whitespace", "operator", "whitespace_before", "whitespace_after",
    "whitespace_before_params", "whitespace_after_def", "whitespace_after_name", "whitespace_before_colon",
    "whitespace_after_at", "whitespace_after_import", "whitespace_after_from", "whitespace_before_import",
    "whitespace_after_star", "whitespace_after_star_star", "whitespace_after_indicator",
    "whitespace_after_param", "whitespace_before_indicator", "whitespace_before_args", "whitespace_after_as",
    "whitespace_before_as", "whitespace_before_walrus", "whitespace_after_walrus", "whitespace_after_if",
    "whitespace_before_if", "whitespace_after_else", "whitespace_before_else", "whitespace_after_in",
    "whitespace_before_in", "whitespace_after_for", "whitespace_before_for", "whitespace_after_lambda",
    "whitespace_after_await", "whitespace_after_return", "whitespace_after_del", "whitespace_after_assert",
    "whitespace_after_raise", "whitespace_after_global", "whitespace_after_nonlocal", "whitespace_after_with",
    "whitespace_after_case", "whitespace_after_match", "whitespace_after_async", "whitespace_after_yield",
    "whitespace_after_from_", "whitespace_before_from", "whitespace_after_class", "whitespace_after_while",
    "whitespace_after_except", "whitespace_after_dot", "whitespace_before_dot", "lbracket", "rbracket",
    "lbrace", "rbrace", "dot", "asynchronous", "indent", "start", "end", "quote", "prefix",
})
FIELD_CACHE: dict[type, tuple[str, ...]] = {}


def node_fields(cls: type) -> tuple[str, ...]:
    names = FIELD_CACHE.get(cls)
    if names is None:
        import dataclasses

        names = FIELD_CACHE[cls] = tuple(
            f.name for f in dataclasses.fields(cls)
            if f.name not in _SKIP_FIELDS and not f.name.startswith("whitespace")
        )
    return names


def iter_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and its descendants (whitespace and punctuation skipped), without libcst's visitor."""
    todo = [node]
    base = cst.CSTNode
    while todo:
        n = todo.pop()
        yield n
        for name in FIELD_CACHE.get(type(n)) or node_fields(type(n)):
            value = getattr(n, name)
            if isinstance(value, base):
                todo.append(value)
            elif type(value) is tuple or type(value) is list:
                todo.extend(v for v in value if isinstance(v, base))


def dotted_name(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a pure Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if not isinstance(node, cst.Name):
        return None
    parts.append(node.value)
    return ".".join(reversed(parts))


def module_name(node: Union[cst.Attribute, cst.Name, None]) -> str:
    """The dotted text of an import's module expression (``""`` for ``from . import x``)."""
    if node is None:
        return ""
    return dotted_name(node) or ""


def build_dotted(name: str) -> Union[cst.Name, cst.Attribute]:
    """A fresh Name/Attribute chain for ``a.b.c``."""
    parts = name.split(".")
    node: Union[cst.Name, cst.Attribute] = cst.Name(parts[0])
    for part in parts[1:]:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node


def iter_statements(body: Sequence[cst.CSTNode]) -> Iterator[cst.CSTNode]:
    """Every statement, depth first, including those nested in compound statements."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, cst.SimpleStatementLine):
            continue
        for block in _blocks(stmt):
            yield from iter_statements(block)


def _blocks(stmt: cst.CSTNode) -> Iterator[Sequence[cst.CSTNode]]:
    body = getattr(stmt, "body", None)
    if isinstance(body, cst.IndentedBlock):
        yield body.body
    elif isinstance(body, cst.SimpleStatementSuite):
        yield body.body
    elif isinstance(body, (list, tuple)):
        yield body
    for attr in ("orelse", "finalbody"):
        sub = getattr(stmt, attr, None)
        if isinstance(sub, (cst.Else, cst.Finally)):
            yield from _blocks(sub)
        elif isinstance(sub, cst.If):
            yield [sub]
    for handler in getattr(stmt, "handlers", ()) or ():
        yield from _blocks(handler)
    for case in getattr(stmt, "cases", ()) or ():
        yield from _blocks(case)


def iter_small_statements(module: cst.Module) -> Iterator[tuple[cst.CSTNode, cst.BaseSmallStatement]]:
    """(statement line, small statement) pairs of the whole module, nested blocks included."""
    for stmt in iter_statements(module.body):
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                yield stmt, small
        elif isinstance(getattr(stmt, "body", None), cst.SimpleStatementSuite):
            for small in stmt.body.body:  # type: ignore[attr-defined]
                yield stmt, small


@dataclass
class ImportTable:
    """Local name -> qualified name it was imported as; plus every imported module."""

    bindings: dict[str, str] = field(default_factory=dict)
    imported_modules: set[str] = field(default_factory=set)
    imports: list[Union[cst.Import, cst.ImportFrom]] = field(default_factory=list)

    @classmethod
    def from_module(cls, module: cst.Module) -> "ImportTable":
        table = cls()
        for _line, small in iter_small_statements(module):
            if isinstance(small, cst.Import):
                table.imports.append(small)
                for alias in small.names:
                    name = module_name(alias.name)  # type: ignore[arg-type]
                    table.imported_modules.add(name)
                    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                        table.bindings.setdefault(alias.asname.name.value, name)
                    else:
                        root = name.split(".", 1)[0]
                        table.bindings.setdefault(root, root)
            elif isinstance(small, cst.ImportFrom):
                table.imports.append(small)
                if small.relative:
                    continue  # project-relative: never a rule target
                mod = module_name(small.module)
                table.imported_modules.add(mod)
                if isinstance(small.names, cst.ImportStar):
                    continue
                for alias in small.names:
                    local = alias.evaluated_alias or alias.evaluated_name
                    table.bindings.setdefault(local, f"{mod}.{alias.evaluated_name}")
        return table

    def qualify(self, node: cst.BaseExpression) -> Optional[str]:
        """Qualified name of a pure chain whose root is bound by an import, else None."""
        name = dotted_name(node)
        if name is None:
            return None
        return self.qualify_dotted(name)

    def qualify_dotted(self, name: str) -> Optional[str]:
        root, _, rest = name.partition(".")
        target = self.bindings.get(root)
        if target is None:
            return None
        return f"{target}.{rest}" if rest else target

    def binds(self, local: str) -> Optional[str]:
        return self.bindings.get(local)
