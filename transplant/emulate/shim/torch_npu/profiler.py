"""``torch_npu.profiler`` on the emulated NPU: torch's profiler recording the CPU side.

The emulated NPU computes on the CPU, so "NPU activity" is CPU work: ``ProfilerActivity.NPU`` is
recorded as CPU activity. ``profile``, ``schedule`` and ``tensorboard_trace_handler`` are torch's;
``_ExperimentalConfig`` accepts torch_npu's settings (profiler_level, aic_metrics, ...) and ignores
them (they select Ascend hardware counters). Traces are torch's format, not torch_npu's.
"""

from __future__ import annotations

import enum
from typing import Any, Iterable, Optional

import torch.profiler as _torch_profiler

__all__ = ["profile", "ProfilerActivity", "schedule", "tensorboard_trace_handler", "_ExperimentalConfig",
           "supported_activities"]


class ProfilerActivity(enum.Enum):
    """torch_npu's activities: CPU and NPU."""

    CPU = "CPU"
    NPU = "NPU"


def supported_activities() -> set:
    """The activities the emulated NPU can record (both, as CPU work)."""
    return {ProfilerActivity.CPU, ProfilerActivity.NPU}


class _ExperimentalConfig:
    """Accepts torch_npu's experimental settings; the emulator has no hardware counters to select."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings


schedule = _torch_profiler.schedule
tensorboard_trace_handler = _torch_profiler.tensorboard_trace_handler


def _torch_activities(activities: Optional[Iterable[Any]]) -> Optional[list]:
    if activities is None:
        return None
    return [_torch_profiler.ProfilerActivity.CPU for _ in list(activities)[:1]] or []


class profile(_torch_profiler.profile):
    """``torch_npu.profiler.profile``: torch's profiler over the CPU, where the emulated NPU computes."""

    def __init__(self, *, activities: Optional[Iterable[Any]] = None, experimental_config: Any = None,
                 **kwargs: Any) -> None:
        if experimental_config is not None and not isinstance(experimental_config, _ExperimentalConfig):
            raise TypeError("experimental_config must be torch_npu.profiler._ExperimentalConfig")
        super().__init__(activities=_torch_activities(activities), **kwargs)
