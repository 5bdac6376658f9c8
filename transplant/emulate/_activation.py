"""The activation sequence of the emulated NPU (order matters; see each step's comment)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
import threading
import warnings
from typing import Optional

_lock = threading.RLock()
_active = False
_python_guard: tuple = ()
_SHIM_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "shim")


def is_active() -> bool:
    """True once activation has completed in this process."""
    return _active


def _is_our_shim(path: Optional[str]) -> bool:
    return bool(path) and os.path.abspath(path).startswith(_SHIM_DIR + os.sep)


def refuse_real_torch_npu() -> None:
    """Raise if the real torch_npu is importable: the emulator must never shadow hardware."""
    module = sys.modules.get("torch_npu")
    if module is not None:
        origin = getattr(module, "__file__", None)
    else:
        try:
            spec = importlib.util.find_spec("torch_npu")
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
    if origin is not None and not _is_our_shim(origin):
        _refuse(origin)
    # Our stand-in may come first on sys.path and hide an installed wheel: ask the metadata too.
    try:
        distribution = importlib.metadata.distribution("torch_npu")
    except importlib.metadata.PackageNotFoundError:
        return
    _refuse(f"torch_npu {distribution.version} in {distribution.locate_file('')}")


def _refuse(where: str) -> None:
    raise RuntimeError(
        f"transplant.emulate: the real torch_npu is installed ({where}). The emulated NPU only runs "
        "where torch_npu is absent; on an Ascend host run the migrated script directly, or use an "
        "environment without torch_npu to try it on CPU."
    )


def _env_count() -> Optional[int]:
    value = os.environ.get("TRANSPLANT_NPU_COUNT", "").strip()
    if not value:
        return None
    count = int(value)
    if count < 1:
        raise ValueError(f"TRANSPLANT_NPU_COUNT must be >= 1, got {value}")
    return count


def activate(*, native: Optional[bool], strict_cuda: Optional[str], device_count: Optional[int]) -> None:
    """Run the activation sequence once (see ``transplant.emulate.activate``)."""
    global _active
    # Import torch before anything that imports it at module level: under `transplant run` the
    # first `import torch` itself activates the emulator (boot hook), and that nested activation
    # must not find a half-imported transplant.emulate.strict.
    import torch  # noqa: F401

    from transplant.emulate import strict

    if strict_cuda is None:
        strict_cuda = os.environ.get("TRANSPLANT_STRICT_CUDA") or None
    with _lock:
        if _active:
            if strict_cuda is not None:
                strict.set_mode(strict_cuda)
            return
        refuse_real_torch_npu()
        strict.check_mode(strict_cuda)
        import torch

        from transplant.emulate import (_state, device_module, fixes, kernels, npu_amp, serialization, sharing,
                                        surface, tensor)
        from transplant.emulate import amp as amp_kernels

        current = torch._C._get_privateuse1_backend_name()
        if current not in ("privateuseone", _state.DEVICE_TYPE):
            raise RuntimeError(
                f"transplant.emulate: the PrivateUse1 backend is already registered as {current!r}"
            )
        rng = os.environ.get("TRANSPLANT_NPU_RNG", "").strip()
        if rng:
            if rng not in _state.RNG_MODES:
                raise ValueError(f"TRANSPLANT_NPU_RNG must be one of {_state.RNG_MODES}, got {rng!r}")
            _state.rng_mode = rng

        # 1. The name: torch.device('npu:1') becomes valid.
        if current != _state.DEVICE_TYPE:
            torch.utils.rename_privateuse1_backend(_state.DEVICE_TYPE)
        # 2. Guard and hooks, before anything can run a backward pass (a missing guard aborts it).
        count = device_count if device_count is not None else _env_count()
        use_native = _install_guard(native, count)
        if count is None:
            count = 8 if use_native else 1
        elif not use_native and count != 1:
            warnings.warn(
                f"transplant.emulate: pure-Python mode emulates npu:0 only; ignoring device_count={count}",
                RuntimeWarning,
                stacklevel=3,
            )
            count = 1
        _state.configure(count, use_native)
        # 3. torch.npu and the generated Tensor/Module methods (.npu(), .is_npu).
        torch._register_device_module(_state.DEVICE_TYPE, device_module)
        sys.modules["torch.npu.amp"] = npu_amp
        sys.modules["torch.npu._utils"] = device_module.utils
        device_module.default_generators = tuple(_state.generator(i) for i in range(count))
        # Every other public name of torch_npu 2.13's torch.npu: an emulation or a clear "not emulated".
        surface.install(device_module, npu_amp)
        if not hasattr(torch.Tensor, "is_npu"):
            torch.utils.generate_methods_for_privateuse1_backend(
                for_tensor=True, for_module=True, for_packed_sequence=True, for_storage=False
            )
        # LazyModule.npu() / .to('npu'): the parameters stay lazy and materialise on the npu device.
        tensor.install_lazy_parameter_moves()
        if use_native:  # torch.Generator('npu') exists only with the native hooks
            torch.Generator = device_module.Generator
        # 4. Kernels: factories, direct ops, RNN; then autocast; then checkpoints.
        kernels.register_device_kernels()
        amp_kernels.register()
        serialization.register()
        # 5. Process-level fixes (exit-time abort) and the strict-CUDA check.
        fixes.install()
        sharing.install()
        tensor.install_data_property()
        strict.set_mode(strict_cuda)
        # 6. `transplant run --op-report`: record the operators reaching npu tensors.
        report_dir = os.environ.get("TRANSPLANT_OP_REPORT_DIR")
        if report_dir:
            from transplant.emulate import oprecord

            oprecord.start(report_dir)
        _state.active = True
        _active = True


def _install_guard(native: Optional[bool], count: Optional[int]) -> bool:
    """Install the native guard/hooks if possible, else the pure-Python ones. True if native."""
    import torch

    if native is not False:
        reason = ""
        try:
            from transplant.emulate import native as native_helper
        except ImportError as error:
            native_helper = None
            reason = f"the native helper module is missing ({error})"
        if native_helper is not None:
            if native_helper.install(count if count is not None else 8):
                return True
            reason = native_helper.unavailable_reason()
        if native:
            raise RuntimeError(f"transplant.emulate: the native npu helper is unavailable: {reason}")
        warnings.warn(
            f"transplant.emulate: native npu helper unavailable ({reason}); using the pure-Python mode "
            "(npu:0 only: no multi-device, no real pinned memory, no torch.Generator('npu'))",
            RuntimeWarning,
            stacklevel=4,
        )

    class _Hooks(torch._C._acc.PrivateUse1Hooks):
        def is_available(self) -> bool:
            return True

        def is_built(self) -> bool:
            return True

        def has_primary_context(self, dev_id: int) -> bool:
            return True

    class _Guard(torch._C._acc.DeviceGuard):
        def type_(self):
            return torch._C._autograd.DeviceType.PrivateUse1

    global _python_guard
    # torch keeps only a borrowed reference: hold the objects for the life of the process.
    _python_guard = (_Hooks(), _Guard())
    torch._C._acc.register_python_privateuseone_hook(_python_guard[0])
    torch._C._acc.register_python_privateuseone_device_guard(_python_guard[1])
    try:
        from transplant.emulate import native as native_helper

        native_helper.use_copy_pin_memory()
    except ImportError:
        pass
    return False
