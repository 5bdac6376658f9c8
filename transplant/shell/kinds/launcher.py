"""``shell_launcher``: ``python -m torch.distributed.launch [--use_env] ...`` -> ``torchrun ...``.

Only a literal interpreter word (``python``, ``python3.10``, ``/usr/bin/python3``) directly followed by
``-m MODULE`` is rewritten; anything else (``$PYTHON -m ...``, ``python -u -m ...``) is a row, since
the interpreter's own options or a variable cannot be carried over to ``torchrun`` mechanically.
Flags that torchrun always implies (``--use_env``) are dropped, but only among the launcher's own
options: the same word after the training script belongs to the script.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from transplant.rules.model import StructuralRule
from transplant.shell.model import Command, Findings, ShellScan, Word
from transplant.sources.edits import Edit, apply_edits

# Launcher options that take no value (every other option is followed by its value unless `--x=y`).
BOOL_OPTIONS = frozenset({"--use_env", "--use-env", "--standalone", "--no_python", "--no-python", "-m",
                          "--module", "--run_path", "--run-path"})


def launch_site(command: Command, modules: Sequence[str]) -> int | None:
    """Index of the ``-m`` word that starts a launcher module in ``command``, or None."""
    words = command.words
    for k in range(len(words) - 1):
        if words[k].value == "-m" and words[k + 1].value in modules:
            return k
    return None


def launcher_options(words: Sequence[Word], first: int) -> list[int]:
    """Indexes of the launcher's own option words from ``first`` up to the training script."""
    out: list[int] = []
    i = first
    while i < len(words) and words[i].value.startswith("-"):
        out.append(i)
        value = words[i].value
        i += 1 if ("=" in value or value in BOOL_OPTIONS) else 2
    return out


def check(rule: StructuralRule, scan: ShellScan, findings: Findings, rules: Sequence[StructuralRule]) -> None:
    modules: list[str] = rule.data["modules"]
    target: str = rule.data["replacement"]
    drop = frozenset(rule.data.get("drop_flags", ()))
    interpreter = re.compile(rule.data.get("interpreter_pattern", r"^python[0-9.]*$"))
    for command in scan.commands:
        k = launch_site(command, modules)
        if k is None:
            continue
        words = command.words
        module = words[k + 1]
        interp = words[k - 1] if k > 0 else None
        literal = (interp is not None and command.name_index() == k - 1 and interp.raw == interp.value
                   and interpreter.match(interp.value.rsplit("/", 1)[-1]))
        if not literal:
            index = command.name_index()
            first = words[index] if index is not None and index < k else words[k]
            shown = scan.text[first.start:module.end]
            findings.report(rule, first.start, module.end, shown,
                            f"not rewritten (the interpreter is not a plain `python` word): replace `{shown}` "
                            f"with `{target}` by hand, keeping the launcher options. {rule.tip}".strip())
            continue
        assert interp is not None
        edits = [Edit(interp.start, module.end, target)]
        dropped: list[str] = []
        for i in launcher_options(words, k + 2):
            if words[i].value in drop:
                edits.append(Edit(words[i - 1].end, words[i].end, ""))
                dropped.append(words[i].raw)
        last = words[max([k + 1] + [i for i in launcher_options(words, k + 2)])]
        before = scan.text[interp.start:last.end]
        after = _span_after(scan.text, edits, interp.start, last.end)
        message = rule.message + (f" ({', '.join(dropped)} dropped: torchrun always sets LOCAL_RANK etc.)"
                                  if dropped else "")
        findings.change(rule, edits, interp.start, last.end, before, after, message=message)


def _span_after(text: str, edits: list[Edit], start: int, end: int) -> str:
    """The text of ``text[start:end]`` once ``edits`` (all inside it) are applied."""
    inner = [Edit(e.start - start, e.end - start, e.replacement) for e in edits]
    return apply_edits(text[start:end], inner)
