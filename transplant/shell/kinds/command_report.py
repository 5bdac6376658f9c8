"""``shell_command_report``: a CUDA-only program run by the shell (``nvidia-smi``) -> a row with its tip."""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    commands: dict[str, str] = rule.data["commands"]
    for command in scan.commands:
        index = command.name_index()
        if index is None:
            continue
        program = command.words[index]
        name = program.value.rsplit("/", 1)[-1]
        if name in commands:
            end = command.words[-1].end
            findings.report(rule, program.start, end, scan.text[program.start:end].split("\n")[0],
                            commands[name] or rule.tip)
