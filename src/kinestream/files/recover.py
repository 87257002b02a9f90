"""The layout of a recording's file, and a recording cut short repaired.

The header of a .mot or .trc file is read for its row-count fields and its row layout (:class:`_Layout`), which
the recorders of :mod:`kinestream.files.record` use to find their own count fields; :func:`recover` uses it to
check every row of any such file and repair it.

OpenSim's legacy readers (``Storage``, ``MarkerData``, and so the GUI and the
tools) read exactly as many rows as the header's count says; its table readers
refuse a last row with values missing and take a number cut short as it
stands. :func:`recover` repairs a file whose count and rows disagree or whose
last row is cut short.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kinestream.errors import RecordingError

try:  # advisory lock: a live recorder still owns the file
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
COUNT_WIDTH = 10  # characters of the row-count field: up to 9,999,999,999 rows
_MAX_HEADER = 1 << 20  # a header longer than this is not one of ours


def count_field(n: int, width: int = COUNT_WIDTH) -> str:
    """The row count as a fixed-width header field: digits, then spaces."""
    text = str(int(n))
    if len(text) > width:
        raise ValueError(f"row count {n} does not fit in {width} characters")
    return text.ljust(width)


# ---------------------------------------------------------------------------
# header parsing, shared by the recorders (to find their own count fields) and
# by recover() (to find the count fields and the row layout of any file)


@dataclass
class _Layout:
    kind: str  # "mot" or "trc"
    header_end: int  # byte offset of the first data line
    fields: int  # values per data row, time (and frame) included
    counts: list[tuple[int, int]]  # byte spans of the row-count fields in the header
    names: list[str]


def _lines(data: bytes, start: int, limit: int):
    """(start, end_without_newline, next_start) of each complete line from ``start``."""
    pos = start
    while pos < min(len(data), limit):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        end = nl - 1 if nl > pos and data[nl - 1 : nl] == b"\r" else nl
        yield pos, end, nl + 1
        pos = nl + 1


def _mot_layout(data: bytes, path) -> _Layout:
    counts = []
    lines = _lines(data, 0, _MAX_HEADER)
    for start, end, _next in lines:
        line = data[start:end]
        low = line.strip().lower()
        if low.startswith(b"nrows="):
            eq = data.index(b"=", start) + 1
            counts.append((eq, end))
        if low == b"endheader":
            break
    else:
        raise RecordingError(
            f"{path} is not an OpenSim motion file: no complete 'endheader' line "
            f"(a .mot/.sto file has a header ending in 'endheader', then the column names)",
            given=path,
            valid="a header ending in 'endheader'",
        )
    cols = next(lines, None)
    if cols is None:
        raise RecordingError(
            f"{path}: the header ends without the line of column names after 'endheader'; "
            "the file was cut off before any row was written and cannot be repaired",
            given=path,
            valid="column names after 'endheader'",
        )
    names = [n.decode("utf-8", "replace") for n in data[cols[0] : cols[1]].split()]
    if not names or names[0].lower() != "time":
        raise RecordingError(
            f"{path}: the line after 'endheader' must name the columns, starting with 'time'",
            given=path,
            valid="column names starting with 'time'",
        )
    return _Layout("mot", cols[2], len(names), counts, names[1:])


def _cells(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Byte spans of the tab-separated cells of one line."""
    spans, pos = [], start
    while True:
        tab = data.find(b"\t", pos, end)
        if tab < 0:
            spans.append((pos, end))
            return spans
        spans.append((pos, tab))
        pos = tab + 1


def _trc_layout(data: bytes, path) -> _Layout:
    if not data.startswith(b"PathFileType"):
        raise RecordingError(
            f"{path} is not a .trc file (it must start with a PathFileType line)",
            given=path,
            valid="a .trc file starting with a PathFileType line",
        )
    lines = list(itertools.islice(_lines(data, 0, _MAX_HEADER), 5))
    if len(lines) < 5:
        raise RecordingError(
            f"{path}: the .trc header (5 lines) is incomplete; the file was cut off "
            "before any frame was written and cannot be repaired",
            given=path,
            valid="a complete .trc header",
        )
    keys = [data[a:b].strip().decode("utf-8", "replace") for a, b in _cells(data, lines[1][0], lines[1][1])]
    values = _cells(data, lines[2][0], lines[2][1])
    counts = []
    for key in ("NumFrames", "OrigNumFrames"):
        if key in keys and keys.index(key) < len(values):
            counts.append(values[keys.index(key)])
    if not counts:
        raise RecordingError(f"{path}: the .trc header has no NumFrames field", key="NumFrames", given=path)
    name_cells = [data[a:b].strip().decode("utf-8", "replace") for a, b in _cells(data, lines[3][0], lines[3][1])]
    if len(name_cells) < 3 or name_cells[0] != "Frame#":
        raise RecordingError(
            f"{path}: line 4 must read 'Frame#<TAB>Time<TAB>marker names'",
            given=path,
            valid="Frame#<TAB>Time<TAB>marker names",
        )
    names = [n for n in name_cells[2:] if n]
    if not names:
        raise RecordingError(f"{path} names no markers", given=path, valid="at least one marker")
    header_end = lines[4][2]
    for start, end, nxt in _lines(data, header_end, len(data)):  # blank lines close the header
        if data[start:end].strip():
            break
        header_end = nxt
    return _Layout("trc", header_end, 2 + 3 * len(names), counts, names)


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".mot", ".sto"):
        return "mot"
    if suffix == ".trc":
        return "trc"
    raise RecordingError(
        f"{path} is neither a .mot/.sto nor a .trc file; recover repairs the angle and "
        "marker files the session recorder writes",
        given=path,
        valid=[".mot", ".sto", ".trc"],
    )


def _layout(data: bytes, kind: str, path) -> _Layout:
    return _mot_layout(data, path) if kind == "mot" else _trc_layout(data, path)


def _row_ok(line: bytes, layout: _Layout) -> bool | None:
    """True for a complete data row, None for a blank line, False otherwise."""
    if layout.kind == "mot":
        cells = line.split()
        if not cells:
            return None
        if len(cells) != layout.fields:
            return False
        first, last = cells[0], cells[-1]
    else:
        if not line.strip():
            return None
        cells = line.rstrip(b"\r").split(b"\t")
        if len(cells) == layout.fields + 1 and not cells[-1].strip():
            cells.pop()  # a trailing tab
        if len(cells) != layout.fields:
            return False
        try:
            int(cells[0])
        except ValueError:
            return False
        first, last = cells[1], cells[-1]
    try:
        if not math.isfinite(float(first)):
            return False
        if last.strip():
            float(last)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------
# recovery


@dataclass
class RecoverReport:
    """What :func:`recover` found and did to one file."""

    path: Path
    kind: str  # "mot" or "trc"
    rows: int  # complete rows kept
    header_rows: int | None  # the row count the header claimed before
    bytes_dropped: int  # the partial or malformed tail removed
    changed: bool
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """What recover did to the file, in one line."""
        if not self.changed:
            text = f"{self.path}: complete, {self.rows} rows; nothing changed"
        else:
            parts = [f"kept {self.rows} rows"]
            if self.bytes_dropped:
                parts.append(f"dropped {self.bytes_dropped} bytes of a cut-off last row")
            if self.header_rows != self.rows:
                parts.append(f"row count in the header {self.header_rows} -> {self.rows}")
            text = f"{self.path}: " + ", ".join(parts)
        return "; ".join([text, *self.notes])


def recover(path) -> RecoverReport:
    """Repair a .mot or .trc file left by a recorder that was killed.

    Drops a cut-off last row (no line end, or the wrong number of values) and
    sets the header's row count to the rows that remain, so that OpenSim reads
    every complete row. A complete file is left untouched.
    """
    path = Path(path)
    kind = _kind(path)
    if path.is_symlink():
        raise RecordingError(
            f"{path} is a symbolic link; recover repairs the recording itself, never through a link: give the "
            f"file it points to ({os.path.realpath(path)})",
            given=path,
            valid=os.path.realpath(path),
        )
    if not path.is_file():
        raise RecordingError(f"{path} does not exist", given=path, valid="a recording that exists")
    try:  # no symlink followed: one planted after the check above is refused here (ELOOP)
        fd = os.open(path, os.O_RDWR | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RecordingError(f"cannot open {path} for repair: {exc.strerror}", given=path) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordingError(
                    f"{path} is being recorded right now; recover it after the recorder has stopped",
                    given=path,
                    valid="recover it after the recorder has stopped",
                ) from None
        with open(fd, "rb", closefd=False) as fh:
            data = fh.read()
        return _repair(fd, path, data, _layout(data, kind, path))
    finally:
        os.close(fd)


def _repair(fd: int, path: Path, data: bytes, layout: _Layout) -> RecoverReport:
    rows = 0
    kept_end = layout.header_end
    bad_line = None
    line_no = data.count(b"\n", 0, layout.header_end)
    for start, end, nxt in _lines(data, layout.header_end, len(data)):
        line_no += 1
        ok = _row_ok(data[start:end], layout)
        if ok:
            if bad_line is not None:
                raise RecordingError(
                    f"{path}: line {bad_line} is malformed but complete rows follow it; that is not what a "
                    "killed recorder leaves behind, so the file is left as it is (repair it by hand)",
                    key=f"line {bad_line}",
                    given=path,
                    valid="repair it by hand",
                )
            rows += 1
            kept_end = nxt
        elif ok is None:
            if bad_line is None:
                kept_end = nxt
        elif bad_line is None:
            bad_line = line_no
    # whatever follows the last line end is a row cut off mid-write

    claimed: list[int | None] = []
    for a, b in layout.counts:
        try:
            claimed.append(int(data[a:b].strip() or b"-1"))
        except ValueError:
            claimed.append(None)
    header_rows = claimed[0] if claimed else None
    notes = []
    if not layout.counts:
        notes.append("the header has no nRows line; only the rows were checked")
    if rows == 0:
        notes.append(
            "no complete row"
            + (
                ": OpenSim's TRC reader hangs on a .trc without frames, delete this file"
                if layout.kind == "trc"
                else ""
            )
        )
    dropped = len(data) - kept_end
    if dropped == 0 and all(c == rows for c in claimed):
        return RecoverReport(path, layout.kind, rows, header_rows, 0, False, notes)

    if all(b - a >= len(str(rows)) for a, b in layout.counts):
        os.ftruncate(fd, kept_end)
        for a, b in layout.counts:
            os.pwrite(fd, count_field(rows, b - a).encode("ascii"), a)
        os.fsync(fd)
    else:  # a count field too narrow for the new number: write a new file beside it and swap
        out = bytearray()
        pos = 0
        for a, b in sorted(layout.counts):
            out += data[pos:a] + str(rows).encode("ascii")
            pos = b
        out += data[pos:kept_end]
        # a new file of its own (mkstemp: O_EXCL, mode 600), never a name planted beforehand, then swapped in
        tmp_fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".recover-tmp", dir=path.parent)
        try:
            with open(tmp_fd, "wb") as fh:
                fh.write(out)
                fh.flush()
                os.fchmod(fh.fileno(), os.fstat(fd).st_mode & 0o7777)
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise RecordingError(f"cannot write the repaired {path}: {exc.strerror}", given=path) from None
    return RecoverReport(path, layout.kind, rows, header_rows, dropped, True, notes)
