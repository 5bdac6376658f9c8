"""Front end for Jupyter notebooks (``.ipynb``).

* The code cells form **one** Python source (names flow from cell to cell), separated by marker
  comments, and go through the same engine as ``.py`` files (:func:`transplant.rewrite.rewrite_source`);
  the result is split back into cells at the markers, and every row names its ``cell`` (1-based,
  counting every cell of the notebook) and its line in that cell.
* IPython syntax is masked before parsing: ``!cmd`` / ``x = !cmd``, ``%magic``, ``%%cell magic``, ``obj?``.
  Masked lines become a placeholder name (kept only where the tokenizer sees a name, so a ``!`` line
  inside a string stays as it is); shell commands (``!cmd``, ``%%bash`` / ``%%sh`` cells, ``%env``) go
  through the shell rules (:mod:`transplant.shell`). Cells with another cell magic (``%%html``,
  ``%%writefile``, ...) and cells that are not Python after masking are left alone.
* The notebook is written back only when the JSON layout round-trips exactly: the file is parsed with
  :mod:`json` (key order kept) and re-serialised with the indent, ``ensure_ascii`` and final newline
  it was found with; if that does not reproduce the file byte for byte we do not write it (FAILED,
  with the rows). So a notebook with nothing to change is copied byte for byte, and a changed one
  differs only in the changed cell sources (markdown, outputs, metadata untouched).
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import json
import re
import tokenize
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from transplant.results import Change, FileResult, Status, Unsupported
from transplant.rules import RuleSet
from transplant.rules.model import StructuralRule
from transplant.sources.edits import Edit, LineIndex, apply_edits

MARKER = "# transplant: notebook cell {n}"
_MARKER_RE = re.compile(r"^# transplant: notebook cell (\d+)\n", re.M)
PLACEHOLDER = "__transplant_ipython_{k}__"
_PLACEHOLDER_RE = re.compile(r"__transplant_ipython_(\d+)__")

#: Cell magics whose body is Python (the first line is masked); shell ones go to the shell rules.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
SHELL_CELL_MAGICS = frozenset({"bash", "sh", "script"})
SHELL_LINE_MAGICS = frozenset({"sx", "system"})
INSTALL_LINE_MAGICS = frozenset({"pip", "conda", "mamba"})
DISPLAY_CELL_MAGICS = frozenset({"html", "markdown", "latex", "javascript", "js", "svg"})


def matches(rel: str) -> bool:
    """Whether this path is a notebook."""
    return rel.endswith(".ipynb")


# ---------------------------------------------------------------------------------------------------
# JSON layout


def _layout(text: str, notebook: Any) -> dict[str, Any] | None:
    """The json.dumps settings that reproduce ``text`` exactly, or None."""
    for indent in (1, 2, 4, None, 3):
        for ensure_ascii in (False, True):
            dumped = json.dumps(notebook, indent=indent, ensure_ascii=ensure_ascii)
            for tail in ("\n", "", "\r\n"):
                if dumped + tail == text:
                    return {"indent": indent, "ensure_ascii": ensure_ascii, "tail": tail}
    return None


def _dump(notebook: Any, layout: dict[str, Any]) -> str:
    return json.dumps(notebook, indent=layout["indent"], ensure_ascii=layout["ensure_ascii"]) + layout["tail"]


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (nbformat allows a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _set_source(cell: dict[str, Any], text: str) -> None:
    if isinstance(cell.get("source"), list):
        cell["source"] = text.splitlines(keepends=True)
    else:
        cell["source"] = text


# ---------------------------------------------------------------------------------------------------
# IPython masking


@dataclass
class _Magic:
    start: int          # span in the cell source replaced by the placeholder (no newline)
    end: int
    shell: tuple[int, int] | None = None    # span of a shell command inside it
    env_key: tuple[int, int] | None = None  # %env NAME=...: span of NAME


@dataclass
class _Cell:
    number: int                  # 1-based among all cells
    source: str
    magics: list[_Magic] = field(default_factory=list)
    python: bool = True          # goes into the combined Python source
    shell_body: tuple[int, int] | None = None   # %%bash cell: span of the body
    masked: str = ""
    not_read: str = ""           # why neither engine reads this cell (TP690)


_ASSIGN_SHELL = re.compile(r"([ \t]*[A-Za-z_][\w.]*[ \t]*=[ \t]*)(!|%sx\b|%system\b)")
_HELP = re.compile(r"[ \t]*(\?{1,2}[\w.]+|[\w.]+\?{1,2})[ \t]*$")
_ENV = re.compile(r"%env[ \t]+([A-Za-z_][A-Za-z0-9_]*)(?=[= \t]|$)")


def _scan_cell(number: int, source: str) -> _Cell:
    cell = _Cell(number, source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    first = lines[0] if lines else ""
    if first.lstrip().startswith("%%"):
        name = first.lstrip()[2:].split(None, 1)[0] if first.strip()[2:] else ""
        args = first.strip()[2 + len(name):].split()
        if name in SHELL_CELL_MAGICS and (name != "script" or args[:1] in (["bash"], ["sh"])):
            cell.python = False
            cell.shell_body = (offsets[1] if len(lines) > 1 else len(source), len(source))
            return cell
        if name not in PYTHON_CELL_MAGICS:
            cell.python = False
            # display cells (%%html, %%markdown, ...) are text, not code to migrate
            cell.not_read = "" if name in DISPLAY_CELL_MAGICS else f"cell magic %%{name}"
            return cell
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        indent = len(body) - len(body.lstrip())
        stripped = body.strip()
        start, end = offsets[i] + indent, offsets[i] + len(body)
        if not stripped or stripped.startswith("#"):
            continue
        assign = _ASSIGN_SHELL.match(body)
        if assign:
            magic_start = offsets[i] + assign.end(1)
            cmd = magic_start + len(assign.group(2))
            cell.magics.append(_Magic(magic_start, end, shell=(cmd, end)))
        elif stripped.startswith("!"):
            bang = start + (2 if stripped.startswith("!!") else 1)
            cell.magics.append(_Magic(start, end, shell=(bang, end)))
        elif stripped.startswith("%"):
            env = _ENV.match(stripped)
            word = stripped[1:].split(None, 1)[0] if len(stripped) > 1 else ""
            magic = _Magic(start, end)
            if env:
                magic.env_key = (start + env.start(1), start + env.end(1))
            elif word in SHELL_LINE_MAGICS:
                magic.shell = (start + 1 + len(word), end)
            elif word in INSTALL_LINE_MAGICS:  # %pip install ... reads as the shell command pip install ...
                magic.shell = (start + 1, end)
            cell.magics.append(magic)
        elif _HELP.match(body):
            cell.magics.append(_Magic(start, end))
    _mask(cell)
    return cell


def _mask(cell: _Cell) -> None:
    """Replace the magics by placeholders; keep only those the tokenizer sees as names."""
    while True:
        pieces, cursor = [], 0
        for k, magic in enumerate(cell.magics):
            pieces += [cell.source[cursor:magic.start], PLACEHOLDER.format(k=k)]
            cursor = magic.end
        pieces.append(cell.source[cursor:])
        masked = "".join(pieces)
        seen = set()
        try:
            for token in tokenize.generate_tokens(io.StringIO(masked).readline):
                if token.type == tokenize.NAME and _PLACEHOLDER_RE.fullmatch(token.string):
                    seen.add(int(_PLACEHOLDER_RE.fullmatch(token.string).group(1)))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            seen = set(range(len(cell.magics)))
        if len(seen) == len(cell.magics):
            break
        # a "magic" inside a string or a bracket continuation is not one: put its text back
        cell.magics = [m for k, m in enumerate(cell.magics) if k in seen]
    try:
        compile(masked, f"cell {cell.number}", "exec", dont_inherit=True, flags=0x2000)  # top-level await ok
    except SyntaxError as exc:
        cell.python = False
        cell.not_read = f"not Python after masking IPython syntax (line {exc.lineno}: {exc.msg})"
        return
    except ValueError:
        cell.python = False
        cell.not_read = "not Python after masking IPython syntax"
        return
    cell.masked = masked


# ---------------------------------------------------------------------------------------------------
# Shell rules on the IPython lines


def _shell_of_cell(cell: _Cell, ruleset: RuleSet) -> tuple[list[Edit], list[Change], list[Unsupported]]:
    from transplant.shell.kinds import check_scan
    from transplant.shell.model import ShellScan, Word
    from transplant.shell.parse import parse_into
    from transplant.sources.shell import install_rows, rows, shell_rules

    rules = shell_rules(ruleset)
    if not rules or (not cell.magics and cell.shell_body is None):
        return [], [], []
    scan = ShellScan(cell.source)
    if cell.shell_body is not None:
        parse_into(scan, *cell.shell_body)
    for magic in cell.magics:
        if magic.shell is not None:
            parse_into(scan, *magic.shell)
        if magic.env_key is not None:
            s, e = magic.env_key
            scan.env_keys.append(Word(s, e, cell.source[s:e], cell.source[s:e]))
    findings = check_scan(scan, rules)
    changes, unsupported = rows(findings, LineIndex(cell.source), cell.source)
    unsupported += install_rows(scan, ruleset, LineIndex(cell.source))
    edits = [e for change in findings.changes for e in change.edits]
    return (edits, [dataclasses.replace(c, cell=cell.number) for c in changes],
            [dataclasses.replace(u, cell=cell.number) for u in unsupported])


# ---------------------------------------------------------------------------------------------------
# The front end


def _code_cells(notebook: Any) -> list[tuple[int, dict[str, Any]]] | None:
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return None
    language = (notebook.get("metadata", {}).get("kernelspec", {}) or {}).get("language", "python")
    if str(language).lower() != "python":
        return []
    return [(n, c) for n, c in enumerate(cells, start=1)
            if isinstance(c, dict) and c.get("cell_type") == "code"]


def migrate_notebook(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = ()) -> FileResult:
    """Migrate one notebook (see the module docstring)."""
    from transplant.rewrite import rewrite_source

    try:
        text = source.decode("utf-8")
        notebook = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        return FileResult(path=rel, status=Status.FAILED, kind="notebook",
                          reason=f"{rel}:1: not a notebook (invalid JSON: {exc})")
    code = _code_cells(notebook)
    if code is None:
        return FileResult(path=rel, status=Status.FAILED, kind="notebook",
                          reason=f"{rel}:1: not a notebook (no 'cells' list)")
    cells = [_scan_cell(n, cell_source(c)) for n, c in code]
    by_number = {n: c for n, c in code}

    changes: list[Change] = []
    unsupported: list[Unsupported] = []
    shell_edits: dict[int, list[Edit]] = {}
    unread = [r for r in ruleset if isinstance(r, StructuralRule) and r.kind == "notebook_cell"]
    for cell in cells:
        for rule in unread:
            if cell.not_read and any(w in cell.source for w in rule.data["words"]):
                lines = max(1, cell.source.count("\n") + (not cell.source.endswith("\n")))
                unsupported.append(Unsupported(rule.id, 1, lines, f"cell {cell.number}: {cell.not_read}",
                                               rule.tip, 1, cell=cell.number))
        edits, rows_c, rows_u = _shell_of_cell(cell, ruleset)
        shell_edits[cell.number] = edits
        changes += rows_c
        unsupported += rows_u

    # One Python source: cell markers, then each cell's masked text (ending in a newline).
    python_cells = [c for c in cells if c.python]
    parts: list[str] = []
    line_map: list[tuple[int, int]] = []   # combined line (0-based) -> (cell, line in cell)
    for cell in python_cells:
        parts.append(MARKER.format(n=cell.number) + "\n")
        line_map.append((cell.number, 0))
        body = cell.masked if cell.masked.endswith("\n") or not cell.masked else cell.masked + "\n"
        parts.append(body)
        line_map += [(cell.number, i + 1) for i in range(body.count("\n"))]
    combined = "".join(parts)
    new_python: dict[int, str] = {}
    failure = ""
    if python_cells:
        result = rewrite_source(combined.encode("utf-8"), rel, ruleset, project_modules=project_modules)
        if result.status is Status.FAILED:
            failure = result.reason
        unsupported += [_to_cell(u, line_map) for u in result.unsupported]
        if result.status is Status.CHANGED and result.new_source is not None:
            changes += [_to_cell(c, line_map) for c in result.changes]
            new_python = _split(result.new_source.decode("utf-8"), python_cells)

    # Put the cells back together: Python edits (placeholders restored), then shell edits of magics.
    new_sources: dict[int, str] = {}
    for cell in cells:
        edits = shell_edits.get(cell.number, [])
        if cell.number in new_python:
            restored = []
            for k, magic in enumerate(cell.magics):
                inner = [Edit(e.start - magic.start, e.end - magic.start, e.replacement)
                         for e in edits if magic.start <= e.start and e.end <= magic.end]
                restored.append(apply_edits(cell.source[magic.start:magic.end], inner))
            text = _PLACEHOLDER_RE.sub(lambda m: restored[int(m.group(1))], new_python[cell.number])
            if not cell.source.endswith("\n") and text.endswith("\n") and not cell.masked.endswith("\n"):
                text = text[:-1]
        else:
            text = apply_edits(cell.source, edits) if edits else cell.source
        if text != cell.source:
            new_sources[cell.number] = text

    if failure:  # the code cells could not be read: leave the whole notebook as it is (no change rows)
        return FileResult(path=rel, status=Status.FAILED, kind="notebook", unsupported=unsupported, reason=failure)
    if not new_sources:
        return FileResult(path=rel, status=Status.UNCHANGED, kind="notebook", unsupported=unsupported)
    layout = _layout(text_of := source.decode("utf-8"), json.loads(text_of))
    if layout is None:
        return FileResult(path=rel, status=Status.FAILED, kind="notebook", unsupported=unsupported,
                          reason=f"{rel}:1: the notebook's JSON layout cannot be reproduced exactly; "
                                 "left unchanged (see the rows)")
    for number, new_text in new_sources.items():
        _set_source(by_number[number], new_text)
    return FileResult(path=rel, status=Status.CHANGED, kind="notebook", changes=changes, unsupported=unsupported,
                      new_source=_dump(notebook, layout).encode("utf-8"))


def _to_cell(row: Any, line_map: list[tuple[int, int]]) -> Any:
    cell, line = line_map[min(row.line, len(line_map)) - 1]
    end_cell, end_line = line_map[min(row.end_line, len(line_map)) - 1]
    if line == 0:  # on a marker: an insertion before the cell's first line
        line = 1
    return dataclasses.replace(row, cell=cell, line=line, end_line=end_line if end_cell == cell else line)


def _split(new_text: str, python_cells: list[_Cell]) -> dict[int, str]:
    """New cell texts by cell number, cut at the markers (anything before the first goes to the first cell)."""
    marks = list(_MARKER_RE.finditer(new_text))
    numbers = [int(m.group(1)) for m in marks]
    if numbers != [c.number for c in python_cells]:
        raise ValueError("notebook cell markers were not preserved by the rewrite")
    out: dict[int, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(new_text)
        head = new_text[:mark.start()] if i == 0 else ""
        out[numbers[i]] = head + new_text[mark.end():end]
    return out


# ---------------------------------------------------------------------------------------------------
# Reading a notebook's changes, and running it


def cell_diff(original: bytes, new: bytes, path: str) -> bytes:
    """A unified diff per changed code cell (``a/nb.ipynb (cell 3)``), readable unlike the JSON diff."""
    old_cells = json.loads(original.decode("utf-8")).get("cells", [])
    new_cells = json.loads(new.decode("utf-8")).get("cells", [])
    out: list[str] = []
    for number, (old, cur) in enumerate(zip(old_cells, new_cells), start=1):
        a, b = cell_source(old), cell_source(cur)
        if a == b:
            continue
        for line in difflib.unified_diff(a.splitlines(keepends=True), b.splitlines(keepends=True),
                                         f"a/{path} (cell {number})", f"b/{path} (cell {number})"):
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out).encode("utf-8", "surrogateescape")


def to_script(source: bytes) -> str:
    """The code cells as one Python script, for running a notebook top to bottom outside Jupyter.

    ``%env NAME=value`` becomes an ``os.environ`` assignment, ``!cmd`` a ``subprocess`` call; other
    magics and non-Python cells become comments (like ``jupyter nbconvert --to script`` would run them
    through IPython, which a plain interpreter does not have).
    """
    notebook = json.loads(source.decode("utf-8"))
    out = ["import os as __os, subprocess as __subprocess\n"]
    for number, cell in _code_cells(notebook) or []:
        scanned = _scan_cell(number, cell_source(cell))
        out.append(f"# cell {number}\n")
        if not scanned.python:
            out += [f"# {line}\n" for line in scanned.source.splitlines()]
            continue
        replacements = []
        for magic in scanned.magics:
            text = scanned.source[magic.start:magic.end]
            if magic.env_key is not None:
                name = scanned.source[magic.env_key[0]:magic.env_key[1]]
                value = text[magic.env_key[1] - magic.start:].lstrip(" \t=")
                replacements.append(f"__os.environ[{name!r}] = {value!r}")
            elif magic.shell is not None:
                command = scanned.source[magic.shell[0]:magic.shell[1]].strip()
                replacements.append(f"__subprocess.run({command!r}, shell=True, check=False)")
            else:
                replacements.append(f"None  # {text}")
        out.append(_PLACEHOLDER_RE.sub(lambda m: replacements[int(m.group(1))], scanned.masked))
        if not out[-1].endswith("\n"):
            out.append("\n")
    return "".join(out)
