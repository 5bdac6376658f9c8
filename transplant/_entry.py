"""The first code of the ``transplant`` command: interrupts are handled before anything heavy loads.

Importing the command line (click, the rule loader) takes a noticeable moment; a Ctrl-C or SIGTERM in
that moment must end the run like one at any later point: one line on stderr, exit status 130.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130
_MESSAGE = b"transplant: error: interrupted; OUT is incomplete (every file in it is whole)\n"

_received: list[int] = []
_reported: list[bool] = []


def raise_interrupt(signum: int, frame: object) -> None:
    """Signal handler: record the signal, raise KeyboardInterrupt."""
    # Remembered as well as raised: Python drops an exception raised inside a finalizer (a generator
    # closed by the garbage collector, a __del__), so the command checks again before it finishes.
    _received.append(signum)
    raise KeyboardInterrupt


def was_interrupted() -> bool:
    """Whether Ctrl-C or SIGTERM arrived since start-up (even if its exception was swallowed)."""
    return bool(_received)


def interrupted() -> None:
    """Report an interrupt (once, also when stderr is gone) and raise ``SystemExit(130)``."""
    if not _reported:
        _reported.append(True)
        try:
            sys.stderr.flush()
            sys.stderr.buffer.write(_MESSAGE)
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
    sys.exit(EXIT_INTERRUPTED)


def _exit_interrupted() -> None:
    # No further signal may turn the exit into a death by signal, and the interpreter's own exit path
    # would report an interrupt that surfaced while it ran (e.g. during an import) as one by SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(EXIT_INTERRUPTED)


def _unraisable(hook: object) -> object:
    def quiet_interrupts(unraisable: object) -> None:
        # Our interrupt, swallowed by a finalizer: recorded already and handled; not a warning.
        if getattr(unraisable, "exc_type", None) is KeyboardInterrupt and _received:
            return
        hook(unraisable)  # type: ignore[operator]

    return quiet_interrupts


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``transplant``) and ``python -m transplant``."""
    sys.unraisablehook = _unraisable(sys.unraisablehook)  # type: ignore[assignment]
    try:
        signal.signal(signal.SIGINT, raise_interrupt)
        signal.signal(signal.SIGTERM, raise_interrupt)  # SIGTERM unwinds like Ctrl-C
        from transplant.cli import main as cli_main

        cli_main(argv)
    except KeyboardInterrupt:
        try:
            interrupted()
        except SystemExit:
            pass
        _exit_interrupted()
    except SystemExit as exc:
        if exc.code == EXIT_INTERRUPTED and was_interrupted():
            _exit_interrupted()
        raise
