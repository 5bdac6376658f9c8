"""``transplant verify``: run the original and the migrated script side by side and compare them step by step.

:func:`verify` starts the original as the reference (CPU, or CUDA when asked and present) and the
migrated script on the emulated NPU (or the original under auto mode), with the same arguments,
seeds and data, each in its own process with the recorder of :mod:`transplant.verify.hook`. It
compares per-step losses and parameter fingerprints (:mod:`.compare`) and writes
``verify_report.json`` and a loss plot (:mod:`.report`). The CLI prints the result.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from transplant.verify import report as _report
from transplant.verify.compare import Comparison, compare
from transplant.verify.runs import RunResult, VerifySettings, execute, migrated_spec, reference_spec

__all__ = ["VerifyOptions", "VerifyOutcome", "VerifyError", "verify", "DEFAULT_STEPS"]

DEFAULT_STEPS = 20
DEFAULT_TIMEOUT = 1800.0


class VerifyError(Exception):
    """A usage problem found before anything ran (the CLI exits 2)."""


@dataclass(frozen=True)
class VerifyOptions:
    """One verification as the command line describes it."""

    original: Path
    script: str
    args: tuple[str, ...] = ()
    migrated: Optional[Path] = None      # None and not auto: migrate ``original`` into a temporary folder
    auto: bool = False
    steps: Optional[int] = DEFAULT_STEPS  # None: run both scripts to their end
    tolerance: float = 0.0
    nproc: Optional[int] = None
    strict_cuda: bool = False
    reference_device: str = "cpu"
    seed: int = 0
    report_dir: Path = Path("verify-out")
    timeout: float = DEFAULT_TIMEOUT
    png: Optional[bool] = None            # None: a PNG when matplotlib is importable


@dataclass
class VerifyOutcome:
    """Everything the CLI shows."""

    comparison: Comparison
    original: RunResult
    migrated: RunResult
    report_path: Path
    plot_path: Path
    plot_lines: list[str]
    explanations: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.comparison.passed else 1


def _script_in(root: Path, script: str, original_root: Path) -> str:
    path = Path(script)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(original_root)
        except ValueError:
            raise VerifyError(f"the script {script} is not inside the original project {original_root}") from None
    if not (root / path).is_file():
        raise VerifyError(f"no script {path.as_posix()} in {root}")
    return path.as_posix()


def _check(options: VerifyOptions) -> None:
    if not options.original.is_dir():
        raise VerifyError(f"--original {options.original}: not a project folder")
    if options.auto and options.migrated is not None:
        raise VerifyError("--auto runs the original under auto mode: it does not go with --migrated")
    if options.migrated is not None and not options.migrated.is_dir():
        raise VerifyError(f"--migrated {options.migrated}: not a folder")
    if options.steps is not None and options.steps < 1:
        raise VerifyError(f"--steps must be at least 1, got {options.steps}")
    if not options.tolerance >= 0:
        raise VerifyError(f"--tolerance must be 0 or more, got {options.tolerance}")
    if options.reference_device not in ("cpu", "cuda"):
        raise VerifyError(f"--reference must be cpu or cuda, got {options.reference_device}")
    if options.reference_device == "cuda" and not _cuda_available():
        raise VerifyError("--reference cuda: torch sees no CUDA device here; use --reference cpu")
    if options.report_dir.exists() and not options.report_dir.is_dir():
        raise VerifyError(f"--report-dir {options.report_dir}: not a folder")


def _cuda_available() -> bool:
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                          capture_output=True, text=True, timeout=300)
    return done.stdout.strip() == "True"


def _migrate_into(src: Path, out: Path) -> None:
    from transplant.migrate import MigrationError, MigrationOptions, RuleConfig, migrate
    from transplant.report import write_reports

    from transplant.rules import RuleFileError

    config = RuleConfig()
    try:
        migration = migrate(MigrationOptions(src=src, out=out, rules=config, jobs=1, write=True, force=True),
                            ruleset=config.load())
    except (MigrationError, RuleFileError) as exc:
        raise VerifyError(f"migrating {src} failed: {exc}") from None
    write_reports(migration, out)


def explanations(options: VerifyOptions) -> list[str]:
    """Why the two runs are comparable, in the words the report prints."""
    lines = [
        "same script, arguments and data; torch, random and numpy seeded with "
        f"{options.seed} at start in both (the script's own seeding still applies), PYTHONHASHSEED=0",
        "shared RNG mode: random ops on the emulated npu draw from the CPU generator, as the CPU "
        "original's do, so dropout masks and random initialisation match (a real NPU has its own "
        "generator, whose numbers differ)",
        "deterministic algorithms on (torch.use_deterministic_algorithms, warn only); DataLoader "
        "workers also seed numpy from their torch seed",
    ]
    if options.nproc:
        lines.append(f"{options.nproc} processes on each side (torchrun); the CPU reference runs on gloo "
                     "where the script asks for nccl")
    else:
        lines.append("one emulated npu device, as the reference has one CPU device (TRANSPLANT_NPU_COUNT=1)")
    lines.append("leftover CUDA in the migrated run is reported with --strict-cuda semantics"
                 + (" and fails it" if options.strict_cuda else " (warnings; --strict-cuda makes it fail)"))
    return lines


def verify(options: VerifyOptions, *, on_progress: Optional[Callable[[str], None]] = None) -> VerifyOutcome:
    """Run both sides, compare them, write the report and the plot.

    Raises:
        VerifyError: a usage problem (bad folder, missing script, bad numbers), before anything ran.
    """
    _check(options)
    progress = on_progress or (lambda message: None)
    original_root = options.original.resolve()
    temporary: Optional[Path] = None
    try:
        script = _script_in(original_root, options.script, original_root)
        if options.auto:
            migrated_root = original_root
        elif options.migrated is not None:
            migrated_root = options.migrated.resolve()
        else:
            temporary = Path(tempfile.mkdtemp(prefix="transplant-verify-"))
            migrated_root = temporary / "migrated"
            progress(f"migrating {options.original} into a temporary folder (pass --migrated OUT to keep one)")
            _migrate_into(original_root, migrated_root)
        _script_in(migrated_root, script, original_root)

        report_dir = options.report_dir.resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        work = report_dir / "runs"
        if work.exists():
            shutil.rmtree(work)  # only the logs of the previous verification live here
        settings = VerifySettings(script=script, args=tuple(options.args), steps=options.steps, seed=options.seed,
                                  nproc=options.nproc, strict_cuda=options.strict_cuda,
                                  reference_device=options.reference_device, timeout=options.timeout)
        reference = reference_spec(original_root, work, settings)
        candidate = migrated_spec(migrated_root, work, settings, auto=options.auto)

        results = []
        for spec in (reference, candidate):
            progress(f"running the {spec.label} ...")
            result = execute(spec, options.timeout)
            outcome = "timed out" if result.timed_out else f"exit code {result.returncode}"
            stop = f", stopped after {options.steps}" if result.stopped else ""
            progress(f"  {outcome} after {result.seconds:.1f} s: {len(result.steps())} optimizer step(s){stop}")
            results.append(result)
        original, migrated = results
        distributed_reference_failed = bool(options.nproc) and original.failed and not original.steps()
        # Under torchrun a script that reads --local_rank from argparse (torch.distributed.launch style)
        # never joins the process group: its ranks train alone, and their losses say nothing about DDP.
        first, other = original.steps()[:1], migrated.steps()[:1]
        not_distributed = bool(options.nproc) and options.nproc > 1 and not distributed_reference_failed and \
            bool(first) and bool(other) and first[0].get("process_group", 0) != options.nproc and \
            other[0].get("process_group", 0) == options.nproc  # only the migrated ranks formed a group
        comparison = compare(original, migrated, options.tolerance,
                             distributed_reference_failed=distributed_reference_failed or not_distributed)
        if distributed_reference_failed:
            comparison.notes.append("the original cannot run distributed on the reference device here: "
                                    + original.error_line())
        elif not_distributed:
            comparison.notes.append(f"the original's {options.nproc} ranks never joined a process group under "
                                    "torchrun (a torch.distributed.launch-style script reads --local_rank, which "
                                    "torchrun does not pass): each trained alone, so only the migrated ranks' "
                                    "agreement is checked")
        plot_path, plot_lines = _report.write_plot(report_dir, comparison, original, migrated, png=options.png)
        report_path = report_dir / _report.REPORT_NAME
        _report.write_json(report_path, comparison, original, migrated, _settings_record(options, script),
                           plot_path)
        return VerifyOutcome(comparison, original, migrated, report_path, plot_path, plot_lines,
                             explanations(options))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _settings_record(options: VerifyOptions, script: str) -> dict:
    return {
        "original": str(options.original), "migrated": str(options.migrated) if options.migrated else None,
        "auto": options.auto, "script": script, "args": list(options.args), "steps": options.steps,
        "tolerance": options.tolerance, "nproc": options.nproc, "strict_cuda": options.strict_cuda,
        "reference_device": options.reference_device, "seed": options.seed,
    }
