"""Session recording: joint angles to .mot and markers to .trc, row by row, safe against the process being killed.

A recorder writes the file header at once, with the row count as a fixed-width
field (the number left-aligned, padded with spaces to ten characters: OpenSim's
STOFileAdapter, TRCFileAdapter, Storage and MarkerData all read it, and so do
kinestream's readers). Rows are formatted when they arrive and kept in memory;
a background thread appends them to the file as whole lines every
``flush_interval_s`` and then rewrites the row count in place, so the file on
disk is a complete, loadable recording of every row flushed so far. A process
killed outright (SIGKILL, power loss with ``fsync=True``) loses at most the
rows of the last flush interval.

A recording cut short is mended by :func:`~kinestream.files.recover.recover` (importable from here too), which
also reads the header's layout for the recorders.

Rows must come in strictly increasing time (as written, to 6 decimals), as
OpenSim's readers require. Missing angles are written as ``NaN``: the table
readers take them, but the legacy ``Storage`` reader stops at the first NaN.
A .trc with no frames makes OpenSim's TRC reader hang, so a marker session
that recorded nothing should be deleted, not opened.
"""

from __future__ import annotations

import atexit
import math
import os
import threading
import time
import weakref
from collections import deque
from pathlib import Path

import numpy as np

from kinestream.errors import RecordingError
from kinestream.files.mot import mot_header, mot_row
from kinestream.files.recover import _NOFOLLOW, COUNT_WIDTH, RecoverReport, _layout, count_field, recover
from kinestream.files.trc import _UNIT_SCALE, trc_header, trc_row

try:  # advisory lock: tells recover() that a live recorder still owns the file
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["COUNT_WIDTH", "MotRecorder", "RecoverReport", "TrcRecorder", "count_field", "recover", "set_aside"]


# ---------------------------------------------------------------------------
# recorders

_live: weakref.WeakSet[_Recorder] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Rows still in memory at a normal interpreter exit reach the file."""
    for rec in list(_live):
        try:
            rec.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def set_aside(*paths) -> list[tuple[Path, Path]]:
    """Move earlier files at ``paths`` (a recording and its companions) aside, under one free number.

    ``session.mot`` and ``session_markers.trc`` become ``session.1.mot`` and
    ``session_markers.1.trc`` (or .2, .3, ...: the first number free for all
    of them), so that a new recording never truncates an old one, for
    instance the crashed session ``kinestream recover`` should mend. A symlink
    is moved as a link; its target is not touched. Returns (old, new) pairs.

    Nothing is ever replaced: each file gets its new name as a hard link made
    only if that name is free (``os.link`` fails on an existing name, so two
    processes setting aside at once cannot both take one number), and loses
    its old name after. A file a live recorder holds (its lock, which
    :func:`recover` honours too) is refused; the lock is held while the files
    move, so a second ``set_aside`` of the same files is refused meanwhile.
    """
    given = [Path(p) for p in paths]
    held: list[int] = []
    try:
        present = [p for p in given if _hold(p, held)]
        if not present:
            return []
        n = 1
        while True:
            if not any(_aside(p, n).is_symlink() or _aside(p, n).exists() for p in given) and _link_all(present, n):
                break
            n += 1
        moved = []
        for p in present:
            try:
                os.unlink(p)
            except OSError as exc:
                raise RecordingError(
                    f"cannot move the earlier recording {p} aside: it is kept as {_aside(p, n).name} too, but its "
                    f"own name cannot be removed ({exc.strerror}); remove {p} yourself or record elsewhere",
                    given=p,
                    valid=f"remove {p} yourself or record elsewhere",
                ) from None
            moved.append((p, _aside(p, n)))
        return moved
    finally:
        for fd in held:
            os.close(fd)


def _aside(p: Path, n: int) -> Path:
    return p.with_name(f"{p.stem}.{n}{p.suffix}")


def _hold(p: Path, held: list[int]) -> bool:
    """Whether ``p`` is there to be set aside.

    A file (not a symlink) is locked first, its descriptor added to ``held``. KinestreamError when a recorder (or
    recover) holds it.
    """
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))  # a FIFO: no wait
    except FileNotFoundError:
        return p.is_symlink()  # a dangling symlink is moved as a link too
    except OSError:  # a symlink (ELOOP): moved as a link, its target untouched; else the move says why
        return True
    held.append(fd)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecordingError(
                f"{p} is being recorded (or set aside, or recovered) right now; record to another path, or stop "
                "the other recorder first",
                given=p,
                valid="another path, or stop the other recorder first",
            ) from None
    try:
        now = os.stat(p, follow_symlinks=False)
    except FileNotFoundError:
        return False  # set aside by another process between the open and the lock
    if (now.st_dev, now.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
        raise RecordingError(
            f"{p} was replaced while being set aside; another process is recording there", given=p, valid="another path"
        )
    return True


def _link_all(present: list[Path], n: int) -> bool:
    """Give each file its set-aside name ``n`` as a new hard link, never over an existing name.

    False (and no link left) when another process took one of the names first.
    """
    made: list[Path] = []
    for p in present:
        try:
            os.link(p, _aside(p, n), follow_symlinks=False)
        except FileExistsError:
            for m in made:
                os.unlink(m)
            return False
        except OSError as exc:
            for m in made:
                os.unlink(m)
            raise RecordingError(
                f"cannot move the earlier recording {p} aside to {_aside(p, n).name}: "
                f"{exc.strerror}; move it yourself or record elsewhere",
                given=p,
                valid="move it yourself or record elsewhere",
            ) from None
        made.append(_aside(p, n))
    return True


class _Recorder:
    """Row buffer, flush thread and header count shared by both formats."""

    kind = ""

    def __init__(self, path, header: str, flush_interval_s: float, fsync: bool, background: bool):
        if not (flush_interval_s > 0 and math.isfinite(flush_interval_s)):
            raise ValueError(f"flush_interval_s must be a positive number of seconds, not {flush_interval_s!r}")
        self.path = Path(path)
        self.flush_interval_s = float(flush_interval_s)
        self.fsync = bool(fsync)
        self._pending: deque[str] = deque()
        self._rows = 0
        self._flushed = 0
        self._last_time = -math.inf
        self._error: BaseException | None = None
        self._closed = False
        self._io = threading.RLock()
        self._stop = threading.Event()
        self._last_flush = time.monotonic()

        head = header.encode("utf-8")
        self._layout = _layout(head, self.kind, self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:  # a new file only: an earlier recording is never truncated, a symlink never followed
            self._fd = os.open(self.path, flags, 0o644)
        except FileExistsError:
            raise RecordingError(
                f"{self.path} already exists; a recording never overwrites one (set the old "
                f"one aside first: record.set_aside)",
                given=self.path,
                valid="set the old one aside first: record.set_aside",
            ) from None
        except OSError as exc:
            raise RecordingError(
                f"cannot create the recording {self.path}: {exc.strerror}",
                given=self.path,
                valid="a path that can be written",
            ) from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(self._fd)
                    raise RecordingError(
                        f"{self.path} is being recorded by another recorder right now",
                        given=self.path,
                        valid="another path",
                    ) from None
            os.ftruncate(self._fd, 0)
            _write_all(self._fd, head)
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            os.close(self._fd)
            raise RecordingError(
                f"cannot write the recording {self.path}: {exc.strerror}",
                given=self.path,
                valid="a path that can be written",
            ) from None
        _live.add(self)
        self._thread = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"record {self.path.name}", daemon=True)
            self._thread.start()

    # -- state -------------------------------------------------------------

    @property
    def rows(self) -> int:
        """Rows accepted so far (flushed or still in memory)."""
        return self._rows

    @property
    def flushed_rows(self) -> int:
        """Rows on disk, as the header's count says."""
        return self._flushed

    @property
    def last_time(self) -> float | None:
        """The time of the last row written (as written), or None before the first."""
        return None if self._last_time == -math.inf else self._last_time

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.path} rows={self._rows} flushed={self._flushed}"
            f"{' closed' if self._closed else ''}>"
        )

    def _refuse(self) -> None:
        if self._closed:
            raise ValueError(f"the recording {self.path} is closed")
        raise RecordingError(f"recording to {self.path} failed: {self._error}", given=self.path) from self._error

    def _add(self, line: str, written: float, t: float) -> None:
        # strictly increasing time as written, since OpenSim refuses anything else
        if not written > self._last_time:
            raise ValueError(
                f"time {t!r} is not after the previous row's time {self._last_time!r} (to 6 decimals); "
                "OpenSim requires strictly increasing time, so this row is not recorded"
            )
        self._last_time = written
        self._pending.append(line)
        self._rows += 1
        if self._thread is None and time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    # -- flushing ----------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self._flush_once(blocking=False)
            except BaseException as exc:  # noqa: BLE001 - reported to the writer
                self._error = exc
                return

    def _flush_once(self, blocking: bool = True) -> None:
        if not self._io.acquire(blocking=blocking):
            return  # another thread is flushing right now
        try:
            n = len(self._pending)
            if n:
                lines = [self._pending.popleft() for _ in range(n)]
                _write_all(self._fd, "".join(lines).encode("utf-8"))
                self._flushed += n
                field_bytes = count_field(self._flushed).encode("ascii")
                for start, _end in self._layout.counts:
                    os.pwrite(self._fd, field_bytes, start)
                if self.fsync:
                    os.fsync(self._fd)
            self._last_flush = time.monotonic()
        finally:
            self._io.release()

    def flush(self) -> None:
        """Write every row received so far and update the header's row count."""
        if self._closed:
            return
        if self._error is not None:
            self._refuse()
        try:
            self._flush_once()
        except OSError as exc:
            self._error = exc
            self._refuse()

    def close(self) -> None:
        """Write the remaining rows and the final row count, and close the file. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        error = self._error
        try:
            if error is None:
                self._flush_once()
        except OSError as exc:
            error = exc
        finally:
            os.close(self._fd)
            _live.discard(self)
        if error is not None:
            raise RecordingError(
                f"recording to {self.path} failed: {error}; "
                f"run 'kinestream recover {self.path}' to keep the rows that reached the disk",
                given=self.path,
                valid=f"kinestream recover {self.path}",
            )


class MotRecorder(_Recorder):
    """Joint angles, one row per frame, to an OpenSim Storage (.mot) file.

    ``columns`` are the coordinate names (plus any extra columns such as
    ``rmse_mm``); ``write(t, values)`` takes the time in seconds and one value
    per column (NaN or inf is written as ``NaN``). Rotations in degrees when
    ``in_degrees`` (the header says so; the recorder does not convert).
    """

    kind = "mot"

    def __init__(
        self,
        path,
        columns: list[str],
        in_degrees: bool = True,
        flush_interval_s: float = 0.5,
        fsync: bool = True,
        background: bool = True,
    ):
        columns = [str(c) for c in columns]
        _check_names(columns, "column", any_space=True, reserved=("time",))
        self.columns = columns
        self.in_degrees = bool(in_degrees)
        self._n = len(columns)
        self._format = "\t".join(["%.6f"] + ["%.8f"] * self._n) + "\n"
        super().__init__(
            path, mot_header(Path(path).stem, columns, count_field(0), in_degrees), flush_interval_s, fsync, background
        )

    def write(self, t: float, values) -> None:
        """Record one row: time ``t`` (s) and ``len(columns)`` values."""
        if self._closed or self._error is not None:
            self._refuse()
        if type(values) is np.ndarray and values.ndim == 1:
            vals = values.tolist()
        else:
            vals = np.asarray(values, dtype=float).ravel().tolist()
        if len(vals) != self._n:
            raise ValueError(f"{len(vals)} values for {self._n} columns of {self.path.name}")
        line = self._format % (t, *vals)
        if "n" in line:  # nan or inf somewhere: the slow, careful way
            if not math.isfinite(t):
                raise ValueError(f"time {t!r} is not a finite number")
            line = mot_row(t, np.asarray(vals, dtype=float))
        self._add(line, float(line[: line.find("\t")]), t)


class TrcRecorder(_Recorder):
    """Marker positions, one row per frame, to a .trc file.

    ``write(t, xyz)`` takes the time in seconds and an (n_markers, 3) array in
    metres (NaN where missing, written as blank cells); the file holds them in
    ``units`` ("m", "mm" or "cm"). Frames are numbered from 1.
    """

    kind = "trc"

    def __init__(
        self,
        path,
        markers: list[str],
        rate: float,
        units: str = "m",
        flush_interval_s: float = 0.5,
        fsync: bool = True,
        background: bool = True,
    ):
        markers = [str(m) for m in markers]
        _check_names(markers, "marker", any_space=False)
        if units not in _UNIT_SCALE:
            raise RecordingError(
                f"units {units!r} is not one of {sorted(_UNIT_SCALE)}",
                key="units",
                given=units,
                valid=sorted(_UNIT_SCALE),
            )
        if not (rate > 0 and math.isfinite(rate)):
            raise RecordingError(
                f"frame rate {rate!r} must be a positive number of frames per second",
                key="rate",
                given=rate,
                valid="a positive number of frames per second",
            )
        self.markers = markers
        self.rate = float(rate)
        self.units = units
        self._n = 3 * len(markers)
        self._scale = 1.0 / _UNIT_SCALE[units]
        self._format = "%d\t%.6f\t" + "\t".join(["%.6f"] * self._n) + "\n"
        super().__init__(
            path, trc_header(Path(path).name, markers, rate, count_field(0), units), flush_interval_s, fsync, background
        )

    def write(self, t: float, xyz) -> None:
        """Record one frame: time ``t`` (s) and positions (n_markers, 3) in metres."""
        if self._closed or self._error is not None:
            self._refuse()
        a = xyz if type(xyz) is np.ndarray else np.asarray(xyz, dtype=float)
        if a.size != self._n:
            raise ValueError(f"positions of shape {a.shape} for {self._n // 3} markers of {self.path.name}")
        if self._scale != 1.0:
            a = a * self._scale
        vals = a.ravel().tolist()
        frame = self._rows + 1
        line = self._format % (frame, t, *vals)
        if "n" in line:  # nan or inf somewhere: blank cells
            if not math.isfinite(t):
                raise ValueError(f"time {t!r} is not a finite number")
            line = trc_row(frame, t, np.asarray(vals, dtype=float))
        i = line.find("\t") + 1
        self._add(line, float(line[i : line.find("\t", i)]), t)


def _check_names(names: list[str], what: str, any_space: bool, reserved: tuple[str, ...] = ()) -> None:
    if not names:
        raise RecordingError(
            f"a recording needs at least one {what}", key=f"{what} names", given=names, valid=f"at least one {what}"
        )
    seen = set()
    for name in names:
        if any_space:
            bad = not name or any(c.isspace() for c in name)
        else:
            bad = not name.strip() or any(c in name for c in "\t\r\n")
        if bad:
            raise RecordingError(
                f"{what} name {name!r} cannot be written to the file header "
                f"({'no blanks' if any_space else 'no tabs or line breaks'}, not empty)",
                key=f"{what} names",
                given=name,
                valid=f"{'no blanks' if any_space else 'no tabs or line breaks'}, not empty",
            )
        if name in seen or name.lower() in reserved:
            raise RecordingError(
                f"{what} name {name!r} appears twice; OpenSim needs unique column names",
                key=f"{what} names",
                given=name,
                valid="unique column names",
            )
        seen.add(name)
