"""One combined traversal per file: every rule kind detects and records; then one pass applies.

Order per file:
1. ``ImportTable`` from the statements (cheap; no scope analysis).
2. One ``_Detector`` traversal. It keeps the ancestor stack and dispatches each node type to the kind
   handlers that asked for it; a pure ``a.b.c`` chain is handled as one unit and not descended into.
3. Kind handlers decide what needs the whole file (data flow of device variables, ``is_cuda`` guards).
4. Structural passes (``transplant.rewrite.passes``) look at the original tree and record their edits.
5. The ``import`` kind adds ``import torch_npu`` / requested imports.
6. Only if something was recorded: positions of the reported nodes (original file) and one
   ``_Applier`` traversal that visits only the ancestors of edited nodes.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import libcst as cst

from transplant.rewrite import passes
from transplant.rewrite.arguments import ArgumentRules
from transplant.rewrite.context import FileContext
from transplant.rewrite.edits import Edit as TextEdit
from transplant.rewrite.imports import ImportEdits
from transplant.rewrite.literals import FlowFacts, LiteralSlots
from transplant.rewrite.locate import Located, generate
from transplant.rewrite.method import MethodRenames
from transplant.rewrite.names import FIELD_CACHE, ImportTable, dotted_name, node_fields
from transplant.rewrite.qualnames import QualifiedNames
from transplant.rules import RuleSet

Handler = Callable[..., Optional[bool]]


class _Detector:
    """Walks the tree once (without libcst's rebuild-as-you-visit machinery), dispatching node types to
    the kind handlers and keeping the ancestor stack."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        self.stack: list[cst.CSTNode] = []
        self.names = QualifiedNames(ctx)
        self.methods = MethodRenames(ctx)
        self.literals = LiteralSlots(ctx)
        self.arguments = ArgumentRules(ctx, self.names.index)
        self.dispatch: dict[type, Handler] = {
            cst.Attribute: self._attribute,
            cst.Name: self._name,
            cst.Import: self._import,
            cst.ImportFrom: self._import_from,
            cst.Call: self._call,
            cst.SimpleString: self._string,
            cst.FormattedString: self._fstring,
            cst.If: self._if,
            cst.FunctionDef: self._funcdef,
            cst.Param: self._param,
            cst.Decorator: self._decorator,
        }

    def walk(self, node: cst.CSTNode) -> None:
        """Depth-first, children in field order; a handler returning False prunes the subtree."""
        dispatch = self.dispatch
        stack = self.stack
        base = cst.CSTNode
        fields = FIELD_CACHE

        def visit(n: cst.CSTNode) -> None:
            handler = dispatch.get(type(n))
            if handler is not None and handler(n) is False:
                return
            stack.append(n)
            names = fields.get(type(n)) or node_fields(type(n))
            for name in names:
                value = getattr(n, name)
                if isinstance(value, base):
                    visit(value)
                elif type(value) is tuple or type(value) is list:
                    for item in value:
                        if isinstance(item, base):
                            visit(item)
            stack.pop()

        if isinstance(node, cst.Module):
            # rows recorded while a top-level statement is walked belong to it (see FileContext.locate)
            stack.append(node)
            for item in node.body:
                self.ctx.current_top = item
                visit(item)
            self.ctx.current_top = None
            stack.pop()
        else:
            visit(node)

    # ------------------------------------------------------------ handlers
    def _attribute(self, node: cst.Attribute) -> Optional[bool]:
        stack = self.stack
        parent = stack[-1]
        if isinstance(parent, cst.Attribute) and parent.value is node:
            return None  # inside a chain whose top was handled
        self.methods.attribute(node, stack)
        dotted = dotted_name(node)
        if dotted is None:
            return None
        self.names.chain(node, dotted, stack)
        return False  # a pure chain holds nothing else to look at

    def _name(self, node: cst.Name) -> Optional[bool]:
        parent = self.stack[-1]
        if isinstance(parent, cst.Attribute) or (isinstance(parent, cst.Arg) and parent.keyword is node):
            return None
        if isinstance(parent, (cst.FunctionDef, cst.ClassDef, cst.Param, cst.AssignTarget, cst.AsName)):
            return None
        self.names.name(node, self.stack)
        return None

    def _import(self, node: cst.Import) -> bool:
        self.names.import_(node, self.stack)
        return False

    def _import_from(self, node: cst.ImportFrom) -> bool:
        self.names.import_from(node, self.stack)
        return False

    def _call(self, node: cst.Call) -> None:
        func = node.func
        qual = self.ctx.imports.qualify(func) if isinstance(func, (cst.Name, cst.Attribute)) else None
        self.literals.call(node, self.stack, qual)
        self.arguments.call(node, self.stack, qual)

    def _string(self, node: cst.SimpleString) -> None:
        self.literals.string(node, self.stack)

    def _fstring(self, node: cst.FormattedString) -> None:
        self.literals.fstring(node, self.stack)

    def _if(self, node: cst.If) -> None:
        self.literals.if_chain(node, self.stack)

    def _funcdef(self, node: cst.FunctionDef) -> None:
        self.methods.definition(node.name.value)

    def _param(self, node: cst.Param) -> None:
        self.methods.definition(node.name.value)
        self.literals.param(node, self.stack)

    def _decorator(self, node: cst.Decorator) -> None:
        self.arguments.decorator(node, self.stack)


class LostStatement(Exception):
    """A block edit dropped a statement that no edit meant to delete (``node`` is the original)."""

    def __init__(self, node: cst.CSTNode) -> None:
        super().__init__("a statement the plan did not delete would disappear")
        self.node = node


_Result = Union[cst.CSTNode, cst.RemovalSentinel, cst.FlattenSentinel]


class _Applier(cst.CSTTransformer):
    """Applies recorded edits bottom-up, visiting only ancestors of edited nodes.

    Structural guard: when a block (module or indented block) has an edit of its own, every statement
    its children produced must still be in the block afterwards (possibly inside a new compound
    statement, e.g. a ``with`` wrapper), unless an edit declared the drop (``FileContext.plan_drop``).
    Otherwise :class:`LostStatement` is raised and the file is not emitted.
    """

    def __init__(self, ctx: FileContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.edits = ctx.edits
        self.keep = None if ctx.needs_full_apply else ctx.edit_ancestors
        # original statement id -> (original, what its edits produced); strong refs keep ids unique
        self.produced: dict[int, tuple[cst.CSTNode, list[cst.CSTNode]]] = {}
        self.row_nodes = ctx.row_node_ids()

    def on_visit(self, node: cst.CSTNode) -> bool:
        return self.keep is None or id(node) in self.keep

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> _Result:
        edits = self.edits.get(id(original_node))
        result: _Result = updated_node
        for edit in edits or ():
            if isinstance(result, cst.RemovalSentinel):
                break  # removed: later edits on the same node no longer apply
            result = edit(result)  # a FlattenSentinel is passed on (see passes.py)
        if id(original_node) in self.row_nodes and isinstance(result, cst.CSTNode):
            self.ctx.final_nodes[id(original_node)] = result  # what a row's node really became
        if edits and isinstance(original_node, (cst.Module, cst.IndentedBlock)) and isinstance(result, cst.CSTNode):
            self._check_block(original_node, result)
        if isinstance(original_node, cst.BaseStatement):
            if isinstance(result, cst.FlattenSentinel):
                out = list(result.nodes)
            elif isinstance(result, cst.CSTNode):
                out = [result]
            else:
                out = []
            self.produced[id(original_node)] = (original_node, out)
        return result

    def _check_block(self, original: cst.CSTNode, result: cst.CSTNode) -> None:
        expected: dict[int, cst.CSTNode] = {}  # produced node id -> original statement
        for child in original.body:  # type: ignore[attr-defined]
            entry = self.produced.get(id(child))
            for node in entry[1] if entry is not None else ():
                expected[id(node)] = child
        present: set[int] = set()
        derived = self.ctx.derived
        todo = list(result.body)  # type: ignore[attr-defined]
        while todo:
            node = todo.pop()
            key = id(node)
            while key in derived and derived[key][0] is node and key not in expected:
                node = derived[key][1]
                key = id(node)
            if key in expected:
                present.add(key)
            elif isinstance(node, cst.BaseCompoundStatement) and isinstance(node.body, cst.IndentedBlock):
                todo.extend(node.body.body)  # a wrapper an edit built around earlier statements
        drops = self.ctx.planned_drops
        for key, child in expected.items():
            if key not in present and key not in drops:
                raise LostStatement(child)


def analyse(path: str, module: cst.Module, ruleset: RuleSet, project_modules: frozenset[str] = frozenset(),
            source_text: str = "", flow: Optional[FlowFacts] = None) -> FileContext:
    """Detect every edit and row for ``module`` (nothing applied yet)."""
    ctx = FileContext(path, module, ruleset, ImportTable.from_module(module), project_modules, source_text)
    detector = _Detector(ctx)
    if flow is not None:
        detector.literals.use_flow(flow)
    detector.walk(module)
    detector.names.finish()
    detector.methods.finish()
    detector.literals.finish()
    for run_pass, rules in passes.passes_for(list(ruleset), source_text):
        run_pass(module, ctx, rules)
    ImportEdits(ctx).finish()
    return ctx


def apply(ctx: FileContext, located: Located) -> list[TextEdit]:
    """One text edit per outermost edited node: only the replaced nodes are generated.

    Raises :class:`LostStatement` (structural guard) and ``ValueError`` when an edit's result cannot
    stand where the node was (e.g. an expression an edit tried to remove).
    """
    out: list[TextEdit] = []
    for span in located.spans:
        result = span.node.visit(_Applier(ctx))
        if isinstance(result, cst.RemovalSentinel):
            text = ""
        elif isinstance(result, cst.FlattenSentinel):
            if not isinstance(span.node, cst.BaseStatement):
                raise ValueError(f"an edit split a {type(span.node).__name__}, which is not a statement")
            text = "".join(generate(ctx.module, n, span.indent) for n in result.nodes)
        else:
            text = generate(ctx.module, result, span.indent)
        if isinstance(result, cst.RemovalSentinel) and not isinstance(span.node, cst.BaseStatement):
            raise ValueError(f"an edit removed a {type(span.node).__name__}, which is not a statement")
        out.append(TextEdit(span.start, span.end, text))
    return out


__all__ = ["analyse", "apply", "LostStatement"]
