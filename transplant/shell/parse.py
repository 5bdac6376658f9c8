"""Shell text -> :class:`ShellScan` with bashlex (a real parser: words, quotes, expansions, heredocs).

bashlex does not know every bash construct (arrays, ``case``, ``[[ ]]``, ``$(( ))``). A text it cannot
read as a whole is read one complete command at a time: a region grows line by line while the parser
says "unexpected end of file" (an open quote, ``if`` without ``fi``, a heredoc); a region it refuses
outright becomes :class:`Unparsed` lines. Those lines are never rewritten: the rules turn the ones
that mention a CUDA setting into report rows (never a regex guess at what they mean).

Comments and heredoc bodies are not part of bashlex's tree, so no rule ever sees (or edits) them.
"""

from __future__ import annotations

import re
from typing import Any

from transplant.shell.model import Command, Parameter, ShellScan, Unparsed, Word

#: A region longer than this that still does not parse is given up (bounded time on odd input).
MAX_REGION_LINES = 256
#: Re-reading regions may cost at most this many times the snippet's size (plus a constant); the
#: lines left when it is spent are Unparsed, so an odd 20,000-line script still takes seconds.
PARSE_BUDGET_FACTOR = 20
PARSE_BUDGET_CONSTANT = 200_000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Incomplete(Exception):
    pass


class _Refused(Exception):
    pass


# bashlex 0.18 looks for a quoted heredoc delimiter with its quotes (`<<'EOF'` waits for a line `'EOF'`).
_QUOTED_HEREDOC = re.compile(r"""<<(-?)[ \t]*(['"])([A-Za-z_][A-Za-z0-9_.-]*)\2""")


def _unquote_heredocs(text: str) -> str:
    """Same length, delimiters unquoted (bashlex never expands a heredoc body, so nothing else changes)."""
    def repl(match: re.Match[str]) -> str:
        plain = f"<<{match.group(1)}{match.group(3)}"
        return plain + " " * (len(match.group()) - len(plain))

    return _QUOTED_HEREDOC.sub(repl, text) if "<<" in text else text


def _bashlex_parse(text: str) -> list[Any]:
    import bashlex

    try:
        return list(bashlex.parse(_unquote_heredocs(text)))
    except bashlex.errors.ParsingError as exc:
        message = str(exc)
        if "unexpected EOF" in message or "end-of-file" in message:
            raise _Incomplete(message) from None
        raise _Refused(message) from None
    except AttributeError:
        # bashlex fails this way on text that holds no command at all (blank lines, comments)
        if all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
            return []
        raise _Refused("not a shell command bashlex can read") from None
    except NotImplementedError as exc:
        raise _Refused(f"bashlex does not support {exc or 'this construct'}") from None
    except (IndexError, TypeError, ValueError, RecursionError) as exc:
        raise _Refused(f"bashlex cannot read this ({type(exc).__name__})") from None


def parse_into(scan: ShellScan, start: int, end: int) -> None:
    """Parse ``scan.text[start:end]`` and add what it holds to ``scan`` (offsets into ``scan.text``)."""
    text = scan.text[start:end]
    if not text.strip():
        return
    try:
        _collect(scan, _bashlex_parse(text), start)
        return
    except (_Incomplete, _Refused):
        pass
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    budget = [PARSE_BUDGET_FACTOR * len(text) + PARSE_BUDGET_CONSTANT]
    i = 0
    while i < len(lines):
        if budget[0] <= 0:
            _give_up(scan, text, offsets, i, len(lines) - 1, start, "parse time budget spent on this file")
            return
        j, nodes, reason = _region(text, lines, offsets, i, budget)
        if nodes is None:
            _give_up(scan, text, offsets, i, j, start, reason)
        else:
            _collect(scan, nodes, start + offsets[i])
        i = j + 1


def _region(text: str, lines: list[str], offsets: list[int], i: int,
            budget: list[int]) -> tuple[int, list[Any] | None, str]:
    """The shortest complete command region from line ``i``: (last line, nodes or None, reason).

    While the parser wants more (an open ``if``, quote or heredoc) the region grows by 1, 2, 4, ...
    lines, so a long block costs a few parses, not one per line; a refusal right after a jump walks
    the last jump's lines one by one (the construct may have closed before the refused line).
    """
    def complete(j: int) -> int:
        # a line continued with a backslash is not a complete command yet
        while j + 1 < len(lines) and lines[j].rstrip("\r\n").endswith("\\"):
            j += 1
        return j

    def attempt(j: int) -> tuple[str, list[Any] | None, str]:
        region = text[offsets[i]:offsets[j + 1]]
        budget[0] -= len(region)
        try:
            return "ok", _bashlex_parse(region), ""
        except _Incomplete as exc:
            return "more", None, str(exc)
        except _Refused as exc:
            return "refused", None, str(exc)

    j, known_incomplete, step = complete(i), None, 1
    while True:
        state, nodes, reason = attempt(j)
        if state == "ok":
            return j, nodes, ""
        if state == "more":
            if j + 1 >= len(lines) or j - i >= MAX_REGION_LINES or budget[0] <= 0:
                return j, None, reason
            known_incomplete, j, step = j, complete(min(len(lines) - 1, j + step)), step * 2
            continue
        if known_incomplete is not None and step > 2:
            k = complete(known_incomplete + 1)
            while k < j:
                state, nodes, reason_k = attempt(k)
                if state == "ok":
                    return k, nodes, ""
                if state == "refused":
                    return k, None, reason_k
                k = complete(k + 1)
        return j, None, reason


def _give_up(scan: ShellScan, text: str, offsets: list[int], first: int, last: int, base: int,
             reason: str) -> None:
    for k in range(first, last + 1):
        line = text[offsets[k]:offsets[k + 1]].rstrip("\r\n")
        if line.strip():
            scan.unparsed.append(Unparsed(base + offsets[k], base + offsets[k] + len(line), line, reason))


def _word(scan: ShellScan, node: Any, base: int) -> Word:
    s, e = node.pos
    return Word(base + s, base + e, node.word, scan.text[base + s:base + e])


def _collect(scan: ShellScan, nodes: list[Any], base: int) -> None:
    for node in nodes:
        _visit(scan, node, base)


def _visit(scan: ShellScan, node: Any, base: int) -> None:
    kind = getattr(node, "kind", "")
    if kind == "command":
        assignments: list[Word] = []
        words: list[Word] = []
        for part in node.parts:
            if part.kind == "assignment" and not words:
                assignments.append(_word(scan, part, base))
            elif part.kind in ("word", "assignment"):
                words.append(_word(scan, part, base))
        if assignments or words:
            scan.commands.append(Command(tuple(assignments), tuple(words)))
        for part in node.parts:
            _visit(scan, part, base)
        return
    if kind == "parameter":
        s, e = node.pos
        raw = scan.text[base + s:base + e]
        skip = 2 if raw.startswith("${") else 1
        match = _NAME.match(raw, skip)
        if match and raw.startswith("$"):
            scan.parameters.append(Parameter(match.group(), base + s + skip, base + s, base + e))
        return
    if kind == "heredoc":
        return  # documentation or a program for another interpreter: never ours to edit
    if kind in ("commandsubstitution", "processsubstitution"):
        _visit(scan, node.command, base)
        return
    for attr in ("parts", "list"):
        for child in getattr(node, attr, None) or ():
            _visit(scan, child, base)
    if kind == "redirect":
        target = getattr(node, "output", None)
        if target is not None and not isinstance(target, int):
            _visit(scan, target, base)
