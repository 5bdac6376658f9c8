"""``shell_envvar``: rename environment variables where the shell sets or reads them.

Set: ``NAME=v cmd``, ``export/declare -x/local/readonly NAME[=v]``, ``unset NAME``, ``env NAME=v cmd``,
Dockerfile ``ENV NAME=v`` and notebook ``%env NAME=v``. Read: ``$NAME`` / ``${NAME...}``. The same
word in an ``echo`` message, a comment or a heredoc is not a setting and stays.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Command, Findings, ShellScan, Word
from transplant.sources.edits import Edit

_DECLARERS = frozenset({"export", "declare", "typeset", "local", "readonly", "unset"})


def set_names(command: Command) -> Iterator[tuple[Word, str, int]]:
    """(word, NAME, offset of NAME) for every variable this command sets, exports or unsets."""
    for word in command.assignments:
        name = word.value.partition("=")[0]
        yield word, name, word.start
    words = command.words
    i = 0
    while i < len(words):
        base = words[i].value.rsplit("/", 1)[-1]
        if base in _DECLARERS or base == "env":
            i += 1
            while i < len(words):
                value = words[i].value
                if value.startswith("-"):
                    i += 1
                    continue
                name, sep, _ = value.partition("=")
                if not _identifier(name) or (base == "env" and not sep):
                    break
                at = _name_offset(words[i], name)
                if at is not None:
                    yield words[i], name, at
                i += 1
            continue
        i += 1


def _identifier(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.replace("_", "a").isalnum()


def _name_offset(word: Word, name: str) -> int | None:
    """Where NAME is spelled in the raw word (after opening quotes only), else None."""
    lead = len(word.raw) - len(word.raw.lstrip("\"'"))
    return word.start + lead if word.raw[lead:lead + len(name)] == name else None


def renamed(word: Word, at: int, name: str, new: str) -> str:
    """The raw word with NAME at ``at`` replaced."""
    rel = at - word.start
    return word.raw[:rel] + new + word.raw[rel + len(name):]


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    mapping: Mapping[str, str] = rule.data["map"]
    for command in scan.commands:
        for word, name, at in set_names(command):
            if name in mapping:
                new = mapping[name]
                findings.change(rule, [Edit(at, at + len(name), new)], word.start, word.end,
                                word.raw, renamed(word, at, name, new))
    for key in scan.env_keys:
        if key.value in mapping:
            new = mapping[key.value]
            findings.change(rule, [Edit(key.start, key.end, new)], key.start, key.end, key.raw, new)
    for param in scan.parameters:
        if param.name in mapping:
            new = mapping[param.name]
            raw = scan.text[param.start:param.end]
            rel = param.name_start - param.start
            findings.change(rule, [Edit(param.name_start, param.name_start + len(param.name), new)],
                            param.start, param.end, raw, raw[:rel] + new + raw[rel + len(param.name):],
                            message=f"{rule.message} (read)")
