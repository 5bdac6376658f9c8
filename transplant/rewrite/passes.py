"""Plug-in point for whole-module *structural* passes (apex.amp -> GradScaler, AMP insertion, ...).

Contract
========
A structural pass handles every rule of one rule *kind* that the built-in kinds do not know (for
example ``"kind": "apex_amp"`` in ``rules/apex.json``; the schema accepts any lower-case kind and
keeps its extra fields in ``StructuralRule.data``). Register it with::

    from transplant.rewrite.passes import register_pass

    @register_pass("apex_amp")
    def apex_amp_pass(module: libcst.Module, ctx: FileContext, rules: list[Rule]) -> None:
        ...

Plug-in modules are discovered automatically: any module of the ``transplant.rewrite`` package whose
name starts with ``apex``, ``amp`` or ``pass_`` is imported once (see :func:`load_plugins`).

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
    """Import the structural-pass modules of this package once (they register themselves)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import transplant.rewrite as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith(_PLUGIN_PREFIXES):
            importlib.import_module(f"{package.__name__}.{info.name}")


def registered_kinds() -> list[str]:
    load_plugins()
    return list(_REGISTRY)


def passes_for(rules: List[Rule], source_text: str) -> list[tuple[StructuralPass, list[Rule]]]:
    """(pass, its rules) for every registered kind with selected rules triggered by ``source_text``."""
    load_plugins()
    out = []
    for kind, fn in _REGISTRY.items():
        mine = [r for r in rules if r.kind == kind and (not r.triggers or any(t in source_text for t in r.triggers))]
        if mine:
            out.append((fn, mine))
    return out
