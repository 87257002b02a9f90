"""Marker trajectories in .c3d files, the format of motion labs, through ezc3d.

:func:`write_c3d` stores a :class:`~kinestream.files.trc.MarkerTable` as C3D
3D points: one point per marker, labelled with the marker's name, at the
table's rate, in millimetres by default (``POINT:UNITS``), as 32-bit floats.
:func:`read_c3d` reads such a file (or a lab's) back into metres.

Axes are the table's, unchanged: Y up, as OpenSim and kinestream's .trc files
have them. Many lab systems record Z up, so a .c3d from kinestream shows the
subject lying on its back in software that assumes Z up, and a lab's Z-up
.c3d read here must be rotated before kinestream uses it.

Missing samples follow the C3D convention: a marker that is missing in a
frame (any of its coordinates NaN or infinite) is written with residual -1
and coordinates 0; on reading, every point with a negative residual becomes
NaN. A marker with only some coordinates missing is missing as a whole.

C3D numbers frames from the header's first frame and stores no times. A
trial whose first frame is at ``t0`` seconds is written with that frame
numbered ``round(t0 * rate) + 1`` when ``t0`` is a whole number of frames
from 0 and the frame numbers fit the header's 16 bits (so a trial cut from a
longer one keeps its place; a trial from t=0 starts at frame 1), else 1. The
exact ``t0`` is always kept as decimal text in the parameter
``KINESTREAM:FIRST_TIME`` (C3D parameters hold only 32-bit floats).
:func:`read_c3d` takes the times from that parameter and, for other files,
from the first frame: frame ``k`` (numbered from 1) at ``(k - 1) / rate``.
Frames must be evenly spaced at the table's rate, since C3D has no time
column.

Limits of the format and of ezc3d (checked here, each with its own error,
instead of writing a file that reads back wrong): labels must be unique, not
empty, without leading or trailing spaces (C3D readers trim them) and at most
255 bytes in UTF-8 (ezc3d writes longer ones into a file it cannot read
back); c3d.org recommends labels of at most 16 characters, which every
kinestream marker name meets. At most 65,535 frames (the header counts frames
in 16 bits; ezc3d writes more but reads only that many back).

Live recordings carry the source's time stamps, which jitter and skip frames.
:func:`on_even_grid` puts such a table on the even grid of its rate, each
frame at the nearest grid time with its values unchanged, and the grid times
no frame landed on missing; it refuses a recording whose frames are more than
a quarter frame off any even grid. :func:`trc_to_c3d` writes the .c3d of a
.trc that way (``process`` and ``serve --record`` use it).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from kinestream.errors import AssetError, InputError
from kinestream.files.trc import _UNIT_SCALE, MarkerTable, read_trc

MAX_LABEL_BYTES = 255  # a C3D parameter dimension is one byte
MAX_FRAMES = 65535  # the header's frame numbers are 16-bit
TIME_GROUP, TIME_PARAMETER = "KINESTREAM", "FIRST_TIME"
MAX_OFFSET_FRAMES = 0.25  # on_even_grid moves a frame by at most this part of a frame period


def _ezc3d():
    """The ezc3d module, or a KinestreamError saying how to install it."""
    try:
        import ezc3d
    except ImportError:
        raise AssetError(
            "reading or writing .c3d files needs the ezc3d package, which is not installed; "
            "install it with `pip install ezc3d` (or reinstall kinestream, which depends on it)",
            given="ezc3d",
            valid="pip install ezc3d",
        ) from None
    return ezc3d


def _check_labels(names: list[str]) -> None:
    """Refuse labels that C3D or ezc3d would not give back unchanged."""
    if not names:
        raise InputError(
            "the table has no markers; a .c3d needs at least one labelled point",
            given=names,
            valid="at least one labelled point",
        )
    for k, name in enumerate(names):
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise InputError(
                f"marker {k} is named {name!r}; a C3D label must be non-empty text without leading or "
                "trailing spaces (C3D readers trim them); rename the marker",
                key=f"names[{k}]",
                given=name,
                valid="non-empty text without leading or trailing spaces",
            )
        size = len(name.encode("utf-8"))
        if size > MAX_LABEL_BYTES:
            raise InputError(
                f"marker {k} is named {name[:40]!r}... ({size} bytes in UTF-8); a C3D label holds at most "
                f"{MAX_LABEL_BYTES} bytes (ezc3d writes longer ones into a file it cannot read back); "
                "rename the marker (c3d.org recommends at most 16 characters)",
                key=f"names[{k}]",
                given=name,
                valid=f"at most {MAX_LABEL_BYTES} bytes",
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(
                f"marker name {name!r} appears {names.count(name)} times; C3D labels identify the points, "
                "so they must be unique; rename or drop the duplicates",
                key="names",
                given=name,
                valid="unique marker names",
            )
        seen.add(name)


def _check_timing(table: MarkerTable) -> int:
    """Check the rate and even spacing; return the header's first frame, counted from 0 as ezc3d does."""
    try:
        rate = float(table.rate)
    except (TypeError, ValueError):
        rate = math.nan
    if isinstance(table.rate, bool) or not (math.isfinite(rate) and rate > 0):
        raise InputError(
            f"rate={table.rate!r} is not valid; it must be a positive number of frames per second",
            key="rate",
            given=table.rate,
            valid="a positive number of frames per second",
        )
    n = table.n_frames
    if n == 0:
        raise InputError("the table has no frames; a .c3d needs at least one", given=n, valid="at least one frame")
    if n > MAX_FRAMES:
        raise InputError(
            f"the table has {n} frames; a .c3d holds at most {MAX_FRAMES} (its header counts frames in 16 bits: "
            f"{MAX_FRAMES / rate:.0f} s at {rate:g} Hz); write it in parts with table.frames(start, stop), "
            "or as .trc",
            given=n,
            valid=f"at most {MAX_FRAMES} frames",
        )
    t0 = float(table.time[0])
    tolerance = 1e-6 + 1e-3 / rate  # the .trc keeps 6 decimals
    expected = t0 + np.arange(n) / rate
    off = np.abs(table.time - expected)
    if not np.all(np.isfinite(table.time)) or off.max() > tolerance:
        k = int(np.argmax(np.where(np.isfinite(off), off, np.inf)))
        raise InputError(
            f"frame {k} is at t={float(table.time[k])!r} s, but a .c3d holds frames evenly spaced at the rate "
            f"({rate:g} Hz), which puts it at {expected[k]:.6f} s; resample the trial to an even rate first",
            key=f"time[{k}]",
            given=float(table.time[k]),
            valid=float(expected[k]),
        )
    frames_before = t0 * rate
    first = round(frames_before)
    if abs(frames_before - first) <= 1e-3 and first >= 0 and first + n <= MAX_FRAMES:
        return first
    return 0


def _check_path(path: str | Path) -> Path:
    """The path to write, with its folder made; a KinestreamError when it cannot be written."""
    path = Path(path)
    if path.suffix != ".c3d":
        raise InputError(
            f"{path} does not end in .c3d; give a path ending in .c3d (ezc3d would write {path}.c3d instead)",
            given=path,
            valid="a path ending in .c3d",
        )
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, say
        raise InputError(
            f"cannot write {path}: {exc.strerror}", given=path, valid="a path that can be written"
        ) from None
    if is_dir:
        raise InputError(
            f"{path} is a folder; give the path of a .c3d file to write", given=path, valid="the path of a .c3d file"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(
            f"cannot make the folder {path.parent} for {path.name}: {exc.strerror}",
            given=path,
            valid="a path that can be written",
        ) from None
    return path


def _points(table: MarkerTable, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """ezc3d's point and residual arrays, (4, markers, frames) and (1, markers, frames), missing as C3D has it."""
    xyz = table.xyz * scale
    missing = ~np.isfinite(xyz).all(axis=2)  # (frames, markers)
    xyz[missing] = 0.0
    points = np.ones((4, len(table.names), table.n_frames))
    points[:3] = xyz.transpose(2, 1, 0)
    residuals = np.where(missing.T, -1.0, 0.0)[np.newaxis]
    return points, residuals


def write_c3d(path: str | Path, table: MarkerTable, units: str = "mm") -> Path:
    """Write ``table`` (metres, NaN for missing) to the .c3d file ``path``; return the path.

    Points are stored in ``units`` (``"mm"``, the labs' unit, or ``"m"`` or
    ``"cm"``), with the table's axes (Y up, as OpenSim has them), missing
    samples as residual -1, and the first frame's time kept (see the module
    notes). The file is written under a new temporary name in the same folder
    (``.NAME.XXXXXXXX.partial.c3d``, made by mkstemp) and then renamed, so a
    failed write leaves no partial file and any earlier file intact.
    """
    ezc3d = _ezc3d()
    if units not in _UNIT_SCALE:
        raise InputError(
            f"units {units!r} is not one of {sorted(_UNIT_SCALE)}", key="units", given=units, valid=sorted(_UNIT_SCALE)
        )
    _check_labels(table.names)
    first = _check_timing(table)
    path = _check_path(path)

    c3d = ezc3d.c3d()
    point = c3d["parameters"]["POINT"]
    point["RATE"]["value"] = [float(table.rate)]
    point["UNITS"]["value"] = [units]
    point["LABELS"]["value"] = list(table.names)
    c3d["header"]["points"]["first_frame"] = first
    points, residuals = _points(table, 1.0 / _UNIT_SCALE[units])
    c3d["data"]["points"] = points
    c3d["data"]["meta_points"] = {"residuals": residuals}
    c3d.add_parameter(
        TIME_GROUP,
        TIME_PARAMETER,
        repr(float(table.time[0])),
        "time (s) of the first frame, as decimal text; frame i is at FIRST_TIME + i / POINT:RATE",
    )
    c3d["parameters"][TIME_GROUP]["__METADATA__"]["DESCRIPTION"] = "written by kinestream"

    try:  # a new name of its own (mkstemp: exclusive, unpredictable), never one a link could be planted at
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.c3d", dir=path.parent)
    except OSError as exc:
        raise InputError(
            f"could not write {path}: the temporary file beside it cannot be made ({exc.strerror}); check that "
            "the folder is writable and that the name leaves room for the temporary suffix",
            given=path,
            valid="a writable folder",
        ) from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 600 is for the name; the .c3d is read as any output is
    finally:
        os.close(fd)
    partial = Path(name)
    try:
        c3d.write(str(partial))
        if not os.path.getsize(partial):  # ezc3d reports no error when it cannot open the file
            raise InputError(
                f"could not write {path}: ezc3d wrote nothing to the temporary file {partial.name}; check that "
                "the folder is writable and that the name leaves room for the temporary suffix",
                given=path,
                valid="a writable folder",
            )
        os.replace(partial, path)
    finally:
        with contextlib.suppress(OSError):  # gone when renamed; unnamable when its name is too long
            partial.unlink()
    return path


def _labels(point: dict, n: int, path: Path) -> list[str]:
    """POINT:LABELS, LABELS2, ... as one list of ``n`` labels."""
    labels = list(point.get("LABELS", {}).get("value", []))
    k = 2
    while f"LABELS{k}" in point:
        labels += list(point[f"LABELS{k}"]["value"])
        k += 1
    if len(labels) < n:
        raise InputError(
            f"{path} labels {len(labels)} points but holds {n}; every point needs a label",
            key="POINT:LABELS",
            given=len(labels),
            valid=n,
        )
    return [str(label).strip() for label in labels[:n]]


def _first_time(c3d, rate: float, path: Path) -> float:
    """The time of the first frame: kinestream's parameter, else the header's first frame."""
    group = c3d["parameters"].get(TIME_GROUP, {})
    if TIME_PARAMETER in group:
        text = "".join(group[TIME_PARAMETER]["value"]).strip()
        try:
            return float(text)
        except ValueError:
            raise InputError(
                f"{path}: {TIME_GROUP}:{TIME_PARAMETER} is {text!r}, not a number",
                key=f"{TIME_GROUP}:{TIME_PARAMETER}",
                given=text,
                valid="a number",
            ) from None
    return c3d["header"]["points"]["first_frame"] / rate  # ezc3d counts frames from 0


def read_c3d(path: str | Path) -> MarkerTable:
    """Read the 3D points of a .c3d file into a MarkerTable in metres (NaN where missing)."""
    path = Path(path)
    if not os.path.isfile(path):  # ezc3d hangs on a folder and says little about a missing file
        raise InputError(
            f"marker file {path} does not exist or is not a file; give the path of a .c3d file",
            given=path,
            valid="a .c3d file",
        )
    ezc3d = _ezc3d()
    try:
        c3d = ezc3d.c3d(str(path))
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(
            f"{path} is not a .c3d file that ezc3d can read ({exc})", given=path, valid="a .c3d file"
        ) from None
    point = c3d["parameters"]["POINT"]
    units = "".join(point.get("UNITS", {}).get("value", [])).strip().lower()
    if units not in _UNIT_SCALE:
        raise InputError(
            f"{path}: POINT:UNITS is {units!r}; kinestream reads points in {sorted(_UNIT_SCALE)}",
            key="POINT:UNITS",
            given=units,
            valid=sorted(_UNIT_SCALE),
        )
    rate = float(np.asarray(point.get("RATE", {}).get("value", [0.0])).ravel()[0])
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(
            f"{path}: POINT:RATE is {rate!r}; it must be a positive number of frames per second",
            key="POINT:RATE",
            given=rate,
            valid="a positive number of frames per second",
        )
    rate = float(str(np.float32(rate)))  # stored as float32: 59.94 comes back as 59.939998..., give 59.94
    points = c3d["data"]["points"]  # (4, markers, frames)
    n_points, n_frames = points.shape[1], points.shape[2]
    if n_points == 0 or n_frames == 0:
        raise InputError(
            f"{path} holds {n_points} points over {n_frames} frames; it needs at least one of each",
            given=path,
            valid="at least one point and one frame",
        )
    names = _labels(point, n_points, path)
    xyz = points[:3].transpose(2, 1, 0) * _UNIT_SCALE[units]
    residuals = c3d["data"]["meta_points"]["residuals"]
    if residuals.size:
        xyz[residuals[0].T < 0] = np.nan  # ezc3d does this already; C3D says so, whatever the reader
    time = _first_time(c3d, rate, path) + np.arange(n_frames) / rate
    return MarkerTable(names, xyz, time, rate, {"source": str(path), "units": units})


def _grid(time: np.ndarray, rate: float) -> tuple[np.ndarray, float, np.ndarray]:
    """Grid slots (from 0) of ``time`` at ``rate``, the grid's first time and each frame's offset in frames.

    The grid's phase is the median of the frames' own, so one late first frame does not shift the rest.
    """
    position = (time - time[0]) * rate
    phase = float(np.median(position - np.rint(position)))
    slots = np.rint(position - phase)
    offsets = np.abs(position - phase - slots)
    first = slots[0]  # 0 unless the phase is half a frame
    return (slots - first).astype(np.int64), float(time[0]) + (phase + first) / rate, offsets


def _fitted_rate(time: np.ndarray) -> float:
    """The rate of a clock that skipped frames: the slope of time against slot.

    Each interval counts as the whole number of median intervals nearest to it.
    """
    steps = np.diff(time)
    slots = np.concatenate([[0.0], np.cumsum(np.maximum(np.rint(steps / float(np.median(steps))), 1.0))])
    return float(1.0 / np.polyfit(slots, time, 1)[0])


def on_even_grid(table: MarkerTable) -> tuple[MarkerTable, str | None]:
    """``table`` with its frames on an even time grid, as a .c3d holds them, and a note on what moved.

    The grid's rate is the table's ``rate`` when the frames fit it, else the
    rate their times show (a source faster or slower than the rate the
    recorder was told). Each frame goes to the nearest grid time, moved by at
    most a quarter frame, its values unchanged; grid times no frame landed on
    (frames skipped or lost) are missing (NaN). A table already on its grid
    comes back as it is, with no note. KinestreamError when the times do not
    increase or are too uneven for any grid, saying which frame is off.
    """
    time = np.asarray(table.time, dtype=float)
    if table.n_frames == 0:
        raise InputError(
            "the table has no frames; a .c3d needs at least one", given=table.n_frames, valid="at least one frame"
        )
    steps = np.diff(time)
    if not np.isfinite(time).all() or (steps <= 0).any():
        k = int(np.argmax(~np.isfinite(time))) if not np.isfinite(time).all() else int(np.argmax(steps <= 0)) + 1
        raise InputError(
            f"frame {k} is at t={float(time[k])!r} s, not after the frame before; a .c3d needs times that increase",
            key=f"time[{k}]",
            given=float(time[k]),
            valid="times that increase",
        )
    rates = [float(table.rate)]
    if table.n_frames > 2:
        fitted = _fitted_rate(time)
        rates += [round(fitted, 2), fitted]
    for rate in rates:
        slots, start, offsets = _grid(time, rate)
        if offsets.max() <= MAX_OFFSET_FRAMES and (np.diff(slots) > 0).all():
            break
    else:
        rate = rates[0]
        slots, start, offsets = _grid(time, rate)
        same = np.flatnonzero(np.diff(slots) <= 0)
        if same.size and offsets.max() <= MAX_OFFSET_FRAMES:
            k = int(same[0])
            raise InputError(
                f"frames {k} and {k + 1} (t={time[k]:.6f} and {time[k + 1]:.6f} s) fall on one frame of the "
                f"{rate:g} Hz grid, and no other even rate fits the times; a .c3d holds frames evenly spaced",
                key=f"time[{k + 1}]",
                given=float(time[k + 1]),
                valid="frames evenly spaced",
            )
        k = int(np.argmax(offsets))
        raise InputError(
            f"frame {k} at t={time[k]:.6f} s is {offsets[k] * 1000 / rate:.1f} ms from the nearest time of an even "
            f"{rate:g} Hz grid, more than a quarter frame ({MAX_OFFSET_FRAMES * 1000 / rate:.1f} ms), and no other "
            f"even rate fits the times; a .c3d holds frames evenly spaced",
            key=f"time[{k}]",
            given=float(time[k]),
            valid="frames evenly spaced",
        )
    n = int(slots[-1]) + 1
    if n > MAX_FRAMES:  # refused before the grid is made: a jump of an hour at 120 Hz is 432,000 frames
        source = table.meta.get("source")
        raise InputError(
            f"{source + ': ' if source else ''}the frames span {time[-1] - time[0]:.6g} s (t={time[0]:.6f} to "
            f"{time[-1]:.6f} s): {n} frames on the even {rate:g} Hz grid of a .c3d, which holds at most "
            f"{MAX_FRAMES} ({MAX_FRAMES / rate:.0f} s at {rate:g} Hz); write it in parts with "
            "table.frames(start, stop), or keep the .trc",
            given=n,
            valid=f"at most {MAX_FRAMES} frames",
        )
    grid = start + np.arange(n) / rate
    if n == table.n_frames and rate == table.rate and np.abs(time - grid).max() <= 1e-6 + 1e-3 / rate:
        return table, None  # even already, as write_c3d takes it (the .trc keeps 6 decimals)
    xyz = np.full((n, len(table.names), 3), np.nan)
    xyz[slots] = table.xyz
    moved = np.abs(time - grid[slots]).max() * 1000
    note = f"frames put on the even {rate:g} Hz grid of a .c3d, moved by at most {moved:.1f} ms"
    if rate != table.rate:
        note += f" (the file says {table.rate:g} Hz; the times say {rate:g} Hz)"
    if n > table.n_frames:
        note += f"; {n - table.n_frames} grid frames that no frame landed on are missing"
    return MarkerTable(table.names, xyz, grid, rate, dict(table.meta)), note


def trc_to_c3d(trc: str | Path, c3d: str | Path | None = None, units: str = "mm") -> tuple[Path, str | None]:
    """Write the .c3d of the .trc ``trc`` (default: beside it, ``.trc`` replaced by ``.c3d``).

    The values are the .trc's as written, so the two files agree to float32
    precision; frames whose times are not evenly spaced are first put on an
    even grid (:func:`on_even_grid`, whose note comes back with the path).
    KinestreamError when the .trc cannot be read or its frames cannot be
    written as .c3d; the .trc is only read.
    """
    trc = Path(trc)
    table, note = on_even_grid(read_trc(trc))
    return write_c3d(trc.with_suffix(".c3d") if c3d is None else c3d, table, units), note
