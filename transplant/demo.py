"""``make demo`` (``python -m transplant.demo``): migrate a CUDA trainer and prove it trains the same on the NPU.

The demo uses the ALBERT-style fine-tuning script in ``fixtures/albert/original`` (a CUDA repository
in miniature: apex amp, DataParallel, nccl, ``torch.cuda`` calls). It

1. writes a tiny SST-2 style data set and a tiny "pretrained" ALBERT into the work folder,
2. migrates the repository with ``transplant -i ... -o ...`` and shows the main change,
3. runs ``transplant verify`` for 20 optimizer steps: the original on the CPU, the migrated script
   on the emulated Ascend NPU, and prints both loss columns side by side, the verdict and the plot,
4. prints a summary of the migration reports.

The claim is measured: the demo fails unless ``transplant verify`` found the two runs identical.
Everything goes into ``--workdir`` (default ``./demo-out``), which is recreated on every run.
The demo needs a source checkout (the fixtures are not part of the installed package) and the
``emulate`` extra (torch 2.13), as installed by ``make setup``.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

_REPO = Path(__file__).resolve().parent.parent
_ORIGINAL = _REPO / "fixtures" / "albert" / "original"
_MARKER = ".transplant-demo"
STEPS = 20


def _run(command: Sequence[str], *, cwd: Path, env: Optional[dict] = None, show: bool = True) -> str:
    """Run a step of the demo; on failure print its output and stop."""
    if show:
        print("$ " + " ".join(_shorten(part) for part in command), flush=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    done = subprocess.run(list(command), cwd=str(cwd), env=full_env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-8000:])
        raise SystemExit(f"demo: step failed with exit code {done.returncode}: {' '.join(command)}")
    return done.stdout


def _shorten(part: str) -> str:
    """Paths relative to the current folder, so the printed commands read like a tutorial."""
    if not os.path.isabs(part):
        return part
    try:
        relative = os.path.relpath(part)
    except ValueError:
        return part
    return part if relative.startswith("..") else relative


def _prepare_workdir(workdir: Path) -> None:
    if workdir.exists():
        if any(workdir.iterdir()) and not (workdir / _MARKER).exists():
            raise SystemExit(f"demo: {workdir} exists and was not made by the demo; choose another --workdir")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / _MARKER).write_text("made by python -m transplant.demo; deleted on the next run\n")


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# The lines that decide where the trainer runs: the device, the backend, the torch_npu import.
_MAIN_CHANGE = ("import torch_npu", 'torch.device("cuda"', "backend='nccl'")


def main_change_diff(original: Path, migrated: Path, markers: Sequence[str] = _MAIN_CHANGE) -> list[str]:
    """The diff hunks (no context) of ``migrated`` against ``original`` that touch one of ``markers``."""
    before = original.read_text(encoding="utf-8").splitlines()
    after = migrated.read_text(encoding="utf-8").splitlines()
    lines: list[str] = []
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed, added = before[i1:i2], after[j1:j2]
        if len(removed) + len(added) > 6 or not any(m in line for m in markers for line in removed + added):
            continue
        lines.append(f"@@ line {i1 + 1} @@")
        lines.extend(f"- {line.strip()}" for line in removed)
        lines.extend(f"+ {line.strip()}" for line in added)
    return lines


def _print_reports(out: Path, top: int) -> None:
    changes = _read_rows(out / "change_list.csv")
    unsupported = _read_rows(out / "unsupported_api.csv")
    native_ops = _read_rows(out / "cuda_op_list.csv")
    print("Migration reports:")
    print(f"  change_list.csv      {len(changes):3d} row(s)")
    print(f"  unsupported_api.csv  {len(unsupported):3d} row(s)")
    print(f"  cuda_op_list.csv     {len(native_ops):3d} row(s)")
    if changes:
        print(f"Top {min(top, len(changes))} changes:")
        for row in changes[:top]:
            where = f"{row['File']}:{row['Start Line']}"
            print(f"  {where:24s} {row['Operation Type']:7s} {row.get('Rule', ''):6s} {row['Message'][:90]}")
    if unsupported:
        print(f"Top {min(top, len(unsupported))} unsupported uses (left as they are, with a tip):")
        for row in unsupported[:top]:
            where = f"{row['File']}:{row['Start Line']}"
            print(f"  {where:24s} {row.get('Rule', ''):6s} {row['OP']}: {row['Tips'][:80]}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m transplant.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("demo-out"),
                        help="folder for the data, the migrated code, the runs and the report (recreated)")
    parser.add_argument("--steps", type=int, default=STEPS, help="optimizer steps to compare")
    parser.add_argument("--top", type=int, default=8, help="report rows to show per report")
    args = parser.parse_args(argv)

    if not _ORIGINAL.is_dir():
        raise SystemExit(f"demo: {_ORIGINAL} not found: the demo runs from a source checkout of transplant")
    workdir = args.workdir.resolve()
    _prepare_workdir(workdir)
    python = sys.executable
    fake = workdir / "fake"
    migrated = workdir / "albert_npu"
    report_dir = workdir / "verify"

    print("== 1. A tiny SST-2 data set and a tiny randomly initialised ALBERT")
    _run([python, "prepare_fake_data.py", "--output_dir", str(fake)], cwd=_ORIGINAL)

    print("\n== 2. Migrate the CUDA trainer to Ascend NPU")
    # the repository has two __main__ + argparse scripts (the trainer, the data generator): name the trainer
    _run([python, "-m", "transplant", "-i", str(_ORIGINAL), "-o", str(migrated), "--quiet",
          "--entry", "run_classifier.py"], cwd=Path.cwd())
    print(f"   migrated code and reports in {_shorten(str(migrated))}; the main change, in run_classifier.py:")
    for line in main_change_diff(_ORIGINAL / "run_classifier.py", migrated / "run_classifier.py"):
        print(f"     {line}")

    print(f"\n== 3. Verify: the original on the CPU against the migrated trainer on the emulated NPU, "
          f"{args.steps} steps")
    model_dir = fake / "prev_trained_model" / "albert_tiny"
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        python, "-m", "transplant", "verify",
        "--original", str(_ORIGINAL), "--migrated", str(migrated),
        "--steps", str(args.steps), "--report-dir", str(report_dir), "--",
        "run_classifier.py",
        "--model_type", "albert",
        "--model_name_or_path", str(model_dir),
        "--vocab_file", str(model_dir / "vocab.txt"),
        "--task_name", "sst-2",
        "--do_train", "--do_lower_case",
        "--data_dir", str(fake / "dataset" / "sst-2"),
        "--max_seq_length", "32",
        "--per_gpu_train_batch_size", "8",
        "--learning_rate", "2e-2",
        "--max_steps", str(args.steps),
        "--logging_steps", "0",
        "--save_steps", "0",
        "--output_dir", str(workdir / "run") + "/",
        "--overwrite_output_dir",
    ]
    print("$ " + " ".join(_shorten(part) for part in command[:12]) + " -- run_classifier.py ...")
    full_env = dict(os.environ)
    full_env.update(env)
    done = subprocess.run(command, cwd=str(Path.cwd()), env=full_env, capture_output=True, text=True)
    print(done.stdout.rstrip())
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-8000:])
        raise SystemExit(f"demo: transplant verify found no parity (exit code {done.returncode}); "
                         f"see {_shorten(str(report_dir))}")

    print()
    _print_reports(migrated, args.top)
    print()
    print("The NPU was emulated on the CPU: the losses are real and match the original bit for bit; the speed "
          "is not an NPU's.")
    print(f"Next: read {_shorten(str(migrated / 'change_list.csv'))} and "
          f"{_shorten(str(migrated / 'unsupported_api.csv'))}; "
          f"{_shorten(str(migrated / 'run_distributed_npu.sh'))} launches the trainer on several NPUs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
