"""Session-wide set-up of the end-to-end tests: synthetic data, one migration and one CPU reference run
per trainer, each built on first use and shared by the static, auto and golden tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e_support import (
    ALBERT,
    PYTHON,
    SELFMM,
    Run,
    albert_args,
    migrate,
    run_process,
    selfmm_args,
)

# ---------------------------------------------------------------------------------------------
# Self-MM


@pytest.fixture(scope="session")
def selfmm_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("selfmm")
    done = run_process([PYTHON, "data/make_synthetic.py", "--data_dir", str(work / "data")],
                       cwd=SELFMM / "original")
    assert done.returncode == 0, done.describe()
    return work


@pytest.fixture(scope="session")
def selfmm_cpu(selfmm_work: Path) -> Run:
    """The original Self-MM trainer on the CPU (no CUDA here: it falls back to 'cpu')."""
    args, loss_log = selfmm_args(selfmm_work, "cpu")
    run = run_process([PYTHON, *args], cwd=SELFMM / "original", loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    return run


@pytest.fixture(scope="session")
def selfmm_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("selfmm_npu") / "out"
    # data/make_synthetic.py and data/TextPre.py also run as __main__ with argparse: name the trainer
    done = migrate(SELFMM / "original", out, "--entry", "run.py")
    assert done.returncode == 0, f"transplant failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return out


# ---------------------------------------------------------------------------------------------
# ALBERT


@pytest.fixture(scope="session")
def albert_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("albert")
    done = run_process([PYTHON, "prepare_fake_data.py", "--output_dir", str(work / "fake")],
                       cwd=ALBERT / "original")
    assert done.returncode == 0, done.describe()
    return work


@pytest.fixture(scope="session")
def albert_cpu(albert_work: Path) -> Run:
    """The original ALBERT fine-tuning on the CPU with --no_cuda (writes the feature caches)."""
    args, loss_log = albert_args(albert_work, "cpu", "--no_cuda")
    run = run_process([PYTHON, *args], cwd=ALBERT / "original", loss_log=loss_log)
    assert run.returncode == 0, run.describe()
    return run


@pytest.fixture(scope="session")
def albert_migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("albert_npu") / "out"
    # two scripts run as __main__ with argparse (the trainer and the data generator): name the trainer
    done = migrate(ALBERT / "original", out, "--entry", "run_classifier.py")
    assert done.returncode == 0, f"transplant failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return out
