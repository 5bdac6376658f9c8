"""Rule kind ``profiler``: a ``torch.profiler.profile`` whose activities include CUDA -> ``torch_npu.profiler``.

torch_npu ships its own profiler (``torch_npu.profiler.profile``, ``ProfilerActivity.NPU``,
``schedule``, ``tensorboard_trace_handler``, ``_ExperimentalConfig``); torch's profiler records no
NPU activity. A profile call is migrated as a unit (role ``migrate``, TP115): the callable, every
activity (CPU stays CPU, CUDA becomes NPU), a ``torch.profiler.schedule(...)`` call, a
``tensorboard_trace_handler(...)`` call and an argument-less ``_ExperimentalConfig()``. The other
arguments (``record_shapes``, ``profile_memory``, ``with_stack``, ``with_flops``, ``with_modules``,
a user ``on_trace_ready`` callable) mean the same there and stay. If any part has no torch_npu
equivalent — another activity, a schedule or activities held in a variable (torch's schedule answers
with torch's ``ProfilerAction``, which torch_npu's profiler does not understand), an experimental
config with arguments, ``use_cuda`` / ``execution_trace_observer`` / ``acc_events`` / ... — nothing in
the call changes and each such part is reported (role ``report``, TP568). Every target name is one
of torch_npu 2.13's real names (``transplant/data/torch_npu_names.json``; a test checks it).
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from transplant.rewrite.names import build_dotted, iter_nodes
from transplant.rewrite.passes import register_pass

PROFILE = "torch.profiler.profile"
ACTIVITIES = {
    "torch.profiler.ProfilerActivity.CPU": "torch_npu.profiler.ProfilerActivity.CPU",
    "torch.profiler.ProfilerActivity.CUDA": "torch_npu.profiler.ProfilerActivity.NPU",
}
CALLS = {
    PROFILE: "torch_npu.profiler.profile",
    "torch.profiler.schedule": "torch_npu.profiler.schedule",
    "torch.profiler.tensorboard_trace_handler": "torch_npu.profiler.tensorboard_trace_handler",
    "torch.profiler.supported_activities": "torch_npu.profiler.supported_activities",
}
EXPERIMENTAL = {"torch._C._profiler._ExperimentalConfig", "torch.profiler._ExperimentalConfig"}
EXPERIMENTAL_TARGET = "torch_npu.profiler._ExperimentalConfig"
SAME_MEANING = {"record_shapes", "profile_memory", "with_stack", "with_flops", "with_modules"}
SCHEDULE_ARGUMENTS = {"wait", "warmup", "active", "repeat", "skip_first"}
# every name this pass writes (checked against torch_npu's facts by tests/rewrite/test_profiler_targets)
TARGETS = sorted({*ACTIVITIES.values(), *CALLS.values(), EXPERIMENTAL_TARGET})


class _Plan:
    """The replacements of one profile call, or the reasons it cannot move."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.renames: list[tuple[cst.BaseExpression, str]] = []
        self.problems: list[tuple[cst.CSTNode, str]] = []
        self.cuda = False

    def qual(self, node: cst.CSTNode) -> Optional[str]:
        return self.ctx.qualified_name(node) if isinstance(node, (cst.Name, cst.Attribute)) else None

    def activities(self, value: cst.BaseExpression) -> None:
        if isinstance(value, cst.Call) and self.qual(value.func) == "torch.profiler.supported_activities":
            self.renames.append((value.func, CALLS["torch.profiler.supported_activities"]))
            self.cuda = True  # on a CUDA machine these include CUDA
            return
        if not isinstance(value, (cst.List, cst.Tuple, cst.Set)):
            self.problems.append((value, "activities not written out as a list: the NPU activity cannot be chosen"))
            return
        for element in value.elements:
            name = self.qual(element.value) if not isinstance(element, cst.StarredElement) else None
            if name not in ACTIVITIES:
                self.problems.append((element.value, f"activity {self.ctx.code(element.value)} has no torch_npu "
                                                     "equivalent (torch_npu records CPU and NPU)"))
                continue
            self.cuda = self.cuda or name.endswith(".CUDA")
            self.renames.append((element.value, ACTIVITIES[name]))

    def call_argument(self, keyword: str, value: cst.BaseExpression) -> None:
        name = self.qual(value.func) if isinstance(value, cst.Call) else None
        if keyword == "schedule":
            if name != "torch.profiler.schedule":
                self.problems.append((value, "a schedule other than a torch.profiler.schedule(...) call: torch's "
                                             "schedules answer with torch's ProfilerAction, not torch_npu's"))
                return
            assert isinstance(value, cst.Call)
            bad = [a for a in value.args if a.keyword is None or a.keyword.value not in SCHEDULE_ARGUMENTS]
            if bad:
                self.problems.append((value, "schedule arguments torch_npu.profiler.schedule lacks: "
                                             + ", ".join(self.ctx.code(a) for a in bad)))
                return
            self.renames.append((value.func, CALLS[name]))
        elif keyword == "on_trace_ready":
            if name == "torch.profiler.tensorboard_trace_handler":
                assert isinstance(value, cst.Call)
                self.renames.append((value.func, CALLS[name]))
        elif keyword == "experimental_config":
            if name not in EXPERIMENTAL or not isinstance(value, cst.Call) or value.args:
                self.problems.append((value, "torch's experimental profiler config: torch_npu's "
                                             "_ExperimentalConfig takes other settings (profiler_level, aic_metrics, ...)"))
                return
            self.renames.append((value.func, EXPERIMENTAL_TARGET))

    def plan(self, call: cst.Call) -> None:
        self.renames.append((call.func, CALLS[PROFILE]))
        for arg in call.args:
            if arg.star or arg.keyword is None:
                self.problems.append((arg, f"argument {self.ctx.code(arg)} of torch.profiler.profile cannot be mapped"))
                continue
            keyword = arg.keyword.value
            if keyword == "activities":
                self.activities(arg.value)
            elif keyword in ("schedule", "on_trace_ready", "experimental_config"):
                self.call_argument(keyword, arg.value)
            elif keyword not in SAME_MEANING:
                self.problems.append((arg, f"{keyword}= has no torch_npu.profiler.profile equivalent"))


@register_pass("profiler")
def profiler_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``profiler`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    migrate = next((r for r in rules if r.role != "report"), None)
    report = next((r for r in rules if r.role == "report"), None)
    for node in iter_nodes(module):
        if not isinstance(node, cst.Call) or not isinstance(node.func, (cst.Name, cst.Attribute)):
            continue
        if ctx.qualified_name(node.func) != PROFILE:
            continue
        plan = _Plan(ctx)
        plan.plan(node)
        if not plan.cuda:
            continue  # no CUDA activity: torch's profiler is right as it is
        if plan.problems or migrate is None:
            if report is not None:
                for where, why in plan.problems:
                    ctx.record_unsupported(where, report, f"torch.profiler.profile: {why}")
            continue
        for target, new in plan.renames:
            ctx.replace(target, lambda u, _n=new: build_dotted(_n).with_changes(
                lpar=getattr(u, "lpar", ()), rpar=getattr(u, "rpar", ())))
            ctx.record_change(target, migrate, f"torch.profiler -> torch_npu.profiler (the profile call as a unit)",
                              before=ctx.code(target), after=new)
        # the CUDA activity is migrated: its "not recorded on the NPU" row would describe code that is gone
        moved = {id(target) for target, _ in plan.renames}
        ctx.unsupported = [u for u in ctx.unsupported if u.node is None or id(u.node) not in moved]
