"""Migrated code on an emulated 8-NPU host (issue 10): an imagenet-style trainer (pytorch/examples
imagenet/main.py: ``ngpus_per_node``, DataParallel, ``--dist-backend nccl``) runs in one process
unmodified, and with 2 ranks under torchrun with the backend typed on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_support import (
    FIXTURES,
    PYTHON,
    assert_finite,
    compare_or_update_golden,
    migrate,
    read_records,
    read_rows,
    run_process,
    transplant_run,
)

pytestmark = pytest.mark.slow

IMAGENET = FIXTURES / "multi_npu" / "imagenet"


@pytest.fixture(scope="module")
def imagenet_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imagenet") / "out"
    done = migrate(IMAGENET / "original", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_migration_matches_golden(imagenet_migrated: Path, update_golden: bool) -> None:
    compare_or_update_golden(imagenet_migrated, IMAGENET / "expected_npu", update_golden)


def test_rows_say_one_npu_and_how_to_scale_out(imagenet_migrated: Path) -> None:
    rows = read_rows(imagenet_migrated / "change_list.csv")
    data_parallel = [r for r in rows if r["Rule"] == "TP145"]
    assert len(data_parallel) == 1
    assert "current NPU only" in data_parallel[0]["Message"] and "--distributed" in data_parallel[0]["Message"]
    assert [r["Before"] for r in rows if r["Rule"] == "TP142"] == ["args.dist_backend"]
    # the migrated DataParallel is no longer reported as unsupported; the isinstance check still is
    unsupported = read_rows(imagenet_migrated / "unsupported_api.csv")
    assert [r["OP"] for r in unsupported if r["Rule"] == "TP541"] == ["torch.nn.DataParallel"]
    source = (imagenet_migrated / "main.py").read_text()
    assert "isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))" in source


def test_second_migration_changes_nothing(imagenet_migrated: Path, tmp_path: Path) -> None:
    done = migrate(IMAGENET / "expected_npu", tmp_path / "again")
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_rows(tmp_path / "again" / "change_list.csv") == []
    assert (tmp_path / "again" / "main.py").read_bytes() == (IMAGENET / "expected_npu" / "main.py").read_bytes()


def test_original_dies_on_an_eight_npu_host_with_runtime_patches_only(tmp_path: Path) -> None:
    """Why the rewrite exists: the original's default command, made to run on the NPU by auto mode's
    runtime patches alone, reaches DataParallel over all 8 NPUs and stops (as on Ascend)."""
    env = {"TRANSPLANT_NPU_COUNT": "8", "TRANSPLANT_AUTO": "1", "TRANSPLANT_AUTO_QUIET": "1",
           "TRANSPLANT_AUTO_REWRITE": "0"}
    run = transplant_run(["main.py", "--epochs", "1"], cwd=IMAGENET / "original", env=env, loss_log=tmp_path / "x")
    assert run.returncode != 0
    assert "DataParallel over 8 npu devices is not supported" in run.stderr, run.describe()


def test_original_runs_on_an_eight_npu_host_in_auto_mode(tmp_path: Path) -> None:
    """Auto mode's import-time rewrite applies the same DataParallel rule (TP145): one NPU, no crash."""
    loss_log = tmp_path / "loss.jsonl"
    env = {"TRANSPLANT_NPU_COUNT": "8", "TRANSPLANT_AUTO": "1", "TRANSPLANT_AUTO_QUIET": "1"}
    run = transplant_run(["main.py", "--epochs", "1", "--loss-log", str(loss_log)], cwd=IMAGENET / "original",
                         env=env, loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    assert set(run.field("device")) == {"npu:0"}
    assert_finite(run.losses)


def test_runs_in_one_process_on_eight_npus(imagenet_migrated: Path, tmp_path: Path) -> None:
    loss_log = tmp_path / "loss.jsonl"
    run = transplant_run(["main.py", "--loss-log", str(loss_log)], cwd=imagenet_migrated,
                         env={"TRANSPLANT_NPU_COUNT": "8"}, loss_log=loss_log, strict_cuda=True)
    assert run.returncode == 0, run.describe()
    assert set(run.field("device")) == {"npu:0"}
    assert len(run.losses) == 2 * 128 // 16
    assert_finite(run.losses)
    assert run.field("world_size") == [1]


def test_two_ranks_with_nccl_on_the_command_line(imagenet_migrated: Path, tmp_path: Path) -> None:
    """``--dist-backend nccl`` as the example's README says: mapped to hccl where it reaches
    init_process_group; DDP keeps the ranks' weights identical."""
    loss_log = tmp_path / "loss.jsonl"
    run = run_process([PYTHON, "-m", "transplant", "run", "--strict-cuda", "--nproc", "2", "main.py",
                       "--dist-url", "env://", "--dist-backend", "nccl", "--loss-log", str(loss_log)],
                      cwd=imagenet_migrated, env={"TRANSPLANT_NPU_COUNT": "8"})
    assert run.returncode == 0, run.describe()
    ranks = [read_records(Path(f"{loss_log}.rank{rank}")) for rank in (0, 1)]
    digests = [[r["final_param_sha256"] for r in records if "final_param_sha256" in r] for records in ranks]
    assert digests[0] and digests[0] == digests[1]
    assert [r["world_size"] for r in ranks[0] if "world_size" in r] == [2]
    losses = [[r["loss"] for r in records if "loss" in r] for records in ranks]
    assert losses[0] != losses[1]  # each rank trains on its own shard
