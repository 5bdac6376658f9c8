"""``docker_base_image``: a CUDA base image in a Dockerfile ``FROM`` -> a row with an Ascend CANN tip."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Findings, ShellScan


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    images: dict[str, str] = rule.data["images"]
    for image in scan.images:
        name = image.value.split("@", 1)[0]
        for pattern, tip in images.items():
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name.split("/", 1)[-1], pattern):
                findings.report(rule, image.start, image.end, image.value, tip or rule.tip)
                break
