"""Activation in fresh interpreters: contract, pure-Python fallback, refusal, sitecustomize, shim."""

from __future__ import annotations

import json
import textwrap

import pytest

from emulate_helpers import SHIM_DIR, finish, run_python, start_python

pytest.importorskip("torch")


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout
    return json.loads(lines[-1])


CONTRACT = textwrap.dedent("""
    import json, sys, warnings
    import transplant.emulate as emulate
    before = {"torch_imported": "torch" in sys.modules, "active": emulate.is_active()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emulate.activate()
        emulate.activate()  # idempotent
    import torch
    from transplant.emulate import _state
    x = torch.ones(2, device="npu", requires_grad=True)
    (x * 2).sum().backward()
    print(json.dumps({**before, "after": emulate.is_active(), "count": torch.npu.device_count(),
                      "native": _state.native, "grad": x.grad.tolist(), "rng": emulate.rng_mode(),
                      "warnings": [str(w.message) for w in caught if "transplant" in str(w.message)]}))
""")


def test_contract_and_pure_python_fallback() -> None:
    procs = [
        start_python(CONTRACT),
        start_python(CONTRACT, env={"TRANSPLANT_NATIVE": "0", "TRANSPLANT_NPU_RNG": "shared"}),
    ]
    default, fallback = (finish(p) for p in procs)
    assert default.returncode == 0, default.stderr
    assert fallback.returncode == 0, fallback.stderr
    info = last_json(default.stdout)
    assert info["torch_imported"] is False and info["active"] is False and info["after"] is True
    assert info["grad"] == [2.0, 2.0] and info["rng"] == "separate"
    if info["native"]:
        assert info["count"] == 8 and info["warnings"] == []
    info = last_json(fallback.stdout)
    assert info["native"] is False and info["count"] == 1 and info["grad"] == [2.0, 2.0]
    assert info["rng"] == "shared"
    assert len(info["warnings"]) == 1
    assert "pure-Python mode" in info["warnings"][0] and "TRANSPLANT_NATIVE=0" in info["warnings"][0]


def test_native_required_device_count_and_bad_arguments() -> None:
    code = textwrap.dedent("""
        import json, torch
        import transplant.emulate as emulate
        try:
            emulate.activate(native=True, strict_cuda="loud")
        except ValueError as error:
            bad = str(error)
        emulate.activate(device_count=3)
        from transplant.emulate import _state
        print(json.dumps({"bad": bad, "native": _state.native, "count": torch.npu.device_count()}))
    """)
    required = textwrap.dedent("""
        import transplant.emulate as emulate
        emulate.activate(native=True)
    """)
    procs = [start_python(code), start_python(required, env={"TRANSPLANT_NATIVE": "off"})]
    counted, refused = (finish(p) for p in procs)
    assert counted.returncode == 0, counted.stderr
    info = last_json(counted.stdout)
    assert "strict_cuda must be one of" in info["bad"]
    assert info["count"] == (3 if info["native"] else 1)
    assert refused.returncode != 0
    assert "RuntimeError: transplant.emulate: the native npu helper is unavailable" in refused.stderr


def test_refuses_when_the_real_torch_npu_is_installed(tmp_path) -> None:
    fake = tmp_path / "site" / "torch_npu"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise SystemExit('the real torch_npu must not be imported')\n")
    result = run_python("import transplant.emulate as e; e.activate()",
                        cwd=tmp_path / "site")
    assert result.returncode != 0
    assert "the real torch_npu is installed" in result.stderr
    assert str(fake) in result.stderr


def test_activation_from_sitecustomize(tmp_path) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text("import transplant.emulate\ntransplant.emulate.activate()\n")
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import torch
        model = torch.nn.Linear(3, 1).npu()
        loss = model(torch.ones(2, 3, device="npu")).sum()
        loss.backward()
        print(model.weight.grad.device, torch.npu.is_available())
    """))
    result = finish(start_python("", env={"PYTHONPATH": str(boot)}, argv=[str(script)]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["npu:0", "True"]


def test_torch_npu_stand_in(tmp_path) -> None:
    code = textwrap.dedent("""
        import json, torch, torch_npu
        import torch.distributed as dist
        out = {"npu_is_module": torch_npu.npu is torch.npu, "emulated": torch_npu.is_emulated(),
               "amp": torch_npu.npu.amp.GradScaler.__name__, "file": torch_npu.__file__}
        try:
            torch_npu.npu_format_cast(torch.ones(1, device="npu"), 29)
        except NotImplementedError as error:
            out["op"] = str(error)
        try:
            import torch_npu.contrib.transfer_to_npu
        except NotImplementedError as error:
            out["transfer"] = str(error)
        try:
            torch_npu.contrib.transfer_to_npu
        except NotImplementedError as error:
            out["transfer_attr"] = str(error)
        try:
            dist.Backend("hccl")
            out["hccl"] = True
        except ValueError:
            out["hccl"] = False
        print(json.dumps(out))
    """)
    result = run_python(code, env={"PYTHONPATH": f"{SHIM_DIR}"})
    assert result.returncode == 0, result.stderr
    info = last_json(result.stdout)
    assert info["npu_is_module"] and info["emulated"] and info["amp"] == "GradScaler"
    assert info["file"].startswith(str(SHIM_DIR))
    assert "torch_npu.npu_format_cast is an Ascend-specific operator" in info["op"]
    assert "transplant.auto" in info["transfer"] and "transplant.auto" in info["transfer_attr"]
    from pathlib import Path

    if (Path(SHIM_DIR).parent / "distributed.py").exists():
        assert info["hccl"] is True


def test_refuses_an_installed_torch_npu_distribution_hidden_by_the_stand_in(tmp_path) -> None:
    site = tmp_path / "site"
    dist_info = site / "torch_npu-2.13.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch_npu\nVersion: 2.13.0\n")
    result = run_python("import transplant.emulate as e; e.activate()",
                        env={"PYTHONPATH": f"{SHIM_DIR}:{site}"})
    assert result.returncode != 0
    assert "the real torch_npu is installed (torch_npu 2.13.0" in result.stderr
