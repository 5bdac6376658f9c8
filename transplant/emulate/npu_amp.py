"""``torch.npu.amp``: torch_npu's AMP aliases (``autocast``, ``GradScaler``) for the emulated NPU."""

from __future__ import annotations

from typing import Any, Optional

import torch

__all__ = ["autocast", "GradScaler", "custom_fwd", "custom_bwd"]


class autocast(torch.amp.autocast_mode.autocast):
    """``torch.npu.amp.autocast(...)`` = ``torch.autocast('npu', ...)`` (default dtype float16)."""

    def __init__(
        self,
        enabled: bool = True,
        dtype: torch.dtype = torch.float16,
        cache_enabled: bool = True,
    ) -> None:
        super().__init__("npu", enabled=enabled, dtype=dtype, cache_enabled=cache_enabled)


class GradScaler(torch.amp.GradScaler):
    """``torch.npu.amp.GradScaler(...)`` = ``torch.amp.GradScaler('npu', ...)``."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
        **kwargs: Any,
    ) -> None:
        # torch_npu accepts extra knobs (e.g. dynamic=True); they have no emulated effect.
        super().__init__(
            "npu",
            init_scale=init_scale,
            growth_factor=growth_factor,
            backoff_factor=backoff_factor,
            growth_interval=growth_interval,
            enabled=enabled,
        )


def custom_fwd(fwd: Optional[Any] = None, *, cast_inputs: Optional[torch.dtype] = None):
    """``torch.npu.amp.custom_fwd`` = ``torch.amp.custom_fwd(device_type='npu')``."""
    return torch.amp.custom_fwd(fwd, device_type="npu", cast_inputs=cast_inputs)


def custom_bwd(bwd: Optional[Any] = None):
    """``torch.npu.amp.custom_bwd`` = ``torch.amp.custom_bwd(device_type='npu')``."""
    return torch.amp.custom_bwd(bwd, device_type="npu")


def amp_definitely_not_available() -> bool:
    """False: AMP works on the emulated NPU."""
    return False
