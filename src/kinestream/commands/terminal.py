"""What the commands show on the terminal while they run: the live status line."""

from __future__ import annotations

import sys


def status_printer():
    """A callable that shows the service's status (a line, or a line per person).

    Rewritten in place on a terminal, printed as it comes otherwise.
    """
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


def workers_line(statuses: dict, n: int, router: dict) -> str:
    """The status of ``serve --workers n``: the totals of every worker heard from, then a line per worker.

    The totals include the router's refusals; a worker's line gives its people, frames and p99.
    """
    heard = [statuses[k] for k in sorted(statuses)]
    total = {key: sum(int(s.get(key, 0)) for s in heard) for key in ("frames_in", "frames_out", "skipped")}
    lines = [
        f"{len(heard)} of {n} workers  in {total['frames_in']} out {total['frames_out']} skipped {total['skipped']}"
        f"  refused (max_people) {router.get('refused', 0)}"
    ]
    for share, s in sorted(statuses.items()):
        lat = s.get("latency_ms", {})
        people = ", ".join(s.get("people") or {}) or "nobody yet"
        lines.append(
            f"  worker {share}: in {s.get('frames_in', 0)} out {s.get('frames_out', 0)} skipped {s.get('skipped', 0)}"
            f"  p99 {lat.get('p99')} ms  {people}"
        )
    return "\n".join(lines)
