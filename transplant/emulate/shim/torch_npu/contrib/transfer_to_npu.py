"""``import torch_npu.contrib.transfer_to_npu`` is not emulated: point to transplant.auto instead."""

raise NotImplementedError(
    "torch_npu.contrib.transfer_to_npu is not available on the emulated NPU; use "
    "`import transplant.auto` for the same automatic CUDA-to-NPU redirection."
)
