"""One module per shell rule kind; each exposes ``check(rule, scan, findings, rules)``.

``rules`` are all active shell rules (a kind may need to know what another kind already maps, e.g.
the NCCL report leaves alone the variables the rename rules handle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.kinds import (
    command_report,
    docker_image,
    envvar,
    envvar_report,
    flag_report,
    flag_value,
    launcher,
    local_rank,
    unparsed,
)
from transplant.shell.model import Findings, ShellScan

ShellCheck = Callable[[StructuralRule, ShellScan, Findings, Sequence[StructuralRule]], None]

SHELL_KINDS: dict[str, ShellCheck] = {
    "shell_envvar": envvar.check,
    "shell_envvar_report": envvar_report.check,
    "shell_launcher": launcher.check,
    "shell_local_rank": local_rank.check,
    "shell_flag_value": flag_value.check,
    "shell_command_report": command_report.check,
    "shell_flag_report": flag_report.check,
    "docker_base_image": docker_image.check,
    "shell_unparsed": unparsed.check,
}


def check_scan(scan: ShellScan, rules: Sequence[StructuralRule]) -> Findings:
    """Run every shell rule over ``scan`` in rule order."""
    findings = Findings()
    mine = [r for r in rules if r.kind in SHELL_KINDS]
    for rule in mine:
        SHELL_KINDS[rule.kind](rule, scan, findings, mine)
    return findings
