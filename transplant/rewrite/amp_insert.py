"""Opt-in mixed-precision insertion, ``--amp fp16|bf16`` (rule kind ``amp_insert``).

For code without mixed precision, each recognised training step gets:

* the statements that compute the forward pass and the loss (those before ``loss.backward()`` in its
  block, back to the previous ``zero_grad``/``step``/``backward``) wrapped in
  ``torch.autocast('npu', dtype=torch.float16)`` (or ``torch.bfloat16``);
* for fp16 only (bf16 has float32's range and needs no loss scaling): one ``torch.amp.GradScaler('npu')``
  created once — next to the optimizer, or before the training loop, or as ``self.scaler`` next to
  ``self.optimizer`` for a step method of a trainer class — and ``scaler.scale(loss).backward()``,
  ``scaler.step(optimizer)``, ``scaler.update()``, ``scaler.unscale_(optimizer)`` before gradient clipping.

Anything else is not guessed: the file (or the function) is left as it is and a row in
unsupported_api.csv says why — custom autograd Functions, gradients taken with ``torch.autograd.grad`` or
``create_graph=True``, manual loss scaling, a step whose forward pass is not in the backward's block, an
optimizer step with a closure, a step outside any loop whose optimizer is not an attribute (a scaler made
per call would lose its scale). Files that already use autocast/GradScaler/apex are left alone silently,
which also makes a second run a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import libcst as cst
import libcst.matchers as m

from transplant.results import Operation
from transplant.rewrite import amp_common as c
from transplant.rewrite.amp_writes import cast_index_writes
from transplant.rewrite.apex_amp import CLIP_FUNCTIONS, forward_region

# Mixed precision already present: leave the file alone (and stay idempotent on our own output).
_EXISTING_AMP = ("torch.amp", "torch.autocast", "torch.cuda.amp", "torch.npu.amp", "torch.cpu.amp",
                 "torch_npu.npu.amp", "apex")
_NOT_OPTIMIZERS = ("torch.optim.lr_scheduler", "torch.optim.swa_utils")


@dataclass(frozen=True)
class InsertRuleIds:
    rewrite: str
    unsupported: str


@dataclass
class _Scope:
    """The backward/step statements of one function (or of the module's top level)."""

    owner: Union[cst.FunctionDef, cst.Module]
    backwards: list[cst.SimpleStatementLine] = field(default_factory=list)
    steps: list[cst.SimpleStatementLine] = field(default_factory=list)
    odd_backwards: list[cst.Call] = field(default_factory=list)  # backward calls that are not a statement alone


def amp_insert_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point (runs only with ``--amp fp16`` or ``--amp bf16``)."""
    mode = ctx.options.get("amp")
    if mode not in ("fp16", "bf16"):
        return
    rewrite = next((r for r in rules if (r.role or "rewrite") == "rewrite"), None)
    if rewrite is None:
        return
    report = next((r for r in rules if r.role == "unsupported"), rewrite)
    editor, analysis, findings = plan_amp_insert(module, str(mode), InsertRuleIds(rewrite.id, report.id),
                                                 ctx.imports)
    if analysis is not None:
        ctx.lend_parents(analysis.parent)
    if editor is not None and analysis is not None and not editor.empty:
        if c.torch_alias(module) is None:
            ctx.add_import("torch", rewrite)
        editor.commit(ctx, analysis)
        # Values computed under autocast written into float32 buffers by index need a cast (TP432).
        cast_index_writes(analysis, ctx, [(w.first, w.last) for w in editor.wraps],
                          next((r for r in rules if r.role == "index_write"), None))
    findings.emit(ctx)


def plan_amp_insert(module: cst.Module, mode: str, ids: InsertRuleIds, imports=None
                    ) -> tuple[Optional[c.StatementEditor], Optional[c.Analysis], c.Findings]:
    """Decide the insertion for one original module."""
    findings = c.Findings()
    if ".backward(" not in module.code:
        return None, None, findings
    analysis = c.Analysis(module, imports)
    backwards = [s for s in analysis.lines if _backward_call(s) is not None]
    if analysis.uses_any(_EXISTING_AMP):
        return None, analysis, findings
    planner = _InsertPlanner(analysis, mode, ids, findings)
    try:
        planner.check_file(backwards)
    except c.Refused as skip:
        findings.unsupported.append(analysis.unsupported(
            ids.unsupported, skip.node, "mixed-precision insertion (--amp)", f"nothing inserted in this file: "
            f"{skip.reason}"))
        return None, analysis, findings
    for scope in planner.scopes(backwards):
        sub = c.StatementEditor()
        rows_before = len(findings.changes)
        try:
            planner.plan_scope(scope, sub)
        except c.Refused as skip:
            del findings.changes[rows_before:]
            findings.unsupported.append(analysis.unsupported(
                ids.unsupported, skip.node, "mixed-precision insertion (--amp)",
                f"nothing inserted here: {skip.reason}"))
            continue
        planner.editor.merge(sub)
    return planner.editor, analysis, findings


class _InsertPlanner:
    def __init__(self, analysis: c.Analysis, mode: str, ids: InsertRuleIds, findings: c.Findings) -> None:
        self.a = analysis
        self.mode = mode
        self.ids = ids
        self.findings = findings
        self.editor = c.StatementEditor()
        self.torch = c.torch_alias(analysis.module) or "torch"
        self.scaler_name = c.free_name(analysis.names)
        self.optimizer_keys, self.optimizer_assignments = self._optimizers()
        self.backward_scopes: set[int] = set()

    # -- whole-file refusals -----------------------------------------------------------------------
    def check_file(self, backwards: list[cst.SimpleStatementLine]) -> None:
        for cls in self.a.classes:
            for base in cls.bases:  # type: ignore[attr-defined]
                if self.a.resolves_to(base.value, "torch.autograd.Function") or self.a.resolves_to(
                        base.value, "torch.autograd.function.Function"):
                    raise c.Refused(cls, f"custom autograd Function `{cls.name.value}` would run its forward under "
                                    "autocast; decorate forward/backward with torch.amp.custom_fwd/custom_bwd"
                                    "(device_type='npu') and add autocast by hand")
        for node, name in self.a.uses_under("torch.autograd"):
            if name in ("torch.autograd.grad", "torch.autograd.backward"):
                raise c.Refused(node, f"`{name}` computes gradients outside loss.backward(); with a GradScaler they "
                                 "would be scaled (see the gradient-penalty recipe in the torch.amp docs)")
        for stmt in backwards:
            call_node = _backward_call(stmt)
            assert call_node is not None
            for arg in call_node.args:
                if arg.keyword is not None and arg.keyword.value == "create_graph":
                    raise c.Refused(stmt, "backward(create_graph=True) (higher-order gradients) needs unscaled "
                                     "gradients; add autocast and a GradScaler by hand")
            receiver = call_node.func.value  # type: ignore[attr-defined]
            if any("scale" in n.lower() for n in c.names_in(receiver)):
                raise c.Refused(stmt, "manual loss scaling is already present (the backward receiver mentions a "
                                 "scale); replace it by torch.amp.GradScaler('npu') by hand")

    def scopes(self, backwards: list[cst.SimpleStatementLine]) -> list[_Scope]:
        scopes: dict[int, _Scope] = {}
        for stmt in backwards:
            owner = self.a.scope_of(stmt)
            scopes.setdefault(id(owner), _Scope(owner)).backwards.append(stmt)
        self.backward_scopes = set(scopes)
        recognised = {id(_backward_call(s)) for s in backwards}
        for call_node in self.a.calls:
            if not m.matches(call_node.func, m.Attribute(attr=m.Name("backward"))) or id(call_node) in recognised:
                continue
            owner = self.a.scope_of(call_node)
            scopes.setdefault(id(owner), _Scope(owner)).odd_backwards.append(call_node)
        for stmt in self.a.lines:
            if not m.matches(stmt, m.SimpleStatementLine(body=[m.Expr(m.Call(func=m.Attribute(
                    attr=m.Name("step"))))])):
                continue
            call_node = stmt.body[0].value  # type: ignore[attr-defined]
            scope = scopes.get(id(self.a.scope_of(stmt)))
            if scope is not None and self._is_optimizer(call_node.func.value):
                scope.steps.append(stmt)
        return list(scopes.values())

    # -- one function ------------------------------------------------------------------------------
    def plan_scope(self, scope: _Scope, editor: c.StatementEditor) -> None:
        statement_steps = {id(s.body[0].value) for s in scope.steps}  # type: ignore[union-attr]
        for call_node in self.a.calls:
            if not m.matches(call_node.func, m.Attribute(attr=m.Name("step"))):
                continue
            if (id(call_node) not in statement_steps and self.a.scope_of(call_node) is scope.owner
                    and self._is_optimizer(call_node.func.value)):  # type: ignore[attr-defined]
                raise c.Refused(call_node, "an optimizer step is not a statement of its own line, so it cannot be "
                                      "routed through the scaler")
        # The same optimizer stepped in a function without backward would step scaled gradients unscaled.
        keys = {_key(self.a, s.body[0].value.func.value) for s in scope.steps}  # type: ignore[attr-defined]
        for call_node in self.a.calls:
            if (m.matches(call_node.func, m.Attribute(attr=m.Name("step")))
                    and self.a.scope_of(call_node) is not scope.owner
                    and c.is_simple_reference(call_node.func.value)  # type: ignore[attr-defined]
                    and _key(self.a, call_node.func.value) in keys  # type: ignore[attr-defined]
                    and id(self.a.scope_of(call_node)) not in self.backward_scopes):
                raise c.Refused(call_node, "the optimizer is also stepped in a function without backward(), which "
                                      "would apply scaled gradients")
        if scope.odd_backwards:
            raise c.Refused(scope.odd_backwards[0], "backward() is not a statement of its own line (inside a larger "
                                               "expression or a one-line block), so the step is not recognised")
        if not scope.steps:
            raise c.Refused(scope.backwards[0], "no optimizer step (`optimizer.step()` of a torch.optim optimizer) "
                                           "in the function that calls backward")
        for step in scope.steps:
            call_node = step.body[0].value  # type: ignore[attr-defined]
            if call_node.args:
                raise c.Refused(step, "optimizer.step(closure) cannot go through GradScaler.step")
        regions = []
        for stmt in scope.backwards:
            region = forward_region(self.a, stmt)
            if region is None:
                if stmt is scope.backwards[0]:
                    raise c.Refused(stmt, "the forward pass is not in the same block before loss.backward()")
                continue
            regions.append((stmt, region))
        dtype = "float16" if self.mode == "fp16" else "bfloat16"
        item = c.call(f"{self.torch}.autocast", cst.Arg(c.string("npu")),
                      c.kwarg("dtype", c.dotted(f"{self.torch}.{dtype}")))
        for stmt, (first, last) in regions:
            if any(w.first is first for w in editor.wraps):
                continue
            editor.wraps.append(c.Wrap(first=first, last=last, item=item))
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, first, Operation.INSERT, f"forward pass and loss run under {dtype} autocast",
                "review", after="with " + self.a.module.code_for_node(item) + ":"))
        if self.mode != "fp16":
            return
        scaler = self._plan_scaler(scope, editor)
        for stmt in scope.backwards:
            call_node = _backward_call(stmt)
            assert call_node is not None
            receiver = call_node.func.value  # type: ignore[attr-defined]
            scaled = c.method_call(scaler, "scale", receiver)
            editor.replace_expr[receiver] = lambda _u, s=scaled: s
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, receiver, Operation.MODIFY, "loss scaled before backward (fp16 GradScaler)",
                "safe", after=self.a.module.code_for_node(scaled)))
        last_in_suite: dict[int, cst.SimpleStatementLine] = {}
        for step in scope.steps:
            last_in_suite[id(self.a.parent(step))] = step
        for step in scope.steps:
            optimizer = step.body[0].value.func.value  # type: ignore[attr-defined]
            new_call = c.method_call(scaler, "step", optimizer)
            editor.replace_stmt[step] = lambda upd, n=new_call: [upd.with_changes(
                body=[upd.body[0].with_changes(value=n)])]
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, step, Operation.MODIFY, "optimizer step goes through the loss scaler (skipped "
                "when gradients overflowed)", "safe", after=self.a.module.code_for_node(new_call)))
            if last_in_suite[id(self.a.parent(step))] is step:
                update = c.expr_stmt(c.method_call(scaler, "update"))
                editor.after[step].append(update)
                self.findings.changes.append(self.a.change(
                    self.ids.rewrite, step, Operation.INSERT, "loss scale updated after the optimizer step(s)",
                    "safe", after=self.a.module.code_for_node(update).strip()))
        self._plan_clipping(scope, scaler, editor)

    def _plan_clipping(self, scope: _Scope, scaler: cst.BaseExpression, editor: c.StatementEditor) -> None:
        for call_node in self.a.calls:
            if not isinstance(call_node.func, (cst.Attribute, cst.Name)):
                continue
            short = c.dotted_name_of(call_node.func).rsplit(".", 1)[-1]  # type: ignore[attr-defined]
            if short not in CLIP_FUNCTIONS or self.a.scope_of(call_node) is not scope.owner:
                continue
            stmt = self.a.statement_of(call_node)
            later_steps = c.steps_following(self.a, stmt, scope.steps)
            if later_steps:
                seen: list[cst.BaseExpression] = []
                for step in later_steps:
                    optimizer = step.body[0].value.func.value  # type: ignore[attr-defined]
                    if any(c.same_expr(self.a.module, optimizer, o) for o in seen):
                        continue
                    seen.append(optimizer)
                    unscale = c.expr_stmt(c.method_call(scaler, "unscale_", optimizer))
                    editor.before[stmt].append(unscale)
                    self.findings.changes.append(self.a.change(
                        self.ids.rewrite, stmt, Operation.INSERT, "gradients unscaled before clipping",
                        "safe", after=self.a.module.code_for_node(unscale).strip()))
                continue
            keyword, position = CLIP_FUNCTIONS[short]
            threshold = c.call_arg(call_node, position, keyword)
            if threshold is None:
                raise c.Refused(stmt, "gradient clipping without a recognisable threshold")
            scaled = c.scaled_threshold(threshold.value, scaler)
            editor.replace_expr[threshold.value] = lambda _u, s=scaled: s
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, threshold.value, Operation.MODIFY,
                "clipping runs on scaled gradients (no optimizer step follows in its block, and unscale_ may run "
                "only once per step): threshold multiplied by the current loss scale", "review",
                after=self.a.module.code_for_node(scaled)))

    def _plan_scaler(self, scope: _Scope, editor: c.StatementEditor) -> cst.BaseExpression:
        """Create the scaler once, where it outlives the training loop; returns the expression naming it."""
        first_step = scope.steps[0]
        optimizer = first_step.body[0].value.func.value  # type: ignore[attr-defined]
        in_loop = any(isinstance(a, (cst.For, cst.While)) for a in self._ancestors_within(first_step, scope.owner))
        constructor = self._scaler_call()
        if in_loop:
            target: cst.BaseExpression = cst.Name(self.scaler_name)
            body = scope.owner.body if isinstance(scope.owner, cst.Module) else scope.owner.body
            suite = scope.owner if isinstance(scope.owner, cst.Module) else body
            if not isinstance(suite, (cst.IndentedBlock, cst.Module)):
                raise c.Refused(first_step, "one-line function body")
            top = self.a.top_statement_in(first_step, suite)
            assert top is not None
            anchor_after = None
            for stmt in suite.body[: list(suite.body).index(top)]:
                if any(stmt is s for s in self.optimizer_assignments.get(_key(self.a, optimizer), [])):
                    anchor_after = stmt
            new = c.assign_stmt(target, constructor)
            if anchor_after is not None:
                editor.after[anchor_after].append(new)
                where = anchor_after
            else:
                editor.before[top].append(new)
                where = top
            message = "one loss scaler for the training loop (fp16)"
            if anchor_after is None and isinstance(scope.owner, cst.FunctionDef):
                message += (f"; created on each call of {scope.owner.name.value}(), so the loss scale restarts "
                            "per call: move it next to the optimizer if the function runs once per epoch")
            self.findings.changes.append(self.a.change(
                self.ids.rewrite, where, Operation.INSERT, message, "review" if anchor_after is None else "safe",
                after=self.a.module.code_for_node(new).strip()))
            return target
        key = _key(self.a, optimizer)
        if not key.startswith("self."):
            raise c.Refused(first_step, "the optimizer step is not inside a loop of this function and the optimizer "
                                   "is not an attribute: a scaler created on every call would lose its loss scale")
        owner_class = self.a.class_of(scope.owner)
        assignments = [s for s in self.optimizer_assignments.get(key, [])
                       if owner_class is not None and self.a.class_of(self.a.scope_of(s)) is owner_class]
        if not assignments:
            raise c.Refused(first_step, f"no assignment of `{key}` in this class, so the scaler has no place to live")
        target = cst.Attribute(value=cst.Name("self"), attr=cst.Name(self.scaler_name))
        new = c.assign_stmt(target, constructor)
        editor.after[assignments[0]].append(new)
        self.findings.changes.append(self.a.change(
            self.ids.rewrite, assignments[0], Operation.INSERT, "one loss scaler next to the optimizer (fp16)",
            "safe", after=self.a.module.code_for_node(new).strip()))
        return target

    def _scaler_call(self) -> cst.Call:
        return c.call(cst.Attribute(value=c.dotted(f"{self.torch}.amp"), attr=cst.Name("GradScaler")),
                      cst.Arg(c.string("npu")))

    def _ancestors_within(self, node: cst.CSTNode, owner: cst.CSTNode) -> list[cst.CSTNode]:
        out = []
        for ancestor in self.a.ancestors(node):
            if ancestor is owner:
                break
            out.append(ancestor)
        return out

    # -- optimizers --------------------------------------------------------------------------------
    def _optimizers(self) -> tuple[set[str], dict[str, list[cst.SimpleStatementLine]]]:
        """Names/attributes assigned a torch.optim optimizer (``optimizer``, ``self.opt_g``) and where."""
        keys: set[str] = set()
        assignments: dict[str, list[cst.SimpleStatementLine]] = {}
        for stmt in self.a.lines:
            if len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Assign):
                continue
            assign = stmt.body[0]  # type: ignore[attr-defined]
            value = assign.value
            if not isinstance(value, cst.Call):
                continue
            qualified = self.a.resolves_to(value.func, "torch.optim")
            is_optimizer = (qualified is not None and not qualified.startswith(_NOT_OPTIMIZERS)
                            and qualified.rsplit(".", 1)[-1][:1].isupper())
            for target in assign.targets:
                if not c.is_simple_reference(target.target):
                    continue
                key = _key(self.a, target.target)
                if is_optimizer or "optim" in key.rsplit(".", 1)[-1].lower():
                    keys.add(key)
                    assignments.setdefault(key, []).append(stmt)
        return keys, assignments

    def _is_optimizer(self, receiver: cst.BaseExpression) -> bool:
        if not c.is_simple_reference(receiver):
            return False
        key = _key(self.a, receiver)
        if key in self.optimizer_keys:
            return True
        # A parameter or attribute named like an optimizer (``def train(model, optimizer, ...)``).
        last = key.rsplit(".", 1)[-1].lower()
        return "optim" in last and "sched" not in last


def _key(analysis: c.Analysis, node: cst.BaseExpression) -> str:
    return "".join(analysis.module.code_for_node(node).split())


def _backward_call(stmt: cst.SimpleStatementLine) -> Optional[cst.Call]:
    if len(stmt.body) != 1 or not isinstance(stmt.body[0], cst.Expr):
        return None
    value = stmt.body[0].value
    if isinstance(value, cst.Call) and m.matches(value.func, m.Attribute(attr=m.Name("backward"))):
        return value
    return None
