"""run_distributed_npu.sh: valid bash, shellcheck-clean, and the torchrun command line it builds."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cli_helpers import MODEL_PY, TRAIN_PY, write_tree
from transplant.launch import choose_entry, is_entry_candidate, render_launch_script

FAKE_TORCHRUN = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$ARGV_FILE"
echo "HCCL_CONNECT_TIMEOUT=$HCCL_CONNECT_TIMEOUT" >> "$ARGV_FILE"
"""


@pytest.fixture
def fake_torchrun(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "torchrun"
    tool.write_text(FAKE_TORCHRUN)
    tool.chmod(0o755)
    return bin_dir


def launch(script: Path, bin_dir: Path, tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str], str]:
    argv_file = tmp_path / "argv.txt"
    argv_file.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items()
            if k not in {"ASCEND_RT_VISIBLE_DEVICES", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR",
                         "MASTER_PORT", "HCCL_CONNECT_TIMEOUT", "TORCHRUN", "ENTRY_SCRIPT"}}
    base.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", ARGV_FILE=str(argv_file), **env)
    # Run from another folder: the script must not depend on the working directory.
    proc = subprocess.run([str(script), *args], env=base, cwd="/", capture_output=True, text=True, timeout=30)
    lines = argv_file.read_text().splitlines() if argv_file.exists() else []
    return proc.returncode, lines, proc.stderr


@pytest.fixture
def migrated(invoke, tmp_path: Path) -> Path:
    src = write_tree(tmp_path / "my project", {"train.py": TRAIN_PY, "net.py": MODEL_PY})
    out = tmp_path / "out dir"
    assert invoke("-i", src, "-o", out).exit_code == 0
    return out


def test_written_executable_and_valid(migrated: Path) -> None:
    script = migrated / "run_distributed_npu.sh"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by `make setup`")
@pytest.mark.parametrize("entry", ["train.py", "sub dir/it's $HOME.py", None])
def test_shellcheck_clean(tmp_path: Path, entry: str | None) -> None:
    script = tmp_path / "run.sh"
    script.write_text(render_launch_script(entry))
    proc = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_default_command_line(migrated: Path, fake_torchrun: Path, tmp_path: Path) -> None:
    code, argv, _ = launch(migrated / "run_distributed_npu.sh", fake_torchrun, tmp_path, "--epochs", "2",
                           "a b", "$HOME")
    assert code == 0
    assert argv == [
        "--nnodes=1", "--node_rank=0", "--nproc_per_node=8", "--master_addr=127.0.0.1", "--master_port=29500",
        str(migrated / "train.py"), "--epochs", "2", "a b", "$HOME", "HCCL_CONNECT_TIMEOUT=1200",
    ]


def test_visible_devices_set_the_process_count(migrated: Path, fake_torchrun: Path, tmp_path: Path) -> None:
    _, argv, _ = launch(migrated / "run_distributed_npu.sh", fake_torchrun, tmp_path,
                        ASCEND_RT_VISIBLE_DEVICES="0,3, 5")
    assert "--nproc_per_node=3" in argv


def test_environment_overrides(migrated: Path, fake_torchrun: Path, tmp_path: Path) -> None:
    _, argv, _ = launch(migrated / "run_distributed_npu.sh", fake_torchrun, tmp_path,
                        ASCEND_RT_VISIBLE_DEVICES="0,1", NPROC_PER_NODE="4", NNODES="2", NODE_RANK="1",
                        MASTER_ADDR="10.0.0.1", MASTER_PORT="6000", HCCL_CONNECT_TIMEOUT="60")
    assert argv[:5] == ["--nnodes=2", "--node_rank=1", "--nproc_per_node=4", "--master_addr=10.0.0.1",
                        "--master_port=6000"]
    assert argv[-1] == "HCCL_CONNECT_TIMEOUT=60"


def test_torchrun_command_override(migrated: Path, fake_torchrun: Path, tmp_path: Path) -> None:
    wrapper = tmp_path / "bin" / "launcher"
    wrapper.write_text('#!/usr/bin/env bash\necho "$1" > "$ARGV_FILE.first"\nshift\nexec torchrun "$@"\n')
    wrapper.chmod(0o755)
    code, argv, _ = launch(migrated / "run_distributed_npu.sh", fake_torchrun, tmp_path, "x",
                           TORCHRUN=f"{wrapper} --emulated")
    assert code == 0
    assert (tmp_path / "argv.txt.first").read_text().strip() == "--emulated"
    assert argv[0] == "--nnodes=1" and argv[-2] == "x"


def test_entry_option(invoke, tmp_path: Path, fake_torchrun: Path) -> None:
    src = write_tree(tmp_path / "src", {"train.py": TRAIN_PY, "tools/finetune.py": TRAIN_PY})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out, "--entry", "tools/finetune.py").exit_code == 0
    _, argv, _ = launch(out / "run_distributed_npu.sh", fake_torchrun, tmp_path)
    assert argv[5] == str(out / "tools" / "finetune.py")


def test_no_entry_detected(invoke, tmp_path: Path, fake_torchrun: Path) -> None:
    src = write_tree(tmp_path / "src", {"net.py": MODEL_PY})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    code, argv, stderr = launch(out / "run_distributed_npu.sh", fake_torchrun, tmp_path)
    assert code == 1 and argv == []
    assert "ENTRY_SCRIPT" in stderr and "--entry" in stderr
    # ENTRY_SCRIPT supplies it at run time.
    (out / "go.py").write_text("pass\n")
    code, argv, _ = launch(out / "run_distributed_npu.sh", fake_torchrun, tmp_path, ENTRY_SCRIPT="go.py")
    assert code == 0 and argv[5] == str(out / "go.py")


def test_entry_detection() -> None:
    assert is_entry_candidate(TRAIN_PY)
    assert not is_entry_candidate(MODEL_PY)
    assert not is_entry_candidate(b"import argparse\n# if __name__ == '__main__':\n")
    assert not is_entry_candidate(b"if __name__ == '__main__':\n    main()\n")  # no argparse
    assert choose_entry([]) is None
    assert choose_entry(["tools/train.py"]) == "tools/train.py"
    # several trainers (pytorch/examples): never guessed between
    assert choose_entry(["tools/eval.py", "scripts/train_big.py", "main.py"]) is None
    assert choose_entry(["z.py", "a.py"]) is None


def test_several_entries_need_entry_option(invoke, tmp_path: Path, fake_torchrun: Path) -> None:
    """With several __main__ + argparse scripts no launcher is written; the log and the JSON report list
    the candidates; with --entry the launcher runs the named one."""
    import json

    src = write_tree(tmp_path / "src", {"mnist/main.py": TRAIN_PY, "imagenet/main.py": TRAIN_PY, "net.py": MODEL_PY})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out)
    assert result.exit_code == 0
    assert not (out / "run_distributed_npu.sh").exists()
    log = (out / "transplant.log").read_text()
    assert "launcher not written: several entry scripts, re-run with --entry FILE: imagenet/main.py, mnist/main.py" \
        in log
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["entry"] is None and report["entry_candidates"] == ["imagenet/main.py", "mnist/main.py"]
    out2 = tmp_path / "out2"
    assert invoke("-i", src, "-o", out2, "--entry", "mnist/main.py").exit_code == 0
    code, argv, stderr = launch(out2 / "run_distributed_npu.sh", fake_torchrun, tmp_path)
    assert code == 0 and argv[5] == str(out2 / "mnist" / "main.py")


def test_launcher_prints_what_it_runs(migrated: Path, fake_torchrun: Path, tmp_path: Path) -> None:
    code, _, stderr = launch(migrated / "run_distributed_npu.sh", fake_torchrun, tmp_path, "--lr", "a b")
    assert code == 0
    assert stderr.startswith("run_distributed_npu.sh: running: torchrun --nnodes=1 --node_rank=0 ")
    assert stderr.rstrip().endswith(f"{migrated / 'train.py'} --lr a\\ b".replace(" dir", "\\ dir")), stderr
