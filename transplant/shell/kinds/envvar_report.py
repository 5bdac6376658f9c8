"""``shell_envvar_report``: a variable set by the shell with a known prefix and no mapping -> a row.

``NCCL_*`` settings the rename rules do not map (``NCCL_DEBUG``, ``NCCL_IB_DISABLE``, ...) have no
HCCL equivalent we can vouch for; the user decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.kinds.envvar import set_names
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    prefixes: dict[str, str] = rule.data["prefixes"]
    mapped = {name for r in rules if r.kind == "shell_envvar" for name in r.data["map"]}

    def tip_for(name: str) -> str | None:
        if name in mapped:
            return None
        for prefix, tip in prefixes.items():
            if name.startswith(prefix):
                return tip or rule.tip
        return None

    for command in scan.commands:
        for word, name, _ in set_names(command):
            tip = tip_for(name)
            if tip is not None:
                findings.report(rule, word.start, word.end, name, tip)
    for key in scan.env_keys:
        tip = tip_for(key.value)
        if tip is not None:
            findings.report(rule, key.start, key.end, key.value, tip)
