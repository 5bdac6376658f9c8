"""transplant/data/npu_ops.json is what tools/gen_npu_ops.py reads from the torch_npu 2.13 wheel.

With the wheel on disk (``TRANSPLANT_TORCH_NPU_WHEEL``, or ``pip download --no-deps torch-npu==2.13.0 -d
/tmp/npuwheel``) the file is regenerated and compared byte for byte. CI has no wheel, so the committed
file is also pinned by its checksum: a hand edit fails here, and the only way to change the checksum is to
regenerate from the wheel (whose sha256 the file records) and update it in the same commit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "transplant" / "data" / "npu_ops.json"
WHEEL_NAME = "torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"
# sha256 of the committed npu_ops.json, generated from the wheel whose sha256 it records.
COMMITTED_SHA256 = "1bdb256f7a4e84bb172bd69cf022ca0af504192304bb8efb692121a01a6eda57"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_npu_ops", ROOT / "tools" / "gen_npu_ops.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel() -> Path:
    configured = os.environ.get("TRANSPLANT_TORCH_NPU_WHEEL")
    if configured:
        return Path(configured)
    for folder in ("/tmp/npuwheel", "/tmp/tnpu"):
        if (Path(folder) / WHEEL_NAME).is_file():
            return Path(folder) / WHEEL_NAME
    return Path("/tmp/npuwheel") / WHEEL_NAME


def test_committed_file_is_pinned_and_canonical():
    text = DATA.read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == COMMITTED_SHA256, (
        "npu_ops.json changed: regenerate it with tools/gen_npu_ops.py --wheel and update COMMITTED_SHA256")
    data = json.loads(text)
    assert text == _gen().dumps(data)
    assert data["wheel"]["version"] == "2.13.0" and len(data["wheel"]["sha256"]) == 64


def test_facts_describe_torch_npu_2_13():
    from transplant.analysis.facts import npu_ops

    ops = npu_ops()
    # ~1,100 overloads of ~650 operators (issue: "~1,080 overloads of ~620 operators")
    assert 1000 < len(ops.kernels) < 1300
    assert 550 < len({k.split(".")[0] for k in ops.kernels}) < 750
    for anchor in ("mm", "addmm", "mul.Tensor", "nll_loss_forward", "native_dropout", "lstm.input", "embedding"):
        assert anchor in ops.kernels, anchor
    assert ops.has_kernel("add", "Tensor") and ops.has_kernel("squeeze", "default")
    assert not ops.has_kernel("heaviside", "default") and not ops.has_kernel("cumprod", "default")
    assert "npu_format_cast" in ops.custom
    assert "_fused_adam_" in ops.explicit_cpu and "_masked_softmax" in ops.explicit_cpu
    assert ops.explicit_cpu_message("logit_backward", "default").startswith("CAUTION: The operator aten::logit_backward")
    assert ops.fallback_warning.format(op="aten::x").startswith("CAUTION: The operator 'aten::x' is not currently")
    assert "TORCH_NPU_FALLBACK_CPU_DISABLE=1" in ops.fallback_disabled


def test_kernel_names_are_real_aten_overloads():
    """The YAML reader produced operator names, not fragments: nearly all exist in the installed torch."""
    torch = pytest.importorskip("torch")
    from transplant.analysis.facts import npu_ops

    known = {n[len("aten::"):] for n in torch._C._dispatch_get_all_op_names() if n.startswith("aten::")}
    known |= {n.split(".")[0] for n in known}
    kernels = npu_ops().kernels
    missing = sorted(k for k in kernels if k not in known)
    # torch_npu registers a few overloads torch 2.13 does not have (npu_* in supported:, renamed ops)
    assert len(missing) < 0.1 * len(kernels), missing


def test_yaml_reader_on_both_shapes():
    text = (
        "backend: NPU\n"
        "supported:\n"
        "  - add.Tensor\n"
        "  - func: clone\n"
        "    op_api: True\n"
        "- func: mm(Tensor self, Tensor mat2) -> Tensor\n"
        "  impl_ns: op_api\n"
        "custom:\n"
        "  - func: npu_x(Tensor self) -> Tensor\n"
        "    dispatch:\n"
        "      CompositeExplicitAutograd: npu_x\n"
    )
    sections = _gen().read_yaml_sections(text)
    assert sections == {"supported": ["add.Tensor", "clone", "mm"], "custom": ["npu_x"]}


def test_library_strings():
    data = b"\x00\x01CAUTION: The operator '\x00ab\x00' would execute its main computation on CPU through \x7f"
    assert _gen().library_strings(data) == [
        "CAUTION: The operator '", "' would execute its main computation on CPU through "]


def test_regenerates_identically_from_the_wheel():
    wheel = _wheel()
    if not wheel.is_file():
        pytest.skip(f"torch_npu wheel not found at {wheel} (set TRANSPLANT_TORCH_NPU_WHEEL); checksum test ran")
    assert _gen().main(["--wheel", str(wheel), "--check"]) == 0
