"""Front end for configuration files (YAML, JSON, INI): device and backend keys.

A key that is unmistakably a device or backend setting (the rule's ``keys``: ``device``, ``device_type``,
``accelerator``, ``dist_backend``, ``backend``, ...) whose value is a CUDA one (``cuda``, ``cuda:1``,
``gpu``, ``nccl``) gets a review row. The value is rewritten only when asked for
(``--rewrite-configs``, the run option ``rewrite_configs``) or when the project's Python reads that
key into a device/backend slot: :func:`migrate_config` takes those keys as ``read_keys`` (the seam for
the cross-file analysis, which is not built yet, so today only the option rewrites). Only the value's
characters change; every other key, value, comment and byte stays.

Positions come from real readers: PyYAML's composer (node marks), a JSON token scan of a file
:mod:`json` has accepted, and INI's line grammar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from transplant.results import Change, FileResult, Operation, Status, Unsupported
from transplant.rules import RuleSet
from transplant.rules.model import StructuralRule
from transplant.sources.edits import Edit, LineIndex, apply_edits

CONFIG_KINDS = ("config_key",)

_YAML = (".yaml", ".yml")
_INI = (".ini", ".cfg")
_NOT_CONFIGS = frozenset({"environment.yml", "environment.yaml", "package-lock.json"})


def matches(rel: str) -> bool:
    """Whether this path is a config file we read."""
    name = rel.rsplit("/", 1)[-1]
    if name in _NOT_CONFIGS or rel.startswith(".github/"):
        return False
    return name.endswith(_YAML + _INI + (".json",))


@dataclass(frozen=True)
class _Pair:
    key: str
    value: str
    start: int          # span of the value's characters (inside quotes)
    end: int


def _yaml_pairs(text: str) -> Iterator[_Pair]:
    try:
        import yaml
    except ImportError:  # PyYAML is a dependency; without it YAML files are only copied
        return

    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return
    stack = [d for d in documents if d is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode):
                    start, end = value.start_mark.index, value.end_mark.index
                    if value.style in ("'", '"'):
                        start, end = start + 1, end - 1
                    if text[start:end] == value.value:  # plain or simply quoted: the characters are the value
                        yield _Pair(str(key.value), value.value, start, end)
                else:
                    stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


def _json_pairs(text: str) -> Iterator[_Pair]:
    try:
        json.loads(text)
    except ValueError:
        return
    tokens = [(m.group(), m.start(), m.end()) for m in _JSON_TOKEN.finditer(text)]
    for i in range(1, len(tokens) - 2):
        key, colon, value = tokens[i], tokens[i + 1], tokens[i + 2]
        if (tokens[i - 1][0] in ("{", ",") and key[0].startswith('"') and colon[0] == ":"
                and value[0].startswith('"') and "\\" not in value[0]):
            yield _Pair(json.loads(key[0]), json.loads(value[0]), value[1] + 1, value[2] - 1)


_INI_LINE = re.compile(r"^([ \t]*)([^=:#;\[\s][^=:]*?)[ \t]*[=:][ \t]*(.*?)[ \t]*$")


def _ini_pairs(text: str) -> Iterator[_Pair]:
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        match = _INI_LINE.match(body)
        if match and match.group(3):
            value = match.group(3)
            quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
            start = offset + match.start(3) + (1 if quoted else 0)
            inner = value[1:-1] if quoted else value
            yield _Pair(match.group(2).strip(), inner, start, start + len(inner))
        offset += len(line)


def _pairs(text: str, rel: str) -> list[_Pair]:
    """Every scalar key/value pair of the file, in file order."""
    if rel.endswith(_YAML):
        pairs = _yaml_pairs(text)
    elif rel.endswith(".json"):
        pairs = _json_pairs(text)
    else:
        pairs = _ini_pairs(text)
    return sorted(pairs, key=lambda p: p.start)


def _replacement(value: str, values: dict[str, str]) -> str | None:
    """The new value of a CUDA setting (``cuda:1`` keeps its index), or None if it is not one."""
    if value in values:
        return values[value]
    base, sep, index = value.partition(":")
    if sep and index.isdigit() and base in values:
        return f"{values[base]}:{index}"
    return None


def migrate_config(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = (),
                   read_keys: Collection[str] = ()) -> FileResult:
    """Rows for device/backend keys; values rewritten with ``rewrite_configs`` or for ``read_keys``."""
    rules = [r for r in ruleset if isinstance(r, StructuralRule) and r.kind in CONFIG_KINDS]
    words = {v for r in rules for v in r.data["values"]}
    if not rules or not any(w.encode() in source for w in words):
        return FileResult(path=rel, status=Status.UNCHANGED, kind="config")
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        return FileResult(path=rel, status=Status.UNCHANGED, kind="config")
    rewrite_all = bool(ruleset.options.get("rewrite_configs"))
    index = LineIndex(text)
    changes: list[Change] = []
    unsupported: list[Unsupported] = []
    edits: list[Edit] = []
    for pair in _pairs(text, rel):
        for rule in rules:
            if pair.key not in rule.data["keys"]:
                continue
            new = _replacement(pair.value, rule.data["values"])
            if new is None:
                continue
            line, column = index.position(pair.start)
            if rewrite_all or pair.key in read_keys:
                edits.append(Edit(pair.start, pair.end, new))
                changes.append(Change(rule.id, line, line, column, Operation.MODIFY, rule.message, "review",
                                      f"{pair.key}: {pair.value}", f"{pair.key}: {new}"))
            else:
                unsupported.append(Unsupported(rule.id, line, line, f"{pair.key}: {pair.value}",
                                               f"{rule.tip} (-> {new}; transplant --rewrite-configs rewrites it)",
                                               column))
            break
    if not edits:
        return FileResult(path=rel, status=Status.UNCHANGED, unsupported=unsupported, kind="config")
    new_text = apply_edits(text, edits)
    return FileResult(path=rel, status=Status.CHANGED, new_source=new_text.encode("utf-8"), changes=changes,
                      unsupported=unsupported, kind="config")
