"""Rule kind ``arguments``: add / rename / drop keyword arguments of a qualified callable.

Order of operations on one call (as tf_upgrade_v2): positional normalisation (only when needed, from the
rule's ordered ``params``), then keyword renames, drops, and finally additions. An argument is added
only when absent (by keyword or by position); a call that passes ``*args``/``**kwargs`` cannot be
checked, so it gets an unsupported row instead of a possibly duplicate keyword.

The ``pickle_load`` kind (``torch.load`` and ``weights_only``) is handled here too, on the same calls:
it decides first whether the call can only load weights; if not, it either adds the keyword (when the
run option allows) or reports the call and keeps the rules it ``holds`` from editing it.

A rule's ``callable`` is matched against the call's qualified name as written in the original file
*and* against that name after renaming, so a ``rename`` and an ``arguments`` rule compose on the same
call (``torch.cuda.amp.GradScaler()`` -> ``torch.amp.GradScaler('npu')``): the rename edits the callee
node, this kind edits the call node built from the renamed callee. A bare decorator
(``@torch.cuda.amp.custom_fwd``) becomes a call when arguments are added.
"""

from __future__ import annotations

from typing import Optional, Sequence

import libcst as cst

from transplant.rewrite.context import FileContext
from transplant.rules import ArgumentsRule, PickleLoadRule

_NO_SPACE = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


def _keyword_arg(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(value=value, keyword=cst.Name(name), equal=_NO_SPACE)


class _Plan:
    """What one rule does to one call's argument list."""

    def __init__(self, rule: ArgumentsRule, args: Sequence[cst.Arg]) -> None:
        self.rule = rule
        positional = []
        self.keywords: dict[str, int] = {}
        self.has_star = False
        for i, a in enumerate(args):
            if a.star:
                self.has_star = True
            elif a.keyword is None:
                positional.append(i)
            else:
                self.keywords[a.keyword.value] = i
        self.positional = positional
        params = rule.params
        present = set(self.keywords) | {params[k] for k in range(min(len(positional), len(params)))}
        self.to_add = [n for n in rule.add if n not in present]
        self.blocked_add = self.to_add if self.has_star else []
        if self.has_star:
            self.to_add = []
        self.renames = [(o, n) for o, n in rule.rename.items() if o in self.keywords]
        drop_pos = [params.index(d) for d in rule.drop if d in params and params.index(d) < len(positional)]
        self.drops = [d for d in rule.drop if d in self.keywords]
        # Positions that must become keywords: from the first dropped positional on, or all of them
        # when new arguments go first.
        start: Optional[int] = min(drop_pos) if drop_pos else None
        if self.to_add and rule.add_positional and positional:
            start = 0
        if start is not None and len(positional) > len(params):
            start = None  # more positionals than known parameters: cannot name them safely
            drop_pos = []
        self.normalise_from = start
        self.drops += [params[i] for i in drop_pos] if start is not None else []

    def empty(self) -> bool:
        return not (self.to_add or self.renames or self.drops or self.normalise_from is not None)


def apply_rule(rule: ArgumentsRule, args: Sequence[cst.Arg],
               before_args: cst.BaseParenthesizableWhitespace = cst.SimpleWhitespace("")) -> list[cst.Arg]:
    """The argument list after ``rule`` (``before_args``: the call's whitespace before its first argument)."""
    plan = _Plan(rule, args)
    out = list(args)
    if plan.normalise_from is not None:
        for n, i in enumerate(plan.positional):
            if n >= plan.normalise_from:
                out[i] = out[i].with_changes(keyword=cst.Name(rule.params[n]), equal=_NO_SPACE)
    renames = dict(plan.renames)
    drops = set(plan.drops)
    result: list[cst.Arg] = []
    for a in out:
        name = a.keyword.value if a.keyword is not None else None
        if name in drops:
            continue
        if name in renames:
            a = a.with_changes(keyword=cst.Name(renames[name]))
        result.append(a)
    if plan.to_add:
        new = [cst.parse_expression(rule.add[n]) for n in plan.to_add]
        has_positional = any(a.keyword is None and not a.star for a in result)
        if rule.add_positional and not has_positional:
            result = [cst.Arg(value=v) for v in new] + result
        else:
            added = [_keyword_arg(n, v) for n, v in zip(plan.to_add, new)]
            last = result[-1].comma if result else cst.MaybeSentinel.DEFAULT
            if isinstance(last, cst.Comma) and isinstance(last.whitespace_after, cst.ParenthesizedWhitespace):
                # one argument per line with a trailing comma: the new ones follow the same layout
                indent = result[-2].comma.whitespace_after if len(result) >= 2 and isinstance(result[-2].comma, cst.Comma) \
                    else before_args
                line_comma = cst.Comma(whitespace_after=indent)
                result[-1] = result[-1].with_changes(comma=line_comma)
                added = [a.with_changes(comma=line_comma) for a in added[:-1]] + [added[-1].with_changes(comma=last)]
            elif isinstance(last, cst.Comma) and isinstance(last.whitespace_after, cst.SimpleWhitespace) \
                    and last.whitespace_after.value == "":
                # `f(a,)` + b -> `f(a, b)`, not `f(a,b)`
                result[-1] = result[-1].with_changes(comma=last.with_changes(whitespace_after=cst.SimpleWhitespace(" ")))
            result += added
    return result


class ArgumentRules:
    def __init__(self, ctx: FileContext, index: object) -> None:
        self.ctx = ctx
        self.index = index
        self.by_callable: dict[str, list[ArgumentsRule]] = {}
        self.pickle_loads: dict[str, list[PickleLoadRule]] = {}
        for rule in ctx.ruleset:
            if isinstance(rule, ArgumentsRule):
                self.by_callable.setdefault(rule.callable, []).append(rule)
            elif isinstance(rule, PickleLoadRule):
                self.pickle_loads.setdefault(rule.callable, []).append(rule)

    def _rules_for(self, qual: Optional[str]) -> list[ArgumentsRule]:
        if qual is None or not self.by_callable:
            return []
        rules = list(self.by_callable.get(qual, ()))
        renamed = self.index.rename_of(qual)  # type: ignore[attr-defined]
        if renamed != qual:
            rules += [r for r in self.by_callable.get(renamed, ()) if r not in rules]
        return rules

    def call(self, node: cst.Call, stack: Sequence[cst.CSTNode], qual: Optional[str]) -> None:
        held: set[str] = set()
        trusted: list[ArgumentsRule] = []
        for pickle_rule in self.pickle_loads.get(qual or "", ()):
            verdict = self._pickle_load(node, stack, pickle_rule)
            if verdict is _HOLD:
                held.update(pickle_rule.holds)
            elif verdict is not None:
                trusted.append(verdict)
        for rule in [*(r for r in self._rules_for(qual) if r.id not in held), *trusted]:
            plan = _Plan(rule, node.args)
            if plan.blocked_add:
                self.ctx.record_unsupported(
                    node, rule, qual or "",
                    f"could not add {', '.join(f'{n}={rule.add[n]}' for n in plan.blocked_add)}: the call passes "
                    f"*args/**kwargs; add it by hand if it is missing. {rule.tip}".strip())
            if plan.empty():
                continue
            self.ctx.replace(node, lambda u, _r=rule: u.with_changes(  # type: ignore[attr-defined]
                args=apply_rule(_r, u.args, u.whitespace_before_args)), ancestors=stack)  # type: ignore[attr-defined]
            before = self.ctx.code(node)
            after = self.ctx.module.code_for_node(node.with_changes(
                args=apply_rule(rule, node.args, node.whitespace_before_args)))
            self.ctx.record_change(node, rule, rule.message, before=_short(before), after=_short(after))
            if any(_names_torch(rule.add[n]) for n in plan.to_add):
                self.ctx.add_import("torch", rule)  # the added expression spells `torch.`

    def _pickle_load(self, node: cst.Call, stack: Sequence[cst.CSTNode],
                     rule: PickleLoadRule) -> Optional[object]:
        """None: nothing to do; ``_HOLD``: reported, leave the call alone; else the rule adding the keyword."""
        if any(a.star for a in node.args) or any(a.keyword is not None and a.keyword.value == rule.keyword
                                                for a in node.args):
            return None  # the caller decided (or **kwargs may carry it: cannot tell)
        if _loads_only_weights(node, stack, rule.weights_consumers):
            return None
        if self.ctx.options.get(rule.option):
            return ArgumentsRule(id=rule.id, kind=rule.kind, severity=rule.severity, message=rule.message,
                                 tip=rule.tip, needs_torch_npu=rule.needs_torch_npu, source=rule.source,
                                 callable=rule.callable, params=rule.params, add={rule.keyword: rule.value})
        self.ctx.record_unsupported(node, rule, f"{_short(self.ctx.code(node), 80)} (may unpickle objects)",
                                    rule.tip)
        return _HOLD

    def decorator(self, node: cst.Decorator, stack: Sequence[cst.CSTNode]) -> None:
        expr = node.decorator
        if not isinstance(expr, (cst.Name, cst.Attribute)):
            return
        for rule in self._rules_for(self.ctx.imports.qualify(expr)):
            if not rule.add:
                continue
            args = apply_rule(rule, [])

            def edit(u: cst.CSTNode, _args=args) -> cst.CSTNode:
                assert isinstance(u, cst.Decorator)
                return u.with_changes(decorator=cst.Call(func=u.decorator, args=_args))

            self.ctx.replace(node, edit, ancestors=stack)
            before = self.ctx.code(expr)
            after = self.ctx.module.code_for_node(cst.Call(func=expr, args=args))
            self.ctx.record_change(expr, rule, rule.message, before=before, after=after)
            return


_HOLD = object()


def _names_torch(expression: str) -> bool:
    return "torch." in expression


def _loads_only_weights(node: cst.Call, stack: Sequence[cst.CSTNode], consumers: frozenset[str]) -> bool:
    """Whether the loaded object can only be weights: the call is passed straight to a consumer
    (``model.load_state_dict(torch.load(f))``), or it is assigned to a name whose every other use in
    the same function is such an argument (``sd = torch.load(f); model.load_state_dict(sd)``)."""
    parent = stack[-1] if stack else None
    if isinstance(parent, cst.Arg) and len(stack) >= 2 and _is_consumer_call(stack[-2], parent, consumers):
        return True
    if not (isinstance(parent, cst.Assign) and parent.value is node and len(parent.targets) == 1
            and isinstance(parent.targets[0].target, cst.Name)):
        return False
    name = parent.targets[0].target.value
    scope = next((n for n in reversed(stack) if isinstance(n, (cst.FunctionDef, cst.Module))), None)
    if scope is None:
        return False
    uses = _UsesOf(name, parent.targets[0].target, consumers)
    scope.visit(uses)
    return uses.consumed and not uses.other


def _is_consumer_call(call: cst.CSTNode, arg: cst.Arg, consumers: frozenset[str]) -> bool:
    if not isinstance(call, cst.Call) or arg.keyword is not None or arg.star or not call.args or call.args[0] is not arg:
        return False
    func = call.func
    name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
    return name in consumers


class _UsesOf(cst.CSTVisitor):
    """Counts the uses of one name: as the first argument of a consumer call, or anything else."""

    def __init__(self, name: str, binding: cst.Name, consumers: frozenset[str]) -> None:
        self.name, self.binding, self.consumers = name, binding, consumers
        self.consumed = self.other = False

    def visit_Call(self, node: cst.Call) -> Optional[bool]:
        if node.args and isinstance(node.args[0].value, cst.Name) and node.args[0].value.value == self.name \
                and _is_consumer_call(node, node.args[0], self.consumers):
            self.consumed = True
            node.func.visit(self)
            for arg in node.args[1:]:
                arg.visit(self)
            return False
        return True

    def visit_Name(self, node: cst.Name) -> Optional[bool]:
        if node.value == self.name and node is not self.binding:
            self.other = True
        return False

    def visit_Attribute(self, node: cst.Attribute) -> Optional[bool]:
        node.value.visit(self)  # `x.name` is not a use of `name`
        return False


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
