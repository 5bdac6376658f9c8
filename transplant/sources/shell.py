"""Front end for shell text: scripts (``.sh``, ``.bash``), Makefile recipes and Dockerfiles.

Each dialect cuts its file into shell snippets (offsets into the file text) for
:mod:`transplant.shell.parse`, plus what is not shell but still ours (Dockerfile ``FROM`` images and
``ENV`` keys); the ``shell_*``/``docker_*`` rules then record edits and rows
(:func:`transplant.shell.kinds.check_scan`), and the edits are applied once to the original text.
Bytes are decoded with ``surrogateescape`` so that any byte the rules do not touch comes back as it was.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Collection, Sequence

from transplant.results import Change, FileResult, Operation, Status, Unsupported
from transplant.rules import RuleSet
from transplant.rules.model import StructuralRule
from transplant.shell.model import Command, Findings, ShellScan, Word
from transplant.sources.edits import Edit, LineIndex, OverlappingEdits, apply_edits

SCRIPT_SUFFIXES = (".sh", ".bash")
_MAKEFILE_NAMES = frozenset({"Makefile", "makefile", "GNUmakefile"})
_DOCKERFILE_NAMES = frozenset({"Dockerfile", "Containerfile"})


def dialect(rel: str) -> str | None:
    """``script`` / ``makefile`` / ``dockerfile`` for a path we read as shell, else None."""
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(SCRIPT_SUFFIXES):
        return "script"
    if name in _MAKEFILE_NAMES or name.endswith(".mk"):
        return "makefile"
    if (name in _DOCKERFILE_NAMES or name.startswith(("Dockerfile.", "Containerfile."))
            or name.endswith((".dockerfile", ".Dockerfile"))):
        return "dockerfile"
    return None


def matches(rel: str) -> bool:
    """Whether the shell front end reads this path."""
    return dialect(rel) is not None


def shell_rules(ruleset: RuleSet) -> list[StructuralRule]:
    """The active rules of the shell kinds, in load order."""
    from transplant.shell.kinds import SHELL_KINDS

    return [r for r in ruleset if isinstance(r, StructuralRule) and r.kind in SHELL_KINDS]


def trigger_words(rules: Sequence[StructuralRule]) -> tuple[str, ...]:
    """Substrings one of which a text must contain for a shell rule to apply (a cheap prefilter)."""
    words: set[str] = set()
    for rule in rules:
        data = rule.data
        for key in ("map", "prefixes", "commands", "images", "flags", "modules", "words"):
            # dict keys or list items; a glob contributes its literal head
            words.update(str(k).split("*", 1)[0] for k in data.get(key) or ())
    return tuple(sorted(w for w in words if w))


# ---------------------------------------------------------------------------------------------------
# Dialects: where the shell snippets of a file are


_CONTINUED = re.compile(r"\\[ \t]*\r?$")


def _logical_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of each logical line: physical lines joined by a trailing backslash."""
    out: list[tuple[int, int]] = []
    pos = 0
    length = len(text)
    while pos < length:
        start = pos
        while True:
            nl = text.find("\n", pos)
            end = length if nl < 0 else nl
            line_start, pos = pos, length if nl < 0 else nl + 1
            if pos >= length or not _CONTINUED.search(text[line_start:end]):
                break
        out.append((start, end))
    return out


def _makefile_snippets(text: str) -> list[tuple[int, int]]:
    """Recipe lines (TAB-indented, with their continuations), past make's ``@``/``-``/``+`` prefixes."""
    out: list[tuple[int, int]] = []
    in_define = False
    for start, end in _logical_lines(text):
        line = text[start:end]
        stripped = line.strip()
        if not line.startswith("\t"):
            if stripped.startswith("define "):
                in_define = True
            elif stripped == "endef":
                in_define = False
            continue
        if in_define:
            continue
        k = start
        while k < end and text[k] in "\t @-+":
            k += 1
        out.append((k, end))
    return out


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _dockerfile(scan: ShellScan) -> list[tuple[int, int]]:
    """Shell snippets of RUN/CMD/ENTRYPOINT (shell form); exec forms, FROM and ENV go into ``scan``."""
    from transplant.shell.parse import parse_into

    text = scan.text
    snippets: list[tuple[int, int]] = []
    for start, end in _logical_lines(text):
        line = text[start:end]
        match = re.match(r"[ \t]*([A-Za-z]+)[ \t]+", line)
        if not match or line.lstrip().startswith("#"):
            continue
        instruction = match.group(1).upper()
        args = start + match.end()
        if instruction == "FROM":
            for word in re.finditer(r"\S+", text[args:end]):
                if not word.group().startswith("--"):
                    scan.images.append(Word(args + word.start(), args + word.end(), word.group(), word.group()))
                    break
        elif instruction == "ENV":
            body = text[args:end]
            first = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(=|[ \t]+)", body)
            if first and first.group(2) != "=":  # legacy `ENV NAME value`
                scan.env_keys.append(Word(args, args + len(first.group(1)), first.group(1), first.group(1)))
                continue
            before = len(scan.commands)
            parse_into(scan, args, end)
            for command in scan.commands[before:]:
                for word in command.assignments:
                    name = word.value.partition("=")[0]
                    scan.env_keys.append(Word(word.start, word.start + len(name), name, name))
            del scan.commands[before:]  # ENV is not a command: only its keys are ours
        elif instruction in ("RUN", "CMD", "ENTRYPOINT"):
            body = text[args:end]
            if body.lstrip().startswith("["):
                try:
                    argv = json.loads(body)
                except ValueError:
                    argv = None
                if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
                    words = tuple(Word(args + m.start() + 1, args + m.end() - 1, json.loads(m.group()),
                                       m.group()[1:-1]) for m in _JSON_STRING.finditer(body))
                    if len(words) == len(argv):
                        scan.commands.append(Command((), words))
                        continue
            # RUN --mount=... flags of BuildKit come before the command
            flags = re.match(r"(?:--[a-z-]+=\S+[ \t]+)*", body)
            snippets.append((args + (flags.end() if flags else 0), end))
    return snippets


# ---------------------------------------------------------------------------------------------------
# The front end


def scan_file(text: str, kind: str) -> ShellScan:
    """Parse every shell snippet of one file of dialect ``kind``."""
    from transplant.shell.parse import parse_into

    scan = ShellScan(text)
    if kind == "script":
        snippets = [(0, len(text))]
    elif kind == "makefile":
        snippets = _makefile_snippets(text)
    else:
        snippets = _dockerfile(scan)
    for start, end in snippets:
        parse_into(scan, start, end)
    return scan


def rows(findings: Findings, index: LineIndex, text: str = "") -> tuple[list[Change], list[Unsupported]]:
    """Report rows of ``findings`` with file lines and columns."""
    changes = []
    for change in findings.changes:
        if text[change.start - 1:change.start] == '"' == text[change.end:change.end + 1] and '"' in change.before:
            # a Dockerfile exec form: show the JSON strings whole, not from inside their quotes
            change = dataclasses.replace(change, before=f'"{change.before}"', after=f'"{change.after}"')
        line, column = index.position(change.start)
        end_line, _ = index.position(max(change.start, change.end - 1))
        changes.append(Change(change.rule, line, end_line, column, Operation.MODIFY, change.message,
                              change.severity, change.before, change.after))
    unsupported = []
    for report in findings.reports:
        line, column = index.position(report.start)
        end_line, _ = index.position(max(report.start, report.end - 1))
        unsupported.append(Unsupported(report.rule, line, end_line, report.op, report.tip, column))
    return changes, unsupported


_INSTALLERS = frozenset({"pip", "pip3", "conda", "mamba", "micromamba"})
_INDEX_OPTIONS = frozenset({"-i", "--index-url", "--extra-index-url", "-f", "--find-links"})
_VALUE_OPTIONS = _INDEX_OPTIONS | {"-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t",
                                   "--target", "-n", "--name", "-p", "--prefix", "--channel"}


def install_rows(scan: ShellScan, ruleset: RuleSet, index: LineIndex) -> list[Unsupported]:
    """Requirement rows (TP66x) for the packages and indexes of ``pip install`` / ``conda install``."""
    from transplant.sources.requirements import entry_rows

    out: list[Unsupported] = []
    for command in scan.commands:
        words = command.words
        at = command.name_index()
        if at is None:
            continue
        program = words[at].value.rsplit("/", 1)[-1]
        if program.startswith("python") and at + 2 < len(words) and words[at + 1].value == "-m":
            at, program = at + 2, words[at + 2].value
        if not (program in _INSTALLERS or re.fullmatch(r"pip[0-9.]+", program)):
            continue
        if at + 1 >= len(words) or words[at + 1].value != "install":
            continue
        i = at + 2
        while i < len(words):
            word = words[i]
            name, sep, _ = word.value.partition("=")
            if word.value.startswith("-"):
                if name in _INDEX_OPTIONS:
                    value = word.value if sep else (f"{word.value} {words[i + 1].value}" if i + 1 < len(words) else "")
                    line, column = index.position(word.start)
                    out += entry_rows(value, line, ruleset, column)
                i += 1 if sep or name not in _VALUE_OPTIONS else 2
                continue
            line, column = index.position(word.start)
            out += entry_rows(word.value, line, ruleset, column)
            i += 1
    return out


def migrate_shell(source: bytes, rel: str, ruleset: RuleSet, project_modules: Collection[str] = ()) -> FileResult:
    """Migrate one script / Makefile / Dockerfile: CHANGED with ``new_source``, or UNCHANGED with rows."""
    from transplant.shell.kinds import check_scan

    kind = dialect(rel) or "script"
    rules = shell_rules(ruleset)
    triggers = trigger_words(rules) + ("install",)  # `pip install` lines get the requirement rules
    if not rules or not any(t.encode() in source for t in triggers):
        return FileResult(path=rel, status=Status.UNCHANGED, kind="shell")
    text = source.decode("utf-8", "surrogateescape")
    scan = scan_file(text, kind)
    findings = check_scan(scan, rules)
    changes, unsupported = rows(findings, LineIndex(text), text)
    unsupported += install_rows(scan, ruleset, LineIndex(text))
    edits: list[Edit] = [e for change in findings.changes for e in change.edits]
    if not edits:
        return FileResult(path=rel, status=Status.UNCHANGED, unsupported=unsupported, kind="shell")
    try:
        new_text = apply_edits(text, edits)
    except OverlappingEdits as exc:
        return FileResult(path=rel, status=Status.FAILED, unsupported=unsupported, kind="shell",
                          reason=f"{rel}:1: two shell rules edit the same words ({exc}); left unchanged")
    return FileResult(path=rel, status=Status.CHANGED, new_source=new_text.encode("utf-8", "surrogateescape"),
                      changes=changes, unsupported=unsupported, kind="shell")
