"""Strict-CUDA mode: make silent CUDA fallbacks loud.

On a CUDA-less host most leftover CUDA calls fail by themselves (``x.cuda()`` raises "Torch not
compiled with CUDA enabled"). The dangerous ones quietly change behaviour instead:
``torch.cuda.is_available()`` returns False (the script silently trains on CPU),
``torch.cuda.manual_seed`` is a no-op, ``torch.cuda.amp.GradScaler()`` disables itself and
``torch.autocast('cuda')`` only warns. In strict mode ("raise" or "warn") these report the
*user's* file and line; calls made from inside torch itself (e.g. ``torch.manual_seed`` calling
``torch.cuda.manual_seed_all``) are ignored.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from typing import Any, Callable, Optional

import torch

__all__ = ["LeftoverCudaError", "LeftoverCudaWarning", "set_mode", "mode", "check_mode"]

MODES = (None, "raise", "warn")
_mode: Optional[str] = None
_installed = False
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
# transplant itself (the emulator, transplant.auto's redirects) is not "user code" either
_OUR_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

# torch.cuda functions that silently "work" on a CUDA-less build.
_CUDA_FUNCTIONS = [
    "is_available", "device_count", "is_initialized", "manual_seed", "manual_seed_all", "seed",
    "seed_all", "initial_seed", "memory_allocated", "max_memory_allocated", "memory_reserved",
    "max_memory_reserved", "memory_cached", "max_memory_cached", "empty_cache",
    "reset_peak_memory_stats", "memory_stats", "is_bf16_supported",
]


class LeftoverCudaError(RuntimeError):
    """A CUDA call that would silently fall back on an Ascend host (strict-CUDA mode)."""


class LeftoverCudaWarning(UserWarning):
    """Warning flavour of :class:`LeftoverCudaError` (``strict_cuda='warn'``)."""


def check_mode(value: Optional[str]) -> Optional[str]:
    """Return ``value`` if it is a valid strict-CUDA mode, else raise ValueError."""
    if value not in MODES:
        raise ValueError(f"strict_cuda must be one of {MODES}, got {value!r}")
    return value


def mode() -> Optional[str]:
    """The current strict-CUDA mode."""
    return _mode


def set_mode(value: Optional[str]) -> None:
    """Set the strict-CUDA mode (None, "raise" or "warn"); wrappers are installed on first use."""
    global _mode
    _mode = check_mode(value)
    if value is not None:
        _install()


def _user_frame(depth: int) -> Optional[Any]:
    """The caller frame ``depth`` levels up, or None if that caller is torch or transplant."""
    frame = sys._getframe(depth + 1)
    filename = os.path.abspath(frame.f_code.co_filename)
    if filename.startswith(_TORCH_DIR) or filename.startswith(_OUR_DIR):
        return None
    return frame


def _report(what: str, depth: int) -> None:
    if _mode is None:
        return
    frame = _user_frame(depth + 1)
    if frame is None:
        return
    where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    message = (
        f"leftover CUDA usage: {what} at {where}. On an Ascend host this silently falls back "
        "(no CUDA there); use the npu equivalent (torch.npu / device 'npu')."
    )
    if _mode == "raise":
        raise LeftoverCudaError(message)
    warnings.warn_explicit(message, LeftoverCudaWarning, frame.f_code.co_filename, frame.f_lineno)


def _wrap_function(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name, None)
    if original is None or getattr(original, "_transplant_strict", False):
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _report(f"{label}()", 1)
        return original(*args, **kwargs)

    wrapper._transplant_strict = True  # type: ignore[attr-defined]
    setattr(owner, name, wrapper)


def _wrap_init(cls: type, label: str, applies: Callable[..., bool]) -> None:
    original = cls.__init__
    if getattr(original, "_transplant_strict", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if applies(*args, **kwargs):
            _report(label, 1)
        original(self, *args, **kwargs)

    __init__._transplant_strict = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _device_is_cuda(value: Any) -> bool:
    return isinstance(value, (str, torch.device)) and str(value).split(":")[0] == "cuda"


def _install() -> None:
    global _installed
    if _installed:
        return
    for name in _CUDA_FUNCTIONS:
        _wrap_function(torch.cuda, name, f"torch.cuda.{name}")
    _wrap_init(
        torch.autocast,
        "torch.autocast('cuda')",
        lambda device_type=None, *a, **k: _device_is_cuda(device_type),
    )
    _wrap_init(
        torch.amp.GradScaler,
        "torch.amp.GradScaler('cuda')",
        lambda device="cuda", *a, **k: _device_is_cuda(device),
    )
    _wrap_init(torch.cuda.amp.autocast, "torch.cuda.amp.autocast()", lambda *a, **k: True)
    _wrap_init(torch.cuda.amp.GradScaler, "torch.cuda.amp.GradScaler()", lambda *a, **k: True)
    _installed = True
