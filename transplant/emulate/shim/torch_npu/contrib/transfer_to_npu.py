"""``import torch_npu.contrib.transfer_to_npu`` is not emulated: point to transplant.auto instead."""

from torch_npu.contrib import _TRANSFER_HINT

raise NotImplementedError(_TRANSFER_HINT)
