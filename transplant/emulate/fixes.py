"""Process-level fixes: no abort at interpreter exit, no crash on direct npu storage allocation.

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

import torch

from transplant.emulate import _state

_installed = False
_original_stash = torch._C._stash_obj_in_tls


def _stash_obj_in_tls(key: str, obj: object) -> None:
    if key == "context":
        return
    _original_stash(key, obj)


def drain() -> None:
    """Run one tiny backward on every emulated device so worker threads drop Python objects."""
    from transplant.emulate.tensor import NpuTensor

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
