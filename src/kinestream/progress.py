"""How far long offline work has come, as numbers on the ``kinestream.progress`` logger.

The library prints nothing: a long step (IK on every frame of a trial, the
four steps of ``process``) counts its work in a :class:`Task`, which sends a
DEBUG record at each count, its ``progress`` attribute ``(done, total)``, beside
``task`` (the step's name) and ``unit``. Nothing is sent unless a handler
listens at DEBUG on ``kinestream.progress``: the command line draws the
records as progress bars (``kinestream.commands.terminal``); a notebook sees
nothing of them unless it asks.
"""

from __future__ import annotations

import itertools
import logging
from typing import Self

log = logging.getLogger("kinestream.progress")

_ids = itertools.count()


class Task:
    """``total`` units of work (frames, steps) named ``name``, counted with :meth:`update`.

    Used as a context manager, its first record has 0 done and its last ``closed`` True. ``leave``: whether a bar
    drawn of it stays on the terminal once the task is done. :meth:`stage` names what is under way (IK, scale, ...).
    """

    def __init__(self, total: int, name: str, unit: str = "frame", leave: bool = False):
        self.total, self.name, self.unit, self.leave = int(total), name, unit, leave
        self.done = 0
        self.under_way = ""
        self.id = next(_ids)

    def __enter__(self) -> Self:
        """Start the task: its first record, 0 done."""
        self._send()
        return self

    def __exit__(self, *exc) -> None:
        """End the task: its last record, ``closed``."""
        self._send(closed=True)

    def update(self, n: int = 1, stage: str | None = None) -> None:
        """Count ``n`` more units done (and name what is under way now, ``stage``, when given)."""
        self.done += n
        if stage is not None:
            self.under_way = stage
        self._send()

    def stage(self, what: str) -> None:
        """Name what is under way now (IK, scale, ...)."""
        self.under_way = what
        self._send()

    def _send(self, closed: bool = False) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        extra = {
            "progress": (self.done, self.total),
            "task": self.name,
            "task_id": self.id,
            "unit": self.unit,
            "stage": self.under_way,
            "leave": self.leave,
            "closed": closed,
        }
        log.debug("%s: %d/%d %ss", self.name, self.done, self.total, self.unit, extra=extra)
