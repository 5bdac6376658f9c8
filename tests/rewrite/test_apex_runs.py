"""apex → native rewrites that must still TRAIN: migrated fixtures executed on the emulated NPU.

Runnable fixtures print ``LOSSES [...]``. ``amp_albert_shape`` (ALBERT's apex shape) runs with and without
``--fp16`` and the two runs must agree; the others must produce finite, decreasing losses. apex is not
installed here, so a run also proves that no apex import is left on these paths.
"""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

ROOT = Path(__file__).resolve().parents[2]
APEX = ROOT / "fixtures" / "rules" / "apex"
AMP = ROOT / "fixtures" / "rules" / "amp"
RUNS = {
    "albert_fp32": (APEX / "amp_albert_shape.in.py", []),
    "albert_fp16": (APEX / "amp_albert_shape.in.py", ["--fp16"]),
    "albert_fp16_O2": (APEX / "amp_albert_shape.in.py", ["--fp16", "--fp16_opt_level", "O2"]),
    "static_scale": (APEX / "amp_static_scale.in.py", []),
    "trainer_class": (APEX / "amp_trainer_class.in.py", []),
    "normalization": (APEX / "normalization.in.py", []),
    "optimizers": (APEX / "optimizers.in.py", []),
    "cuda_amp_aliases": (AMP / "cuda_amp_aliases.in.py", []),
}

DRIVER = textwrap.dedent('''
    import contextlib, io, json, runpy, sys, traceback
    results = {}
    for spec in json.loads(sys.argv[1]):
        name, path, argv = spec
        out = io.StringIO()
        sys.argv = [path, *argv]
        try:
            with contextlib.redirect_stdout(out):
                runpy.run_path(path, run_name="__main__")
            line = [l for l in out.getvalue().splitlines() if l.startswith("LOSSES ")][-1]
            results[name] = {"losses": json.loads(line[len("LOSSES "):])}
        except BaseException:
            results[name] = {"error": traceback.format_exc()}
    print("RESULTS " + json.dumps(results))
''')


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from transplant.emulate import runner

    folder = tmp_path_factory.mktemp("apex_runs")
    specs = []
    for name, (source, argv) in RUNS.items():
        result = rewrite_source(source.read_bytes(), source.name, load_ruleset())
        assert result.status is Status.CHANGED, result.reason
        assert b"apex" not in result.new_source.replace(b"(through NVIDIA apex)", b"").split(b'"""')[-1]
        path = folder / f"{name}.py"
        path.write_bytes(result.new_source)
        specs.append([name, str(path), argv])
    driver = folder / "driver.py"
    driver.write_text(DRIVER)
    command = runner.build_command([str(driver), json.dumps(specs)])
    done = subprocess.run(command, env=runner.child_environment(strict_cuda=True), capture_output=True,
                          text=True, timeout=240, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [l for l in done.stdout.splitlines() if l.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS "):])


def _losses(runs: dict, name: str) -> list[float]:
    run = runs[name]
    assert "error" not in run, run.get("error")
    losses = run["losses"]
    assert losses and all(math.isfinite(v) for v in losses), losses
    return losses


@pytest.mark.slow
def test_albert_shape_trains_with_and_without_fp16(runs: dict) -> None:
    fp32 = _losses(runs, "albert_fp32")
    for name in ("albert_fp16", "albert_fp16_O2"):
        fp16 = _losses(runs, name)
        assert len(fp16) == len(fp32)
        assert fp16[-1] < fp16[0]
        # float16 autocast with the same clipping: the trajectories stay close
        assert fp16[-1] == pytest.approx(fp32[-1], rel=0.2, abs=0.05), (fp16, fp32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["static_scale", "trainer_class", "optimizers", "cuda_amp_aliases"])
def test_rewritten_training_runs(runs: dict, name: str) -> None:
    losses = _losses(runs, name)
    assert min(losses[1:]) < losses[0], losses


@pytest.mark.slow
def test_normalization_keeps_apex_defaults(runs: dict) -> None:
    value, rms_eps = _losses(runs, "normalization")
    assert value > 0
    assert rms_eps == pytest.approx(1e-5)  # apex FusedRMSNorm's default, spelled out for torch.nn.RMSNorm
