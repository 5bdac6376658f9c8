"""Plug-in point for whole-module *structural* passes (apex -> native torch, AMP insertion, ...).

Contract
========
A structural pass handles every rule of one rule *kind* that the built-in kinds do not know (for
example ``"kind": "apex"`` in ``rules/apex.json``; the schema accepts any lower-case kind, keeps the
rule's ``role`` in ``StructuralRule.role`` and its other extra fields in ``StructuralRule.data``).

Registration is explicit. The bundled passes are listed in :data:`BUILTIN_PASSES` as
``kind -> "module:function"`` and imported only when a file needs them (the AMP machinery pulls in
``libcst.matchers``, which a run without apex or ``--amp`` never pays for). A pass defined elsewhere
registers itself with::

    from transplant.rewrite.passes import register_pass

    @register_pass("my_kind")
    def my_pass(module: libcst.Module, ctx: FileContext, rules: list[Rule]) -> None:
        ...

(for compatibility, a module of this package named ``pass_*``, ``apex*`` or ``amp*`` that is not a
bundled pass module is still imported once to let it register itself; see :func:`load_plugins`).

When it runs
    After the main traversal has *detected* its edits and before anything is applied, once per file
    that (a) passed the substring prefilter and (b) parsed, and only with the selected rules of the
    pass's kind whose ``triggers`` (substrings; declare them, e.g. ``["apex"]``) occur in the file —
    a pass is not called at all when none does. Keep triggers selective: a pass that resolves libcst
    metadata costs a full extra traversal on every file it runs on. Passes run in registration order. ``module`` is the ORIGINAL tree; nodes are
    immutable and must not be mutated.

What the pass may use (``ctx`` is a :class:`transplant.rewrite.context.FileContext`)
    ``ctx.rule(id)``                  a loaded rule (None if deselected by --select/--ignore);
    ``ctx.options``                   run options (``amp``, ``npu_fused_optimizers``, ...);
    ``ctx.qualified_name(expr)``      import-resolved dotted name of a Name/Attribute chain
                                      (``from apex import amp; amp.initialize`` -> ``apex.amp.initialize``);
    ``ctx.imports``                   the :class:`~transplant.rewrite.names.ImportTable` (bindings, imports);
    ``ctx.position(node)``            original-file CodeRange of an original node;
    ``ctx.code(node)``                original source text of a node;
    ``ctx.parent(node)``              parent of an original node.

What the pass records (detect, then the engine applies)
    ``ctx.replace(node, edit)``       schedule ``edit(updated_node) -> new node`` for an ORIGINAL node.
                                      ``updated_node`` already carries the edits of the node's
                                      descendants (e.g. a ``torch.cuda`` rename inside it), so build the
                                      replacement from ``updated_node``, not from ``node``. A statement
                                      may be replaced by ``libcst.FlattenSentinel([...])`` (several
                                      statements) or ``libcst.RemovalSentinel.REMOVE``. Several edits
                                      on one node run in order (each gets the previous result —
                                      possibly a FlattenSentinel, e.g. when ``import torch_npu`` is
                                      inserted after a statement you replaced; handle ``.nodes``).
    ``ctx.record_change(node, rule, message, before=, after=, operation=)``
                                      one change_list.csv row; its lines are the ORIGINAL node's lines.
                                      Every applied edit must have at least one row.
    ``ctx.record_unsupported(node, rule, op, tip)``
                                      one unsupported_api.csv row (tip defaults to the rule's tip).
    ``ctx.add_import("torch", rule)`` ensure ``import torch`` exists (inserted after the first torch
                                      import, or at the top after the docstring/__future__ imports).

    A row by a rule with ``needs_torch_npu`` (default true) also makes the engine insert
    ``import torch_npu`` once after the first torch import (the ``import`` rule kind, TP190).

Passes must not import torch; they must keep the file parseable and idempotent (a second run over
their own output records nothing).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, List

import libcst as cst

from transplant.rules import Rule

StructuralPass = Callable[[cst.Module, "FileContext", List[Rule]], None]  # noqa: F821

# The bundled passes, by rule kind, in the order they run: imported on first use.
BUILTIN_PASSES: Dict[str, str] = {
    "amp_insert": "transplant.rewrite.amp_insert:amp_insert_pass",
    "apex": "transplant.rewrite.apex_pass:apex_pass",
}
_BUILTIN_MODULES = ("apex_pass", "apex_amp", "apex_native", "amp_common", "amp_insert")

_REGISTRY: Dict[str, StructuralPass] = {}
_LOADED = False
_PLUGIN_PREFIXES = ("apex", "amp", "pass_")


def register_pass(kind: str) -> Callable[[StructuralPass], StructuralPass]:
    """Decorator: ``fn`` handles every selected rule of ``kind``."""

    def deco(fn: StructuralPass) -> StructuralPass:
        _REGISTRY[kind] = fn
        return fn

    return deco


def load_plugins() -> None:
    """Import, once, the modules of this package that may register passes themselves (not the bundled ones)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import transplant.rewrite as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith(_PLUGIN_PREFIXES) and info.name not in _BUILTIN_MODULES:
            importlib.import_module(f"{package.__name__}.{info.name}")


def registered_kinds() -> list[str]:
    """Every rule kind a pass handles (bundled ones are not imported to answer)."""
    load_plugins()
    return list(dict.fromkeys([*BUILTIN_PASSES, *_REGISTRY]))


def pass_for(kind: str) -> StructuralPass:
    """The pass of ``kind`` (a bundled one is imported here, on first use)."""
    fn = _REGISTRY.get(kind)
    if fn is None:
        target = BUILTIN_PASSES.get(kind)
        if target is None:
            load_plugins()
            return _REGISTRY[kind]
        module, _, name = target.partition(":")
        fn = _REGISTRY[kind] = getattr(importlib.import_module(module), name)
    return fn


def passes_for(rules: List[Rule], source_text: str) -> list[tuple[StructuralPass, list[Rule]]]:
    """(pass, its rules) for every registered kind with selected rules triggered by ``source_text``."""
    out = []
    for kind in registered_kinds():
        mine = [r for r in rules if r.kind == kind and (not r.triggers or any(t in source_text for t in r.triggers))]
        if mine:
            out.append((pass_for(kind), mine))
    return out
