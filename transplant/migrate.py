"""Mirror SRC into OUT: every file copied, Python files rewritten, results collected in a fixed order.

Per file the decision is: *skip* (excluded, or a symlink we will not reproduce), *copy* (not Python:
byte for byte, mode kept), or *rewrite* (Python: :func:`transplant.rewrite.rewrite_source` runs in a
worker process; an unchanged or unparseable file is copied byte for byte, never re-emitted).

Safety:

* SRC is never written: OUT may not be inside SRC nor SRC inside OUT, and we never write through a
  symlink that already exists in OUT.
* Every write goes to a temporary file in the destination folder, renamed into place with
  :func:`os.replace`; an interrupted run leaves complete files and no temporaries.

Symlinks in SRC are never followed. A *relative* link whose target lies inside SRC is reproduced as
the same link in OUT (it then points at the migrated copy); any other link (absolute, leaving SRC,
dangling) is not reproduced and is listed as skipped with the reason.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transplant.atomic import TEMP_PREFIX, TEMP_SUFFIX, atomic_path
from transplant.launch import LAUNCH_SCRIPT_NAME, choose_entry, is_entry_candidate, write_launch_script
from transplant.native_ops import NATIVE_SUFFIXES, NativeOp, scan_native_ops
from transplant.results import FileResult, Status

log = logging.getLogger(__name__)

#: Files transplant itself writes at the root of OUT; same-named files at the root of SRC are not copied.
REPORT_NAMES = (
    "change_list.csv",
    "unsupported_api.csv",
    "cuda_op_list.csv",
    "transplant_report.json",
    "transplant.log",
)
RESERVED_NAMES = frozenset(REPORT_NAMES + (LAUNCH_SCRIPT_NAME,))

# Temporary files are named so that they are recognisable (and ignored by a later run's mirror).


class MigrationError(Exception):
    """A refusal to start (bad paths, bad options). The message is one line, meant for the user."""


@dataclass(frozen=True)
class RuleConfig:
    """How to build the rule set; picklable, so each worker process builds its own."""

    extra_files: tuple[str, ...] = ()
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    amp: str | None = None
    npu_fused_optimizers: bool = False

    def load(self) -> Any:
        """Load and validate the rule set (raises ``transplant.rules.RuleFileError``)."""
        from transplant.rules import load_ruleset

        ruleset = load_ruleset(
            extra_files=self.extra_files,
            select=self.select,
            ignore=self.ignore,
            options={"amp": self.amp, "npu_fused_optimizers": self.npu_fused_optimizers},
        )
        _refuse_unknown_kinds(ruleset)
        return ruleset


def _refuse_unknown_kinds(ruleset: Any) -> None:
    """A rule whose kind no module handles would silently do nothing (e.g. a misspelled kind)."""
    from transplant.rewrite.passes import registered_kinds
    from transplant.rules import RuleFileError
    from transplant.rules.model import NODE_KINDS, StructuralRule

    known = set(registered_kinds())
    for rule in ruleset.rules:
        if isinstance(rule, StructuralRule) and rule.kind not in known:
            try:
                entries = json.loads(Path(rule.source).read_text(encoding="utf-8"))["rules"]
                pointer = f"/rules/{[e.get('id') for e in entries].index(rule.id)}/kind"
            except (OSError, ValueError, KeyError, TypeError):
                pointer = f"/rules/(id {rule.id})/kind"
            kinds = ", ".join(sorted(known | set(NODE_KINDS)))
            raise RuleFileError(rule.source, pointer, f"a known rule kind ({kinds}), not {rule.kind!r}")


@dataclass
class MigrationOptions:
    src: Path
    out: Path | None                 # None only when nothing is written
    rules: RuleConfig = field(default_factory=RuleConfig)
    exclude: tuple[str, ...] = ()
    jobs: int = 1
    write: bool = True               # False for --diff / --check
    force: bool = False
    entry: str | None = None         # --entry, as given by the user


@dataclass
class Tally:
    """The final counts. ``python`` = changed + unchanged + failed; ``skipped`` counts any file type."""

    files: int = 0        # every file found under SRC (and symlinks)
    python: int = 0       # Python files handed to the rewriter
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    copied: int = 0       # non-Python files copied as they are
    changes: int = 0      # rows of change_list.csv
    unsupported: int = 0  # rows of unsupported_api.csv
    native_ops: int = 0   # rows of cuda_op_list.csv


@dataclass
class Migration:
    """Everything a run produced, in a deterministic order (SRC's sorted walk)."""

    src_root: Path
    out: Path | None
    results: list[FileResult]             # Python files and skipped entries
    native_ops: list[NativeOp]
    tally: Tally
    entry: str | None = None              # entry script of the launcher, POSIX relative to SRC
    launch_script: Path | None = None
    options: MigrationOptions | None = None


# ---------------------------------------------------------------------------------------------------
# Paths


def check_paths(src: Path, out: Path | None, *, force: bool, write: bool) -> None:
    """Refuse unsafe or impossible SRC/OUT combinations with a one-line :class:`MigrationError`."""
    if not src.exists() and not src.is_symlink():
        raise MigrationError(f"SRC does not exist: {src}")
    if not src.exists():
        raise MigrationError(f"SRC is a dangling symlink: {src}")
    if src.is_file() and src.suffix != ".py":
        raise MigrationError(f"SRC must be a directory or a .py file: {src}")
    if not src.is_dir() and not src.is_file():
        raise MigrationError(f"SRC is neither a directory nor a file: {src}")
    if not write:
        return
    if out is None:
        raise MigrationError("missing -o/--output OUT (only --diff and --check run without it)")
    src_real = src.resolve()
    out_real = out.resolve()
    src_dir = src_real if src_real.is_dir() else src_real.parent
    if src_real.is_dir() and _within(out_real, src_real):
        raise MigrationError(f"OUT is inside SRC: {out} (choose an output folder outside {src})")
    if src_real.is_file() and out_real == src_dir:
        raise MigrationError(f"OUT is the folder of SRC: {out} (the copy would overwrite SRC)")
    if _within(src_real, out_real):
        raise MigrationError(f"SRC is inside OUT: {src} is under {out}")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise MigrationError(f"OUT exists and is not a directory: {out}")
        if not force and any(out.iterdir()):
            raise MigrationError(f"OUT is not empty: {out} (use --force to write into it)")


def resolve_entry(entry: str, src: Path) -> str:
    """``--entry FILE`` (relative to SRC, or a path inside SRC) as a POSIX path relative to SRC."""
    src_dir = src.resolve() if src.is_dir() else src.resolve().parent
    for candidate in (Path(entry), src_dir / entry):
        if candidate.is_file():
            real = candidate.resolve()
            if _within(real, src_dir) and real.suffix == ".py":
                return real.relative_to(src_dir).as_posix()
    raise MigrationError(f"--entry must name a .py file inside SRC: {entry}")


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# ---------------------------------------------------------------------------------------------------
# Planning: walk SRC once, in sorted order, without following symlinks


@dataclass(frozen=True)
class _Entry:
    rel: str                  # POSIX path relative to the SRC root
    kind: str                 # "dir" | "file" | "link"
    skip_reason: str = ""     # non-empty: not reproduced in OUT, listed as skipped with this reason
    link_target: str = ""     # for kind == "link": the link text to reproduce


def _excluded_by(rel: str, patterns: tuple[str, ...]) -> str | None:
    """The first --exclude pattern matching ``rel`` or one of its parent folders (gitignore-like).

    A pattern without ``/`` matches a name at any depth; a pattern with ``/`` matches the path from
    the SRC root.
    """
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pat = pattern.strip("/")
        if "/" in pat:
            if any(fnmatch.fnmatchcase(prefix, pat) for prefix in prefixes):
                return pattern
        elif any(fnmatch.fnmatchcase(part, pat) for part in parts):
            return pattern
    return None


def _walk(src_root: Path, single_file: str | None) -> Iterator[_Entry]:
    if single_file is not None:
        yield _Entry(single_file, "file")
        return
    root_real = src_root.resolve()

    def visit(folder: Path, prefix: str) -> Iterator[_Entry]:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for item in entries:
            rel = f"{prefix}{item.name}"
            if item.name.startswith(TEMP_PREFIX) and item.name.endswith(TEMP_SUFFIX):
                continue  # a leftover of a killed run of ours, never user content
            if item.is_symlink():
                yield _link_entry(Path(item.path), rel, root_real)
            elif item.is_dir(follow_symlinks=False):
                yield _Entry(rel, "dir")
                yield from visit(Path(item.path), rel + "/")
            elif item.is_file(follow_symlinks=False):
                yield _Entry(rel, "file")
            else:
                yield _Entry(rel, "file", skip_reason="not a regular file (device, socket or fifo)")

    yield from visit(src_root, "")


def _link_entry(link: Path, rel: str, root_real: Path) -> _Entry:
    text = os.readlink(link)
    if os.path.isabs(text):
        return _Entry(rel, "link", skip_reason=f"absolute symlink -> {text} (not reproduced)")
    try:
        target = link.resolve(strict=True)
    except (OSError, RuntimeError):
        return _Entry(rel, "link", skip_reason=f"dangling or looping symlink -> {text} (not reproduced)")
    if not _within(target, root_real):
        return _Entry(rel, "link", skip_reason=f"symlink leaves SRC -> {text} (not reproduced)")
    return _Entry(rel, "link", link_target=text)


# ---------------------------------------------------------------------------------------------------
# Writing


def _atomic_write(target: Path, data: bytes | None = None, *, copy_from: Path | None = None,
                  mode: int | None = None) -> None:
    """Write ``data`` (or a byte copy of ``copy_from``) to ``target`` via a temp file + os.replace."""
    with atomic_path(target, mode) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            if copy_from is not None:
                with open(copy_from, "rb") as source:
                    shutil.copyfileobj(source, handle, 1 << 20)
            else:
                handle.write(data or b"")


def _atomic_symlink(target: Path, link_text: str) -> None:
    tmp = target.parent / f"{TEMP_PREFIX}{target.name}{TEMP_SUFFIX}"
    tmp.unlink(missing_ok=True)
    os.symlink(link_text, tmp)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _prepare_out_dirs(out: Path, dirs: list[str], out_existed: bool) -> None:
    """Create OUT's folders; refuse to write through a symlink already present in OUT."""
    if out_existed:  # check everything before creating anything
        for rel in dirs:
            path = out / rel
            if path.is_symlink():
                raise MigrationError(f"OUT contains a symlink where SRC has a folder: {path} (remove it first)")
            if path.exists() and not path.is_dir():
                raise MigrationError(f"OUT contains a file where SRC has a folder: {path} (remove it first)")
    out.mkdir(parents=True, exist_ok=True)
    for rel in dirs:
        (out / rel).mkdir(exist_ok=True)
    if out_existed:  # temporaries of a run that was killed outright (SIGKILL) into this OUT
        for folder in [out, *(out / rel for rel in dirs)]:
            for leftover in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
                if leftover.is_file() or leftover.is_symlink():
                    leftover.unlink()


# ---------------------------------------------------------------------------------------------------
# Workers: one rule set per process, no state carried from one file to the next beyond it


_worker_ruleset: Any = None
_worker_project_modules: frozenset[str] = frozenset()


def _init_worker(ruleset: Any, project_modules: frozenset[str]) -> None:
    # Ctrl-C goes to the whole process group; the parent handles it and shuts the pool down. A forked
    # worker must also drop the parent's SIGTERM handler (the CLI's), which is meant for the parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_state(ruleset, project_modules)


def _init_state(ruleset: Any, project_modules: frozenset[str]) -> None:
    global _worker_ruleset, _worker_project_modules
    _worker_ruleset, _worker_project_modules = ruleset, project_modules


def project_modules(python_paths: Iterable[str]) -> frozenset[str]:
    """Names the project's own code may import top-level: every module stem and package folder.

    Scripts are often run from their own folder, so a module at any depth can be imported by its
    bare name; the rewriter must not mistake the project's ``ops_cuda.py`` for a compiled extension.
    """
    names: set[str] = set()
    for rel in python_paths:
        parts = rel.split("/")
        names.update(parts[:-1])
        names.add(parts[-1][: -len(".py")] if parts[-1].endswith(".py") else parts[-1])
    names.discard("__init__")
    return frozenset(names)


def _rewrite_task(task: tuple[str, str]) -> tuple[FileResult, bool]:
    """Rewrite one Python file; returns its result and whether it looks like an entry script."""
    from transplant.rewrite import rewrite_source

    path, rel = task
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        return FileResult(path=rel, status=Status.FAILED, reason=f"cannot read: {exc.strerror}"), False
    try:
        result = rewrite_source(source, rel, _worker_ruleset, project_modules=_worker_project_modules)
    except Exception as exc:  # an engine bug must not lose the rest of the run
        log.debug("rewriter crashed on %s", rel, exc_info=True)
        result = FileResult(path=rel, status=Status.FAILED,
                            reason=f"internal error in the rewriter: {type(exc).__name__}: {exc}")
    result.path = rel
    return result, is_entry_candidate(source)


def _size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class _Rewrites:
    """Results of :func:`_rewrite_task` in task order, computed in ``jobs`` worker processes.

    The pool receives every task on entry, so the caller can copy other files meanwhile. A
    ProcessPoolExecutor (not multiprocessing.Pool) because a worker that dies or fails to start turns
    into an error (BrokenProcessPool) instead of a hang.
    """

    def __init__(self, tasks: list[tuple[str, str]], ruleset: Any, project_modules: frozenset[str],
                 jobs: int) -> None:
        self._tasks, self._state, self._jobs = tasks, (ruleset, project_modules), jobs
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Iterator[tuple[FileResult, bool]]:
        if self._jobs <= 1 or len(self._tasks) <= 1:
            _init_state(*self._state)
            return map(_rewrite_task, self._tasks)
        workers = min(self._jobs, len(self._tasks))
        # The rule set travels to each worker once (inherited on fork, pickled otherwise): validating
        # the JSON again in every worker would cost more than small projects take to migrate.
        self._executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(),
                                             initializer=_init_worker, initargs=self._state)
        # Largest files first, so that one big file started last does not leave the other workers idle;
        # results are still handed out in task (path) order, whatever -j is.
        futures = {i: None for i in range(len(self._tasks))}
        for i in sorted(futures, key=lambda i: (-_size_of(self._tasks[i][0]), i)):
            futures[i] = self._executor.submit(_rewrite_task, self._tasks[i])
        return (futures[i].result() for i in range(len(self._tasks)))  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        _init_state(None, frozenset())
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------
# The run


def migrate(options: MigrationOptions, *, ruleset: Any = None,
            on_file: Callable[[FileResult], None] | None = None,
            on_start: Callable[[int], None] | None = None) -> Migration:
    """Mirror ``options.src`` into ``options.out`` (or only compute the results when not writing).

    ``ruleset`` is the already loaded rule set (loaded from ``options.rules`` when None).
    ``on_start(n)`` is called with the number of Python files once the tree is walked, ``on_file`` after
    each Python file. Raises :class:`MigrationError` for refusals (before anything is written).
    """
    src, out, write = options.src, options.out, options.write
    check_paths(src, out, force=options.force, write=write)
    entry = resolve_entry(options.entry, src) if options.entry else None
    if ruleset is None:
        ruleset = options.rules.load()

    single = src.name if src.is_file() else None
    src_root = src.parent if single else src
    entries = list(_walk(src_root, single))

    tally = Tally()
    skipped: dict[str, FileResult] = {}
    python: list[tuple[str, str]] = []
    others: list[_Entry] = []
    dirs: list[str] = []
    for item in entries:
        if item.kind == "dir":
            dirs.append(item.rel)  # mirrored even when excluded: excluded files are copied unchanged
            continue
        tally.files += 1
        pattern = _excluded_by(item.rel, options.exclude)
        if item.rel in RESERVED_NAMES and single is None:
            reason = "at the root of SRC; replaced by this run's own report/launcher"
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED, reason=reason)
        elif item.skip_reason:
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED, reason=item.skip_reason)
        elif pattern is not None:
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED,
                                           reason=f"excluded by --exclude {pattern}")
            others.append(item)  # copied unchanged
        elif item.kind == "file" and item.rel.endswith(".py"):
            python.append((str(src_root / item.rel), item.rel))
        else:
            others.append(item)

    out_existed = bool(out and out.exists())
    if write:
        assert out is not None
        _prepare_out_dirs(out, dirs, out_existed)
    if on_start:
        on_start(len(python))

    native_ops: list[NativeOp] = []
    results_by_rel: dict[str, FileResult] = dict(skipped)
    candidates: list[str] = []

    own_modules = project_modules(item.rel for item in entries if item.kind == "file" and item.rel.endswith(".py"))
    with _Rewrites(python, ruleset, own_modules, options.jobs) as rewrites:
        # Non-Python files are copied while the workers parse (the pool has its tasks already).
        for item in others:
            unreadable = _unreadable(src_root / item.rel) if item.kind == "file" else None
            if unreadable:
                log.warning("%s: %s; not copied", item.rel, unreadable)
                skipped[item.rel] = results_by_rel[item.rel] = FileResult(
                    path=item.rel, status=Status.SKIPPED, reason=f"{unreadable}; not copied")
                continue
            native_ops.extend(_copy_other(item, src_root, out if write else None))
            if item.rel not in skipped:
                tally.copied += 1
        for result, is_candidate in rewrites:
            if write:
                assert out is not None
                source_path = src_root / result.path
                mode = source_path.stat().st_mode
                if result.status is Status.CHANGED and result.new_source is not None:
                    _atomic_write(out / result.path, result.new_source, mode=mode)
                    result.new_source = None  # written; do not hold every file in memory
                elif result.reason.startswith("cannot read"):
                    pass  # reported as failed; there is nothing to copy
                else:
                    _atomic_write(out / result.path, copy_from=source_path, mode=mode)
            if is_candidate:
                candidates.append(result.path)
            results_by_rel[result.path] = result
            if on_file:
                on_file(result)

    for result in results_by_rel.values():
        if result.status is Status.CHANGED:
            tally.changed += 1
        elif result.status is Status.UNCHANGED:
            tally.unchanged += 1
        elif result.status is Status.FAILED:
            tally.failed += 1
            copied = "not copied" if result.reason.startswith("cannot read") else "copied unchanged"
            log.warning("%s: not migrated, %s: %s", result.path, copied, result.reason)
        else:
            tally.skipped += 1
        tally.changes += len(result.changes)
        tally.unsupported += len(result.unsupported)
    tally.python = tally.changed + tally.unchanged + tally.failed
    tally.native_ops = len(native_ops)

    results = [results_by_rel[rel] for rel in sorted(results_by_rel, key=_path_key)]
    migration = Migration(src_root=src_root, out=out, results=results, native_ops=native_ops, tally=tally,
                          options=options)
    migration.entry = entry or choose_entry(candidates)
    if write:
        assert out is not None
        migration.launch_script = write_launch_script(out, migration.entry)
        _copy_dir_modes(src_root, out, dirs)
    return migration


def _copy_other(item: _Entry, src_root: Path, out: Path | None) -> list[NativeOp]:
    """Copy one non-Python file (or reproduce one symlink); scan C++/CUDA sources for operators."""
    source = src_root / item.rel
    if item.kind == "link":
        if out is not None:
            _atomic_symlink(out / item.rel, item.link_target)
        return []
    ops: list[NativeOp] = []
    if item.rel.lower().endswith(NATIVE_SUFFIXES):
        try:
            text = source.read_bytes().decode("utf-8", errors="replace")
            ops = scan_native_ops(text, item.rel)
        except OSError as exc:
            log.warning("%s: cannot read for operator scan: %s", item.rel, exc.strerror)
    if out is not None:
        _atomic_write(out / item.rel, copy_from=source, mode=source.stat().st_mode)
    return ops


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read (permissions, vanished), or None."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"


def _copy_dir_modes(src_root: Path, out: Path, dirs: list[str]) -> None:
    # Deepest first, last: a read-only folder in SRC must not stop us from filling its copy.
    for rel in sorted(dirs, key=_path_key, reverse=True):
        shutil.copymode(src_root / rel, out / rel)


def _path_key(rel: str) -> tuple[str, ...]:
    # Compare per component so that "a/b" sorts with "a" (not after "a-b"), matching the walk order.
    return tuple(rel.split("/"))
