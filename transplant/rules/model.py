"""Typed rule objects: one frozen dataclass per rule *kind*, built from the validated JSON.

The rewriter (``transplant.rewrite``) reads these objects; it never looks at the raw JSON. Every class
is picklable (plain data) because each worker of a process pool receives or rebuilds a :class:`RuleSet`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True, eq=False)
class Rule:
    """Fields shared by every kind (see rules/README.md)."""

    id: str = ""
    kind: str = ""
    severity: str = "safe"
    message: str = ""
    tip: str = ""
    reference: str = ""
    description: str = ""
    triggers: tuple[str, ...] = ()
    needs_torch_npu: bool = True
    requires_option: str = ""  # the rule is listed but inert unless RuleSet.options[this] is truthy
    source: str = ""  # the rule file this rule came from (for messages)

    def summary(self) -> str:
        """One line for listings: the description's first line, else the message."""
        return (self.description.strip().splitlines() or [self.message])[0]


@dataclass(frozen=True, eq=False)
class RenameRule(Rule):
    """Qualified-name renames, matched through imports and aliases (``torch.cuda.X`` -> ``torch.npu.X``)."""

    map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class UnsupportedRule(Rule):
    """Names / module prefixes (and string commands, compiled-extension suffixes) with no NPU equivalent."""

    names: Mapping[str, str] = field(default_factory=dict)
    strings: Mapping[str, str] = field(default_factory=dict)
    module_suffixes: Mapping[str, str] = field(default_factory=dict)
    method_chains: Mapping[str, str] = field(default_factory=dict)
    external_parameters: frozenset[str] = frozenset()
    external_ignore: tuple[str, ...] = ()
    report_undecided: bool = False

    def tip_for(self, specific: str) -> str:
        return specific or self.tip


@dataclass(frozen=True, eq=False)
class MethodRule(Rule):
    """Attribute renames on any receiver: ``x.cuda(...)`` -> ``x.npu(...)``, ``x.is_cuda`` -> ``x.is_npu``."""

    calls: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class DeviceRule(Rule):
    """``"cuda"``/``"cuda:N"`` -> ``"npu"``/``"npu:N"`` where the string is a device."""

    from_type: str = "cuda"
    to_type: str = "npu"
    keywords: frozenset[str] = frozenset()
    positional: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    methods: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    callable_keywords: Mapping[str, frozenset[str]] = field(default_factory=dict)
    exclude_callables: tuple[str, ...] = ()
    variable_pattern: str = r"^(device|dev|devices|device_type|device_name|map_location|loc|target_device)$"

    @property
    def variable_re(self) -> re.Pattern[str]:
        return _compiled(self.variable_pattern)


@dataclass(frozen=True, eq=False)
class BackendRule(Rule):
    """Distributed backend names (``nccl`` -> ``hccl``) where the string is a backend."""

    map: Mapping[str, str] = field(default_factory=dict)
    keywords: frozenset[str] = frozenset()
    positional: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    variable_pattern: str = r"(^|_)(backend|dist_backend)$"

    @property
    def variable_re(self) -> re.Pattern[str]:
        return _compiled(self.variable_pattern)


@dataclass(frozen=True, eq=False)
class ImportRule(Rule):
    """Add (``insert``) or delete (``remove``) imports."""

    insert: str = ""
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class ArgumentsRule(Rule):
    """Add / rename / drop keyword arguments of a qualified callable."""

    callable: str = ""
    params: tuple[str, ...] = ()
    add: Mapping[str, str] = field(default_factory=dict)
    add_positional: bool = False
    rename: Mapping[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class PickleLoadRule(Rule):
    """A loader that unpickles (``torch.load``): whether the call may need ``weights_only=False``.

    The call is left alone when it passes ``keyword`` itself or when its result can only be weights
    (it is passed straight to one of ``weights_consumers``, e.g. ``load_state_dict``). Otherwise it is
    an unsupported row, and the rules in ``holds`` do not edit the call (it would still fail) -- unless
    the run option ``option`` is on: then ``keyword=value`` is added.
    """

    callable: str = ""
    params: tuple[str, ...] = ()
    keyword: str = "weights_only"
    value: str = "False"
    option: str = "trust_pickles"
    holds: tuple[str, ...] = ()
    weights_consumers: frozenset[str] = frozenset({"load_state_dict"})


@dataclass(frozen=True, eq=False)
class EnvVarRule(Rule):
    """Environment-variable keys (``CUDA_VISIBLE_DEVICES`` -> ``ASCEND_RT_VISIBLE_DEVICES``)."""

    map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TensorTypeRule(Rule):
    """Legacy tensor type names given as strings (``set_default_tensor_type('torch.cuda.FloatTensor')``)."""

    map: Mapping[str, str] = field(default_factory=dict)
    positional: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    methods: Mapping[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class StructuralRule(Rule):
    """A rule of a kind handled by a whole-module pass (``transplant.rewrite.passes``).

    ``role`` says which part of its pass the rule selects (``amp``, ``optimizers``, ``unsupported``, ...;
    empty when the kind has one part); the kind's other fields are kept raw in ``data``.
    """

    role: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


_RE_CACHE: dict[str, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    compiled = _RE_CACHE.get(pattern)
    if compiled is None:
        compiled = _RE_CACHE[pattern] = re.compile(pattern)
    return compiled


# Name components too common in ordinary code to be good prefilter triggers.
_WEAK_TRIGGERS = frozenset({
    "torch", "nn", "ops", "mlp", "load", "graph", "graphs", "device", "memory", "random", "common", "trace",
    "script", "version", "backward", "parallel", "distributed", "transformer", "contrib", "utils", "data",
    "jit", "backends", "profiler", "stream", "streams", "compile", "sparse", "Event", "RNN", "optimizers",
    "normalization", "functional", "models", "modules", "init", "seed", "Stream", "matmul", "amp",
})

COMMON_FIELDS = ("id", "kind", "severity", "message", "tip", "reference", "description")
# Kinds built into typed rules below; any other kind is a StructuralRule for a registered pass.
NODE_KINDS = ("rename", "unsupported", "method", "device", "backend", "import", "arguments", "envvar",
              "tensor_type", "pickle_load")


def _slots(raw: Mapping[str, Any] | None) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in (raw or {}).items()}


def build_rule(raw: Mapping[str, Any], source: str) -> Rule:
    """Turn one schema-valid JSON rule object into its typed dataclass."""
    common: dict[str, Any] = {k: raw[k] for k in COMMON_FIELDS if k in raw}
    common["triggers"] = tuple(raw.get("triggers", ()))
    common["needs_torch_npu"] = bool(raw.get("needs_torch_npu", True))
    common["requires_option"] = raw.get("requires_option", "")
    common["source"] = source
    kind = raw["kind"]
    if kind == "rename":
        return RenameRule(**common, map=dict(raw["map"]))
    if kind == "unsupported":
        return UnsupportedRule(**common, names=dict(raw["names"]), strings=dict(raw.get("strings", {})),
                               module_suffixes=dict(raw.get("module_suffixes", {})),
                               method_chains=dict(raw.get("method_chains", {})),
                               external_parameters=frozenset(raw.get("external_parameters", ())),
                               external_ignore=tuple(raw.get("external_ignore", ())),
                               report_undecided=bool(raw.get("report_undecided", False)))
    if kind == "method":
        return MethodRule(**common, calls=dict(raw.get("calls", {})), attributes=dict(raw.get("attributes", {})))
    if kind == "device":
        extra = {"variable_pattern": raw["variable_pattern"]} if "variable_pattern" in raw else {}
        return DeviceRule(**common, from_type=raw["from"], to_type=raw["to"], keywords=frozenset(raw["keywords"]),
                          positional=_slots(raw.get("positional")), methods=_slots(raw.get("methods")),
                          callable_keywords={k: frozenset(v) for k, v in raw.get("callable_keywords", {}).items()},
                          exclude_callables=tuple(raw.get("exclude_callables", ())), **extra)
    if kind == "backend":
        extra = {"variable_pattern": raw["variable_pattern"]} if "variable_pattern" in raw else {}
        return BackendRule(**common, map=dict(raw["map"]), keywords=frozenset(raw["keywords"]),
                           positional=_slots(raw.get("positional")), **extra)
    if kind == "import":
        return ImportRule(**common, insert=raw.get("insert", ""), remove=tuple(raw.get("remove", ())))
    if kind == "arguments":
        return ArgumentsRule(**common, callable=raw["callable"], params=tuple(raw.get("params", ())),
                             add=dict(raw.get("add", {})), add_positional=bool(raw.get("add_positional", False)),
                             rename=dict(raw.get("rename", {})), drop=tuple(raw.get("drop", ())))
    if kind == "pickle_load":
        return PickleLoadRule(**common, callable=raw["callable"], params=tuple(raw.get("params", ())),
                              keyword=raw["keyword"], value=raw["value"], option=raw["option"],
                              holds=tuple(raw.get("holds", ())),
                              weights_consumers=frozenset(raw.get("weights_consumers", ("load_state_dict",))))
    if kind == "envvar":
        return EnvVarRule(**common, map=dict(raw["map"]))
    if kind == "tensor_type":
        return TensorTypeRule(**common, map=dict(raw["map"]), positional=_slots(raw.get("positional")),
                              methods=_slots(raw.get("methods")))
    data = {k: v for k, v in raw.items() if k not in COMMON_FIELDS and k not in ("triggers", "needs_torch_npu", "requires_option")}
    return StructuralRule(**common, role=str(raw.get("role", "")), data=data)


def default_triggers(rule: Rule) -> tuple[str, ...]:
    """Substrings that must occur in a file for ``rule`` to possibly apply.

    A qualified name can only be reached through source text that spells each of its components
    (``import torch.cuda as tc; tc.synchronize()`` spells ``torch``, ``cuda`` and ``synchronize``), so the
    longest component of a key is a sound trigger for it.
    """
    if rule.triggers:
        return rule.triggers
    out: list[str] = []

    def longest(qualname: str) -> str:
        # Every component is spelled somewhere in a file that uses the name; pick the most selective:
        # the longest one that is not a common word (`mmcv.ops` -> mmcv, `torch.cuda.memory` -> cuda).
        parts = qualname.split(".")
        strong = [p for p in parts if p not in _WEAK_TRIGGERS]
        return max(strong or parts[1:] or parts, key=len)

    if isinstance(rule, RenameRule):
        out += [longest(k) for k in rule.map]
    elif isinstance(rule, UnsupportedRule):
        out += [longest(k) for k in rule.names] + list(rule.strings) + list(rule.module_suffixes)
        out += [k.rsplit(".", 1)[-1] for k in rule.method_chains]
    elif isinstance(rule, MethodRule):
        out += list(rule.calls) + list(rule.attributes)
    elif isinstance(rule, DeviceRule):
        out.append(rule.from_type)
    elif isinstance(rule, (BackendRule, EnvVarRule)):
        out += list(rule.map)
    elif isinstance(rule, TensorTypeRule):
        out += [k.rsplit(".", 1)[-1] for k in rule.map]
    elif isinstance(rule, (ArgumentsRule, PickleLoadRule)):
        out.append(longest(rule.callable))
    elif isinstance(rule, ImportRule):
        out += [longest(k) for k in rule.remove]  # `insert` alone never makes a file worth parsing
    # StructuralRule: no sound default; such rules must declare `triggers` (else they only see files
    # that some other rule already made worth parsing).
    return tuple(dict.fromkeys(t for t in out if t))
