"""transplant.verify's comparison and report on recorded steps (no process is started here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from transplant.verify import report
from transplant.verify.compare import (
    DIVERGED,
    NOT_ON_NPU,
    NOTHING_TO_COMPARE,
    PARITY,
    RANKS_ONLY,
    RUN_FAILED,
    compare,
    output_difference,
)
from transplant.verify.runs import RunResult, RunSpec


def group(norm: float, sha: str = "a", device: str = "npu:0", tensors: int = 2) -> dict:
    return {
        "sha256": sha, "sum": norm / 2, "abs_sum": norm, "norm": norm, "numel": 10, "devices": [device],
        "tensors": [{"shape": [5], "sha256": f"{sha}{i}", "norm": norm / tensors, "sum": 0.0} for i in range(tensors)],
    }


def step(n: int, loss: float, norm: float = 1.0, sha: str = "a", device: str = "npu:0") -> dict:
    return {"kind": "step", "step": n, "loss": loss, "losses": [loss], "optimizer": 0,
            "optimizer_class": "SGD", "groups": [group(norm, sha, device)]}


def result(side: str, steps: list[dict], *, returncode: int = 0, stdout: str = "", stderr: str = "",
           cwd: str = "/project", ranks: dict[int, list[dict]] | None = None) -> RunResult:
    spec = RunSpec(side, f"{side} (x)", Path(cwd), ["python", "train.py"], {}, Path("/tmp/none"))
    records = ranks if ranks is not None else {0: steps}
    return RunResult(spec, returncode, stdout, stderr, 1.0, records=records)


def cpu(steps: list[dict]) -> list[dict]:
    for s in steps:
        for g in s["groups"]:
            g["devices"] = ["cpu"]
    return steps


def test_bit_identical_runs_are_parity() -> None:
    a = result("original", cpu([step(1, 0.5), step(2, 0.4)]))
    b = result("migrated", [step(1, 0.5), step(2, 0.4)])
    comparison = compare(a, b, 0.0)
    assert comparison.status == PARITY and comparison.passed and comparison.exact
    assert [row.ok for row in comparison.rows] == [True, True]
    assert "bit-identical" in report.summary_lines(comparison, a, b)[0]


def test_first_diverging_step_and_group_are_named() -> None:
    a = result("original", cpu([step(1, 0.5), step(2, 0.4, sha="b"), step(3, 0.3, sha="c")]))
    b = result("migrated", [step(1, 0.5), step(2, 0.4, norm=2.0, sha="x"), step(3, 0.9, sha="y")])
    comparison = compare(a, b, 0.0)
    assert comparison.status == DIVERGED and not comparison.passed
    d = comparison.divergence
    assert d is not None and (d.step, d.what, d.group, d.tensor) == (2, "parameters", 0, 0)
    assert "parameter group 0, tensor #0" in d.detail
    assert [row.ok for row in comparison.rows] == [True, False, False]


def test_loss_divergence_before_parameters() -> None:
    a = result("original", cpu([step(1, 0.5)]))
    b = result("migrated", [step(1, 0.5000001)])
    comparison = compare(a, b, 0.0)
    assert comparison.divergence is not None and comparison.divergence.what == "loss"


def test_tolerance_accepts_small_differences_but_not_exactness() -> None:
    a = result("original", cpu([step(1, 1.0, norm=1.0, sha="a")]))
    b = result("migrated", [step(1, 1.0 + 1e-7, norm=1.0 + 1e-7, sha="b")])
    assert compare(a, b, 0.0).status == DIVERGED
    comparison = compare(a, b, 1e-5)
    assert comparison.status == PARITY and comparison.passed and not comparison.exact
    assert "within relative tolerance 1e-05" in report.summary_lines(comparison, a, b)[0]
    assert compare(a, b, 1e-9).status == DIVERGED


def test_missing_steps_diverge_at_the_first_absent_one() -> None:
    a = result("original", cpu([step(1, 0.5), step(2, 0.4), step(3, 0.3)]))
    b = result("migrated", [step(1, 0.5)])
    comparison = compare(a, b, 0.0)
    assert comparison.divergence is not None
    assert (comparison.divergence.step, comparison.divergence.what) == (2, "missing step")
    assert "the migrated run made no optimizer step 2" in comparison.divergence.detail


def test_no_optimizer_step_is_nothing_to_compare_not_a_pass() -> None:
    comparison = compare(result("original", []), result("migrated", []), 0.0)
    assert comparison.status == NOTHING_TO_COMPARE and not comparison.passed
    assert report.summary_lines(comparison, result("original", []), result("migrated", []))[0].startswith(
        "NOTHING TO COMPARE")


def test_a_run_failing_on_one_side_fails_with_its_traceback() -> None:
    trace = "Traceback (most recent call last):\n  File \"train.py\", line 3\nRuntimeError: boom\nafter"
    a = result("original", cpu([step(1, 0.5), step(2, 0.4)]))
    b = result("migrated", [step(1, 0.5)], returncode=1, stderr=trace)
    comparison = compare(a, b, 0.0)
    assert comparison.status == RUN_FAILED and not comparison.passed
    lines = report.summary_lines(comparison, a, b)
    assert "--- original (x): finished (exit code 0)" in lines
    assert "    RuntimeError: boom" in lines
    assert lines[lines.index("    RuntimeError: boom") + 1] != "    after"  # the traceback ends at its exception
    # the traceback is shown once, not again as "printed by the migrated run only"
    assert comparison.migrated_only_output == ["after"]


def test_training_on_cpu_after_migration_is_not_a_pass() -> None:
    a = result("original", cpu([step(1, 0.5)]))
    b = result("migrated", cpu([step(1, 0.5)]))
    comparison = compare(a, b, 0.0)
    assert comparison.status == NOT_ON_NPU and not comparison.passed
    assert "not on the NPU" in comparison.problems[0]


def test_rank_agreement_only_when_the_reference_cannot_run_distributed() -> None:
    a = result("original", [], returncode=1, stderr="Traceback (most recent call last):\nAttributeError: x\n",
               ranks={})
    good = {0: [step(1, 0.5)], 1: [step(1, 0.6)]}
    comparison = compare(a, result("migrated", [], ranks=good), 0.0, distributed_reference_failed=True)
    assert comparison.status == RANKS_ONLY and comparison.passed and comparison.rank_agreement
    bad = {0: [step(1, 0.5)], 1: [step(1, 0.5, sha="other")]}
    comparison = compare(a, result("migrated", [], ranks=bad), 0.0, distributed_reference_failed=True)
    assert comparison.status == RANKS_ONLY and not comparison.passed
    assert "rank 1's parameters differ from rank 0's after step 1" in comparison.problems[0]


def test_output_difference_ignores_numbers_and_project_roots() -> None:
    a = result("original", [], stdout="step 1 loss 0.5\nsaved /src/model.bin\n", cwd="/src")
    b = result("migrated", [], cwd="/out",
               stdout="step 1 loss 0.7\nsaved /out/model.bin\nwarning: fell back\n",
               stderr="train.py:3: LeftoverCudaWarning: leftover CUDA usage: torch.cuda.is_available()\n")
    extra, leftover = output_difference(a, b)
    assert extra == ["warning: fell back",
                     "train.py:3: LeftoverCudaWarning: leftover CUDA usage: torch.cuda.is_available()"]
    assert leftover == ["train.py:3: LeftoverCudaWarning: leftover CUDA usage: torch.cuda.is_available()"]


def test_json_report_and_ascii_chart(tmp_path: Path) -> None:
    a = result("original", cpu([step(1, 0.5), step(2, 0.25)]))
    b = result("migrated", [step(1, 0.5), step(2, math.inf)])
    comparison = compare(a, b, 0.0)
    plot, lines = report.write_plot(tmp_path, comparison, a, b, png=False)
    assert plot == tmp_path / report.ASCII_NAME and plot.read_text().splitlines() == lines
    assert lines[1] == "   1 |" + " " * 49 + "*|"   # both at the highest loss
    assert lines[2] == "   2 |o" + " " * 49 + "|"   # the migrated loss is not finite: not drawn
    path = tmp_path / report.REPORT_NAME
    report.write_json(path, comparison, a, b, {"steps": 2}, plot)
    data = json.loads(path.read_text())  # strict JSON: no Infinity
    assert data["status"] == DIVERGED and data["divergence"]["step"] == 2
    assert data["rows"][1]["migrated_loss"] == "inf"


def test_png_plot_when_matplotlib_is_there(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    a = result("original", cpu([step(1, 0.5), step(2, 0.25)]))
    b = result("migrated", [step(1, 0.5), step(2, 0.25)])
    plot, lines = report.write_plot(tmp_path, compare(a, b, 0.0), a, b)
    assert plot.name == report.PNG_NAME and lines == []
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_worker_seeding_seeds_numpy_from_the_torch_seed() -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    from transplant.verify.hook import SeedWorker

    calls = []
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(1234)
        SeedWorker(calls.append)(3)
        drawn = np.random.randint(0, 2**31)
        np.random.seed(1234)
        assert drawn == np.random.randint(0, 2**31)
        assert calls == [3]
    finally:
        torch.random.set_rng_state(state)


def test_fingerprint_is_exact_and_per_tensor() -> None:
    torch = pytest.importorskip("torch")
    from transplant.verify.hook import fingerprint_group

    params = [torch.ones(2, 3), torch.tensor([1.0, -2.0], dtype=torch.bfloat16)]
    first = fingerprint_group(params)
    params[1][0] = 1.0078125  # the next bfloat16 after 1.0
    second = fingerprint_group(params)
    assert first["sha256"] != second["sha256"]
    assert first["tensors"][0] == second["tensors"][0] and first["tensors"][1] != second["tensors"][1]
    assert first["numel"] == 8 and first["abs_sum"] == 9.0 and first["devices"] == ["cpu"]
