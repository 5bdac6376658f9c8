"""The worker pool starts the largest files first; results still arrive in path order (issue 9, speed)."""

from __future__ import annotations

from pathlib import Path

from transplant.migrate import MigrationOptions, migrate
from transplant.workers import BoundedPool

_LOG: list[Path] = []


def _init(log: str) -> None:
    _LOG[:] = [Path(log)]


def _record(task: tuple[str, str]) -> str:  # stands in for the rewrite of one file
    with open(_LOG[0], "a", encoding="utf-8") as handle:  # the worker's order of work
        handle.write(task[1] + "\n")
    return task[1]


def test_largest_files_are_started_first_and_results_come_in_task_order(tmp_path: Path) -> None:
    sizes = {"a.py": 10, "b.py": 300, "c.py": 50, "d.py": 300}
    tasks = []
    for name, lines in sizes.items():
        path = tmp_path / name
        path.write_text("x = 1\n" * lines)
        tasks.append((str(path), name))
    log = tmp_path / "order.log"
    with BoundedPool(tasks, _record, init=_init, init_args=(str(log),), jobs=1) as pool:
        outcomes = list(pool)
    assert log.read_text().split() == ["b.py", "d.py", "c.py", "a.py"]  # ties keep path order
    assert outcomes == ["a.py", "b.py", "c.py", "d.py"]


def test_migration_results_come_in_path_order_with_two_jobs(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, lines in {"a.py": 10, "b.py": 300, "c.py": 50, "d.py": 300}.items():
        (src / name).write_text("import torch\n" + "x = torch.zeros(1).cuda()\n" * lines)
    seen: list[str] = []
    migrate(MigrationOptions(src=src, out=tmp_path / "out", jobs=2), on_file=lambda r: seen.append(r.path))
    assert seen == ["a.py", "b.py", "c.py", "d.py"]
