"""The ``multi_npu`` structural pass: code written for a multi-GPU host runs on an 8-NPU host.

Rules of kind ``multi_npu`` in ``rules/distributed.json`` select the parts by ``role``:

* ``runtime_backend`` (TP142) — a backend that reaches ``init_process_group``/``new_group`` at run time
  (``backend=args.dist_backend``, a config attribute, ``os.environ[...]``) is mapped ``nccl`` → ``hccl``
  at that slot: a literal default alone misses ``--dist-backend nccl`` typed on the command line;
* ``local_rank_env`` (TP143) — ``add_argument("--local_rank", default=-1)`` takes its default from
  ``LOCAL_RANK`` (torchrun passes the rank only in the environment); the flag is still accepted;
* ``launch_command`` (TP144) — ``python -m torch.distributed.launch`` in a command the code runs
  (``subprocess``/``os.system``) becomes ``torch.distributed.run`` (torchrun), without ``--use_env``;
* ``data_parallel`` (TP145) — ``DataParallel(model)`` without ``device_ids`` runs on the current NPU
  only (``device_ids=[torch.npu.current_device()]``): DataParallel over several NPUs is unsupported;
* ``device_count`` (TP146) — ``n_gpu = torch.cuda.device_count()`` whose ``n_gpu > 1`` guards a
  DataParallel becomes ``min(1, ...)``, so batch-size scaling and ``loss.mean()`` agree with the one
  device actually used.

Runs already distributed (``local_rank != -1`` branches, DDP) are not touched.
"""

from __future__ import annotations

import re
from typing import Optional

import libcst as cst

from transplant.results import Operation
from transplant.rewrite import amp_common as c
from transplant.rewrite.passes import register_pass

_BACKEND_SLOTS = {  # qualified name -> positional index of the backend
    "torch.distributed.init_process_group": 0,
    "torch.distributed.new_group": 2,
    "torch.distributed.distributed_c10d.init_process_group": 0,
    "torch.distributed.distributed_c10d.new_group": 2,
}
_DATA_PARALLEL = ("torch.nn.DataParallel", "torch.nn.parallel.DataParallel",
                  "torch.nn.parallel.data_parallel.DataParallel")
_DEVICE_COUNT = ("torch.cuda.device_count", "torch.npu.device_count", "torch_npu.npu.device_count")
_COMMAND_RUNNERS = frozenset({
    "subprocess.run", "subprocess.call", "subprocess.check_call", "subprocess.check_output", "subprocess.Popen",
    "os.system", "os.popen", "os.execv", "os.execvp", "os.execvpe", "os.spawnv", "os.spawnvp",
})
_LOCAL_RANK_FLAGS = ("--local_rank", "--local-rank")
_LAUNCH_IN_TEXT = re.compile(r"(-m\s+)torch\.distributed\.launch\b")
_USE_ENV_IN_TEXT = re.compile(r"\s+--use[_-]env\b(?!=)")


@register_pass("multi_npu")
def multi_npu_pass(module: cst.Module, ctx, rules: list) -> None:
    """Engine entry point for the ``multi_npu`` rule kind (see :mod:`transplant.rewrite.passes`)."""
    roles = {r.role: r for r in rules}
    analysis = c.Analysis(module, ctx.imports)
    planner = _Planner(module, ctx, analysis, roles)
    for call in analysis.calls:
        planner.call(call)
    if "device_count" in roles:
        planner.device_counts()


class _Planner:
    def __init__(self, module: cst.Module, ctx, analysis: c.Analysis, roles: dict) -> None:
        self.module = module
        self.ctx = ctx
        self.analysis = analysis
        self.roles = roles
        self.torch = c.torch_alias(module) or "torch"
        self.literal_names = _names_bound_only_to_strings(module)
        self.data_parallel_calls: list[cst.Call] = []

    def qualified(self, node: cst.BaseExpression) -> Optional[str]:
        return self.analysis.qualified(node)

    # ------------------------------------------------------------------ per call
    def call(self, call: cst.Call) -> None:
        qual = self.qualified(call.func)
        if qual in _BACKEND_SLOTS and "runtime_backend" in self.roles:
            self.backend(call, _BACKEND_SLOTS[qual])
        elif qual in _DATA_PARALLEL:
            self.data_parallel_calls.append(call)
            # --distributed (pass_distributed, which runs first) replaced this one by DDP
            if "data_parallel" in self.roles and id(call) not in getattr(self.ctx, "removed_data_parallel", ()):
                self.data_parallel(call)
        elif qual in _COMMAND_RUNNERS and "launch_command" in self.roles:
            self.launch_command(call)
        elif (isinstance(call.func, cst.Attribute) and call.func.attr.value == "add_argument"
              and "local_rank_env" in self.roles):
            self.local_rank(call)

    def backend(self, call: cst.Call, position: int) -> None:
        rule = self.roles["runtime_backend"]
        arg = c.call_arg(call, position, "backend")
        if arg is None or arg.star:
            return
        value = arg.value
        if isinstance(value, (cst.SimpleString, cst.ConcatenatedString, cst.FormattedString, cst.IfExp)):
            return  # literals are TP140's; an IfExp is a choice written by the user (or by us already)
        if "hccl" in self.ctx.code(value).lower():
            return  # already mapped (a second run)
        if isinstance(value, cst.Name) and (value.value in self.literal_names or value.value == "None"):
            return  # only ever a literal: TP140 maps it where it is written
        if not isinstance(value, (cst.Name, cst.Attribute, cst.Subscript, cst.Call)):
            return

        def edit(updated: cst.CSTNode) -> cst.CSTNode:
            assert isinstance(updated, cst.BaseExpression)
            return _mapped_backend(updated)

        before = self.ctx.code(value)
        self.ctx.replace(value, edit)
        self.ctx.record_change(value, rule, before=before,
                               after=self.module.code_for_node(_mapped_backend(value)))

    def data_parallel(self, call: cst.Call) -> None:
        rule = self.roles["data_parallel"]
        device = c.call(f"{self.torch}.npu.current_device")
        new_arg = c.kwarg("device_ids", cst.List([cst.Element(device)]))
        given = c.call_arg(call, 1, "device_ids")
        if given is not None and self.module.code_for_node(given.value) == self.module.code_for_node(new_arg.value):
            self._drop_unsupported(rule, call)  # ours, from an earlier run: one NPU, supported
            return
        if given is not None or any(a.star for a in call.args) or not call.args:
            return  # explicit devices: the user chose them (still reported as unsupported when several)

        def edit(updated: cst.CSTNode) -> cst.CSTNode:
            assert isinstance(updated, cst.Call)
            return _append_arg(updated, new_arg)

        self.ctx.replace(call, edit)
        self.ctx.record_change(call, rule, before=c.first_line(self.ctx.code(call)),
                               after=c.first_line(self.module.code_for_node(_append_arg(call, new_arg))))
        self._drop_unsupported(rule, call)

    def _drop_unsupported(self, rule, call: cst.Call) -> None:
        """The call runs on one NPU now: its "DataParallel is unsupported" row would be wrong."""
        replaced = rule.data.get("replaces")
        if replaced:
            self.ctx.unsupported = [u for u in self.ctx.unsupported
                                    if not (u.rule.id == replaced and (u.node is call.func or u.node is call))]

    def launch_command(self, call: cst.Call) -> None:
        arg = c.call_arg(call, 0, "args")
        if arg is None or arg.star:
            return
        value = arg.value
        if isinstance(value, cst.Name):
            value = self._single_binding(value.value) or value
        if isinstance(value, cst.SimpleString):
            self._launch_string(value)
        elif isinstance(value, (cst.List, cst.Tuple)):
            self._launch_list(value)

    def _single_binding(self, name: str) -> Optional[cst.BaseExpression]:
        found: list[cst.BaseExpression] = []
        for line in self.analysis.lines:
            for small in line.body:
                if isinstance(small, cst.Assign):
                    for target in small.targets:
                        if isinstance(target.target, cst.Name) and target.target.value == name:
                            found.append(small.value)
        return found[0] if len(found) == 1 else None

    def _launch_string(self, node: cst.SimpleString) -> None:
        raw = node.value
        if not _LAUNCH_IN_TEXT.search(raw):
            return
        new = _USE_ENV_IN_TEXT.sub("", _LAUNCH_IN_TEXT.sub(r"\1torch.distributed.run", raw))
        self.ctx.replace(node, lambda updated: updated.with_changes(value=new))
        self.ctx.record_change(node, self.roles["launch_command"], before=raw, after=new)

    def _launch_list(self, node: cst.List | cst.Tuple) -> None:
        values = [c.literal_value(e.value) if isinstance(e, cst.Element) else None for e in node.elements]
        hits = [i for i, v in enumerate(values) if v == "torch.distributed.launch" and i > 0 and values[i - 1] == "-m"]
        if not hits:
            return
        rule = self.roles["launch_command"]
        launch = node.elements[hits[0]].value
        assert isinstance(launch, cst.SimpleString)
        quote = launch.value[0]
        renamed = f"{quote}torch.distributed.run{quote}"
        dropped = [i for i, v in enumerate(values) if v in ("--use_env", "--use-env")]
        # One edit of the whole list: an element is not a statement, so it is dropped by rebuilding its
        # list (the byte-range engine regenerates only the outermost edited node).
        self.ctx.replace(node, lambda updated: _rebuilt_command(updated, hits[0], renamed, dropped))
        self.ctx.record_change(launch, rule, before=launch.value, after=renamed)
        for i in dropped:
            element = node.elements[i]
            self.ctx.record_change(element, rule, "--use_env dropped (torchrun always passes LOCAL_RANK in "
                                   "the environment)", before=self.ctx.code(element.value),
                                   operation=Operation.DELETE)

    def local_rank(self, call: cst.Call) -> None:
        flags = [c.literal_value(a.value) for a in call.args if a.keyword is None and not a.star]
        if not any(f in _LOCAL_RANK_FLAGS for f in flags):
            return
        rule = self.roles["local_rank_env"]
        default = next((a for a in call.args if a.keyword is not None and a.keyword.value == "default"), None)
        if default is not None and "LOCAL_RANK" in self.ctx.code(default.value):
            return  # already reads the environment
        os_name = self._os_name(rule)
        if default is None:
            fallback: cst.BaseExpression = cst.Name("None")
            value = cst.IfExp(
                test=cst.Comparison(c.string("LOCAL_RANK"), [cst.ComparisonTarget(
                    cst.In(), c.dotted(f"{os_name}.environ"))]),
                body=c.call("int", cst.Subscript(c.dotted(f"{os_name}.environ"),
                                                 [cst.SubscriptElement(cst.Index(c.string("LOCAL_RANK")))])),
                orelse=fallback)
            new_arg = c.kwarg("default", value)

            def add(updated: cst.CSTNode) -> cst.CSTNode:
                assert isinstance(updated, cst.Call)
                return _append_arg(updated, new_arg)

            self.ctx.replace(call, add)
            self.ctx.record_change(call, rule, before=c.first_line(self.ctx.code(call)),
                                   after=self.module.code_for_node(new_arg))
            return

        def wrap(updated: cst.CSTNode) -> cst.CSTNode:
            assert isinstance(updated, cst.BaseExpression)
            return c.call("int", c.call(f"{os_name}.environ.get", c.string("LOCAL_RANK"), updated))

        self.ctx.replace(default.value, wrap)
        self.ctx.record_change(default.value, rule, before=self.ctx.code(default.value),
                               after=self.module.code_for_node(wrap(default.value)))

    def _os_name(self, rule) -> str:
        for local, qualified in self.ctx.imports.bindings.items():
            if qualified == "os":
                return local
        self.ctx.add_import("os", rule)
        return "os"

    # ------------------------------------------------------------------ n_gpu
    def device_counts(self) -> None:
        """``n_gpu = device_count()`` becomes ``min(1, device_count())`` when ``n_gpu > 1`` guards a DataParallel."""
        rule = self.roles["device_count"]
        guarded = self._data_parallel_guards()
        if not guarded:
            return
        for line in self.analysis.lines:
            for small in line.body:
                if not (isinstance(small, cst.Assign) and len(small.targets) == 1
                        and isinstance(small.value, cst.Call) and not small.value.args
                        and self.qualified(small.value.func) in _DEVICE_COUNT):
                    continue
                target = self.ctx.code(small.targets[0].target)
                if target not in guarded:
                    continue
                value = small.value

                def edit(updated: cst.CSTNode) -> cst.CSTNode:
                    assert isinstance(updated, cst.BaseExpression)
                    return c.call("min", cst.Integer("1"), updated)

                self.ctx.replace(value, edit)
                self.ctx.record_change(value, rule, before=self.ctx.code(value),
                                       after=self.module.code_for_node(edit(value)))

    def _data_parallel_guards(self) -> set[str]:
        """Source texts ``X`` of ``if X > 1:`` (or ``X >= 2``) tests that enclose a DataParallel call."""
        found: set[str] = set()
        for call in self.data_parallel_calls:
            for ancestor in self.analysis.ancestors(call):
                if isinstance(ancestor, cst.If):
                    subject = _more_than_one(ancestor.test)
                    if subject is not None:
                        found.add(self.ctx.code(subject))
        return found


def _more_than_one(test: cst.BaseExpression) -> Optional[cst.BaseExpression]:
    """``X`` of a test ``X > 1`` / ``X >= 2`` / ``1 < X``."""
    if not isinstance(test, cst.Comparison) or len(test.comparisons) != 1:
        return None
    target = test.comparisons[0]
    left, op, right = test.left, target.operator, target.comparator
    if isinstance(op, cst.GreaterThan) and isinstance(right, cst.Integer) and right.value == "1":
        return left
    if isinstance(op, cst.GreaterThanEqual) and isinstance(right, cst.Integer) and right.value == "2":
        return left
    if isinstance(op, cst.LessThan) and isinstance(left, cst.Integer) and left.value == "1":
        return right
    return None


def _mapped_backend(value: cst.BaseExpression) -> cst.BaseExpression:
    """``{"nccl": "hccl", "NCCL": "hccl"}.get(V, V)`` (no comparison with a backend literal that
    TP140 would map again on a second run)."""
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    table = cst.Dict([
        cst.DictElement(c.string("nccl"), c.string("hccl"), comma=comma,
                        whitespace_after_colon=cst.SimpleWhitespace(" ")),
        cst.DictElement(c.string("NCCL"), c.string("hccl"), whitespace_after_colon=cst.SimpleWhitespace(" ")),
    ])
    return c.method_call(table, "get", value, value)


def _append_arg(call: cst.Call, arg: cst.Arg) -> cst.Call:
    """``call`` with ``arg`` appended (a trailing comma is kept after the new argument)."""
    args = list(call.args)
    last = args[-1]
    if isinstance(last.comma, cst.Comma):
        args.append(arg.with_changes(comma=last.comma))
        args[-1 - 1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
    else:
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(arg)
    return call.with_changes(args=args)


def _names_bound_only_to_strings(module: cst.Module) -> set[str]:
    """Names whose every assignment in the file is a string literal (and that are no parameter)."""

    class _Collect(cst.CSTVisitor):
        def __init__(self) -> None:
            self.literal: set[str] = set()
            self.other: set[str] = set()

        def visit_Assign(self, node: cst.Assign) -> None:
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    kind = self.literal if _is_string_choice(node.value) else self.other
                    kind.add(target.target.value)
                else:
                    for name in c.names_in(target.target):
                        self.other.add(name)

        def visit_Param(self, node: cst.Param) -> None:
            self.other.add(node.name.value)

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            self.other |= c.names_in(node.target)

        def visit_For(self, node: cst.For) -> None:
            self.other |= c.names_in(node.target)

    collect = _Collect()
    module.visit(collect)
    return collect.literal - collect.other


def _is_string_choice(node: cst.BaseExpression) -> bool:
    """A string literal, or a conditional choosing between string literals."""
    if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
        return True
    return isinstance(node, cst.IfExp) and _is_string_choice(node.body) and _is_string_choice(node.orelse)


def _rebuilt_command(node: cst.List | cst.Tuple, launch: int, renamed: str, dropped: list[int]) -> cst.BaseExpression:
    """``node`` with its ``launch`` element renamed and the ``dropped`` elements left out (commas kept)."""
    elements = list(node.elements)
    old_launch = elements[launch]
    assert isinstance(old_launch, cst.Element)
    elements[launch] = old_launch.with_changes(value=old_launch.value.with_changes(value=renamed))  # type: ignore[attr-defined]
    kept = [e for i, e in enumerate(elements) if i not in dropped]
    if kept and len(elements) - 1 in dropped:  # the old last element's comma (or its absence) moves up
        kept[-1] = kept[-1].with_changes(comma=elements[-1].comma)
    return node.with_changes(elements=kept)
