"""The ``transplant`` command line (click): parse options, call the library, print the tally.

``transplant -i SRC -o OUT [options]`` migrates; ``transplant rules [ID]`` documents the rules;
``transplant run script.py [args...]`` runs a script on the emulated NPU.
``transplant verify --original SRC [--migrated OUT] -- script.py [args...]`` compares both runs step by step.

Exit codes: 0 done (``--check``: clean); 1 ``--check`` found something to change, an unsupported use or
an unparseable file that is neither suppressed nor in the baseline (or a worker process died); 2 usage
error or refusal (bad paths, bad rule file, bad ``[tool.transplant]``, OUT locked by another run); 3 an
I/O error (disk full, permission) stopped the run; 130 interrupted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

import transplant as _package

# getattr: if the unrelated `transplant` distribution overwrote our __init__, say so in main() instead of
# failing here with an ImportError.
__version__ = getattr(_package, "__version__", "unknown")

EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_IO = 3
EXIT_INTERRUPTED = 130


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit: refusals must be readable at a glance."""
    from transplant.display import one_line

    click.echo(f"transplant: error: {one_line(message)}", err=True)
    sys.exit(code)


class _EchoHandler(logging.Handler):
    """Library warnings (unparseable files, ...) to the current stderr, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        from transplant.display import one_line

        click.echo(f"transplant: {record.levelname.lower()}: {one_line(record.getMessage())}", err=True)


@contextmanager
def _library_logging(quiet: bool) -> Iterator[None]:
    logger = logging.getLogger("transplant")
    handler = _EchoHandler(logging.ERROR if quiet else logging.WARNING)
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so the temp-file clean-up in migrate runs (and remember it)."""
    from transplant._entry import raise_interrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread (e.g. embedded): keep the default behaviour
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Progress:
    """A tqdm bar on stderr: at once on a terminal, otherwise only when the run turns out long."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def start(self, total: int) -> None:
        if self.quiet or total == 0:
            return
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: worker processes are forked after this
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True,
                        delay=0.5 if tty else 10.0, mininterval=0.1 if tty else 10.0)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_MAIN_HELP = """Move PyTorch CUDA training code to Huawei Ascend NPUs (torch_npu).

\b
  transplant -i SRC -o OUT [options]     migrate a project (or one .py file) into OUT
  transplant rules [ID]                  list the rules, or show one in full
  transplant run [--nproc N] script.py   run a (migrated) script on the emulated NPU
  transplant verify --original SRC [--migrated OUT | --auto] -- script.py [args...]
                                         prove the migration trains like the original

OUT mirrors SRC: every file is copied, Python files are rewritten where a rule applies, files with
nothing to change are copied byte for byte, and SRC is never written. Files ignored by .gitignore or
.ignore are copied unchanged; .git, virtualenvs, caches and build folders are not copied. OUT also
receives change_list.csv, unsupported_api.csv, cuda_op_list.csv, transplant_report.json,
transplant_report.html, transplant.diff, transplant.log and run_distributed_npu.sh (a torchrun
launcher). Settings may also come from [tool.transplant] in the project's pyproject.toml.

A `# transplant: ignore[TP541]` (or bare `# transplant: ignore`) comment acknowledges a use.

Exit codes: 0 done (--check: clean); 1 --check found work; 2 usage error or refusal; 3 I/O error;
130 interrupted.
"""


@click.group(
    name="transplant",
    invoke_without_command=True,
    help=_MAIN_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("-i", "--input", "src", type=click.Path(path_type=Path), metavar="SRC",
              help="Project folder or single .py file to migrate (never written).")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), metavar="OUT",
              help="Output folder; must be empty (see --force) and outside SRC.")
@click.option("-r", "--rules", "rule_files", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="Extra JSON rule set (repeatable); a rule with a bundled rule's id replaces it.")
@click.option("--select", multiple=True, metavar="ID-PREFIX",
              help="Apply only rules whose id starts with this (repeatable), e.g. TP1.")
@click.option("--ignore", multiple=True, metavar="ID-PREFIX",
              help="Do not apply rules whose id starts with this (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Copy matching files unchanged (repeatable). A GLOB without '/' matches a name at any "
                   "depth; with '/' it matches the path from SRC. A matching folder excludes its content.")
@click.option("--diff", is_flag=True, help="Print a unified diff of the rewrites; write nothing.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 if any file would change, has an unsupported API or cannot be "
                   "parsed (a CI gate).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Worker processes (default: number of cores).")
@click.option("--force", is_flag=True, help="Write into a non-empty OUT (files of the same name are replaced).")
@click.option("--entry", metavar="FILE",
              help="Entry script of run_distributed_npu.sh (default: detected: a __main__ script using argparse).")
@click.option("--amp", type=click.Choice(["fp16", "bf16"]), is_flag=False, flag_value="fp16", default=None,
              help="Enable mixed precision in the migrated code (bare --amp means fp16).")
@click.option("--npu-fused-optimizers", is_flag=True,
              help="Replace torch/apex optimizers with torch_npu's fused NPU optimizers where equivalent.")
@click.option("--no-cross-file", "no_cross_file", is_flag=True,
              help="Follow device and backend values within each file only (no project index).")
@click.option("--file-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True, metavar="SECONDS",
              help="Give up on a Python file after this long (it is copied unchanged and listed as skipped); "
                   "0: no limit.")
@click.option("--max-memory", type=click.IntRange(min=0), default=2048, show_default=True, metavar="MiB",
              help="Memory bound of each worker process; a file needing more is copied unchanged and listed "
                   "as skipped. 0: no limit.")
@click.option("--trust-pickles", is_flag=True,
              help="Add weights_only=False to torch.load calls that may unpickle Python objects (only for "
                   "checkpoints from trusted sources; see transplant rules TP171).")
@click.option("--rewrite-configs", is_flag=True,
              help="Also rewrite device/backend values (cuda, gpu, nccl) of YAML/JSON/INI config files "
                   "(by default they are review rows only).")
@click.option("--no-analysis", is_flag=True,
              help="Skip the static API analysis (unknown_api.csv, api_precision_advice.csv, "
                   "api_performance_advice.csv, affinity_api_call.csv).")
@click.option("--no-ignore", is_flag=True,
              help="Migrate files that .gitignore/.ignore ignore too (by default they are copied unchanged).")
@click.option("--copy-vcs", is_flag=True, help="Copy .git/.hg/.svn into OUT (by default they are left out).")
@click.option("--baseline", type=click.Path(path_type=Path), metavar="FILE",
              help="With --check: findings recorded in FILE (see --write-baseline) do not fail the check.")
@click.option("--write-baseline", type=click.Path(path_type=Path), metavar="FILE",
              help="Record every current finding in FILE and exit 0 (implies --check; writes nothing else).")
@click.option("--statistics", is_flag=True, help="With --check: print the number of findings per rule.")
@click.option("--output-format", type=click.Choice(["text", "json", "github", "sarif"]), default=None,
              help="With --check: how findings are printed on stdout (default: text).")
@click.option("--show-settings", is_flag=True,
              help="Print the resolved settings (pyproject.toml [tool.transplant] + command line) and exit.")
@click.option("--distributed", is_flag=True,
              help="Convert the single-device training script (--entry, else every script that parses "
                   "arguments and trains) to DistributedDataParallel on HCCL under torchrun.")
@click.option("--model", metavar="NAME",
              help="With --distributed: the model variable to wrap, e.g. self.model (default: detected from "
                   "the optimizer's parameters).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no tally; errors only.")
@click.version_option(__version__, "-V", "--version", prog_name="transplant")
@click.pass_context
def cli(ctx: click.Context, src: Path | None, out: Path | None, rule_files: tuple[Path, ...],
        select: tuple[str, ...], ignore: tuple[str, ...], exclude: tuple[str, ...], diff: bool, check: bool,
        jobs: int | None, force: bool, entry: str | None, amp: str | None, npu_fused_optimizers: bool,
        no_cross_file: bool, trust_pickles: bool, rewrite_configs: bool, no_analysis: bool,
        no_ignore: bool, copy_vcs: bool, baseline: Path | None, write_baseline: Path | None, statistics: bool,
        output_format: str | None, show_settings: bool, distributed: bool, model: str | None,
        file_timeout: float, max_memory: int, quiet: bool) -> None:
    if ctx.invoked_subcommand is not None:
        if src is not None or out is not None:
            _fail(f"-i/-o are migration options; they do not go with '{ctx.invoked_subcommand}'")
        return
    given = _given_settings(ctx)
    if show_settings:
        sys.exit(show_settings_command(src or Path("."), given))
    if src is None:
        if out is None and not ctx.args:
            click.echo(ctx.get_help())
            sys.exit(EXIT_USAGE)
        _fail("missing -i/--input SRC (see transplant --help)")
    check = check or write_baseline is not None
    if not check:
        for name, value in (("--baseline", baseline), ("--statistics", statistics or None),
                            ("--output-format", output_format)):
            if value is not None:
                _fail(f"{name} goes with --check")
    if diff and (output_format not in (None, "text") or statistics):
        _fail("--output-format/--statistics do not go with --diff (both would print on stdout)")
    settings = _resolve_settings(src, given)
    if model is not None and not distributed:
        _fail("--model goes with --distributed")
    code = migrate_command(
        src=src, out=out, rule_files=tuple(Path(p) for p in settings.rule_files), select=settings.select,
        ignore=settings.ignore, exclude=settings.exclude, diff=diff, check=check, jobs=jobs or _default_jobs(),
        force=force, entry=entry, amp=settings.amp, npu_fused_optimizers=settings.npu_fused_optimizers,
        quiet=quiet, respect_ignore=settings.respect_ignore, copy_vcs=settings.copy_vcs,
        baseline=Path(settings.baseline) if settings.baseline and check and write_baseline is None else None,
        write_baseline=write_baseline,
        statistics=statistics, output_format=output_format or "text",
        trust_pickles=trust_pickles, cross_file=not no_cross_file, rewrite_configs=rewrite_configs,
        analysis=not no_analysis, distributed=distributed, model=model,
        file_timeout=file_timeout, max_memory=max_memory,
    )
    sys.exit(code)


# Command-line options that are also [tool.transplant] settings: option name -> (settings field, convert).
_SETTING_OPTIONS: dict[str, tuple[str, Any]] = {
    "select": ("select", tuple),
    "ignore": ("ignore", tuple),
    "exclude": ("exclude", tuple),
    "rule_files": ("rule_files", lambda files: tuple(str(f) for f in files)),
    "amp": ("amp", lambda value: value),
    "npu_fused_optimizers": ("npu_fused_optimizers", bool),
    "no_ignore": ("respect_ignore", lambda flag: not flag),
    "copy_vcs": ("copy_vcs", bool),
    "baseline": ("baseline", lambda path: str(path) if path is not None else None),
}


def _given_settings(ctx: click.Context) -> dict[str, Any]:
    """The settings the user typed on the command line (defaults are not "given": the file may set them)."""
    given: dict[str, Any] = {}
    for option, (field, convert) in _SETTING_OPTIONS.items():
        if ctx.get_parameter_source(option) is click.core.ParameterSource.COMMANDLINE:
            given[field] = convert(ctx.params[option])
    return given


def _resolve_settings(src: Path, given: Mapping[str, Any]) -> Any:
    from transplant.settings import SettingsError, resolve

    try:
        return resolve(src, given)
    except SettingsError as exc:
        _fail(str(exc))


def show_settings_command(src: Path, given: Mapping[str, Any]) -> int:
    """``--show-settings``: the resolved settings and where each one came from, on stdout."""
    from transplant.settings import describe

    for line in describe(_resolve_settings(src, given)):
        click.echo(line)
    return 0


def migrate_command(*, src: Path, out: Path | None, rule_files: tuple[Path, ...], select: tuple[str, ...],
                    ignore: tuple[str, ...], exclude: tuple[str, ...], diff: bool, check: bool, jobs: int,
                    force: bool, entry: str | None, amp: str | None, npu_fused_optimizers: bool,
                    quiet: bool, respect_ignore: bool = True, copy_vcs: bool = False,
                    baseline: Path | None = None, write_baseline: Path | None = None, statistics: bool = False,
                    output_format: str = "text", trust_pickles: bool = False, cross_file: bool = True,
                    rewrite_configs: bool = False, analysis: bool = True, distributed: bool = False,
                    model: str | None = None, file_timeout: float | None = None,
                    max_memory: int | None = None) -> int:
    """Run one migration as the command line does; returns the exit code."""
    from transplant.migrate import MigrationError, MigrationOptions, RuleConfig, migrate
    from transplant._entry import was_interrupted
    from transplant.display import one_line
    from transplant.report import summary_lines, unified_diff, write_reports
    from transplant.review import rule_summary_lines
    from transplant.results import FileResult, Status
    from transplant.rules import RuleFileError
    from transplant.workers import DEFAULT_BOUNDS, Bounds

    write = not (diff or check)
    config = RuleConfig(extra_files=tuple(str(p) for p in rule_files), select=select, ignore=ignore,
                        amp=amp, npu_fused_optimizers=npu_fused_optimizers, trust_pickles=trust_pickles,
                        rewrite_configs=rewrite_configs, distributed=distributed, model=model)
    options = MigrationOptions(src=src, out=out if write else None, rules=config, exclude=exclude, jobs=jobs,
                               write=write, force=force, entry=entry, respect_ignore=respect_ignore,
                               copy_vcs=copy_vcs, cross_file=cross_file, analysis=analysis,
                               bounds=Bounds(DEFAULT_BOUNDS.file_timeout if file_timeout is None else file_timeout,
                                             DEFAULT_BOUNDS.max_memory_mib if max_memory is None else max_memory))
    try:
        ruleset = config.load()
    except RuleFileError as exc:
        _fail(f"bad rule file: {exc}")
    accepted = _read_baseline(baseline) if baseline is not None else None  # before any work: fail fast

    src_root = src.parent if src.is_file() else src
    stdout = getattr(sys.stdout, "buffer", None)  # diffs are bytes in the files' own encodings
    progress = _Progress(quiet)

    def on_file(result: FileResult) -> None:
        if was_interrupted():
            raise KeyboardInterrupt  # an earlier one was swallowed (in a finalizer): stop now
        progress.advance()
        if diff and result.status is Status.CHANGED:
            text = unified_diff(result, (src_root / result.path).read_bytes())
            if text:
                if progress.bar is not None:
                    progress.bar.clear()
                if stdout is not None:
                    stdout.write(text)
                    stdout.flush()
                else:
                    click.echo(text.decode("utf-8", "replace"), nl=False)

    try:
        with _library_logging(quiet), _terminate_as_interrupt():
            try:
                migration = migrate(options, ruleset=ruleset, on_start=progress.start, on_file=on_file)
                if write:
                    assert out is not None
                    write_reports(migration, out, ruleset)
                    if analysis:
                        from transplant.analysis import static_report

                        analysis_rows = static_report.analyse_migration(migration)
                        static_report.write_analysis(analysis_rows, out)
            finally:
                progress.close()
    except MigrationError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        from transplant._entry import interrupted

        interrupted()
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"I/O error{where}: {exc.strerror or exc}; OUT is incomplete (every file in it is whole)", EXIT_IO)

    if check and not quiet and baseline is None and write_baseline is None:
        for result in migration.results:
            if result.status is Status.CHANGED:
                click.echo(f"transplant: would change {one_line(result.path)} ({len(result.changes)} edit(s))",
                           err=True)
            if result.unsupported:
                click.echo(f"transplant: {one_line(result.path)}: {len(result.unsupported)} unsupported API use(s)",
                           err=True)
    if not quiet:
        for line in [*rule_summary_lines(migration, ruleset), *summary_lines(migration)]:
            click.echo(f"transplant: {line}", err=True)
        if write and analysis:
            from transplant.analysis.static_report import summary_lines as analysis_lines

            for line in analysis_lines(analysis_rows):
                click.echo(f"transplant: {line}", err=True)
        if write:
            click.echo(f"transplant: wrote {one_line(str(out))}", err=True)
    if check:
        return _gate(migration, ruleset, accepted=accepted, write_baseline=write_baseline, statistics=statistics,
                     output_format=output_format, quiet=quiet, diff=diff)
    return 0


def _read_baseline(path: Path) -> Any:
    from transplant.findings import BaselineError, read_baseline

    try:
        return read_baseline(path)
    except BaselineError as exc:
        _fail(str(exc), EXIT_IO if not path.is_file() else EXIT_USAGE)


def _gate(migration: Any, ruleset: Any, *, accepted: Any, write_baseline: Path | None,
          statistics: bool, output_format: str, quiet: bool, diff: bool) -> int:
    """``--check``: print the findings the baseline does not accept; 1 if there are any."""
    from transplant.check_output import render
    from transplant.check_output import statistics as per_rule
    from transplant.findings import apply_baseline, collect
    from transplant.findings import write_baseline as save_baseline

    findings = collect(migration)
    if write_baseline is not None:
        try:
            save_baseline(write_baseline, findings)
        except OSError as exc:
            _fail(f"cannot write the baseline {write_baseline}: {exc.strerror or exc}", EXIT_IO)
        if not quiet:
            click.echo(f"transplant: wrote {len(findings)} finding(s) to the baseline {write_baseline}", err=True)
        return 0
    gate = apply_baseline(findings, accepted)
    messages = {rule.id: rule.message for rule in ruleset.rules}
    cwd = Path.cwd()

    def display(rel: str) -> str:
        path = (migration.src_root / rel).absolute()
        try:
            return path.relative_to(cwd).as_posix()
        except ValueError:
            return path.as_posix()

    text = per_rule(gate.new, output_format, messages) if statistics else \
        render(gate.new, output_format, display, messages)
    if text and not (diff and output_format == "text" and not statistics):
        click.echo(text, nl=False)
    if not quiet:
        parts = [f"{len(gate.new)} finding(s)"]
        if migration.tally.suppressed:
            parts.append(f"{migration.tally.suppressed} suppressed by comments")
        if accepted is not None:
            parts.append(f"{gate.baselined} in the baseline")
            if gate.stale:
                parts.append(f"{gate.stale} baseline entr{'y' if gate.stale == 1 else 'ies'} fixed since "
                             "(rewrite it with --write-baseline)")
        click.echo(f"transplant: check: {', '.join(parts)}", err=True)
    return EXIT_CHECK_FAILED if gate.new else 0


@cli.command("rules")
@click.argument("rule_id", required=False, metavar="[ID]")
@click.option("-r", "--rules", "rule_files", multiple=True, type=click.Path(path_type=Path), metavar="FILE",
              help="Also load this rule set (repeatable), as the migration would.")
def rules_command(rule_id: str | None, rule_files: tuple[Path, ...]) -> None:
    """List every rule (id, kind, severity, message), or show one rule in full.

    ID may also be a prefix (e.g. TP5) to list a range.
    """
    from transplant.rules import RuleFileError, load_ruleset

    try:
        ruleset = load_ruleset(extra_files=tuple(str(p) for p in rule_files))
    except RuleFileError as exc:
        _fail(f"bad rule file: {exc}")
    rules = sorted(ruleset.rules, key=lambda r: r.id)
    if rule_id is not None:
        exact = [r for r in rules if r.id == rule_id.upper()]
        if exact:
            click.echo(_describe_rule(exact[0]))
            return
        rules = [r for r in rules if r.id.startswith(rule_id.upper())]
        if not rules:
            _fail(f"no rule {rule_id} (see transplant rules)")
    kind_width = max((len(r.kind) for r in rules), default=4)
    for rule in rules:
        click.echo(f"{rule.id}  {rule.kind:<{kind_width}}  {rule.severity:<6}  {rule.message}")


_COMMON_RULE_FIELDS = ("id", "kind", "severity", "message", "tip", "reference", "description", "source")


def _describe_rule(rule: Any) -> str:
    lines = [f"{rule.id}  ({rule.kind}, {rule.severity})", f"  message:     {rule.message}"]
    if rule.tip:
        lines.append(f"  tip:         {rule.tip}")
    if rule.reference:
        lines.append(f"  reference:   {rule.reference}")
    if getattr(rule, "source", ""):
        lines.append(f"  defined in:  {rule.source}")
    if rule.description:
        lines.append("")
        for line in rule.description.strip().splitlines():
            # Wrap long lines only: descriptions may hold their own line breaks (lists).
            indent = "  " + line[: len(line) - len(line.lstrip())]
            lines.extend(textwrap.wrap(line.strip(), width=96, initial_indent=indent,
                                       subsequent_indent=indent, break_on_hyphens=False) or [""])
    details = []
    for f in dataclasses.fields(rule) if dataclasses.is_dataclass(rule) else ():
        if f.name in _COMMON_RULE_FIELDS or f.name.startswith("_"):
            continue
        value = getattr(rule, f.name)
        if value in ((), {}, "", None, frozenset()):
            continue
        details.extend(_format_field(f.name, value))
    if details:
        lines.append("")
        lines.extend(details)
    return "\n".join(lines)


def _format_field(name: str, value: Any) -> list[str]:
    if isinstance(value, Mapping):
        out = [f"  {name}:"]
        for key, item in value.items():
            out.append(f"    {key} -> {item}" if item not in ("", None) else f"    {key}")
        return out
    if isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value) if isinstance(value, (frozenset, set)) else value
        return [f"  {name}: {', '.join(map(str, items))}"]
    return [f"  {name}: {value}"]


@cli.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--strict-cuda", is_flag=True, help="Fail on any CUDA API the script still uses.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="N",
              help="Start N processes (an emulated torchrun with the hccl backend).")
@click.option("--op-report", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Record every operator reaching an npu tensor; write FILE (findings CSV), its .json and "
                   "_ops.csv, and print a summary at exit.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_command(strict_cuda: bool, nproc: int | None, op_report: Path | None, script: str,
                args: tuple[str, ...]) -> None:
    """Run SCRIPT (with its ARGS, passed through untouched) on the emulated NPU."""
    from transplant.emulate.runner import run

    if op_report is None:
        try:
            code = run([script, *args], strict_cuda=strict_cuda, nproc=nproc)
        except (RuntimeError, ValueError) as error:  # a real torch_npu present, a bad script/nproc
            _fail(str(error), EXIT_USAGE)
        sys.exit(code)

    import tempfile

    from transplant.analysis import op_report as reports

    if not op_report.parent.is_dir():
        _fail(f"--op-report: folder {op_report.parent} does not exist", EXIT_USAGE)
    with tempfile.TemporaryDirectory(prefix="transplant-ops-") as records:
        try:
            code = run([script, *args], strict_cuda=strict_cuda, nproc=nproc, op_record_dir=records)
        except (RuntimeError, ValueError) as error:
            _fail(str(error), EXIT_USAGE)
        report = reports.build(reports.load_records(Path(records)), base=Path.cwd())
    if report.processes == 0:
        click.echo("transplant: op report: no process recorded anything (did the script import torch?)", err=True)
    try:
        written = reports.write(report, op_report)
    except OSError as exc:
        _fail(f"--op-report: {exc.strerror or exc} ({exc.filename or op_report})", EXIT_IO)
    for line in reports.summary_lines(report, written):
        click.echo(f"transplant: {line}", err=True)
    sys.exit(code)


@cli.command(
    "verify",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--original", "original", required=True, type=click.Path(path_type=Path), metavar="SRC",
              help="The original (CUDA) project folder; its script is the reference.")
@click.option("--migrated", "migrated", type=click.Path(path_type=Path), metavar="OUT",
              help="The migrated project (transplant -i SRC -o OUT). Default: migrate SRC into a temporary folder.")
@click.option("--auto", is_flag=True, help="Compare against the unmodified original under auto mode instead.")
@click.option("--steps", type=click.IntRange(min=0), default=20, show_default=True, metavar="N",
              help="Stop both runs after N optimizer steps (0: run both scripts to their end).")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=0.0, show_default=True, metavar="REL",
              help="Relative difference allowed in losses and parameter statistics (0: bit-identical).")
@click.option("--nproc", type=click.IntRange(min=1), default=None, metavar="K",
              help="Run both sides with torchrun, K processes each.")
@click.option("--strict-cuda", is_flag=True, help="Leftover CUDA in the migrated run fails it (default: reported).")
@click.option("--reference", "reference_device", type=click.Choice(["cpu", "cuda"]), default="cpu",
              show_default=True, help="Where the original runs (cuda only when a CUDA GPU is present).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of torch, random and numpy at start.")
@click.option("--report-dir", type=click.Path(path_type=Path), default=Path("verify-out"), show_default=True,
              metavar="DIR", help="Where verify_report.json, the plot and both runs' logs go.")
@click.option("--timeout", type=click.FloatRange(min=1.0), default=1800.0, show_default=True, metavar="SECONDS",
              help="Longest time one run may take.")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def verify_command(original: Path, migrated: Path | None, auto: bool, steps: int, tolerance: float,
                   nproc: int | None, strict_cuda: bool, reference_device: str, seed: int, report_dir: Path,
                   timeout: float, script: str, args: tuple[str, ...]) -> None:
    """Prove a migration trains like the original: run both, compare every optimizer step.

    \b
      transplant verify --original SRC --migrated OUT -- train.py [args...]
      transplant verify --original SRC --auto -- train.py [args...]

    The original runs on the CPU, the migrated script on the emulated NPU, each in its own process
    with the same arguments and seeds; SCRIPT is relative to each project folder, which is also
    each run's working directory. At every optimizer step both record the loss backward() was
    called on and a fingerprint of every parameter group. Exit codes: 0 parity holds; 1 it does
    not (or a run failed, or there was nothing to compare); 2 usage error.
    """
    from transplant.verify import VerifyError, VerifyOptions, verify
    from transplant.verify.report import summary_lines, table_lines

    options = VerifyOptions(original=original, migrated=migrated, auto=auto, script=script, args=args,
                            steps=steps or None, tolerance=tolerance, nproc=nproc, strict_cuda=strict_cuda,
                            reference_device=reference_device, seed=seed, report_dir=report_dir,
                            timeout=timeout)
    try:
        with _terminate_as_interrupt():
            outcome = verify(options, on_progress=lambda message: click.echo(f"transplant: {message}", err=True))
    except VerifyError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; both runs were stopped", EXIT_INTERRUPTED)
    click.echo("Why the two runs are comparable:")
    for line in outcome.explanations:
        click.echo(textwrap.fill(line, width=100, initial_indent="  - ", subsequent_indent="    ",
                                 break_on_hyphens=False))
    click.echo("")
    for line in table_lines(outcome.comparison, outcome.original, outcome.migrated):
        click.echo(line)
    click.echo("")
    for line in summary_lines(outcome.comparison, outcome.original, outcome.migrated):
        click.echo(line)
    if outcome.plot_lines:
        click.echo("")
        for line in outcome.plot_lines:
            click.echo(line)
    click.echo("")
    click.echo(f"Loss plot: {outcome.plot_path}")
    click.echo(f"Report:    {outcome.report_path}")
    sys.exit(outcome.exit_code)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; an interrupt at any point (option parsing included) exits 130.

    click's own handling would turn Ctrl-C into "Aborted!" and exit status 1.
    """
    if getattr(_package, "__distribution__", None) != "transplant-npu":
        _fail(f"the package `transplant` imported from {getattr(_package, '__file__', '?')} is not transplant-npu: "
              "the unrelated `transplant` distribution (a Matlab bridge) shares the import name; run "
              "`pip uninstall transplant transplant-npu` and then `pip install transplant-npu`")
    from transplant._entry import interrupted, was_interrupted

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with _terminate_as_interrupt():
            # What click's main() does, without its KeyboardInterrupt handling (a blank line, then
            # "Aborted!" and exit status 1).
            with cli.make_context("transplant", args) as ctx:
                cli.invoke(ctx)
    except (KeyboardInterrupt, click.exceptions.Abort):
        interrupted()
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    if was_interrupted():  # the interrupt's exception was swallowed somewhere: still an interrupt
        interrupted()
    sys.exit(0)
