"""``shell_local_rank``: ``torch.distributed.launch`` without ``--use_env`` passed ``--local_rank``.

torchrun passes no ``--local_rank`` argument; the script must take its device index from the
``LOCAL_RANK`` environment variable. One row per launch, so the user checks the script's argparse.
"""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.kinds.launcher import BOOL_OPTIONS, launch_site, launcher_options
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    modules: list[str] = rule.data["modules"]
    env_flags = frozenset(rule.data["env_flags"])
    for command in scan.commands:
        k = launch_site(command, modules)
        if k is None:
            continue
        words = command.words
        options = launcher_options(words, k + 2)
        if any(words[i].value in env_flags for i in options):
            continue
        after = max([k + 1, *options]) + 1
        if options and "=" not in words[options[-1]].value and words[options[-1]].value not in BOOL_OPTIONS:
            after += 1  # the last option's value
        script = words[after] if after < len(words) else None
        op = f"{words[k + 1].value} without --use_env"
        tip = rule.tip + (f" (script: {script.value})" if script is not None else "")
        findings.report(rule, words[k].start, words[k + 1].end, op, tip)
