"""Text meant for one line of a log, a message or a report column: nothing in it may start a new line.

File names are user data: a name may hold a newline, a carriage return, an escape sequence or bytes
that are not UTF-8 (kept by Python as surrogate escapes). Written as they are, such names would forge
lines in ``transplant.log`` or on stderr. :func:`one_line` shows every such character as a backslash
escape (``\\n``, ``\\x1b``, ``\\xe9``), and leaves every other character, backslashes included, alone.
"""

from __future__ import annotations

import re

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0/C1 controls, DEL, the Unicode line/paragraph separators and lone surrogates (undecodable bytes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the original byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def one_line(text: str) -> str:
    """``text`` with control characters, line separators and undecodable bytes shown as escapes."""
    return _UNSAFE.sub(_escape, text)
