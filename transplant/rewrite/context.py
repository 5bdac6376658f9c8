"""Per-file state shared by the rule kinds and the structural passes: detected edits and report rows.

Rules *detect and record*; nothing is changed until every rule and pass has looked at the ORIGINAL
tree. Then one transformer applies the recorded edits bottom-up, and report rows get their line
numbers from positions of the original nodes, so every row refers to the original file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional, Sequence, Union

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from transplant.results import Change, Operation, Unsupported
from transplant.rewrite.locate import Located, locate
from transplant.rewrite.names import FIELD_CACHE, ImportTable, node_fields
from transplant.rules import Rule, RuleSet

# An edit receives the node with its children already rewritten and returns the replacement; a
# statement may also become a FlattenSentinel (several statements) or RemovalSentinel.REMOVE.
Edit = Callable[[cst.CSTNode], Union[cst.CSTNode, cst.FlattenSentinel, cst.RemovalSentinel]]


@dataclass
class _PendingChange:
    node: Optional[cst.CSTNode]
    line: int  # used when node is None (e.g. inserts at the top of the module)
    rule: Rule
    operation: Operation
    message: str
    before: str
    after: str
    after_node: bool = False  # an insert after ``node``: the row's line is the one following it
    severity: Optional[str] = None  # None: the rule's default


@dataclass
class _PendingUnsupported:
    node: Optional[cst.CSTNode]
    line: int
    rule: Rule
    op: str
    tip: str


class FileContext:
    """Everything a rule kind or a structural pass may ask about, or record for, one file."""

    def __init__(self, path: str, module: cst.Module, ruleset: RuleSet, imports: ImportTable,
                 project_modules: frozenset[str] = frozenset(), source_text: str = "") -> None:
        self.path = path
        self.source_text = source_text  # the decoded original (cheap substring questions)
        self.module = module
        self.ruleset = ruleset
        self.options = ruleset.options
        self.imports = imports
        self.project_modules = project_modules
        self.edits: dict[int, list[Edit]] = {}
        self._edit_nodes: dict[int, cst.CSTNode] = {}
        # ids of the ancestors of every edited node: the apply pass skips all other subtrees.
        self.edit_ancestors: set[int] = set()
        self.needs_full_apply = False
        self.changes: list[_PendingChange] = []
        self.unsupported: list[_PendingUnsupported] = []
        self.required_imports: list[tuple[str, Rule]] = []  # (module, rule that needs it)
        self.npu_needed_by: Optional[Rule] = None
        self._positions: Optional[dict[cst.CSTNode, CodeRange]] = None
        self._sparse: dict[int, CodeRange] = {}
        self._parents: Optional[dict[int, cst.CSTNode]] = None
        # Which top-level statement holds each edited or reported node: only those are generated to find
        # positions (``locate``). ``current_top`` is set by the detector while it walks one; a pass may
        # lend its own parent map (``lend_parents``) so that no second one is built.
        self.current_top: Optional[cst.CSTNode] = None
        self._tops: dict[int, cst.CSTNode] = {}
        self._top_unknown = False
        self._edit_top: dict[int, cst.CSTNode] = {}
        self._lent_parent: Optional[Callable[[cst.CSTNode], Optional[cst.CSTNode]]] = None
        # Lines whose small statements are edited: a removed or split small statement is patched as its line.
        self.patch_roots: set[int] = set()
        # Reported nodes as the edits left them (filled while applying): rows sharing a line show them.
        self.final_nodes: dict[int, cst.CSTNode] = {}
        # Structural guard (see engine._Applier): statements an edit means to drop from their block, and
        # rebuilt statements standing for an earlier output. Values keep the nodes alive, so ids stay unique.
        self.planned_drops: dict[int, cst.CSTNode] = {}
        self.derived: dict[int, tuple[cst.CSTNode, cst.CSTNode]] = {}

    # ----------------------------------------------------------------- lookups
    def rule(self, rule_id: str) -> Optional[Rule]:
        """The loaded rule with this id (None if it was not selected)."""
        return self.ruleset.get(rule_id)

    def qualified_name(self, node: cst.BaseExpression) -> Optional[str]:
        """Import-resolved dotted name of a Name/Attribute chain (``tc.synchronize`` -> ``torch.cuda.synchronize``)."""
        return self.imports.qualify(node)

    def code(self, node: cst.CSTNode) -> str:
        """Source text of an original node."""
        return self.module.code_for_node(node)

    def position(self, node: cst.CSTNode) -> CodeRange:
        """Original-file position of an original node (1-based lines, 0-based columns)."""
        if self._positions is None:
            wrapper = MetadataWrapper(self.module, unsafe_skip_copy=True)
            self._positions = dict(wrapper.resolve(PositionProvider))
        return self._positions[node]

    def parent(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        """Parent of an original node (computed once per file, on first use)."""
        if self._parents is None:
            parents: dict[int, cst.CSTNode] = {}
            base = cst.CSTNode
            todo: list[cst.CSTNode] = [self.module]
            while todo:  # a plain walk over node fields: libcst's visitor would rebuild every node
                n = todo.pop()
                for name in FIELD_CACHE.get(type(n)) or node_fields(type(n)):
                    value = getattr(n, name)
                    if isinstance(value, base):
                        parents[id(value)] = n
                        todo.append(value)
                    elif type(value) is tuple or type(value) is list:
                        for item in value:
                            if isinstance(item, base):
                                parents[id(item)] = n
                                todo.append(item)
            self._parents = parents
        return self._parents.get(id(node))

    def lend_parents(self, parent: Callable[[cst.CSTNode], Optional[cst.CSTNode]]) -> None:
        """Use ``parent`` (a pass's parent map of this same original tree) instead of building one."""
        if self._parents is None and self._lent_parent is None:
            self._lent_parent = parent

    def _parent_of(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        if self._parents is None and self._lent_parent is not None:
            return self._lent_parent(node)
        return self.parent(node)

    def _note_top(self, node: Optional[cst.CSTNode]) -> None:
        """Remember which top-level statement holds a reported node (positions are found per statement)."""
        if node is None or id(node) in self._tops:
            return
        top = self._edit_top.get(id(node)) or self.current_top
        if top is None:
            chain = self._chain(node)
            top = chain[1] if len(chain) > 1 and chain[0] is self.module else None
        if top is None:
            self._top_unknown = True
        else:
            self._tops[id(node)] = top

    def _chain(self, node: cst.CSTNode) -> list[cst.CSTNode]:
        """The path from the module down to ``node`` (parents computed or lent)."""
        chain = [node]
        walk = self._parent_of(node)
        while walk is not None:
            chain.append(walk)
            walk = self._parent_of(walk)
        chain.reverse()
        return chain

    # ----------------------------------------------------------------- recording
    def replace(self, node: cst.CSTNode, edit: Edit, ancestors: Optional[Iterable[cst.CSTNode]] = None) -> None:
        """Schedule ``edit`` for an original node. Several edits on one node run in registration order.

        ``ancestors`` (the nodes on the path from the module down to ``node``) lets the apply pass skip
        untouched subtrees; without them the parents are computed.
        """
        self.edits.setdefault(id(node), []).append(edit)
        self._edit_nodes[id(node)] = node
        self.edit_ancestors.add(id(node))
        chain = [*ancestors, node] if ancestors is not None else self._chain(node)
        if not chain or chain[0] is not self.module:
            chain = self._chain(node)
        self.edit_ancestors.update(id(a) for a in chain)
        top = chain[1] if len(chain) > 1 else self.module
        self._edit_top[id(node)] = top
        self._tops[id(node)] = top
        if isinstance(node, cst.BaseSmallStatement) and len(chain) > 1:
            self.patch_roots.add(id(chain[-2]))

    def plan_drop(self, updated: cst.CSTNode) -> None:
        """Declare that a block edit will drop the statement ``updated`` (an apply-time node) on purpose.

        The engine refuses to emit a file in which a block edit dropped a statement nobody declared.
        """
        self.planned_drops[id(updated)] = updated

    def plan_derived(self, new: cst.CSTNode, old: cst.CSTNode) -> None:
        """Declare that the apply-time statement ``new`` replaces ``old`` (same statement, rebuilt)."""
        self.derived[id(new)] = (new, old)

    def record_change(self, node: Optional[cst.CSTNode], rule: Rule, message: str = "", *, before: str = "",
                      after: str = "", operation: Operation = Operation.MODIFY, line: int = 0,
                      after_node: bool = False, severity: Optional[str] = None) -> None:
        """One change_list.csv row for an original node (or an original ``line`` for inserts).

        ``after_node=True``: an insert after ``node``; the row names the line that follows it.
        ``severity`` overrides the rule's default for this row (``safe`` / ``review``).
        """
        self._note_top(node)
        self.changes.append(_PendingChange(node, line, rule, operation, message or rule.message, before, after,
                                           after_node, severity))
        if rule.needs_torch_npu and self.npu_needed_by is None:
            self.npu_needed_by = rule

    def record_unsupported(self, node: Optional[cst.CSTNode], rule: Rule, op: str, tip: str = "", *, line: int = 0) -> None:
        """One unsupported_api.csv row; ``tip`` defaults to the rule's tip."""
        self._note_top(node)
        self.unsupported.append(_PendingUnsupported(node, line, rule, op, tip or rule.tip or rule.message))

    def add_import(self, module: str, rule: Rule) -> None:
        """Ask for ``import <module>`` (added after the first torch import unless already imported)."""
        if all(m != module for m, _ in self.required_imports):
            self.required_imports.append((module, rule))

    # ----------------------------------------------------------------- results
    def has_edits(self) -> bool:
        return bool(self.edits)

    def locate(self) -> Located:
        """Positions of every reported node and the original spans of the outermost edited nodes."""
        targets = {id(r.node) for r in [*self.changes, *self.unsupported] if r.node is not None}
        roots = set(self.edits) | self.patch_roots
        if not targets and not roots:
            return Located(valid_until=len(self.source_text))
        tops = {id(t): t for t in self._tops.values()}
        full = self._top_unknown or id(self.module) in tops
        found = locate(self.module, self.source_text, targets, roots, tops.values(), full)
        if not full and (not targets <= set(found.ranges) or found.seen != roots):
            found = locate(self.module, self.source_text, targets, roots, (), True)  # a guess was wrong
        self._sparse = found.ranges
        return found

    def row_node_ids(self) -> set[int]:
        """Ids of the original nodes that change rows are anchored on."""
        return {id(c.node) for c in self.changes if c.node is not None}

    def finish_rows(self, located: Optional[Located] = None) -> tuple[list[Change], list[Unsupported]]:
        """Rows with original-file positions, sorted by position.

        One edit, one row: a DELETE inside a larger DELETE (a removed ``try`` inside a removed ``if``) is
        not repeated. Several MODIFY rows on one line each show their node as the file really ends up
        (so that their Before/After add up), when the edits have been applied.
        """
        if located is None:
            self.locate()
        changes: list[Change] = []
        placed = [(c, *self._where(c.node, c.line)) for c in self.changes]
        per_line: dict[int, set[int]] = {}
        for c, line, _end, _col in placed:
            if c.operation is Operation.MODIFY and c.node is not None and not c.after_node:
                per_line.setdefault(line, set()).add(id(c.node))
        deletions = [(line, end, c) for c, line, end, _col in placed if c.operation is Operation.DELETE and c.node is not None]
        for c, line, end, col in placed:
            if c.operation is Operation.DELETE and any(
                    other is not c and first <= line and end <= last and (first, last) != (line, end)
                    for first, last, other in deletions):
                continue  # already inside a larger deletion
            before, after = c.before, c.after
            if c.after_node:
                line = end = end + 1
                col = 1
            elif (isinstance(c.node, cst.Call) and id(c.node) in self.edits and len(per_line.get(line, ())) > 1
                  and id(c.node) in self.final_nodes):
                # a call rewritten by its own rule and, inside it, by another (its name renamed)
                before = _first_line(self.code(c.node))  # type: ignore[arg-type]
                after = _first_line(self.module.code_for_node(self.final_nodes[id(c.node)]))
            changes.append(Change(rule=c.rule.id, line=line, end_line=end, column=col, operation=c.operation,
                                  message=c.message, severity=c.severity or c.rule.severity, before=before,
                                  after=after))
        unsupported: list[Unsupported] = []
        for u in self.unsupported:
            line, end, col = self._where(u.node, u.line)
            unsupported.append(Unsupported(rule=u.rule.id, line=line, end_line=end, op=u.op, tip=u.tip, column=col))
        changes.sort(key=lambda r: (r.line, r.column, r.rule))
        unsupported.sort(key=lambda r: (r.line, r.column, r.rule))
        return _merge_same_edit(_dedupe(changes)), _dedupe(unsupported)

    def _where(self, node: Optional[cst.CSTNode], line: int) -> tuple[int, int, int]:
        if node is None:
            return line, line, 1
        pos = self._sparse.get(id(node)) or self.position(node)
        end = pos.end.line
        if pos.end.column == 0 and end > pos.start.line:
            end -= 1  # a compound statement's range ends after its last newline, at column 0 of the next line
        return pos.start.line, end, pos.start.column + 1


def _merge_same_edit(rows: list[Change]) -> list[Change]:
    """One edit, one row: rows of one rule that describe the same edit (an import statement renamed once
    for two of its names) become one row with both messages."""
    out: list[Change] = []
    index: dict[tuple, int] = {}  # type: ignore[type-arg]
    for row in rows:
        key = (row.rule, row.line, row.column, row.operation, row.before, row.after)
        if key in index and row.operation is Operation.MODIFY:
            first = out[index[key]]
            out[index[key]] = replace(first, message=f"{first.message}; {row.message}")
            continue
        index[key] = len(out)
        out.append(row)
    return out


def _first_line(text: str, limit: int = 160) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _dedupe(rows: Sequence) -> list:  # type: ignore[type-arg]
    seen = set()
    out = []
    for row in rows:
        if row not in seen:
            seen.add(row)
            out.append(row)
    return out
