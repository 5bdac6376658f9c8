"""The `transplant-check` pre-commit hook, run by the real pre-commit in a tiny git repository (offline).

The hook definition is read from .pre-commit-hooks.yaml and used as a `repo: local` hook with
`language: system` (pointing at this checkout), so nothing is downloaded: the entry, the file
filter and pass_filenames are exactly the published ones.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / ".pre-commit-hooks.yaml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="pre-commit needs git"),
]
yaml = pytest.importorskip("yaml")  # a dependency of pre-commit
pytest.importorskip("pre_commit")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "transplant"  # `transplant` of this checkout, whatever is installed elsewhere
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m transplant "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "GIT_CONFIG_NOSYSTEM": "1",
           "HOME": str(tmp_path), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    root = tmp_path / "project"
    root.mkdir()
    assert _run(["git", "init", "-q", "-b", "main"], root, env).returncode == 0
    hook = yaml.safe_load(MANIFEST.read_text())[0]
    hook.update(language="system")
    config = {"repos": [{"repo": "local", "hooks": [hook]}]}
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    (root / "README.md").write_text("uses cuda\n")
    (root / ".gitignore").write_text("scratch.py\n")
    (root / "scratch.py").write_text("import torch\nx = torch.zeros(1).cuda()\n")  # ignored: never gates
    assert _run(["git", "add", "-A"], root, env).returncode == 0
    assert _run(["git", "commit", "-q", "-m", "init"], root, env).returncode == 0
    return root, env


def test_manifest_is_valid() -> None:
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(MANIFEST)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hooks = yaml.safe_load(MANIFEST.read_text())
    assert [h["id"] for h in hooks] == ["transplant-check"]
    assert hooks[0]["entry"].startswith("transplant --check")


def test_hook_blocks_cuda_code_until_acknowledged(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    pre_commit = [sys.executable, "-m", "pre_commit"]
    assert _run([*pre_commit, "install"], root, env).returncode == 0

    (root / "train.py").write_text("import torch\nmodel = torch.nn.DataParallel(torch.nn.Linear(2, 2), device_ids=[0, 1])\n")
    _run(["git", "add", "train.py"], root, env)
    blocked = _run(["git", "commit", "-m", "add training"], root, env)
    assert blocked.returncode != 0
    output = blocked.stdout + blocked.stderr
    assert "transplant check" in output and "Failed" in output
    assert "train.py:2:" in output and "TP5" in output
    assert "scratch.py" not in output.split("transplant check", 1)[1]

    (root / "train.py").write_text("import torch\n"
                                   "model = torch.nn.DataParallel(torch.nn.Linear(2, 2), device_ids=[0, 1])  # transplant: ignore[TP5]\n")
    _run(["git", "add", "train.py"], root, env)
    passed = _run(["git", "commit", "-m", "add training"], root, env)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout + passed.stderr


def test_hook_with_a_baseline(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    (root / "legacy.py").write_text("import torch\ntorch.cuda.synchronize()\n")
    assert _run(["transplant", "-i", ".", "--write-baseline", "transplant-baseline.json"], root, env).returncode == 0
    config = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())
    config["repos"][0]["hooks"][0]["args"] = ["--baseline", "transplant-baseline.json"]
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    _run(["git", "add", "-A"], root, env)
    run_all = [sys.executable, "-m", "pre_commit", "run", "--all-files"]
    ok = _run(run_all, root, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (root / "new.py").write_text("import torch\nx = torch.ones(1, device='cuda')\n")
    _run(["git", "add", "new.py"], root, env)
    failing = _run(run_all, root, env)
    assert failing.returncode == 1
    assert "new.py:2:" in failing.stdout and "legacy.py" not in failing.stdout.split("transplant check", 1)[1]
