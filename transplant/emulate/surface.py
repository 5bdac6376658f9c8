"""The whole public ``torch.npu`` surface of torch_npu 2.13, on the emulated device module.

:mod:`transplant.emulate.device_module` emulates what training code calls. Every other name the real
``torch.npu`` has (``torch_npu.npu`` and its submodules, read from ``transplant/data/torch_npu_names.json``,
which ``tools/gen_api_facts.py`` generates from the wheel) is filled in here, so code using it gets
either a working emulation or one clear error naming the name — never an ``AttributeError`` from
somewhere deep inside:

* submodules (``torch.npu.memory``, ``torch.npu.random``, ``torch.npu.amp.autocast_mode``, ...) exist and
  are importable; their members are the device module's emulations where it has one;
* a function or class without an emulation fails when called with :class:`NotEmulatedError`
  (``not emulated: torch.npu.NPUGraph ...``); a plain attribute raises :class:`NotEmulatedAttributeError`
  (an ``AttributeError``, so ``hasattr``/``getattr(..., default)`` probing keeps working).
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any, Callable, Dict

from transplant._paths import data_dir

_TIP = "transplant's emulated NPU does not provide it; it runs on a real Ascend NPU with torch_npu"
# Private names of the real modules that CUDA code reaches through the rename rules (rules/torch_cuda.json).
_PRIVATE_EMULATED = {"torch_npu.npu.memory": ("_record_memory_history", "_snapshot", "_dump_snapshot")}


class NotEmulatedError(NotImplementedError):
    """A torch_npu API that exists on real hardware but not on the emulated NPU."""


class NotEmulatedAttributeError(AttributeError):
    """A torch_npu attribute that exists on real hardware but not on the emulated NPU."""


def _message(qualname: str) -> str:
    return f"not emulated: {qualname} ({_TIP})"


def _function_stub(qualname: str) -> Callable:
    def not_emulated(*args: Any, **kwargs: Any) -> Any:
        raise NotEmulatedError(_message(qualname))

    not_emulated.__name__ = qualname.rpartition(".")[2]
    not_emulated.__qualname__ = not_emulated.__name__
    not_emulated.__doc__ = f"``{qualname}``: {_message(qualname)}."
    return not_emulated


def _class_stub(qualname: str) -> type:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        raise NotEmulatedError(_message(qualname))

    owner, _, name = qualname.rpartition(".")
    return type(name, (), {"__init__": __init__, "__module__": owner, "__doc__": f"``{qualname}``: {_message(qualname)}."})


def _attribute_getter(module: types.ModuleType, missing: Dict[str, str]) -> Callable:
    previous = module.__dict__.get("__getattr__")

    def __getattr__(name: str) -> Any:
        if name in missing:
            raise NotEmulatedAttributeError(_message(missing[name]))
        if previous is not None:
            return previous(name)
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    return __getattr__


def load_facts() -> Dict[str, Dict[str, str]]:
    """``torch_npu.npu[.sub]`` -> {public name: kind}, from the generated data file."""
    with open(data_dir() / "torch_npu_names.json", encoding="utf-8") as handle:
        modules = json.load(handle)["modules"]
    facts = {}
    for module_name, entry in modules.items():
        if module_name == "torch_npu.npu" or module_name.startswith("torch_npu.npu."):
            names = dict(entry.get("names", {}))
            for private in _PRIVATE_EMULATED.get(module_name, ()):
                names.setdefault(private, "function")
            facts[module_name] = names
    return facts


def _emulated_name(module_name: str) -> str:
    return "torch.npu" + module_name[len("torch_npu.npu"):]


def install(device_module: types.ModuleType, amp_module: types.ModuleType) -> Dict[str, str]:
    """Fill ``device_module`` (``torch.npu``) and its submodules with every name of the real surface.

    Returns qualified name -> ``"emulated"`` | ``"stub"`` | ``"attribute"`` (tests and docs read it).
    """
    facts = load_facts()
    outcome: Dict[str, str] = {}
    modules: Dict[str, types.ModuleType] = {"torch.npu": device_module, "torch.npu.amp": amp_module,
                                            "torch.npu.utils": device_module.utils}
    # Parents before children, so `torch.npu.amp.autocast_mode` hangs off `torch.npu.amp`.
    for module_name in sorted(facts, key=lambda n: n.count(".")):
        qualname = _emulated_name(module_name)
        module = modules.get(qualname)
        if module is None:
            module = sys.modules.get(qualname)
            if module is None:
                module = types.ModuleType(qualname, f"``{qualname}`` of the emulated NPU (transplant.emulate).")
            modules[qualname] = module
        parent_name, _, leaf = qualname.rpartition(".")
        parent = modules.get(parent_name)
        if parent is not None and not isinstance(getattr(parent, leaf, None), types.ModuleType):
            setattr(parent, leaf, module)
        sys.modules.setdefault(qualname, module)
    for module_name, names in facts.items():
        qualname = _emulated_name(module_name)
        module = modules[qualname]
        missing: Dict[str, str] = {}
        for name, kind in sorted(names.items()):
            full = f"{qualname}.{name}"
            if name in vars(module):
                outcome[full] = "emulated"
                continue
            if kind == "module":
                outcome[full] = "emulated" if full in modules else "attribute"
                continue
            source = _source(module, device_module, amp_module, name)
            if source is not None:
                setattr(module, name, source)
                outcome[full] = "emulated"
            elif kind in ("function", "runtime", "npu_op"):
                setattr(module, name, _function_stub(full))
                outcome[full] = "stub"
            elif kind == "class":
                setattr(module, name, _class_stub(full))
                outcome[full] = "stub"
            else:
                missing[name] = full
                outcome[full] = "attribute"
        if missing:
            module.__getattr__ = _attribute_getter(module, missing)  # type: ignore[attr-defined]
    return outcome


def _source(module: types.ModuleType, device_module: types.ModuleType, amp_module: types.ModuleType, name: str):
    """The emulation a submodule member stands for: the device module's (or the AMP module's) own."""
    for candidate in (device_module, amp_module):
        if candidate is module:
            continue
        value = vars(candidate).get(name)
        if value is not None and not isinstance(value, types.ModuleType):
            return value
    return None
