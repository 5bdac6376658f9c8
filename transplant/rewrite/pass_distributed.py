"""The ``to_ddp`` structural pass (``--distributed``): a single-device training script becomes one that
runs under torchrun with DistributedDataParallel on HCCL, and still runs as a single process.

Rules of kind ``to_ddp`` in ``rules/distributed.json`` (all ``requires_option: distributed``) select the
parts by ``role``; every inserted or modified statement is a row of its part's rule:

* ``init`` (TP200) — after the entry's ``parse_args()`` (so ``--help`` works without a launcher and
  nothing happens at import time): ``if WORLD_SIZE > 1: torch.npu.set_device(LOCAL_RANK);
  init_process_group("hccl")``. A single process never initialises a group;
* ``device`` (TP203) — ``torch.device("cuda")`` becomes ``torch.device("npu", torch.npu.current_device())``
  (``npu:LOCAL_RANK``); a CPU branch stays CPU; a string device (``"npu"``) already means the
  current device, which ``set_device`` chose;
* ``wrap`` (TP201) — the model (what the optimizer's parameters come from, or ``--model NAME``) is wrapped
  in ``DistributedDataParallel(device_ids=[current device])`` after the optimizer and any
  ``amp.initialize`` that follows it, when a process group exists;
* ``data_parallel`` (TP202) — ``model = DataParallel(model)`` goes (DDP replaces it);
* ``sampler`` (TP204) — training loaders get a ``DistributedSampler`` (shuffle moved into it; through the
  ``**kwargs`` dict when the call uses one, so no keyword is passed twice); evaluation loaders stay whole,
  so every rank computes the metrics over the whole test set (identical on every rank);
* ``set_epoch`` (TP205) — ``loader.sampler.set_epoch(epoch)`` at the top of the epoch loop;
* ``unwrap`` (TP206) — ``state_dict()``/``load_state_dict()`` of the model go through the unwrapped
  module, so checkpoints keep their keys (no ``module.`` prefix) and load in either mode;
* ``rank_zero`` (TP207) — ``torch.save``, ``print`` and logging statements run on rank 0 only;
* ``refused`` (TP298) / ``already`` (TP299) — report rows when the file is left as it was.

Which files: with ``--entry`` only that one; otherwise every file that parses arguments and calls
``backward``. The plan is all or nothing per file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import libcst as cst

from transplant.results import Operation
from transplant.rewrite import amp_common as c
from transplant.rewrite.passes import register_pass

_ALREADY = ("DistributedDataParallel", "init_process_group", "LOCAL_RANK", "DistributedSampler")
_DATA_PARALLEL = ("torch.nn.DataParallel", "torch.nn.parallel.DataParallel",
                  "torch.nn.parallel.data_parallel.DataParallel")
_LOADER = ("torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader")
_LOG_CALLS = ("print", "logging.info", "logging.warning", "logger.info", "logger.warning", "log.info")
_EVAL_WORDS = ("test", "val", "eval", "dev")


class _Refused(Exception):
    def __init__(self, node: Optional[cst.CSTNode], reason: str) -> None:
        super().__init__(reason)
        self.node = node
        self.reason = reason


@dataclass
class _StmtPlan:
    """What happens to one original statement: statements before/after it, a guard around it, removal."""

    before: list[cst.BaseStatement] = field(default_factory=list)
    after: list[cst.BaseStatement] = field(default_factory=list)
    guard: Optional[cst.BaseExpression] = None
    replace_with_pass: bool = False
    remove: bool = False


@register_pass("to_ddp")
def to_ddp_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``to_ddp`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    roles = {r.role: r for r in rules}
    entry = ctx.options.get("entry")
    source = ctx.source_text
    if entry:
        if ctx.path != entry:
            return
    elif ".parse_args(" not in source or ".backward(" not in source:
        return
    analysis = c.Analysis(module, ctx.imports)
    found = [word for word in _ALREADY if word in source]
    if found:
        rule = roles.get("already")
        if rule is not None:
            ctx.record_unsupported(None, rule, "already distributed",
                                   f"uses {', '.join(found)}: left as it is by --distributed", line=1)
        return
    try:
        _Converter(module, ctx, analysis, roles).run()
    except _Refused as refused:
        rule = roles.get("refused")
        if rule is not None:
            ctx.record_unsupported(refused.node, rule, "--distributed", f"not converted: {refused.reason}",
                                   line=1)


class _Converter:
    def __init__(self, module: cst.Module, ctx, analysis: c.Analysis, roles: dict) -> None:
        self.module = module
        self.ctx = ctx
        self.analysis = analysis
        self.roles = roles
        self.torch = c.torch_alias(module)
        self.plans: dict[int, tuple[cst.BaseStatement, _StmtPlan]] = {}
        self.expr_edits: list[tuple[cst.CSTNode, object]] = []
        self.rows: list[tuple] = []  # (node, role, message, before, after, operation, after_node)
        self.needs_os = False
        self.removed_data_parallel: set[int] = set()

    # ------------------------------------------------------------------ building blocks
    def t(self, dotted: str) -> cst.BaseExpression:
        return c.dotted(f"{self.torch}.{dotted}")

    def initialized(self) -> cst.BaseExpression:
        return c.call(self.t("distributed.is_initialized"))

    def current_device(self) -> cst.BaseExpression:
        return c.call(self.t("npu.current_device"))

    def rank_zero(self) -> cst.BaseExpression:
        rank = cst.Comparison(c.call(self.t("distributed.get_rank")),
                              [cst.ComparisonTarget(cst.Equal(), cst.Integer("0"))])
        return cst.BooleanOperation(c.negate(self.initialized()), cst.Or(), rank)

    def unwrapped(self, model: cst.BaseExpression) -> cst.BaseExpression:
        ddp = self.t("nn.parallel.DistributedDataParallel")
        return cst.IfExp(test=c.call("isinstance", model, ddp), body=cst.Attribute(model, cst.Name("module")),
                         orelse=model, lpar=[cst.LeftParen()], rpar=[cst.RightParen()])

    def plan(self, stmt: cst.BaseStatement) -> _StmtPlan:
        entry = self.plans.get(id(stmt))
        if entry is None:
            entry = (stmt, _StmtPlan())
            self.plans[id(stmt)] = entry
        return entry[1]

    def row(self, node: cst.CSTNode, role: str, message: str, operation: Operation, after: str,
            before: str = "", after_node: bool = False) -> None:
        self.rows.append((node, role, message, before, after, operation, after_node))

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)

    def block_statement(self, node: cst.CSTNode) -> cst.BaseStatement:
        """The statement holding ``node`` that sits directly in an indented block or the module."""
        stmt = self.analysis.statement_of(node)
        parent = self.analysis.parent(stmt)
        if not isinstance(parent, (cst.IndentedBlock, cst.Module)):
            raise _Refused(stmt, f"line `{c.first_line(self.code(stmt))}` is a one-line block")
        return stmt

    # ------------------------------------------------------------------ the plan
    def run(self) -> None:
        if self.torch is None:
            raise _Refused(None, "no module-level `import torch`")
        for role in ("init", "wrap", "sampler", "unwrap", "rank_zero", "device", "set_epoch", "data_parallel"):
            if role not in self.roles:
                raise _Refused(None, f"rule part {role!r} is deselected")
        anchor = self._anchor()
        model = self._model()
        wrap_after = self._wrap_point(model)
        self._init(anchor)
        self._devices()
        self._data_parallel(model)
        self._wrap(model, wrap_after)
        train_loaders = self._loaders()
        self._set_epoch(train_loaders)
        self._unwrap(model)
        self._rank_zero()
        self._commit()

    def _anchor(self) -> cst.BaseStatement:
        for line in self.analysis.lines:
            for small in line.body:
                value = getattr(small, "value", None)
                if (isinstance(small, (cst.Assign, cst.AnnAssign)) and isinstance(value, cst.Call)
                        and isinstance(value.func, cst.Attribute)
                        and value.func.attr.value in ("parse_args", "parse_known_args")):
                    return self.block_statement(line)
        raise _Refused(None, "no `args = parser.parse_args()` to start the process group after")

    def _model(self) -> cst.BaseExpression:
        wanted = self.ctx.options.get("model")
        for call in self.analysis.calls:
            qual = self.analysis.qualified(call.func) or ""
            if not qual.startswith("torch.optim.") or qual.startswith("torch.optim.lr_scheduler"):
                continue
            arg = c.call_arg(call, 0, "params")
            value = arg.value if arg is not None else None
            if (isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute)
                    and value.func.attr.value == "parameters" and c.is_simple_reference(value.func.value)
                    and self.code(value.func.value) != "self"):  # a wrapper's own parameters(): not a model
                if wanted and self.code(value.func.value) != wanted:
                    continue
                self.optimizer_call = call
                return value.func.value
        if wanted:
            # --model names it: wrap after its last assignment instead
            assigned = [line for line in self.analysis.lines for small in line.body
                        if isinstance(small, cst.Assign) and any(self.code(t.target) == wanted for t in small.targets)]
            if assigned:
                self.optimizer_call = assigned[-1]
                return next(t.target for small in assigned[-1].body if isinstance(small, cst.Assign)
                            for t in small.targets if self.code(t.target) == wanted)
            raise _Refused(None, f"--model {wanted}: no optimizer built from {wanted}.parameters() and no "
                           f"assignment to {wanted}")
        raise _Refused(None, "no optimizer built from `<model>.parameters()` (name the model with --model)")

    def _wrap_point(self, model: cst.BaseExpression) -> cst.BaseStatement:
        """The optimizer's statement, or a later ``amp.initialize`` of the same block."""
        stmt = self.block_statement(self.optimizer_call)
        block = self.analysis.parent(stmt)
        body = list(block.body)  # type: ignore[union-attr]
        point = stmt
        for later in body[body.index(stmt) + 1:]:
            text = self.code(later)
            if "amp.initialize(" in text or "GradScaler(" in text:
                point = later
        return point

    def _init(self, anchor: cst.BaseStatement) -> None:
        os_name = self._os_name()
        world = c.call("int", c.call(f"{os_name}.environ.get", c.string("WORLD_SIZE"), c.string("1")))
        local_rank = c.call("int", cst.Subscript(c.dotted(f"{os_name}.environ"),
                                                 [cst.SubscriptElement(cst.Index(c.string("LOCAL_RANK")))]))
        body = [c.expr_stmt(c.call(self.t("npu.set_device"), local_rank)),
                c.expr_stmt(c.call(self.t("distributed.init_process_group"), c.string("hccl")))]
        test = cst.Comparison(world, [cst.ComparisonTarget(cst.GreaterThan(), cst.Integer("1"))])
        statement = cst.If(test=test, body=cst.IndentedBlock(body))
        self.plan(anchor).after.append(statement)
        self.row(anchor, "init", "process group from torchrun's environment: set_device(LOCAL_RANK) and "
                 "init_process_group('hccl') when WORLD_SIZE > 1 (a single process starts none)",
                 Operation.INSERT, f"if {self.code(test)}: ...", after_node=True)

    def _os_name(self) -> str:
        for local, qualified in self.ctx.imports.bindings.items():
            if qualified == "os":
                return local
        self.needs_os = True  # imported at commit: a refusal later in the plan must leave the file alone
        return "os"

    def _devices(self) -> None:
        for call in self.analysis.calls:
            if self.analysis.qualified(call.func) != "torch.device" or len(call.args) != 1:
                continue
            value = c.literal_value(call.args[0].value)
            if value not in ("cuda", "npu"):
                continue
            index = cst.Arg(self.current_device())

            def edit(updated: cst.CSTNode, index: cst.Arg = index) -> cst.CSTNode:
                assert isinstance(updated, cst.Call)
                return updated.with_changes(args=[updated.args[0].with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), index])

            self.expr_edits.append((call, edit))
            self.row(call, "device", "the device is this rank's NPU (npu:LOCAL_RANK, set by set_device)",
                     Operation.MODIFY, f"{self.code(call.func)}({self.code(call.args[0].value).replace('cuda', 'npu')}, "
                     f"{self.torch}.npu.current_device())", before=self.code(call))

    def _data_parallel(self, model: cst.BaseExpression) -> None:
        target = self.code(model)
        for line in self.analysis.lines:
            if len(line.body) != 1 or not isinstance(line.body[0], cst.Assign):
                continue
            assign = line.body[0]
            value = assign.value
            if not (isinstance(value, cst.Call) and self.analysis.qualified(value.func) in _DATA_PARALLEL):
                continue
            if [self.code(t.target) for t in assign.targets] != [target]:
                raise _Refused(line, f"DataParallel assigned to another name than the model {target}")
            stmt = self.block_statement(line)
            block = self.analysis.parent(stmt)
            plan = self.plan(stmt)
            if len(block.body) == 1:  # type: ignore[union-attr]
                plan.replace_with_pass = True
            else:
                plan.remove = True
            self.row(stmt, "data_parallel", "DataParallel removed: DistributedDataParallel wraps the model "
                     "instead (checkpoints keep unprefixed keys; one written by the DataParallel original has "
                     "'module.' keys)", Operation.DELETE, "pass" if plan.replace_with_pass else "",
                     before=c.first_line(self.code(stmt)))
            self.removed_data_parallel.add(id(value))

    def _wrap(self, model: cst.BaseExpression, point: cst.BaseStatement) -> None:
        ddp = c.call(self.t("nn.parallel.DistributedDataParallel"), model,
                     c.kwarg("device_ids", cst.List([cst.Element(self.current_device())])))
        statement = cst.If(test=self.initialized(), body=cst.IndentedBlock([c.assign_stmt(model, ddp)]))
        self.plan(point).after.append(statement)
        self.row(point, "wrap", f"{self.code(model)} wrapped in DistributedDataParallel on this rank's NPU "
                 "(after it is on the device and its optimizer exists)", Operation.INSERT,
                 f"{self.code(model)} = {self.code(ddp)}", after_node=True)

    # ------------------------------------------------------------------ data
    def _loaders(self) -> list[cst.BaseExpression]:
        train: list[cst.BaseExpression] = []
        for call in self.analysis.calls:
            if self.analysis.qualified(call.func) not in _LOADER:
                continue
            stmt = self.analysis.statement_of(call)
            small = stmt.body[0] if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 else None
            if not (isinstance(small, cst.Assign) and small.value is call and len(small.targets) == 1):
                raise _Refused(call, "a DataLoader that is not assigned to one variable")
            target = small.targets[0].target
            dataset = c.call_arg(call, 0, "dataset")
            if dataset is None or not c.is_simple_reference(dataset.value):
                raise _Refused(call, "a DataLoader whose dataset is not a variable")
            if not self._is_training(call, target, dataset.value):
                continue  # evaluation: every rank sees the whole set, so metrics need no all-reduce
            if c.call_arg(call, 2, "sampler") is not None or c.call_arg(call, 5, "batch_sampler") is not None:
                raise _Refused(call, f"the training loader {self.code(target)} has its own sampler; shard it by hand")
            stars = [a for a in call.args if a.star == "**"]
            if stars:
                self._sampler_through_kwargs(call, stmt, stars, dataset.value)
            else:
                self._sampler_keyword(call, dataset.value)
            train.append(target)
        if not train:
            raise _Refused(None, "no training DataLoader (a loader named or fed *train*, or shuffling)")
        return train

    def _is_training(self, call: cst.Call, target: cst.BaseExpression, dataset: cst.BaseExpression) -> bool:
        names = (self.code(target) + " " + self.code(dataset)).lower()
        if "train" in names:
            return True
        if any(word in names for word in _EVAL_WORDS):
            return False
        shuffle = c.call_arg(call, 2, "shuffle")
        return shuffle is not None and c.literal_value(shuffle.value) is True

    def _sampler_keyword(self, call: cst.Call, dataset: cst.BaseExpression) -> None:
        shuffle_arg = c.call_arg(call, 2, "shuffle")
        shuffle = shuffle_arg.value if shuffle_arg is not None else cst.Name("False")
        sampler = cst.IfExp(test=self.initialized(), body=c.call(
            self.t("utils.data.distributed.DistributedSampler"), dataset, c.kwarg("shuffle", shuffle)),
            orelse=cst.Name("None"))
        literal = c.literal_value(shuffle)
        new_shuffle = (c.negate(self.initialized()) if literal is True else
                       shuffle if literal is False else
                       cst.BooleanOperation(c.parenthesize(shuffle), cst.And(), c.negate(self.initialized())))
        sampler_arg = c.kwarg("sampler", sampler)

        def edit(updated: cst.CSTNode) -> cst.CSTNode:
            assert isinstance(updated, cst.Call)
            args = []
            for original, new in zip(call.args, updated.args):
                args.append(new.with_changes(value=new_shuffle) if original is shuffle_arg and shuffle_arg.keyword
                            else new)
            last = args[-1]
            args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            args.append(sampler_arg.with_changes(comma=last.comma) if isinstance(last.comma, cst.Comma)
                        else sampler_arg)
            return updated.with_changes(args=args)

        if shuffle_arg is not None and shuffle_arg.keyword is None:
            raise _Refused(call, "shuffle passed positionally to the training DataLoader")
        self.expr_edits.append((call, edit))
        self.row(call, "sampler", "training loader sharded over the ranks by a DistributedSampler (shuffling "
                 "moved into it)", Operation.MODIFY, self.code(sampler_arg), before=c.first_line(self.code(call)))

    def _sampler_through_kwargs(self, call: cst.Call, stmt: cst.BaseStatement, stars: list[cst.Arg],
                                dataset: cst.BaseExpression) -> None:
        named = {a.keyword.value for a in call.args if a.keyword is not None}
        if len(stars) != 1 or not isinstance(stars[0].value, cst.Name) or named & {"shuffle", "sampler"}:
            raise _Refused(call, "a training DataLoader with several **kwargs or with shuffle/sampler next to them")
        kwargs = stars[0].value
        get_shuffle = c.method_call(kwargs, "get", c.string("shuffle"), cst.Name("False"))
        sampler = c.call(self.t("utils.data.distributed.DistributedSampler"), dataset,
                         c.kwarg("shuffle", get_shuffle))
        comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        colon = cst.SimpleWhitespace(" ")
        merged = cst.Dict([cst.StarredDictElement(kwargs, comma=comma),
                           cst.DictElement(c.string("shuffle"), cst.Name("False"), comma=comma,
                                           whitespace_after_colon=colon),
                           cst.DictElement(c.string("sampler"), sampler, whitespace_after_colon=colon)])
        statement = cst.If(test=self.initialized(), body=cst.IndentedBlock([c.assign_stmt(kwargs, merged)]))
        self.plan(self.block_statement(stmt)).before.append(statement)
        self.row(stmt, "sampler", f"training loader sharded by a DistributedSampler through {kwargs.value} "
                 "(its shuffle moves into the sampler; no keyword is passed twice)", Operation.INSERT,
                 f"{kwargs.value} = {self.code(merged)}")

    def _set_epoch(self, loaders: list[cst.BaseExpression]) -> None:
        loops = [n for n in _walk(self.module) if isinstance(n, cst.For) and isinstance(n.target, cst.Name)
                 and "epoch" in n.target.value.lower()]
        if not loops:
            raise _Refused(None, "no epoch loop (`for epoch in ...`) to call sampler.set_epoch in")
        loop = loops[0]
        epoch = loop.target
        first = loop.body.body[0] if isinstance(loop.body, cst.IndentedBlock) else None
        if first is None:
            raise _Refused(loop, "the epoch loop is a one-line block")
        for loader in loaders:
            sampler = cst.Attribute(loader, cst.Name("sampler"))
            test = c.call("isinstance", sampler, self.t("utils.data.distributed.DistributedSampler"))
            statement = cst.If(test=test, body=cst.IndentedBlock([c.expr_stmt(
                c.method_call(sampler, "set_epoch", epoch))]))
            self.plan(first).before.append(statement)
            self.row(first, "set_epoch", "the sampler reshuffles every epoch (set_epoch)", Operation.INSERT,
                     f"{self.code(sampler)}.set_epoch({epoch.value})")

    # ------------------------------------------------------------------ checkpoints and logs
    def _unwrap(self, model: cst.BaseExpression) -> None:
        target = self.code(model)
        for call in self.analysis.calls:
            func = call.func
            if not (isinstance(func, cst.Attribute) and func.attr.value in ("state_dict", "load_state_dict")
                    and self.code(func.value) == target):
                continue
            receiver = func.value

            def edit(updated: cst.CSTNode) -> cst.CSTNode:
                assert isinstance(updated, cst.BaseExpression)
                return self.unwrapped(updated)

            self.expr_edits.append((receiver, edit))
            self.row(receiver, "unwrap", f"{func.attr.value} of the unwrapped model (no 'module.' key prefix)",
                     Operation.MODIFY, self.code(self.unwrapped(receiver)), before=target)

    def _rank_zero(self) -> None:
        for line in self.analysis.lines:
            if len(line.body) != 1 or not isinstance(line.body[0], cst.Expr):
                continue
            value = line.body[0].value
            if not isinstance(value, cst.Call):
                continue
            name = self.analysis.qualified(value.func) or self._plain(value.func)
            if name not in ("torch.save", "os.mkdir", "os.makedirs") + _LOG_CALLS:
                continue
            parent = self.analysis.parent(line)
            if not isinstance(parent, (cst.IndentedBlock, cst.Module)):
                if name == "torch.save":
                    raise _Refused(line, "torch.save in a one-line block")
                continue
            self.plan(line).guard = self.rank_zero()
            what = "checkpoint written" if name == "torch.save" else ("folder made" if name.startswith("os.")
                                                                       else "log line written")
            self.row(line, "rank_zero", f"{what} by rank 0 only", Operation.MODIFY,
                     f"if {self.code(self.rank_zero())}: {c.first_line(self.code(line))}",
                     before=c.first_line(self.code(line)))

    def _plain(self, func: cst.BaseExpression) -> str:
        return self.code(func) if isinstance(func, (cst.Name, cst.Attribute)) else ""

    # ------------------------------------------------------------------ hand the plan to the engine
    def _commit(self) -> None:
        if self.needs_os:
            self.ctx.add_import("os", self.roles["init"])
        # the multi_npu pass (registered after this one) must not also rewrite a DataParallel removed here
        setattr(self.ctx, "removed_data_parallel", self.removed_data_parallel)
        removed = self.removed_data_parallel
        # a DataParallel that is gone is no longer an unsupported use
        self.ctx.unsupported = [u for u in self.ctx.unsupported if not (
            u.node is not None and any(id(call) in removed and u.node is call.func for call in self.analysis.calls))]
        for node, edit in self.expr_edits:
            self.ctx.replace(node, edit)
        for stmt, plan in self.plans.values():
            self.ctx.replace(stmt, _statement_edit(plan))
        for node, role, message, before, after, operation, after_node in self.rows:
            self.ctx.record_change(node, self.roles[role], message, before=before, after=c.first_line(after),
                                   operation=operation, after_node=after_node)


def _statement_edit(plan: _StmtPlan):
    def edit(updated: cst.CSTNode):
        nodes = list(updated.nodes) if isinstance(updated, cst.FlattenSentinel) else [updated]
        own = nodes[0]
        if plan.remove:
            nodes = nodes[1:]
            if plan.after or plan.before:
                nodes = list(plan.before) + list(plan.after) + nodes
            return cst.FlattenSentinel(nodes) if nodes else cst.RemovalSentinel.REMOVE
        if plan.replace_with_pass:
            own = cst.SimpleStatementLine([cst.Pass()], leading_lines=own.leading_lines)
        if plan.guard is not None:
            own = cst.If(test=plan.guard, body=cst.IndentedBlock([own.with_changes(leading_lines=[])]),
                         leading_lines=own.leading_lines)
        result = [own]
        if plan.before:
            first = plan.before[0].with_changes(leading_lines=own.leading_lines)
            result = [first, *plan.before[1:], own.with_changes(leading_lines=[])]
        return cst.FlattenSentinel([*result, *plan.after, *nodes[1:]])

    return edit


def _walk(node: cst.CSTNode):
    yield node
    for child in node.children:
        yield from _walk(child)
