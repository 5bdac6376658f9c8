"""Values that cross files (fixtures/crossfile): golden migrations, idempotency, and the MMSA-style
model zoo trained on the emulated NPU with every leftover CUDA use fatal (--strict-cuda)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from e2e_support import FIXTURES, PYTHON, compare_or_update_golden, migrate, run_process

CROSSFILE = FIXTURES / "crossfile"
PROJECTS = sorted(p.name for p in CROSSFILE.iterdir() if (p / "original").is_dir())


def _migrated(name: str, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    proc = migrate(CROSSFILE / name / "original", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.parametrize("name", PROJECTS)
def test_golden_migration(name: str, tmp_path: Path, update_golden: bool) -> None:
    out = _migrated(name, tmp_path)
    compare_or_update_golden(out, CROSSFILE / name / "expected_npu", update_golden)


@pytest.mark.parametrize("name", PROJECTS)
def test_second_run_changes_nothing(name: str, tmp_path: Path) -> None:
    out = _migrated(name, tmp_path)
    again = tmp_path / "again"
    proc = migrate(out, again)
    assert proc.returncode == 0, proc.stderr
    for path in sorted(out.rglob("*.py")):
        rel = path.relative_to(out)
        assert (again / rel).read_bytes() == path.read_bytes(), f"{rel} changed on the second run"
    assert (again / "change_list.csv").read_text().count("\n") == 1, "the second run recorded changes"


def test_rows_name_the_callee_and_the_use(tmp_path: Path) -> None:
    out = _migrated("mmsa_style", tmp_path)
    rows = (out / "change_list.csv").read_text()
    assert "passed to Seq2Seq(device), which reaches .to() at models/mctn.py" in rows
    assert "through self.device" in rows
    assert "used as a device by .to() at run.py" in rows
    assert "used as a backend by setup_dist(backend)" in rows


def test_negatives_stay_untouched(tmp_path: Path) -> None:
    """Literals that only reach print, a path or a label keep their text."""
    out = _migrated("mmsa_style", tmp_path)
    run = (out / "run.py").read_text()
    assert "log_device(args.model, 'cuda')" in run
    assert "checkpoint_path(config.LOG_DIR, 'cuda')" in run
    config = (out / "config" / "__init__.py").read_text()
    assert "LOG_DIR = 'runs/cuda'" in config and "cfg.tag = 'cuda'" in config
    main = (_migrated("rpc_pipeline", tmp_path / "rpc") / "main.py").read_text()
    assert 'shard_name("shard", "cuda")' in main and "functools.partial(shard_name, 'cuda')" in main


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mctn", "tfn"])
def test_migrated_model_zoo_trains_on_emulated_npu(model: str, tmp_path: Path) -> None:
    out = _migrated("mmsa_style", tmp_path)
    run = run_process([PYTHON, "-m", "transplant", "run", "--strict-cuda", "run.py", "--model", model,
                       "--steps", "40"], cwd=out, env={"TRANSPLANT_NPU_COUNT": "1"})
    assert run.returncode == 0, run.describe()
    found = re.search(r"loss ([0-9.]+) -> ([0-9.]+) on (\w+)", run.stdout)
    assert found, run.describe()
    first, last, device = float(found.group(1)), float(found.group(2)), found.group(3)
    assert device == "npu"
    assert last < first * 0.5, run.describe()


def test_original_fails_where_the_migration_runs(tmp_path: Path) -> None:
    """The fixture is a real test: its original dies on the emulated NPU host under --strict-cuda."""
    original = CROSSFILE / "mmsa_style" / "original"
    run = run_process([PYTHON, "-m", "transplant", "run", "--strict-cuda", "run.py", "--steps", "1"],
                      cwd=original, env={"TRANSPLANT_NPU_COUNT": "1"})
    assert run.returncode != 0
