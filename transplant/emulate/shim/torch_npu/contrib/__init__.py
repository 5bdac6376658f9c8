"""``torch_npu.contrib`` under the emulated NPU: a placeholder, nothing in it is emulated."""

_TRANSFER_HINT = (
    "torch_npu.contrib.transfer_to_npu is not available on the emulated NPU; use "
    "`import transplant.auto` for the same automatic CUDA-to-NPU redirection."
)


def __getattr__(name: str):
    if name == "transfer_to_npu":
        raise NotImplementedError(_TRANSFER_HINT)
    raise NotImplementedError(f"torch_npu.contrib.{name} is not emulated by transplant.")
