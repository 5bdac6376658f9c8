"""Shared machinery of the mixed-precision passes (apex → native torch, AMP insertion).

The structural passes first *plan* on the original tree (decide every edit, or decide to do nothing and
say why), collecting the edits in a :class:`StatementEditor` and the report rows in :class:`Findings`;
only a complete plan is handed to the engine (``StatementEditor.commit`` schedules the edits on the
file's context, which applies them with every other rule's edits). Planning first makes "all or nothing
per file" easy: a pass that finds a shape it cannot rewrite safely records rows and no edit.

Nothing here imports torch: these modules belong to the offline rewriter.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, Union

import libcst as cst

from transplant.results import Operation
from transplant.rewrite.names import FIELD_CACHE, ImportTable, iter_nodes, node_fields


class Refused(Exception):
    """A shape a structural pass does not rewrite safely: ``reason`` says why, ``node`` where (for the report).

    The one "refused shape" exception of every pass (apex amp, apex optimizers/normalization, AMP
    insertion). ``Refused("why")`` without a node is accepted for planners that report at their caller.
    """

    def __init__(self, node: "Optional[cst.CSTNode] | str", reason: str = "") -> None:
        if isinstance(node, str) and not reason:
            node, reason = None, node
        super().__init__(reason)
        self.node = node
        self.reason = reason


Suite = Union[cst.IndentedBlock, cst.Module]
StmtFactory = Callable[[cst.BaseStatement], Sequence[cst.BaseStatement]]


# --------------------------------------------------------------------------------------------------
# Node builders (libcst nodes, never string templates)
# --------------------------------------------------------------------------------------------------

def dotted(name: str) -> cst.BaseExpression:
    """``"torch.amp.GradScaler"`` as an Attribute chain."""
    parts = name.split(".")
    node: cst.BaseExpression = cst.Name(parts[0])
    for part in parts[1:]:
        node = cst.Attribute(value=node, attr=cst.Name(part))
    return node


def string(value: str) -> cst.SimpleString:
    return cst.SimpleString(repr(value))


def kwarg(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(
        keyword=cst.Name(name),
        value=value,
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )


def call(func: cst.BaseExpression | str, *args: cst.BaseExpression | cst.Arg) -> cst.Call:
    """A call with normalised comma spacing (``f(a, b=c)``)."""
    if isinstance(func, str):
        func = dotted(func)
    built = [a if isinstance(a, cst.Arg) else cst.Arg(value=a) for a in args]
    with_commas = [
        a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) if i < len(built) - 1 else
        a.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        for i, a in enumerate(built)
    ]
    return cst.Call(func=func, args=with_commas)


def method_call(receiver: cst.BaseExpression, method: str, *args: cst.BaseExpression | cst.Arg) -> cst.Call:
    return call(cst.Attribute(value=receiver, attr=cst.Name(method)), *args)


def expr_stmt(expr: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine(body=[cst.Expr(value=expr)])


def assign_stmt(target: cst.BaseExpression, value: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine(body=[cst.Assign(targets=[cst.AssignTarget(target=target)], value=value)])


def parenthesize(expr: cst.BaseExpression) -> cst.BaseExpression:
    """Parentheses where ``expr`` would otherwise bind wrongly as an operand of ``and``/``*``."""
    if isinstance(expr, (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.SimpleString, cst.Integer,
                         cst.Float)) or expr.lpar:
        return expr
    return expr.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def and_all(exprs: Sequence[cst.BaseExpression]) -> Optional[cst.BaseExpression]:
    """``a and b and c`` (operands parenthesised where needed); None for no operands."""
    if not exprs:
        return None
    result = parenthesize(exprs[0])
    for operand in exprs[1:]:
        result = cst.BooleanOperation(left=result, operator=cst.And(), right=parenthesize(operand))
    return result


def as_bool(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``expr`` as a real bool (torch.autocast rejects ``enabled=1``); comparisons and ``not`` already are."""
    if is_boolean(expr):
        return expr
    return call("bool", expr.with_changes(lpar=[], rpar=[]) if expr.lpar else expr)


def is_boolean(expr: cst.BaseExpression) -> bool:
    if isinstance(expr, cst.Comparison):
        return True
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
        return True
    if isinstance(expr, cst.Name) and expr.value in ("True", "False"):
        return True
    if isinstance(expr, cst.BooleanOperation):
        return is_boolean(expr.left) and is_boolean(expr.right)
    return False


def negate(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``not expr`` (``not not x`` collapses to ``x``)."""
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not) and not expr.lpar:
        return expr.expression
    return cst.UnaryOperation(operator=cst.Not(), expression=parenthesize(expr))


def scaled_threshold(threshold: cst.BaseExpression, scaler: cst.BaseExpression) -> cst.BinaryOperation:
    """``threshold * scaler.get_scale()``: a clip of still-scaled gradients, in scaled units."""
    return cst.BinaryOperation(left=parenthesize(threshold), operator=cst.Multiply(
        whitespace_before=cst.SimpleWhitespace(" "), whitespace_after=cst.SimpleWhitespace(" ")),
        right=method_call(scaler, "get_scale"))


def free_name(used: set[str], candidates: Sequence[str] = ("scaler", "grad_scaler", "amp_scaler")) -> str:
    """The first of ``candidates`` not used in the file, else ``scaler2``, ``scaler3``, ..."""
    for name in candidates:
        if name not in used:
            return name
    index = 2
    while f"scaler{index}" in used:
        index += 1
    return f"scaler{index}"


def with_block(item: cst.BaseExpression, body: Sequence[cst.BaseStatement],
               leading_lines: Sequence[cst.EmptyLine] = ()) -> cst.With:
    return cst.With(items=[cst.WithItem(item=item)], body=cst.IndentedBlock(body=list(body)),
                    leading_lines=list(leading_lines))


# --------------------------------------------------------------------------------------------------
# Reading the tree
# --------------------------------------------------------------------------------------------------

def code_of(module: cst.Module, node: cst.CSTNode) -> str:
    return module.code_for_node(node)


def first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def same_expr(module: cst.Module, a: cst.CSTNode, b: cst.CSTNode) -> bool:
    """Textual identity of two simple expressions (``optimizer`` vs ``self.optimizer``), ignoring spacing."""
    return "".join(code_of(module, a).split()) == "".join(code_of(module, b).split())


def is_simple_reference(node: cst.BaseExpression) -> bool:
    """A name or a chain of attributes on a name (``optimizer``, ``self.optim``)."""
    while isinstance(node, cst.Attribute):
        node = node.value
    return isinstance(node, cst.Name)


def is_pure_condition(node: cst.CSTNode) -> bool:
    """An expression that can be evaluated again without side effects (names, attributes, constants, comparisons)."""
    if isinstance(node, (cst.Name, cst.Integer, cst.Float, cst.SimpleString)):
        return True
    if isinstance(node, cst.Attribute):
        return is_pure_condition(node.value)
    if isinstance(node, cst.Subscript):
        return is_pure_condition(node.value) and all(
            isinstance(e.slice, cst.Index) and is_pure_condition(e.slice.value) for e in node.slice)
    if isinstance(node, cst.Comparison):
        return is_pure_condition(node.left) and all(is_pure_condition(c.comparator) for c in node.comparisons)
    if isinstance(node, cst.BooleanOperation):
        return is_pure_condition(node.left) and is_pure_condition(node.right)
    if isinstance(node, cst.UnaryOperation):
        return is_pure_condition(node.expression)
    return False


def names_in(node: cst.CSTNode) -> set[str]:
    return {n.value for n in iter_nodes(node) if isinstance(n, cst.Name)}


def call_arg(call_node: cst.Call, position: int, keyword: str) -> Optional[cst.Arg]:
    """The argument bound to parameter ``keyword`` at ``position`` (None when absent or behind ``*args``)."""
    positional = 0
    for arg in call_node.args:
        if arg.keyword is not None:
            if arg.keyword.value == keyword:
                return arg
            continue
        if arg.star:
            return None
        if positional == position:
            return arg
        positional += 1
    return None


def literal_value(node: cst.BaseExpression) -> object:
    """The Python value of a literal (str/int/float/bool/None, possibly negative); ``_NOT_LITERAL`` otherwise."""
    if isinstance(node, cst.SimpleString):
        return node.evaluated_value
    if isinstance(node, cst.Integer):
        return int(node.value.replace("_", ""), 0)
    if isinstance(node, cst.Float):
        return float(node.value.replace("_", ""))
    if isinstance(node, cst.Name) and node.value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[node.value]
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        inner = literal_value(node.expression)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
    return NOT_LITERAL


class _NotLiteral:
    def __repr__(self) -> str:
        return "NOT_LITERAL"


NOT_LITERAL = _NotLiteral()


# --------------------------------------------------------------------------------------------------
# Analysis context: metadata over the *original* tree
# --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One planned change_list.csv row, anchored on an original node."""

    node: cst.CSTNode
    rule: str
    operation: Operation
    message: str
    severity: str
    before: str
    after: str


@dataclass
class Issue:
    """One planned unsupported_api.csv row."""

    node: cst.CSTNode
    rule: str
    op: str
    tip: str


@dataclass
class Findings:
    """What a pass decided to report."""

    changes: list[Row] = field(default_factory=list)
    unsupported: list[Issue] = field(default_factory=list)

    def emit(self, ctx) -> None:  # ctx: transplant.rewrite.context.FileContext
        """Record every row on the engine's context (rows of deselected rules are dropped).

        Each row keeps the severity its planner decided (an exact replacement is ``safe`` even under a
        rule whose default is ``review``, and the other way round).
        """
        for row in self.changes:
            rule = ctx.rule(row.rule)
            if rule is None:
                continue
            ctx.record_change(row.node, rule, row.message, before=row.before, after=row.after,
                              operation=row.operation, severity=row.severity)
        for issue in self.unsupported:
            rule = ctx.rule(issue.rule)
            if rule is not None:
                ctx.record_unsupported(issue.node, rule, issue.op, issue.tip)


class Analysis:
    """Parents, import-resolved names and node inventories of one module, from a single walk.

    Names are resolved with the engine's flow-insensitive import table (``from apex import amp`` inside a
    function resolves ``amp.initialize`` anywhere in the file), which costs a dictionary lookup per chain
    instead of libcst's scope analysis. Node identity is the original tree's.
    """

    def __init__(self, module: cst.Module, imports: Optional[ImportTable] = None) -> None:
        self.module = module
        self.imports = imports if imports is not None else ImportTable.from_module(module)
        collector = _Inventory()
        collector.walk(module)
        self._parents = collector.parents
        self.calls: list[cst.Call] = collector.calls
        self.lines: list[cst.SimpleStatementLine] = collector.lines
        self.classes: list[cst.ClassDef] = collector.classes
        self.chains: list[cst.BaseExpression] = collector.chains
        self.names: set[str] = collector.names

    # -- names -------------------------------------------------------------------------------------
    def qualified(self, node: cst.CSTNode) -> Optional[str]:
        """Dotted name of a Name/Attribute chain whose root an import binds (``amp.initialize`` →
        ``apex.amp.initialize``), else None."""
        if not isinstance(node, (cst.Name, cst.Attribute)):
            return None
        return self.imports.qualify(node)

    def resolves_to(self, node: cst.CSTNode, prefix: str) -> Optional[str]:
        """The qualified name of ``node`` when it is ``prefix`` or lies under it."""
        name = self.qualified(node)
        if name is not None and (name == prefix or name.startswith(prefix + ".")):
            return name
        return None

    def uses_under(self, prefix: str) -> Iterator[tuple[cst.CSTNode, str]]:
        """Outermost chains resolving to ``prefix`` or below, outside import statements."""
        for node in self.chains:
            name = self.resolves_to(node, prefix)
            if name is not None and not self._in_import(node):
                yield node, name

    def uses_any(self, prefixes: tuple[str, ...]) -> bool:
        """Does any chain outside import statements resolve to one of ``prefixes`` (or below)?"""
        return any(next(iter(self.uses_under(p)), None) is not None for p in prefixes)

    def _in_import(self, node: cst.CSTNode) -> bool:
        current: Optional[cst.CSTNode] = node
        while current is not None and not isinstance(current, cst.BaseStatement):
            if isinstance(current, (cst.Import, cst.ImportFrom)):
                return True
            current = self.parent(current)
        return False

    # -- tree --------------------------------------------------------------------------------------
    def parent(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        return self._parents.get(id(node))

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        current = self.parent(node)
        while current is not None:
            yield current
            current = self.parent(current)

    def within(self, node: cst.CSTNode, region: cst.CSTNode) -> bool:
        """Is ``node`` inside ``region`` (or ``region`` itself)?"""
        return node is region or isinstance(region, cst.Module) or any(a is region for a in self.ancestors(node))

    def statement_of(self, node: cst.CSTNode) -> cst.BaseStatement:
        """The innermost statement (simple line or compound) that contains ``node``."""
        current: cst.CSTNode = node
        while not isinstance(current, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            parent = self.parent(current)
            assert parent is not None
            current = parent
        return current

    def scope_of(self, node: cst.CSTNode) -> Union[cst.FunctionDef, cst.Module]:
        """The innermost function containing ``node`` (lambdas and classes are looked through), else the module."""
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.FunctionDef):
                return ancestor
        return self.module

    def class_of(self, function: cst.CSTNode) -> Optional[cst.ClassDef]:
        for ancestor in self.ancestors(function):
            if isinstance(ancestor, cst.ClassDef):
                return ancestor
            if isinstance(ancestor, cst.FunctionDef):
                return None
        return None

    def top_statement_in(self, node: cst.CSTNode, suite: Suite) -> Optional[cst.BaseStatement]:
        """The statement of ``suite`` that contains ``node``."""
        current: cst.CSTNode = node
        while True:
            parent = self.parent(current)
            if parent is None:
                return None
            if parent is suite:
                return current if isinstance(current, cst.BaseStatement) else None
            current = parent

    # -- rows --------------------------------------------------------------------------------------
    def change(self, rule: str, node: cst.CSTNode, operation: Operation, message: str, severity: str,
               after: str, before: Optional[str] = None) -> Row:
        if before is None:
            before = "" if operation is Operation.INSERT else first_line(code_of(self.module, node))
        return Row(node=node, rule=rule, operation=operation, message=message, severity=severity,
                   before=before, after=first_line(after))

    def unsupported(self, rule: str, node: cst.CSTNode, op: str, tip: str) -> Issue:
        return Issue(node=node, rule=rule, op=op, tip=tip)


class _Inventory:
    """One walk: parent links plus the node kinds the passes look for.

    A plain pre-order walk over the node fields (as the engine's detector does): libcst's visitor would
    rebuild every node and compute ``children`` for each, several times the cost of the analysis itself.
    """

    def __init__(self) -> None:
        self.parents: dict[int, cst.CSTNode] = {}
        self.calls: list[cst.Call] = []
        self.lines: list[cst.SimpleStatementLine] = []
        self.classes: list[cst.ClassDef] = []
        self.chains: list[cst.BaseExpression] = []
        self.names: set[str] = set()

    def walk(self, root: cst.CSTNode) -> None:
        parents = self.parents
        base = cst.CSTNode
        todo: list[cst.CSTNode] = [root]
        while todo:
            node = todo.pop()
            kids: list[cst.CSTNode] = []
            for name in FIELD_CACHE.get(type(node)) or node_fields(type(node)):
                value = getattr(node, name)
                if isinstance(value, base):
                    kids.append(value)
                elif type(value) is tuple or type(value) is list:
                    kids.extend(v for v in value if isinstance(v, base))
            for child in kids:
                parents[id(child)] = node
            todo.extend(reversed(kids))
            if isinstance(node, cst.Name):
                self.names.add(node.value)
            if isinstance(node, (cst.Name, cst.Attribute)):
                parent = parents.get(id(node))
                if not (isinstance(parent, cst.Attribute) and (parent.value is node or parent.attr is node)):
                    self.chains.append(node)
            elif isinstance(node, cst.Call):
                self.calls.append(node)
            elif isinstance(node, cst.SimpleStatementLine):
                self.lines.append(node)
            elif isinstance(node, cst.ClassDef):
                self.classes.append(node)


def names_in_all(nodes: Sequence[cst.CSTNode]) -> set[str]:
    out: set[str] = set()
    for node in nodes:
        out |= names_in(node)
    return out


def enclosing_guards(analysis: Analysis, stmt: cst.BaseStatement, stop: cst.CSTNode
                     ) -> tuple[list[tuple[cst.BaseExpression, cst.If]], Optional[str]]:
    """Conditions under which ``stmt`` runs, up to ``stop`` (a function or the module).

    Returns ((condition, its ``if``) outermost first, problem). ``try`` bodies are looked through; loops, ``with`` blocks, exception
    handlers and nested definitions are a problem (the caller reports it and rewrites nothing).
    """
    guards: list[tuple[cst.BaseExpression, cst.If]] = []
    child: cst.CSTNode = stmt
    for ancestor in analysis.ancestors(stmt):
        if ancestor is stop:
            return guards, None
        if isinstance(ancestor, cst.If):
            if ancestor.body is child:
                guards.insert(0, (ancestor.test, ancestor))
            else:  # reached through ``else:`` or an ``elif`` chain
                guards.insert(0, (negate(ancestor.test), ancestor))
        elif isinstance(ancestor, (cst.For, cst.While)):
            return guards, "it runs inside a loop"
        elif isinstance(ancestor, (cst.With, cst.ExceptHandler, cst.Finally)):
            return guards, "it runs inside a with/except/finally block"
        elif isinstance(ancestor, cst.Try) and ancestor.body is not child:
            return guards, "it runs inside the else branch of a try"
        elif isinstance(ancestor, (cst.ClassDef, cst.FunctionDef)):
            return guards, "it is nested in a class or function body"
        child = ancestor
    return guards, None


def steps_following(analysis: Analysis, stmt: cst.BaseStatement, steps: Sequence[cst.BaseStatement]
                    ) -> list[cst.BaseStatement]:
    """The optimizer ``steps`` that follow ``stmt`` once per run of it: later in its own block or, climbing
    out of ``if``/``else`` branches only (never a loop), later in an enclosing block.

    A clip in ``if args.fp16:`` inside the accumulation block is followed by that block's step, so it can
    unscale first; a clip with no step after it runs on every micro-step.
    """
    current: cst.CSTNode = stmt
    while True:
        suite = analysis.parent(current)
        if not isinstance(suite, (cst.IndentedBlock, cst.Module)):
            return []
        body = list(suite.body)
        later = [s for s in body[body.index(current) + 1:] if any(s is step for step in steps)]
        if later:
            return later
        owner = analysis.parent(suite)
        if isinstance(owner, cst.Else):
            owner = analysis.parent(owner)
        while isinstance(owner, cst.If) and isinstance(analysis.parent(owner), cst.If):
            owner = analysis.parent(owner)  # an ``elif``: climb to the ``if`` that heads the chain
        if not isinstance(owner, cst.If):
            return []
        current = owner


@dataclass
class Wrap:
    """Wrap the statements ``first``..``last`` (original nodes, same suite) in ``with <item>:``."""

    first: cst.BaseStatement
    last: cst.BaseStatement
    item: cst.BaseExpression


class StatementEditor:
    """Planned edits keyed by *original* nodes, committed to the engine's :class:`FileContext`.

    Statement edits are composed into one edit per statement (insertions before/after, replacement,
    removal); wrapping a run of statements in ``with`` and keeping emptied blocks valid are edits of the
    enclosing block, which the engine applies after the statements inside it.
    """

    def __init__(self) -> None:
        self.replace_expr: dict[cst.CSTNode, Callable[[cst.CSTNode], cst.CSTNode]] = {}
        self.replace_stmt: dict[cst.BaseStatement, StmtFactory] = {}
        self.before: dict[cst.BaseStatement, list[cst.BaseStatement]] = defaultdict(list)
        self.after: dict[cst.BaseStatement, list[cst.BaseStatement]] = defaultdict(list)
        self.wraps: list[Wrap] = []
        # Identity bookkeeping of nodes created while the edits run. Each map holds the node itself, not
        # only its id(): a node that is garbage-collected frees its id for the next node allocated, and an
        # id-only set once made the block edit drop an unrelated statement that happened to reuse it.
        self._created_pass: _Identity = _Identity()  # ``pass`` statements standing in for blocks we emptied
        self.removed: set[int] = set()  # ids of ORIGINAL statements (the original tree outlives the plan)
        self._doomed: _Identity = _Identity()  # updated statements to drop in their block's edit
        # Blank lines and comments above a removed statement move to the next statement that stays.
        self._inherit: dict[int, list[cst.EmptyLine]] = defaultdict(list)

    @property
    def empty(self) -> bool:
        return not (self.replace_expr or self.replace_stmt or self.before or self.after or self.wraps)

    def merge(self, other: "StatementEditor") -> None:
        """Take over ``other``'s planned edits (a sub-plan that was kept)."""
        self.replace_expr.update(other.replace_expr)
        self.replace_stmt.update(other.replace_stmt)
        for stmt, new in other.before.items():
            self.before[stmt].extend(new)
        for stmt, new in other.after.items():
            self.after[stmt].extend(new)
        self.wraps.extend(other.wraps)
        self.removed |= other.removed

    def emptied_ifs(self, analysis: "Analysis") -> list[cst.If]:
        """``if`` statements (no else, pure test) whose whole body is planned for removal: they go too."""
        out: list[cst.If] = []
        for node in {id(analysis.parent(analysis.parent(s))): analysis.parent(analysis.parent(s))
                     for s in self.replace_stmt if id(s) in self.removed}.values():
            if (isinstance(node, cst.If) and node.orelse is None and isinstance(node.body, cst.IndentedBlock)
                    and all(id(s) in self.removed for s in node.body.body) and is_pure_condition(node.test)):
                out.append(node)
        return out

    def remove(self, stmt: cst.BaseStatement) -> None:
        self.replace_stmt[stmt] = lambda _updated: []
        self.removed.add(id(stmt))

    def commit(self, ctx, analysis: "Analysis") -> None:  # ctx: transplant.rewrite.context.FileContext
        """Schedule every planned edit on ``ctx`` (nothing is applied here)."""
        ctx.lend_parents(analysis.parent)
        for node, factory in self.replace_expr.items():
            ctx.replace(node, factory)
        # Output nodes of a statement's edit, so block edits can find wrap boundaries in updated bodies.
        produced: dict[int, list[cst.CSTNode]] = {}
        boundary = {id(w.first) for w in self.wraps} | {id(w.last) for w in self.wraps}
        statements = {id(s): s for s in list(self.replace_stmt) + list(self.before) + list(self.after)}
        for stmt in list(self.replace_stmt):
            if id(stmt) not in self.removed or not getattr(stmt, "leading_lines", None):
                continue
            suite = analysis.parent(stmt)
            siblings = list(getattr(suite, "body", ()))
            following = [s for s in siblings[siblings.index(stmt) + 1:] if id(s) not in self.removed]
            if following:
                self._inherit[id(following[0])].extend(stmt.leading_lines)
                statements[id(following[0])] = following[0]
        statements.update({id(w.first): w.first for w in self.wraps})
        statements.update({id(w.last): w.last for w in self.wraps})
        suites: dict[int, cst.CSTNode] = {}
        for key, stmt in statements.items():
            ctx.replace(stmt, self._statement_edit(stmt, produced, key in boundary, ctx))
            suite = analysis.parent(stmt)
            if isinstance(suite, (cst.IndentedBlock, cst.Module)):
                suites[id(suite)] = suite
                # The block that owns an ``if`` we may empty must be able to drop that ``if``.
                owner = analysis.parent(suite)
                if isinstance(owner, cst.Else):
                    owner = analysis.parent(owner)
                outer = analysis.parent(owner) if owner is not None else None
                if isinstance(outer, (cst.IndentedBlock, cst.Module)):
                    suites[id(outer)] = outer
        for suite in suites.values():
            wraps = [w for w in self.wraps if analysis.parent(w.first) is suite]
            ctx.replace(suite, self._suite_edit(wraps, produced, ctx))

    def _statement_edit(self, stmt: cst.BaseStatement, produced: dict[int, list[cst.CSTNode]], tag: bool, ctx):
        before = list(self.before.get(stmt, []))
        after = list(self.after.get(stmt, []))
        factory = self.replace_stmt.get(stmt)

        inherited = self._inherit.get(id(stmt), [])

        def edit(updated: cst.CSTNode):
            middle = list(factory(updated)) if factory is not None else [updated]  # type: ignore[arg-type]
            if not middle:
                # Removed statements stay until the enclosing block's edit drops them, so that edits other
                # rules registered on the same statement (an import inserted before it) still run.
                self._doomed.add(updated)
                ctx.plan_drop(updated)
                middle = [updated]
            out = before + middle + after
            if inherited and out:
                out[0] = _with_inherited(out[0], inherited)
            if tag:
                produced[id(stmt)] = out
            if len(out) == 1:
                return out[0]
            return cst.FlattenSentinel(out)

        return edit

    def _suite_edit(self, wraps: list[Wrap], produced: dict[int, list[cst.CSTNode]], ctx):
        def edit(updated: cst.CSTNode):
            body = list(updated.body)  # type: ignore[attr-defined]
            for wrap in wraps:
                first_out = produced.get(id(wrap.first))
                last_out = produced.get(id(wrap.last))
                if not first_out or not last_out:
                    continue  # the boundary statement was removed: nothing left to wrap
                start = _index_of(body, first_out[0])
                stop = _index_of(body, last_out[-1])
                if start is None or stop is None or stop < start:
                    continue
                wrapped = _wrapped(wrap.item, body[start:stop + 1])
                ctx.plan_derived(wrapped.body.body[0], body[start])  # the head lost its leading lines
                body[start:stop + 1] = [wrapped]
            kept: list[cst.BaseStatement] = []
            orphaned: list[cst.EmptyLine] = []
            for stmt in body:
                if stmt in self._doomed:
                    continue  # its leading lines were handed to the next statement when planning
                if self._is_emptied_if(stmt):
                    ctx.plan_drop(stmt)
                    orphaned.extend(stmt.leading_lines)  # type: ignore[attr-defined]
                    continue
                if orphaned:
                    inheriting = stmt
                    stmt = _with_inherited(stmt, orphaned)
                    ctx.plan_derived(stmt, inheriting)
                    orphaned = []
                kept.append(stmt)
            body = kept
            if not body:
                placeholder = cst.SimpleStatementLine(body=[cst.Pass()])
                self._created_pass.add(placeholder)
                body = [placeholder]
            return updated.with_changes(body=body)

        return edit

    def _is_emptied_if(self, stmt: cst.BaseStatement) -> bool:
        """An ``if`` (no else, side-effect-free test) whose whole body we removed: drop it too."""
        return (isinstance(stmt, cst.If) and stmt.orelse is None and isinstance(stmt.body, cst.IndentedBlock)
                and len(stmt.body.body) == 1 and stmt.body.body[0] in self._created_pass
                and is_pure_condition(stmt.test))


class _Identity:
    """A set of nodes by identity that keeps its members alive (so their ids cannot be reused)."""

    def __init__(self) -> None:
        self._members: dict[int, cst.CSTNode] = {}

    def add(self, node: cst.CSTNode) -> None:
        self._members[id(node)] = node

    def __contains__(self, node: object) -> bool:
        return self._members.get(id(node)) is node


def _index_of(body: Sequence[cst.CSTNode], node: cst.CSTNode) -> Optional[int]:
    return next((i for i, n in enumerate(body) if n is node), None)


def _with_inherited(stmt: cst.BaseStatement, inherited: list[cst.EmptyLine]) -> cst.BaseStatement:
    """``stmt`` with the comments (and, if it has no leading lines of its own, blank lines) of a removed one."""
    own = list(getattr(stmt, "leading_lines", ()))
    moved = [line for line in inherited if line.comment is not None or not own]
    return stmt.with_changes(leading_lines=moved + own)


def _wrapped(item: cst.BaseExpression, statements: list[cst.BaseStatement]) -> cst.With:
    head = statements[0]
    leading = list(getattr(head, "leading_lines", ()))
    statements = [head.with_changes(leading_lines=[])] + statements[1:]
    return with_block(item, statements, leading)


# --------------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------------

def alias_binding(alias: cst.ImportAlias, module: str) -> tuple[str, str]:
    """(local name, qualified name it binds) of one alias of ``import x`` / ``from module import x``."""
    imported = dotted_name_of(alias.name)
    qualified = f"{module}.{imported}" if module else imported
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value, qualified
    if module:
        return imported, qualified
    first = imported.split(".")[0]
    return first, first


def dotted_name_of(node: cst.BaseExpression) -> str:
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
    return ".".join(reversed(parts))


def torch_alias(module: cst.Module) -> Optional[str]:
    """The local name bound by a module-level ``import torch`` / ``import torch as th``."""
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    name = dotted_name_of(alias.name)
                    if alias.asname is not None and name == "torch":
                        return alias.asname.name.value  # type: ignore[union-attr]
                    if alias.asname is None and name.split(".")[0] == "torch":
                        return "torch"
    return None


def is_consumed(analysis: Analysis, node: cst.CSTNode, consumed: set[int]) -> bool:
    if id(node) in consumed:
        return True
    return any(id(a) in consumed for a in analysis.ancestors(node))


def catches_import_error(handler: cst.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = {n.value for n in iter_nodes(handler.type) if isinstance(n, cst.Name)}
    return bool(names) and names <= {"ImportError", "ModuleNotFoundError", "Exception"}


def root_name(node: cst.CSTNode) -> str:
    while isinstance(node, cst.Attribute):
        node = node.value
    return node.value if isinstance(node, cst.Name) else ""


def visible(analysis: Analysis, use: cst.CSTNode, import_scope: cst.CSTNode) -> bool:
    """Could an import in ``import_scope`` bind the name at ``use``? (module imports are seen everywhere)."""
    return isinstance(import_scope, cst.Module) or import_scope is analysis.scope_of(use) or any(
        a is import_scope for a in analysis.ancestors(use))


def import_lines(module: cst.Module) -> Iterator[cst.SimpleStatementLine]:
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        for child in node.children:
            if isinstance(child, cst.SimpleStatementLine):
                if any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in child.body):
                    yield child
            elif isinstance(child, (cst.BaseCompoundStatement, cst.IndentedBlock, cst.Else, cst.ExceptHandler,
                                    cst.Finally)):
                stack.append(child)
