"""What the commands show on the terminal while they run: the live status line."""

from __future__ import annotations

import sys


def status_printer():
    """A callable that shows the service's status line: rewritten in place on a terminal, one line each otherwise."""
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        if tty:
            print("\r" + line[:160].ljust(160), end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show
