"""Checkpoints in the format real torch_npu writes, and loading them onto the emulated device.

Saving: an npu tensor pickles as a plain ``_rebuild_tensor_v2`` over its storage, and the storage
is tagged ``npu:N`` (no emulator class in the file), so real torch_npu can load it and plain torch
can load it with ``map_location='cpu'``.

Loading: a priority-9 storage package keeps the bytes on CPU and marks the storage with its npu
index; the patched ``torch._utils._rebuild_tensor`` wraps tensors built over marked storages.
Without this, torch's generic PrivateUse1 deserializer calls ``storage.to('npu')``, which
allocates a storage with no allocator and crashes the process.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Optional

import torch

from transplant.emulate import _state

_MARK = "_transplant_npu_index"
_original_rebuild_tensor = torch._utils._rebuild_tensor
_registered = False


def _untyped(storage: Any) -> Any:
    return storage._untyped_storage if isinstance(storage, torch.storage.TypedStorage) else storage


def _tag(storage: Any) -> Optional[str]:
    untyped = _untyped(storage)
    index = getattr(untyped, _MARK, None)
    if index is not None and untyped.device.type == "cpu":
        return f"{_state.DEVICE_TYPE}:{index}"
    return None


def _deserialize(storage: Any, location: str) -> Any:
    if not location.startswith(_state.DEVICE_TYPE):
        return None
    device = torch.device(location)
    index = device.index if device.index is not None else _state.current_index()
    if index >= _state.device_count:
        raise RuntimeError(
            f"Attempting to deserialize object on npu device {index} but torch.npu.device_count() is "
            f"{_state.device_count}. Please use torch.load with map_location to map your storages to "
            "an existing device."
        )
    setattr(_untyped(storage), _MARK, index)
    return storage


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any) -> torch.Tensor:
    untyped = storage._untyped_storage
    index = getattr(untyped, _MARK, None)
    if index is not None and untyped.device.type == "cpu":
        from transplant.emulate.tensor import NpuTensor

        cpu = torch.empty((0,), dtype=storage.dtype).set_(untyped, storage_offset, size, stride)
        return NpuTensor(cpu, index)
    return _original_rebuild_tensor(storage, storage_offset, size, stride)


def reduce_npu_tensor(t: Any) -> tuple:
    """``__reduce_ex__`` of an npu tensor: exactly what torch writes for a real device tensor."""
    from transplant.emulate.tensor import NpuTensor

    elem = t._elem
    untyped = elem.untyped_storage()
    setattr(untyped, _MARK, t._npu_index)
    if getattr(t, "_is_param", False):
        return (torch._utils._rebuild_parameter, (NpuTensor(elem, t._npu_index), t.requires_grad, OrderedDict()))
    typed = torch.storage.TypedStorage(wrap_storage=untyped, dtype=elem.dtype, _internal=True)
    args = (typed, elem.storage_offset(), tuple(elem.size()), elem.stride(), t.requires_grad, OrderedDict())
    return (torch._utils._rebuild_tensor_v2, args)


def register() -> None:
    """Install the storage package and the rebuild hook (once per process)."""
    global _registered
    if _registered:
        return
    torch.serialization.register_package(9, _tag, _deserialize)
    torch._utils._rebuild_tensor = _rebuild_tensor
    _registered = True
