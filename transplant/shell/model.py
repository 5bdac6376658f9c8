"""Records of a parsed shell text and of what the shell rules found in it.

Offsets are into the *file* text the front end handed over (not into one parsed chunk), so an edit
or a row can be placed without knowing where the text came from (a script, a Makefile recipe, a
Dockerfile ``RUN``, a notebook ``!`` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transplant.sources.edits import Edit


@dataclass(frozen=True)
class Word:
    """One shell word: ``raw`` is its text as written (quotes included), ``value`` after quote removal."""

    start: int
    end: int
    value: str
    raw: str


@dataclass(frozen=True)
class Command:
    """A simple command: leading ``NAME=value`` assignments, then its words (redirections left out)."""

    assignments: tuple[Word, ...]
    words: tuple[Word, ...]

    @property
    def start(self) -> int:
        return (self.assignments or self.words)[0].start

    def name_index(self) -> int | None:
        """Index in ``words`` of the program that runs, past wrappers like ``sudo``/``nohup``/``env A=1``."""
        index = 0
        while index < len(self.words):
            word = self.words[index].value
            base = word.rsplit("/", 1)[-1]
            if base in _WRAPPERS:
                index += 1
                # the wrapper's own options and, for env, its NAME=value words
                while index < len(self.words) and (self.words[index].value.startswith("-")
                                                  or (base == "env" and _is_assignment(self.words[index].value))):
                    index += 1
                if base == "timeout" and index < len(self.words):
                    index += 1  # the duration
                continue
            return index
        return None


_WRAPPERS = frozenset({"sudo", "nohup", "exec", "time", "env", "nice", "timeout", "stdbuf", "command", "xargs"})


def _is_assignment(text: str) -> bool:
    name, sep, _ = text.partition("=")
    return bool(sep) and name.replace("_", "a").isalnum() and not name[:1].isdigit()


@dataclass(frozen=True)
class Parameter:
    """A parameter expansion ``$NAME`` / ``${NAME...}``; ``name_start`` is where NAME is spelled."""

    name: str
    name_start: int
    start: int
    end: int


@dataclass(frozen=True)
class Unparsed:
    """A line the parser could not read (``reason`` is bashlex's message)."""

    start: int
    end: int
    text: str
    reason: str


@dataclass
class ShellScan:
    """Everything the rules may look at in one shell text (or one file of several shell snippets)."""

    text: str                                           # the whole file text offsets refer to
    commands: list[Command] = field(default_factory=list)
    parameters: list[Parameter] = field(default_factory=list)
    #: ``NAME=value`` keys outside a shell command (Dockerfile ``ENV``, notebook ``%env``): start, end of NAME
    env_keys: list[Word] = field(default_factory=list)
    #: Dockerfile ``FROM`` images
    images: list[Word] = field(default_factory=list)
    unparsed: list[Unparsed] = field(default_factory=list)


@dataclass(frozen=True)
class ShellChange:
    """An edit and its row (kept together so that they cannot drift apart)."""

    rule: str
    edits: tuple[Edit, ...]
    start: int             # span the row names (the word or words before the edit)
    end: int
    message: str
    severity: str
    before: str
    after: str


@dataclass(frozen=True)
class ShellReport:
    """A use the rules cannot migrate: one unsupported_api.csv row."""

    rule: str
    start: int
    end: int
    op: str
    tip: str


@dataclass
class Findings:
    """What the rule kinds recorded for one scan."""

    changes: list[ShellChange] = field(default_factory=list)
    reports: list[ShellReport] = field(default_factory=list)

    def change(self, rule: object, edits: list[Edit], start: int, end: int, before: str, after: str,
               message: str = "") -> None:
        """Record an edit with its row (message/severity from the rule unless given)."""
        self.changes.append(ShellChange(getattr(rule, "id"), tuple(edits), start, end,
                                        message or getattr(rule, "message"), getattr(rule, "severity"),
                                        before, after))

    def report(self, rule: object, start: int, end: int, op: str, tip: str = "") -> None:
        """Record an unsupported use (tip from the rule unless given)."""
        self.reports.append(ShellReport(getattr(rule, "id"), start, end, op, tip or getattr(rule, "tip")))
