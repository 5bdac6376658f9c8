"""torch_npu's CPU fallback, as the device does it: warn once per operator, or refuse when disabled.

On an Ascend host an aten operator without an NPU kernel runs through torch_npu's boxed dispatcher
fallback on the CPU and warns once (``CAUTION: The operator 'aten::X' is not currently supported ...``);
a few NPU kernels themselves route to the CPU with their own CAUTION message (``aten::_fused_adam_``,
``aten::logit`` ...). With ``TORCH_NPU_FALLBACK_CPU_DISABLE=1`` both raise instead. The emulator runs
every operator on the CPU anyway, so it decides what the device would do from torch_npu's registry
(``transplant/data/npu_ops.json``, read from the 2.13 wheel) and torch's dispatcher:

* an NPU kernel in the registry: runs on the NPU;
* otherwise a ``CompositeExplicitAutograd`` kernel: decomposes into other operators on the device, which
  are judged one by one when they arrive (composite-implicit operators never reach the backend at all);
* otherwise: the dispatcher fallback.

:func:`check` runs once per operator overload (the emulator caches its per-op facts), so it costs nothing
on the hot path; the refusal is not cached and raises on every call, as on the device.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from typing import Any, Optional, Tuple

import torch

__all__ = ["check", "classify", "FallbackWarning"]

_has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
_STRUCTURED = "CompositeExplicitAutogradNonFunctional"


class FallbackWarning(UserWarning):
    """torch_npu's CPU-fallback CAUTION (a UserWarning there too: it comes through c10's warning handler)."""


@lru_cache(maxsize=1)
def _ops():
    from transplant.analysis.facts import npu_ops

    return npu_ops()


def classify(func: Any) -> Optional[Tuple[str, str]]:
    """``("dispatcher" | "explicit", message)`` if the device would run ``func`` on the CPU, else None.

    The message names the operator torch_npu lacks, which for a structured op is its out= variant.
    """
    schema = func._schema
    full = schema.name
    if not full.startswith("aten::"):
        return None
    name = full[len("aten::"):]
    overload = schema.overload_name
    ops = _ops()
    explicit = ops.explicit_cpu_message(name, overload)
    if explicit:
        return "explicit", explicit
    if ops.has_kernel(name, overload):
        return None
    qualified = f"{full}.{overload}" if overload else full
    if _has_kernel(qualified, "CompositeExplicitAutograd"):
        return None
    if _has_kernel(qualified, _STRUCTURED):
        if not _has_kernel(qualified, "CPU"):
            return None  # a real decomposition (select_backward -> new_zeros + select + copy_)
        # A structured op (a CPU kernel *and* the generic non-functional one): its functional/in-place
        # variant calls the out= variant on the device, the kernel torch_npu must have (``lgamma`` ->
        # ``lgamma.out``), and the name its warning gives.
        out = _out_variant(name, overload)
        if out is None or ops.has_kernel(*out):
            return None
        full = f"aten::{out[0]}.{out[1]}"
    return "dispatcher", ops.fallback_warning.format(op=full)


def _out_variant(name: str, overload: str) -> Optional[Tuple[str, str]]:
    base = name[:-1] if name.endswith("_") and not name.endswith("__") else name
    packet = getattr(torch.ops.aten, base, None)
    if packet is None:
        return None
    overloads = set(packet.overloads())
    for candidate in ((f"{overload}_out" if overload else "out"), "out"):
        if candidate in overloads:
            return base, candidate
    return None


def disabled() -> bool:
    """True when ``TORCH_NPU_FALLBACK_CPU_DISABLE=1`` (read per call: tests set it per process)."""
    return os.environ.get("TORCH_NPU_FALLBACK_CPU_DISABLE", "") == "1"


def check(func: Any) -> Optional[str]:
    """Warn (once per operator) or raise as torch_npu would; returns the fallback kind or None."""
    found = classify(func)
    if found is None:
        return None
    kind, message = found
    op = _op_in(message, func._schema.name)
    if disabled():
        ops = _ops()
        raise RuntimeError(ops.fallback_disabled.format(op=op, through=ops.fallback_kinds[kind]))
    _warn_once(op, message)
    return kind


def blamed_op(message: str, default: str) -> str:
    """The ``aten::`` operator a fallback message names (``default`` if it names none in quotes)."""
    return _op_in(message, default)


def _op_in(message: str, default: str) -> str:
    start = message.find("'aten::")
    return message[start + 1 : message.index("'", start + 1)] if start >= 0 else default


@lru_cache(maxsize=None)
def _warn_once(op: str, message: str) -> None:
    # stacklevel: point at the user's line rather than at the emulator
    warnings.warn(message, FallbackWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    import sys

    frame = sys._getframe(2)
    level = 2
    torch_dir = os.path.dirname(torch.__file__)
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(torch_dir) or filename.startswith(ours) or filename.startswith("<")):
            return level
        frame = frame.f_back
        level += 1
    return 1
