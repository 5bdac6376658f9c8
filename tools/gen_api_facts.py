"""Regenerate the API facts that the torch.cuda classification is checked against.

Three generated files live in ``transplant/data/`` (sorted keys, one-space indent, trailing newline):

``torch_npu_names.json``
    The public names of torch_npu 2.13 (``torch_npu.npu`` and its submodules, which are ``torch.npu.*`` at
    run time, plus ``torch_npu``, ``torch_npu.optim``, ``torch_npu.profiler``, ``torch_npu.contrib``), read
    from the wheel as a zip and parsed with :mod:`ast`.  The wheel is never installed nor imported (its
    C extension needs the CANN libraries, and installing it breaks ``import torch``).
``transfer_to_npu.json``
    What Huawei's runtime shim ``torch_npu/contrib/transfer_to_npu.py`` patches, as facts (names only),
    read with :mod:`ast`, plus its ``apis_config.json`` third-party table.
``torch_cuda_names.json``
    Every public name of ``torch.cuda``, ``torch.cuda.amp``, ``torch.cuda.random`` and ``torch.cuda.memory``
    in the installed torch, with its kind (module / class / function / attribute).

Usage (from the repository root, with the project venv)::

    pip download --no-deps torch-npu==2.13.0 -d /tmp/npuwheel
    python tools/gen_api_facts.py --wheel /tmp/npuwheel/torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl
    python tools/gen_api_facts.py --wheel WHEEL --check   # exit 1 if a committed file is stale
    python tools/gen_api_facts.py --check                  # no wheel: only torch_cuda_names.json is checked

The functions :func:`npu_facts`, :func:`transfer_facts`, :func:`cuda_facts` and :func:`dumps` are also used by
``tests/rules/test_cuda_coverage.py``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
import warnings
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterator, List, Optional

DATA_DIR = Path(__file__).resolve().parent.parent / "transplant" / "data"
NPU_NAMES_FILE = "torch_npu_names.json"
TRANSFER_FILE = "transfer_to_npu.json"
CUDA_NAMES_FILE = "torch_cuda_names.json"

# torch_npu modules outside torch_npu.npu whose public names we record (torch_npu.npu is recorded whole).
NPU_EXTRA_MODULES = ("torch_npu", "torch_npu.optim", "torch_npu.profiler", "torch_npu.contrib")
CUDA_MODULES = ("torch.cuda", "torch.cuda.amp", "torch.cuda.random", "torch.cuda.memory")
TRANSFER_SOURCE = "torch_npu/contrib/transfer_to_npu.py"
TRANSFER_CONFIG = "torch_npu/contrib/apis_config.json"
# Where torch_npu lists the custom operators it re-exports at import time as torch_npu.<op>.
EXPOSED_OPS_SOURCE = "torch_npu/utils/exposed_api.py"


def dumps(obj: Any) -> str:
    """The one canonical serialisation of every generated file (deterministic, diff-friendly)."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------------
# torch_npu: static reading of the wheel
# --------------------------------------------------------------------------------------------------

def _public(name: str) -> bool:
    return not name.startswith("_")


def _parse(source: bytes, filename: str) -> ast.Module:
    with warnings.catch_warnings():
        # torch_npu sources contain invalid escape sequences; that is their business, not a fact we record
        warnings.simplefilter("ignore", (SyntaxWarning, DeprecationWarning))
        return ast.parse(source.decode("utf-8"), filename)


def _literal_strings(node: ast.AST) -> Optional[List[str]]:
    """A list/tuple of string literals (or a sum of them), else None."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal_strings(node.left), _literal_strings(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, (ast.List, ast.Tuple)):
        if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return [e.value for e in node.elts]
    return None


def _top_level(body: List[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those nested in if/try/with blocks (conditional definitions)."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _top_level(block)
        elif isinstance(node, ast.With):
            yield from _top_level(node.body)


def _dotted(node: ast.AST) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


class _Wheel:
    """Python sources of a wheel, addressed by dotted module name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with zipfile.ZipFile(path) as archive:
            self.files = {
                name: archive.read(name)
                for name in archive.namelist()
                if name.endswith(".py") or name in (TRANSFER_CONFIG,) or name.endswith(".dist-info/METADATA")
            }
            self.all_entries = archive.namelist()
        self._trees: Dict[str, Optional[ast.Module]] = {}
        self._scans: Dict[str, dict] = {}
        self._bound: Dict[str, List[str]] = {}

    def source_path(self, module: str) -> Optional[str]:
        base = module.replace(".", "/")
        for candidate in (base + "/__init__.py", base + ".py"):
            if candidate in self.files:
                return candidate
        return None

    def is_package(self, module: str) -> bool:
        return (module.replace(".", "/") + "/__init__.py") in self.files

    def has_extension(self, module: str) -> bool:
        prefix = module.replace(".", "/") + "."
        return any(e.startswith(prefix) and e.endswith(".so") for e in self.all_entries)

    def tree(self, module: str) -> Optional[ast.Module]:
        if module not in self._trees:
            path = self.source_path(module)
            self._trees[module] = None if path is None else _parse(self.files[path], path)
        return self._trees[module]

    def submodules(self, package: str) -> List[str]:
        """Public direct submodules (files and subpackages) of a package."""
        prefix = package.replace(".", "/") + "/"
        found = set()
        for name in self.files:
            if not name.startswith(prefix) or not name.endswith(".py"):
                continue
            rest = PurePosixPath(name[len(prefix):]).parts
            child = rest[0][:-3] if len(rest) == 1 else rest[0]
            if child != "__init__" and _public(child) and (len(rest) == 1 or rest[1:] == ("__init__.py",)
                                                           or self.is_package(f"{package}.{child}")):
                found.add(child)
        return sorted(found)

    def resolve(self, module: str, level: int, target: Optional[str]) -> str:
        """Absolute module name of a (possibly relative) ``from`` import inside ``module``."""
        if level == 0:
            return target or ""
        parts = module.split(".")
        if not self.is_package(module):
            parts = parts[:-1]
        parts = parts[: len(parts) - (level - 1)]
        return ".".join(parts + ([target] if target else []))

    def scan(self, module: str) -> dict:
        """One module's top level: ``__all__``, definitions, torch_npu imports, ``*`` imports, class members."""
        if module in self._scans:
            return self._scans[module]
        tree = self.tree(module)
        result: dict = {"all": None, "defs": {}, "imports": {}, "stars": [], "members": {}, "instances": {}}
        if tree is None:
            return result
        classes: Dict[str, ast.ClassDef] = {}
        for node in _top_level(tree.body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                result["defs"][node.name] = "function"
            elif isinstance(node, ast.ClassDef):
                result["defs"][node.name] = "class"
                classes[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id == "__all__":
                        names = _literal_strings(node.value) if node.value is not None else None
                        if names is not None:
                            base = result["all"] if isinstance(node, ast.AugAssign) and result["all"] else []
                            result["all"] = base + names
                    elif isinstance(target, ast.Name):
                        result["defs"].setdefault(target.id, "attribute")
                        value = node.value
                        if isinstance(value, ast.Call):
                            result["instances"][target.id] = _dotted(value.func)
                    elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                        # `mstx.annotate = annotate`: a member added to a class after its definition
                        result["members"].setdefault(target.value.id, set()).add(target.attr)
            elif isinstance(node, ast.ImportFrom):
                source = self.resolve(module, node.level, node.module)
                if not source.startswith("torch_npu"):
                    continue  # stdlib / torch re-exports are not torch_npu's API
                for alias in node.names:
                    if alias.name == "*":
                        result["stars"].append(source)
                    else:
                        result["imports"][alias.asname or alias.name] = (source, alias.name)
            elif isinstance(node, ast.Delete):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        result["defs"].pop(target.id, None)
                        result["imports"].pop(target.id, None)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                # `__all__.extend([...])`
                call = node.value
                if _dotted(call.func) == "__all__.extend" and call.args:
                    names = _literal_strings(call.args[0])
                    if names is not None and result["all"] is not None:
                        result["all"] = result["all"] + names
        for name, cls in classes.items():
            members = result["members"].setdefault(name, set())
            members.update(_class_members(cls))
        self._scans[module] = result
        return result

    def bound(self, module: str, _stack: tuple = ()) -> List[str]:
        """Every name bound at module level (public or not), following ``*`` imports inside torch_npu."""
        if module in self._bound:
            return self._bound[module]
        if module in _stack:
            return []
        info = self.scan(module)
        out = set(info["defs"]) | set(info["imports"])
        for source in info["stars"]:
            out.update(self.star_names(source, _stack + (module,)))
        result = sorted(out)
        if not _stack:
            self._bound[module] = result  # only complete (non-cyclic) results are cached
        return result

    def star_names(self, module: str, _stack: tuple = ()) -> List[str]:
        """What ``from module import *`` binds: its ``__all__``, else its public bound names."""
        info = self.scan(module)
        if info["all"] is not None:
            return list(info["all"])
        return [n for n in self.bound(module, _stack) if _public(n)]

    def kind_of(self, module: str, name: str, _stack: tuple = ()) -> str:
        """What ``module.name`` is: module / class / function / attribute / extension / runtime."""
        if self.source_path(module) is None:
            return "extension" if self.has_extension(module) else "unknown"
        info = self.scan(module)
        if name in info["defs"]:
            return info["defs"][name]
        if module in _stack:
            return "import"
        stack = _stack + (module,)
        if name in info["imports"]:
            source, original = info["imports"][name]
            origin = self.scan(source)
            if (self.source_path(f"{source}.{original}") is not None
                    and original not in origin["defs"] and (source == module or original not in origin["imports"])):
                return "module"  # `from . import submodule`
            return self.kind_of(source, original, stack)
        for source in info["stars"]:
            if name in self.star_names(source, stack):
                return self.kind_of(source, name, stack)
        # checked last: a binding in the package (`from .mstx import mstx`) shadows the submodule attribute
        if self.source_path(f"{module}.{name}") is not None:
            return "module"
        return "runtime"

    def names(self, module: str) -> Dict[str, str]:
        """Every name bound at module level -> its kind."""
        return {n: self.kind_of(module, n) for n in self.bound(module)}

    def exported(self, module: str) -> List[str]:
        """Public alias of :meth:`star_names` without the recursion guard."""
        return self.star_names(module)


def _class_members(cls: ast.ClassDef) -> set:
    """Public methods/attributes of a class, plus names its ``__getattr__``/``__setattr__`` accept."""
    members = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if _public(node.name):
                members.add(node.name)
            if node.name in ("__getattr__", "__setattr__"):
                # config objects (`torch.npu.matmul.allow_hf32`) dispatch on `name == "..."`
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Compare) and isinstance(sub.left, ast.Name) and sub.left.id == "name":
                        for comp in sub.comparators:
                            if isinstance(comp, ast.Constant) and isinstance(comp.value, str):
                                members.add(comp.value)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and _public(target.id):
                    members.add(target.id)
    return members


def _module_record(wheel: _Wheel, module: str) -> dict:
    info = wheel.scan(module)
    names = wheel.names(module)
    listed = set(info["all"] or ())
    # helpers a module merely imports from internals elsewhere in torch_npu (`ErrCode` from
    # `torch_npu.utils._error_code`) are not API; a private sibling (`npu._backends`) is its implementation.
    package = module if wheel.is_package(module) else module.rpartition(".")[0]
    private_imports = {n for n, (source, _) in info["imports"].items()
                       if any(part.startswith("_") for part in source.split("."))
                       and not source.startswith(package + ".") and n not in listed}
    public = {n: k for n, k in names.items() if _public(n) and n not in private_imports}
    for name in info["all"] or ():
        public.setdefault(name, "runtime")  # listed in __all__, bound by the C extension at import
    submodules = wheel.submodules(module) if wheel.is_package(module) else []
    for sub in submodules:
        public.setdefault(sub, "module")
    members: Dict[str, List[str]] = {}
    for name in public:
        owner_module, owner = module, name
        # follow re-exports to the defining module
        seen = 0
        while seen < 10:
            scan = wheel.scan(owner_module)
            if owner in scan["imports"]:
                owner_module, owner = scan["imports"][owner]
                seen += 1
                continue
            hit = next((s for s in scan["stars"] if owner in wheel.exported(s)), None)
            if hit is not None:
                owner_module = hit
                seen += 1
                continue
            break
        scan = wheel.scan(owner_module)
        found = set(scan["members"].get(owner, ()))
        factory = scan["instances"].get(owner)
        if factory:
            # `matmul = npu_config._allowHF32Matmul()`: the instance answers to the class's members
            cls_module, _, cls_name = factory.rpartition(".")
            target = wheel.resolve(owner_module, 1, cls_module) if cls_module else owner_module
            if wheel.source_path(target) is None:
                target = owner_module
            found |= set(wheel.scan(target)["members"].get(cls_name, ()))
        if found and public.get(name) in ("class", "attribute"):
            members[name] = sorted(found)
    return {
        "all": sorted(info["all"]) if info["all"] is not None else None,
        "names": dict(sorted(public.items())),
        "members": members,
        # private helpers defined here; CUDA code does reach a few (`torch.cuda._sleep`)
        "private": sorted(n for n in info["defs"] if n.startswith("_") and not n.startswith("__")),
    }


def _npu_modules(wheel: _Wheel) -> List[str]:
    """torch_npu.npu and every public (sub)module below it, plus the extra top-level modules."""
    modules = []
    stack = ["torch_npu.npu"]
    while stack:
        module = stack.pop()
        modules.append(module)
        if wheel.is_package(module):
            stack.extend(f"{module}.{sub}" for sub in wheel.submodules(module))
    return sorted(set(modules) | set(NPU_EXTRA_MODULES))


def _exposed_ops(wheel: _Wheel) -> List[str]:
    tree = wheel.tree(EXPOSED_OPS_SOURCE[:-3].replace("/", "."))
    for node in tree.body if tree else ():
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "public_npu_functions" for t in node.targets):
            return sorted(_literal_strings(node.value) or [])
    return []


def _wheel_meta(wheel: _Wheel) -> dict:
    digest = hashlib.sha256(wheel.path.read_bytes()).hexdigest()
    version = None
    for name, data in wheel.files.items():
        if name.endswith(".dist-info/METADATA"):
            for line in data.decode("utf-8").splitlines():
                if line.startswith("Version:"):
                    version = line.split(":", 1)[1].strip()
                    break
    return {"filename": wheel.path.name, "sha256": digest, "version": version}


def npu_facts(wheel_path: Path) -> dict:
    """Public names of torch_npu read statically from the wheel (see module docstring)."""
    wheel = _Wheel(Path(wheel_path))
    modules = {m: _module_record(wheel, m) for m in _npu_modules(wheel)}
    ops = _exposed_ops(wheel)
    top = modules["torch_npu"]["names"]
    for op in ops:
        top.setdefault(op, "npu_op")  # bound at import from torch.ops.npu (torch_npu/_init/core/_exports.py)
    modules["torch_npu"]["names"] = dict(sorted(top.items()))
    qualified = set()
    for module, record in modules.items():
        for name in record["names"]:
            qualified.add(f"{module}.{name}")
        for name, members in record["members"].items():
            qualified.update(f"{module}.{name}.{m}" for m in members)
    qualified.update(modules)
    return {
        "generator": "tools/gen_api_facts.py",
        "wheel": _wheel_meta(wheel),
        "note": "torch.npu is torch_npu.npu at run time; kind 'runtime' = listed in __all__ but bound by the "
                "C extension at import; 'npu_op' = custom operator exported from torch.ops.npu at import.",
        "modules": modules,
        "qualified_names": sorted(qualified),
    }


# --------------------------------------------------------------------------------------------------
# transfer_to_npu: what the shim patches (facts only)
# --------------------------------------------------------------------------------------------------

def _describe(value: ast.AST) -> str:
    """A short, factual description of what an attribute is replaced with."""
    dotted = _dotted(value)
    if dotted is not None:
        return dotted
    if isinstance(value, ast.Constant):
        return repr(value.value)
    if isinstance(value, ast.Call):
        inner = value.func
        wrappers = []
        if isinstance(inner, ast.Call) and _dotted(inner.func) == "_compose_wrappers":
            wrappers = [_dotted(a) or "?" for a in inner.args]
        else:
            wrappers = [_dotted(inner) or "?"]
        target = _dotted(value.args[0]) if value.args else None
        return f"{'+'.join(wrappers)}({target or '...'})"
    return type(value).__name__


def transfer_facts(wheel_path: Path) -> dict:
    """What ``torch_npu.contrib.transfer_to_npu`` patches, as names (see module docstring)."""
    wheel = _Wheel(Path(wheel_path))
    tree = _parse(wheel.files[TRANSFER_SOURCE], TRANSFER_SOURCE)
    lists: Dict[str, List[str]] = {}
    functions: Dict[str, ast.FunctionDef] = {}
    proxies: Dict[str, str] = {}
    module_calls: List[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values = _literal_strings(node.value)
            if values is not None:
                lists[node.targets[0].id] = values
        elif isinstance(node, ast.FunctionDef):
            functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                if (_dotted(base) or "").startswith("torch."):
                    proxies[node.name] = _dotted(base)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            module_calls.append(_dotted(node.value.func) or "?")

    def calls_in(func: ast.FunctionDef) -> Iterator[ast.Call]:
        for sub in ast.walk(func):
            if isinstance(sub, ast.Call):
                yield sub

    aliases = {a.asname or a.name: f"{node.module}.{a.name}" for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch.") for a in node.names}
    device_wrapped: Dict[str, List[str]] = {}
    reassigned: Dict[str, str] = {}
    bulk: Dict[str, str] = {}
    deleted: List[str] = []
    init = functions["_init"]
    reachable = [init] + [functions[n] for n in sorted(functions) if n.startswith("_patch_") or n.startswith("_del_")
                          or n.startswith("_update_")]
    for func in reachable:
        for call in calls_in(func):
            if _dotted(call.func) == "_device_wrapper" and len(call.args) == 2:
                owner = _dotted(call.args[0]) or "?"
                names = _literal_strings(call.args[1])
                if names is None and isinstance(call.args[1], ast.Name):
                    names = lists.get(call.args[1].id)
                device_wrapped.setdefault(owner, [])
                device_wrapped[owner] = sorted(set(device_wrapped[owner]) | set(names or []))
        for sub in ast.walk(func):
            if isinstance(sub, ast.Assign):
                for target in sub.targets:
                    name = _dotted(target)
                    head, _, rest = (name or "").partition(".")
                    if head in aliases and rest:
                        name = f"{aliases[head]}.{rest}"  # `from torch.distributed.checkpoint import filesystem`
                    if name and name.startswith("torch."):
                        reassigned[name] = _describe(sub.value)
            elif isinstance(sub, ast.Delete):
                for target in sub.targets:
                    if isinstance(target, ast.Subscript):
                        key = target.slice.value if isinstance(target.slice, ast.Constant) else "?"
                        deleted.append(f"{_dotted(target.value)}[{key!r}]")
        if func.name in ("_patch_cuda", "_patch_profiler"):
            for sub in ast.walk(func):
                if isinstance(sub, ast.Assign) and isinstance(sub.value, ast.List):
                    for pair in sub.value.elts:
                        if isinstance(pair, (ast.List, ast.Tuple)) and len(pair.elts) == 2:
                            dest = pair.elts[0].value if isinstance(pair.elts[0], ast.Constant) else "?"
                            bulk["torch." + dest] = _dotted(pair.elts[1]) or "?"

    # Resolve the bulk copies against the wheel: a module with __all__ has those names copied onto the
    # torch.cuda module; one without is substituted whole (torch_npu/_init/patches/monkey_patches.py).
    redirected = set()
    for dest, source in bulk.items():
        if not source.startswith("torch_npu."):
            redirected.add(dest)
            continue
        exported = wheel.scan(source)["all"]
        if exported is None:
            redirected.add(dest)
        else:
            redirected.update(f"{dest}.{n}" for n in exported)
    redirected.update(n for n in reassigned if n.startswith("torch.cuda."))

    wrapped_qualified = sorted(f"{owner}.{n}" for owner, names in device_wrapped.items() for n in names)
    wrapped_qualified += sorted(n for n, v in reassigned.items() if "_wrapper_cuda" in v)
    config = json.loads(wheel.files[TRANSFER_CONFIG]) if TRANSFER_CONFIG in wheel.files else {}
    return {
        "generator": "tools/gen_api_facts.py",
        "wheel": _wheel_meta(wheel),
        "source": TRANSFER_SOURCE,
        "device_keywords": lists.get("device_kwargs_list", []),
        "device_wrapped": device_wrapped,
        "device_wrapped_qualified": sorted(set(wrapped_qualified)),
        "bulk_copies": bulk,
        "torch_cuda_redirected": sorted(redirected),
        "reassigned": reassigned,
        "deleted_entries": sorted(deleted),
        "proxy_types": sorted(set(proxies.values())),
        "module_level_calls": sorted(set(module_calls)),
        "double_tensor": reassigned.get("torch.cuda.DoubleTensor"),
        "jit_script_disabled": "torch.jit.script" in reassigned,
        "distributed": sorted(n for n in set(reassigned) | set(wrapped_qualified) if n.startswith("torch.distributed")
                              or n.startswith("torch.nn.parallel")),
        "third_party_config": config,
    }


# --------------------------------------------------------------------------------------------------
# torch.cuda: live introspection of the installed torch
# --------------------------------------------------------------------------------------------------

def _cuda_kind(obj: Any) -> str:
    import inspect

    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "attribute"


def _imported_from(module: Any) -> Dict[str, str]:
    """name -> source module for the ``from X import name`` statements at the top of a module's source."""
    import inspect

    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    origin = {}
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    for node in _top_level(tree.body):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                origin[alias.asname or alias.name] = base
        elif isinstance(node, ast.Import):
            for alias in node.names:
                origin[alias.asname or alias.name.partition(".")[0]] = alias.name
    return origin


# Origins of re-exports that are always present: the stdlib, torch itself and torch's typing backport.
_STABLE_FOREIGN = frozenset(sys.stdlib_module_names) | {"torch", "typing_extensions", "builtins"}


def cuda_public_names(module: Any) -> Dict[str, dict]:
    """The public names of one torch.cuda module: ``{name: {"kind", "origin"}}`` plus foreign re-exports.

    Public = in ``__all__``, or not starting with ``_`` and either defined by torch (a ``torch.*`` class,
    function or submodule, or a value assigned in the module itself).  Stdlib/typing re-exports
    (``os``, ``Optional``) and the ``torch`` module itself are returned separately as *foreign*.
    """
    exported = set(getattr(module, "__all__", ()))
    origins = _imported_from(module)
    public, foreign = {}, {}
    for name in sorted(n for n in dir(module) if not n.startswith("_")):
        obj = getattr(module, name)
        kind = _cuda_kind(obj)
        if kind == "module":
            origin = obj.__name__
        elif kind in ("class", "function"):
            origin = getattr(obj, "__module__", None) or origins.get(name, module.__name__)
        else:
            origin = origins.get(name, module.__name__)
        torch_defined = origin.startswith("torch.") or (origin == "torch" and kind != "module")
        if name in exported or torch_defined:
            public[name] = {"kind": kind, "origin": origin}
        elif origin.partition(".")[0] in _STABLE_FOREIGN:
            foreign[name] = origin
        # else: an optional package torch binds only when installed (`pynvml`); recording it would make the
        # file depend on the environment, and it is not torch API either way.
    return {"public": public, "foreign": foreign, "all": sorted(exported)}


def cuda_facts() -> dict:
    """Public names of torch.cuda and three of its submodules in the installed torch."""
    import importlib

    import torch

    modules = {}
    for name in CUDA_MODULES:
        modules[name] = cuda_public_names(importlib.import_module(name))
    qualified = sorted(f"{m}.{n}" for m, rec in modules.items() for n in rec["public"])
    return {
        "generator": "tools/gen_api_facts.py",
        "torch_version": torch.__version__,
        "modules": modules,
        "qualified_names": qualified,
    }


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------

def generate(wheel: Optional[Path]) -> Dict[str, str]:
    """File name -> canonical text for every file that can be produced (the wheel ones need ``wheel``)."""
    out = {CUDA_NAMES_FILE: dumps(cuda_facts())}
    if wheel is not None:
        out[NPU_NAMES_FILE] = dumps(npu_facts(wheel))
        out[TRANSFER_FILE] = dumps(transfer_facts(wheel))
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="torch_npu wheel (.whl) to read; never installed")
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output folder (default: transplant/data)")
    args = parser.parse_args(argv)
    files = generate(args.wheel)
    stale = []
    for name, text in files.items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write("stale: " + ", ".join(stale) + " (rerun tools/gen_api_facts.py --wheel ...)\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
