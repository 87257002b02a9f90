"""`python -m kinestream view` as its own process, its stderr read as it comes; and reading a .rrd back.

viewer = Viewing(tmp, "--endpoint", served.out, "--save", str(rrd))
viewer.wait_for(lambda line: "the service has published" in line, "a status at the viewer")
viewer.stop()                       # SIGINT: it finishes the recording and exits 0
rows = entity_rows(rrd)             # entity -> [(time s, values)], through rerun.chunk.RrdReader
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from broker import DEADLINE_S, wait_until

ROOT = Path(__file__).resolve().parents[1]


class Viewing:
    """`python -m kinestream view ARGS...` with its stderr lines collected by a thread."""

    def __init__(self, tmp: Path, *args: str):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kinestream", "view", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
        except ValueError:  # the pipe closed under the read as the viewer was stopped: nothing more to read
            return

    def wait_for(self, holds, what: str, timeout: float = 2 * DEADLINE_S) -> str:
        """The first stderr line for which ``holds(line)`` is true (an AssertionError with the last lines after
        ``timeout`` s, or when the viewer exits first)."""

        def found():
            if self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"the viewer exited ({self.proc.returncode}): {self.lines[-10:]}")
            return next((line for line in self.lines if holds(line)), None)

        return wait_until(found, lambda: f"{what}; the viewer said {self.lines[-5:]}", timeout)

    def stop(self, sig=signal.SIGINT) -> tuple[int, str]:
        """Signal the viewer (SIGINT, as Ctrl-C); its exit status and what it printed on stdout."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        out, _ = self.proc.communicate(timeout=60)
        self._reader.join(10)
        return self.proc.returncode, out


MAIN_COMPONENTS = (":positions", ":strips", ":scalars", ":text")  # the column read of each archetype


def entity_rows(rrd: Path) -> dict[str, list[tuple[float, list]]]:
    """Every entity of the recording in ``rrd`` (its first recording, not the blueprint), read through Rerun's
    own reader: entity path -> the rows logged on the ``time`` timeline, as (seconds, the row's first data
    column as a list: positions, strips, scalars or text); static rows are left out."""
    from rerun.chunk import RrdReader

    rows: dict[str, list[tuple[float, list]]] = {}
    for chunk in RrdReader(rrd).stream().to_chunks():
        if chunk.is_static:
            continue
        batch = chunk.to_record_batch()
        names = batch.schema.names
        if "time" not in names:
            continue
        data = [n for n in names if n.endswith(MAIN_COMPONENTS)]
        times = batch.column("time").cast("int64").to_numpy(zero_copy_only=False) / 1e9
        values = batch.column(data[0]).to_pylist() if data else [None] * len(times)
        rows.setdefault(chunk.entity_path, []).extend(zip(times.tolist(), values, strict=True))
    for entity in rows:
        rows[entity].sort(key=lambda row: row[0])
    return rows


def scalar_curve(rows: dict, entity: str, series: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The times and values of one series (the ``series``-th scalar of each row) of a Scalars entity from
    :func:`entity_rows`."""
    t = np.array([time for time, _ in rows[entity]])
    v = np.array([value[series] for _, value in rows[entity]], dtype=float)
    return t, v
