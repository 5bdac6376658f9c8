"""Canaries for the torch internals the hccl backend, the native helper and the runner rely on.

Each assertion names one private or version-sensitive API; when a torch upgrade changes it, this
file fails first and says which piece of transplant.emulate needs attention.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist


def test_torch_version_is_the_validated_one() -> None:
    assert torch.__version__.split("+")[0] == "2.13.0"


def test_work_from_future_exists() -> None:
    from torch._C._distributed_c10d import _create_work_from_future

    future = torch.futures.Future()
    future.set_result([torch.ones(1)])
    work = _create_work_from_future(future)
    assert work.wait() is True
    assert torch.equal(work.get_future().value()[0], torch.ones(1))


def test_backend_plugin_registry_shape() -> None:
    params = inspect.signature(dist.Backend.register_backend).parameters
    assert {"name", "func", "extended_api", "devices"} <= set(params)
    assert isinstance(dist.Backend._plugins, dict)
    assert dist.Backend._BackendPlugin._fields == ("creator_fn", "extended_api")


def test_python_process_group_method_names() -> None:
    # torch.distributed calls these names on the group object; the C++ trampoline calls the rest.
    for name in (
        "allreduce", "allreduce_coalesced", "broadcast", "reduce", "allgather", "allgather_coalesced",
        "all_gather_single", "all_gather_single_coalesced", "allgather_into_tensor_coalesced",
        "reduce_scatter", "reduce_scatter_single", "reduce_scatter_single_coalesced",
        "reduce_scatter_tensor_coalesced", "all_to_all_single", "alltoall_base", "alltoall", "gather",
        "scatter", "barrier", "send", "recv", "recv_anysource", "_get_backend", "_device_types",
    ):
        assert hasattr(dist.ProcessGroup, name), name
    # The alias-aware constructor is (rank, size); (store, rank, size) rejects Python subclasses.
    assert "rank: typing.SupportsInt" in dist.ProcessGroup.__init__.__doc__


def test_gloo_backend_methods_used_underneath() -> None:
    for name in ("allreduce", "allreduce_coalesced", "broadcast", "reduce", "allgather", "allgather_coalesced",
                 "_allgather_base", "reduce_scatter", "_reduce_scatter_base", "alltoall_base", "alltoall",
                 "gather", "scatter", "barrier", "send", "recv", "recv_anysource", "shutdown", "abort"):
        assert hasattr(dist.ProcessGroupGloo, name), name


def test_new_process_group_helper_accepts_a_process_group_from_the_creator() -> None:
    from torch.distributed import distributed_c10d

    source = inspect.getsource(distributed_c10d._new_process_group_helper)
    assert "creator_fn(dist_backend_opts, backend_options)" in source
    assert "issubclass(type(backend_class), ProcessGroup)" in source


def test_torchrun_failure_reporting() -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    from torch.distributed.run import main

    assert callable(main)
    assert hasattr(ChildFailedError, "get_first_failure")
    assert "exitcode" in inspect.signature(ProcessFailure).parameters


def test_cpp_extension_load_signature() -> None:
    from torch.utils import cpp_extension

    params = inspect.signature(cpp_extension.load).parameters
    assert {"name", "sources", "extra_cflags", "build_directory", "verbose"} <= set(params)


def test_hooks_headers_the_helper_compiles_against() -> None:
    from pathlib import Path

    include = Path(torch.__file__).parent / "include"
    hooks = (include / "ATen/detail/PrivateUse1HooksInterface.h").read_text()
    for needle in ("RegisterPrivateUse1HooksInterface", "isPrivateUse1HooksRegistered",
                   "getPinnedMemoryAllocator", "getNewGenerator", "resizePrivateUse1Bytes"):
        assert needle in hooks, needle
    guard = (include / "c10/core/impl/DeviceGuardImplInterface.h").read_text()
    assert "class C10_API DeviceGuardImplRegistrar" in guard
