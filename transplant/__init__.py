"""transplant: move PyTorch CUDA training code onto Huawei Ascend NPUs (torch_npu)."""

__version__ = "0.1.0"
# The distribution is "transplant-npu"; an unrelated project ("transplant" on the public index, a Matlab
# bridge) also imports as `transplant`. The command line checks this marker to name a clash.
__distribution__ = "transplant-npu"
