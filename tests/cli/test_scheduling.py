"""The worker pool starts the largest files first; results still arrive in path order (issue 9, speed)."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path

import transplant.migrate as migrate_module
from transplant.migrate import MigrationOptions, migrate


class _InlineExecutor:
    """Stands in for ProcessPoolExecutor: runs each task when submitted and records the order."""

    submitted: list[str] = []

    def __init__(self, workers, mp_context=None, initializer=None, initargs=()) -> None:
        if initializer is not None:
            initializer(*initargs)

    def submit(self, fn, task):
        type(self).submitted.append(Path(task[0]).name)
        future: Future = Future()
        future.set_result(fn(task))
        return future

    def shutdown(self, wait=True, cancel_futures=False) -> None:
        pass


def test_largest_files_are_submitted_first_and_results_come_in_path_order(tmp_path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sizes = {"a.py": 10, "b.py": 300, "c.py": 50, "d.py": 300}
    for name, lines in sizes.items():
        (src / name).write_text("import torch\n" + "x = torch.zeros(1).cuda()\n" * lines)
    monkeypatch.setattr(migrate_module, "ProcessPoolExecutor", _InlineExecutor)
    _InlineExecutor.submitted = []
    seen: list[str] = []
    migrate(MigrationOptions(src=src, out=tmp_path / "out", jobs=2), on_file=lambda r: seen.append(r.path))
    assert _InlineExecutor.submitted == ["b.py", "d.py", "c.py", "a.py"]  # ties keep path order
    assert seen == ["a.py", "b.py", "c.py", "d.py"]
