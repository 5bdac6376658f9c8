"""The walk respects .gitignore/.ignore and never descends into VCS data, virtualenvs, caches or builds."""

from __future__ import annotations

import json
from pathlib import Path

from cli_helpers import UTILS_PY, write_tree

MIGRATED = b'return x.to("npu")'


def test_gitignored_python_is_copied_unchanged_and_counted(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {
        ".gitignore": "generated_*.py\nscratch/\n!scratch/keep.py\n",
        "model.py": UTILS_PY,
        "generated_model.py": UTILS_PY,
        "scratch/try.py": UTILS_PY,
        "scratch/keep.py": UTILS_PY,   # git cannot re-include below an ignored folder: still ignored
        "pkg/.ignore": "local.py\n",
        "pkg/local.py": UTILS_PY,
        "pkg/shared.py": UTILS_PY,
    })
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    assert MIGRATED in (out / "model.py").read_bytes() and MIGRATED in (out / "pkg/shared.py").read_bytes()
    for rel in ("generated_model.py", "scratch/try.py", "scratch/keep.py", "pkg/local.py"):
        assert (out / rel).read_bytes() == UTILS_PY, rel
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["tally"]["ignored"] == 4 and report["tally"]["changed"] == 2
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert reasons["pkg/local.py"].startswith("ignored by pkg/.ignore")
    assert reasons["generated_model.py"].startswith("ignored by .gitignore")
    assert "4 ignored" in result.stderr

    everything = tmp_path / "all"
    assert invoke("-i", src, "-o", everything, "--no-ignore").exit_code == 0
    assert MIGRATED in (everything / "generated_model.py").read_bytes()
    assert MIGRATED in (everything / "pkg/local.py").read_bytes()


def test_negation_re_includes_a_file(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {".gitignore": "*.py\n!main.py\n", "main.py": UTILS_PY, "other.py": UTILS_PY})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    assert MIGRATED in (out / "main.py").read_bytes() and (out / "other.py").read_bytes() == UTILS_PY


def test_parent_gitignore_up_to_the_repository_root(invoke, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {".git/HEAD": "ref: refs/heads/main\n", ".gitignore": "/proj/gen.py\n",
                                          "proj/gen.py": UTILS_PY, "proj/main.py": UTILS_PY})
    out = tmp_path / "out"
    assert invoke("-i", repo / "proj", "-o", out).exit_code == 0
    assert (out / "gen.py").read_bytes() == UTILS_PY and MIGRATED in (out / "main.py").read_bytes()


def test_vcs_venv_cache_and_build_folders_are_not_walked(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {
        ".git/HEAD": "ref: refs/heads/main\n",
        ".git/hooks/pre-commit.py": UTILS_PY,
        ".hg/store/x.py": UTILS_PY,
        "env/pyvenv.cfg": "home = /usr/bin\n",
        "env/lib/site.py": UTILS_PY,
        "__pycache__/m.cpython-311.pyc": b"\x00",
        "node_modules/x/index.py": UTILS_PY,
        "setup.py": "from setuptools import setup\nsetup()\n",
        "build/lib/m.py": UTILS_PY,
        "pkg.egg-info/PKG-INFO": "Name: pkg\n",
        "data/build/keep.py": UTILS_PY,   # a "build" folder that is not a packaging output
        "sub/.git": "gitdir: ../.git/modules/sub\n",  # a submodule's link file
        "m.py": UTILS_PY,
    })
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0, result.output
    for gone in (".git", ".hg", "env", "__pycache__", "node_modules", "build", "pkg.egg-info", "sub/.git"):
        assert not (out / gone).exists(), gone
    assert MIGRATED in (out / "m.py").read_bytes() and MIGRATED in (out / "data/build/keep.py").read_bytes()
    report = json.loads((out / "transplant_report.json").read_text())
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert "--copy-vcs" in reasons[".git"] and reasons["env"].startswith("virtualenv")
    assert report["tally"]["python"] == 3  # m.py, setup.py, data/build/keep.py

    with_vcs = tmp_path / "vcs"
    assert invoke("-i", src, "-o", with_vcs, "--copy-vcs").exit_code == 0
    assert (with_vcs / ".git/HEAD").read_bytes() == (src / ".git/HEAD").read_bytes()
    assert (with_vcs / ".git/hooks/pre-commit.py").read_bytes() == UTILS_PY  # copied, never rewritten
    assert not (with_vcs / "env").exists()
