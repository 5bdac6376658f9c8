"""The native npu guard/hooks helper: build, cache, registration, pinning, generators, streams.

Registering hooks is process-wide and irreversible, so every check that registers runs in a fresh
interpreter. The first run compiles the helper (about 20-30 s, once per torch version and source);
later runs load it from the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from emulate_helpers import repo_env, run_in_group

PYTHON = sys.executable


def run_python(code: str, *, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in its own process group; kill the group afterwards."""
    return run_in_group([PYTHON, "-c", textwrap.dedent(code)], env=repo_env(env), timeout=timeout)


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no JSON result in output:\n{stdout}"
    return json.loads(lines[-1])


# The hooks on their own: only the device name and a minimal device module, no emulator core, so a
# failure here points at the C++ helper.
HOOKS_PROBE = """
import json, threading, types
import torch
from transplant.emulate import native

assert native.install(4), native.unavailable_reason()
assert native.install(4)  # idempotent
torch.utils.rename_privateuse1_backend("npu")
mod = types.ModuleType("torch.npu")
mod.is_available = lambda: True
mod.device_count = lambda: 4
mod.current_device = lambda: torch.accelerator.current_device_index()
mod._lazy_init = lambda: None
torch._register_device_module("npu", mod)
ext = native.extension()
out = {"reason": native.unavailable_reason(), "count": torch.accelerator.device_count(),
       "accelerator": str(torch.accelerator.current_accelerator()),
       "hooks_registered": ext.hooks_registered()}

# pinned memory: real tracking allocator, is_pinned() sees views too, freed blocks are forgotten
base_blocks = ext.pinned_blocks()
plain = torch.arange(12.0).reshape(3, 4)
pinned = plain.pin_memory()
out["pinned"] = [pinned.is_pinned(), pinned[1:].is_pinned(), plain.is_pinned()]
out["pinned_equal"] = bool(torch.equal(pinned, plain)) and pinned.device.type == "cpu"
out["blocks_live"] = ext.pinned_blocks() - base_blocks
del pinned
out["blocks_after_free"] = ext.pinned_blocks() - base_blocks

# generators: torch.Generator(device='npu') is a CPU generator, reproducible when seeded
g = torch.Generator(device="npu")
g.manual_seed(7)
a = torch.randn(5, generator=g)
g.manual_seed(7)
out["generator"] = [str(g.device), bool(torch.equal(a, torch.randn(5, generator=g)))]
out["default_generator_distinct"] = ext.default_generator(0) is not ext.default_generator(1)

# current device is thread-local and range-checked
torch.accelerator.set_device_index(2)
seen = []
t = threading.Thread(target=lambda: seen.append(torch.accelerator.current_device_index()))
t.start(); t.join()
out["current"] = [torch.accelerator.current_device_index(), seen[0]]
try:
    torch.accelerator.set_device_index(4)
    out["bad_index"] = "no error"
except RuntimeError as error:
    out["bad_index"] = str(error)
torch.accelerator.set_device_index(0)

# streams, events, synchronize
s = torch.Stream(device="npu:1")
out["stream"] = [str(s.device), s.query()]
s.synchronize()
e1 = torch.Event(device="npu", enable_timing=True)
e2 = torch.Event(device="npu", enable_timing=True)
e1.record(); e2.record(); e2.synchronize()
out["elapsed_ms_nonneg"] = e1.elapsed_time(e2) >= 0.0
torch.accelerator.synchronize()
out["synchronized"] = True
print(json.dumps(out))
"""


@pytest.mark.slow
def test_hooks_guard_pinning_generators_streams() -> None:
    result = run_python(HOOKS_PROBE)
    assert result.returncode == 0, result.stderr
    out = last_json(result.stdout)
    assert out["reason"] == ""
    assert out["count"] == 4
    assert out["accelerator"] == "npu"
    assert out["hooks_registered"] is True
    assert out["pinned"] == [True, True, False]
    assert out["pinned_equal"] is True
    assert out["blocks_live"] == 1
    assert out["blocks_after_free"] == 0
    assert out["generator"] == ["cpu", True]
    assert out["default_generator_distinct"] is True
    assert out["current"] == [2, 0]
    assert "Invalid device npu:4" in out["bad_index"] and "4 device(s)" in out["bad_index"]
    assert out["stream"] == ["npu:1", True]
    assert out["elapsed_ms_nonneg"] is True
    assert out["synchronized"] is True


FALLBACK_PROBE = """
import json, os, sys
import torch
from transplant.emulate import native

out = {}
os.environ["PATH"] = os.environ["EMPTY_DIR"]
os.environ.pop("CXX", None)
out["no_compiler"] = [native.install(2), native.unavailable_reason()]

# A compiler but no ninja anywhere (neither on PATH nor the PyPI package).
os.environ["CXX"] = os.environ["REAL_CXX"]
sys.modules["ninja"] = None
out["no_ninja"] = [native.install(2), native.unavailable_reason()]

os.environ["TRANSPLANT_NATIVE"] = "0"
out["disabled"] = [native.install(2), native.unavailable_reason()]
out["is_installed"] = native.is_installed()
out["cache_untouched"] = not any(p.suffix == ".so" for p in native.build_dir().glob("*"))

# pure-Python mode keeps pin_memory() usable: a CPU copy
x = torch.arange(4.0)
y = x.pin_memory()
out["pin_copy"] = [bool(torch.equal(x, y)), y.data_ptr() != x.data_ptr(), y.device.type]
print(json.dumps(out))
"""


def test_unavailable_reasons_and_pin_memory_fallback(tmp_path: Path) -> None:
    import shutil

    empty = tmp_path / "empty_bin"
    empty.mkdir()
    compiler = shutil.which("c++") or shutil.which("g++") or "/usr/bin/g++"
    env = dict(os.environ)
    env.update(TRANSPLANT_CACHE_DIR=str(tmp_path / "cache"), EMPTY_DIR=str(empty), REAL_CXX=compiler)
    env.pop("TRANSPLANT_NATIVE", None)
    result = run_python(FALLBACK_PROBE, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    out = last_json(result.stdout)
    assert out["no_compiler"] == [False, out["no_compiler"][1]]
    assert out["no_compiler"][1].startswith("no C++ compiler found (gcc/g++)")
    assert out["no_ninja"][0] is False
    assert out["no_ninja"][1].startswith("ninja not installed")
    assert out["disabled"] == [False, "disabled by TRANSPLANT_NATIVE=0"]
    assert out["is_installed"] is False
    assert out["cache_untouched"] is True
    assert out["pin_copy"] == [True, True, "cpu"]


def test_concurrent_builders_compile_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ranks starting together: one builds under the file lock, the other reuses its result."""
    from transplant.emulate import native

    monkeypatch.setenv("TRANSPLANT_CACHE_DIR", str(tmp_path))
    builds: list[int] = []
    inside = threading.Semaphore(1)
    overlap: list[bool] = []
    barrier = threading.Barrier(2)

    def fake_build(directory: Path) -> str:
        if not inside.acquire(blocking=False):
            overlap.append(True)
        builds.append(1)
        threading.Event().wait(0.3)
        (directory / "transplant_npu_native.so").write_bytes(b"")
        (directory / "BUILD_OK").write_text("ok\n")
        inside.release()
        return "built"

    monkeypatch.setattr(native, "_build", fake_build)
    monkeypatch.setattr(native, "_load_library", lambda path: f"loaded {path.name}")
    results: list[str] = []

    def rank() -> None:
        barrier.wait()
        results.append(native._obtain())

    threads = [threading.Thread(target=rank) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert builds == [1]
    assert overlap == []
    assert sorted(results) == ["built", "loaded transplant_npu_native.so"]
    assert native.build_dir().parent == tmp_path / "native"
    import torch

    assert native.build_dir().name.startswith(torch.__version__.replace("+", "_") + "-")


EMULATOR_PROBE = """
import json, threading
import torch
import transplant.emulate as emu

emu.activate(native=True)
out = {"count": torch.npu.device_count(), "accelerator_count": torch.accelerator.device_count()}

# backward on every device index, including through a module and an optimizer step
grads = []
for index in (1, 3):
    torch.npu.set_device(index)
    model = torch.nn.Linear(4, 2).npu()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(3, 4).npu()).pow(2).sum()
    loss.backward()
    opt.step()
    grads.append([str(model.weight.grad.device), str(model.weight.device), torch.npu.current_device()])
out["backward"] = grads

# the current device is per thread, as on hardware
torch.npu.set_device(2)
other = []
t = threading.Thread(target=lambda: other.append(torch.npu.current_device()))
t.start(); t.join()
out["current"] = [torch.npu.current_device(), other[0]]

# torch.Generator(device='npu') drives npu random ops reproducibly
g = torch.Generator(device="npu")
g.manual_seed(11)
a = torch.randn(4, device="npu", generator=g)
g.manual_seed(11)
b = torch.randn(4, device="npu", generator=g)
out["generator"] = [str(a.device), bool(torch.equal(a.cpu(), b.cpu()))]

s = torch.Stream(device="npu")
out["stream"] = [str(s.device), s.query()]
torch.npu.synchronize()
torch.accelerator.synchronize()
print(json.dumps(out))
"""


@pytest.mark.slow
def test_emulator_with_native_helper_runs_backward_on_any_device() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSPLANT_NATIVE", "TRANSPLANT_NPU_COUNT")}
    result = run_python(EMULATOR_PROBE, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    out = last_json(result.stdout)
    assert out["count"] == 8 and out["accelerator_count"] == 8
    assert out["backward"] == [["npu:1", "npu:1", 1], ["npu:3", "npu:3", 3]]
    assert out["current"] == [2, 0]
    assert out["generator"] == ["npu:2", True]
    assert out["stream"] == ["npu:2", True]


def test_stale_cpp_extension_lock_is_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build killed mid-way leaves cpp_extension's lock file behind; it must not hang the next."""
    from torch.utils import cpp_extension

    from transplant.emulate import native

    (tmp_path / "lock").write_text("")
    seen: dict[str, object] = {}

    def fake_load(**kwargs: object) -> str:
        seen["lock_exists"] = (tmp_path / "lock").exists()
        seen["build_directory"] = kwargs["build_directory"]
        seen["ninja_on_path"] = any(
            (Path(p) / "ninja").exists() for p in os.environ["PATH"].split(os.pathsep) if p
        )
        return "module"

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert native._build(tmp_path) == "module"
    assert seen == {"lock_exists": False, "build_directory": str(tmp_path), "ninja_on_path": True}
    assert (tmp_path / "BUILD_OK").exists()
    assert (tmp_path / "npu_guard.cpp").read_bytes() == native._SOURCE.read_bytes()
