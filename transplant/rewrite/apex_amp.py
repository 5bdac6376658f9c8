"""apex.amp → native ``torch.amp`` on the ``'npu'`` device (planning for the ``apex`` pass, role ``amp``).

What the pass does, per file and all or nothing (a shape it cannot rewrite safely leaves every apex.amp
use in place and reports each one with the reason):

* ``model, optimizer = amp.initialize(model, optimizer, opt_level=..., loss_scale=...)`` goes; a
  ``torch.amp.GradScaler('npu', ...)`` takes its place. When the call sits under ``if args.fp16:`` the
  scaler is created just before that ``if`` with ``enabled=args.fp16``, so every later use works on both
  branches (a disabled scaler passes losses and steps through unchanged); when the condition's names only
  exist inside an outer block, an inner ``if`` is chosen (see ``_place_scaler``).
* ``with amp.scale_loss(loss, optimizer) as scaled_loss: scaled_loss.backward()`` →
  ``scaler.scale(loss).backward()``.
* ``optimizer.step()`` → ``scaler.step(optimizer)`` + ``scaler.update()``.
* ``amp.master_params(optimizer)`` → the model's parameters, with ``scaler.unscale_(optimizer)`` before
  the clipping statement when the optimizer step follows in the same block; when the clip runs on every
  micro-step (gradient accumulation) unscaling is not allowed twice, so the clip threshold is multiplied by
  ``scaler.get_scale()`` instead (the same clip, measured in scaled units).
* The statements before the backward (forward pass and loss) are wrapped in
  ``torch.autocast('npu', dtype=torch.float16)`` for O1/O2 (none for O0; O3 is reported).
* ``amp.state_dict()`` / ``amp.load_state_dict(x)`` → the scaler's.
* Imports of apex that end up unused are removed (with a ``try/except ImportError`` around them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import libcst as cst
import libcst.matchers as m

from transplant.results import Operation
from transplant.rewrite import amp_common as c

APEX_AMP = "apex.amp"
# Keyword arguments of amp.initialize that have no torch.amp counterpart (dropped, one review row).
_DROPPED_INIT_KWARGS = ("cast_model_type", "patch_torch_functions", "keep_batchnorm_fp32", "master_weights",
                        "num_losses", "verbosity", "min_loss_scale", "max_loss_scale", "combine_grad",
                        "combine_ddp", "user_cast_preferred")
CLIP_FUNCTIONS = {"clip_grad_norm_": ("max_norm", 1), "clip_grad_norm": ("max_norm", 1),
                   "clip_grad_value_": ("clip_value", 1)}
# Calls that end a forward region: nothing before them belongs to this step's forward pass.
_BARRIER_METHODS = {"backward", "step", "zero_grad", "update", "unscale_", "scale_loss"}


@dataclass
class InitSite:
    call: cst.Call
    stmt: cst.SimpleStatementLine
    scope: Union[cst.FunctionDef, cst.Module]
    models: list[cst.BaseExpression]
    optimizers: list[cst.BaseExpression]
    guards: list[tuple[cst.BaseExpression, cst.If]]  # (condition, the ``if`` it comes from), outermost first
    scaler: cst.BaseExpression = field(default_factory=lambda: cst.Name("scaler"))
    autocast_dtype: Optional[str] = "float16"
    autocast_enabled: Optional[cst.BaseExpression] = None
    uses_self: bool = False
    enabled_extra: Optional[cst.BaseExpression] = None   # amp.initialize(enabled=...)
    scaler_args: list[cst.Arg] = field(default_factory=list)
    rebinding: Optional[cst.SimpleStatementLine] = None
    message: str = ""
    severity: str = "safe"
    uses: list[cst.CSTNode] = field(default_factory=list)  # rewritten uses that need the scaler
    backward_stmts: list[cst.BaseStatement] = field(default_factory=list)


@dataclass(frozen=True)
class AmpRuleIds:
    """Row ids: ``rewrite`` for each change, ``unsupported`` for uses left in place."""

    rewrite: str
    unsupported: str
    tip: str = ("Rewrite by hand with torch.autocast('npu', dtype=torch.float16) around the forward pass and "
                "torch.amp.GradScaler('npu') for scale(loss).backward() / step / update")


def plan_apex_amp(analysis: c.Analysis, ids: AmpRuleIds
                  ) -> tuple[Optional[c.StatementEditor], c.Findings, set[int]]:
    """Decide the apex.amp rewrite of one (original) module: (edits, rows, ids of rewritten nodes).

    All or nothing: when any use has a shape we do not rewrite, there are no edits and every use gets an
    unsupported row with the reason.
    """
    uses = list(analysis.uses_under(APEX_AMP))
    if not uses:
        return None, c.Findings(), set()
    planner = _Planner(analysis, ids)
    try:
        planner.plan(uses)
    except c.Refused as abort:
        findings = c.Findings()
        for node, name in uses:
            findings.unsupported.append(analysis.unsupported(
                ids.unsupported, node, name, f"not rewritten: {abort.reason}. {ids.tip}"))
        return None, findings, set()
    return planner.editor, planner.findings, planner.consumed


class _Planner:
    def __init__(self, analysis: c.Analysis, ids: AmpRuleIds) -> None:
        self.a = analysis
        self.ids = ids
        self.editor = c.StatementEditor()
        self.findings = c.Findings()
        self.consumed: set[int] = set()
        self.sites: list[InitSite] = []
        self.torch = c.torch_alias(analysis.module) or "torch"
        self.scaler_name = c.free_name(analysis.names)

    # -- driver ------------------------------------------------------------------------------------
    def plan(self, uses: list[tuple[cst.CSTNode, str]]) -> None:
        calls: dict[str, list[tuple[cst.Call, cst.CSTNode]]] = {}
        for node, name in uses:
            parent = self.a.parent(node)
            if not (isinstance(parent, cst.Call) and parent.func is node):
                raise c.Refused(node, f"`{name}` is used as a value, not called")
            calls.setdefault(name, []).append((parent, node))
        known = {f"{APEX_AMP}.{n}" for n in ("initialize", "scale_loss", "master_params", "state_dict",
                                             "load_state_dict")}
        for name, found in calls.items():
            if name not in known:
                raise c.Refused(found[0][1], f"`{name}` has no native torch.amp counterpart")
        if f"{APEX_AMP}.initialize" not in calls:
            raise c.Refused(uses[0][0], "amp.initialize(...) is not in this file, so the scaler cannot be placed")
        for call_node, _ in calls[f"{APEX_AMP}.initialize"]:
            self.sites.append(self._plan_init(call_node))
        scopes = [id(s.scope) for s in self.sites]
        if len(set(scopes)) != len(scopes):
            raise c.Refused(self.sites[-1].call, "amp.initialize is called twice in one function")
        stepped: dict[int, list[cst.SimpleStatementLine]] = {}
        for site in self.sites:
            stepped[id(site)] = self._plan_steps(site)
        for call_node, _ in calls.get(f"{APEX_AMP}.scale_loss", []):
            self._plan_scale_loss(call_node)
        for call_node, _ in calls.get(f"{APEX_AMP}.master_params", []):
            self._plan_master_params(call_node, stepped)
        for short in ("state_dict", "load_state_dict"):
            for call_node, _ in calls.get(f"{APEX_AMP}.{short}", []):
                self._plan_state(call_node, short)
        for site in self.sites:
            self._place_scaler(site)
            for with_stmt in site.backward_stmts:
                self._plan_autocast(site, with_stmt)

    # -- amp.initialize ----------------------------------------------------------------------------
    def _plan_init(self, call_node: cst.Call) -> InitSite:
        stmt = self.a.statement_of(call_node)
        if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1
                and isinstance(stmt.body[0], (cst.Assign, cst.Expr))):
            raise c.Refused(call_node, "amp.initialize is not a plain assignment statement")
        small = stmt.body[0]
        if small.value is not call_node:  # type: ignore[union-attr]
            raise c.Refused(call_node, "amp.initialize is part of a larger expression")
        models_arg = c.call_arg(call_node, 0, "models")
        optim_arg = c.call_arg(call_node, 1, "optimizers")
        if models_arg is None or optim_arg is None:
            raise c.Refused(call_node, "amp.initialize without an optimizer (inference-only use)")
        if any(a.star for a in call_node.args):
            raise c.Refused(call_node, "amp.initialize is called with *args/**kwargs")
        models = _elements(models_arg.value)
        optimizers = _elements(optim_arg.value)
        if not all(c.is_simple_reference(e) for e in models + optimizers):
            raise c.Refused(call_node, "amp.initialize's model/optimizer arguments are not plain names or attributes")
        scope = self.a.scope_of(call_node)
        guards, problem = c.enclosing_guards(self.a, stmt, scope)
        if problem:
            raise c.Refused(call_node, f"amp.initialize cannot be moved: {problem}")
        if not all(c.is_pure_condition(g) for g, _owner in guards):
            raise c.Refused(call_node, "the condition guarding amp.initialize has side effects")
        site = InitSite(call=call_node, stmt=stmt, scope=scope, models=models, optimizers=optimizers,
                        guards=guards)
        site.uses_self = any(isinstance(e, cst.Attribute) and c.dotted_name_of(e).startswith("self.")
                             for e in models + optimizers)
        site.scaler = (cst.Attribute(value=cst.Name("self"), attr=cst.Name(self.scaler_name)) if site.uses_self
                       else cst.Name(self.scaler_name))

        # Keyword arguments → scaler arguments and autocast dtype.
        # initialize(models, optimizers=None, enabled=True, opt_level="O1", ...; loss_scale is keyword-only
        # in practice, position -1 never matches a positional argument).
        opt_level = c.call_arg(call_node, 3, "opt_level")
        loss_scale = c.call_arg(call_node, -1, "loss_scale")
        enabled = c.call_arg(call_node, 2, "enabled")
        level = c.literal_value(opt_level.value) if opt_level is not None else "O1"
        notes: list[str] = []
        scaler_args: list[cst.Arg] = [cst.Arg(c.string("npu"))]
        if level == "O3":
            raise c.Refused(call_node, "opt_level O3 (pure float16 model) has no autocast equivalent")
        if level == "O0":
            site.autocast_dtype = None
        elif level in ("O1", "O2"):
            if level == "O2":
                notes.append("O2 kept float32 master weights of a float16 model; autocast keeps the model in "
                             "float32 and casts per operation")
        else:
            notes.append("opt_level is not a literal: O1/O2 assumed (float16 autocast); O0 would mean none")
        if loss_scale is not None:
            value = c.literal_value(loss_scale.value)
            if value == "dynamic":
                pass
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                scaler_args.append(c.kwarg("init_scale", cst.Float(repr(float(value)))))
                scaler_args.append(c.kwarg("growth_interval", cst.BinaryOperation(
                    left=cst.BinaryOperation(left=cst.Integer("2"), operator=cst.Power(), right=cst.Integer("31")),
                    operator=cst.Subtract(whitespace_before=cst.SimpleWhitespace(" "),
                                          whitespace_after=cst.SimpleWhitespace(" ")),
                    right=cst.Integer("1"))))
                notes.append(f"static loss_scale={value} became init_scale with growth disabled; unlike apex, "
                             "an overflowing step is skipped and the scale halved")
            else:
                notes.append("loss_scale is not a literal: dynamic loss scaling (GradScaler defaults) used")
        site.enabled_extra = enabled.value if enabled is not None else None
        if level == "O0":
            scaler_args.append(c.kwarg("enabled", cst.Name("False")))
        dropped = [a.keyword.value for a in call_node.args
                   if a.keyword is not None and a.keyword.value in _DROPPED_INIT_KWARGS]
        unknown = [a.keyword.value for a in call_node.args if a.keyword is not None and a.keyword.value not in
                   _DROPPED_INIT_KWARGS + ("models", "optimizers", "opt_level", "loss_scale", "enabled")]
        if unknown:
            raise c.Refused(call_node, f"amp.initialize argument(s) {', '.join(unknown)} not understood")
        if dropped:
            notes.append(f"dropped apex-only argument(s) {', '.join(dropped)}")
        site.scaler_args = scaler_args
        # The assignment's targets: keep a rebinding only when they differ from the arguments.
        if isinstance(small, cst.Assign):
            if len(small.targets) != 1:
                raise c.Refused(call_node, "chained assignment of amp.initialize")
            target = small.targets[0].target
            targets = _elements(target)
            if len(targets) != len(models) + len(optimizers) and not (
                    isinstance(target, (cst.Tuple, cst.List)) and len(target.elements) == 2):
                raise c.Refused(call_node, "amp.initialize's result is unpacked in an unexpected way")
            wanted = [models_arg.value, optim_arg.value]
            if not (len(targets) == 2 and all(c.same_expr(self.a.module, t, w) for t, w in zip(targets, wanted))):
                site.rebinding = stmt.with_changes(body=[small.with_changes(
                    value=cst.Tuple(elements=[cst.Element(models_arg.value, comma=cst.Comma(
                        whitespace_after=cst.SimpleWhitespace(" "))), cst.Element(optim_arg.value)],
                        lpar=[], rpar=[]))])
        site.message = "; ".join(["amp.initialize replaced by torch.amp.GradScaler('npu')"] + notes)
        site.severity = "review" if notes else "safe"
        self.consumed.add(id(stmt))
        return site

    def _place_scaler(self, site: InitSite) -> None:
        """Create the scaler where it exists on every path to its uses, enabled exactly when apex was.

        Candidates are the guarding ``if`` statements that sit directly in a block, outermost first: the
        scaler goes before the first one whose remaining conditions can be evaluated there (no name in
        them is assigned inside that ``if``) and after which every use of the scaler lies.
        """
        stmt = site.stmt
        chosen: Optional[int] = None
        if site.guards:
            for index, (_cond, owner) in enumerate(site.guards):
                suite = self.a.parent(owner)
                if not isinstance(suite, (cst.IndentedBlock, cst.Module)):
                    continue  # an ``elif``: not a statement of its own
                inner = [cond for cond, _o in site.guards[index + 1:]]
                if c.names_in_all(inner) & _assigned_names(owner):
                    continue
                if index > 0 and not all(self._after_in(use, owner, suite) for use in site.uses):
                    continue
                chosen = index
                break
            if chosen is None:
                raise c.Refused(site.call, "the condition guarding amp.initialize cannot be evaluated where the "
                                       "scaler would have to be created for all of its uses")
        conditions = [cond for cond, _o in site.guards[chosen or 0:]] if site.guards else []
        if site.enabled_extra is not None:
            conditions.append(site.enabled_extra)
        scaler_args = list(site.scaler_args)
        has_enabled = any(a.keyword is not None and a.keyword.value == "enabled" for a in scaler_args)
        if conditions and not has_enabled:
            scaler_args.append(c.kwarg("enabled", c.and_all(conditions)))  # type: ignore[arg-type]
        site.autocast_enabled = c.and_all(conditions)
        scaler_stmt = c.assign_stmt(site.scaler, c.call(cst.Attribute(
            value=c.dotted(f"{self.torch}.amp"), attr=cst.Name("GradScaler")), *scaler_args))
        after = self.a.module.code_for_node(scaler_stmt).strip()
        if chosen is not None:
            self.editor.before[site.guards[chosen][1]].append(scaler_stmt)
            if site.rebinding is None:
                self.editor.remove(stmt)
            else:
                self.editor.replace_stmt[stmt] = lambda _u, r=site.rebinding: [r]
        else:
            replacement = [scaler_stmt] + ([site.rebinding] if site.rebinding is not None else [])
            self.editor.replace_stmt[stmt] = lambda upd, r=replacement: [
                r[0].with_changes(leading_lines=upd.leading_lines)] + r[1:]
        self.findings.changes.append(self.a.change(self.ids.rewrite, stmt, Operation.MODIFY, site.message,
                                                   site.severity, after=after))

    def _after_in(self, use: cst.CSTNode, owner: cst.BaseStatement, suite: cst.CSTNode) -> bool:
        """Is ``use`` inside ``owner`` or in a later statement of ``suite``?"""
        top = self.a.top_statement_in(use, suite)  # type: ignore[arg-type]
        if top is None:
            return False
        body = list(suite.body)  # type: ignore[attr-defined]
        return body.index(top) >= body.index(owner)

    # -- optimizer.step() --------------------------------------------------------------------------
    def _region_functions(self, site: InitSite) -> list[cst.CSTNode]:
        """Where ``site``'s scaler is visible: its function, or every method of its class for ``self.``."""
        if site.uses_self and isinstance(site.scope, cst.FunctionDef):
            owner = self.a.class_of(site.scope)
            if owner is not None:
                return [owner]
        return [site.scope]

    def _site_for(self, node: cst.CSTNode) -> InitSite:
        for site in self.sites:
            for region in self._region_functions(site):
                if region is node or any(anc is region for anc in self.a.ancestors(node)):
                    return site
        raise c.Refused(node, "this use is outside the function (or class) that calls amp.initialize, where the "
                          "scaler would not be visible")

    def _plan_steps(self, site: InitSite) -> list[cst.SimpleStatementLine]:
        found: list[cst.SimpleStatementLine] = []
        step_lines = [line for line in self.a.lines if m.matches(line, m.SimpleStatementLine(
            body=[m.Expr(m.Call(func=m.Attribute(attr=m.Name("step"))))]))]
        for region in self._region_functions(site):
            for stmt in (line for line in step_lines if self.a.within(line, region)):
                call_node = stmt.body[0].value  # type: ignore[union-attr]
                receiver = call_node.func.value
                if not any(c.same_expr(self.a.module, receiver, o) for o in site.optimizers):
                    continue
                if self._site_for(stmt) is not site:
                    continue
                if call_node.args:
                    raise c.Refused(call_node, "optimizer.step(closure) cannot go through GradScaler.step")
                found.append(stmt)
        # A step hidden in a larger statement would apply scaled gradients: refuse rather than miss it.
        statement_calls = {id(s.body[0].value) for s in found}  # type: ignore[union-attr]
        for region in self._region_functions(site):
            for call_node in (n for n in self.a.calls if m.matches(n.func, m.Attribute(attr=m.Name("step")))
                              and self.a.within(n, region)):
                receiver = call_node.func.value  # type: ignore[attr-defined]
                if id(call_node) not in statement_calls and any(
                        c.same_expr(self.a.module, receiver, o) for o in site.optimizers):
                    raise c.Refused(call_node, "an optimizer step is not a statement of its own line, so it "
                                           "cannot be routed through the scaler")
        # The same optimizer stepped outside the scaler's reach would apply scaled gradients: refuse.
        regions = [r for other in self.sites for r in self._region_functions(other)]
        for call_node in self.a.calls:
            if (m.matches(call_node.func, m.Attribute(attr=m.Name("step")))
                    and any(c.same_expr(self.a.module, call_node.func.value, o)  # type: ignore[attr-defined]
                            for o in site.optimizers)
                    and not any(self.a.within(call_node, r) for r in regions) and found):
                raise c.Refused(call_node, "the optimizer is also stepped outside the function (or class) that "
                                       "calls amp.initialize, where the scaler would not be visible")
        if not found:
            elsewhere = [s for s in self.a.calls if m.matches(s.func, m.Attribute(attr=m.Name("step")))
                         and any(c.same_expr(self.a.module, s.func.value, o) for o in site.optimizers)]
            if elsewhere:
                raise c.Refused(site.call, "the optimizer step is outside the function (or class) that calls "
                                       "amp.initialize, where the scaler would not be visible")
            raise c.Refused(site.call, "no `optimizer.step()` statement of the initialized optimizer was found")
        last_in_suite: dict[int, cst.SimpleStatementLine] = {}
        for stmt in found:
            last_in_suite[id(self.a.parent(stmt))] = stmt
        for stmt in found:
            receiver = stmt.body[0].value.func.value  # type: ignore[union-attr]
            new_call = c.method_call(site.scaler, "step", receiver)
            self.editor.replace_stmt[stmt] = lambda upd, new_call=new_call: [upd.with_changes(
                body=[upd.body[0].with_changes(value=new_call)])]
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, stmt, Operation.MODIFY, "optimizer step goes through the loss scaler", "safe",
                after=self.a.module.code_for_node(new_call)))
            self.consumed.add(id(stmt))
            site.uses.append(stmt)
            if last_in_suite[id(self.a.parent(stmt))] is stmt:
                update = c.expr_stmt(c.method_call(site.scaler, "update"))
                self.editor.after[stmt].append(update)
                self.findings.changes.append(self.a.change(
                    self.ids.rewrite, stmt, Operation.INSERT, "loss scale updated after the optimizer step",
                    "safe", after=self.a.module.code_for_node(update).strip()))
        return found

    # -- amp.scale_loss ----------------------------------------------------------------------------
    def _plan_scale_loss(self, call_node: cst.Call) -> None:
        site = self._site_for(call_node)
        with_item = self.a.parent(call_node)
        with_stmt = self.a.parent(with_item) if isinstance(with_item, cst.WithItem) else None
        if not isinstance(with_stmt, cst.With) or len(with_stmt.items) != 1 or with_stmt.asynchronous:
            raise c.Refused(call_node, "amp.scale_loss is not the only item of a `with` statement")
        item = with_stmt.items[0]
        if item.asname is None or not isinstance(item.asname.name, cst.Name):
            raise c.Refused(call_node, "amp.scale_loss without `as <name>`")
        if not isinstance(with_stmt.body, cst.IndentedBlock):
            raise c.Refused(call_node, "one-line `with amp.scale_loss(...)` body")
        loss_arg = c.call_arg(call_node, 0, "loss")
        if loss_arg is None:
            raise c.Refused(call_node, "amp.scale_loss without a loss argument")
        name = item.asname.name.value
        scaled = c.method_call(site.scaler, "scale", loss_arg.value)
        uses = [n for n in m.findall(with_stmt.body, m.Name(name))]
        backward_receivers = [n for n in uses if m.matches(self.a.parent(n), m.Attribute(attr=m.Name("backward")))
                              and self.a.parent(n).value is n]  # type: ignore[union-attr]
        if uses and len(uses) == len(backward_receivers):
            for n in backward_receivers:
                self.editor.replace_expr[n] = lambda _u, s=scaled: s
            prefix: list[cst.BaseStatement] = []
        else:
            prefix = [c.assign_stmt(cst.Name(name), scaled)]

        def unwrap(upd: cst.CSTNode, prefix: list[cst.BaseStatement] = prefix) -> list[cst.BaseStatement]:
            body = list(prefix) + list(upd.body.body)  # type: ignore[attr-defined]
            body[0] = body[0].with_changes(leading_lines=list(upd.leading_lines) + list(body[0].leading_lines))
            return body

        self.editor.replace_stmt[with_stmt] = unwrap
        self.consumed.add(id(with_stmt))
        extra = [a.keyword.value for a in call_node.args if a.keyword is not None and a.keyword.value != "loss"]
        note = f" (dropped {', '.join(extra)}: GradScaler unscales at step time)" if extra else ""
        self.findings.changes.append(self.a.change(
            self.ids.rewrite, with_stmt, Operation.MODIFY, "amp.scale_loss replaced by scaler.scale(loss)" + note,
            "safe", after=self.a.module.code_for_node(scaled)))
        site.uses.append(with_stmt)
        site.backward_stmts.append(with_stmt)

    def _plan_autocast(self, site: InitSite, backward_stmt: cst.BaseStatement) -> None:
        if site.autocast_dtype is None:
            return
        # Climb out of ``if args.fp16: <scaled> else: loss.backward()`` to the loop/function body.
        stmt: cst.BaseStatement = backward_stmt
        while True:
            suite = self.a.parent(stmt)
            owner = self.a.parent(suite) if suite is not None else None
            if isinstance(owner, cst.Else):
                owner = self.a.parent(owner)
            if isinstance(owner, cst.If):
                while isinstance(self.a.parent(owner), cst.If):  # elif chain
                    owner = self.a.parent(owner)
                stmt = owner
                continue
            break
        region = forward_region(self.a, stmt)
        if region is None:
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, backward_stmt, Operation.MODIFY,
                "no forward pass found in the block before the backward: autocast not inserted, run in float32",
                "review", after=""))
            return
        first, last = region
        if any(w.first is first for w in self.editor.wraps):
            return
        args: list[cst.Arg] = [cst.Arg(c.string("npu")),
                               c.kwarg("dtype", c.dotted(f"{self.torch}.{site.autocast_dtype}"))]
        if site.autocast_enabled is not None:
            args.append(c.kwarg("enabled", c.as_bool(site.autocast_enabled)))
        item = c.call(f"{self.torch}.autocast", *args)
        self.editor.wraps.append(c.Wrap(first=first, last=last, item=item))
        self.findings.changes.append(self.a.change(
            self.ids.rewrite, first, Operation.INSERT, "forward pass and loss run under autocast (apex O1/O2)",
            "review", after="with " + self.a.module.code_for_node(item) + ":"))

    # -- amp.master_params -------------------------------------------------------------------------
    def _plan_master_params(self, call_node: cst.Call, stepped: dict[int, list[cst.SimpleStatementLine]]) -> None:
        site = self._site_for(call_node)
        optim_arg = c.call_arg(call_node, 0, "optimizer")
        if optim_arg is None:
            raise c.Refused(call_node, "amp.master_params without an optimizer")
        optimizer = optim_arg.value
        if len(site.models) == 1:
            params: cst.BaseExpression = c.method_call(site.models[0], "parameters")
        else:
            params = _param_groups_generator(optimizer)
        self.editor.replace_expr[call_node] = lambda _u, p=params: p
        self.consumed.add(id(call_node))
        site.uses.append(call_node)
        clip = self.a.parent(self.a.parent(call_node))
        stmt = self.a.statement_of(call_node)
        steps = stepped[id(site)]
        followed = bool(c.steps_following(self.a, stmt, steps))
        if followed:
            unscale = c.expr_stmt(c.method_call(site.scaler, "unscale_", optimizer))
            self.editor.before[stmt].append(unscale)
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, call_node, Operation.MODIFY,
                "amp.master_params replaced by the model's parameters; gradients unscaled before clipping", "safe",
                after=self.a.module.code_for_node(unscale).strip() + "; ... " + self.a.module.code_for_node(params)))
            return
        if not isinstance(clip, cst.Call):
            raise c.Refused(call_node, "amp.master_params is not an argument of a clipping call")
        func_name = c.dotted_name_of(clip.func).rsplit(".", 1)[-1]
        if func_name not in CLIP_FUNCTIONS:
            raise c.Refused(call_node, "amp.master_params is used outside gradient clipping")
        keyword, position = CLIP_FUNCTIONS[func_name]
        threshold = c.call_arg(clip, position, keyword)
        if threshold is None:
            raise c.Refused(call_node, "the clipping threshold is not found")
        scaled = c.scaled_threshold(threshold.value, site.scaler)
        self.editor.replace_expr[threshold.value] = lambda _u, s=scaled: s
        self.findings.changes.append(self.a.change(
            self.ids.rewrite, call_node, Operation.MODIFY,
            "amp.master_params replaced by the model's parameters; this clip runs on every micro-step (no "
            "optimizer step follows in its block), where unscale_ may only run once per step, so the threshold "
            "is scaled by scaler.get_scale() instead (same clipping; the returned norm is in scaled units)",
            "review", after=self.a.module.code_for_node(params) + ", " + self.a.module.code_for_node(scaled)))

    # -- amp.state_dict / load_state_dict ----------------------------------------------------------
    def _plan_state(self, call_node: cst.Call, method: str) -> None:
        site = self._site_for(call_node)
        new = call_node.with_changes(func=cst.Attribute(value=site.scaler, attr=cst.Name(method)))
        self.editor.replace_expr[call_node] = lambda upd, s=site: upd.with_changes(  # type: ignore[attr-defined]
            func=cst.Attribute(value=s.scaler, attr=cst.Name(method)))
        self.consumed.add(id(call_node))
        site.uses.append(call_node)
        self.findings.changes.append(self.a.change(
            self.ids.rewrite, call_node, Operation.MODIFY,
            f"amp.{method} replaced by the GradScaler's (checkpoints written by apex hold a different layout)",
            "review", after=self.a.module.code_for_node(new)))


# --------------------------------------------------------------------------------------------------
# Helpers shared with AMP insertion
# --------------------------------------------------------------------------------------------------

def is_barrier(node: cst.CSTNode) -> bool:
    """Does the statement call backward/step/zero_grad/... (so it cannot belong to a forward region)?"""
    for found in m.findall(node, m.Call(func=m.Attribute())):
        if found.func.attr.value in _BARRIER_METHODS:  # type: ignore[attr-defined]
            return True
    return False


def forward_region(analysis: c.Analysis, stmt: cst.BaseStatement
                   ) -> Optional[tuple[cst.BaseStatement, cst.BaseStatement]]:
    """The statements before ``stmt`` in its block, back to the previous backward/step/zero_grad.

    These compute the forward pass and the loss that ``stmt`` back-propagates; None when there are none.
    """
    suite = analysis.parent(stmt)
    if not isinstance(suite, (cst.IndentedBlock, cst.Module)):
        return None
    body = list(suite.body)
    index = body.index(stmt)
    # ``optimizer.zero_grad()`` between the loss and its backward (timm's order) stays outside the region.
    while index > 0 and _is_zero_grad(body[index - 1]):
        index -= 1
    start = index
    while start > 0 and not is_barrier(body[start - 1]) and not _is_definition(body[start - 1]):
        start -= 1
    # Leading statements that only switch modes or move data are harmless inside autocast, but a region
    # made only of docstrings/imports would not be a forward pass.
    region = body[start:index]
    if not any(m.findall(s, m.Call()) for s in region):
        return None
    return region[0], region[-1]


def _is_zero_grad(stmt: cst.BaseStatement) -> bool:
    return m.matches(stmt, m.SimpleStatementLine(body=[m.Expr(m.Call(func=m.Attribute(attr=m.Name("zero_grad"))))]))


def _is_definition(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) or (
        isinstance(stmt, cst.SimpleStatementLine)
        and any(isinstance(s, (cst.Import, cst.ImportFrom, cst.Global, cst.Nonlocal)) for s in stmt.body))


def _assigned_names(root: cst.CSTNode) -> set[str]:
    """Names bound anywhere inside ``root`` (assignments, loop/with targets, imports, definitions)."""
    bound: set[str] = set()
    for target in m.findall(root, m.OneOf(m.AssignTarget(), m.AugAssign(), m.AnnAssign(), m.For(), m.CompFor(),
                                          m.AsName(), m.NamedExpr())):
        node = getattr(target, "target", None) or getattr(target, "name", None)
        if node is not None:
            bound |= c.names_in(node)
    for alias in m.findall(root, m.ImportAlias()):
        if alias.asname is None:  # type: ignore[attr-defined]
            bound.add(c.dotted_name_of(alias.name).split(".")[0])  # type: ignore[attr-defined]
    for definition in m.findall(root, m.OneOf(m.FunctionDef(), m.ClassDef())):
        bound.add(definition.name.value)  # type: ignore[attr-defined]
    return bound


def _elements(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(node, (cst.List, cst.Tuple)):
        return [e.value for e in node.elements]
    return [node]


def _param_groups_generator(optimizer: cst.BaseExpression) -> cst.GeneratorExp:
    """``(p for group in OPT.param_groups for p in group["params"])``: exactly what apex.master_params yields."""
    inner = cst.CompFor(target=cst.Name("p"), iter=cst.Subscript(value=cst.Name("group"), slice=[
        cst.SubscriptElement(slice=cst.Index(value=c.string("params")))]))
    outer = cst.CompFor(target=cst.Name("group"), iter=cst.Attribute(value=optimizer, attr=cst.Name("param_groups")),
                        inner_for_in=inner)
    return cst.GeneratorExp(elt=cst.Name("p"), for_in=outer)
