"""Device-argument conversion: CUDA spellings to NPU ones, only for values that *are* devices.

transfer_to_npu replaces the substring ``cuda`` in every positional string of a wrapped call, so a
checkpoint path such as ``runs/cuda_exp/model.pt`` is silently changed. Here a string is converted
only when it is exactly a device spec (``'cuda'``, ``'cuda:N'``) and it sits in a device-typed
parameter; the callers decide which parameters those are.
"""

from __future__ import annotations

import torch

_DEVICE = torch.device


def npu_string(value: str) -> str | None:
    """``'cuda'`` -> ``'npu'``, ``'cuda:1'`` -> ``'npu:1'``; anything else -> None."""
    if value == "cuda":
        return "npu"
    if value.startswith("cuda:") and value[5:].isdigit():
        return "npu:" + value[5:]
    return None


def npu_device(value):
    """The NPU equivalent of a CUDA device given as str or ``torch.device``; None if not CUDA."""
    cls = value.__class__
    if cls is str:
        return npu_string(value)
    if cls is _DEVICE:
        if value.type != "cuda":
            return None
        return _DEVICE("npu", value.index) if value.index is not None else _DEVICE("npu")
    if isinstance(value, str):  # str subclasses, e.g. enum values
        return npu_string(str(value))
    return None


def npu_device_or_index(value):
    """Like :func:`npu_device`, but a bare int (not bool) is an accelerator index -> ``npu:N``."""
    if value.__class__ is int:
        return _DEVICE("npu", value)
    return npu_device(value)


_MISSING = object()
_CONVERTED: dict = {}


def npu_device_cached(value):
    """:func:`npu_device_or_index` for the hot path: str / torch.device / int answers are memoised
    (a handful of distinct device values per program), everything else is computed."""
    cls = value.__class__
    if cls is str or cls is _DEVICE or cls is int:
        new = _CONVERTED.get(value, _MISSING)
        if new is _MISSING:
            new = npu_device_or_index(value)
            if len(_CONVERTED) < 4096:
                _CONVERTED[value] = new
        return new
    return npu_device_or_index(value)


def npu_location(value):
    """For ``map_location``: str / device / int / dict; None when nothing needs changing."""
    if isinstance(value, dict):
        return None  # handled by CudaLocations, which must keep the user's keys
    return npu_device_or_index(value)


def npu_backend(value):
    """``'nccl'`` -> ``'hccl'``; ``'cuda:nccl,cpu:gloo'`` -> ``'npu:hccl,cpu:gloo'``; else None.

    Token-wise, never by substring: ``gloo`` and custom backends pass through untouched.
    """
    if not isinstance(value, str):
        return None
    parts = []
    changed = False
    for token in str(value).split(","):
        device, sep, backend = token.rpartition(":")
        stripped = backend.strip()
        if stripped.lower() == "nccl":
            backend = backend.replace(stripped, "hccl")
            changed = True
        if sep and device.strip() == "cuda":
            device = device.replace("cuda", "npu")
            changed = True
        parts.append(f"{device}{sep}{backend}")
    return ",".join(parts) if changed else None


class CudaLocations(dict):
    """A ``map_location`` dict that also sends CUDA-tagged storages to the NPU.

    torch calls ``map_location.get(tag, tag)`` for every storage. The user's own entries win (their
    values converted to NPU); an unmatched ``cuda:N`` tag becomes ``npu:N`` instead of failing with
    "Attempting to deserialize object on a CUDA device". ``on_cuda`` is told about each remap.
    """

    def __init__(self, user: dict | None, on_cuda) -> None:
        converted = {}
        for key, target in (user or {}).items():
            new = npu_device(target)
            converted[key] = str(new) if new is not None else target
        # A checkpoint written on the NPU carries npu tags: the user's cuda keys apply to them too.
        for key in list(converted):
            alias = npu_string(key) if isinstance(key, str) else None
            if alias is not None:
                converted.setdefault(alias, converted[key])
        super().__init__(converted)
        self._on_cuda = on_cuda

    def get(self, location, default=None):
        if dict.__contains__(self, location):
            return dict.__getitem__(self, location)
        new = npu_string(location) if isinstance(location, str) else None
        if new is not None:
            self._on_cuda(location, new)
            return new
        return default
