"""What the commands show on the terminal while they run: the live status line."""

from __future__ import annotations

import sys


def status_printer():
    """A callable that shows the service's status (a line, or a line per person): rewritten in place on a
    terminal, printed as it comes otherwise."""
    tty = sys.stderr.isatty()
    shown = {"lines": 1}

    def show(text: str) -> None:
        if not tty:
            print(text, file=sys.stderr, flush=True)
            return
        lines = text.split("\n")
        up = f"\x1b[{shown['lines'] - 1}F" if shown["lines"] > 1 else ""  # back to the first line shown last time
        out = "\n".join(line[:160].ljust(160) for line in lines + [""] * (shown["lines"] - len(lines)))
        print(up + "\r" + out, end="", file=sys.stderr, flush=True)
        shown["lines"] = max(len(lines), shown["lines"])

    return show
