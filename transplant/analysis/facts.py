"""The facts the analysis is grounded in, loaded once per process and never modified.

* :func:`npu_ops`: what torch_npu 2.13 runs on the NPU (``transplant/data/npu_ops.json``, generated from
  the wheel by ``tools/gen_npu_ops.py``).
* :func:`huawei_lists`: Huawei's msFmkTransplt API lists for torch 2.8 (``transplant/data/msfmktransplt/``,
  Mulan PSL v2, licence beside them).

Neither needs torch: the static analysis runs in offline migrations too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, FrozenSet, Mapping, Tuple

_DATA = Path(__file__).resolve().parent.parent / "data"
HUAWEI_DIR = _DATA / "msfmktransplt"
#: The torch version Huawei's lists describe, and the file names, quoted in every row they produce.
HUAWEI_TORCH = "2.8"
UNSUPPORTED_LIST = "op_list_2_8.json"
SUPPORTED_LIST = "supported_op_2_8.json"
ADVICE_LIST = "precision_performance_advice.json"


@dataclass(frozen=True)
class NpuOps:
    """torch_npu's operator registry, as read from its wheel."""

    version: str
    kernels: FrozenSet[str]                     # "add.Tensor", "squeeze" (default overload) ...
    custom: FrozenSet[str]
    explicit_cpu: Mapping[str, Tuple[str, ...]]  # op -> torch_npu's own CAUTION message(s)
    fallback_warning: str                       # template with {op}
    fallback_disabled: str                      # template with {op} and {through}
    fallback_kinds: Mapping[str, str]           # "dispatcher" / "explicit" -> torch_npu's wording

    def has_kernel(self, name: str, overload: str) -> bool:
        """True if torch_npu registers an NPU kernel for ``aten::name.overload`` (``""``: default)."""
        return (f"{name}.{overload}" if overload and overload != "default" else name) in self.kernels

    def explicit_cpu_message(self, name: str, overload: str) -> str:
        """torch_npu's message if its kernel for this overload routes to the CPU, else ``""``."""
        key = f"{name}.{overload}" if overload and overload != "default" else name
        messages = self.explicit_cpu.get(key) or self.explicit_cpu.get(name) or ()
        return messages[0] if messages else ""


@lru_cache(maxsize=1)
def npu_ops() -> NpuOps:
    """The committed torch_npu operator facts."""
    data = json.loads((_DATA / "npu_ops.json").read_text(encoding="utf-8"))
    return NpuOps(
        version=data["wheel"]["version"],
        kernels=frozenset(data["npu_kernels"]),
        custom=frozenset(data["custom_ops"]),
        explicit_cpu={op: tuple(msgs) for op, msgs in data["explicit_cpu_fallback"].items()},
        fallback_warning=data["messages"]["fallback_warning"],
        fallback_disabled=data["messages"]["fallback_disabled"],
        fallback_kinds=dict(data["messages"]["fallback_kinds"]),
    )


@dataclass(frozen=True)
class HuaweiLists:
    """msFmkTransplt's resource files for torch 2.8."""

    unsupported: FrozenSet[str]
    supported: FrozenSet[str]
    precision: Mapping[str, str]
    performance: Mapping[str, str]
    parameters: Mapping[str, Mapping[str, dict]]   # api -> parameter -> rule
    configuration: Mapping[str, str]


@lru_cache(maxsize=1)
def huawei_lists() -> HuaweiLists:
    """Huawei's lists, loaded once."""

    def load(name: str) -> dict:
        return json.loads((HUAWEI_DIR / name).read_text(encoding="utf-8"))

    advice = load(ADVICE_LIST)
    params: Dict[str, Mapping[str, dict]] = {
        api: entry.get("parameter", {}) for api, entry in advice.get("api_parameters_performance_dict", {}).items()
    }
    return HuaweiLists(
        unsupported=frozenset(load(UNSUPPORTED_LIST)["op_list"]),
        supported=frozenset(load(SUPPORTED_LIST)["op_list"]),
        precision=dict(advice.get("api_precision_dict", {})),
        performance=dict(advice.get("api_performance_dict", {})),
        parameters=params,
        configuration=dict(advice.get("performance_configuration_dict", {})),
    )
