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
def run_pair(auto_env):
    """Run the original script under auto mode and the migrated one, side by side (2 cores)."""

    def run(original: Path, migrated_script: Path, tmp: Path, *, nproc: int | None = None,
            rewrite: bool = True) -> tuple[dict, dict]:
        report = tmp / "changes.csv"
        jobs = [
            _start(auto_env, original, tmp / "auto.json", nproc,
                   {"TRANSPLANT_AUTO": "1", "TRANSPLANT_AUTO_QUIET": "1", "TRANSPLANT_AUTO_REPORT": str(report),
                    "TRANSPLANT_AUTO_REWRITE": "1" if rewrite else "0"}),
            _start(auto_env, migrated_script, tmp / "offline.json", nproc, {}),
        ]
        return tuple(_finish(*job) for job in jobs)

    return run


def _start(emulator_env, script: Path, out: Path, nproc: int | None, extra: dict):
    from transplant.emulate.runner import build_command

    command = build_command([str(script), "--out", str(out)], nproc=nproc)
    env = emulator_env(**extra)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(out.parent))
    return proc, script, out


def _finish(proc, script: Path, out: Path) -> dict:
    try:
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"{script} failed:\n{stderr[-4000:]}"
    return json.loads(out.read_text())


def test_single_device_and_cuda_amp_match_offline_migration(migrated, run_pair, tmp_path):
    """Runtime patches alone (TRANSPLANT_AUTO_REWRITE=0): every CUDA call is redirected as it runs."""
    script = "train_single.py"
    auto, offline = run_pair(SCRIPTS / script, migrated / script, tmp_path, rewrite=False)
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


def test_single_device_rewritten_at_import_matches_offline_migration(migrated, run_pair, tmp_path):
    """With the import hook (the default) the script runs the offline rewrite of itself: same losses, and
    the change log lists the static edits with the offline rule ids instead of runtime redirects."""
    script = "train_single.py"
    auto, offline = run_pair(SCRIPTS / script, migrated / script, tmp_path)
    assert auto == offline
    assert auto["device"] == "npu:0" and auto["amp_dtype"] == "torch.float16"
    with open(tmp_path / "changes.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    static = [row for row in rows if row["Message"].endswith("(auto mode, rewritten at import)")]
    with open(migrated / "change_list.csv", newline="") as handle:
        offline_rows = [row for row in csv.DictReader(handle) if row["File"].endswith(script)]
    # every offline edit but the inserted `import torch_npu` (auto mode imported it; no line is added)
    expected = {(row["Rule"], row["Start Line"], row["Column"]) for row in offline_rows if row["Rule"] != "TP190"}
    assert {(row["Rule"], row["Start Line"], row["Column"]) for row in static} == expected
    assert all(row["Count"] == "" for row in static)


@pytest.mark.slow
def test_ddp_nccl_two_ranks_matches_offline_migration(migrated, run_pair, tmp_path):
    """Runtime patches alone: the nccl backend is converted at the call."""
    report = tmp_path / "changes.csv"
    auto, offline = run_pair(SCRIPTS / "train_ddp.py", migrated / "train_ddp.py", tmp_path, nproc=2, rewrite=False)
    assert auto == offline
    assert auto["backend"] == "hccl"
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    backend = [row for row in rows if row["Message"].startswith("torch.distributed.init_process_group")]
    assert backend and backend[0]["Before"] == "'nccl'" and backend[0]["After"] == "'hccl'"
    assert (tmp_path / "changes.rank1.csv").exists(), "rank 1 writes its own change log"
