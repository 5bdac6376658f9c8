"""Build and load the native device guard / hooks helper of the emulated npu device.

The helper (``native/npu_guard.cpp``) gives torch core a real ``DeviceGuardImplInterface`` and a
real ``PrivateUse1HooksInterface`` for the ``npu`` device: a configurable device count, a
thread-local current device, no-op streams, wall-clock events, a tracking "pinned" allocator over
ordinary CPU memory and per-device CPU generators. Without it the emulator only supports npu:0
(see docs/emulator-native-dist.md).

It is compiled on first use with ``torch.utils.cpp_extension.load`` (needs a C++ compiler and the
``ninja`` PyPI package) into a cache directory keyed by torch version and source hash, so later
processes, including concurrently starting distributed ranks, just load the cached library.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import functools
import importlib.machinery
import importlib.util
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

__all__ = [
    "install",
    "is_installed",
    "unavailable_reason",
    "build_dir",
    "extension",
    "use_copy_pin_memory",
]

_log = logging.getLogger(__name__)

_MODULE_NAME = "transplant_npu_native"
_SOURCE = Path(__file__).with_name("native") / "npu_guard.cpp"
_CFLAGS = ["-O2"]
# Values of TRANSPLANT_NATIVE that switch the helper off (handy to test the fallback path).
_OFF_VALUES = {"0", "off", "false", "no"}

_lock = threading.Lock()
_extension: Optional[ModuleType] = None
_reason: str = "the native helper has not been installed yet"
_installed_count: Optional[int] = None


@functools.lru_cache(maxsize=None)
def _source_hash() -> str:
    digest = hashlib.sha256(_SOURCE.read_bytes())
    # The compiled module is tied to the CPython ABI and to the flags, not only to the source.
    # (The extension suffix names the ABI; sysconfig is avoided because its lazy set-up is not
    # thread-safe.)
    digest.update(importlib.machinery.EXTENSION_SUFFIXES[0].encode())
    digest.update(" ".join(_CFLAGS).encode())
    return digest.hexdigest()[:16]


def build_dir() -> Path:
    """Directory holding the compiled helper for this torch version and source.

    ``$TRANSPLANT_CACHE_DIR/native/<torch version>-<hash>`` when the variable is set, otherwise
    ``~/.cache/transplant/native/<torch version>-<hash>``.
    """
    import torch

    root = os.environ.get("TRANSPLANT_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "transplant"
    version = torch.__version__.replace("+", "_")
    return base / "native" / f"{version}-{_source_hash()}"


def _library_path(directory: Path) -> Path:
    return directory / f"{_MODULE_NAME}.so"


def _stamp_path(directory: Path) -> Path:
    # Written only after a successful build, so a half-written .so from a killed build is never
    # loaded.
    return directory / "BUILD_OK"


@contextlib.contextmanager
def _file_lock(directory: Path) -> Iterator[None]:
    """Serialise builds across processes; flock is released by the kernel if a holder dies."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _find_compiler() -> Optional[str]:
    # cpp_extension compiles with $CXX, defaulting to c++.
    wanted = os.environ.get("CXX", "c++")
    return shutil.which(wanted)


def _ninja_dir() -> Optional[str]:
    """Directory containing a ninja binary, preferring the one from the ninja PyPI package."""
    found = shutil.which("ninja")
    if found:
        return str(Path(found).parent)
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return None
    bin_dir = getattr(ninja, "BIN_DIR", None)
    if bin_dir and (Path(bin_dir) / "ninja").exists():
        return str(bin_dir)
    return None


def _load_library(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(directory: Path) -> ModuleType:
    """Compile the helper into ``directory`` (caller holds the lock) and return the module."""
    if _find_compiler() is None:
        raise _Unavailable(
            "no C++ compiler found (gcc/g++): install one (e.g. `apt-get install g++`) or set $CXX"
        )
    ninja_dir = _ninja_dir()
    if ninja_dir is None:
        raise _Unavailable("ninja not installed: `pip install ninja` (it is in the emulate extra)")

    from torch.utils import cpp_extension

    source = directory / _SOURCE.name
    shutil.copyfile(_SOURCE, source)
    # cpp_extension keeps its own lock file in the build directory and waits forever while it
    # exists; one left by a killed build would hang every later build. We hold the flock, so no
    # live build can own it.
    (directory / "lock").unlink(missing_ok=True)
    old_path = os.environ.get("PATH", "")
    # cpp_extension looks ninja up on PATH; the venv's bin dir is not on PATH when the venv
    # python is started by its full path.
    os.environ["PATH"] = ninja_dir + os.pathsep + old_path if old_path else ninja_dir
    try:
        module = cpp_extension.load(
            name=_MODULE_NAME,
            sources=[str(source)],
            extra_cflags=_CFLAGS,
            build_directory=str(directory),
            verbose=False,
        )
    except Exception as error:  # compiler errors come back as RuntimeError/CalledProcessError
        detail = str(error).strip().splitlines()
        tail = " | ".join(detail[-5:]) if detail else type(error).__name__
        raise _Unavailable(f"building the native helper in {directory} failed: {tail}") from error
    finally:
        os.environ["PATH"] = old_path
    _stamp_path(directory).write_text(_source_hash() + "\n")
    return module


class _Unavailable(Exception):
    """The helper cannot be built or loaded here; the message says why."""


def _obtain() -> ModuleType:
    directory = build_dir()
    library = _library_path(directory)
    if library.exists() and _stamp_path(directory).exists():
        return _load_library(library)
    with _file_lock(directory):
        # Another process may have finished the build while we waited for the lock.
        if library.exists() and _stamp_path(directory).exists():
            return _load_library(library)
        _log.info("building the native npu helper in %s (once per torch version)", directory)
        return _build(directory)


def install(device_count: int) -> bool:
    """Build (once, cached), load and register the native npu guard and hooks.

    Returns True when the guard and hooks are active with ``device_count`` devices. Returns False
    instead of raising when the helper cannot be used; :func:`unavailable_reason` then says why,
    and ``Tensor.pin_memory`` is switched to a plain CPU copy so ``DataLoader(pin_memory=True)``
    still works in the single-device pure-Python mode. Calling it again with the same count is a
    no-op. Must run before anything else registers PrivateUse1 hooks and before the first
    backward pass.
    """
    global _extension, _reason, _installed_count
    with _lock:
        if _installed_count is not None:
            if device_count != _installed_count:
                raise RuntimeError(
                    f"the native npu helper is already installed with {_installed_count} device(s); "
                    f"cannot switch to {device_count}"
                )
            return True
        setting = os.environ.get("TRANSPLANT_NATIVE", "").strip().lower()
        try:
            if setting in _OFF_VALUES:
                raise _Unavailable(f"disabled by TRANSPLANT_NATIVE={os.environ['TRANSPLANT_NATIVE']}")
            extension = _obtain()
            try:
                extension.register(int(device_count))
            except RuntimeError as error:
                raise _Unavailable(str(error).splitlines()[0]) from error
        except _Unavailable as error:
            _reason = str(error)
            _log.info("native npu helper unavailable: %s", _reason)
            use_copy_pin_memory()
            return False
        except OSError as error:  # unwritable cache directory, unloadable library, ...
            _reason = f"cannot build or load the native helper in {build_dir()}: {error}"
            _log.info("native npu helper unavailable: %s", _reason)
            use_copy_pin_memory()
            return False
        _extension = extension
        _installed_count = int(device_count)
        _reason = ""
        return True


def is_installed() -> bool:
    """Whether :func:`install` succeeded in this process."""
    return _installed_count is not None


def unavailable_reason() -> str:
    """Why the helper is not active ("" once :func:`install` succeeded)."""
    return _reason


def extension() -> Optional[ModuleType]:
    """The loaded extension module (``register``, ``default_generator``, ...), or None."""
    return _extension


_original_pin_memory = None


def use_copy_pin_memory() -> None:
    """Make ``Tensor.pin_memory()`` return a CPU copy (pure-Python mode only).

    Without the native hooks torch has no pinned allocator for the npu accelerator and
    ``pin_memory()`` raises, which breaks ``DataLoader(pin_memory=True)``. A copy keeps the
    semantics scripts rely on (a fresh CPU tensor); ``is_pinned()`` stays False. Idempotent.
    """
    global _original_pin_memory
    import torch

    if _original_pin_memory is not None or _installed_count is not None:
        return
    original = torch.Tensor.pin_memory
    _original_pin_memory = original

    def pin_memory(self: "torch.Tensor", device: object = None) -> "torch.Tensor":
        if self.device.type != "cpu" or self.is_sparse:
            # torch's own wording for this case.
            raise RuntimeError(f"cannot pin '{self.type()}' only dense CPU tensors can be pinned")
        return self.clone()

    pin_memory.__doc__ = original.__doc__
    torch.Tensor.pin_memory = pin_memory  # type: ignore[method-assign]


def _main(argv: list[str]) -> int:
    """``python -m transplant.emulate.native [N]``: build/load the helper and report."""
    count = int(argv[0]) if argv else 2
    ok = install(count)
    stream = sys.stdout
    if ok:
        stream.write(f"native npu helper active with {count} device(s) ({build_dir()})\n")
        return 0
    stream.write(f"native npu helper unavailable: {unavailable_reason()}\n")
    return 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
