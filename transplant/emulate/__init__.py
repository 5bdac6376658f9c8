"""The emulated NPU: a CPU-backed ``npu`` device so migrated code really runs without hardware.

``activate()`` turns torch's PrivateUse1 backend into ``npu``: tensors on ``npu:N`` compute on CPU,
``torch.npu`` / ``torch.npu.amp`` and a ``torch_npu`` stand-in exist, CPU/NPU mixing fails with the
real error and leftover CUDA fails as on a CUDA-less host. Activation is process-wide and cannot be
undone. Nothing here imports the rewriter; importing this package does not import torch.

See docs/emulator.md for what is and is not emulated.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["activate", "is_active", "set_rng_mode", "rng_mode", "strict_cuda", "shim_dir"]


def activate(
    *,
    native: Optional[bool] = None,
    strict_cuda: Optional[str] = None,
    device_count: Optional[int] = None,
) -> None:
    """Activate the emulated NPU in this process (idempotent).

    Args:
        native: True requires the native guard/hooks helper (multi-device, pinning, DDP
            ``static_graph``); False uses the pure-Python mode (npu:0 only); None tries the native
            helper and falls back to pure Python with one warning naming the reason.
        strict_cuda: None, ``"raise"`` or ``"warn"`` (default: env ``TRANSPLANT_STRICT_CUDA``):
            turn silent CUDA fallbacks such as ``torch.cuda.is_available()`` into errors/warnings
            naming the user's file and line.
        device_count: number of emulated devices (default: env ``TRANSPLANT_NPU_COUNT``, else 8
            with the native helper and 1 in pure-Python mode).

    Raises:
        RuntimeError: the real torch_npu is installed, or ``native=True`` and the helper cannot
            be built/loaded, or the PrivateUse1 backend is already taken by another backend.
    """
    from transplant.emulate import _activation

    _activation.activate(native=native, strict_cuda=strict_cuda, device_count=device_count)


def is_active() -> bool:
    """True once :func:`activate` has completed in this process."""
    from transplant.emulate import _activation

    return _activation.is_active()


def set_rng_mode(mode: str) -> None:
    """Choose where random ops on npu draw from: ``"separate"`` (default) or ``"shared"``.

    ``separate``: one generator per emulated device, seeded by ``torch.manual_seed`` and
    ``torch.npu.manual_seed(_all)``; the CPU random stream is untouched, as on hardware (a dropout
    model is then *not* bit-identical to a CPU run). ``shared``: npu random ops draw from the CPU
    default generator, so dropout models match a CPU run bit for bit. Env ``TRANSPLANT_NPU_RNG``
    sets the mode at activation.
    """
    from transplant.emulate import _state

    if mode not in _state.RNG_MODES:
        raise ValueError(f"rng mode must be one of {_state.RNG_MODES}, got {mode!r}")
    _state.rng_mode = mode


def rng_mode() -> str:
    """The current RNG mode (see :func:`set_rng_mode`)."""
    from transplant.emulate import _state

    return _state.rng_mode


def strict_cuda(mode: Optional[str]) -> None:
    """Switch the strict-CUDA check: ``"raise"``, ``"warn"`` or None (off)."""
    from transplant.emulate import strict

    strict.set_mode(mode)


def shim_dir() -> str:
    """Directory to put on ``sys.path``/``PYTHONPATH`` so ``import torch_npu`` finds the stand-in."""
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")
