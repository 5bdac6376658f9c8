"""``--check`` output: the findings as text, JSON, GitHub workflow commands or SARIF 2.1.0, and statistics.

Every formatter returns the whole text (the CLI prints it on stdout); the order is the findings' order
(file, then position), so the output is deterministic. ``display`` turns a SRC-relative path into the
path the reader's tools expect (relative to the current directory, as GitHub annotations and SARIF
viewers resolve them).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping

from transplant import __version__
from transplant.findings import Finding

FORMATS = ("text", "json", "github", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

Display = Callable[[str], str]


def render(findings: list[Finding], fmt: str, display: Display, rule_messages: Mapping[str, str]) -> str:
    """The findings in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        return "".join(f"{display(f.path)}:{f.line}:{f.column}: {f.rule} [{f.severity}] {f.message}\n"
                       for f in findings)
    if fmt == "json":
        return json.dumps([_record(f, display) for f in findings], indent=2, ensure_ascii=False) + "\n"
    if fmt == "github":
        return "".join(_github(f, display) for f in findings)
    if fmt == "sarif":
        return json.dumps(_sarif(findings, display, rule_messages), indent=2, ensure_ascii=False) + "\n"
    raise ValueError(f"unknown output format {fmt!r}")


def statistics(findings: list[Finding], fmt: str, rule_messages: Mapping[str, str]) -> str:
    """Counts per rule, most frequent first (``--statistics``): a table, or JSON with ``--output-format json``."""
    counts = Counter(f.rule for f in findings)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if fmt == "json":
        return json.dumps([{"rule": rule, "count": n, "message": rule_messages.get(rule, "")}
                           for rule, n in ordered], indent=2, ensure_ascii=False) + "\n"
    width = max((len(str(n)) for _, n in ordered), default=1)
    rule_width = max((len(rule) for rule, _ in ordered), default=5)
    return "".join(f"{n:>{width}}  {rule:<{rule_width}}  {rule_messages.get(rule, '')}".rstrip() + "\n"
                   for rule, n in ordered)


def _record(f: Finding, display: Display) -> dict[str, object]:
    return {"file": display(f.path), "line": f.line, "column": f.column, "end_line": f.end_line, "rule": f.rule,
            "kind": f.kind, "severity": f.severity, "message": f.message, "fingerprint": f.fingerprint}


def _github_escape(text: str, *, prop: bool = False) -> str:
    # https://docs.github.com workflow commands: %, CR and LF always; ':' and ',' inside properties too.
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _github(f: Finding, display: Display) -> str:
    level = "warning" if f.kind == "change" and f.severity == "safe" else "error"
    props = (f"file={_github_escape(display(f.path), prop=True)},line={f.line},endLine={f.end_line},"
             f"col={f.column},title={_github_escape('transplant ' + f.rule, prop=True)}")
    return f"::{level} {props}::{_github_escape(f.message)}\n"


def _sarif_level(f: Finding) -> str:
    return "warning" if f.kind == "change" and f.severity == "safe" else "error"


def _sarif(findings: list[Finding], display: Display, rule_messages: Mapping[str, str]) -> dict[str, object]:
    rule_ids = sorted({f.rule for f in findings})
    index = {rule: i for i, rule in enumerate(rule_ids)}
    # No public documentation site: `transplant rules ID` (and rules/README.md) is the reference.
    rules = [{"id": rule, "name": rule, "shortDescription": {"text": rule_messages.get(rule, rule)},
              "help": {"text": f"see `transplant rules {rule}`"}}
             for rule in rule_ids]
    results = []
    for f in findings:
        results.append({
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": _sarif_level(f),
            "message": {"text": f.message},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": display(f.path)},
                "region": {"startLine": f.line, "startColumn": f.column, "endLine": f.end_line},
            }}],
            "partialFingerprints": {"transplant/v1": f.fingerprint},
            "properties": {"kind": f.kind, "severity": f.severity},
        })
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "transplant", "version": __version__, "rules": rules}},
                  "results": results}],
    }
