"""``transplant run``: exit codes, argv, the child bootstrap and strict-CUDA, end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from emulate_helpers import run_runner

from transplant.emulate import runner



def run_transplant(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    return run_runner(args, cwd=cwd, env=env, timeout=timeout)


def write(path: Path, code: str) -> Path:
    path.write_text(textwrap.dedent(code).lstrip())
    return path


# -- plumbing (no subprocess) ----------------------------------------------------------------------


def test_child_environment_puts_boot_and_shim_first() -> None:
    env = runner.child_environment(base={"PYTHONPATH": "/somewhere/else", "PATH": "/bin"})
    parts = env["PYTHONPATH"].split(os.pathsep)
    assert parts == [str(runner.boot_dir()), str(runner.shim_dir()), "/somewhere/else"]
    assert (runner.boot_dir() / "sitecustomize.py").is_file()
    assert (runner.shim_dir() / "torch_npu" / "__init__.py").is_file()
    assert env["TRANSPLANT_EMULATE"] == "1"
    assert "TRANSPLANT_STRICT_CUDA" not in env
    assert "TRANSPLANT_NPU_COUNT" not in env
    assert env["PATH"] == "/bin"


def test_child_environment_strict_and_device_count() -> None:
    assert runner.child_environment(strict_cuda=True, base={})["TRANSPLANT_STRICT_CUDA"] == "raise"
    # The default 8 devices cover up to 8 ranks; more ranks need more devices.
    assert "TRANSPLANT_NPU_COUNT" not in runner.child_environment(nproc=8, base={})
    assert runner.child_environment(nproc=12, base={})["TRANSPLANT_NPU_COUNT"] == "12"
    assert runner.child_environment(nproc=4, base={"TRANSPLANT_NPU_COUNT": "2"})["TRANSPLANT_NPU_COUNT"] == "4"
    again = runner.child_environment(base={"PYTHONPATH": runner.child_environment(base={})["PYTHONPATH"]})
    assert again["PYTHONPATH"].split(os.pathsep) == [str(runner.boot_dir()), str(runner.shim_dir())]


def test_build_command() -> None:
    assert runner.build_command(["train.py", "--lr", "1"]) == [sys.executable, "train.py", "--lr", "1"]
    command = runner.build_command(["train.py", "--lr", "1"], nproc=2)
    assert command[:3] == [sys.executable, "-m", "_transplant_torchrun"]
    assert "--nproc_per_node=2" in command and "--master_addr=127.0.0.1" in command
    port = [c for c in command if c.startswith("--master_port=")]
    assert len(port) == 1 and 0 < int(port[0].split("=")[1]) < 65536
    assert command[-3:] == ["train.py", "--lr", "1"]
    with pytest.raises(ValueError):
        runner.build_command([])
    with pytest.raises(ValueError):
        runner.build_command(["x.py"], nproc=0)


# -- end to end ------------------------------------------------------------------------------------


def test_exit_code_and_argv_pass_through(tmp_path: Path) -> None:
    script = write(
        tmp_path / "exits.py",
        """
        import json, sys
        print(json.dumps({"argv": sys.argv, "name": __name__, "path0": sys.path[0],
                          "torch_loaded": "torch" in sys.modules}))
        sys.exit(int(sys.argv[1]))
        """,
    )
    result = run_transplant([str(script), "7", "--flag", "x y"], cwd=tmp_path)
    assert result.returncode == 7, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {"argv": [str(script), "7", "--flag", "x y"], "name": "__main__",
                    "path0": str(tmp_path), "torch_loaded": False}


def test_import_torch_npu_before_torch(tmp_path: Path) -> None:
    # Hand-ported scripts often start with `import torch_npu`: its activation imports torch, which
    # fires the boot hook's own activation inside it; both must complete.
    script = write(
        tmp_path / "npu_first.py",
        """
        import torch_npu
        import torch
        x = torch.ones(3).npu()
        print(x.device, (x * 2).sum().item())
        """,
    )
    result = run_transplant([str(script)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["npu:0", "6.0"]


def test_death_by_signal_is_reported_as_128_plus_n(tmp_path: Path) -> None:
    script = write(tmp_path / "killed.py", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    # In process, through the public function (the path the CLI takes).
    assert runner.run([str(script)]) == 128 + signal.SIGTERM


@pytest.mark.slow
def test_children_are_emulated_too(tmp_path: Path) -> None:
    other_site = tmp_path / "other_site"
    other_site.mkdir()
    # A pre-existing sitecustomize must still run (ours shadows it and chains to it).
    write(other_site / "sitecustomize.py", "import os\nos.environ['OTHER_SITECUSTOMIZE'] = 'ran'\n")
    script = write(
        tmp_path / "parent.py",
        """
        import json, os, subprocess, sys
        import torch  # no torch_npu import: the boot hook activates the emulator with torch
        import transplant.emulate as emu
        from torch.utils.data import DataLoader, Dataset

        class Probe(Dataset):
            def __len__(self):
                return 2
            def __getitem__(self, i):
                import torch.distributed as dist
                return torch.tensor([float(emu.is_active()), float(dist.is_backend_available("hccl"))])

        if __name__ == "__main__":
            child = subprocess.run(
                [sys.executable, "-c",
                 "import torch, transplant.emulate as e; "
                 "print(e.is_active(), torch.zeros(1, device='npu:1').device, torch.npu.device_count())"],
                capture_output=True, text=True, check=True)
            loader = DataLoader(Probe(), batch_size=2, num_workers=1, pin_memory=True,
                                multiprocessing_context="spawn")
            batch = next(iter(loader))
            print(json.dumps({
                "parent": emu.is_active(),
                "other_sitecustomize": os.environ.get("OTHER_SITECUSTOMIZE"),
                "subprocess": child.stdout.split(),
                "spawned_worker": batch.tolist(),
                "pinned": batch.is_pinned(),
            }))
        """,
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(other_site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = run_transplant([str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen == {
        "parent": True,
        "other_sitecustomize": "ran",
        "subprocess": ["True", "npu:1", "8"],
        "spawned_worker": [[1.0, 1.0], [1.0, 1.0]],
        "pinned": True,
    }


@pytest.mark.slow
def test_strict_cuda_names_file_and_line(tmp_path: Path) -> None:
    script = write(
        tmp_path / "leftover.py",
        """
        import torch
        import torch_npu

        device = "npu" if torch.npu.is_available() else "cpu"
        use_cuda = torch.cuda.is_available()
        print("unreachable in strict mode", use_cuda)
        """,
    )
    strict = run_transplant(["--strict-cuda", str(script)], cwd=tmp_path)
    assert strict.returncode == 1
    assert "unreachable" not in strict.stdout
    assert f"torch.cuda.is_available() at {script}:5" in strict.stderr


def test_auto_mode_reaches_children(tmp_path: Path) -> None:
    script = write(
        tmp_path / "auto_probe.py",
        "import sys\nprint('transplant.auto' in sys.modules)\n",
    )
    env = dict(os.environ, TRANSPLANT_AUTO="1")
    result = run_transplant([str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "True"
    without = run_transplant([str(script)], cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "TRANSPLANT_AUTO"})
    assert without.stdout.strip().splitlines()[-1] == "False"


def test_refuses_when_the_real_torch_npu_is_importable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_site = tmp_path / "site"
    (fake_site / "torch_npu").mkdir(parents=True)
    (fake_site / "torch_npu" / "__init__.py").write_text("")
    script = write(tmp_path / "never_runs.py", f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    assert runner.real_torch_npu_location() is None  # our stand-in does not count
    monkeypatch.syspath_prepend(str(fake_site))
    assert runner.real_torch_npu_location() == str(fake_site / "torch_npu" / "__init__.py")
    with pytest.raises(RuntimeError, match=r"the real torch_npu is installed .*site/torch_npu"):
        runner.run([str(script)])
    assert not (tmp_path / "ran").exists()
