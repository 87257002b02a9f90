"""What the commands show on the terminal while they run.

The library's log as plain lines, its long steps as progress bars, the live status line.

The library prints nothing; it logs to the ``kinestream`` loggers. :func:`showing_log` (around every command, in
``kinestream.commands.main``) puts one handler on them that prints each INFO record as the line the commands
always printed (on stderr, the message alone) and draws the records of ``kinestream.progress`` as tqdm bars.
A command changes where a logger's lines go, or hides them, with :func:`show`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

#: What ``calibrate`` tells the person standing in front of the cameras (its other records are the service's log).
PROMPTS = "kinestream.live.calibrate.prompts"


class Lines(logging.Handler):
    """kinestream's records on the terminal: INFO and above as lines, progress records as bars.

    ``routes`` maps a logger name (and the loggers under it) to where its lines go: ("stderr" or "stdout", a
    formatter), or (None, None) to hide its INFO lines (its warnings still show, on stderr); the longest name
    that matches wins.
    """

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.routes: dict[str, tuple[str | None, logging.Formatter | None]] = {}
        self.route("kinestream", "stderr")
        self.bars: dict[int, Any] = {}

    def route(self, logger: str, stream: str | None, prefix: str = "") -> None:
        self.routes[logger] = (stream, logging.Formatter(prefix + "%(message)s") if stream else None)

    def _route(self, name: str) -> tuple[str | None, logging.Formatter | None]:
        while name not in self.routes and "." in name:
            name = name.rsplit(".", 1)[0]
        return self.routes.get(name, self.routes["kinestream"])

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if hasattr(record, "progress"):
                self._draw(record)
                return
            if record.levelno < logging.INFO:
                return
            stream, formatter = self._route(record.name)
            if stream is None:
                if record.levelno < logging.WARNING:
                    return
                stream, formatter = self.routes["kinestream"]
            out = sys.stdout if stream == "stdout" else sys.stderr
            text = (formatter or logging.Formatter()).format(record)
            if self.bars:  # above the bars, which are drawn again below it
                from tqdm import tqdm

                tqdm.write(text, file=out)
            else:
                print(text, file=out, flush=True)
        except Exception:
            self.handleError(record)

    def _draw(self, record) -> None:
        """A progress record as a tqdm bar on stderr (none when stderr is not a terminal), as the commands drew them.

        The bar is made at the task's first record, moved on, and closed at its last.
        """
        bar = self.bars.get(record.task_id)
        if bar is None:
            if record.closed:
                return
            from tqdm import tqdm

            bar = self.bars[record.task_id] = tqdm(
                total=record.progress[1],
                desc=record.task,
                unit=record.unit,
                file=sys.stderr,
                leave=record.leave,
                dynamic_ncols=True,
                disable=None,
            )
        if record.stage and record.stage != getattr(bar, "postfix", None):
            bar.set_postfix_str(record.stage)
        if record.progress[0] != bar.n:
            bar.update(record.progress[0] - bar.n)
        if record.closed:
            self.bars.pop(record.task_id).close()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()
        super().close()


_shown: list[Lines] = []  # the handler of the command running


@contextlib.contextmanager
def showing_log():
    """The ``kinestream`` loggers shown on the terminal (:class:`Lines`) while a command runs.

    The handler, and any route a command set, are gone after. Inside another, the one already there is kept.
    """
    if _shown:
        yield _shown[-1]
        return
    top, progress = logging.getLogger("kinestream"), logging.getLogger("kinestream.progress")
    levels = top.level, progress.level
    handler = Lines()
    top.addHandler(handler)
    top.setLevel(logging.INFO)
    progress.setLevel(logging.DEBUG)
    _shown.append(handler)
    try:
        yield handler
    finally:
        _shown.remove(handler)
        top.removeHandler(handler)
        handler.close()
        top.setLevel(levels[0])
        progress.setLevel(levels[1])


def show(logger: str, stream: str | None = "stderr", prefix: str = "") -> None:
    """Show the INFO lines of ``logger`` (and the loggers under it) on ``stream``, each after ``prefix``.

    ``stream`` is "stderr", "stdout" or None (not shown), for the rest of the command. Nothing when no command is
    showing the log (a command function called from Python).
    """
    if _shown:
        _shown[-1].route(logger, stream, prefix)


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
