"""Mirror SRC into OUT: every file copied, Python files rewritten, results collected in a fixed order.

Per file the decision is: *skip* (excluded, or a symlink we will not reproduce), *copy* (not Python:
byte for byte, mode kept), or *rewrite* (Python: :func:`transplant.rewrite.rewrite_source` runs in a
worker process; an unchanged or unparseable file is copied byte for byte, never re-emitted).

Safety:

* SRC is never written: OUT may not be inside SRC nor SRC inside OUT, and we never write through a
  symlink that already exists in OUT.
* Every write goes to a temporary file in the destination folder, renamed into place with
  :func:`os.replace`; an interrupted run leaves complete files and no temporaries.

Symlinks in SRC are never followed. A *relative* link whose target lies inside SRC is reproduced in
OUT pointing at the migrated copy (the same text, unless that text climbs out of SRC and back in:
then the relative path from the link to its target); any other link (absolute, leaving SRC,
dangling) is not reproduced and is listed as skipped with the reason.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transplant.atomic import atomic_path, atomic_symlink, is_temp_name
from transplant.ignore import VCS_DIR_NAMES, IgnoreRules, pruned_reason
from transplant.launch import LAUNCH_SCRIPT_NAME, choose_entry, is_entry_candidate, write_launch_script
from transplant.native_ops import NATIVE_SUFFIXES, NativeOp, scan_native_ops
from transplant.outlock import OutLocked, locked_out
from transplant.results import FileResult, Status
from transplant.sources import front_end_for
from transplant.suppress import apply_suppressions
from transplant.workers import DEFAULT_BOUNDS, BoundedPool, Bounds

log = logging.getLogger(__name__)

# The rule whose row marks a script converted by --distributed (rules/distributed.json, role "init").
DISTRIBUTED_INIT_RULE = "TP200"

#: Files transplant itself writes at the root of OUT; same-named files at the root of SRC are not copied.
REPORT_NAMES = (
    "change_list.csv",
    "unsupported_api.csv",
    "cuda_op_list.csv",
    "transplant_report.json",
    "transplant.log",
    "transplant.diff",
    "transplant_report.html",
)
#: The static API analysis's files (transplant.analysis.static_report), reserved unless --no-analysis.
ANALYSIS_NAMES = (
    "unknown_api.csv",
    "api_precision_advice.csv",
    "api_performance_advice.csv",
    "affinity_api_call.csv",
)
RESERVED_NAMES = frozenset(REPORT_NAMES + ANALYSIS_NAMES + (LAUNCH_SCRIPT_NAME,))

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
    trust_pickles: bool = False
    rewrite_configs: bool = False   # --rewrite-configs: device/backend values of config files (TP68x)
    distributed: bool = False        # --distributed: single-device script -> DDP on HCCL
    model: str | None = None         # --model: the model variable --distributed wraps

    def load(self) -> Any:
        """Load and validate the rule set (raises ``transplant.rules.RuleFileError``)."""
        from transplant.rules import load_ruleset

        ruleset = load_ruleset(
            extra_files=self.extra_files,
            select=self.select,
            ignore=self.ignore,
            options={"amp": self.amp, "npu_fused_optimizers": self.npu_fused_optimizers,
                     "trust_pickles": self.trust_pickles, "rewrite_configs": self.rewrite_configs,
                     "distributed": self.distributed, "model": self.model},
        )
        _refuse_unknown_kinds(ruleset)
        return ruleset


def _refuse_unknown_kinds(ruleset: Any) -> None:
    """A rule whose kind no module handles would silently do nothing (e.g. a misspelled kind)."""
    from transplant.rewrite.passes import registered_kinds
    from transplant.rules import RuleFileError
    from transplant.rules.model import NODE_KINDS, StructuralRule

    from transplant.sources import source_rule_kinds

    known = set(registered_kinds()) | set(source_rule_kinds())
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
    cross_file: bool = True          # build the project index (values that cross files); --no-cross-file
    analysis: bool = True            # False with --no-analysis: its file names are not reserved then
    respect_ignore: bool = True      # .gitignore/.ignore files: matching files are copied, not migrated
    copy_vcs: bool = False           # copy .git/.hg/.svn into OUT (never descended into for migration)
    bounds: Bounds = DEFAULT_BOUNDS  # --file-timeout, --max-memory


@dataclass
class Tally:
    """The final counts. changed + unchanged + failed = python + notebooks + shell + requirements + configs
    (the files some front end read); ``skipped`` counts any file type."""

    files: int = 0        # every file found under SRC (and symlinks)
    python: int = 0       # Python files handed to the rewriter
    changed: int = 0
    unchanged: int = 0
    skipped: int = 0
    ignored: int = 0      # files matched by .gitignore/.ignore: copied unchanged, not migrated
    failed: int = 0
    copied: int = 0       # non-Python files copied as they are
    changes: int = 0      # rows of change_list.csv
    unsupported: int = 0  # rows of unsupported_api.csv
    native_ops: int = 0   # rows of cuda_op_list.csv
    notebooks: int = 0    # .ipynb files read (transplant.sources.notebook)
    shell: int = 0        # shell scripts, Makefiles, Dockerfiles read (transplant.sources.shell)
    requirements: int = 0  # requirements / environment files read (rows only)
    configs: int = 0      # YAML/JSON/INI config files read (transplant.sources.config)
    suppressed: int = 0   # rows acknowledged by `# transplant: ignore` (in neither CSV)


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
    # every script that looks like an entry (``__main__`` + argparse); several without --entry: no launcher
    entry_candidates: list[str] = field(default_factory=list)
    options: MigrationOptions | None = None


# ---------------------------------------------------------------------------------------------------
# Paths


def check_paths(src: Path, out: Path | None, *, force: bool, write: bool) -> None:
    """Refuse unsafe or impossible SRC/OUT combinations with a one-line :class:`MigrationError`."""
    if not src.exists() and not src.is_symlink():
        raise MigrationError(f"SRC does not exist: {src}")
    if not src.exists():
        raise MigrationError(f"SRC is a dangling symlink: {src}")
    if src.is_file() and front_end_for(src.name) is None:
        raise MigrationError(f"SRC must be a directory, a .py file or another file transplant reads (.ipynb, .sh, Dockerfile, ...): {src}")
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
    kind: str                 # "dir" | "file" | "link" | "pruned" (a folder not descended into)
    skip_reason: str = ""     # non-empty: not reproduced in OUT, listed as skipped with this reason
    link_target: str = ""     # for kind == "link": the link text to reproduce
    ignored: str = ""         # the .gitignore/.ignore file that ignores it: copied unchanged, not migrated
    verbatim: bool = False    # inside a version-control folder copied with --copy-vcs: bytes only


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


def _walk(src_root: Path, single_file: str | None, *, respect_ignore: bool = True,
          copy_vcs: bool = False) -> Iterator[_Entry]:
    if single_file is not None:
        yield _Entry(single_file, "file")
        return
    root_real = src_root.resolve()

    def visit(folder: Path, prefix: str, rules: IgnoreRules | None, ignored: str, verbatim: bool) -> Iterator[_Entry]:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for item in entries:
            rel = f"{prefix}{item.name}"
            if is_temp_name(item.name):
                continue  # a leftover of a killed run of ours (a name no user file has), never user content
            is_dir = not item.is_symlink() and item.is_dir(follow_symlinks=False)
            why = ignored or (rules.ignored_by(rel, is_dir) if rules is not None and not verbatim else None) or ""
            if item.is_symlink():
                yield dataclasses.replace(_link_entry(Path(item.path), rel, root_real), ignored=why, verbatim=verbatim)
            elif is_dir:
                pruned = None if verbatim else pruned_reason(Path(item.path), item.name, copy_vcs=copy_vcs)
                if pruned:
                    yield _Entry(rel, "pruned", skip_reason=pruned)
                    continue
                yield _Entry(rel, "dir")
                inner = item.name in VCS_DIR_NAMES or verbatim
                child_rules = rules.entering(Path(item.path), rel) if rules is not None and not inner else rules
                yield from visit(Path(item.path), rel + "/", child_rules, why, inner)
            elif item.is_file(follow_symlinks=False):
                if item.name in VCS_DIR_NAMES and not copy_vcs and not verbatim:
                    # a worktree's or submodule's `.git` file points at the repository: not OUT's business
                    yield _Entry(rel, "pruned", skip_reason="version-control file: not copied (use --copy-vcs to copy it)")
                    continue
                yield _Entry(rel, "file", ignored=why, verbatim=verbatim)
            else:
                yield _Entry(rel, "file", skip_reason="not a regular file (device, socket or fifo)")

    yield from visit(src_root, "", IgnoreRules.for_root(src_root) if respect_ignore else None, "", False)


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
    return _Entry(rel, "link", link_target=_link_text_in_out(link, text, target, root_real))


def _link_text_in_out(link: Path, text: str, target: Path, root_real: Path) -> str:
    """The link text that points at the *migrated* copy of ``target`` once the link is in OUT.

    A text that stays inside the tree as written (``train.py``, ``../models/net.py``) is kept. One that
    reaches the target by climbing out of SRC and back in (``../src/train.py``) would point at SRC
    from OUT: it becomes the relative path from the link's folder to the target.
    """
    folder = link.parent.resolve().relative_to(root_real)
    lexical = os.path.normpath(os.path.join(folder.as_posix(), text))
    if lexical != ".." and not lexical.startswith("../"):
        return text
    return os.path.relpath(target.relative_to(root_real).as_posix() or ".", folder.as_posix() or ".")


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


# ---------------------------------------------------------------------------------------------------
# Workers: one rule set per process, no state carried from one file to the next beyond it


_worker_ruleset: Any = None
_worker_project_modules: frozenset[str] = frozenset()
_worker_index: Any = None


def _init_state(ruleset: Any, project_modules: frozenset[str], index: Any = None) -> None:
    """Set in each worker once (inherited on fork, pickled otherwise): validating the JSON again in
    every worker would cost more than small projects take to migrate. ``index``: the project index."""
    global _worker_ruleset, _worker_project_modules, _worker_index
    _worker_ruleset, _worker_project_modules, _worker_index = ruleset, project_modules, index


def build_project_index(python: list[tuple[str, str]], ruleset: Any) -> Any:
    """The cross-file facts (transplant.project.index) for the project's Python files, built once in
    the parent and handed to every worker; None when no rule needs them."""
    from transplant.project.index import SlotFacts, build_index

    slots = SlotFacts.from_ruleset(ruleset)
    if not slots.device_keywords and not slots.backend_keywords:
        return None
    sources: dict[str, bytes] = {}
    for path, rel in python:
        if not rel.endswith(".py"):
            continue  # notebooks, shell and config files are not importable modules
        try:
            with open(path, "rb") as handle:
                sources[rel] = handle.read()
        except OSError:
            continue  # reported when the worker reads it
    index = build_index(sources, slots)
    if not index.complete:
        log.warning("the cross-file index stopped at a bound (file size or time); values that cross "
                    "files may be missed")
    return index


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
    """Migrate one file with its front end; returns its result and whether it looks like an entry script."""
    from transplant.sources import migrate_file

    path, rel = task
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError as exc:
        return FileResult(path=rel, status=Status.FAILED, reason=f"cannot read: {exc.strerror}"), False
    try:
        flow = _worker_index.flow_for(rel) if _worker_index is not None else None
        result = migrate_file(source, rel, _worker_ruleset, project_modules=_worker_project_modules, flow=flow)
    except Exception as exc:  # an engine bug must not lose the rest of the run
        log.debug("rewriter crashed on %s", rel, exc_info=True)
        front_end = front_end_for(rel)
        result = FileResult(path=rel, status=Status.FAILED, kind=front_end.kind if front_end else "python",
                            reason=f"internal error in the rewriter: {type(exc).__name__}: {exc}")
    result.path = rel
    if result.kind == "python":  # comments are Python's: other kinds have no suppression syntax
        result, notes = apply_suppressions(result, source)
        result.warnings.extend(notes)
    return result, result.kind == "python" and is_entry_candidate(source)


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
    check_paths(options.src, options.out, force=options.force, write=options.write)
    if options.entry:
        resolve_entry(options.entry, options.src)  # refused before OUT is created
    if not options.write:
        return _migrate(options, ruleset, on_file, on_start)
    out = options.out
    assert out is not None
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with locked_out(out):
            if created or options.force:
                return _migrate(options, ruleset, on_file, on_start)
            # Checked again under the lock: a concurrent run may have filled OUT since check_paths.
            check_paths(options.src, out, force=False, write=True)
            return _migrate(options, ruleset, on_file, on_start)
    except OutLocked:
        if created:
            _remove_if_empty(out)
        raise MigrationError(f"another transplant run is writing into OUT: {out} (wait for it to finish)") from None


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (or gone): leave it


def _migrate(options: MigrationOptions, ruleset: Any, on_file: Callable[[FileResult], None] | None,
             on_start: Callable[[int], None] | None) -> Migration:
    src, out, write = options.src, options.out, options.write
    entry = resolve_entry(options.entry, src) if options.entry else None
    if ruleset is None:
        ruleset = options.rules.load()
    if entry is not None:
        # --distributed converts only the entry script when one is named (the rule set travels to the
        # workers, so the option rides on it)
        ruleset.options["entry"] = entry

    single = src.name if src.is_file() else None
    src_root = src.parent if single else src
    entries = list(_walk(src_root, single, respect_ignore=options.respect_ignore, copy_vcs=options.copy_vcs))

    reserved = RESERVED_NAMES if options.analysis else RESERVED_NAMES - frozenset(ANALYSIS_NAMES)
    tally = Tally()
    skipped: dict[str, FileResult] = {}
    python: list[tuple[str, str]] = []
    others: list[_Entry] = []
    dirs: list[str] = []
    ignored: set[str] = set()
    for item in entries:
        if item.kind == "dir":
            dirs.append(item.rel)  # mirrored even when excluded: excluded files are copied unchanged
            continue
        if item.kind == "pruned":
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED, reason=item.skip_reason)
            continue
        tally.files += 1
        pattern = _excluded_by(item.rel, options.exclude)
        if item.rel in reserved and single is None:
            reason = "at the root of SRC; replaced by this run's own report/launcher"
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED, reason=reason)
        elif item.skip_reason:
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED, reason=item.skip_reason)
        elif pattern is not None:
            skipped[item.rel] = FileResult(path=item.rel, status=Status.SKIPPED,
                                           reason=f"excluded by --exclude {pattern}")
            others.append(item)  # copied unchanged
        elif item.verbatim:
            others.append(item)  # version-control data copied with --copy-vcs: never scanned nor rewritten
        elif item.ignored:
            ignored.add(item.rel)
            others.append(item)  # copied unchanged, never scanned
            if front_end_for(item.rel) is not None:  # listed, so that nobody wonders why it was not migrated
                skipped[item.rel] = FileResult(
                    path=item.rel, status=Status.SKIPPED,
                    reason=f"ignored by {item.ignored} (copied unchanged; --no-ignore migrates it)")
        elif item.kind == "file" and front_end_for(item.rel) is not None:
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
    index = build_project_index(python, ruleset) if options.cross_file else None
    with BoundedPool(python, _rewrite_task, init=_init_state, init_args=(ruleset, own_modules, index),
                     jobs=options.jobs, bounds=options.bounds) as rewrites:
        rewrites.start()  # non-Python files are copied while the workers parse
        for item in others:
            unreadable = _unreadable(src_root / item.rel) if item.kind == "file" else None
            if unreadable:
                log.warning("%s: %s; not copied", item.rel, unreadable)
                skipped[item.rel] = results_by_rel[item.rel] = FileResult(
                    path=item.rel, status=Status.SKIPPED, reason=f"{unreadable}; not copied")
                continue
            native_ops.extend(_copy_other(item, src_root, out if write else None,
                                          scan=not (item.verbatim or item.ignored)))
            if item.rel in ignored:
                tally.ignored += 1
            elif item.rel not in skipped:
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
        elif result.path not in ignored:  # ignored files were counted when copied
            tally.skipped += 1
        tally.changes += len(result.changes)
        tally.unsupported += len(result.unsupported)
        tally.suppressed += len(result.suppressed)
        for note in result.warnings:
            log.warning("%s", note)
    kinds = {"python": "python", "notebook": "notebooks", "shell": "shell", "requirements": "requirements",
             "config": "configs"}
    for result in results_by_rel.values():
        if result.status is not Status.SKIPPED and result.kind in kinds:
            setattr(tally, kinds[result.kind], getattr(tally, kinds[result.kind]) + 1)
    tally.native_ops = len(native_ops)

    results = [results_by_rel[rel] for rel in sorted(results_by_rel, key=_path_key)]
    migration = Migration(src_root=src_root, out=out, results=results, native_ops=native_ops, tally=tally,
                          options=options)
    if options.rules.distributed:
        # the scripts --distributed converted are what the launcher runs (a module-level script such as
        # pytorch-cifar's main.py has no __main__ guard)
        converted = [r.path for r in results if any(c.rule == DISTRIBUTED_INIT_RULE for c in r.changes)]
        candidates = converted or candidates
    migration.entry_candidates = sorted(candidates, key=_path_key)
    migration.entry = entry or choose_entry(migration.entry_candidates)
    ambiguous = migration.entry is None and len(candidates) > 1
    if ambiguous:
        log.warning("several entry scripts (%s): %s not written; re-run with --entry FILE",
                    ", ".join(migration.entry_candidates), LAUNCH_SCRIPT_NAME)
    if write:
        assert out is not None
        if not ambiguous:
            migration.launch_script = write_launch_script(out, migration.entry)
        _copy_dir_modes(src_root, out, dirs)
    return migration


def _copy_other(item: _Entry, src_root: Path, out: Path | None, *, scan: bool = True) -> list[NativeOp]:
    """Copy one non-Python file (or reproduce one symlink); scan C++/CUDA sources for operators."""
    source = src_root / item.rel
    if item.kind == "link":
        if out is not None:
            atomic_symlink(out / item.rel, item.link_target)
        return []
    ops: list[NativeOp] = []
    if scan and item.rel.lower().endswith(NATIVE_SUFFIXES):
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
