"""Process-wide state of the emulated npu device: device list, current device, RNG.

Kept in one small module so the hot dispatch path reads plain module attributes.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List

import torch

DEVICE_TYPE = "npu"
RNG_MODES = ("separate", "shared")

active = False
native = False
device_count = 1
devices: List[torch.device] = []
# "separate": one CPU generator per emulated device (the CPU random stream is untouched, as on
# hardware). "shared": random ops on npu draw from the CPU default generator, so a model with
# dropout is bit-identical to the same run on CPU.
rng_mode = "separate"
generators: List[torch.Generator] = []
initial_seeds: List[int] = []

_local = threading.local()


def configure(count: int, use_native: bool) -> None:
    """Fix the device count (once, at activation)."""
    global device_count, native, devices, generators, initial_seeds
    device_count = count
    native = use_native
    devices = [torch.device(DEVICE_TYPE, i) for i in range(count)]
    seed = torch.initial_seed()
    generators = []
    initial_seeds = []
    for _ in range(count):
        gen = torch.Generator()
        gen.manual_seed(seed)
        generators.append(gen)
        initial_seeds.append(seed)


def current_index() -> int:
    """Index of the current npu device of this thread."""
    if native:
        return torch._C._accelerator_getDeviceIndex()
    return getattr(_local, "index", 0)


def set_current_index(index: int) -> None:
    """Make ``npu:index`` the current device of this thread."""
    check_index(index)
    if native:
        torch._C._accelerator_setDeviceIndex(index)
    else:
        _local.index = index


def check_index(index: int) -> int:
    """Return ``index`` if it names an emulated device, else raise torch_npu-style."""
    if not 0 <= index < device_count:
        hint = "" if native else " (pure-Python mode emulates npu:0 only; the native helper gives more)"
        raise RuntimeError(
            f"Invalid device ordinal npu:{index}: the emulated NPU has {device_count} device(s){hint}"
        )
    return index


def resolve_index(device: torch.device) -> int:
    """Device index for an npu ``torch.device`` (None means the current device)."""
    if device.index is None:
        return current_index()
    return check_index(device.index)


def generator(index: int) -> torch.Generator:
    """The generator random ops on ``npu:index`` draw from (the CPU default one in shared mode)."""
    if rng_mode == "shared":
        return torch.default_generator
    return generators[index]


def run_seeded(func: Any, index: int, has_generator: bool, args: list, kwargs: Dict[str, Any]) -> Any:
    """Run a random CPU op so that it draws from the npu device's generator."""
    if rng_mode == "shared":
        return func(*args, **kwargs)
    gen = generators[index]
    if has_generator:
        kwargs = dict(kwargs)
        kwargs["generator"] = gen
        return func(*args, **kwargs)
    # Ops without a generator argument (e.g. native_dropout) use the CPU default generator:
    # lend it the device state for the duration of the call.
    default = torch.default_generator
    saved = default.get_state()
    default.set_state(gen.get_state())
    try:
        return func(*args, **kwargs)
    finally:
        gen.set_state(default.get_state())
        default.set_state(saved)
