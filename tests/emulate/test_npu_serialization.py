"""Checkpoints: the on-disk format real torch_npu writes, and every map_location form."""

from __future__ import annotations

import io
import zipfile

import pytest

from emulate_helpers import run_python

torch = pytest.importorskip("torch")
nn = torch.nn


def trained_checkpoint() -> bytes:
    torch.manual_seed(0)
    model = nn.Linear(3, 2).npu()
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3).npu()).sum().backward()
    opt.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    return buffer.getvalue()


def test_saved_format_is_plain_torch_with_npu_location_tags(npu) -> None:
    raw = trained_checkpoint()
    archive = zipfile.ZipFile(io.BytesIO(raw))
    pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"npu:0" in pickle_bytes
    assert b"_rebuild_tensor_v2" in pickle_bytes
    assert b"transplant" not in pickle_bytes and b"NpuTensor" not in pickle_bytes


@pytest.mark.parametrize(
    "map_location, device",
    [(None, "npu"), ("npu", "npu"), ("npu:0", "npu"), ("cpu", "cpu"), ({"npu:0": "cpu"}, "cpu"),
     ({"npu:0": "npu:0"}, "npu"), (lambda storage, location: storage, "cpu")],
    ids=["none", "npu", "npu0", "cpu", "dict-cpu", "dict-npu", "callable"],
)
def test_load_with_every_map_location(npu, map_location, device) -> None:
    raw = trained_checkpoint()
    state = torch.load(io.BytesIO(raw), map_location=map_location)
    assert state["model"]["weight"].device.type == device
    assert state["opt"]["state"][0]["exp_avg"].device.type == device
    model = nn.Linear(3, 2).to(device)
    model.load_state_dict(state["model"])
    assert model.weight.device.type == device


def test_load_with_torch_device_map_location(npu) -> None:
    state = torch.load(io.BytesIO(trained_checkpoint()), map_location=torch.device("npu", 0))
    assert state["model"]["bias"].device == torch.device("npu:0")


def test_optimizer_step_stays_on_cpu_as_on_hardware(npu) -> None:
    state = torch.load(io.BytesIO(trained_checkpoint()))
    assert state["opt"]["state"][0]["step"].device.type == "cpu"


def test_views_keep_sharing_storage_and_modules_keep_parameters(npu) -> None:
    t = torch.arange(6.0).npu()
    buffer = io.BytesIO()
    torch.save([t, t[2:]], buffer)
    whole, tail = torch.load(io.BytesIO(buffer.getvalue()))
    whole[3] = 100.0
    assert tail[1].item() == 100.0
    buffer = io.BytesIO()
    torch.save(nn.Linear(2, 2).npu(), buffer)
    module = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    assert isinstance(module.weight, nn.Parameter) and module.weight.device.type == "npu"


def test_crafted_real_format_checkpoint_loads_onto_npu(npu) -> None:
    # What real torch_npu writes: a CPU-identical pickle whose storage location is "npu:0".
    buffer = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buffer)
    raw = _retag(buffer.getvalue())
    state = torch.load(io.BytesIO(raw))
    assert state["w"].device == torch.device("npu:0") and state["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


def _retag(raw: bytes) -> bytes:
    """Rewrite the location tag of a CPU checkpoint to npu:0 (as torch_npu would have written it)."""
    source = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename.endswith("data.pkl"):
                # BINUNICODE 'cpu' (len 3) -> 'npu:0' (len 5)
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x05\x00\x00\x00npu:0")
            target.writestr(info, data)
    return out.getvalue()


def test_invalid_device_index_is_reported(npu) -> None:
    from transplant.emulate import _state

    raw = trained_checkpoint()
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on npu device"):
        torch.load(io.BytesIO(raw), map_location=f"npu:{_state.device_count}")


def test_plain_torch_reads_emulator_checkpoints_only_with_cpu_map_location(npu, tmp_path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(trained_checkpoint())
    code = f"""
import torch
state = torch.load({str(path)!r}, map_location='cpu')
print(state['model']['weight'].device)
try:
    torch.load({str(path)!r})
except RuntimeError as error:
    print('refused:', 'npu:0' in str(error))
"""
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cpu", "refused:", "True"]
