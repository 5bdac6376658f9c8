"""Settings of a migration: ``[tool.transplant]`` in the project's ``pyproject.toml``, then the command line.

The configuration file is found the way ruff finds its own: from SRC (its folder, for a single file)
upwards, the first ``pyproject.toml`` that has a ``[tool.transplant]`` table. A value given on the
command line replaces the file's (lists too: ``--select`` replaces ``select``). Paths in the file
(``rules``, ``baseline``) are relative to the file's folder; ``exclude`` globs are relative to SRC, as on
the command line. Every resolved value remembers where it came from (``transplant --show-settings``).

::

    [tool.transplant]
    select = ["TP1", "TP5"]
    ignore = ["TP170"]
    exclude = ["third_party", "docs/*.py"]
    rules = ["tools/our_rules.json"]
    amp = "bf16"                     # or "fp16", or false
    baseline = "transplant-baseline.json"
    npu-fused-optimizers = false
    respect-gitignore = true
    copy-vcs = false
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None  # type: ignore[assignment]

CONFIG_FILE = "pyproject.toml"
DEFAULT_ORIGIN = "default"
CLI_ORIGIN = "command line"


class SettingsError(Exception):
    """A bad ``[tool.transplant]`` table (one line naming the file and the key)."""


@dataclass(frozen=True)
class _Key:
    name: str            # the key in [tool.transplant]
    field: str           # the attribute of Settings
    kind: str            # "list" | "bool" | "amp" | "path" | "paths"
    default: Any


KEYS: tuple[_Key, ...] = (
    _Key("select", "select", "list", ()),
    _Key("ignore", "ignore", "list", ()),
    _Key("exclude", "exclude", "list", ()),
    _Key("rules", "rule_files", "paths", ()),
    _Key("amp", "amp", "amp", None),
    _Key("baseline", "baseline", "path", None),
    _Key("npu-fused-optimizers", "npu_fused_optimizers", "bool", False),
    _Key("respect-gitignore", "respect_ignore", "bool", True),
    _Key("copy-vcs", "copy_vcs", "bool", False),
)
_BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True)
class Settings:
    """The resolved settings; ``origins`` maps each field to "default", "command line" or the file's path."""

    select: tuple[str, ...]
    ignore: tuple[str, ...]
    exclude: tuple[str, ...]
    rule_files: tuple[str, ...]
    amp: Optional[str]
    baseline: Optional[str]
    npu_fused_optimizers: bool
    respect_ignore: bool
    copy_vcs: bool
    config_file: Optional[Path]
    origins: Mapping[str, str]


def find_config(src: Path) -> Optional[Path]:
    """The nearest ``pyproject.toml`` with a ``[tool.transplant]`` table, from SRC upwards (or None)."""
    start = src.resolve()
    if not start.is_dir():
        start = start.parent
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file() and _read_table(candidate) is not None:
            return candidate
    return None


def _read_table(path: Path) -> Optional[dict[str, Any]]:
    if tomllib is None:
        return None
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError:
        return None
    except tomllib.TOMLDecodeError as exc:
        # Only our own table matters, but a broken file that may hold it must not be silently skipped.
        if b"tool.transplant" in path.read_bytes():
            raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
        return None
    table = document.get("tool", {}).get("transplant")
    return table if isinstance(table, dict) else None


def load_config(path: Path) -> dict[str, Any]:
    """The validated ``[tool.transplant]`` table of ``path``, by Settings field, paths made absolute."""
    table = _read_table(path) or {}
    values: dict[str, Any] = {}
    for name, value in table.items():
        key = _BY_NAME.get(name)
        if key is None:
            known = ", ".join(k.name for k in KEYS)
            raise SettingsError(f"{path}: unknown key [tool.transplant] {name} (known: {known})")
        values[key.field] = _validate(path, key, value)
    return values


def _validate(path: Path, key: _Key, value: Any) -> Any:
    where = f"{path}: [tool.transplant] {key.name}"
    if key.kind in ("list", "paths"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where} must be a list of strings")
        if key.kind == "paths":
            return tuple(str((path.parent / v).resolve()) for v in value)
        return tuple(value)
    if key.kind == "bool":
        if not isinstance(value, bool):
            raise SettingsError(f"{where} must be true or false")
        return value
    if key.kind == "amp":
        if value is False:
            return None
        if value not in ("fp16", "bf16"):
            raise SettingsError(f'{where} must be "fp16", "bf16" or false')
        return value
    if key.kind == "path":
        if not isinstance(value, str) or not value:
            raise SettingsError(f"{where} must be a path (a string)")
        return str((path.parent / value).resolve())
    raise AssertionError(key.kind)  # pragma: no cover


def resolve(src: Path, given: Mapping[str, Any]) -> Settings:
    """Defaults, then the project's ``[tool.transplant]``, then ``given`` (the options the user typed)."""
    config = find_config(src)
    from_file = load_config(config) if config is not None else {}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in KEYS:
        if key.field in given:
            values[key.field], origins[key.field] = given[key.field], CLI_ORIGIN
        elif key.field in from_file:
            values[key.field], origins[key.field] = from_file[key.field], str(config)
        else:
            values[key.field], origins[key.field] = key.default, DEFAULT_ORIGIN
    return Settings(**values, config_file=config, origins=origins)


def describe(settings: Settings) -> list[str]:
    """``--show-settings``: one line per setting, with where its value came from."""
    lines = [f"# configuration file: {settings.config_file or '(none found from SRC upwards)'}"]
    width = max(len(key.name) for key in KEYS)
    for key in KEYS:
        value = getattr(settings, key.field)
        shown = ("false" if key.kind == "amp" else '""') if value is None else _toml(value)
        lines.append(f"{key.name:<{width}} = {shown:<30}  # {settings.origins[key.field]}")
    return lines


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_quote(v) for v in value) + "]"
    return _quote(str(value))


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
