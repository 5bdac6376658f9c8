"""transplant: move PyTorch CUDA training code onto Huawei Ascend NPUs (torch_npu)."""

__version__ = "0.1.0"
