"""Per-row severity travels with the edit (issue 18 §1): the planner's decision, not the rule's default."""

from __future__ import annotations

from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

SOURCE = b"""import torch
from apex.optimizers import FusedAdam
from apex.normalization import FusedRMSNorm

opt = FusedAdam(params, lr=1e-3, weight_decay=0.01)
norm = FusedRMSNorm(10)
"""


def test_exact_and_semantic_changing_apex_replacements_under_both_defaults() -> None:
    ruleset = load_ruleset()
    assert ruleset.get("TP401").severity == "review" and ruleset.get("TP400").severity == "safe"
    result = rewrite_source(SOURCE, "sev.py", ruleset)
    rows = {(c.rule, c.line): c for c in result.changes}
    adam = rows[("TP401", 5)]
    assert adam.after == "torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)"
    assert adam.severity == "safe"  # an exact equivalent, although TP401's default is review
    norm = rows[("TP400", 6)]
    assert "eps=1e-5" in norm.after
    assert norm.severity == "review"  # torch's default eps differs, although TP400's default is safe
