"""``torch_npu.contrib`` under the emulated NPU: nothing is emulated here (see transfer_to_npu)."""
