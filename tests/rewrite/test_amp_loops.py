"""AMP insertion (--amp) on the loop-shape fixtures, EXECUTED on the emulated NPU.

Each ``fixtures/amp_loops/*.py`` is a small CUDA training script of one loop shape. It is migrated three
times (no AMP, ``--amp fp16``, ``--amp bf16``) and all migrated scripts run in one emulator subprocess. The
mixed-precision runs must train: finite losses, the loss goes down, and the last loss stays close to the
float32 run's.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

ROOT = Path(__file__).resolve().parents[2]
LOOPS = ROOT / "fixtures" / "amp_loops"
SHAPES = sorted(p.stem for p in LOOPS.glob("*.py"))
MODES = (None, "fp16", "bf16")

DRIVER = textwrap.dedent('''
    import contextlib, io, json, runpy, sys, traceback
    results = {}
    for path in sys.argv[1:]:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(path, run_name="__main__")
            line = [l for l in out.getvalue().splitlines() if l.startswith("LOSSES ")][-1]
            results[path] = {"losses": json.loads(line[len("LOSSES "):])}
        except BaseException:
            results[path] = {"error": traceback.format_exc()}
    print("RESULTS " + json.dumps(results))
''')


def _migrate(shape: str, mode: str | None) -> tuple[bytes, object]:
    source = (LOOPS / f"{shape}.py").read_bytes()
    result = rewrite_source(source, f"{shape}.py", load_ruleset(options={"amp": mode}))
    assert result.status is Status.CHANGED, (shape, mode, result.reason)
    return result.new_source, result


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str | None], Path]:
    folder = tmp_path_factory.mktemp("amp_loops")
    paths = {}
    for shape in SHAPES:
        for mode in MODES:
            new_source, _ = _migrate(shape, mode)
            path = folder / f"{shape}__{mode or 'fp32'}.py"
            path.write_bytes(new_source)
            paths[(shape, mode)] = path
    return paths


@pytest.fixture(scope="module")
def runs(migrated: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from transplant.emulate import runner

    driver = tmp_path_factory.mktemp("driver") / "driver.py"
    driver.write_text(DRIVER)
    command = runner.build_command([str(driver), *(str(p) for p in migrated.values())])
    done = subprocess.run(command, env=runner.child_environment(strict_cuda=True), capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULTS ")][-1]
    by_path = json.loads(line[len("RESULTS "):])
    return {key: by_path[str(path)] for key, path in migrated.items()}


def test_every_shape_has_a_fixture() -> None:
    assert set(SHAPES) == {"plain_step", "grad_accumulation", "grad_clipping", "two_optimizers",
                           "ema_after_step", "zero_grad_after", "trainer_method"}


@pytest.mark.parametrize("shape", SHAPES)
def test_fp16_inserts_autocast_and_one_scaler(shape: str) -> None:
    new_source, result = _migrate(shape, "fp16")
    text = new_source.decode()
    assert "torch.autocast('npu', dtype=torch.float16)" in text
    assert text.count("GradScaler('npu')") == 1
    assert ".scale(" in text and "scaler.step(" in text and "scaler.update()" in text
    # every optimizer step statement goes through the scaler
    assert not re.search(r"^\s*[\w.]*optim[\w.]*\.step\(\)", text, re.M | re.I)
    assert not result.unsupported
    assert {c.rule for c in result.changes} >= {"TP430"}
    compile(text, shape, "exec")


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_inserts_autocast_without_scaler(shape: str) -> None:
    new_source, _ = _migrate(shape, "bf16")
    text = new_source.decode()
    assert "torch.autocast('npu', dtype=torch.bfloat16)" in text
    assert "GradScaler" not in text and "scaler" not in text


@pytest.mark.parametrize("mode", ["fp16", "bf16"])
@pytest.mark.parametrize("shape", SHAPES)
def test_second_run_changes_nothing(shape: str, mode: str) -> None:
    first, _ = _migrate(shape, mode)
    again = rewrite_source(first, f"{shape}.py", load_ruleset(options={"amp": mode}))
    assert again.status is Status.UNCHANGED, again.changes
    assert not again.changes and not again.unsupported


def test_clipping_unscales_first() -> None:
    text = _migrate("grad_clipping", "fp16")[0].decode()
    assert text.index("scaler.unscale_(optimizer)") < text.index("clip_grad_norm_") < text.index("scaler.step(")


def test_trainer_scaler_lives_next_to_the_optimizer() -> None:
    text = _migrate("trainer_method", "fp16")[0].decode()
    init = text[text.index("def __init__"):text.index("def train_step")]
    assert "self.scaler = torch.amp.GradScaler('npu')" in init
    assert "self.scaler.step(self.optimizer)" in text


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_mixed_precision_trains_like_fp32(shape: str, runs: dict) -> None:
    baseline = runs[(shape, None)]
    assert "error" not in baseline, baseline.get("error")
    fp32 = baseline["losses"]
    assert all(math.isfinite(v) for v in fp32) and fp32[-1] < fp32[0]
    for mode, rtol in (("fp16", 0.2), ("bf16", 0.25)):
        run = runs[(shape, mode)]
        assert "error" not in run, f"{mode}: {run.get('error')}"
        losses = run["losses"]
        assert len(losses) == len(fp32)
        assert all(math.isfinite(v) for v in losses), (mode, losses)
        assert min(losses[1:]) < losses[0], (mode, losses)  # it trains
        assert losses[-1] == pytest.approx(fp32[-1], rel=rtol, abs=0.02), (mode, losses, fp32)


def test_ema_device_argument_migrates_and_stays_outside_autocast() -> None:
    text = _migrate("ema_after_step", "fp16")[0].decode()
    assert 'ModelEmaV2(model, decay=0.9, device="npu")' in text
    loop = text[text.index("for step in range(8):"):]
    assert loop.index("with torch.autocast") < loop.index("optimizer.zero_grad()") < loop.index(
        "scaler.scale(loss).backward()") < loop.index("scaler.update()") < loop.index("model_ema.update(model)")
