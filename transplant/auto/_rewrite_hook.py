"""Auto mode's import hook: the user's own modules run through the offline rewrite as they are imported.

Runtime patching cannot see what the user's code compares and branches on (``device.type == 'cuda'``,
``'cuda' in str(device)``, ``from apex import amp``). So, the way pytest rewrites asserts, modules that
belong to the user's project are loaded through a loader that runs the *same* rewrite engine and rule
set as ``transplant -i`` on their source before compiling it:

* which modules: the entry script and ``.py`` files under its directory or the current directory —
  never the standard library, site-packages/dist-packages, the interpreter's prefix, or transplant;
* every line keeps its number: ``import torch_npu`` is not inserted (auto mode has imported it), and
  where a structural rewrite (apex -> native AMP) adds or removes lines, the compiled code's line table
  is mapped back onto the original lines, so tracebacks, ``inspect`` and debuggers show the user's
  real source; columns shift only inside changed lines;
* the result (or "nothing to change") is cached in ``__pycache__`` under a tag naming transplant's
  version and a hash of the rule sets and the rewriter, validated by the source's mtime and size, so a
  second start costs no parse; a read-only tree compiles in memory;
* the static edits of each module become rows of the runtime change log (``TRANSPLANT_AUTO_REPORT``),
  in the same columns as the runtime hits;
* ``TRANSPLANT_AUTO_REWRITE=0`` turns all of this off (runtime patches only).

STYLE.md keeps the rewriter out of ``auto``; this module is the one, deliberate exception (issue #15):
it imports ``transplant.rules`` / ``transplant.rewrite`` lazily, only when a project module actually
needs rewriting and no cached result exists, so processes that never import user code pay nothing.
Until then only the standard library is imported.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib.machinery
import logging
import marshal
import os
import re
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_log = logging.getLogger("transplant.auto")

# Bumped when the cache file layout or the rewrite settings below change.
_CACHE_FORMAT = 1
# The offline rule that inserts `import torch_npu`: auto mode imported it already, and an inserted line
# would shift every line number below it.
_SKIPPED_RULES = ("TP190",)
# Cheap test for "might the rules change this file" before starting a second interpreter (see relaunch).
_MAYBE_CUDA = re.compile(rb"cuda|nccl|apex|CUDA")


def rewrite_enabled(environ=os.environ) -> bool:
    """False when ``TRANSPLANT_AUTO_REWRITE`` is ``0`` (or ``false``/``no``/``off``)."""
    return environ.get("TRANSPLANT_AUTO_REWRITE", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class StaticEdit:
    """One edit the rewrite applied to a module at import time (a change_list row)."""

    file: str
    rule: str
    line: int
    end_line: int
    column: int
    operation: str
    message: str
    severity: str
    before: str
    after: str


# --------------------------------------------------------------------------- which files are the user's

def _excluded_dirs() -> tuple[str, ...]:
    # The standard library, the interpreter's prefixes (venv site-packages live there) and transplant.
    dirs = {os.path.realpath(os.path.dirname(os.__file__))}
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        dirs.add(os.path.realpath(prefix))
    dirs.add(os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # transplant/
    return tuple(sorted(dirs))


class ProjectFiles:
    """Decides whether a source file belongs to the user's project (cached per directory)."""

    def __init__(self, roots: list[str]) -> None:
        # "/" as a root (a launcher started from it) would make every file a project file.
        self.roots = tuple(r for r in dict.fromkeys(os.path.realpath(r) for r in roots if r) if r != os.sep)
        self._excluded = _excluded_dirs()
        self._cache: dict[str, bool] = {}

    def add_root(self, root: str) -> None:
        real = os.path.realpath(root)
        if real not in self.roots and real != os.sep:
            self.roots = self.roots + (real,)
            self._cache.clear()
            self.export()

    def export(self) -> None:
        """Hand the roots to child processes (a spawn child starts in the cwd, not the script's dir)."""
        os.environ["TRANSPLANT_AUTO_ROOTS"] = os.pathsep.join(self.roots)

    def contains(self, path: str) -> bool:
        """True for a ``.py`` file under a project root and outside every library location."""
        if not path.endswith(".py"):
            return False
        return self.contains_dir(os.path.dirname(path))

    def contains_dir(self, directory: str) -> bool:
        """True for a directory under a project root and outside every library location."""
        known = self._cache.get(directory)
        if known is None:
            known = self._decide(os.path.realpath(directory))
            self._cache[directory] = known
        return known

    def _decide(self, directory: str) -> bool:
        parts = directory.split(os.sep)
        if "site-packages" in parts or "dist-packages" in parts or "__pycache__" in parts:
            return False
        if any(_under(directory, excluded) for excluded in self._excluded):
            return False
        return any(_under(directory, root) for root in self.roots)

    def top_level_names(self) -> frozenset[str]:
        """Module names defined directly in the project roots (the rewriter's ``project_modules``)."""
        names = set()
        for root in self.roots:
            try:
                entries = os.listdir(root)
            except OSError:
                continue
            for entry in entries:
                if entry.endswith(".py"):
                    names.add(entry[:-3])
                elif os.path.isfile(os.path.join(root, entry, "__init__.py")):
                    names.add(entry)
        return frozenset(names)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------- the rewrite + compile step

class Rewriter:
    """Rewrites and compiles project modules; one per process (see :data:`REWRITER`)."""

    def __init__(self, files: ProjectFiles) -> None:
        self.files = files
        self._ruleset = None
        self._tag: Optional[str] = None
        self._lock = threading.Lock()
        self._failed_import = False
        self.edits: dict[str, tuple[StaticEdit, ...]] = {}  # file -> edits applied at import

    # ---- cache naming

    def tag(self) -> str:
        """``<version>-<hash>``: the rule sets, the rewriter's sources and the settings above."""
        if self._tag is None:
            from transplant import __version__
            from transplant._paths import rules_dir

            digest = hashlib.sha256(f"{__version__}|{_CACHE_FORMAT}|{','.join(_SKIPPED_RULES)}".encode())
            for path in sorted(rules_dir().glob("*.json")):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
            package = Path(__file__).resolve().parent.parent
            for sub in ("rewrite", "rules"):
                for path in sorted((package / sub).glob("*.py")):
                    stat = path.stat()
                    digest.update(f"{sub}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            self._tag = f"{__version__}-{digest.hexdigest()[:16]}"
        return self._tag

    def cache_path(self, source_path: str) -> str:
        directory, name = os.path.split(source_path)
        stem = name[:-3] if name.endswith(".py") else name
        cache_tag = sys.implementation.cache_tag or "py"
        return os.path.join(directory, "__pycache__", f"{stem}.{cache_tag}-transplant-{self.tag()}.pyc")

    # ---- the public step

    def code_for(self, path: str, source: Optional[bytes] = None) -> Optional[types.CodeType]:
        """Code of the rewritten module at ``path``; None when the rules change nothing (or cannot run)."""
        try:
            stat = os.stat(path)
        except OSError:
            return None
        cached = self._read_cache(path, stat)
        if cached is not None:
            code, edits = cached
        else:
            if source is None:
                with open(path, "rb") as handle:
                    source = handle.read()
            result = self._rewrite(path, source, stat)
            if result is None:
                return None
            code, edits = result
        if edits:
            self._remember(path, edits)
        return code

    def _remember(self, path: str, edits: tuple[StaticEdit, ...]) -> None:
        self.edits[path] = edits
        from . import _record

        _record.record_static(edits)

    def _read_cache(self, path: str, stat: os.stat_result):
        try:
            with open(self.cache_path(path), "rb") as handle:
                data = handle.read()
            fmt, mtime_ns, size, code, rows = marshal.loads(data)
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if fmt != _CACHE_FORMAT or mtime_ns != stat.st_mtime_ns or size != stat.st_size:
            return None
        return code, tuple(StaticEdit(path, *row) for row in rows)

    def _write_cache(self, path: str, stat: os.stat_result, code, edits: tuple[StaticEdit, ...]) -> None:
        rows = tuple((e.rule, e.line, e.end_line, e.column, e.operation, e.message, e.severity, e.before, e.after)
                     for e in edits)
        if sys.dont_write_bytecode:
            return  # PYTHONDONTWRITEBYTECODE / -B: like Python's own cache, nothing is written
        target = Path(self.cache_path(path))
        try:
            from transplant.atomic import atomic_path

            target.parent.mkdir(exist_ok=True)
            with atomic_path(target) as tmp:
                tmp.write_bytes(marshal.dumps((_CACHE_FORMAT, stat.st_mtime_ns, stat.st_size, code, rows)))
        except OSError:
            pass  # read-only tree: this process keeps its in-memory compile

    def _load_rewriter(self):
        if self._ruleset is None and not self._failed_import:
            with self._lock:
                if self._ruleset is None:
                    try:
                        # The deliberate exception to "auto never imports the rewriter" (module docstring).
                        from transplant.rules import load_ruleset

                        import transplant.rewrite  # noqa: F401 - fail here, not per module

                        self._ruleset = load_ruleset(ignore=_SKIPPED_RULES)
                    except Exception as error:  # noqa: BLE001 - auto mode keeps running on runtime patches
                        self._failed_import = True
                        _log.warning("transplant.auto: import-time rewriting is off: %s", error)
        return self._ruleset

    def _rewrite(self, path: str, source: bytes, stat: os.stat_result):
        ruleset = self._load_rewriter()
        if ruleset is None:
            return None
        from transplant.results import Status
        from transplant.rewrite import rewrite_source

        result = rewrite_source(source, path, ruleset, project_modules=self.files.top_level_names())
        if result.status is Status.FAILED:
            _log.warning("transplant.auto: %s is imported unchanged: %s", path, result.reason)
            return None
        if result.status is not Status.CHANGED or result.new_source is None:
            self._write_cache(path, stat, None, ())
            return None, ()
        try:
            code = compile_preserving_lines(source, result.new_source, path)
        except (SyntaxError, ValueError) as error:
            _log.warning("transplant.auto: %s is imported unchanged: the rewritten source does not compile: %s",
                         path, error)
            return None
        edits = tuple(StaticEdit(path, c.rule, c.line, c.end_line, c.column, str(getattr(c.operation, "value", c.operation)),
                                 c.message, c.severity, c.before, c.after) for c in result.changes)
        self._write_cache(path, stat, code, edits)
        return code, edits


# --------------------------------------------------------------------------- line numbers

def line_map(old: list[str], new: list[str]) -> Optional[list[int]]:
    """For each line of ``new`` (1-based index), the original line it stands for; None if identical.

    Lines are compared without their indentation, so a block re-indented under an inserted ``with``
    still matches; an inserted line takes the number of the original line it precedes; lines of a
    replaced block map onto the replaced lines in order.
    """
    if len(old) == len(new):
        return None  # edits within lines only (renames, device strings): numbers already agree
    matcher = difflib.SequenceMatcher(None, [s.strip() for s in old], [s.strip() for s in new])
    mapping = [1] * (len(new) + 1)
    last = max(len(old), 1)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for k in range(j2 - j1):
            if tag == "equal":
                mapping[j1 + k + 1] = i1 + k + 1
            elif tag == "replace":
                mapping[j1 + k + 1] = i1 + min(k, i2 - i1 - 1) + 1
            elif tag == "insert":
                mapping[j1 + k + 1] = min(i1 + 1, last)
    return mapping


def compile_preserving_lines(old_source: bytes, new_source: bytes, path: str) -> types.CodeType:
    """Compile ``new_source`` so that its code reports the line numbers of ``old_source``."""
    old_text = old_source.decode("utf-8", "replace").splitlines()
    new_text = new_source.decode("utf-8", "replace").splitlines()
    mapping = line_map(old_text, new_text)
    if mapping is None:
        return compile(new_source, path, "exec", dont_inherit=True)
    tree = ast.parse(new_source, path)
    for node in ast.walk(tree):
        start = getattr(node, "lineno", None)
        if start is None:
            continue
        end = getattr(node, "end_lineno", None) or start
        new_start = mapping[min(start, len(mapping) - 1)]
        new_end = max(mapping[min(end, len(mapping) - 1)], new_start)
        node.lineno, node.end_lineno = new_start, new_end
        if new_start == new_end and getattr(node, "end_col_offset", None) is not None \
                and node.end_col_offset < node.col_offset:
            node.end_col_offset = node.col_offset
    return compile(tree, path, "exec", dont_inherit=True)


# --------------------------------------------------------------------------- the import hook

class RewritingLoader(importlib.machinery.SourceFileLoader):
    """A source loader whose code is the rewritten module (the original when nothing changes)."""

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        rewriter = REWRITER
        if rewriter is not None:
            code = rewriter.code_for(path)
            if code is not None:
                return code
        return super().get_code(fullname)


class ProjectFinder:
    """Meta-path finder: project modules get a :class:`RewritingLoader`, everything else is untouched."""

    def __init__(self, files: ProjectFiles) -> None:
        self.files = files

    def find_spec(self, fullname, path=None, target=None):
        # This runs for every import (torch alone imports ~1,500 modules): look only where project
        # modules can be, and let the import system carry on when the name is not there.
        search = sys.path if path is None else path
        local = [entry for entry in search if isinstance(entry, str) and self.files.contains_dir(entry or ".")]
        if not local or importlib.machinery.PathFinder.find_spec(fullname, local, target) is None:
            return None
        # Found under a project root: the full search decides (an earlier sys.path entry may shadow it).
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        origin = spec.origin or ""
        if not self.files.contains(origin):
            return None
        spec.loader = RewritingLoader(fullname, origin)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing of ours to invalidate (PathFinder keeps its own caches)."""


REWRITER: Optional[Rewriter] = None
FINDER: Optional[ProjectFinder] = None
_original_run_path = None


def install(roots: list[str]) -> bool:
    """Put the hook on ``sys.meta_path`` (idempotent); False when ``TRANSPLANT_AUTO_REWRITE=0``."""
    global REWRITER, FINDER
    if not rewrite_enabled():
        return False
    if FINDER is not None:
        for root in roots:
            FINDER.files.add_root(root)
        return True
    inherited = [r for r in os.environ.get("TRANSPLANT_AUTO_ROOTS", "").split(os.pathsep) if r]
    files = ProjectFiles(inherited + list(roots))
    REWRITER = Rewriter(files)
    FINDER = ProjectFinder(files)
    sys.meta_path.insert(0, FINDER)
    files.export()
    _patch_run_path()
    return True


def uninstall() -> None:
    """Remove the hook (modules already imported keep their rewritten code)."""
    global REWRITER, FINDER
    if FINDER is not None and FINDER in sys.meta_path:
        sys.meta_path.remove(FINDER)
    FINDER = REWRITER = None
    if _original_run_path is not None:
        import runpy

        runpy.run_path = _original_run_path


def default_roots(main_file: Optional[str] = None) -> list[str]:
    """The entry script's directory (given or from ``sys.argv[0]``) and the current directory."""
    roots = []
    script = main_file or (sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else "")
    if script and os.path.isfile(script):
        roots.append(os.path.dirname(os.path.abspath(script)))
    try:
        roots.append(os.getcwd())
    except OSError:
        pass
    return roots


def _patch_run_path() -> None:
    """``runpy.run_path`` of a project file (how multiprocessing's spawn children re-run the entry
    script as ``__mp_main__``) runs the rewritten code, so the child's functions match the parent's."""
    global _original_run_path
    import runpy

    if _original_run_path is not None:
        return
    original = _original_run_path = runpy.run_path

    def run_path(path_name, init_globals=None, run_name=None):
        path = os.fspath(path_name) if isinstance(path_name, (str, os.PathLike)) else None
        if path is None or REWRITER is None or not REWRITER.files.contains(os.path.abspath(path)):
            return original(path_name, init_globals, run_name)
        code = REWRITER.code_for(os.path.abspath(path))
        if code is None:
            return original(path_name, init_globals, run_name)
        return _run_code_as(code, path, run_name or "<run_path>", init_globals)

    run_path.__wrapped__ = original
    run_path.__doc__ = original.__doc__
    runpy.run_path = run_path


def _run_code_as(code, path: str, name: str, init_globals) -> dict:
    # What runpy.run_path does for a source file: a temporary module under `name`, argv[0] = path.
    module = types.ModuleType(name)
    saved_module = sys.modules.get(name)
    saved_argv0 = sys.argv[0] if sys.argv else None
    sys.modules[name] = module
    if sys.argv:
        sys.argv[0] = path
    try:
        namespace = module.__dict__
        if init_globals is not None:
            namespace.update(init_globals)
        namespace.update(__name__=name, __file__=path, __cached__=None, __doc__=None, __loader__=None,
                         __package__="", __spec__=None)
        exec(code, namespace)
        return namespace.copy()
    finally:
        if saved_module is not None:
            sys.modules[name] = saved_module
        else:
            sys.modules.pop(name, None)
        if saved_argv0 is not None:
            sys.argv[0] = saved_argv0


# --------------------------------------------------------------------------- the entry script

def run_main(path: str, namespace: Optional[dict] = None) -> None:
    """Run the entry script ``path`` as ``__main__`` with its rewritten code (the launcher's core)."""
    path = os.path.abspath(path)
    code = REWRITER.code_for(path) if REWRITER is not None else None
    if code is None:
        with open(path, "rb") as handle:
            code = compile(handle.read(), path, "exec", dont_inherit=True)
    if namespace is None:
        module = types.ModuleType("__main__")
        namespace = module.__dict__
        namespace.update(__file__=path, __cached__=None, __loader__=None, __package__=None, __spec__=None,
                         __builtins__=__builtins__)
        sys.modules["__main__"] = module
    exec(code, namespace)


_RERUNNABLE_ROOTS = frozenset({"sys", "os", "warnings", "logging"})


def rerunnable_prefix(source: bytes, line: int) -> bool:
    """Whether every top-level statement before ``line`` can safely run a second time: imports,
    docstrings and ``sys``/``os``/``warnings``/``logging`` set-up (``sys.path.insert``, ``os.environ[...]``)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return all(_rerunnable(node) for node in tree.body if node.lineno < line)


def _rerunnable(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.Pass)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)):
        roots = {_root(n) for n in ast.walk(node) if isinstance(n, (ast.Name, ast.Attribute, ast.Subscript))}
        roots.discard(None)
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        plain_constant = isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        return plain_constant or (bool(roots) and roots <= _RERUNNABLE_ROOTS | _target_names(targets))
    if isinstance(node, ast.Try):
        return all(_rerunnable(n) for n in node.body + node.orelse + node.finalbody) and all(
            _rerunnable(n) for handler in node.handlers for n in handler.body)
    if isinstance(node, ast.If):
        return all(_rerunnable(n) for n in node.body + node.orelse)
    return False


def _root(node) -> Optional[str]:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _target_names(targets) -> set[str]:
    return {t.id for t in targets if isinstance(t, ast.Name)}


def rerun_entry_script(frame) -> bool:
    """Called when ``import transplant.auto`` runs at the top of the entry script: run the rewritten
    script in its own namespace now, then end the process as the script would have ended.

    The original script has only run what precedes the import (checked: imports and path set-up),
    so running the rewritten one from the top is what the user would have got from an offline
    migration. Returns False (and changes nothing) when the script cannot be taken over.
    """
    namespace = frame.f_globals
    path = namespace.get("__file__") or ""
    if REWRITER is None or not path or not REWRITER.files.contains(os.path.abspath(path)):
        return False
    path = os.path.abspath(path)
    try:
        with open(path, "rb") as handle:
            source = handle.read()
    except OSError:
        return False
    code = REWRITER.code_for(path, source)
    if code is None:
        return False  # the rules change nothing in the entry script
    if not rerunnable_prefix(source, frame.f_lineno):
        _log.warning("transplant.auto: %s runs without import-time rewriting: code before `import "
                     "transplant.auto` has already run; make the import the first statement, or start "
                     "the script with `python -m transplant.auto`", path)
        return False
    # Children (mp.spawn, torchrun workers, DataLoader workers) re-import this script: they must get
    # auto mode and the same rewrite before the script runs in them.
    os.environ["TRANSPLANT_AUTO"] = "1"
    module = sys.modules.get("transplant.auto")
    spec = getattr(module, "__spec__", None)
    if spec is not None:
        # The program now runs inside this import; later `import transplant.auto` must not wait on it.
        spec._initializing = False
    exec(code, namespace)
    return True


def relaunch_target() -> Optional[list[str]]:
    """Under ``TRANSPLANT_AUTO=1`` at interpreter start-up: the command that runs the entry script
    through ``python -m transplant.auto`` (so it is rewritten too), or None when there is nothing to do."""
    main = sys.modules.get("__main__")
    if main is None or "__file__" in vars(main) or not sys.argv:
        return None
    script = sys.argv[0]
    if not script.endswith(".py") or not os.path.isfile(script) or sys.flags.interactive:
        return None
    if REWRITER is None or not REWRITER.files.contains(os.path.abspath(script)):
        return None
    orig = list(getattr(sys, "orig_argv", []))
    count = len(sys.argv)
    if len(orig) <= count or orig[-count:] != sys.argv:
        return None
    try:
        with open(script, "rb") as handle:
            if not _MAYBE_CUDA.search(handle.read()):
                return None
    except OSError:
        return None
    return [sys.executable, *orig[1:-count], "-m", "transplant.auto", *sys.argv]


def relaunch(command: list[str]) -> None:
    """Replace this process (same pid, same environment) by ``command``."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os.execv(command[0], command)
