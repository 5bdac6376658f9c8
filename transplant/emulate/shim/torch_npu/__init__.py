"""Stand-in for ``torch_npu`` on machines without an Ascend NPU (transplant's emulated NPU).

``transplant run`` puts the directory above this package on ``sys.path``/``PYTHONPATH``, so a
migrated script's ``import torch_npu`` activates the CPU-backed ``npu`` device (and the emulated
``hccl`` backend) instead of failing. NPU-specific operators (``torch_npu.npu_*``) are not
emulated and raise a clear error naming the operator.
"""

from __future__ import annotations

import importlib
import importlib.util

import transplant.emulate as _emulate

_emulate.activate()
if importlib.util.find_spec("transplant.emulate.distributed") is not None:
    importlib.import_module("transplant.emulate.distributed")  # registers the emulated hccl backend

from transplant.emulate import device_module as npu  # noqa: E402  (after activation)

__version__ = "2.13.0+transplant.emulated"
__all__ = ["npu", "contrib", "profiler", "is_emulated"]


def is_emulated() -> bool:
    """True: this torch_npu is transplant's CPU emulation, not the real Ascend runtime."""
    return True


class _NotEmulated(NotImplementedError):
    pass


def _not_emulated(name: str):
    def op(*args, **kwargs):
        raise _NotEmulated(
            f"torch_npu.{name} is an Ascend-specific operator that the emulated NPU (transplant) does "
            "not implement; express it with standard torch ops to run it here, or run on an NPU host."
        )

    op.__name__ = name
    op.__qualname__ = name
    return op


from torch_npu import contrib  # noqa: E402  (placeholder package)
from torch_npu import profiler  # noqa: E402  (torch's profiler, recording the CPU the NPU runs on)


def __getattr__(name: str):
    # Module-level __getattr__ (PEP 562): any torch_npu.npu_* operator is reported, not emulated.
    if name.startswith("npu_") or name.startswith("_npu_"):
        return _not_emulated(name)
    raise AttributeError(f"module 'torch_npu' has no attribute {name!r} (not emulated by transplant)")
