"""Unit tests of the import hook's pure parts (line map, compile, project files, re-runnable prefix).

The module is loaded from its file, not as ``transplant.auto._rewrite_hook``: importing the package
would arm auto mode inside the pytest process (see conftest.py). Its top level is standard library only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

HOOK = Path(__file__).resolve().parents[2] / "transplant" / "auto" / "_rewrite_hook.py"


@pytest.fixture(scope="module")
def hook():
    spec = importlib.util.spec_from_file_location("_rewrite_hook_under_test", HOOK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_same_line_count_needs_no_map(hook):
    assert hook.line_map(["a", "b"], ["a", "c"]) is None


def test_inserted_and_removed_lines_map_back(hook):
    old = ["def f(x):", "    if x:", "        import apex", "    y = 1", "    return y"]
    new = ["def f(x):", "    with ctx():", "        y = 1", "    return y"]
    mapping = hook.line_map(old, new)
    assert mapping[1] == 1          # unchanged
    assert mapping[3] == 4          # re-indented line matches its original
    assert mapping[4] == 5
    assert 1 <= mapping[2] <= 4     # the inserted `with` takes a neighbouring original line


def test_compiled_code_reports_original_lines(hook):
    old = b"import os\nif True:\n    import sys\n    x = 1\n\ndef g():\n    raise ValueError(6)\n"
    new = b"import os\nx = 1\n\ndef g():\n    raise ValueError(6)\n"
    code = hook.compile_preserving_lines(old, new, "m.py")
    function = next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == "g")
    assert function.co_firstlineno == 6
    assert {line for _, _, line in function.co_lines() if line} == {6, 7}


def test_project_files_exclude_libraries(hook, tmp_path):
    files = hook.ProjectFiles([str(tmp_path)])
    (tmp_path / "pkg").mkdir()
    assert files.contains(str(tmp_path / "train.py"))
    assert files.contains(str(tmp_path / "pkg" / "model.py"))
    assert not files.contains(str(tmp_path / "train.txt"))
    assert not files.contains(str(tmp_path / ".venv" / "lib" / "site-packages" / "lib.py"))
    assert not files.contains(str(tmp_path.parent / "elsewhere.py"))
    assert not files.contains(os.__file__)  # the standard library
    assert not hook.ProjectFiles([os.sep]).roots  # "/" is never a project root


def test_rerunnable_prefix(hook):
    ok = b'"""doc"""\nimport os\nimport sys\nsys.path.insert(0, ".")\nos.environ["A"] = "1"\nimport transplant.auto\n'
    assert hook.rerunnable_prefix(ok, 6)
    work = b"import os\nprint('training')\nimport transplant.auto\n"
    assert not hook.rerunnable_prefix(work, 3)
    defs = b"def f():\n    pass\nimport transplant.auto\n"
    assert not hook.rerunnable_prefix(defs, 3)


def test_rewrite_switch(hook):
    assert hook.rewrite_enabled({}) is True
    for off in ("0", "false", "off", "no"):
        assert hook.rewrite_enabled({"TRANSPLANT_AUTO_REWRITE": off}) is False
