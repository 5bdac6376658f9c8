"""Unmodified CUDA training scripts train under auto mode on the emulated NPU with exactly the losses
of the same scripts migrated offline by ``transplant -i`` (single device, torch.cuda.amp, 2-rank DDP)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, auto_paths) -> Path:
    out = tmp_path_factory.mktemp("migrated") / "out"
    proc = subprocess.run([sys.executable, "-m", "transplant", "-i", str(SCRIPTS), "-o", str(out)],
                          capture_output=True, text=True, cwd=str(auto_paths["root"]), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def run_script(auto_env):
    return lambda *args, **kwargs: _run(auto_env, *args, **kwargs)


def _run(emulator_env, script: Path, out: Path, *, auto: bool, nproc: int | None = None,
         report: Path | None = None) -> dict:
    extra = {"TRANSPLANT_AUTO": "1", "TRANSPLANT_AUTO_QUIET": "1"} if auto else {}
    if report is not None:
        extra["TRANSPLANT_AUTO_REPORT"] = str(report)
    command = [sys.executable, "-m", "transplant.emulate.runner"]
    if nproc:
        command += ["--nproc", str(nproc)]
    command += [str(script), "--out", str(out)]
    proc = subprocess.run(command, env=emulator_env(**extra), capture_output=True, text=True, cwd=str(out.parent),
                          timeout=240)
    assert proc.returncode == 0, f"{script.name} (auto={auto}) failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.read_text())


def test_single_device_and_cuda_amp_match_offline_migration(migrated, run_script, tmp_path):
    script = "train_single.py"
    auto = run_script(SCRIPTS / script, tmp_path / "auto.json", auto=True, report=tmp_path / "changes.csv")
    offline = run_script(migrated / script, tmp_path / "offline.json", auto=False)
    assert auto == offline
    assert auto["device"] == "npu:0"
    assert len(auto["losses"]) == 8 and auto["losses"][-1] < auto["losses"][0]
    assert auto["amp_dtype"] == "torch.float16", "torch.cuda.amp.autocast ran fp16 on the NPU"
    assert len(auto["amp_losses"]) == 8 and auto["amp_losses"][-1] < auto["amp_losses"][0]
    with open(tmp_path / "changes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(row["File"].endswith(script) for row in rows), rows
    hit = {row["Message"].split(" ")[0].rstrip(":") for row in rows}
    assert {"torch.cuda.is_available", "torch.Tensor.cuda", "torch.cuda.amp.GradScaler", "torch.cuda.amp.autocast",
            "torch.load"} <= hit, hit


@pytest.mark.slow
def test_ddp_nccl_two_ranks_matches_offline_migration(migrated, run_script, tmp_path):
    report = tmp_path / "changes.csv"
    auto = run_script(SCRIPTS / "train_ddp.py", tmp_path / "auto.json", auto=True, nproc=2, report=report)
    offline = run_script(migrated / "train_ddp.py", tmp_path / "offline.json", auto=False, nproc=2)
    assert auto == offline
    assert auto["backend"] == "hccl"
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    backend = [row for row in rows if row["Message"].startswith("torch.distributed.init_process_group")]
    assert backend and backend[0]["Before"] == "'nccl'" and backend[0]["After"] == "'hccl'"
    assert (tmp_path / "changes.rank1.csv").exists(), "rank 1 writes its own change log"
