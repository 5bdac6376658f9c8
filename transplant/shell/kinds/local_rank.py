"""``shell_local_rank``: ``torch.distributed.launch`` without ``--use_env`` passed ``--local_rank``.

torchrun passes no ``--local_rank`` argument; the script must take its device index from the
``LOCAL_RANK`` environment variable. One row per launch, so the user checks the script's argparse.
"""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.kinds.launcher import launch_site, launcher_options
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    modules: list[str] = rule.data["modules"]
    env_flags = frozenset(rule.data["env_flags"])
    for command in scan.commands:
        k = launch_site(command, modules)
        if k is None:
            continue
        words = command.words
        if any(words[i].value in env_flags for i in launcher_options(words, k + 2)):
            continue
        script = next((w for w in words[k + 2:] if not w.value.startswith("-")), None)
        op = f"{words[k + 1].value} without --use_env"
        tip = rule.tip + (f" (script: {script.value})" if script is not None else "")
        findings.report(rule, words[k].start, words[k + 1].end, op, tip)
