"""Every name the profiler pass writes is one of torch_npu 2.13's real names (transplant/data facts)."""

from __future__ import annotations

import json

from transplant._paths import data_dir
from transplant.rewrite import pass_profiler


def test_profiler_targets_exist_in_torch_npu() -> None:
    facts = json.loads((data_dir() / "torch_npu_names.json").read_text())
    names = set(facts["qualified_names"])
    profiler = facts["modules"]["torch_npu.profiler"]["names"]
    for target in pass_profiler.TARGETS:
        parts = target.split(".")
        assert parts[:2] == ["torch_npu", "profiler"], target
        assert parts[2] in profiler, f"torch_npu.profiler has no {parts[2]}"
        if target.startswith("torch_npu.profiler.ProfilerActivity."):
            # a pybind enum: the facts list the class only; its members are CPU and NPU in torch_npu 2.13
            assert parts[3] in {"CPU", "NPU"}, target
        else:
            assert target in names or len(parts) == 3, target
