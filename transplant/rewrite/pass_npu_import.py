"""Rule kind ``npu_import``: a file that already uses ``torch.npu`` gets ``import torch_npu`` too.

Partly ported code (``torch.npu.synchronize()``, ``from torch.npu import amp``, ``import torch.npu``)
records no change, so the ``import`` kind would not add ``import torch_npu``; without it torch has no
``npu`` module. This pass marks such a file as using the NPU; the ``import`` kind then inserts the
import (its row names TP190) exactly as for a file a rule changed.
"""

from __future__ import annotations

import libcst as cst

from transplant.rewrite.names import dotted_name, iter_nodes
from transplant.rewrite.passes import register_pass


def _is_npu_namespace(name: str) -> bool:
    return name == "torch.npu" or name.startswith("torch.npu.")


def uses_npu_namespace(module: cst.Module, ctx) -> bool:
    """True when an import or a name chain of ``module`` reaches ``torch.npu``."""
    imports = ctx.imports
    if any(_is_npu_namespace(m) for m in imports.imported_modules):
        return True
    if any(_is_npu_namespace(target) for target in imports.bindings.values()):
        return True
    for node in iter_nodes(module):
        if isinstance(node, cst.Attribute) and node.attr.value == "npu":
            dotted = dotted_name(node)
            if dotted is not None and imports.qualify_dotted(dotted) == "torch.npu":
                return True
    return False


@register_pass("npu_import")
def npu_import_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``npu_import`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    if ctx.npu_needed_by is not None:
        return  # a change already asks for the import
    if any(m == "torch_npu" or m.startswith("torch_npu.") for m in ctx.imports.imported_modules):
        return
    if uses_npu_namespace(module, ctx):
        ctx.npu_needed_by = rules[0]
