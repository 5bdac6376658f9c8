"""The ``transplant`` command line (click): parse options, call the library, print the tally.

``transplant -i SRC -o OUT [options]`` migrates; ``transplant rules [ID]`` documents the rules;
``transplant run script.py [args...]`` runs a script on the emulated NPU.

Exit codes: 0 done; 1 ``--check`` found something to change, an unsupported use or an unparseable
file; 2 usage error or refusal (bad paths, bad rule file, OUT locked by another run); 3 an I/O error
(disk full, permission) stopped the run; 130 interrupted.
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

from transplant import __version__

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

OUT mirrors SRC: every file is copied, Python files are rewritten where a rule applies, files with
nothing to change are copied byte for byte, and SRC is never written. OUT also receives
change_list.csv, unsupported_api.csv, cuda_op_list.csv, transplant_report.json, transplant.log and
run_distributed_npu.sh (a torchrun launcher).

Exit codes: 0 done; 1 --check found work; 2 usage error or refusal; 3 I/O error; 130 interrupted.
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
@click.option("--file-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True, metavar="SECONDS",
              help="Give up on a Python file after this long (it is copied unchanged and listed as skipped); "
                   "0: no limit.")
@click.option("--max-memory", type=click.IntRange(min=0), default=2048, show_default=True, metavar="MiB",
              help="Memory bound of each worker process; a file needing more is copied unchanged and listed "
                   "as skipped. 0: no limit.")
@click.option("--trust-pickles", is_flag=True,
              help="Add weights_only=False to torch.load calls that may unpickle Python objects (only for "
                   "checkpoints from trusted sources; see transplant rules TP171).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no tally; errors only.")
@click.version_option(__version__, "-V", "--version", prog_name="transplant")
@click.pass_context
def cli(ctx: click.Context, src: Path | None, out: Path | None, rule_files: tuple[Path, ...],
        select: tuple[str, ...], ignore: tuple[str, ...], exclude: tuple[str, ...], diff: bool, check: bool,
        jobs: int | None, force: bool, entry: str | None, amp: str | None, npu_fused_optimizers: bool,
        file_timeout: float, max_memory: int, trust_pickles: bool, quiet: bool) -> None:
    if ctx.invoked_subcommand is not None:
        if src is not None or out is not None:
            _fail(f"-i/-o are migration options; they do not go with '{ctx.invoked_subcommand}'")
        return
    if src is None:
        if out is None and not ctx.args:
            click.echo(ctx.get_help())
            sys.exit(EXIT_USAGE)
        _fail("missing -i/--input SRC (see transplant --help)")
    code = migrate_command(
        src=src, out=out, rule_files=rule_files, select=select, ignore=ignore, exclude=exclude, diff=diff,
        check=check, jobs=jobs or _default_jobs(), force=force, entry=entry, amp=amp,
        npu_fused_optimizers=npu_fused_optimizers, trust_pickles=trust_pickles, quiet=quiet,
        file_timeout=file_timeout, max_memory=max_memory,
    )
    sys.exit(code)


def migrate_command(*, src: Path, out: Path | None, rule_files: tuple[Path, ...], select: tuple[str, ...],
                    ignore: tuple[str, ...], exclude: tuple[str, ...], diff: bool, check: bool, jobs: int,
                    force: bool, entry: str | None, amp: str | None, npu_fused_optimizers: bool,
                    quiet: bool, trust_pickles: bool = False, file_timeout: float | None = None,
                    max_memory: int | None = None) -> int:
    """Run one migration as the command line does; returns the exit code."""
    from transplant.migrate import MigrationError, MigrationOptions, RuleConfig, migrate
    from transplant._entry import was_interrupted
    from transplant.display import one_line
    from transplant.report import summary_lines, unified_diff, write_reports
    from transplant.results import FileResult, Status
    from transplant.rules import RuleFileError
    from transplant.workers import DEFAULT_BOUNDS, Bounds

    write = not (diff or check)
    config = RuleConfig(extra_files=tuple(str(p) for p in rule_files), select=select, ignore=ignore,
                        amp=amp, npu_fused_optimizers=npu_fused_optimizers, trust_pickles=trust_pickles)
    options = MigrationOptions(src=src, out=out if write else None, rules=config, exclude=exclude, jobs=jobs,
                               write=write, force=force, entry=entry,
                               bounds=Bounds(DEFAULT_BOUNDS.file_timeout if file_timeout is None else file_timeout,
                                             DEFAULT_BOUNDS.max_memory_mib if max_memory is None else max_memory))
    try:
        ruleset = config.load()
    except RuleFileError as exc:
        _fail(f"bad rule file: {exc}")

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
                    write_reports(migration, out)
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

    if check and not quiet:
        for result in migration.results:
            if result.status is Status.CHANGED:
                click.echo(f"transplant: would change {one_line(result.path)} ({len(result.changes)} edit(s))",
                           err=True)
            if result.unsupported:
                click.echo(f"transplant: {one_line(result.path)}: {len(result.unsupported)} unsupported API use(s)",
                           err=True)
    if not quiet:
        for line in summary_lines(migration):
            click.echo(f"transplant: {line}", err=True)
        if write:
            click.echo(f"transplant: wrote {one_line(str(out))}", err=True)
    if check:
        tally = migration.tally
        if tally.changed or tally.unsupported or tally.failed:
            return EXIT_CHECK_FAILED
    return 0


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
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run_command(strict_cuda: bool, nproc: int | None, script: str, args: tuple[str, ...]) -> None:
    """Run SCRIPT (with its ARGS, passed through untouched) on the emulated NPU."""
    from transplant.emulate.runner import run

    try:
        code = run([script, *args], strict_cuda=strict_cuda, nproc=nproc)
    except (RuntimeError, ValueError) as error:  # a real torch_npu present, a bad script/nproc
        _fail(str(error), EXIT_USAGE)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; an interrupt at any point (option parsing included) exits 130.

    click's own handling would turn Ctrl-C into "Aborted!" and exit status 1.
    """
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
