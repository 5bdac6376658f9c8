"""Refuse to send an npu tensor to another process through ``multiprocessing``.

torch_npu 2.13 shares npu tensors between processes through NPU IPC (``storage._share_npu_()``, which needs
a driver and CANN that support it). The emulated NPU keeps every npu tensor in this process's CPU memory
and cannot share it as device memory: torch's reducer would send the inner CPU storage, the child would
receive *CPU* tensors, fail later with a confusing device-mismatch error, and the parent would exit 0.
So the pickling itself raises, naming the tensor and what to do instead. ``torch.save`` is not affected
(it uses its own pickler and writes the real torch_npu format).
"""

from __future__ import annotations

from typing import Any

__all__ = ["install", "CROSS_PROCESS_MESSAGE"]

CROSS_PROCESS_MESSAGE = (
    "transplant.emulate: an npu tensor ({what}) is being pickled for another process (torch.multiprocessing, "
    "mp.Process/mp.spawn arguments, a multiprocessing queue). On Ascend, torch_npu shares npu tensors only "
    "through NPU IPC, which needs a driver and CANN that support it; the emulated NPU cannot share device "
    "memory at all, and the child would silently receive CPU tensors. Build the model (or move it with "
    ".npu()) inside the child process, or send CPU tensors (e.g. a state_dict after .cpu()) and move them "
    "there."
)
_installed = False


def _describe(tensor: Any) -> str:
    kind = "a Parameter" if getattr(tensor, "_is_param", False) or type(tensor).__name__ == "Parameter" else "a tensor"
    return f"{kind} of shape {list(tensor.shape)} on {tensor.device}"


def install() -> None:
    """Wrap torch's multiprocessing tensor reducer (once per process)."""
    global _installed
    if _installed:
        return
    import torch.multiprocessing.reductions as reductions
    from multiprocessing.reduction import ForkingPickler

    from transplant.emulate import _state
    from transplant.emulate.tensor import NpuTensor

    original = reductions.reduce_tensor

    def reduce_tensor(tensor: Any):
        if isinstance(tensor, NpuTensor) or tensor.device.type == _state.DEVICE_TYPE:
            raise RuntimeError(CROSS_PROCESS_MESSAGE.format(what=_describe(tensor)))
        return original(tensor)

    reductions.reduce_tensor = reduce_tensor
    reductions.init_reductions()  # re-registers torch.Tensor, Parameter and the typed classes with ours
    ForkingPickler.register(NpuTensor, reduce_tensor)  # the exact-type table misses the subclass otherwise
    _installed = True
