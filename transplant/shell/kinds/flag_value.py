"""``shell_flag_value``: the value of a known backend flag (``--dist-backend nccl``) -> ``hccl``.

Both ``--flag value`` and ``--flag=value`` (quoted or not). Words of ``echo``/``printf`` are messages,
not arguments, and stay.
"""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Findings, ShellScan, Word
from transplant.sources.edits import Edit

_MESSAGE_COMMANDS = frozenset({"echo", "printf", "logger"})


def _replace_value(word: Word, value: str, new: str, from_end: bool) -> tuple[Edit, str] | None:
    at = word.raw.rfind(value) if from_end else word.raw.find(value)
    if at < 0:
        return None
    return Edit(word.start + at, word.start + at + len(value), new), word.raw[:at] + new + word.raw[at + len(value):]


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    flags = frozenset(rule.data["flags"])
    mapping: dict[str, str] = rule.data["map"]
    for command in scan.commands:
        index = command.name_index()
        if index is None or command.words[index].value.rsplit("/", 1)[-1] in _MESSAGE_COMMANDS:
            continue
        words = command.words
        for i, word in enumerate(words):
            flag, sep, value = word.value.partition("=")
            if flag not in flags:
                continue
            if sep and value in mapping:
                done = _replace_value(word, value, mapping[value], from_end=True)
                if done:
                    findings.change(rule, [done[0]], word.start, word.end, word.raw, done[1])
            elif not sep and i + 1 < len(words) and words[i + 1].value in mapping:
                nxt = words[i + 1]
                done = _replace_value(nxt, nxt.value, mapping[nxt.value], from_end=False)
                if done:
                    findings.change(rule, [done[0]], word.start, nxt.end,
                                    scan.text[word.start:nxt.end], scan.text[word.start:nxt.start] + done[1])
