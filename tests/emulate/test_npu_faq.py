"""Huawei's msFmkTransplt FAQ (runtime failures after an offline migration), item by item, on the emulated NPU.

Items the emulator reproduces are asserted here; float64 ("Unsupport data type Double") and int64 ``Muls`` are
findings of ``transplant run --op-report`` (tests/analysis/test_op_report_runs.py); the rest are listed in
docs/analysis.md with the reason they are not reproduced.
"""

from __future__ import annotations

import io

import pytest


def test_cuda_checkpoint_needs_map_location(npu, monkeypatch):
    import torch
    import torch.serialization as serialization

    buffer = io.BytesIO()
    monkeypatch.setattr(serialization, "location_tag", lambda storage: "cuda:0")  # as saved on a GPU
    torch.save(torch.ones(2), buffer)
    monkeypatch.undo()
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA device"):
        torch.load(buffer)
    buffer.seek(0)
    assert torch.load(buffer, map_location="npu").device.type == "npu"


def test_data_index_on_a_scalar_loss_must_become_item(npu):
    import torch

    loss = torch.tensor(1.5).npu()
    with pytest.raises(IndexError, match="invalid index of a 0-dim tensor. Use `tensor.item\\(\\)`"):
        loss.data[0]
    assert loss.item() == 1.5


def test_tensor_left_on_the_cpu_fails_like_the_device(npu):
    import torch

    weight = torch.rand(3, 3).npu()
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device, but found at least two "
                                           "devices, npu:0 and cpu!"):
        weight @ torch.rand(3, 3)


def test_zero_dim_cpu_tensors_may_mix_as_in_torch(npu):
    """FAQ: 'segmentation fault comparing 0-dim tensors across devices' (old torch_npu). torch allows a CPU
    0-dim tensor next to a device tensor and so does the emulator; the crash is not reproduced."""
    import torch

    assert bool(torch.tensor(1.0).npu() > torch.tensor(0.5))
