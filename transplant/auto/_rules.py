"""The torch.cuda classification, read from the shared rule sets with plain ``json``.

The offline rewriter and auto mode must agree on what ``torch.cuda.X`` becomes, so auto mode reads
the same ``rules/*.json`` (``torch_cuda.json``: renames and unsupported names; ``amp.json``:
``torch.cuda.amp.X`` -> ``torch.amp.X`` with device type ``'npu'``). It deliberately avoids
``transplant.rules`` (jsonschema validation would blow the import budget).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from transplant._paths import rules_dir

_PREFIXES = ("torch.cuda",)


@dataclass
class CudaClassification:
    """What the rule sets say about ``torch.cuda`` names."""

    renames: dict[str, str] = field(default_factory=dict)      # torch.cuda.X -> torch.npu.X / torch.amp.X
    unsupported: dict[str, str] = field(default_factory=dict)  # torch.cuda.X (or module prefix) -> tip
    rule_ids: dict[str, str] = field(default_factory=dict)     # qualified name -> rule id
    severities: dict[str, str] = field(default_factory=dict)   # qualified name -> safe | review
    messages: dict[str, str] = field(default_factory=dict)     # qualified name -> the rule's message
    sources: list[str] = field(default_factory=list)           # rule-set files read


def _rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if p.name != "schema.json")


def load_classification(directory: Path | None = None) -> CudaClassification:
    """Collect every ``torch.cuda.*`` rename and unsupported name from the bundled rule sets."""
    directory = directory or rules_dir()
    result = CudaClassification()
    for path in _rule_files(directory):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a rule set being written right now; the rewriter's loader reports broken files
        if not isinstance(data, dict):
            continue
        used = False
        for rule in data.get("rules", []):
            if not isinstance(rule, dict):
                continue
            kind = rule.get("kind")
            rule_id = rule.get("id", "")
            severity = rule.get("severity", "safe")
            if kind == "rename":
                for source, target in (rule.get("map") or {}).items():
                    if source.startswith(_PREFIXES) and isinstance(target, str):
                        result.renames[source] = target
                        result.rule_ids.setdefault(source, rule_id)
                        result.severities.setdefault(source, severity)
                        result.messages.setdefault(source, rule.get("tip") or rule.get("message", ""))
                        used = True
            elif kind == "unsupported":
                for name, tip in (rule.get("names") or {}).items():
                    if name.startswith(_PREFIXES):
                        result.unsupported[name] = tip or rule.get("tip", "") or rule.get("message", "")
                        result.rule_ids.setdefault(name, rule_id)
                        result.severities.setdefault(name, "review")
                        used = True
        if used:
            result.sources.append(path.name)
    return result


def rule_index(directory: Path | None = None) -> dict[str, str]:
    """Rule ids for the report: qualified names from rename/unsupported maps, and ``kind:<k>`` entries
    naming the offline rule that makes the same kind of change (device strings, ``.cuda()``,
    ``.is_cuda``, backends, tensor-type strings, ``torch.load``)."""
    directory = directory or rules_dir()
    index: dict[str, str] = {}
    for path in _rule_files(directory):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for rule in data.get("rules", []) if isinstance(data, dict) else []:
            if not isinstance(rule, dict) or "id" not in rule:
                continue
            rule_id = rule["id"]
            for name in list((rule.get("map") or {}).keys()) + list((rule.get("names") or {}).keys()):
                if isinstance(name, str):
                    index.setdefault(name, rule_id)
            kind = rule.get("kind")
            if kind in ("device", "backend", "tensor_type"):
                index.setdefault(f"kind:{kind}", rule_id)
            if "cuda" in (rule.get("calls") or {}):
                index.setdefault("kind:method", rule_id)
            if "is_cuda" in (rule.get("attributes") or {}):
                index.setdefault("kind:attribute", rule_id)
            if rule.get("callable") == "torch.load":
                index.setdefault("kind:checkpoint", rule_id)
    # auto-mode APIs whose offline counterpart is classified under another name
    for api, name in (("torch.profiler.profile", "torch.profiler.ProfilerActivity.CUDA"),):
        if name in index:
            index.setdefault(api, index[name])
    return index
