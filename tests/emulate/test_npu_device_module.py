"""``torch.npu``: the device-module surface migrated scripts and torch core use (emulator.md §Q6)."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")


def test_registered_modules(npu) -> None:
    import torch.npu
    import torch.npu.amp
    from torch.npu.amp import GradScaler, autocast  # noqa: F401

    assert sys.modules["torch.npu"] is torch.npu is npu
    assert sys.modules["torch.npu.amp"] is torch.npu.amp
    assert torch.get_device_module("npu") is npu
    assert torch._C._get_privateuse1_backend_name() == "npu"
    assert torch.device("npu:1").type == "npu"


def test_device_queries(npu) -> None:
    from transplant.emulate import _state

    assert npu.is_available() and npu.is_initialized() and npu._initialized
    assert npu.device_count() == _state.device_count >= 1
    assert npu.current_device() == 0
    npu.set_device(0)
    npu.set_device("npu:0")
    npu.set_device(torch.device("npu", 0))
    npu.init()
    npu._lazy_init()
    assert npu._is_in_bad_fork() is False
    assert npu._utils._get_device_index("npu:0") == 0
    assert npu._utils._get_device_index(torch.device("npu"), optional=True) == 0
    assert npu._utils._get_device_index("cpu", allow_cpu=True) == -1
    with pytest.raises(ValueError):
        npu._utils._get_device_index("cuda:0")
    with npu.device(0):
        assert npu.current_device() == 0
    t = torch.ones(1).npu()
    with npu.device_of(t):
        assert npu.current_device() == 0
    assert "emulated" in npu.get_device_name(0)
    assert npu.get_device_properties(0).total_memory > 0
    assert isinstance(npu.get_device_capability(), tuple)
    assert npu.is_bf16_supported()
    npu.synchronize()
    assert torch.accelerator.is_available() and torch.accelerator.current_accelerator().type == "npu"


def test_memory_stubs_report_zero(npu) -> None:
    npu.empty_cache()
    npu.reset_peak_memory_stats()
    for fn in (npu.memory_allocated, npu.max_memory_allocated, npu.memory_reserved, npu.max_memory_reserved):
        assert fn() == 0 and fn(0) == 0
    assert npu.memory_stats() == {}
    free, total = npu.mem_get_info()
    assert free == total > 0
    assert "not tracked" in npu.memory_summary()


def test_streams_and_events(npu) -> None:
    stream = npu.Stream()
    assert stream.device == torch.device("npu:0") and stream.query()
    with npu.stream(stream):
        assert npu.current_stream() is stream
    assert npu.current_stream() == npu.default_stream()
    start, end = npu.Event(enable_timing=True), npu.Event(enable_timing=True)
    start.record()
    torch.ones(10, device="npu").sum()
    end.record()
    end.synchronize()
    assert end.elapsed_time(start) <= 0 <= start.elapsed_time(end)
    stream.wait_event(end)
    stream.synchronize()


def test_amp_helpers_and_torch_npu_knobs(npu) -> None:
    assert npu.get_amp_supported_dtype() == [torch.float16, torch.bfloat16]
    assert not npu.is_autocast_enabled()
    with torch.autocast("npu", dtype=torch.bfloat16):
        assert npu.is_autocast_enabled() and npu.get_autocast_dtype() == torch.bfloat16
    npu.set_compile_mode(jit_compile=False)
    npu.config.allow_internal_format = False
    assert npu.config.allow_internal_format is False


def test_legacy_tensor_types(npu) -> None:
    t = npu.FloatTensor(2, 3)
    assert t.shape == (2, 3) and t.dtype == torch.float32 and t.device.type == "npu"
    data = npu.LongTensor([1, 2])
    assert data.tolist() == [1, 2] and data.dtype == torch.int64
    assert isinstance(data, npu.LongTensor) and not isinstance(data, npu.FloatTensor)
    assert not isinstance(torch.ones(2, dtype=torch.int64), npu.LongTensor)
    assert npu.HalfTensor(torch.ones(2)).dtype == torch.float16


# --- the whole torch_npu 2.13 surface (issue #17 item 7, issue #15) ----------------------------


def _rename_targets() -> set:
    import json

    from transplant._paths import rules_dir

    targets = set()
    for path in sorted(rules_dir().glob("*.json")):
        if path.name == "schema.json":
            continue
        for rule in json.loads(path.read_text(encoding="utf-8")).get("rules", []):
            for target in (rule.get("map") or {}).values():
                if isinstance(target, str) and target.startswith("torch.npu"):
                    targets.add(target)
    return targets


def _resolve(dotted: str):
    obj = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


def test_every_rename_target_exists_on_the_emulator(npu) -> None:
    """The emulator provides every torch.npu name an offline rename rule produces (and auto mode
    redirects to), so migrated code never meets an AttributeError."""
    targets = _rename_targets()
    assert len(targets) > 100
    missing = []
    for target in sorted(targets):
        try:
            _resolve(target)
        except AttributeError:
            missing.append(target)
    assert missing == []


def test_every_real_torch_npu_name_is_emulated_or_refused_clearly(npu) -> None:
    from transplant.emulate import surface

    facts = surface.load_facts()
    checked = 0
    for module_name, names in facts.items():
        qualname = "torch.npu" + module_name[len("torch_npu.npu"):]
        module = _resolve(qualname)
        assert sys.modules[qualname] is module, qualname
        for name in names:
            checked += 1
            try:
                value = getattr(module, name)
            except surface.NotEmulatedAttributeError as error:
                assert f"not emulated: {qualname}.{name}" in str(error)
                continue
            if "not emulated:" in (getattr(value, "__doc__", None) or ""):
                # a submodule's member may be the package-level stub (as in torch_npu, one object)
                with pytest.raises(surface.NotEmulatedError, match=rf"not emulated: torch\.npu\.([\w.]+\.)?{name} "):
                    value()
    assert checked > 300
    assert getattr(npu, "no_such_name", "default") == "default"  # probing still works


def test_memory_and_random_names_from_the_issues(npu) -> None:
    import torch.npu.amp.autocast_mode
    import torch.npu.amp.grad_scaler
    import torch.npu.memory
    import torch.npu.random

    assert torch.npu.amp.autocast_mode.autocast is npu.amp.autocast
    assert torch.npu.amp.grad_scaler.GradScaler is npu.amp.GradScaler
    assert len(npu.default_generators) == npu.device_count()
    npu.random.manual_seed(3)
    assert npu.initial_seed() == 3
    first = torch.rand(3, device="npu")
    npu.default_generators[0].manual_seed(3)
    assert torch.equal(torch.rand(3, device="npu"), first)
    npu.set_per_process_memory_fraction(0.25)
    assert npu.get_per_process_memory_fraction() == 0.25
    with pytest.raises(ValueError):
        npu.set_per_process_memory_fraction(1.5)
    assert npu.memory_snapshot() == [] and npu.memory_stats_as_nested_dict() == {}
    assert npu.reset_max_memory_cached() is None and npu.utilization() == 0
    pointer = npu.caching_allocator_alloc(128)
    assert isinstance(pointer, int) and pointer
    npu.caching_allocator_delete(pointer)
    npu.memory._record_memory_history()
    assert npu.memory._snapshot()["segments"] == []
    assert npu.memory.memory_allocated is npu.memory_allocated
    with npu.StreamContext(npu.Stream()):
        pass
    with pytest.raises(NotImplementedError, match="not emulated: torch.npu.NPUGraph"):
        npu.NPUGraph()


def test_lazy_modules_materialise_on_the_npu(npu) -> None:
    """``LazyLinear(4).npu()`` (issue #17 item 6): the parameters stay lazy, then live on the npu device."""
    for move in (lambda m: m.npu(), lambda m: m.to("npu"), lambda m: m.to(torch.device("npu", 0))):
        module = move(torch.nn.LazyLinear(4))
        assert module.has_uninitialized_params()
        out = module(torch.ones(2, 3, device="npu"))
        assert out.device.type == "npu" and module.weight.device.type == "npu" and module.weight.shape == (4, 3)
        out.sum().backward()
        assert module.weight.grad.device.type == "npu"
    norm = torch.nn.LazyBatchNorm1d().npu()
    norm(torch.ones(4, 3, device="npu"))
    assert norm.running_mean.device.type == "npu"
    assert torch.nn.LazyLinear(4).to("cpu")(torch.ones(2, 3)).device.type == "cpu"


def test_generator_reports_the_npu_device(npu) -> None:
    from transplant.emulate import _state

    if not _state.native:
        pytest.skip("torch.Generator('npu') needs the native helper")
    generator = torch.Generator("npu")
    assert generator.device == torch.device("npu", 0)
    assert torch.Generator().device == torch.device("cpu")
    assert isinstance(torch.default_generator, torch.Generator)
    generator.manual_seed(11)
    first = torch.randn(4, device="npu", generator=generator)
    generator.manual_seed(11)
    assert torch.equal(torch.randn(4, device="npu", generator=generator), first)
