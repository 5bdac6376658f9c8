"""The hand-kept table of Huawei-unsupported APIs (transplant/data/huawei_unsupported_review.json) cannot claim
more than torch_npu 2.13 and torch's dispatcher say, and every name in it is on Huawei's list; the affinity
targets exist in torch_npu 2.13."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TABLE = json.loads((Path(__file__).resolve().parents[2] / "transplant" / "data" /
                    "huawei_unsupported_review.json").read_text(encoding="utf-8"))


def _overload(torch, name: str):
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


def test_every_entry_is_on_huawei_list():
    from transplant.analysis.facts import huawei_lists

    unsupported = huawei_lists().unsupported
    for section in ("works", "falls_back"):
        missing = [name for name in TABLE[section] if name not in unsupported]
        assert not missing, (section, missing)


def test_works_entries_reach_only_operators_that_run_on_the_npu(npu):
    """Each operator: an NPU kernel in the 2.13 registry, or one that reaches the backend (not composite-
    implicit) and that the emulator's fallback rule (the registry plus torch's dispatcher) does not send to the
    CPU."""
    import torch

    from transplant.analysis.facts import npu_ops
    from transplant.emulate.fallback import classify

    kernels = npu_ops().kernels
    bad = []
    for api, entry in TABLE["works"].items():
        for name in entry["aten"]:
            op = _overload(torch, name)
            if name in kernels and not npu_ops().explicit_cpu_message(*(name.split(".") + [""])[:2]):
                continue
            implicit = torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd")
            if implicit or classify(op) is not None:
                bad.append((api, name))
    assert not bad, bad


def test_falls_back_entries_really_fall_back(npu):
    import torch

    from transplant.emulate.fallback import classify

    for api, entry in TABLE["falls_back"].items():
        for name in entry["aten"]:
            op = _overload(torch, name.replace(".out", "")) if name.endswith(".out") else _overload(torch, name)
            assert classify(op) is not None, (api, name)


def test_affinity_targets_exist_in_torch_npu():
    from transplant.analysis import static

    names = json.loads((Path(static.__file__).resolve().parents[1] / "data" / "torch_npu_names.json")
                       .read_text(encoding="utf-8"))["modules"]
    for source, (target, _, _) in static._AFFINITY.items():
        parts = target.split(".")
        if parts[1] == "contrib":
            module = names["torch_npu.contrib"]
            assert parts[-1] in module["names"] or parts[-1] in str(module.get("members", {})), target
        else:
            assert parts[-1] in names["torch_npu"]["names"], target


def test_fused_optimizer_targets_exist():
    names = json.loads((Path(__file__).resolve().parents[2] / "transplant" / "data" / "torch_npu_names.json")
                       .read_text(encoding="utf-8"))["modules"]["torch_npu.optim"]["names"]
    from transplant.analysis.facts import huawei_lists

    for api in huawei_lists().performance:
        if api.startswith("torch.optim.") and api.rsplit(".", 1)[1] in ("Adam", "AdamW", "SGD", "RMSprop", "Adadelta"):
            assert f"NpuFused{api.rsplit('.', 1)[1]}" in names, api
