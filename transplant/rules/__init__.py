"""Load and validate the JSON rule sets (``rules/*.json``) into a :class:`RuleSet` of typed rules.

``load_ruleset()`` reads every bundled rule set plus the user's extra files (``-r/--rules``; a rule with
the id of a bundled rule replaces it), validates each file against ``rules/schema.json`` with a real
JSON-Schema validator, and keeps the rules whose id matches ``--select`` and not ``--ignore`` (id
prefixes). A bad file raises :class:`RuleFileError` naming the file, the JSON pointer of the bad entry
and what was expected.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from transplant._paths import rules_dir
from transplant.rules.model import (
    ArgumentsRule,
    BackendRule,
    DeviceRule,
    EnvVarRule,
    ImportRule,
    MethodRule,
    PickleLoadRule,
    RenameRule,
    Rule,
    StructuralRule,
    TensorTypeRule,
    UnsupportedRule,
    build_rule,
    default_triggers,
)

__all__ = [
    "ArgumentsRule", "BackendRule", "DeviceRule", "EnvVarRule", "ImportRule", "MethodRule", "PickleLoadRule", "RenameRule",
    "Rule", "RuleFileError", "RuleSet", "StructuralRule", "TensorTypeRule", "UnsupportedRule",
    "bundled_rule_files", "load_ruleset", "DEFAULT_OPTIONS",
]

# Options that reach rule kinds (see prompts/rules_format.md): set from the CLI.
DEFAULT_OPTIONS: Mapping[str, object] = {"amp": None, "npu_fused_optimizers": False, "trust_pickles": False,
                                         "distributed": False, "model": None, "entry": None}


class RuleFileError(Exception):
    """A rule file is unreadable or invalid. ``str()`` is ``"<path>: <json pointer>: <what was expected>"``."""

    def __init__(self, path: str | Path, pointer: str, expected: str) -> None:
        self.path = str(path)
        self.pointer = pointer or "/"
        self.expected = expected
        super().__init__(f"{self.path}: {self.pointer}: {expected}")


class RuleSet:
    """The rules in force for one run (picklable, cheap to rebuild in each worker)."""

    def __init__(self, rules: Sequence[Rule], options: Mapping[str, object], files: Sequence[str]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.options: dict[str, object] = dict(options)
        self.files: tuple[str, ...] = tuple(files)
        self._by_id = {r.id: r for r in self.rules}
        # Derived lookup structures built by the rewriter (per process; not pickled).
        self.cache: dict[str, object] = {}
        # Rules behind an option that is off (e.g. --amp) stay listed but never trigger or run.
        self.active: tuple[Rule, ...] = tuple(
            r for r in self.rules if not r.requires_option or self.options.get(r.requires_option)
        )
        triggers = sorted({t for r in self.active for t in default_triggers(r)}, key=len)
        # A file that contains none of these substrings cannot match any rule: copied without parsing.
        self.trigger_re: re.Pattern[bytes] | None = (
            re.compile(b"|".join(re.escape(t.encode()) for t in triggers)) if triggers else None
        )

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["cache"] = {}
        return state

    def __iter__(self) -> Iterator[Rule]:
        """The rules in force (``.rules`` also holds those inert because their option is off)."""
        return iter(self.active)

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, or None."""
        return self._by_id.get(rule_id)

    def of_kind(self, kind: str) -> list[Rule]:
        """Rules of one kind, in load order."""
        return [r for r in self.rules if r.kind == kind]

    def may_apply(self, source: bytes) -> bool:
        """Cheap prefilter: can any rule possibly match this file's bytes?"""
        return self.trigger_re is not None and self.trigger_re.search(source) is not None


def bundled_rule_files() -> list[Path]:
    """The shipped rule sets, in a stable order."""
    return sorted(p for p in rules_dir().glob("*.json") if p.name != "schema.json")


@functools.lru_cache(maxsize=1)
def _validator():  # type: ignore[no-untyped-def]
    import jsonschema

    schema = json.loads((rules_dir() / "schema.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _pointer(parts: Sequence[object]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _best_error(errors: list) -> object:  # type: ignore[type-arg]
    import jsonschema

    # Prefer the deepest error: "/rules/3/map/torch.cuda.x: 5 is not of type 'string'" beats "/rules/3: ...".
    return max(errors, key=lambda e: (len(e.absolute_path), -len(list(e.context or ())), jsonschema.exceptions.relevance(e)))


def _read_file(path: Path, validate: bool = True) -> list[Rule]:
    """Parse + validate one rule file; typed rules in file order.

    ``validate=False`` skips the JSON Schema check (the bundled files: the test suite validates them, and
    importing jsonschema is a large part of a small run's start-up); the semantic checks always run.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(path, "", f"a readable UTF-8 file ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError(path, "", f"UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RuleFileError(path, "", f"valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except RecursionError:
        raise RuleFileError(path, "", f"JSON nested at most {MAX_RULE_FILE_DEPTH} levels deep") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise RuleFileError(path, "", f"valid JSON ({exc})") from None
    deepest = _depth_beyond(data, MAX_RULE_FILE_DEPTH)
    if deepest is not None:
        raise RuleFileError(path, _pointer(deepest), f"JSON nested at most {MAX_RULE_FILE_DEPTH} levels deep")
    try:
        errors = list(_validator().iter_errors(data)) if validate else []
    except RecursionError:  # defensive: the depth check above keeps the validator far from the limit
        raise RuleFileError(path, "", f"JSON nested at most {MAX_RULE_FILE_DEPTH} levels deep") from None
    if errors:
        err = _best_error(errors)
        raise RuleFileError(path, _pointer(list(err.absolute_path)), err.message)  # type: ignore[attr-defined]
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data["rules"]):
        where = f"/rules/{index}"
        if raw["id"] in seen:
            raise RuleFileError(path, where + "/id", f"a unique id ({raw['id']} is also /rules/{seen[raw['id']]})")
        seen[raw["id"]] = index
        _check_semantics(path, where, raw)
        rules.append(build_rule(raw, str(path)))
    return rules


# A rule file needs about six levels (file, rules, rule, field, map, list); the validator and the rule
# builders recurse, so anything far deeper is refused before they see it.
MAX_RULE_FILE_DEPTH = 32


def _depth_beyond(data: object, limit: int) -> list[object] | None:
    """The JSON path of the first value nested deeper than ``limit`` containers, or None (iterative)."""
    stack: list[tuple[object, list[object]]] = [(data, [])]
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            items: Iterator[tuple[object, object]] = iter(value.items())
        elif isinstance(value, list):
            items = iter(enumerate(value))
        else:
            continue
        if len(where) >= limit:
            return where
        stack.extend((child, [*where, key]) for key, child in items)
    return None


def _check_semantics(path: Path, where: str, raw: Mapping[str, object]) -> None:
    """What JSON Schema cannot say: non-empty tips, parseable expressions, compilable patterns."""
    kind = raw["kind"]
    if kind == "unsupported" and not raw.get("tip"):
        for key in ("names", "strings", "module_suffixes", "method_chains"):
            for name, tip in dict(raw.get(key, {})).items():  # type: ignore[call-overload]
                if not tip:
                    raise RuleFileError(path, _pointer([*where.strip("/").split("/"), key, name]),
                                        "a non-empty tip (or a rule-level 'tip')")
    if kind == "arguments":
        for name, expr in dict(raw.get("add", {})).items():  # type: ignore[call-overload]
            try:
                ast.parse(str(expr), mode="eval")
            except SyntaxError:
                raise RuleFileError(path, f"{where}/add/{name}", "a Python expression") from None
    if "variable_pattern" in raw:
        try:
            re.compile(str(raw["variable_pattern"]))
        except re.error as exc:
            raise RuleFileError(path, f"{where}/variable_pattern", f"a regular expression ({exc})") from None


@functools.lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int, validate: bool = True) -> tuple[Rule, ...]:
    return tuple(_read_file(Path(path), validate))


def _load(path: Path, bundled: bool = False) -> tuple[Rule, ...]:
    try:
        st = path.stat()
    except OSError as exc:
        raise RuleFileError(path, "", f"an existing rule file ({exc.strerror or exc})") from exc
    return _read_cached(str(path), st.st_mtime_ns, st.st_size, not bundled)


def load_ruleset(
    extra_files: Sequence[str | Path] = (),
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    options: Mapping[str, object] | None = None,
) -> RuleSet:
    """All bundled rule sets plus ``extra_files`` (same id overrides), filtered by id prefixes.

    ``select``: keep only rules whose id starts with one of these (empty = all); ``ignore``: then drop
    rules whose id starts with one of these. ``options`` (``amp``, ``npu_fused_optimizers``, ...) are
    merged over :data:`DEFAULT_OPTIONS` and exposed as ``RuleSet.options``.
    """
    by_id: dict[str, Rule] = {}
    files: list[str] = []
    for path in bundled_rule_files():
        for rule in _load(path, bundled=True):
            if rule.id in by_id:
                raise RuleFileError(path, "", f"ids unique across bundled rule sets ({rule.id} is also in {by_id[rule.id].source})")
            by_id[rule.id] = rule
        files.append(str(path))
    for extra in extra_files:
        path = Path(extra)
        for rule in _load(path):
            by_id[rule.id] = rule  # same id: the user's rule replaces the bundled one, in its place
        files.append(str(path))
    select_t, ignore_t = tuple(select), tuple(ignore)
    rules = [
        r for r in by_id.values()
        if (not select_t or r.id.startswith(select_t)) and not (ignore_t and r.id.startswith(ignore_t))
    ]
    if select_t and any(r.needs_torch_npu for r in rules):
        # A selected rule brings the rules its output depends on: `.npu()` needs `import torch_npu`
        # (unless that rule is ignored explicitly).
        chosen = {r.id for r in rules}
        rules += [r for r in by_id.values() if isinstance(r, ImportRule) and r.insert == "torch_npu"
                  and r.id not in chosen and not (ignore_t and r.id.startswith(ignore_t))]
        order = {rule_id: i for i, rule_id in enumerate(by_id)}
        rules.sort(key=lambda r: order[r.id])
    merged = dict(DEFAULT_OPTIONS)
    merged.update(options or {})
    return RuleSet(rules, merged, files)
