"""``transplant verify`` as a user runs it: the Self-MM and ALBERT fixtures (static and --auto), a
broken migration, a script without optimizer step, a script failing in one run, usage errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from e2e_support import ALBERT, FIXTURES, PYTHON, ROOT, SELFMM, Run, albert_args, run_process, selfmm_args

pytestmark = pytest.mark.slow

AMP = FIXTURES / "verify" / "amp_scaler"
NO_STEP = FIXTURES / "verify" / "no_step"


def verify(report_dir: Path, *options: str, cwd: Path = ROOT) -> tuple[Run, dict]:
    """``transplant verify --report-dir DIR OPTIONS...``; the run and its verify_report.json."""
    run = run_process([PYTHON, "-m", "transplant", "verify", "--report-dir", str(report_dir), *options], cwd=cwd,
                      timeout=900)
    path = report_dir / "verify_report.json"
    return run, json.loads(path.read_text()) if path.exists() else {}


def table_rows(stdout: str) -> list[tuple[int, str, str, str]]:
    return [(int(m[1]), m[2], m[3], m[4])
            for m in re.finditer(r"^ *(\d+)  (\S+) +(\S+) +(\S+)  (identical|rel \S+|-)", stdout, re.M)]


def assert_bit_identical(run: Run, data: dict, steps: int) -> None:
    assert run.returncode == 0, run.describe()
    assert f"PASS: {steps} optimizer step(s) compared: bit-identical losses and parameters." in run.stdout
    rows = table_rows(run.stdout)
    assert [r[0] for r in rows] == list(range(1, steps + 1))
    assert all(original == migrated and diff == "0" for _, original, migrated, diff in rows), run.stdout
    assert data["status"] == "parity" and data["passed"] and data["bit_identical"]
    assert len(data["rows"]) == steps and data["divergence"] is None
    assert data["original"]["stopped_after_steps"] is (steps == data["settings"]["steps"])


def _without_loss_log(args: list[str]) -> list[str]:
    # verify needs no logging of the script's own: drop the fixture's --loss_log
    index = args.index("--loss_log")
    return args[:index] + args[index + 2:]


def test_albert_static_migration_is_bit_identical(albert_work: Path, albert_migrated: Path, albert_cpu: Run,
                                                  tmp_path: Path) -> None:
    args, _ = albert_args(albert_work, "verify-static")
    run, data = verify(tmp_path, "--original", str(ALBERT / "original"), "--migrated", str(albert_migrated),
                       "--steps", "20", "--", *_without_loss_log(args))
    assert_bit_identical(run, data, 20)
    assert "shared RNG mode" in run.stdout and "loss: migrated (emulated npu)" in run.stdout
    # the same numbers the fixture's own loss log has (recorded by the hook, not by the script)
    assert [row["original_loss"] for row in data["rows"]] == pytest.approx(albert_cpu.losses, rel=1e-6)
    assert Path(data["plot"]).is_file()


def test_albert_auto_mode_is_bit_identical(albert_work: Path, albert_cpu: Run, tmp_path: Path) -> None:
    args, _ = albert_args(albert_work, "verify-auto")
    run, data = verify(tmp_path, "--original", str(ALBERT / "original"), "--auto", "--steps", "20", "--",
                       *_without_loss_log(args))
    assert_bit_identical(run, data, 20)
    assert "loss: auto mode (emulated npu)" in run.stdout


def test_selfmm_static_and_auto_are_bit_identical(selfmm_work: Path, selfmm_migrated: Path, tmp_path: Path) -> None:
    args, _ = selfmm_args(selfmm_work, "verify")
    args = _without_loss_log(args)
    run, data = verify(tmp_path / "static", "--original", str(SELFMM / "original"), "--migrated",
                       str(selfmm_migrated), "--steps", "12", "--", *args)
    assert_bit_identical(run, data, 12)
    run, data = verify(tmp_path / "auto", "--original", str(SELFMM / "original"), "--auto", "--steps", "12", "--",
                       *args)
    assert_bit_identical(run, data, 12)


def test_loss_scaled_trainer_migrated_into_a_temporary_folder(tmp_path: Path) -> None:
    """Without --migrated verify migrates SRC itself; an active GradScaler (NPU) against a disabled one
    (no CUDA) records the same unscaled losses."""
    run, data = verify(tmp_path, "--original", str(AMP / "original"), "--steps", "6", "--", "train.py")
    assert_bit_identical(run, data, 6)
    assert "migrating" in run.stderr and "temporary folder" in run.stderr
    assert not Path(data["migrated"]["cwd"]).exists()  # the temporary migration is gone


def test_broken_migration_fails_naming_the_first_diverging_step(tmp_path: Path) -> None:
    run, data = verify(tmp_path, "--original", str(AMP / "original"), "--migrated", str(AMP / "broken_npu"),
                       "--steps", "6", "--", "train.py")
    assert run.returncode == 1, run.describe()
    assert re.search(r"^First divergence at step 1 \(parameters\): parameter group 0, tensor #0", run.stdout, re.M)
    assert data["passed"] is False and data["divergence"]["step"] == 1
    assert data["divergence"]["group"] == 0
    # step 1 starts from the same weights: the same loss, different weights after the step
    assert data["rows"][0]["original_loss"] == data["rows"][0]["migrated_loss"]
    assert data["rows"][0]["params_equal"] is False


def test_script_without_optimizer_step_is_nothing_to_compare(tmp_path: Path) -> None:
    run, data = verify(tmp_path, "--original", str(NO_STEP / "original"), "--", "evaluate.py")
    assert run.returncode == 1, run.describe()
    assert "NOTHING TO COMPARE" in run.stdout and "PASS" not in run.stdout
    assert data["status"] == "nothing-to-compare" and data["passed"] is False


def test_script_failing_in_one_run_only_shows_both_sides(tmp_path: Path) -> None:
    migrated = tmp_path / "migrated"
    done = run_process([PYTHON, "-m", "transplant", "-i", str(AMP / "original"), "-o", str(migrated), "-q"],
                       cwd=ROOT)
    assert done.returncode == 0, done.describe()
    script = migrated / "train.py"
    text = script.read_text()
    script.write_text(text.replace("        optimizer.zero_grad()\n",
                                   "        optimizer.zero_grad()\n"
                                   "        if step == 3:\n"
                                   "            raise RuntimeError('only the migrated run fails')\n", 1))
    run, data = verify(tmp_path / "report", "--original", str(AMP / "original"), "--migrated", str(migrated),
                       "--steps", "6", "--", "train.py")
    assert run.returncode == 1, run.describe()
    assert data["status"] == "run-failed"
    assert "--- original (cpu): finished (exit code 0)" in run.stdout
    assert "--- migrated (emulated npu): exit code 1; its traceback:" in run.stdout
    assert "    RuntimeError: only the migrated run fails" in run.stdout
    assert data["migrated"]["traceback"].endswith("RuntimeError: only the migrated run fails")
    assert data["divergence"]["step"] == 4 and data["divergence"]["what"] == "missing step"

    # failing in both: both tracebacks
    run, data = verify(tmp_path / "both", "--original", str(AMP / "original"), "--migrated", str(migrated),
                       "--steps", "6", "--", "train.py", "--fail_at", "2")
    assert run.returncode == 1
    assert run.stdout.count("    RuntimeError: failing at step 2 as asked") == 2, run.stdout


def test_leftover_cuda_is_reported_and_strict_cuda_fails_it(tmp_path: Path) -> None:
    """The unmigrated original passed as --migrated: its torch.cuda.is_available() picks the CPU."""
    unmigrated = tmp_path / "unmigrated"
    shutil.copytree(AMP / "original", unmigrated)
    run, data = verify(tmp_path / "warn", "--original", str(AMP / "original"), "--migrated", str(unmigrated),
                       "--steps", "3", "--", "train.py")
    assert run.returncode == 1, run.describe()
    assert data["status"] == "not-on-npu"
    assert any("torch.cuda.is_available()" in line for line in data["leftover_cuda"]), data["leftover_cuda"]
    assert "Leftover CUDA in the migrated run" in run.stdout
    run, data = verify(tmp_path / "strict", "--original", str(AMP / "original"), "--migrated", str(unmigrated),
                       "--strict-cuda", "--steps", "3", "--", "train.py")
    assert run.returncode == 1
    assert data["status"] == "run-failed" and "LeftoverCudaError" in data["migrated"]["traceback"]


@pytest.mark.parametrize("options, message", [
    (["--original", "/nonexistent", "--", "train.py"], "not a project folder"),
    (["--original", str(AMP / "original"), "--", "missing.py"], "no script missing.py in"),
    (["--original", str(AMP / "original"), "--auto", "--migrated", str(AMP / "broken_npu"), "--", "train.py"],
     "does not go with --migrated"),
    (["--original", str(AMP / "original"), "--steps", "-1", "--", "train.py"], "Invalid value for '--steps'"),
])
def test_usage_errors_exit_2(options: list[str], message: str, tmp_path: Path) -> None:
    run, data = verify(tmp_path, *options)
    assert run.returncode == 2, run.describe()
    assert message in run.stderr
    assert data == {}


def test_nproc_runs_both_sides_under_torchrun(tmp_path: Path) -> None:
    run, data = verify(tmp_path, "--original", str(AMP / "original"), "--nproc", "2", "--steps", "3", "--",
                       "train.py")
    assert_bit_identical(run, data, 3)
    assert data["rank_agreement"] is True and data["original"]["ranks"] == [0, 1] == data["migrated"]["ranks"]
    assert "Ranks agree" in run.stdout


def test_nproc_when_the_original_cannot_run_distributed_on_cpu(albert_work: Path, albert_migrated: Path,
                                                              albert_cpu: Run, tmp_path: Path) -> None:
    """ALBERT reads --local_rank (torch.distributed.launch style), so under torchrun its original ranks never
    join a process group (and its distributed branch would call torch.cuda.set_device): only the migrated
    ranks, which read LOCAL_RANK (TP143), are checked."""
    args, _ = albert_args(albert_work, "verify-ddp")
    run, data = verify(tmp_path, "--original", str(ALBERT / "original"), "--migrated", str(albert_migrated),
                       "--nproc", "2", "--steps", "3", "--", *_without_loss_log(args))
    assert run.returncode == 0, run.describe()
    assert data["status"] == "ranks-only" and data["rank_agreement"] is True
    assert "PASS (rank agreement only)" in run.stdout
    assert any("never joined a process group" in note for note in data["notes"]), data
