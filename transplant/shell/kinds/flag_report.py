"""``shell_flag_report``: a CUDA-only option of a program (``docker run --gpus all``) -> a row with its tip."""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    programs = frozenset(rule.data["programs"])
    flags: dict[str, str] = rule.data["flags"]
    for command in scan.commands:
        index = command.name_index()
        if index is None or command.words[index].value.rsplit("/", 1)[-1] not in programs:
            continue
        words = command.words
        for i, word in enumerate(words[index + 1:], start=index + 1):
            for flag, tip in flags.items():
                if word.value == flag or word.value.startswith(flag + "="):
                    end = words[i + 1].end if word.value == flag and i + 1 < len(words) else word.end
                    findings.report(rule, word.start, end, scan.text[word.start:end], tip or rule.tip)
