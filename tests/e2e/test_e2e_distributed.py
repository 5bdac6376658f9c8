"""``transplant --distributed`` (issue 10) on single-device trainers in the styles of pytorch/examples
mnist (DataLoader ``**kwargs``, cuda/mps/cpu branches, ``--save-model``) and kuangliu/pytorch-cifar
(module-level script, DataParallel, ``--resume``): goldens, idempotency, an already-DDP script left
alone, and runs on the emulated NPU — one process, and 2 ranks with ``transplant run --nproc 2``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from e2e_support import (
    FIXTURES,
    PYTHON,
    Run,
    assert_finite,
    compare_or_update_golden,
    migrate,
    read_records,
    read_rows,
    run_process,
)

pytestmark = pytest.mark.slow

DISTRIBUTED = FIXTURES / "distributed"
CASES = ("mnist", "cifar")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    outs = {}
    for name in CASES:
        out = tmp_path_factory.mktemp(name) / "out"
        done = migrate(DISTRIBUTED / name / "original", out, "--distributed")
        assert done.returncode == 0, done.stdout + done.stderr
        outs[name] = out
    return outs


def _run(cwd: Path, log: str, *args: str, nproc: int = 0) -> tuple[Run, list[list[dict]]]:
    command = [PYTHON, "-m", "transplant", "run", "--strict-cuda"]
    if nproc:
        command += ["--nproc", str(nproc)]
    run = run_process([*command, "main.py", "--loss-log", str(cwd / f"{log}-{{rank}}.jsonl"), *args], cwd=cwd,
                      env={"TRANSPLANT_NPU_COUNT": "8"})
    assert run.returncode == 0, run.describe()
    return run, [read_records(cwd / f"{log}-{rank}.jsonl") for rank in range(max(nproc, 1))]


@pytest.mark.parametrize("name", CASES)
def test_conversion_matches_golden(name: str, converted: dict[str, Path], update_golden: bool) -> None:
    compare_or_update_golden(converted[name], DISTRIBUTED / name / "expected_npu", update_golden)


@pytest.mark.parametrize("name", CASES)
def test_every_part_is_a_row(name: str, converted: dict[str, Path]) -> None:
    rules = {r["Rule"] for r in read_rows(converted[name] / "change_list.csv")}
    assert {"TP200", "TP201", "TP204", "TP205", "TP206", "TP207"} <= rules
    assert not [r for r in read_rows(converted[name] / "unsupported_api.csv") if r["Rule"] in ("TP298", "TP541")]


@pytest.mark.parametrize("name", CASES)
def test_second_run_is_a_no_op(name: str, tmp_path: Path) -> None:
    golden = DISTRIBUTED / name / "expected_npu"
    done = migrate(golden, tmp_path / "again", "--distributed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_rows(tmp_path / "again" / "change_list.csv") == []
    assert (tmp_path / "again" / "main.py").read_bytes() == (golden / "main.py").read_bytes()
    assert [r["Rule"] for r in read_rows(tmp_path / "again" / "unsupported_api.csv")
            if r["Rule"].startswith("TP2")] == ["TP299"]


def test_already_distributed_script_is_left_alone(tmp_path: Path) -> None:
    src = DISTRIBUTED / "already_ddp" / "original"
    assert migrate(src, tmp_path / "plain").returncode == 0
    done = migrate(src, tmp_path / "ddp", "--distributed")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ddp" / "train.py").read_bytes() == (tmp_path / "plain" / "train.py").read_bytes()
    assert not [r for r in read_rows(tmp_path / "ddp" / "change_list.csv") if r["Rule"].startswith("TP2")]
    rows = [r for r in read_rows(tmp_path / "ddp" / "unsupported_api.csv") if r["Rule"] == "TP299"]
    assert len(rows) == 1 and "DistributedDataParallel" in rows[0]["Tips"]


def test_help_works_without_a_launcher(converted: dict[str, Path]) -> None:
    for name in CASES:
        run = run_process([PYTHON, "-m", "transplant", "run", "main.py", "--help"], cwd=converted[name])
        assert run.returncode == 0 and "usage:" in run.stdout, run.describe()


def _falls(values: list[float]) -> bool:
    return values[-1] < values[0]


def test_mnist_single_process_and_two_ranks(converted: dict[str, Path]) -> None:
    work = converted["mnist"]
    single, (records,) = _run(work, "single", "--save-model")
    tests = [r for r in records if "test_loss" in r]
    assert len(tests) == 3 and all(r["seen"] == 100 for r in tests)
    assert {r["device"] for r in records if "device" in r} == {"npu:0"}
    per_epoch = [np.mean([r["loss"] for r in records if r.get("epoch") == e and "loss" in r]) for e in (1, 2, 3)]
    assert_finite(per_epoch)
    assert _falls(per_epoch), per_epoch
    assert (work / "mnist_cnn.pt").is_file()
    (work / "mnist_cnn.pt").unlink()

    _, ranks = _run(work, "ddp", "--save-model", nproc=2)
    for rank, records in enumerate(ranks):
        assert {r["device"] for r in records if "device" in r} == {f"npu:{rank}"}
        losses = [r["loss"] for r in records if "loss" in r]
        assert len(losses) == 3 * 256 // 2 // 16  # each rank trains on its half
        assert_finite(losses)
        tests = [r for r in records if "test_loss" in r]
        # the whole test set on every rank, every epoch
        assert [r["seen"] for r in tests] == [100, 100, 100]
        assert _falls([r["test_loss"] for r in tests]), tests
    # identical parameters on both ranks after every epoch; the ranks saw different batches
    assert [r["param_sha256"] for r in ranks[0] if "param_sha256" in r] == \
        [r["param_sha256"] for r in ranks[1] if "param_sha256" in r]
    assert [r["loss"] for r in ranks[0] if "loss" in r] != [r["loss"] for r in ranks[1] if "loss" in r]
    assert (work / "mnist_cnn.pt").is_file()


def test_cifar_single_process_two_ranks_and_resume(converted: dict[str, Path], tmp_path: Path) -> None:
    work = converted["cifar"]
    _, (records,) = _run(work, "single")
    tests = [r for r in records if "acc" in r]
    assert [r["total"] for r in tests] == [100, 100, 100]
    train = [r["train_loss"] for r in records if "train_loss" in r]
    assert_finite(train)
    assert _falls(train), train
    shutil.rmtree(work / "checkpoint")

    _, ranks = _run(work, "ddp", nproc=2)
    digests = [[r["param_sha256"] for r in records if "param_sha256" in r] for records in ranks]
    assert len(digests[0]) == 3 and digests[0] == digests[1]
    for rank, records in enumerate(ranks):
        assert {r["device"] for r in records if "device" in r} == {f"npu:{rank}"}
        assert [r["total"] for r in records if "acc" in r] == [100, 100, 100]
        train = [r["train_loss"] for r in records if "train_loss" in r]
        assert_finite(train)
        assert _falls(train), train
    # rank 0's checkpoint (unprefixed keys) resumes in the single-process script
    assert (work / "checkpoint" / "ckpt.pth").is_file()
    resumed, (records,) = _run(work, "resume", "--resume", "--epochs", "1")
    assert "Resuming from checkpoint" in resumed.stdout
    assert [r["epoch"] for r in records if "acc" in r] == [3]
    best = max(r["acc"] for r in ranks[0] if "acc" in r)
    assert [r["acc"] for r in records if "acc" in r][0] > 10 and best > 10
