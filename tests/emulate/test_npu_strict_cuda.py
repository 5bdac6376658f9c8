"""Strict-CUDA mode: silent CUDA fallbacks become errors (or warnings) naming the user's line."""

from __future__ import annotations

import warnings

import pytest

from emulate_helpers import run_python

torch = pytest.importorskip("torch")


@pytest.fixture
def strict(npu):
    import transplant.emulate as emulate

    yield emulate.strict_cuda
    emulate.strict_cuda(None)


def _line_of(fn) -> int:
    return fn.__code__.co_firstlineno


SILENT_FALLBACKS = [
    ("torch.cuda.is_available()", lambda: torch.cuda.is_available()),
    ("torch.cuda.device_count()", lambda: torch.cuda.device_count()),
    ("torch.cuda.manual_seed()", lambda: torch.cuda.manual_seed(0)),
    ("torch.cuda.manual_seed_all()", lambda: torch.cuda.manual_seed_all(0)),
    ("torch.cuda.memory_allocated()", lambda: torch.cuda.memory_allocated()),
    ("torch.cuda.empty_cache()", lambda: torch.cuda.empty_cache()),
    ("torch.autocast('cuda')", lambda: torch.autocast("cuda")),
    ("torch.autocast('cuda')", lambda: torch.autocast(device_type="cuda", dtype=torch.float16)),
    ("torch.amp.GradScaler('cuda')", lambda: torch.amp.GradScaler("cuda")),
    ("torch.amp.GradScaler('cuda')", lambda: torch.amp.GradScaler()),
    ("torch.cuda.amp.GradScaler()", lambda: torch.cuda.amp.GradScaler()),
    ("torch.cuda.amp.autocast()", lambda: torch.cuda.amp.autocast()),
]


@pytest.mark.parametrize("label, call", SILENT_FALLBACKS, ids=[f"{i}-{s[0]}" for i, s in enumerate(SILENT_FALLBACKS)])
def test_raise_mode_names_the_user_line(strict, label, call) -> None:
    from transplant.emulate.strict import LeftoverCudaError

    strict("raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.cuda.amp.* deprecation
        with pytest.raises(LeftoverCudaError) as info:
            call()
    message = str(info.value)
    assert f"leftover CUDA usage: {label} at {__file__}:{_line_of(call)}" in message


def test_warn_mode_warns_at_the_user_line(strict) -> None:
    from transplant.emulate.strict import LeftoverCudaWarning

    strict("warn")
    with pytest.warns(LeftoverCudaWarning, match="torch.cuda.is_available") as record:
        assert torch.cuda.is_available() is False  # still returns the CUDA-less answer
    assert record[0].filename == __file__


def test_calls_made_by_torch_itself_are_ignored(strict) -> None:
    strict("raise")
    torch.manual_seed(0)  # calls torch.cuda.manual_seed_all internally
    torch.seed()
    with torch.autocast("npu", dtype=torch.bfloat16):  # npu is fine
        pass
    torch.amp.GradScaler("npu")
    torch.npu.amp.GradScaler()


def test_off_by_default_and_validated(strict) -> None:
    assert torch.cuda.is_available() is False
    with pytest.raises(ValueError, match="strict_cuda must be one of"):
        strict("loud")


def test_env_variable_enables_strict_mode_at_activation(tmp_path) -> None:
    script = tmp_path / "train.py"
    script.write_text("import transplant.emulate\ntransplant.emulate.activate()\nimport torch\n\n"
                      "use_gpu = torch.cuda.is_available()\n")
    result = run_python(f"import runpy; runpy.run_path({str(script)!r})", env={"TRANSPLANT_STRICT_CUDA": "raise"})
    assert result.returncode != 0
    assert f"leftover CUDA usage: torch.cuda.is_available() at {script}:5" in result.stderr
