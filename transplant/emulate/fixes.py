"""Process-level fixes: no abort at interpreter exit, no crash on direct npu storage allocation,
a clear error for multi-device DataParallel.

Every backward stashes a ``contextvars.Context`` in C++ thread-local storage so torch.compile
config reaches the autograd device threads. The npu worker thread drops its copy lazily; when
that happens during interpreter finalisation the thread cannot take the GIL and the process dies
with "terminate called without an active exception" (exit code 134) after roughly every other
run. The emulator does not need that context, so the stash is skipped; an ``atexit`` "drain"
backward per device also replaces any other Python state (saved-tensor hooks) the worker threads
still hold while the interpreter is fully alive.
"""

from __future__ import annotations

import atexit
import os

import torch

from transplant.emulate import _state

_installed = False
_original_stash = torch._C._stash_obj_in_tls


# pid of the process that ran a backward pass (a forked child must not touch autograd threads)
_backward_pid = 0


def _stash_obj_in_tls(key: str, obj: object) -> None:
    global _backward_pid
    if key == "context":  # stashed once per backward pass
        _backward_pid = os.getpid()
        return
    _original_stash(key, obj)


def drain() -> None:
    """Run one tiny backward on every emulated device so worker threads drop Python objects."""
    from transplant.emulate.tensor import NpuTensor

    if _backward_pid != os.getpid():
        return  # no backward ran in this process: no worker thread holds anything
    try:
        for index in range(_state.device_count):
            x = NpuTensor(torch.ones(1), index).requires_grad_(True)
            (x * 2.0).sum().backward()
    except Exception:  # noqa: BLE001 - nothing useful can be raised during interpreter exit
        pass


def install() -> None:
    """Apply the fixes (once per process)."""
    global _installed
    if _installed:
        return
    torch._C._stash_obj_in_tls = _stash_obj_in_tls
    atexit.register(drain)
    block_npu_storage_allocation()
    refuse_multi_device_data_parallel()
    _installed = True


def _is_npu(device: object) -> bool:
    if device is None:
        return False
    try:
        return torch.device(device).type == _state.DEVICE_TYPE
    except (RuntimeError, TypeError):
        return False


def block_npu_storage_allocation() -> None:
    """Refuse ``torch.UntypedStorage(n, device='npu')``: there is no npu allocator and it segfaults."""
    original = torch.UntypedStorage.__new__

    def __new__(cls, *args, device=None, **kwargs):  # noqa: N807 - replaces a dunder
        if _is_npu(device):
            raise RuntimeError(
                "Creating a storage directly on the emulated npu device is not supported (the emulator "
                "has no npu allocator); create a tensor with device='npu' instead."
            )
        if device is None:
            return original(cls, *args, **kwargs)
        return original(cls, *args, device=device, **kwargs)

    torch.UntypedStorage.__new__ = __new__  # type: ignore[method-assign]


def refuse_multi_device_data_parallel() -> None:
    """``nn.DataParallel`` over several npu devices fails clearly, as it is unsupported on Ascend.

    Without this it fails deep inside ``torch.nn.parallel.comm`` (the CPU build has no scatter
    kernel). Over a single device DataParallel only moves the inputs and calls the module; that
    keeps working, with the inputs moved by ``.to`` instead of the missing scatter kernel.
    """
    from torch.utils._pytree import tree_map_only

    data_parallel = torch.nn.DataParallel
    original = data_parallel.__init__
    if getattr(original, "_transplant_checked", False):
        return

    def __init__(self, module, device_ids=None, output_device=None, dim=0):  # noqa: N807
        original(self, module, device_ids, output_device, dim)
        source = getattr(self, "src_device_obj", None)
        if source is not None and source.type == _state.DEVICE_TYPE and len(self.device_ids) > 1:
            raise RuntimeError(
                f"torch.nn.DataParallel over {len(self.device_ids)} npu devices is not supported on Ascend "
                "(emulated NPU). Use torch.nn.parallel.DistributedDataParallel with one process per NPU "
                "(e.g. `transplant run --nproc N`), or a single device (device_ids=[0])."
            )
        if source is not None and source.type == _state.DEVICE_TYPE:
            target = torch.device(_state.DEVICE_TYPE, self.device_ids[0])

            def scatter(inputs, kwargs, device_ids):
                move = lambda obj: tree_map_only(torch.Tensor, lambda t: t.to(target), obj)  # noqa: E731
                return (move(tuple(inputs)),), (move(dict(kwargs or {})),)

            self.scatter = scatter

    __init__._transplant_checked = True  # type: ignore[attr-defined]
    data_parallel.__init__ = __init__
