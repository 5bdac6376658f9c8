"""Rule kind ``fork_rng``: ``torch.random.fork_rng()`` without ``device_type`` gets ``device_type='npu'``.

Before torch's accelerator API, fork_rng's ``device_type`` defaulted to ``'cuda'`` (torch 2.1, common
on Ascend hosts): there the block forks no device generator and random ops on the NPU inside it
advance the outer stream. torch 2.13 defaults to the current accelerator; the explicit argument is
right on both. The explicit
``device_type='cuda'`` is a device string (rewritten by the ``device`` kind); only the omitted one is
this pass's.
"""

from __future__ import annotations

import libcst as cst

from transplant.rewrite.names import iter_nodes
from transplant.rewrite.passes import register_pass

_FORK_RNG = {"torch.random.fork_rng"}
# fork_rng(devices, enabled, _caller, _devices_kw, device_type): five positional arguments reach it.
_DEVICE_TYPE_POSITION = 4


def _needs_device_type(call: cst.Call) -> bool:
    positional = 0
    for arg in call.args:
        if arg.star:  # *args / **kwargs may carry it: leave the call alone
            return False
        if arg.keyword is not None:
            if arg.keyword.value == "device_type":
                return False
        else:
            positional += 1
    return positional <= _DEVICE_TYPE_POSITION


def _add_device_type(updated: cst.Call) -> cst.Call:
    new_arg = cst.Arg(keyword=cst.Name("device_type"), value=cst.SimpleString("'npu'"),
                      equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                            whitespace_after=cst.SimpleWhitespace("")))
    args = list(updated.args)
    if not args:
        return updated.with_changes(args=[new_arg])
    last = args[-1]
    if isinstance(last.comma, cst.Comma):
        # a trailing comma: the new argument takes it; one argument per line stays so
        between = updated.whitespace_before_args
        if not isinstance(between, cst.ParenthesizedWhitespace):
            between = cst.SimpleWhitespace(" ")
        args.append(new_arg.with_changes(comma=last.comma))
        args[-2] = last.with_changes(comma=last.comma.with_changes(whitespace_after=between))
    else:
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(new_arg)
    return updated.with_changes(args=args)


@register_pass("fork_rng")
def fork_rng_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``fork_rng`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    rule = rules[0]
    for node in iter_nodes(module):
        if not isinstance(node, cst.Call) or not isinstance(node.func, (cst.Name, cst.Attribute)):
            continue
        if ctx.qualified_name(node.func) not in _FORK_RNG or not _needs_device_type(node):
            continue
        ctx.replace(node, _add_device_type)
        ctx.record_change(node, rule, "fork_rng forks the NPU generators (device_type defaults to 'cuda')",
                          before=ctx.code(node), after=ctx.code(_add_device_type(node)))
