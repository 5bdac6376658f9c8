"""``shell_unparsed``: a line the shell parser could not read that mentions a CUDA setting -> a row.

Such a line is never rewritten (we do not guess what it means); lines without a trigger word are
left alone silently, so ordinary unsupported syntax (``case``, arrays) does not flood the report.
"""

from __future__ import annotations

from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    triggers: list[str] = rule.data["words"]
    for line in scan.unparsed:
        text = line.text.strip()
        if text.startswith("#") or not any(t in text for t in triggers):
            continue
        findings.report(rule, line.start, line.end, text[:200], f"{rule.tip} (parser: {line.reason})")
