"""``torch.npu``: the device module of the emulated NPU.

Registered with ``torch._register_device_module('npu', ...)`` so torch core finds it (seeding,
``fork_rng``, checkpoint RNG stashing, ``torch.load`` device validation, ``Tensor.npu()``), and it
offers the torch_npu surface migrated training scripts call: device queries, RNG, memory stubs
(always 0: the emulator does not track memory), no-op streams/events, AMP helpers and the
torch_npu knobs ``set_compile_mode`` / ``config.allow_internal_format``.
"""

from __future__ import annotations

import contextlib
import time
import types
from typing import Any, Iterator, List, Optional, Union

import torch

from transplant.emulate import _state
from transplant.emulate import npu_amp as amp

__all__ = [
    "is_available", "is_initialized", "init", "device_count", "current_device", "set_device",
    "device", "device_of", "synchronize", "get_device_name", "get_device_properties",
    "get_device_capability", "is_bf16_supported", "manual_seed", "manual_seed_all", "seed",
    "seed_all", "initial_seed", "get_rng_state", "set_rng_state", "get_rng_state_all",
    "set_rng_state_all", "empty_cache", "memory_allocated", "max_memory_allocated",
    "memory_reserved", "max_memory_reserved", "reset_peak_memory_stats", "reset_max_memory_allocated",
    "memory_stats", "mem_get_info", "memory_summary", "get_amp_supported_dtype",
    "memory_stats_as_nested_dict", "memory_snapshot", "reset_accumulated_memory_stats", "reset_max_memory_cached",
    "set_per_process_memory_fraction", "get_per_process_memory_fraction", "caching_allocator_alloc",
    "caching_allocator_delete", "utilization", "default_generators", "StreamContext",
    "is_autocast_enabled", "set_autocast_enabled", "get_autocast_dtype", "set_autocast_dtype",
    "Stream", "Event", "current_stream", "default_stream", "stream", "set_stream",
    "set_compile_mode", "config", "amp", "utils", "FloatTensor", "DoubleTensor", "HalfTensor",
    "BFloat16Tensor", "LongTensor", "IntTensor", "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor",
]

DeviceLike = Union[int, str, torch.device, None]

# torch.utils.checkpoint stashes/restores the device RNG only when this is truthy; without it a
# checkpointed dropout recomputes with a different mask and the gradients are silently wrong.
_initialized = True


def _is_in_bad_fork() -> bool:
    return False


def _lazy_init() -> None:
    """Nothing to initialise lazily: the emulated device is ready once activated."""


def is_available() -> bool:
    """Always True while the emulator is active."""
    return True


def is_initialized() -> bool:
    """Always True while the emulator is active."""
    return True


def init() -> None:
    """No-op (torch_npu initialises the device runtime here)."""


def device_count() -> int:
    """Number of emulated devices."""
    return _state.device_count


def _index(device: DeviceLike, optional: bool = True) -> int:
    if device is None:
        return _state.current_index()
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device):
        if device.type != _state.DEVICE_TYPE:
            raise ValueError(f"Expected a npu device, but got: {device}")
        return _state.current_index() if device.index is None else device.index
    return int(device)


class _UtilsModule(types.ModuleType):
    pass


utils = _UtilsModule("torch.npu._utils")


def _get_device_index(device: Any, optional: bool = False, allow_cpu: bool = False) -> int:
    """Device index of ``device`` (as ``torch.cuda._utils._get_device_index``), -1 for CPU if allowed."""
    if isinstance(device, str):
        device = torch.device(device)
    if isinstance(device, torch.device):
        if allow_cpu and device.type == "cpu":
            return -1
        if device.type != _state.DEVICE_TYPE:
            raise ValueError(f"Expected a npu device, but got: {device}")
        if device.index is None:
            if not optional:
                raise ValueError(f"Expected a npu device with a specified index or an integer, but got: {device}")
            return _state.current_index()
        return device.index
    if device is None:
        if not optional:
            raise ValueError("Expected a npu device with a specified index or an integer, but got: None")
        return _state.current_index()
    return int(device)


utils._get_device_index = _get_device_index  # type: ignore[attr-defined]
_utils = utils


def current_device() -> int:
    """Index of the current npu device."""
    return _state.current_index()


def set_device(device: DeviceLike) -> None:
    """Select the current npu device (``'npu:1'``, ``torch.device('npu', 1)`` or ``1``)."""
    index = _index(device)
    if index >= 0:
        _state.set_current_index(index)


class device:
    """Context manager that changes the current npu device."""

    def __init__(self, device: DeviceLike) -> None:
        self.index = _get_device_index(device, optional=True)
        self.previous = -1

    def __enter__(self) -> None:
        self.previous = current_device()
        if self.index >= 0 and self.index != self.previous:
            set_device(self.index)

    def __exit__(self, *exc: Any) -> None:
        if self.index >= 0 and self.index != self.previous:
            set_device(self.previous)


class device_of(device):
    """Context manager that makes the device of ``obj`` (a tensor) current."""

    def __init__(self, obj: torch.Tensor) -> None:
        super().__init__(obj.get_device() if obj.device.type == _state.DEVICE_TYPE else -1)


def synchronize(device: DeviceLike = None) -> None:
    """No-op: emulated kernels run synchronously on CPU."""


def get_device_name(device: DeviceLike = None) -> str:
    """A name that says the device is emulated."""
    return "Ascend (emulated on CPU by transplant)"


class _DeviceProperties:
    def __init__(self, index: int) -> None:
        self.name = get_device_name(index)
        self.index = index
        self.total_memory = 64 * 1024**3
        self.major, self.minor = 0, 0
        self.multi_processor_count = 1

    def __repr__(self) -> str:
        return f"_NPUDeviceProperties(name='{self.name}', total_memory={self.total_memory // 1024**2}MB)"


def get_device_properties(device: DeviceLike = None) -> _DeviceProperties:
    """Fixed, plausible properties (64 GiB, one 'multiprocessor')."""
    return _DeviceProperties(_index(device))


def get_device_capability(device: DeviceLike = None) -> tuple:
    """``(0, 0)``: there is no compute capability to report."""
    # torch_npu returns None here; code written for CUDA compares tuples, so give a neutral one.
    return (0, 0)


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """True: bfloat16 runs (on CPU)."""
    return True


# --- RNG -------------------------------------------------------------------------------------

# torch_npu's per-device default generators; filled at activation (one per emulated device).
default_generators: tuple = ()


def _generators(device: DeviceLike = None) -> List[torch.Generator]:
    if _state.rng_mode == "shared":
        return [torch.default_generator]
    return [_state.generators[_index(device)]]


def manual_seed(seed: int) -> None:
    """Seed the generator of the current npu device."""
    seed = int(seed)
    for gen in _generators():
        gen.manual_seed(seed)
    _state.initial_seeds[_state.current_index()] = seed


def manual_seed_all(seed: int) -> None:
    """Seed the generators of all npu devices (called by ``torch.manual_seed``)."""
    seed = int(seed)
    if _state.rng_mode == "shared":
        return  # torch.manual_seed already seeds the CPU generator the devices share
    for i, gen in enumerate(_state.generators):
        gen.manual_seed(seed)
        _state.initial_seeds[i] = seed


def seed() -> None:
    """Seed the current device's generator with a random number."""
    gens = _generators()
    value = gens[0].seed()
    _state.initial_seeds[_state.current_index()] = value


def seed_all() -> None:
    """Seed every npu generator with one random number."""
    value = torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(int(time.time_ns()))).item()
    manual_seed_all(value)


def initial_seed() -> int:
    """The seed the current device's generator was last seeded with."""
    if _state.rng_mode == "shared":
        return torch.initial_seed()
    return _state.initial_seeds[_state.current_index()]


def get_rng_state(device: DeviceLike = "npu") -> torch.Tensor:
    """RNG state of an npu device as a CPU ByteTensor (as torch_npu returns it)."""
    return _generators(device)[0].get_state()


def set_rng_state(new_state: torch.Tensor, device: DeviceLike = "npu") -> None:
    """Restore the RNG state of an npu device (a CPU ByteTensor)."""
    _generators(device)[0].set_state(new_state.cpu() if new_state.device.type != "cpu" else new_state)


def get_rng_state_all() -> List[torch.Tensor]:
    """RNG states of all npu devices."""
    return [get_rng_state(i) for i in range(device_count())]


def set_rng_state_all(new_states: List[torch.Tensor]) -> None:
    """Restore the RNG states of all npu devices."""
    for i, state in enumerate(new_states):
        set_rng_state(state, i)


# --- memory (not tracked: zeros) ------------------------------------------------------------


def empty_cache() -> None:
    """No-op: the emulator has no caching allocator."""


def memory_allocated(device: DeviceLike = None) -> int:
    """0: memory is not tracked."""
    return 0


def max_memory_allocated(device: DeviceLike = None) -> int:
    """0: memory is not tracked."""
    return 0


def memory_reserved(device: DeviceLike = None) -> int:
    """0: memory is not tracked."""
    return 0


def max_memory_reserved(device: DeviceLike = None) -> int:
    """0: memory is not tracked."""
    return 0


memory_cached = memory_reserved
max_memory_cached = max_memory_reserved


def reset_peak_memory_stats(device: DeviceLike = None) -> None:
    """No-op: memory is not tracked."""
    pass


def reset_max_memory_allocated(device: DeviceLike = None) -> None:
    """No-op: memory is not tracked."""
    pass


def memory_stats(device: DeviceLike = None) -> dict:
    """Empty: memory is not tracked."""
    return {}


def mem_get_info(device: DeviceLike = None) -> tuple:
    """``(free, total)``, both the fixed 64 GiB of the emulated device."""
    total = _DeviceProperties(0).total_memory
    return (total, total)


def memory_summary(device: DeviceLike = None, abbreviated: bool = False) -> str:
    """A one-line note that memory is not tracked."""
    return "Memory statistics are not tracked by the emulated NPU (transplant.emulate)."


def memory_stats_as_nested_dict(device: DeviceLike = None) -> dict:
    """Empty: memory is not tracked."""
    return {}


def memory_snapshot() -> list:
    """No segments: the emulator has no caching allocator."""
    return []


def reset_accumulated_memory_stats(device: DeviceLike = None) -> None:
    """No-op: memory is not tracked."""


def reset_max_memory_cached(device: DeviceLike = None) -> None:
    """No-op: memory is not tracked."""


def host_memory_stats() -> dict:
    """Empty: host (pinned) memory is not tracked."""
    return {}


def host_memory_stats_as_nested_dict() -> dict:
    """Empty: host (pinned) memory is not tracked."""
    return {}


def reset_accumulated_host_memory_stats() -> None:
    """No-op: host memory is not tracked."""


def reset_peak_host_memory_stats() -> None:
    """No-op: host memory is not tracked."""


def host_empty_cache() -> None:
    """No-op: there is no host caching allocator."""


_memory_fractions: dict = {}


def set_per_process_memory_fraction(fraction: float, device: DeviceLike = None) -> None:
    """Remember the fraction (0..1, checked as torch_npu does); it limits nothing on the emulator."""
    index = _index(device)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"Invalid fraction value: {fraction}. Allowed range: 0~1")
    _memory_fractions[index] = float(fraction)


def get_per_process_memory_fraction(device: DeviceLike = None) -> float:
    """The fraction last set for the device (1.0 by default)."""
    return _memory_fractions.get(_index(device), 1.0)


_allocations: dict = {}


def caching_allocator_alloc(size: int, device: DeviceLike = None, stream: Any = None) -> int:
    """Allocate ``size`` bytes on the device; returns the address (free it with caching_allocator_delete)."""
    block = torch.empty(int(size), dtype=torch.uint8, device=torch.device(_state.DEVICE_TYPE, _index(device)))
    pointer = block.data_ptr()
    _allocations[pointer] = block
    return pointer


def caching_allocator_delete(mem_ptr: int) -> None:
    """Free memory allocated with :func:`caching_allocator_alloc`."""
    _allocations.pop(mem_ptr, None)


def get_allocator_backend() -> str:
    """``'native'``: the emulator's (CPU) allocator."""
    return "native"


def utilization(device: DeviceLike = None) -> int:
    """0: the emulated device reports no load."""
    _index(device)
    return 0


def ipc_collect() -> None:
    """No-op: no inter-process memory to collect."""


def can_device_access_peer(device: DeviceLike, peer_device: DeviceLike) -> bool:
    """True: emulated devices share the host memory."""
    _index(device)
    _index(peer_device)
    return True


_sync_debug_mode = 0


def set_sync_debug_mode(debug_mode: Union[int, str]) -> None:
    """Stored only: emulated kernels are synchronous, so there is nothing to warn about."""
    global _sync_debug_mode
    names = {"default": 0, "warn": 1, "error": 2}
    _sync_debug_mode = names[debug_mode] if isinstance(debug_mode, str) else int(debug_mode)


def get_sync_debug_mode() -> int:
    """The mode last set with :func:`set_sync_debug_mode`."""
    return _sync_debug_mode


def is_current_stream_capturing() -> bool:
    """False: graph capture is not emulated."""
    return False


def _sleep(cycles: int) -> None:
    """No-op (``torch.cuda._sleep`` spins the device for a number of cycles)."""


def _record_memory_history(enabled: Any = "all", *args: Any, **kwargs: Any) -> None:
    """Accepted: there is no allocator history to record, so snapshots stay empty."""


def _snapshot(device: DeviceLike = None) -> dict:
    """An empty allocator snapshot in torch's format."""
    return {"segments": [], "device_traces": [], "allocator_settings": {}}


def _dump_snapshot(filename: str = "dump_snapshot.pickle") -> None:
    """Write :func:`_snapshot` to ``filename`` (pickle, like torch)."""
    import pickle

    with open(filename, "wb") as handle:
        pickle.dump(_snapshot(), handle)


# --- AMP --------------------------------------------------------------------------------------


def get_amp_supported_dtype() -> List[torch.dtype]:
    """float16 and bfloat16 (read by ``torch.autocast`` and checkpointing)."""
    return [torch.float16, torch.bfloat16]


def is_autocast_enabled() -> bool:
    """Whether npu autocast is on (``torch.is_autocast_enabled('npu')``)."""
    return torch.is_autocast_enabled(_state.DEVICE_TYPE)


def set_autocast_enabled(enabled: bool) -> None:
    """Switch npu autocast on or off."""
    torch.set_autocast_enabled(_state.DEVICE_TYPE, enabled)


def get_autocast_dtype() -> torch.dtype:
    """The npu autocast dtype."""
    return torch.get_autocast_dtype(_state.DEVICE_TYPE)


def set_autocast_dtype(dtype: torch.dtype) -> None:
    """Set the npu autocast dtype."""
    torch.set_autocast_dtype(_state.DEVICE_TYPE, dtype)


get_autocast_gpu_dtype = get_autocast_dtype


# --- streams and events (no-ops; events measure wall-clock time) ----------------------------


class Stream:
    """A no-op npu stream: emulated kernels run synchronously."""

    def __init__(self, device: DeviceLike = None, priority: int = 0, **kwargs: Any) -> None:
        self.device = torch.device(_state.DEVICE_TYPE, _index(device))
        self.priority = priority

    def synchronize(self) -> None:
        pass

    def query(self) -> bool:
        return True

    def wait_stream(self, stream: "Stream") -> None:
        pass

    def wait_event(self, event: "Event") -> None:
        pass

    def record_event(self, event: Optional["Event"] = None) -> "Event":
        event = event or Event()
        event.record(self)
        return event

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and other.device == self.device

    def __hash__(self) -> int:
        return hash(self.device)

    def __repr__(self) -> str:
        return f"<torch.npu.Stream device={self.device} (emulated, no-op)>"


class Event:
    """An npu event; ``elapsed_time`` returns wall-clock milliseconds between two records."""

    def __init__(self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self._time: Optional[float] = None

    def record(self, stream: Optional[Stream] = None) -> None:
        self._time = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def wait(self, stream: Optional[Stream] = None) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, end_event: "Event") -> float:
        if self._time is None or end_event._time is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time.")
        return (end_event._time - self._time) * 1000.0


_current_streams: dict = {}


def current_stream(device: DeviceLike = None) -> Stream:
    """The stream selected with ``torch.npu.stream``/``set_stream``, else the default one."""
    index = _index(device)
    return _current_streams.get(index) or default_stream(index)


def default_stream(device: DeviceLike = None) -> Stream:
    """The (no-op) default stream of a device."""
    return Stream(_index(device))


class StreamContext:
    """Context manager selecting ``stream`` (None: no change)."""

    def __init__(self, stream: Optional[Stream]) -> None:
        self.stream = stream
        self.previous: Optional[Stream] = None

    def __enter__(self) -> None:
        if self.stream is not None:
            self.previous = current_stream(self.stream.device)
            set_stream(self.stream)

    def __exit__(self, *exc: Any) -> None:
        if self.stream is not None and self.previous is not None:
            set_stream(self.previous)


def set_stream(stream: Stream) -> None:
    """Select ``stream`` as current for its device."""
    _current_streams[stream.device.index] = stream


@contextlib.contextmanager
def stream(stream: Optional[Stream]) -> Iterator[None]:
    """Context manager selecting ``stream`` (no effect on execution)."""
    if stream is None:
        yield
        return
    previous = current_stream(stream.device)
    set_stream(stream)
    try:
        yield
    finally:
        set_stream(previous)


# --- torch_npu knobs ------------------------------------------------------------------------


def set_compile_mode(jit_compile: bool = False) -> None:
    """Accepted and ignored: operator compilation mode has no meaning on the emulator."""


class _Config:
    """``torch.npu.config``: torch_npu's switches; ``allow_internal_format`` is stored only."""

    allow_internal_format = False


config = _Config()


def set_option(option: dict) -> None:
    """Accepted and ignored (torch_npu runtime options)."""


# --- legacy tensor types (torch.npu.FloatTensor, ...) ----------------------------------------


class _LegacyTensorTypeMeta(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return (
            isinstance(obj, torch.Tensor)
            and obj.device.type == _state.DEVICE_TYPE
            and obj.dtype == cls.dtype  # type: ignore[attr-defined]
        )


def _legacy_type(name: str, dtype: torch.dtype) -> type:
    def __new__(cls, *args: Any) -> torch.Tensor:
        # torch.npu.FloatTensor(2, 3) -> uninitialised 2x3; torch.npu.FloatTensor([1, 2]) -> data
        if len(args) == 1 and not isinstance(args[0], int):
            source = args[0]
            if isinstance(source, torch.Tensor):
                return source.to(device=_state.DEVICE_TYPE, dtype=dtype)
            return torch.tensor(source, dtype=dtype, device=_state.DEVICE_TYPE)
        return torch.empty(*args, dtype=dtype, device=_state.DEVICE_TYPE)

    doc = f"``torch.npu.{name}``: legacy constructor/isinstance check for npu tensors of {dtype}."
    return _LegacyTensorTypeMeta(name, (), {"__new__": __new__, "dtype": dtype, "is_npu": True, "__doc__": doc})


FloatTensor = _legacy_type("FloatTensor", torch.float32)
DoubleTensor = _legacy_type("DoubleTensor", torch.float64)
HalfTensor = _legacy_type("HalfTensor", torch.float16)
BFloat16Tensor = _legacy_type("BFloat16Tensor", torch.bfloat16)
LongTensor = _legacy_type("LongTensor", torch.int64)
IntTensor = _legacy_type("IntTensor", torch.int32)
ShortTensor = _legacy_type("ShortTensor", torch.int16)
CharTensor = _legacy_type("CharTensor", torch.int8)
ByteTensor = _legacy_type("ByteTensor", torch.uint8)
BoolTensor = _legacy_type("BoolTensor", torch.bool)


# --- torch.Generator('npu') -------------------------------------------------------------------


class _GeneratorMeta(type(torch._C.Generator)):  # torch gives Generator its own metaclass
    # torch.default_generator and generators torch creates in C++ are plain torch._C.Generator
    # objects: they must stay instances of torch.Generator.
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, torch._C.Generator)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, torch._C.Generator)


class Generator(torch._C.Generator, metaclass=_GeneratorMeta):
    """``torch.Generator`` on the emulator: a generator made for an npu device says so in ``.device``.

    Its state is a CPU generator's, because the emulated kernels draw on the CPU; torch checks the
    C++ device (cpu), so it can be passed to any npu or cpu random op.
    """

    def __init__(self, device: DeviceLike = None) -> None:
        requested = torch.device(device) if isinstance(device, (str, torch.device)) else None
        if requested is not None and requested.type == _state.DEVICE_TYPE:
            index = _state.current_index() if requested.index is None else requested.index
            self._npu_device: Optional[torch.device] = torch.device(_state.DEVICE_TYPE, index)
        else:
            self._npu_device = None

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self._npu_device or torch._C.Generator.device.__get__(self)


Generator.__module__ = "torch"
Generator.__qualname__ = "Generator"
