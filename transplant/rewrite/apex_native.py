"""apex fused modules, optimizers and parallel wrappers → native torch (planning for the ``apex`` pass).

* ``apex.normalization.FusedLayerNorm`` / ``FusedRMSNorm`` / ``MixedFused*`` → ``torch.nn.LayerNorm`` /
  ``torch.nn.RMSNorm``. The import is rewritten so the user's local name stays
  (``from torch.nn import LayerNorm as FusedLayerNorm``); call sites keep ``normalized_shape``, ``eps`` and
  ``elementwise_affine``, drop ``memory_efficient`` and spell out apex's ``eps=1e-5`` for RMSNorm (torch's
  default is the dtype's machine epsilon).
* ``apex.optimizers.FusedAdam`` → ``torch.optim.AdamW`` (``adam_w_mode=True``, apex's default) or
  ``torch.optim.Adam``; ``FusedSGD`` → ``torch.optim.SGD``; ``FusedAdagrad`` → ``torch.optim.Adagrad``;
  same hyper-parameters and parameter groups, apex-only switches dropped with a row, defaults that differ
  made explicit, and a call whose meaning cannot be kept (``bias_correction=False``, ``adagrad_w_mode=True``,
  ...) reported and left alone. ``FusedLAMB`` → ``torch_npu.optim.NpuFusedLamb`` only with
  ``--npu-fused-optimizers`` (a different LAMB variant: documented in the row), else reported.
* ``apex.parallel.DistributedDataParallel`` → ``torch.nn.parallel.DistributedDataParallel`` (import
  rewritten, apex-only tuning arguments dropped); ``SyncBatchNorm`` → ``torch.nn.SyncBatchNorm``;
  ``convert_syncbn_model(m)`` → ``torch.nn.SyncBatchNorm.convert_sync_batchnorm(m)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import libcst as cst

from transplant.results import Operation
from transplant.rewrite import amp_common as c


@dataclass(frozen=True)
class Target:
    """Where an apex class/function goes and how its call arguments change."""

    module: str                     # torch module to import the name from (for import rewrites)
    name: str                       # attribute in that module
    params: tuple[str, ...] = ()    # apex's positional parameter order (index 0 is kept positional)
    keep_positional: int = 1        # leading positionals whose meaning is the same in torch
    drop_if: dict[str, tuple[object, ...]] = field(default_factory=dict)   # apex-only, value harmless
    refuse_unless: dict[str, tuple[object, ...]] = field(default_factory=dict)  # other values: report
    add_if_absent: dict[str, str] = field(default_factory=dict)   # torch default differs from apex's
    notes: dict[str, str] = field(default_factory=dict)            # argument -> note when present/absent
    import_rewrite: bool = True     # rewrite the import (keeps local names) rather than the call

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


_ANY = object()
_NORM = ("normalized_shape", "eps", "elementwise_affine", "memory_efficient")
NORMS = {
    "FusedLayerNorm": Target("torch.nn", "LayerNorm", _NORM, keep_positional=3,
                             drop_if={"memory_efficient": (True, False, _ANY)}),
    "FusedRMSNorm": Target("torch.nn", "RMSNorm", _NORM, keep_positional=3,
                           drop_if={"memory_efficient": (True, False, _ANY)}, add_if_absent={"eps": "1e-5"}),
    "MixedFusedLayerNorm": Target("torch.nn", "LayerNorm", ("normalized_shape", "eps"), keep_positional=2,
                                  drop_if={"memory_efficient": (True, False, _ANY)},
                                  notes={"": "MixedFused* kept float32 parameters for a half-precision input; "
                                             "torch.nn.LayerNorm under autocast computes in float32 as well"}),
    "MixedFusedRMSNorm": Target("torch.nn", "RMSNorm", ("normalized_shape", "eps"), keep_positional=2,
                                drop_if={"memory_efficient": (True, False, _ANY)}, add_if_absent={"eps": "1e-5"},
                                notes={"": "MixedFused* kept float32 parameters for a half-precision input"}),
}
_ADAM = ("params", "lr", "bias_correction", "betas", "eps", "adam_w_mode", "weight_decay", "amsgrad",
         "set_grad_none", "capturable", "master_weights")
OPTIMIZERS = {
    "FusedAdam": Target("torch.optim", "AdamW", _ADAM, keep_positional=2, import_rewrite=False,
                        drop_if={"bias_correction": (True,), "adam_w_mode": (True, False),
                                 "set_grad_none": (True, False), "master_weights": (False,)},
                        refuse_unless={"bias_correction": (True,), "adam_w_mode": (True, False),
                                       "master_weights": (False,)},
                        notes={"set_grad_none=False": "set_grad_none=False dropped: zero_grad() now sets .grad to "
                                                      "None (torch's default); call zero_grad(set_to_none=False) "
                                                      "if the code reads .grad after it"}),
    "FusedSGD": Target("torch.optim", "SGD", ("params", "lr", "momentum", "dampening", "weight_decay", "nesterov",
                                              "wd_after_momentum", "materialize_master_grads", "set_grad_none"),
                       keep_positional=6, import_rewrite=False,
                       drop_if={"wd_after_momentum": (False,), "materialize_master_grads": (True, False),
                                "set_grad_none": (True, False)},
                       refuse_unless={"wd_after_momentum": (False,)},
                       notes={"set_grad_none=False": "apex FusedSGD zeroed gradients in place by default; torch's "
                                                     "zero_grad() sets them to None (use set_to_none=False if the "
                                                     "code reads .grad after zero_grad)"}),
    "FusedAdagrad": Target("torch.optim", "Adagrad", ("params", "lr", "eps", "weight_decay", "set_grad_none",
                                                      "adagrad_w_mode"),
                           keep_positional=2, import_rewrite=False,
                           drop_if={"set_grad_none": (True, False), "adagrad_w_mode": (False,)},
                           refuse_unless={"adagrad_w_mode": (False,)}),
    "FusedLAMB": Target("torch_npu.optim", "NpuFusedLamb", (
        "params", "lr", "bias_correction", "betas", "eps", "weight_decay", "amsgrad", "adam_w_mode",
        "grad_averaging", "set_grad_none", "max_grad_norm", "use_nvlamb"), keep_positional=2, import_rewrite=False,
        drop_if={"bias_correction": (True,), "amsgrad": (False,), "adam_w_mode": (True,), "grad_averaging": (True,),
                 "set_grad_none": (True, False), "max_grad_norm": (_ANY,), "use_nvlamb": (False,)},
        refuse_unless={"bias_correction": (True,), "amsgrad": (False,), "adam_w_mode": (True,),
                       "grad_averaging": (True,), "use_nvlamb": (False,)},
        add_if_absent={"weight_decay": "0.01"}),
}
PARALLEL = {
    "DistributedDataParallel": Target("torch.nn.parallel", "DistributedDataParallel", ("module",),
                                      drop_if={k: (_ANY,) for k in (
                                          "message_size", "delay_allreduce", "shared_param",
                                          "allreduce_trigger_params", "retain_allreduce_buffers",
                                          "allreduce_always_fp32", "num_allreduce_streams",
                                          "allreduce_communicators", "gradient_average",
                                          "gradient_predivide_factor", "gradient_average_split_factor", "prof")},
                                      refuse_unless={"gradient_average": (True,),
                                                     "gradient_predivide_factor": (1, 1.0),
                                                     "gradient_average_split_factor": (None,),
                                                     "allreduce_always_fp32": (False,)}),
    "SyncBatchNorm": Target("torch.nn", "SyncBatchNorm", ("num_features", "eps", "momentum", "affine",
                                                          "track_running_stats", "process_group", "channel_last",
                                                          "fuse_relu"), keep_positional=6,
                            drop_if={"channel_last": (False,), "fuse_relu": (False,)},
                            refuse_unless={"channel_last": (False,), "fuse_relu": (False,)}),
    "convert_syncbn_model": Target("torch.nn.SyncBatchNorm", "convert_sync_batchnorm",
                                   ("module", "process_group", "channel_last"), keep_positional=2,
                                   import_rewrite=False, drop_if={"channel_last": (False,)},
                                   refuse_unless={"channel_last": (False,)}),
}
_PACKAGES = {"normalization": NORMS, "optimizers": OPTIMIZERS, "parallel": PARALLEL}


def canonical(qualified: str) -> Optional[tuple[str, str]]:
    """``apex.optimizers.fused_adam.FusedAdam`` → ("optimizers", "FusedAdam") when we know the name."""
    parts = qualified.split(".")
    if len(parts) < 3 or parts[0] != "apex" or parts[1] not in _PACKAGES:
        return None
    if parts[-1] in _PACKAGES[parts[1]]:
        return parts[1], parts[-1]
    return None



@dataclass
class ArgPlan:
    """How the arguments of one call change (indexes refer to the original call's args)."""

    drop: set[int] = field(default_factory=set)
    to_keyword: dict[int, str] = field(default_factory=dict)
    add: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_arguments(call_node: cst.Call, target: Target, label: str) -> ArgPlan:
    """Decide the argument edits of ``call_node`` for ``target``; raises :class:`~transplant.rewrite.amp_common.Refused`."""
    plan = ArgPlan()
    bound: dict[str, tuple[int, cst.Arg]] = {}
    position = 0
    for index, arg in enumerate(call_node.args):
        if arg.star:
            raise c.Refused(f"{label} is called with *args/**kwargs")
        if arg.keyword is None:
            if position >= len(target.params):
                raise c.Refused(f"{label} has more positional arguments than apex accepts")
            name = target.params[position]
            if position >= target.keep_positional:
                plan.to_keyword[index] = name
            position += 1
        else:
            name = arg.keyword.value
        bound[name] = (index, arg)
    for name, (index, arg) in bound.items():
        value = c.literal_value(arg.value)
        allowed = target.refuse_unless.get(name)
        if allowed is not None and value not in allowed:
            shown = c.first_line(c.code_of(cst.Module(body=[]), arg.value))
            raise c.Refused(f"{label}({name}={shown}) has no equivalent in {target.dotted}")
        if name in target.drop_if:
            plan.drop.add(index)
            plan.to_keyword.pop(index, None)
            plan.notes.append(f"dropped {name}= (apex-only)")
            note = target.notes.get(f"{name}={value!r}") or target.notes.get(f"{name}={value}")
            if note:
                plan.notes.append(note)
    for name, source in target.add_if_absent.items():
        if name not in bound:
            plan.add.append((name, source))
            plan.notes.append(f"{name}={source} made explicit (apex's default; torch's differs)")
    for condition, note in target.notes.items():
        if condition == "":
            plan.notes.append(note)
        elif "=" in condition:
            name, _, literal = condition.partition("=")
            if name not in bound and target.params and _default_matches(name, literal, target):
                plan.notes.append(note)
    return plan


def _default_matches(name: str, literal: str, target: Target) -> bool:
    """apex's default for ``set_grad_none`` differs by optimizer: note it when the default is the noted value."""
    defaults = {("SGD", "set_grad_none"): "False"}
    return defaults.get((target.name, name)) == literal


def apply_arguments(updated: cst.Call, plan: ArgPlan, func: Optional[cst.BaseExpression] = None) -> cst.Call:
    """Rebuild ``updated``'s arguments by ``plan`` (same argument count as the planned original)."""
    args: list[cst.Arg] = []
    for index, arg in enumerate(updated.args):
        if index in plan.drop:
            continue
        if index in plan.to_keyword:
            arg = arg.with_changes(keyword=cst.Name(plan.to_keyword[index]), equal=cst.AssignEqual(
                whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")))
        args.append(arg)
    for name, source in plan.add:
        args.append(c.kwarg(name, cst.parse_expression(source)))
    trailing = bool(updated.args) and isinstance(updated.args[-1].comma, cst.Comma)
    fixed: list[cst.Arg] = []
    for index, arg in enumerate(args):
        last = index == len(args) - 1
        if not last and not isinstance(arg.comma, cst.Comma):
            arg = arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        elif last and not trailing:
            arg = arg.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        fixed.append(arg)
    return updated.with_changes(func=func if func is not None else updated.func, args=fixed)


@dataclass
class NativePlan:
    """What the native planner decided for one module."""

    consumed: set[int] = field(default_factory=set)     # ids of original nodes rewritten away
    moved: dict[str, Target] = field(default_factory=dict)  # canonical apex name → target (import rewrite)
    blocked: set[str] = field(default_factory=set)      # canonical names with a use we could not rewrite
    needs_torch: bool = False
    needs_torch_npu: bool = False   # a call now names torch_npu.* (the file must import torch_npu)


class NativePlanner:
    """Plans the apex → torch rewrites of normalization, optimizers and parallel (not amp)."""

    def __init__(self, analysis: c.Analysis, editor: c.StatementEditor, findings: c.Findings,
                 rule_ids: Callable[[str], Optional[str]], options: dict, torch_name: str) -> None:
        self.a = analysis
        self.editor = editor
        self.findings = findings
        self.rule_ids = rule_ids  # role -> rule id (None when that rule is deselected)
        self.options = options
        self.torch = torch_name
        self.plan = NativePlan()

    def run(self) -> NativePlan:
        uses = [(n, q) for n, q in self.a.uses_under("apex") if not q.startswith("apex.amp")]
        by_name: dict[tuple[str, str], list[tuple[cst.CSTNode, str]]] = {}
        for node, qualified in uses:
            key = canonical(qualified)
            if key is not None:
                by_name.setdefault(key, []).append((node, qualified))
        for (package, name), found in by_name.items():
            role = {"normalization": "normalization", "optimizers": "optimizers", "parallel": "parallel"}[package]
            rule = self.rule_ids(role)
            if rule is None:
                continue
            if package == "optimizers" and name == "FusedLAMB" and not self.options.get("npu_fused_optimizers"):
                for node, qualified in found:
                    self.findings.unsupported.append(self.a.unsupported(
                        self.rule_ids("unsupported") or rule, node, qualified,
                        "LAMB has no torch.optim equivalent. Run with --npu-fused-optimizers to use "
                        "torch_npu.optim.NpuFusedLamb (a different LAMB implementation: no max_grad_norm, L2 "
                        "weight decay), or switch to torch.optim.AdamW and retune"))
                continue
            self._plan_name(package, name, found, rule)
        return self.plan

    def _plan_name(self, package: str, name: str, found: list[tuple[cst.CSTNode, str]], rule: str) -> None:
        target = _PACKAGES[package][name]
        unsupported = self.rule_ids("unsupported") or rule
        if not target.import_rewrite:
            # Each call is rewritten on its own (the import goes once no use is left).
            for node, qualified in found:
                try:
                    self._plan_use(node, qualified, name, target, rule)()
                except c.Refused as refuse:
                    self.plan.blocked.add(f"{package}.{name}")
                    self.findings.unsupported.append(self.a.unsupported(
                        unsupported, node, qualified, f"not rewritten: {refuse}. Replace it by hand with "
                        f"{target.dotted} or an equivalent"))
            return
        # The import is rewritten for every use of the name at once: all of them must be fine.
        planned: list[Callable[[], None]] = []
        try:
            for node, qualified in found:
                planned.append(self._plan_use(node, qualified, name, target, rule))
        except c.Refused as refuse:
            self.plan.blocked.add(f"{package}.{name}")
            for node, qualified in found:
                self.findings.unsupported.append(self.a.unsupported(
                    unsupported, node, qualified, f"not rewritten: {refuse}; every use of {name} in this file "
                    f"stays on apex because they share one import. Replace them by hand with {target.dotted} "
                    "or an equivalent"))
            return
        for commit in planned:
            commit()
        self.plan.moved[f"apex.{package}.{name}"] = target

    def _plan_use(self, node: cst.CSTNode, qualified: str, name: str, target: Target, rule: str
                  ) -> Callable[[], None]:
        parent = self.a.parent(node)
        is_call = isinstance(parent, cst.Call) and parent.func is node
        chain = isinstance(node, cst.Attribute)  # ``apex.parallel.X`` spelled through ``import apex``
        if not is_call and not target.import_rewrite:
            raise c.Refused(f"`{qualified}` is used as a value (only calls are rewritten, the torch class depends on "
                         "the arguments)")
        if not is_call and chain:
            raise c.Refused(f"`{qualified}` is used as a value through the apex module")
        label = name
        if not is_call:
            def commit_reference() -> None:
                if target.add_if_absent:
                    self.findings.changes.append(self.a.change(
                        rule, node, Operation.MODIFY, f"{name} now refers to {target.dotted}: the class is passed "
                        f"on, so apex's defaults ({', '.join(f'{k}={v}' for k, v in target.add_if_absent.items())}) "
                        "are not spelled out where it is constructed", "review", after=target.dotted))
            return commit_reference
        call_node: cst.Call = parent  # type: ignore[assignment]
        dotted_target = target
        if name == "FusedAdam":
            mode = c.call_arg(call_node, 5, "adam_w_mode")
            if mode is not None and c.literal_value(mode.value) is False:
                dotted_target = Target("torch.optim", "Adam", target.params)
        plan = plan_arguments(call_node, target, label)
        if dotted_target.name == "AdamW" and c.call_arg(call_node, 6, "weight_decay") is None:
            plan.add.append(("weight_decay", "0.0"))
            plan.notes.append("weight_decay=0.0 made explicit (apex's default; AdamW's is 0.01)")
        if name == "FusedLAMB":
            plan.notes.append("NpuFusedLamb is a different LAMB implementation: no max_grad_norm clipping of the "
                              "global gradient norm, and its weight decay is documented as an L2 penalty where apex "
                              "decouples it (adam_w_mode); expect different numerics")
        replace_func = not target.import_rewrite or chain
        func_expr = c.dotted(self._spell(dotted_target.dotted)) if replace_func else None

        def commit_call() -> None:
            self.plan.consumed.add(id(node))
            if not (replace_func or plan.drop or plan.to_keyword or plan.add):
                return  # the rewritten import alone changes this call
            if replace_func and dotted_target.dotted.startswith("torch."):
                self.plan.needs_torch = True
            if replace_func and dotted_target.dotted.startswith("torch_npu."):
                self.plan.needs_torch_npu = True
            self.editor.replace_expr[call_node] = lambda upd, p=plan, f=func_expr: apply_arguments(upd, p, f)
            self.plan.consumed.add(id(node))
            after = apply_arguments(call_node, plan, func_expr)
            message = f"apex {name} -> {dotted_target.dotted}"
            if plan.notes:
                message += "; " + "; ".join(dict.fromkeys(plan.notes))
            severity = "review" if any(n for n in plan.notes if not n.startswith("dropped")) else "safe"
            self.findings.changes.append(self.a.change(rule, call_node, Operation.MODIFY, message, severity,
                                                       after=self.a.module.code_for_node(after)))

        return commit_call

    def _spell(self, dotted: str) -> str:
        """``torch.nn.LayerNorm`` through the file's own alias of torch (``th.nn.LayerNorm``)."""
        if dotted.startswith("torch.") and self.torch != "torch":
            return self.torch + dotted[len("torch"):]
        return dotted
