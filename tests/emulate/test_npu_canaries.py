"""Canaries: one check per private or version-sensitive torch API the emulator relies on.

These run without activating the emulator. When a torch upgrade removes or changes one of these,
the matching canary fails with a message naming the emulator code that must be revisited.
"""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")


def test_torch_is_the_validated_version() -> None:
    assert torch.__version__.split("+")[0] == "2.13.0", "transplant.emulate is validated against torch 2.13.0 only"


def test_acc_python_hooks_and_guard() -> None:
    # _activation._install_guard (pure-Python mode)
    acc = torch._C._acc
    for name in ("PrivateUse1Hooks", "DeviceGuard", "register_python_privateuseone_hook",
                 "register_python_privateuseone_device_guard"):
        assert hasattr(acc, name), name
    for method in ("is_available", "is_built", "has_primary_context"):
        assert hasattr(acc.PrivateUse1Hooks, method), method
    assert hasattr(acc.DeviceGuard, "type_")


def test_privateuse1_registration_helpers() -> None:
    # _activation.activate
    assert torch._C._get_privateuse1_backend_name() == "privateuseone"
    assert callable(torch.utils.rename_privateuse1_backend)
    assert callable(torch._register_device_module)
    params = inspect.signature(torch.utils.generate_methods_for_privateuse1_backend).parameters
    assert {"for_tensor", "for_module", "for_packed_sequence", "for_storage"} <= set(params)


def test_wrapper_subclass_and_dispatch_helpers() -> None:
    # tensor.NpuTensor / tensor.resync
    assert callable(torch.Tensor._make_wrapper_subclass)
    assert callable(torch._C._construct_storage_from_data_pointer)
    assert hasattr(torch._C, "_DisableTorchDispatch")
    assert hasattr(torch.ops.aten.set_.source_Storage_storage_offset, "redispatch")
    assert torch.Tag.inplace_view in torch.ops.aten.transpose_.default.tags
    assert torch.Tag.nondeterministic_seeded in torch.ops.aten.native_dropout.default.tags
    assert torch._C._disabled_torch_function_impl is not None


def test_dispatcher_introspection() -> None:
    # kernels.factory_op_names / register_device_kernels
    names = torch._C._dispatch_get_all_op_names()
    assert "aten::empty.memory_format" in names
    schema = torch._C._get_schema("aten::zeros", "")
    assert any(a.name == "device" for a in schema.arguments)
    assert torch._C._dispatch_has_kernel_for_dispatch_key("aten::reshape", "CompositeImplicitAutograd")
    assert callable(torch.library.fallthrough_kernel)


def test_cuda_only_rnn_cells_have_no_cpu_kernel() -> None:
    # kernels._register_rnn_cells supplies them; if CPU grows kernels the Python ones can go.
    for name in ("_thnn_fused_lstm_cell", "_thnn_fused_gru_cell"):
        assert not torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "CPU"), name


def test_autocast_exclude_guard() -> None:
    # amp._kernel
    keyset = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastPrivateUse1)
    with torch._C._ExcludeDispatchKeyGuard(keyset):
        pass


def test_backward_context_stash() -> None:
    # fixes: the exit-time abort comes from this stash; we skip it by key.
    source = inspect.getsource(torch.autograd.graph._engine_run_backward)
    assert '_stash_obj_in_tls("context"' in source
    assert callable(torch._C._stash_obj_in_tls)


def test_serialization_hooks() -> None:
    # serialization: rebuild hook signature and the package registry
    assert list(inspect.signature(torch._utils._rebuild_tensor).parameters) == [
        "storage", "storage_offset", "size", "stride"]
    assert "_rebuild_tensor(" in inspect.getsource(torch._utils._rebuild_tensor_v2)
    assert callable(torch.serialization.register_package)
    priorities = [entry[0] for entry in torch.serialization._package_registry]
    assert min(priorities) >= 10, "our priority-9 npu package must run before torch's own"


def test_accelerator_device_index() -> None:
    # _state.current_index / set_current_index in native mode
    assert callable(torch._C._accelerator_getDeviceIndex)
    assert callable(torch._C._accelerator_setDeviceIndex)


def test_checkpoint_reads_device_module_initialized() -> None:
    # device_module._initialized: torch.utils.checkpoint stashes device RNG only when it is set
    source = inspect.getsource(torch.utils.checkpoint)
    assert "_initialized" in source


def test_seed_reaches_custom_device() -> None:
    # torch.manual_seed -> torch.npu.manual_seed_all
    source = inspect.getsource(torch.random)
    assert "_seed_custom_device" in source


def test_tensor_data_descriptor_and_swap() -> None:
    # tensor._set_data / install_data_property
    assert type(torch._C.TensorBase.data).__name__ == "getset_descriptor"
    assert callable(torch.utils.swap_tensors)


def test_storage_constructor_and_privateuse1_deserializer() -> None:
    # fixes.block_npu_storage_allocation wraps this constructor
    assert torch.UntypedStorage(2, device="cpu").nbytes() == 2
    # torch's own privateuse1 deserializer is what segfaults; ours must stay ahead of it
    tagged = [entry for entry in torch.serialization._package_registry if "privateuse1" in repr(entry[1])]
    assert tagged and all(entry[0] > 9 for entry in tagged)


def test_graph_task_keep_graph_query() -> None:
    # kernels._CpuComposite.backward honours retain_graph through this
    assert callable(torch._C._autograd._get_current_graph_task_keep_graph)
