"""String literals that name a device, a backend, an environment variable or a tensor type.

Rule kinds ``device`` (``"cuda"``/``"cuda:N"`` -> ``"npu"``/``"npu:N"``), ``backend`` (``"nccl"`` ->
``"hccl"``), ``envvar`` (``CUDA_VISIBLE_DEVICES`` -> ``ASCEND_RT_VISIBLE_DEVICES``) and ``tensor_type``
(``'torch.cuda.FloatTensor'``), plus the string part of ``unsupported`` (``"nvidia-smi"``).

A literal is rewritten only when its *context* says what it is — never because of its text alone:
walking up from the string through transparent wrappers (conditional expressions, ``or``/``and``,
``%``/``+``/``.format`` formatting, containers) we reach a slot: a keyword argument, a known positional
argument, a comparison, an assignment, a parameter default, an argparse ``default``/``choices``, a
dict entry, or a ``return``. Slots that depend on a *name* (``device = 'cuda'``) are decided after the
traversal by :class:`FlowFacts`: the name matches the rule's variable pattern, or the file passes that
name to a device slot (``torch.device(dev)``). FlowFacts is the seam for a cross-file resolver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import libcst as cst

from transplant.rewrite.context import FileContext
from transplant.rewrite.names import dotted_name, iter_nodes
from transplant.rules import BackendRule, DeviceRule, EnvVarRule, Rule, TensorTypeRule, UnsupportedRule

if TYPE_CHECKING:
    from transplant.project.index import CallableSlots, ParamSlot, ProjectIndex

StringNode = Union[cst.SimpleString, cst.FormattedString]

# Calls that forward a tuple of positional arguments to the callable they are given:
# callable -> (position of the callable, keyword of the argument tuple).
_FORWARDERS = {
    "torch.distributed.rpc.remote": (1, "args"),
    "torch.distributed.rpc.rpc_sync": (1, "args"),
    "torch.distributed.rpc.rpc_async": (1, "args"),
    "torch.multiprocessing.spawn": (0, "args"),
    "multiprocessing.Process": (None, "args"),
    "threading.Thread": (None, "args"),
}

_ENV_FUNCS = {"os.getenv", "os.putenv", "os.unsetenv", "os.environ.get", "os.environ.setdefault", "os.environ.pop",
              "os.environ.__contains__"}
_ENV_METHODS = {"getenv", "setenv", "delenv", "putenv", "unsetenv"}
_ENV_DICT_METHODS = {"get", "setdefault", "pop"}


@dataclass
class FlowFacts:
    """Names known to carry a device / backend (in-file data flow; a cross-file resolver may add more).

    ``device_names``/``backend_names`` hold the last component of names that reach a device/backend
    slot (``torch.device(dev)`` adds ``dev``; ``init_process_group(backend=args.dist_backend)`` adds
    ``dist_backend``).
    """

    device_names: set[str] = field(default_factory=set)
    backend_names: set[str] = field(default_factory=set)
    # (domain, name) -> why the name is one (another file's use), appended to the change row
    notes: dict[tuple[str, str], str] = field(default_factory=dict)
    # names assigned a tuple that is forwarded as positional arguments: (name, element index) -> slot
    tuple_slots: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)
    project: Optional["ProjectIndex"] = None  # cross-file callables (transplant.project.index)
    module: Optional[str] = None              # this file's module name in that index

    def merge(self, other: "FlowFacts") -> None:
        """Add what ``other`` (facts from other files) knows."""
        self.device_names |= other.device_names
        self.backend_names |= other.backend_names
        self.notes.update(other.notes)
        self.tuple_slots.update(other.tuple_slots)
        self.project = other.project or self.project
        self.module = other.module or self.module


@dataclass
class _Candidate:
    node: StringNode
    ancestors: list[cst.CSTNode]
    rule: Rule
    new_text: str           # replacement of the first text fragment
    before: str
    after: str
    names: tuple[str, ...]  # decided by names (empty: decided already)
    domain: str             # "device" | "backend"
    note: str = ""          # why, when another file decided it (appended to the row's message)
    element: Optional[int] = None  # index in the tuple literal it sits in (forwarded positional arguments)


def _string_parts(node: cst.SimpleString) -> Optional[tuple[str, str]]:
    """(raw text, prefix+quote) of a non-bytes simple string."""
    prefix = node.prefix
    if "b" in prefix.lower():
        return None
    return node.raw_value, prefix + node.quote


def _names_of(expr: cst.BaseExpression) -> list[str]:
    """Last name components an expression may carry (``args.device`` -> device; ``str(d)`` -> d)."""
    out: list[str] = []
    stack = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, cst.Name):
            out.append(e.value)
        elif isinstance(e, cst.Attribute):
            out.append(e.attr.value)
        elif isinstance(e, cst.IfExp):
            stack += [e.body, e.orelse]
        elif isinstance(e, cst.BooleanOperation):
            stack += [e.left, e.right]
        elif isinstance(e, cst.Call) and isinstance(e.func, cst.Name) and e.func.value == "str" and len(e.args) == 1:
            stack.append(e.args[0].value)
        elif isinstance(e, cst.Subscript) and len(e.slice) == 1:
            sl = e.slice[0].slice
            if isinstance(sl, cst.Index) and isinstance(sl.value, cst.SimpleString):
                out.append(sl.value.raw_value)
    return out


def _device_test_names(expr: cst.BaseExpression) -> list[str]:
    """Names that make ``expr`` a device in a comparison (``x.device.type``, ``str(args.device)``)."""
    if isinstance(expr, cst.Call) and isinstance(expr.func, cst.Name) and expr.func.value == "str" and len(expr.args) == 1:
        expr = expr.args[0].value
    if isinstance(expr, cst.Attribute) and expr.attr.value == "type":
        return _names_of(expr.value)
    return _names_of(expr)


def _argparse_dest(call: cst.Call) -> Optional[str]:
    func = call.func
    if not (isinstance(func, cst.Attribute) and func.attr.value == "add_argument"):
        return None
    flags: list[str] = []
    for arg in call.args:
        if arg.keyword is not None:
            if arg.keyword.value == "dest" and isinstance(arg.value, cst.SimpleString):
                return arg.value.raw_value
            continue
        if isinstance(arg.value, cst.SimpleString):
            flags.append(arg.value.raw_value)
    for flag in flags:
        if flag.startswith("--"):
            return flag[2:].replace("-", "_")
    return flags[0].lstrip("-").replace("-", "_") if flags else None


def _default_key(call: cst.Call, idx: Optional[int]) -> Optional[str]:
    """The key whose default ``idx`` is: ``d.get('device', X)``/``setdefault``/``pop`` and ``getattr(o, 'device', X)``."""
    func = call.func
    if isinstance(func, cst.Attribute) and func.attr.value in ("get", "setdefault", "pop") and idx == 1:
        key = call.args[0].value
    elif isinstance(func, cst.Name) and func.value == "getattr" and idx == 2 and len(call.args) >= 2:
        key = call.args[1].value
    else:
        return None
    return key.raw_value.lower() if isinstance(key, cst.SimpleString) else None


def _positional_index(call: cst.Call, arg: cst.Arg) -> Optional[int]:
    index = 0
    for a in call.args:
        if a is arg:
            return index if a.keyword is None and not a.star else None
        if a.keyword is None and not a.star:
            index += 1
        elif a.star == "*":
            return None  # position unknown after *args
    return None


def _tuple_element(node: cst.CSTNode, stack: Sequence[cst.CSTNode],
                   tuple_node: Optional[cst.CSTNode] = None) -> Optional[int]:
    """Index of ``node`` in the tuple literal directly holding it (``("cuda:0", 3)`` -> 0), if any;
    with ``tuple_node``, only in that tuple."""
    if len(stack) < 2 or not isinstance(stack[-1], cst.Element) or not isinstance(stack[-2], cst.Tuple):
        return None
    tup = stack[-2]
    if tuple_node is not None and tup is not tuple_node:
        return None
    for i, element in enumerate(tup.elements):  # type: ignore[attr-defined]
        if element is stack[-1]:
            return i if all(not isinstance(e, cst.StarredElement) for e in tup.elements[:i]) else None  # type: ignore[attr-defined]
    return None


def _keyword_slot(arg: cst.Arg, call: cst.Call, is_slot: Callable[[str], bool]
                  ) -> tuple[Optional[bool], tuple[str, ...]]:
    """(decided, names) for a literal passed as ``kw=`` (the one slot decision of devices and backends).

    ``add_argument('--device', default='cuda')`` defers to the flow of the option's ``dest``; any other
    keyword is a device/backend slot exactly when ``is_slot(kw)``.
    """
    kw = arg.keyword.value  # type: ignore[union-attr]
    dest = _argparse_dest(call) if kw in ("default", "choices", "const") else None
    if dest is not None:
        return None, (dest,)
    return is_slot(kw), ()


class LiteralSlots:
    """Handler for strings and the calls/ifs/params that give them context."""

    def __init__(self, ctx: FileContext) -> None:
        self.ctx = ctx
        rs = ctx.ruleset
        self.device: Optional[DeviceRule] = next((r for r in rs if isinstance(r, DeviceRule)), None)
        self.backends: dict[str, tuple[str, BackendRule]] = {}
        self.backend_rule: Optional[BackendRule] = None
        self.envvars: dict[str, tuple[str, EnvVarRule]] = {}
        self.tensor_types: dict[str, tuple[str, TensorTypeRule]] = {}
        self.tensor_rules: list[TensorTypeRule] = []
        self.cmd_strings: list[tuple[str, str, UnsupportedRule]] = []
        self.external: Optional[UnsupportedRule] = None
        self.undecided_rule: Optional[UnsupportedRule] = None
        self.external_pending: list[tuple[cst.Arg, str, tuple[str, ...]]] = []
        self._callee_cache: dict[Optional[str], Optional["CallableSlots"]] = {}
        for r in rs:
            if isinstance(r, BackendRule):
                self.backend_rule = self.backend_rule or r
                for k, v in r.map.items():
                    self.backends.setdefault(k, (v, r))
            elif isinstance(r, EnvVarRule):
                for k, v in r.map.items():
                    self.envvars.setdefault(k, (v, r))
            elif isinstance(r, TensorTypeRule):
                self.tensor_rules.append(r)
                for k, v in r.map.items():
                    self.tensor_types.setdefault(k, (v, r))
            elif isinstance(r, UnsupportedRule):
                for s, tip in r.strings.items():
                    self.cmd_strings.append((s, r.tip_for(tip), r))
                if r.external_parameters and self.external is None:
                    self.external = r
                if r.report_undecided and self.undecided_rule is None:
                    self.undecided_rule = r
        words = list(self.backends) + list(self.envvars) + list(self.tensor_types) + [s for s, _, _ in self.cmd_strings]
        if self.device is not None:
            words.append(self.device.from_type)
            frm = re.escape(self.device.from_type)
            self.device_exact = re.compile(rf"{frm}(:\d+)?\Z")
            self.device_fmt = re.compile(rf"{frm}:\S*\Z")
            self.device_kw = self.device.keywords
            self.excluded = tuple(self.device.exclude_callables)
        self.quick = re.compile("|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))) if words else None
        self.facts = FlowFacts()
        self.candidates: list[_Candidate] = []
        self.protected: set[int] = set()  # comparisons in if-chains that already test for the NPU
        self.has_npu_text = "npu" in ctx.source_text

    # ------------------------------------------------------------ context providers
    def call(self, node: cst.Call, stack: Sequence[cst.CSTNode], qual: Optional[str]) -> None:
        """Record names passed to device/backend slots (the uses half of the in-file data flow)."""
        dev = self.device
        func_attr = node.func.attr.value if isinstance(node.func, cst.Attribute) else None
        dev_pos = dev.positional.get(qual, ()) if dev is not None and qual else ()
        dev_meth = dev.methods.get(func_attr, ()) if dev is not None and func_attr else ()
        be = self.backend_rule
        be_pos = be.positional.get(qual, ()) if be is not None and qual else ()
        if dev is not None and qual == "torch.device" and stack:
            # `gpu = torch.device(...)` makes `gpu` a device: `'cuda' in str(gpu)` is a device test.
            parent = stack[-1]
            if isinstance(parent, cst.Assign) and parent.value is node:
                for target in parent.targets:
                    self.facts.device_names.update(_names_of(target.target))
            elif isinstance(parent, cst.AnnAssign) and parent.value is node:
                self.facts.device_names.update(_names_of(parent.target))
        if self.facts.project is not None:
            self._cross_file_call(node, qual)
        if self.external is not None:
            self._external_call(node, qual)
        index = 0
        for arg in node.args:
            if arg.keyword is not None:
                kw = arg.keyword.value
                if dev is not None and (kw in dev.keywords or kw in dev.callable_keywords.get(qual or "", ())) \
                        and not self._excluded(qual):
                    self.facts.device_names.update(_names_of(arg.value))
                elif be is not None and kw in be.keywords:
                    self.facts.backend_names.update(_names_of(arg.value))
                continue
            if arg.star:
                break
            if index in dev_pos or index in dev_meth:
                self.facts.device_names.update(_names_of(arg.value))
            if index in be_pos:
                self.facts.backend_names.update(_names_of(arg.value))
            index += 1

    # ------------------------------------------------------------ values that leave the file
    def use_flow(self, flow: FlowFacts) -> None:
        """Facts from other files (the project index): names, notes, callables."""
        self.facts.merge(flow)

    def _project_callee(self, func: cst.BaseExpression) -> Optional["CallableSlots"]:
        project = self.facts.project
        if project is None:
            return None
        if isinstance(func, cst.Subscript) and len(func.slice) == 1 and isinstance(func.slice[0].slice, cst.Index):
            key = func.slice[0].slice.value
            literal = key.raw_value if isinstance(key, cst.SimpleString) else None
            return project.resolve_table_in(self.facts.module, dotted_name(func.value), literal)
        dotted = dotted_name(func)
        if dotted not in self._callee_cache:
            self._callee_cache[dotted] = project.resolve_in(self.facts.module, dotted)
        return self._callee_cache[dotted]

    def _forwarded(self, call: cst.Call, qual: Optional[str]
                   ) -> Optional[tuple["CallableSlots", int, Optional[cst.BaseExpression], list[cst.Arg]]]:
        """(callee, offset, argument tuple, direct arguments) for ``functools.partial(F, ...)`` and the
        calls that forward an ``args=`` tuple (``rpc.remote(to, F, args=...)``, ``mp.spawn(F, args=...)``)."""
        if qual == "functools.partial":
            first = next((a for a in call.args if a.keyword is None and not a.star), None)
            callee = self._project_callee(first.value) if first is not None else None
            if callee is None:
                return None
            rest = [a for a in call.args if a is not first]
            return callee, -1, None, rest
        spec = _FORWARDERS.get(qual or "")
        if spec is None:
            return None
        position, tuple_kw = spec
        func_arg = None
        positional = [a for a in call.args if a.keyword is None and not a.star]
        if position is not None and position < len(positional):
            func_arg = positional[position]
        for a in call.args:
            if a.keyword is not None and a.keyword.value in ("target", "fn", "func"):
                func_arg = a
        callee = self._project_callee(func_arg.value) if func_arg is not None else None
        if callee is None:
            return None
        values = [a.value for a in call.args if a.keyword is not None and a.keyword.value == tuple_kw]
        if not values and position is not None and position + 1 < len(positional):
            values = [positional[position + 1].value]
        offset = 1 if qual == "torch.multiprocessing.spawn" else 0  # spawn passes the rank first
        return callee, offset, (values[0] if values else None), []

    def _cross_file_call(self, node: cst.Call, qual: Optional[str]) -> None:
        """Names passed to a project callable's device/backend parameter carry a device/backend."""
        callee = self._project_callee(node.func)
        args: list[cst.Arg] = list(node.args)
        offset = 0
        if callee is None:
            forwarded = self._forwarded(node, qual)
            if forwarded is None:
                return
            callee, offset, packed, args = forwarded
            if isinstance(packed, cst.Name):
                for slot in callee.params:
                    if slot.index is not None and slot.index - offset >= 0:
                        self.facts.tuple_slots[(packed.value, slot.index - offset)] = (
                            slot.domain, f"passed to {callee.short}({slot.param}), which {slot.why}")
        index = offset
        for arg in args:
            slot = None
            if arg.keyword is not None:
                slot = callee.slot_for(None, arg.keyword.value)
            elif arg.star == "*":
                if isinstance(arg.value, cst.Name):
                    for s in callee.params:
                        if s.index is not None and s.index >= index:
                            self.facts.tuple_slots[(arg.value.value, s.index - index)] = (
                                s.domain, f"passed to {callee.short}({s.param}), which {s.why}")
                break
            elif not arg.star:
                slot = callee.slot_for(index, None)
                index += 1
            if slot is None:
                continue
            known = self.facts.device_names if slot.domain == "device" else self.facts.backend_names
            for name in _names_of(arg.value):
                known.add(name)
                self.facts.notes.setdefault((slot.domain, name), f"passed to {callee.short}({slot.param}), which {slot.why}")

    def _cross_slot(self, node: StringNode, stack: Sequence[cst.CSTNode], arg: cst.Arg, call: cst.Call,
                    domain: str) -> Optional[str]:
        """Why the literal (inside ``arg`` of ``call``) is a device/backend: it lands in a project
        callable's parameter that reaches a slot. None when it does not."""
        if self.facts.project is None:
            return None
        callee = self._project_callee(call.func)
        slot: Optional["ParamSlot"] = None
        if callee is not None:
            if arg.keyword is not None:
                slot = callee.slot_for(None, arg.keyword.value)
            else:
                idx = _positional_index(call, arg)
                slot = callee.slot_for(idx, None) if idx is not None else None
        else:
            forwarded = self._forwarded(call, self._qual(call.func))
            if forwarded is None:
                return None
            callee, offset, packed, direct = forwarded
            if arg in direct:  # functools.partial(F, a, 'cuda')
                if arg.keyword is not None:
                    slot = callee.slot_for(None, arg.keyword.value)
                else:
                    idx = _positional_index(call, arg)
                    slot = callee.slot_for(idx + offset, None) if idx is not None else None
            elif packed is not None and arg.value is packed:
                while isinstance(packed, cst.BinaryOperation) and isinstance(packed.operator, cst.Add):
                    packed = packed.left  # ("cuda:1",) + rest: positions of the left tuple are known
                element = _tuple_element(node, stack, packed)
                slot = callee.slot_for(element + offset, None) if element is not None else None
        if slot is None or slot.domain != domain:
            return None
        return f"passed to {callee.short}({slot.param}), which {slot.why}"

    def _report_undecided(self, node: StringNode, call: cst.Call, raw: str) -> None:
        """TP581: the literal goes to a project callable the index could not finish (never a guess)."""
        project, rule = self.facts.project, self.undecided_rule
        if project is None or rule is None:
            return
        callee = project.undecided_in(self.facts.module, dotted_name(call.func))
        if callee is None and not project.complete:
            qual = self._qual(call.func)  # the index stopped early: a call into the project is undecided
            if qual and qual.split(".")[0] in self.ctx.project_modules:
                callee = qual
        if callee is not None:
            self.ctx.record_unsupported(node, rule, f"{callee.rsplit('.', 1)[-1]}(..., {raw!r}, ...)")

    def _external_call(self, node: cst.Call, qual: Optional[str]) -> None:
        """Rows (TP580) for CUDA values given to a device-like keyword of a third-party callable."""
        from transplant.project.index import is_external

        rule = self.external
        assert rule is not None
        project = self.facts.project
        if project is not None and qual and project.canonical_module(qual.split(".")[0]) is not None:
            return  # the index knows that module: the project's own
        if not is_external(qual, self.ctx.project_modules) or any(
                qual == p or qual.startswith(p + ".") for p in rule.external_ignore):  # type: ignore[union-attr]
            return
        for arg in node.args:
            value = arg.value
            if arg.keyword is None and not arg.star and isinstance(value, cst.SimpleString):
                # a positional 'cuda:N' literal is a device whatever the parameter is called
                raw = value.raw_value
                if self.device is not None and self.device_exact.match(raw) is not None:
                    self.ctx.record_unsupported(arg, rule, f"{qual}({value.value})")
                continue
            if arg.keyword is None or arg.keyword.value not in rule.external_parameters:
                continue
            raw = value.raw_value if isinstance(value, cst.SimpleString) else None
            if raw is not None:
                cuda = (self.device is not None and self.device_exact.match(raw) is not None) or raw in self.backends
                if cuda:
                    self.ctx.record_unsupported(arg, rule, f"{qual}({arg.keyword.value}={value.value})")
                continue
            names = tuple(_names_of(value))
            if names:
                self.external_pending.append((arg, qual or "", names))

    def if_chain(self, node: cst.If, stack: Sequence[cst.CSTNode]) -> None:
        """``if dev.type == 'cuda': ... elif dev.type == 'npu': ...`` already handles the NPU: keep it."""
        if not self.has_npu_text or self.device is None:
            return
        parent = stack[-1] if stack else None
        if isinstance(parent, cst.If) and parent.orelse is node:
            return  # an elif: handled with its chain
        tests = []
        walk: object = node
        while isinstance(walk, cst.If):
            tests.append(walk.test)
            walk = walk.orelse
        nodes = [n for t in tests for n in iter_nodes(t)]
        npu = re.compile(rf"{re.escape(self.device.to_type)}(:\d+)?\Z")
        if not any(isinstance(n, cst.SimpleString) and npu.match(n.raw_value) for n in nodes):
            return
        self.protected.update(id(n) for n in nodes if isinstance(n, cst.Comparison))

    def param(self, node: cst.Param, stack: Sequence[cst.CSTNode]) -> None:
        return None  # parameter defaults are reached from the string (see _context)

    # ------------------------------------------------------------ strings
    def string(self, node: cst.SimpleString, stack: Sequence[cst.CSTNode]) -> None:
        if self.quick is None or self.quick.search(node.value) is None:
            return
        parts = _string_parts(node)
        if parts is None:
            return
        raw, _ = parts
        for cmd, tip, rule in self.cmd_strings:
            if raw.startswith(cmd) and (len(raw) == len(cmd) or raw[len(cmd)] in " \t"):
                self.ctx.record_unsupported(node, rule, raw, tip)
        if raw in self.envvars:
            self._envvar(node, stack, raw)
        if raw in self.tensor_types:
            self._tensor_type(node, stack, raw)
        if raw in self.backends:
            self._backend(node, stack, raw)
        if self.device is not None and raw.startswith(self.device.from_type):
            exact = self.device_exact.match(raw) is not None
            if exact or self.device_fmt.match(raw):
                self._device(node, stack, raw, exact)

    def fstring(self, node: cst.FormattedString, stack: Sequence[cst.CSTNode]) -> None:
        if self.device is None or not node.parts or "b" in node.prefix.lower():
            return
        first = node.parts[0]
        if not isinstance(first, cst.FormattedStringText):
            return
        text = first.value
        frm = self.device.from_type
        if not text.startswith(frm):
            return
        rest = node.parts[1:]
        ok = (not rest and self.device_exact.match(text) is not None) or (
            text == frm + ":" and rest and isinstance(rest[0], cst.FormattedStringExpression)
            and all(not isinstance(p, cst.FormattedStringText) or not p.value.strip(" ") or p.value.isdigit() for p in rest[1:])
        )
        if not ok:
            return
        new_text = self.device.to_type + text[len(frm):]
        self._device(node, stack, text, exact=True, fstring_text=(first, new_text), only_device=bool(rest))

    # ------------------------------------------------------------ the four domains
    def _device(self, node: StringNode, stack: Sequence[cst.CSTNode], raw: str, exact: bool,
                fstring_text: Optional[tuple[cst.FormattedStringText, str]] = None, only_device: bool = False) -> None:
        dev = self.device
        assert dev is not None
        found = self._context(node, stack)
        if found is None:
            return
        where, info, fmt = found
        # 'cuda:' + str(rank), 'cuda:%d' % i, 'cuda:{}'.format(i), f'cuda:{i}': text that can only become
        # a device string, whatever the name it is stored in or the function that returns it is called.
        only_device = only_device or (fmt and (raw == dev.from_type + ":" or self.device_fmt.match(raw) is not None))
        if not exact and not fmt:
            return  # 'cuda:%d' only as a device when it is being formatted
        decided: Optional[bool] = None
        names: tuple[str, ...] = ()
        note = ""
        element: Optional[int] = None
        if where == "arg" and (cross := self._cross_slot(node, stack, info[0], info[1], "device")):
            decided, note = True, cross
        elif where == "arg":
            arg, call = info
            qual = self._qual(call.func)
            self._report_undecided(node, call, raw)
            if arg.keyword is not None:
                decided, names = _keyword_slot(arg, call, lambda kw: (
                    kw in dev.keywords or kw in dev.callable_keywords.get(qual or "", ())) and not self._excluded(qual))
            else:
                idx = _positional_index(call, arg)
                func_attr = call.func.attr.value if isinstance(call.func, cst.Attribute) else None
                slots = (dev.positional.get(qual, ()) if qual else ()) or (dev.methods.get(func_attr, ()) if func_attr else ())
                if idx is not None and idx in slots and not self._excluded(qual):
                    decided = True
                elif func_attr in ("startswith", "endswith") and isinstance(call.func, cst.Attribute):
                    names = tuple(_device_test_names(call.func.value))
                elif _default_key(call, idx) is not None:
                    names = (_default_key(call, idx),)  # cfg.get('device', 'cuda'), getattr(args, 'device', 'cuda')
                else:
                    decided = False
        elif where == "compare":
            comparison, others = info
            if id(comparison) in self.protected:
                return
            names = tuple(n for o in others for n in _device_test_names(o))
        elif where == "return":
            decided = "device" in info[0].lower() or only_device  # def get_device(): return 'cuda' ...
        elif where == "name":
            names = info
            element = _tuple_element(node, stack)
            if only_device:
                decided = True
        if decided is False or (decided is None and not names):
            return
        if fstring_text is not None:
            text_node, new_text = fstring_text
            target: cst.CSTNode = text_node
            ancestors = list(stack) + [node]
            before, after = raw, new_text
        else:
            assert isinstance(node, cst.SimpleString)
            target, ancestors = node, list(stack)
            head = len(node.prefix) + len(node.quote)
            new_text = node.value[:head] + dev.to_type + node.value[head + len(dev.from_type):]
            before, after = node.value, new_text
        self.candidates.append(_Candidate(target, ancestors, dev, new_text, before, after,  # type: ignore[arg-type]
                                          () if decided else names, "device", note, element))

    def _backend(self, node: cst.SimpleString, stack: Sequence[cst.CSTNode], raw: str) -> None:
        new, rule = self.backends[raw]
        found = self._context(node, stack)
        if found is None:
            return
        where, info, _fmt = found
        decided: Optional[bool] = None
        names: tuple[str, ...] = ()
        note = ""
        element: Optional[int] = None
        if where == "arg" and (cross := self._cross_slot(node, stack, info[0], info[1], "backend")):
            decided, note = True, cross
        elif where == "arg":
            arg, call = info
            self._report_undecided(node, call, raw)
            if arg.keyword is not None:
                decided, names = _keyword_slot(arg, call, lambda kw: kw in rule.keywords)
            else:
                idx = _positional_index(call, arg)
                qual = self._qual(call.func)
                decided = idx is not None and qual is not None and idx in rule.positional.get(qual, ())
        elif where == "compare":
            decided = True  # 'nccl' in a comparison can only be a backend name
        elif where == "return":
            decided = "backend" in info[0].lower()
        elif where == "name":
            names = info
            element = _tuple_element(node, stack)
        if decided is False or (decided is None and not names):
            return
        head = len(node.prefix) + len(node.quote)
        new_text = node.value[:head] + new + node.value[head + len(raw):]
        self.candidates.append(_Candidate(node, list(stack), rule, new_text, node.value, new_text,
                                          () if decided else names, "backend", note, element))

    def _envvar(self, node: cst.SimpleString, stack: Sequence[cst.CSTNode], raw: str) -> None:
        new, rule = self.envvars[raw]
        if not self._is_env_key(node, stack):
            return
        head = len(node.prefix) + len(node.quote)
        new_text = node.value[:head] + new + node.value[head + len(raw):]
        self.candidates.append(_Candidate(node, list(stack), rule, new_text, node.value, new_text, (), "env"))

    def _tensor_type(self, node: cst.SimpleString, stack: Sequence[cst.CSTNode], raw: str) -> None:
        new, rule = self.tensor_types[raw]
        parent = stack[-1] if stack else None
        if not (isinstance(parent, cst.Arg) and parent.keyword is None and len(stack) >= 2):
            return
        call = stack[-2]
        assert isinstance(call, cst.Call)
        idx = _positional_index(call, parent)
        qual = self._qual(call.func)
        func_attr = call.func.attr.value if isinstance(call.func, cst.Attribute) else None
        slots = (rule.positional.get(qual, ()) if qual else ()) or (rule.methods.get(func_attr, ()) if func_attr else ())
        if idx is None or idx not in slots:
            return
        head = len(node.prefix) + len(node.quote)
        new_text = node.value[:head] + new + node.value[head + len(raw):]
        self.candidates.append(_Candidate(node, list(stack), rule, new_text, node.value, new_text, (), "tensor_type"))

    # ------------------------------------------------------------ helpers
    def _qual(self, func: cst.BaseExpression) -> Optional[str]:
        return self.ctx.imports.qualify(func) if isinstance(func, (cst.Name, cst.Attribute)) else None

    def _excluded(self, qual: Optional[str]) -> bool:
        return bool(qual and self.excluded and any(qual == e or qual.startswith(e + ".") for e in self.excluded))

    def _context(self, node: StringNode, stack: Sequence[cst.CSTNode]
                 ) -> Optional[tuple[str, object, bool]]:
        """Walk up through transparent wrappers to the slot: (where, info, formatted)."""
        child: cst.CSTNode = node
        fmt = False
        i = len(stack) - 1
        while i >= 0:
            p = stack[i]
            if isinstance(p, cst.IfExp):
                if p.test is child:
                    return None
            elif isinstance(p, cst.BooleanOperation):
                pass
            elif isinstance(p, cst.BinaryOperation):
                if p.left is not child or not isinstance(p.operator, (cst.Modulo, cst.Add)):
                    return None
                fmt = True
            elif isinstance(p, cst.Attribute):
                if p.value is child and p.attr.value == "format" and i >= 1 and isinstance(stack[i - 1], cst.Call) \
                        and stack[i - 1].func is p:  # type: ignore[attr-defined]
                    fmt = True
                    i -= 1
                    p = stack[i]
                elif p.value is child and p.attr.value in ("startswith", "endswith") and i >= 1:
                    return None  # 'cuda'.startswith(...): the literal is the receiver, not a device
                else:
                    return None
            elif isinstance(p, (cst.Element, cst.StarredElement, cst.List, cst.Tuple, cst.Set, cst.Dict)):
                pass
            elif isinstance(p, cst.DictElement):
                if p.value is child and isinstance(p.key, cst.SimpleString):
                    key = p.key.raw_value
                    # {"cuda:1": "cuda:0"} (a map_location remap) is transparent; {"device": "cuda"} names it
                    if self.device is None or not self.device_exact.match(key):
                        return "name", (key,), fmt
            elif isinstance(p, cst.Arg):
                if i >= 1 and isinstance(stack[i - 1], cst.Call):
                    return "arg", (p, stack[i - 1]), fmt
                return None
            elif isinstance(p, cst.ComparisonTarget):
                comparison = stack[i - 1]
                assert isinstance(comparison, cst.Comparison)
                others = [comparison.left] + [t.comparator for t in comparison.comparisons if t is not p]
                return "compare", (comparison, others), fmt
            elif isinstance(p, cst.Comparison):
                others = [t.comparator for t in p.comparisons]
                return "compare", (p, others), fmt
            elif isinstance(p, cst.Assign):
                names: list[str] = []
                for t in p.targets:
                    names += _names_of(t.target) if not isinstance(t.target, (cst.Tuple, cst.List)) else []
                return ("name", tuple(names), fmt) if names else None
            elif isinstance(p, cst.AnnAssign):
                return "name", tuple(_names_of(p.target)), fmt
            elif isinstance(p, cst.Param):
                return "name", (p.name.value,), fmt
            elif isinstance(p, cst.Return):
                for f in reversed(stack[:i]):
                    if isinstance(f, cst.FunctionDef):
                        return "return", (f.name.value,), fmt
                return None
            else:
                return None
            child = p
            i -= 1
        return None

    def _is_env_key(self, node: cst.SimpleString, stack: Sequence[cst.CSTNode]) -> bool:
        if len(stack) < 1:
            return False
        p = stack[-1]
        if isinstance(p, cst.Index) and len(stack) >= 3 and isinstance(stack[-3], cst.Subscript):
            return self._env_like(stack[-3].value)  # type: ignore[attr-defined]
        if isinstance(p, cst.DictElement):
            return p.key is node
        if isinstance(p, cst.Arg) and p.keyword is None and len(stack) >= 2 and isinstance(stack[-2], cst.Call):
            call = stack[-2]
            if _positional_index(call, p) != 0:  # type: ignore[arg-type]
                return False
            qual = self._qual(call.func)  # type: ignore[attr-defined]
            if qual in _ENV_FUNCS:
                return True
            func = call.func  # type: ignore[attr-defined]
            if isinstance(func, cst.Attribute):
                if func.attr.value in _ENV_METHODS:
                    return True
                if func.attr.value in _ENV_DICT_METHODS:
                    return self._env_like(func.value)
            return False
        if isinstance(p, cst.Comparison) and p.left is node:
            return any(isinstance(t.operator, (cst.In, cst.NotIn)) and self._env_like(t.comparator) for t in p.comparisons)
        return False

    def _env_like(self, expr: cst.BaseExpression) -> bool:
        qual = self._qual(expr)
        if qual == "os.environ":
            return True
        name = dotted_name(expr)
        return bool(name and "env" in name.rsplit(".", 1)[-1].lower())

    # ------------------------------------------------------------ decisions
    def finish(self) -> None:
        dev_re = self.device.variable_re if self.device is not None else None
        be_re = self.backend_rule.variable_re if self.backend_rule is not None else None
        facts = self.facts
        for c in self.candidates:
            note = c.note
            if c.names:
                if c.domain == "device":
                    known, pattern = facts.device_names, dev_re
                else:
                    known, pattern = facts.backend_names, be_re
                forwarded = [facts.tuple_slots[(n, c.element)] for n in c.names
                             if c.element is not None and (n, c.element) in facts.tuple_slots]
                forwarded = [why for domain, why in forwarded if domain == c.domain]
                if forwarded:
                    note = forwarded[0]
                elif not any(n in known or (pattern is not None and pattern.search(n)) for n in c.names):
                    continue
                else:
                    note = note or next((facts.notes[(c.domain, n)] for n in c.names if (c.domain, n) in facts.notes), "")
            message = f"{c.before} -> {c.after}" + (f" ({note})" if note else "")
            self.ctx.replace(c.node, lambda u, _v=c.new_text: u.with_changes(value=_v), ancestors=c.ancestors)
            self.ctx.record_change(c.node, c.rule, message, before=c.before, after=c.after)
        if self.external is not None:
            for arg, qual, names in self.external_pending:
                known = facts.device_names | facts.backend_names
                if any(n in known for n in names):
                    self.ctx.record_unsupported(arg, self.external, f"{qual}({arg.keyword.value}=...)")  # type: ignore[union-attr]
