"""Whole-project facts built once before the worker pool: which values cross file boundaries as devices.

The in-file pass (``rewrite/literals.py``) follows a ``'cuda'`` literal into the device slots of its own
file. What it cannot see is where a value goes once it leaves the file:

* into a **parameter** of a project function or class (``Seq2Seq(enc, dec, 'cuda')`` whose ``__init__``
  stores ``device`` and later calls ``.to(self.device)``);
* from a **module-level name** of one module (``config.py: DEVICE = 'cuda'``) into a slot of another
  (``x.to(config.DEVICE)``).

This module answers both with CPython's ``ast`` (about ten times cheaper than a libcst parse) over every
Python file of the project, resolving imports (absolute, relative, package re-exports) itself. jedi
would resolve the same calls, but it infers per call site and costs milliseconds each; here one walk per
file gives every callable's device parameters to every worker at once. Every inference is bounded
(call depth, file size, total time) and degrades to "not a device".

The result, :class:`ProjectIndex`, is immutable and picklable; workers ask it for a file's
:class:`transplant.rewrite.literals.FlowFacts` with :meth:`ProjectIndex.flow_for`.
"""

from __future__ import annotations

import ast
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

# Bounds: a file larger than this is not indexed; the whole index gives up after MAX_SECONDS.
MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_SECONDS = 30.0
MAX_DEPTH = 4          # callee -> callee hops when a parameter is passed on
MAX_ALIAS_HOPS = 6     # re-export chains (package __init__ importing from submodules)

DOMAINS = ("device", "backend")


@dataclass(frozen=True)
class SlotFacts:
    """The device/backend slots of the rule set, in the form the index needs (built from the rules)."""

    device_keywords: frozenset[str] = frozenset()
    device_positional: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    device_methods: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    device_callable_keywords: Mapping[str, frozenset[str]] = field(default_factory=dict)
    device_from: str = "cuda"
    backend_keywords: frozenset[str] = frozenset()
    backend_positional: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    backend_values: frozenset[str] = frozenset({"nccl"})

    @classmethod
    def from_ruleset(cls, ruleset: Iterable[object]) -> "SlotFacts":
        """Collect the slots of the first device rule and every backend rule."""
        from transplant.rules import BackendRule, DeviceRule

        dev = next((r for r in ruleset if isinstance(r, DeviceRule)), None)
        backends = [r for r in ruleset if isinstance(r, BackendRule)]
        kwargs: dict[str, object] = {}
        if dev is not None:
            kwargs.update(device_keywords=frozenset(dev.keywords), device_positional=dict(dev.positional),
                          device_methods=dict(dev.methods),
                          device_callable_keywords={k: frozenset(v) for k, v in dev.callable_keywords.items()},
                          device_from=dev.from_type)
        if backends:
            positional: dict[str, tuple[int, ...]] = {}
            for r in backends:
                for k, v in r.positional.items():
                    positional.setdefault(k, tuple(v))
            kwargs.update(backend_keywords=frozenset(k for r in backends for k in r.keywords),
                          backend_positional=positional,
                          backend_values=frozenset(k for r in backends for k in r.map))
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ParamSlot:
    """A parameter of a project callable that reaches a device or backend slot."""

    domain: str             # "device" | "backend"
    param: str
    index: Optional[int]    # position at a call site (``self`` not counted); None: keyword-only
    why: str                # "reaches .to() at models/seq.py:12 through self.device" (for the change row)


@dataclass(frozen=True)
class CallableSlots:
    """A project function or class (its ``__init__``) and its device/backend parameters."""

    qualname: str           # module.Name, e.g. ``mmsa.models.seq.Seq2Seq``
    path: str               # file that defines it (relative to SRC)
    line: int
    params: tuple[ParamSlot, ...]
    positional: tuple[str, ...] = ()   # every positional parameter name, in order (``self`` dropped)

    def slot_for(self, index: Optional[int], keyword: Optional[str]) -> Optional[ParamSlot]:
        """The slot a positional ``index`` or a ``keyword`` argument lands in, if any."""
        for slot in self.params:
            if keyword is not None and slot.param == keyword:
                return slot
            if keyword is None and index is not None and slot.index == index:
                return slot
        return None

    @property
    def short(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


def merge_callables(callees: list[CallableSlots], label: str) -> Optional[CallableSlots]:
    """One view of "any of these callables" (``MODELS[name](...)``): a positional slot is a device
    only where one callee has it and every other callee either has the same slot or no parameter
    there; a keyword slot only where no callee has a same-named parameter of another kind."""
    if not callees:
        return None
    params: list[ParamSlot] = []
    seen: set[tuple[Optional[int], str]] = set()
    for c in callees:
        for slot in c.params:
            ok = True
            for other in callees:
                if other is c:
                    continue
                there = other.slot_for(slot.index, None) if slot.index is not None else None
                if slot.index is not None and slot.index < len(other.positional) and (
                        there is None or there.domain != slot.domain):
                    ok = False
                named = other.slot_for(None, slot.param)
                if slot.param in other.positional and (named is None or named.domain != slot.domain):
                    ok = False
            key = (slot.index, slot.param)
            if ok and key not in seen:
                seen.add(key)
                params.append(ParamSlot(slot.domain, slot.param, slot.index, f"{c.short}: {slot.why}"))
    if not params:
        return None
    return CallableSlots(label, callees[0].path, callees[0].line, tuple(params))


@dataclass(frozen=True)
class ProjectIndex:
    """What crosses file boundaries, for the whole project (see the module docstring)."""

    module_of_path: Mapping[str, str] = field(default_factory=dict)     # rel path -> module name
    aliases: Mapping[str, str] = field(default_factory=dict)            # module name (any suffix) -> canonical
    reexports: Mapping[str, str] = field(default_factory=dict)          # canonical mod.Name -> target dotted name
    callables: Mapping[str, CallableSlots] = field(default_factory=dict)
    exported: Mapping[str, Mapping[tuple[str, str], str]] = field(default_factory=dict)
    # exported[rel path][(domain, name)] = why: a module-level name (or attribute) of that file is used as
    # a device/backend in another file
    imports: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # module -> local -> absolute
    defined: Mapping[str, frozenset[str]] = field(default_factory=dict)     # module -> top-level names
    tables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # mod.NAME -> {key: callable}
    arity: Mapping[str, tuple[str, ...]] = field(default_factory=dict)      # callable -> positional names
    unsettled: frozenset[str] = frozenset()  # callables still being learnt when the depth bound hit
    complete: bool = True   # False when a bound stopped the indexing early
    seconds: float = 0.0

    # -------------------------------------------------------------- lookups
    def canonical_module(self, dotted: str) -> Optional[str]:
        return self.aliases.get(dotted)

    def resolve(self, dotted: Optional[str]) -> Optional[CallableSlots]:
        """The project callable a dotted name (as imported, e.g. ``mmsa.models.Seq2Seq``) refers to."""
        hops = 0
        while dotted and hops <= MAX_ALIAS_HOPS:
            hops += 1
            found = self._split(dotted)
            if found is None:
                return None
            module, rest = found
            key = f"{module}.{rest}" if rest else module
            if key in self.callables:
                return self.callables[key]
            if key in self.reexports:
                dotted = self.reexports[key]
                continue
            return None
        return None

    def absolute_in(self, module: Optional[str], dotted: str) -> str:
        """``dotted`` as written inside ``module``, made absolute through that module's imports (relative
        ones included) and its own top-level definitions; unchanged when neither binds its head."""
        if module is None:
            return dotted
        head, _, rest = dotted.partition(".")
        target = self.imports.get(module, {}).get(head)
        if target is not None:
            return f"{target}.{rest}" if rest else target
        if head in self.defined.get(module, ()):
            return f"{module}.{dotted}" if module else dotted
        return dotted

    def resolve_in(self, module: Optional[str], dotted: Optional[str]) -> Optional[CallableSlots]:
        """The project callable ``dotted`` names when written inside ``module``."""
        return self.resolve(self.absolute_in(module, dotted)) if dotted else None

    def undecided_in(self, module: Optional[str], dotted: Optional[str]) -> Optional[str]:
        """The project callable ``dotted`` names (as in :meth:`resolve_in`) when the index could not
        finish analysing it (a bound stopped it); None when it is settled or not a project callable."""
        if not dotted:
            return None
        full = self.absolute_in(module, dotted)
        for _hop in range(MAX_ALIAS_HOPS):
            found = self._split(full)
            if found is None:
                return None
            mod, rest = found
            key = f"{mod}.{rest}"
            if key in self.arity or (not self.complete and rest in self.defined.get(mod, ())):
                return key if (not self.complete or key in self.unsettled) else None
            if key not in self.reexports:
                return None
            full = self.reexports[key]
        return None

    def resolve_table_in(self, module: Optional[str], dotted: Optional[str], key: Optional[str]
                         ) -> Optional[CallableSlots]:
        """The callable ``TABLE[key](...)`` calls, where ``TABLE`` is a module-level dict of project
        callables (``MODELS = {"mctn": MCTN, ...}``); any of them when ``key`` is not a literal."""
        if not dotted:
            return None
        full = self.absolute_in(module, dotted)
        table = None
        for _hop in range(MAX_ALIAS_HOPS):
            found = self._split(full)
            if found is None:
                return None
            mod, rest = found
            table = self.tables.get(f"{mod}.{rest}")
            if table is not None or f"{mod}.{rest}" not in self.reexports:
                break
            full = self.reexports[f"{mod}.{rest}"]
        if not table:
            return None
        if key is not None:
            return self.callables.get(table.get(key, ""))
        callees = [self.callables[q] for q in sorted(set(table.values())) if q in self.callables]
        if len(callees) < len(set(table.values())):
            # a callable without device parameters: positions it has are not devices for it
            plain = [CallableSlots(q, "", 0, (), self.arity.get(q, ())) for q in sorted(set(table.values()))
                     if q not in self.callables]
            callees += plain
        return merge_callables(callees, f"{dotted}[...]")

    def _split(self, dotted: str) -> Optional[tuple[str, str]]:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            canonical = self.aliases.get(".".join(parts[:cut]))
            if canonical is not None:
                return canonical, ".".join(parts[cut:])
        return None

    def flow_for(self, rel: str) -> "object":
        """The FlowFacts a worker hands to ``rewrite_source`` for the file ``rel``."""
        from transplant.rewrite.literals import FlowFacts

        facts = FlowFacts()
        exported = self.exported.get(rel, {})
        for (domain, name), why in exported.items():
            (facts.device_names if domain == "device" else facts.backend_names).add(name)
            facts.notes[(domain, name)] = why
        facts.project = self
        facts.module = self.module_of_path.get(rel)
        return facts


# ------------------------------------------------------------------------------------------ building


def module_name(rel: str) -> str:
    """``pkg/sub/mod.py`` -> ``pkg.sub.mod``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = rel[:-3].split("/") if rel.endswith(".py") else rel.split("/")
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class _Module:
    """One parsed file: its imports, top-level definitions and names."""

    def __init__(self, rel: str, tree: ast.Module) -> None:
        self.rel = rel
        self.name = module_name(rel)
        self.is_package = rel.endswith("__init__.py")
        self.tree = tree
        self.imports: dict[str, str] = {}       # local name -> absolute dotted target
        self.functions: dict[str, ast.AST] = {}  # top-level def / class
        self.assigned: set[str] = set()         # top-level assigned names
        self.tables: dict[str, dict[str, ast.AST]] = {}  # NAME = {"key": Callable, ...}
        # the nodes the analysis needs (single-target assignments, calls, comparisons), collected in one
        # walk: top-level def/class name (None: module level) -> function body (None: elsewhere) -> nodes
        self.owned: dict[Optional[str], dict[Optional[ast.AST], list[ast.AST]]] = {}
        self._collect()

    def _package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]

    def _absolute(self, node: ast.ImportFrom) -> Optional[str]:
        if not node.level:
            return node.module or ""
        base = self._package().split(".") if self._package() else []
        if node.level - 1 > len(base):
            return None
        base = base[: len(base) - (node.level - 1)]
        if node.module:
            base.append(node.module)
        return ".".join(base)

    def _gather(self, root: ast.AST, owner: Optional[str], body: Optional[ast.AST]) -> None:
        bucket = self.owned.setdefault(owner, {}).setdefault(body, [])
        wanted = (ast.Call, ast.Compare)
        for node in ast.walk(root):
            if isinstance(node, wanted) or (isinstance(node, ast.Assign) and len(node.targets) == 1):
                bucket.append(node)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                self._import(node)

    def _collect(self) -> None:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.ClassDef):
                for b in stmt.body:
                    method = b if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
                    self._gather(b, stmt.name, method)
                for part in (*stmt.bases, *stmt.keywords, *stmt.decorator_list):
                    self._gather(part, None, None)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._gather(stmt, stmt.name, stmt)
            else:
                self._gather(stmt, None, None)
        self._top_level()

    def _import(self, node: ast.AST) -> None:
        if True:
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        self.imports[a.asname] = a.name
                    else:
                        top = a.name.split(".")[0]
                        self.imports.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(node)
                if base is None:
                    return
                for a in node.names:
                    if a.name == "*":
                        continue
                    self.imports[a.asname or a.name] = f"{base}.{a.name}" if base else a.name

    def _top_level(self) -> None:
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign):
                if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and isinstance(stmt.value, ast.Dict):
                    entries = {_str_value(k): v for k, v in zip(stmt.value.keys, stmt.value.values)
                               if k is not None and isinstance(v, (ast.Name, ast.Attribute))}
                    if entries and None not in entries and len(entries) == len(stmt.value.keys):
                        self.tables[stmt.targets[0].id] = entries  # type: ignore[assignment]
                for t in stmt.targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            self.assigned.add(n.id)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                self.assigned.add(stmt.target.id)

    def qualify(self, expr: ast.AST) -> Optional[str]:
        """Dotted name of a Name/Attribute chain with its first component resolved through imports,
        or through this module's own top-level definitions."""
        parts: list[str] = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        head = expr.id
        if head in self.imports:
            base = self.imports[head]
        elif head in self.functions or head in self.assigned:
            base = f"{self.name}.{head}" if self.name else head
        else:
            base = head
        return ".".join([base, *reversed(parts)])


def _call_args(call: ast.Call) -> tuple[list[ast.AST], dict[str, ast.AST]]:
    positional: list[ast.AST] = []
    for a in call.args:
        if isinstance(a, ast.Starred):
            break  # positions after *args are unknown
        positional.append(a)
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    return positional, keywords


def _str_value(node: ast.AST) -> Optional[str]:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Builder:
    def __init__(self, modules: list[_Module], slots: SlotFacts, deadline: float) -> None:
        self.modules = modules
        self.slots = slots
        self.deadline = deadline
        self.complete = True
        self.aliases: dict[str, str] = {}
        self.reexports: dict[str, str] = {}
        self.by_name = {m.name: m for m in modules}
        self._aliases()
        self.callables: dict[str, CallableSlots] = {}
        self.exported: dict[str, dict[tuple[str, str], str]] = {}
        self.arity: dict[str, tuple[str, ...]] = {}
        self._static: dict[ast.Call, tuple] = {}  # the trees stay alive while the index is built
        self.unsettled: set[str] = set()

    def tables(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for m in self.modules:
            for name, entries in m.tables.items():
                resolved = {key: self._canonical(m.qualify(value) or "") for key, value in entries.items()}
                if all(resolved.values()):
                    out[f"{m.name}.{name}"] = resolved
        return out

    # ---------------------------------------------------------------- module names
    def _aliases(self) -> None:
        """Every dotted suffix of a module's path names it, unless two modules share that suffix
        (scripts are often run from their own folder, so ``models.seq`` and ``seq`` both import it)."""
        claims: dict[str, set[str]] = {}
        for m in self.modules:
            parts = m.name.split(".") if m.name else []
            for start in range(len(parts)):
                claims.setdefault(".".join(parts[start:]), set()).add(m.name)
        for alias, owners in claims.items():
            if alias in self.by_name:
                self.aliases[alias] = alias
            elif len(owners) == 1:
                self.aliases[alias] = next(iter(owners))
        for m in self.modules:
            for local, target in m.imports.items():
                if local not in m.functions and m.name:
                    self.reexports.setdefault(f"{m.name}.{local}", target)

    def _split(self, dotted: str) -> Optional[tuple[_Module, str]]:
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            canonical = self.aliases.get(".".join(parts[:cut]))
            if canonical is not None:
                return self.by_name[canonical], ".".join(parts[cut:])
        return None

    def resolve_def(self, dotted: Optional[str]) -> Optional[tuple[_Module, ast.AST]]:
        hops = 0
        while dotted and hops <= MAX_ALIAS_HOPS:
            hops += 1
            found = self._split(dotted)
            if found is None:
                return None
            module, rest = found
            if rest in module.functions:
                return module, module.functions[rest]
            key = f"{module.name}.{rest}"
            if key in self.reexports:
                dotted = self.reexports[key]
                continue
            return None
        return None

    def resolve_value(self, dotted: Optional[str]) -> Optional[tuple[_Module, str]]:
        """(module, ``name`` or ``name.attr...``) for a dotted use of another module's top-level value."""
        hops = 0
        while dotted and hops <= MAX_ALIAS_HOPS:
            hops += 1
            found = self._split(dotted)
            if found is None:
                return None
            module, rest = found
            if not rest:
                return None
            head = rest.split(".")[0]
            if head in module.assigned:
                return module, rest
            key = f"{module.name}.{head}"
            if key in self.reexports and head not in module.functions:
                tail = rest[len(head):]
                dotted = self.reexports[key] + tail
                continue
            return None
        return None

    # ---------------------------------------------------------------- slots of a call
    def call_slots(self, module: _Module, call: ast.Call) -> list[tuple[str, ast.AST, str]]:
        """(domain, argument expression, description of the slot) for each device/backend argument."""
        cached = self._static.get(call)
        if cached is None:
            cached = self._static[call] = self._static_slots(module, call)
        static, callee_key, positional, keywords = cached
        callee = self.callables.get(callee_key) if callee_key else None
        if callee is None:
            return static
        out = list(static)
        for slot in callee.params:
            value = keywords.get(slot.param)
            if value is None and slot.index is not None and slot.index < len(positional):
                value = positional[slot.index]
            if value is not None:
                out.append((slot.domain, value, f"{callee.short}({slot.param}), which {slot.why}"))
        return out

    def callee_key(self, module: _Module, call: ast.Call) -> str:
        cached = self._static.get(call)
        if cached is None:
            cached = self._static[call] = self._static_slots(module, call)
        return cached[1]

    def _static_slots(self, module: _Module, call: ast.Call
                      ) -> tuple[list[tuple[str, ast.AST, str]], str, list[ast.AST], dict[str, ast.AST]]:
        """The slots given by the rules alone, and the project callable the call resolves to ("" if none)."""
        s = self.slots
        out: list[tuple[str, ast.AST, str]] = []
        qual = module.qualify(call.func)
        positional, keywords = _call_args(call)
        where = f"{module.rel}:{call.lineno}"
        for kw, value in keywords.items():
            if kw in s.device_keywords or kw in s.device_callable_keywords.get(qual or "", ()):
                out.append(("device", value, f"{kw}= of {qual or 'a call'} at {where}"))
            elif kw in s.backend_keywords:
                out.append(("backend", value, f"{kw}= of {qual or 'a call'} at {where}"))
        if qual:
            for i in s.device_positional.get(qual, ()):
                if i < len(positional):
                    out.append(("device", positional[i], f"{qual} at {where}"))
            for i in s.backend_positional.get(qual, ()):
                if i < len(positional):
                    out.append(("backend", positional[i], f"{qual} at {where}"))
        if isinstance(call.func, ast.Attribute) and (qual is None or qual.split(".")[0] not in module.imports):
            for i in s.device_methods.get(call.func.attr, ()):
                if i < len(positional):
                    out.append(("device", positional[i], f".{call.func.attr}() at {where}"))
        return out, (self._canonical(qual) if qual else ""), positional, keywords

    def _canonical(self, qual: str) -> str:
        found = self.resolve_def(qual)
        if found is None:
            return ""
        module, node = found
        return f"{module.name}.{node.name}"  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- callables
    def build_callables(self) -> None:
        defs: list[tuple[_Module, ast.AST]] = [(m, n) for m in self.modules for n in m.functions.values()]
        callees: dict[str, set[str]] = {}
        todo = defs
        for _round in range(MAX_DEPTH):
            changed: set[str] = set()
            for module, node in todo:
                if time.monotonic() > self.deadline:
                    self.complete = False
                    return
                key = f"{module.name}.{node.name}"  # type: ignore[attr-defined]
                found = self._analyse_callable(module, node)
                if _round == 0:
                    callees[key] = {self.callee_key(module, n) for nodes in module.owned.get(node.name, {}).values()  # type: ignore[attr-defined]
                                    for n in nodes if isinstance(n, ast.Call)} - {""}
                if found is not None and self.callables.get(key) != found:
                    self.callables[key] = found
                    changed.add(key)
            if not changed:
                break
            # only callables that call one whose slots just changed can learn more
            todo = [(m, n) for m, n in defs if callees.get(f"{m.name}.{n.name}", set()) & changed]  # type: ignore[attr-defined]
        else:
            # still learning at the bound: these, and every callable that (transitively) calls one
            unsettled = {f"{m.name}.{n.name}" for m, n in todo}  # type: ignore[attr-defined]
            grew = True
            while grew:
                more = {key for key, called in callees.items() if key not in unsettled and called & unsettled}
                grew = bool(more)
                unsettled |= more
            self.unsettled = unsettled

    def _analyse_callable(self, module: _Module, node: ast.AST) -> Optional[CallableSlots]:
        if isinstance(node, ast.ClassDef):
            init = next((b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and b.name == "__init__"), None)
            if init is None:
                return None
            signature = init
            bodies = [b for b in node.body if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))]
            drop_first = True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            signature, bodies, drop_first = node, [node], False
        else:
            return None
        args = signature.args
        positional = [a.arg for a in (args.posonlyargs + args.args)]
        if drop_first and positional:
            positional = positional[1:]
        self.arity[f"{module.name}.{node.name}"] = tuple(positional)  # type: ignore[attr-defined]
        names = set(positional) | {a.arg for a in args.kwonlyargs}
        if not names:
            return None
        self_name = None
        if drop_first and (signature.args.posonlyargs + signature.args.args):
            self_name = (signature.args.posonlyargs + signature.args.args)[0].arg
        owned = module.owned.get(node.name, {})  # type: ignore[attr-defined]
        # aliases: local names and self attributes assigned from a parameter
        local: dict[str, str] = {}
        attrs: dict[str, str] = {}
        for body in bodies:
            for n in owned.get(body, ()):
                if isinstance(n, ast.Assign) and len(n.targets) == 1:
                    source = self._param_of(n.value, names, local, attrs, self_name)
                    if source is None:
                        continue
                    t = n.targets[0]
                    if isinstance(t, ast.Name) and body is signature:
                        local[t.id] = source
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == self_name:
                        attrs[t.attr] = source
        reached: dict[str, tuple[str, str]] = {}
        for body in bodies:
            for n in owned.get(body, ()):
                if isinstance(n, ast.Call):
                    for domain, value, why in self.call_slots(module, n):
                        param = self._param_of(value, names, local if body is signature else {}, attrs, self_name)
                        if param is not None and param not in reached:
                            via = next((f" through self.{a}" for a, p in attrs.items() if p == param), "") \
                                if isinstance(value, ast.Attribute) else ""
                            reached[param] = (domain, f"reaches {why}{via}")
                elif isinstance(n, ast.Compare) and len(n.ops) == 1 and isinstance(n.ops[0], (ast.Eq, ast.NotEq)):
                    sides = [n.left, n.comparators[0]]
                    for side, other in (sides, sides[::-1]):
                        value = _str_value(other)
                        if value is None:
                            continue
                        domain = "device" if value.split(":")[0] == self.slots.device_from else \
                            "backend" if value in self.slots.backend_values else None
                        param = self._param_of(side, names, local if body is signature else {}, attrs, self_name)
                        if domain and param is not None and param not in reached:
                            reached[param] = (domain, f"is compared with {value!r} at {module.rel}:{n.lineno}")
        if not reached:
            return None
        params = []
        for name in sorted(reached, key=lambda p: (positional.index(p) if p in positional else len(positional), p)):
            domain, why = reached[name]
            params.append(ParamSlot(domain, name, positional.index(name) if name in positional else None, why))
        return CallableSlots(f"{module.name}.{node.name}", module.rel, node.lineno, tuple(params),  # type: ignore[attr-defined]
                             tuple(positional))

    @staticmethod
    def _param_of(expr: ast.AST, names: set[str], local: dict[str, str], attrs: dict[str, str],
                  self_name: Optional[str]) -> Optional[str]:
        """The parameter an expression carries (through ``or``, conditional expressions, ``str()``)."""
        todo = [expr]
        while todo:
            e = todo.pop()
            if isinstance(e, ast.Name):
                if e.id in names:
                    return e.id
                if e.id in local:
                    return local[e.id]
            elif isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == self_name:
                if e.attr in attrs:
                    return attrs[e.attr]
            elif isinstance(e, ast.Attribute) and e.attr == "type":
                todo.append(e.value)
            elif isinstance(e, ast.IfExp):
                todo += [e.body, e.orelse]
            elif isinstance(e, ast.BoolOp):
                todo += e.values
            elif isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "str" and len(e.args) == 1:
                todo.append(e.args[0])
        return None

    # ---------------------------------------------------------------- module-level values used elsewhere
    def build_exported(self) -> None:
        for module in self.modules:
            if time.monotonic() > self.deadline:
                self.complete = False
                return
            for n in (n for per_body in module.owned.values() for nodes in per_body.values() for n in nodes):
                if not isinstance(n, ast.Call):
                    continue
                for domain, value, why in self.call_slots(module, n):
                    for expr in self._value_exprs(value):
                        found = self.resolve_value(module.qualify(expr))
                        if found is None or found[0] is module:
                            continue
                        owner, rest = found
                        name = rest.rsplit(".", 1)[-1]
                        self.exported.setdefault(owner.rel, {}).setdefault((domain, name), f"used as a {domain} by {why}")

    @staticmethod
    def _value_exprs(expr: ast.AST) -> list[ast.AST]:
        out: list[ast.AST] = []
        todo = [expr]
        while todo:
            e = todo.pop()
            if isinstance(e, (ast.Name, ast.Attribute)):
                out.append(e)
            elif isinstance(e, ast.IfExp):
                todo += [e.body, e.orelse]
            elif isinstance(e, ast.BoolOp):
                todo += e.values
            elif isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "str" and len(e.args) == 1:
                todo.append(e.args[0])
        return out


def build_index(sources: Mapping[str, bytes], slots: SlotFacts, *, max_seconds: float = MAX_SECONDS) -> ProjectIndex:
    """Index the project's Python files (``rel path -> bytes``); unparsable or huge files are left out."""
    start = time.monotonic()
    deadline = start + max_seconds
    modules: list[_Module] = []
    complete = True
    for rel in sorted(sources):
        data = sources[rel]
        if len(data) > MAX_FILE_BYTES:
            complete = False
            continue
        if time.monotonic() > deadline:
            complete = False
            break
        try:
            tree = ast.parse(data, rel)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        modules.append(_Module(rel, tree))
    builder = _Builder(modules, slots, deadline)
    builder.build_callables()
    builder.build_exported()
    return ProjectIndex(module_of_path={m.rel: m.name for m in modules}, aliases=builder.aliases,
                        reexports=builder.reexports, callables=builder.callables,
                        exported={k: dict(v) for k, v in builder.exported.items()},
                        imports={m.name: dict(m.imports) for m in modules},
                        defined={m.name: frozenset(m.functions) | frozenset(m.assigned) for m in modules},
                        tables=builder.tables(), arity=builder.arity, unsettled=frozenset(builder.unsettled),
                        complete=complete and builder.complete, seconds=time.monotonic() - start)


# Packages whose callables are not "outside the project" in the sense of TP580: torch itself (its slots
# are the rules') and the standard library.
_INSIDE = frozenset({"torch", "torch_npu", "builtins", "__future__"}) | frozenset(getattr(sys, "stdlib_module_names", ()))
_DEVICE_PARAM = re.compile(r"^(device|devices|device_type|device_name|map_location|backend|dist_backend|accelerator)$")


def is_external(qualname: Optional[str], project_modules: Iterable[str]) -> bool:
    """True when ``qualname`` names something imported from a package that is neither the project's,
    torch nor the standard library."""
    if not qualname or "." not in qualname:
        return False
    top = qualname.split(".")[0]
    return top not in _INSIDE and top not in set(project_modules)


def device_like_parameter(name: str) -> bool:
    """A keyword that names a device or backend in most libraries."""
    return _DEVICE_PARAM.match(name) is not None
