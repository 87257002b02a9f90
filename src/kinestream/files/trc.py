"""Marker trajectories in memory and in .trc files.

A :class:`MarkerTable` holds ``xyz`` (frames x markers x 3, metres, NaN where
missing), the marker ``names``, the ``time`` of each frame and the frame
``rate``. The .trc reader accepts metres or millimetres, blank cells for
missing values, short rows and any marker names; the writer produces files
that OpenSim's TRCFileAdapter and the OpenSim GUI read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream.errors import InputError

_UNIT_SCALE = {"m": 1.0, "mm": 1e-3, "cm": 1e-2}
# read_trc refuses a header naming far more markers than the rows hold: the table (frames x named markers)
# may be at most this many times the values the rows hold, or MIN_CELLS values (8 MB), whichever is more
MAX_EMPTY_SHARE = 4
MIN_CELLS = 1 << 20


@dataclass
class MarkerTable:
    """Marker positions over time (metres, NaN for missing)."""

    names: list[str]
    xyz: np.ndarray  # (frames, markers, 3)
    time: np.ndarray  # (frames,)
    rate: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Take ``names`` as a list and ``xyz`` and ``time`` as float arrays, and check that their shapes agree."""
        self.names = list(self.names)
        self.xyz = np.asarray(self.xyz, dtype=float)
        self.time = np.asarray(self.time, dtype=float)
        if self.xyz.ndim != 3 or self.xyz.shape[2] != 3 or self.xyz.shape[1] != len(self.names):
            raise ValueError(f"xyz has shape {self.xyz.shape}; expected (frames, {len(self.names)}, 3)")
        if self.time.shape != (self.xyz.shape[0],):
            raise ValueError(f"time has shape {self.time.shape}; expected ({self.xyz.shape[0]},)")

    @property
    def n_frames(self) -> int:
        """The number of frames."""
        return self.xyz.shape[0]

    def index(self, name: str) -> int:
        """The column of marker ``name``; KinestreamError when the table has no such marker."""
        try:
            return self.names.index(name)
        except ValueError:
            raise InputError(
                f"marker {name!r} is not in the table; it has {self.names}", given=name, valid=self.names
            ) from None

    def __contains__(self, name: str) -> bool:
        """Whether the table has a marker ``name``."""
        return name in self.names

    def get(self, name: str) -> np.ndarray:
        """Trajectory of one marker, (frames, 3)."""
        return self.xyz[:, self.index(name)]

    def select(self, names: list[str]) -> MarkerTable:
        """A copy of the table with only the markers ``names``, in that order."""
        idx = [self.index(n) for n in names]
        return MarkerTable(list(names), self.xyz[:, idx].copy(), self.time.copy(), self.rate, dict(self.meta))

    def frames(self, start: int, stop: int) -> MarkerTable:
        """A copy of the table's frames ``start`` to ``stop`` (exclusive)."""
        return MarkerTable(
            self.names, self.xyz[start:stop].copy(), self.time[start:stop].copy(), self.rate, dict(self.meta)
        )

    def to_dict(self) -> dict:
        """A JSON-ready copy: ``{"time": [...], "rate": Hz, "units": "m", "markers": {name: [[x, y, z], ...]}}``.

        Positions in metres, one [x, y, z] per frame; a missing coordinate
        (NaN) becomes None, which JSON writes as null.
        """
        xyz = self.xyz.astype(object)
        xyz[~np.isfinite(self.xyz)] = None
        return {
            "time": self.time.tolist(),
            "rate": float(self.rate),
            "units": "m",
            "markers": {name: xyz[:, k].tolist() for k, name in enumerate(self.names)},
        }

    def with_markers(self, names: list[str], xyz: np.ndarray) -> MarkerTable:
        """A new table with ``names`` added (or replaced) from ``xyz`` (frames, k, 3)."""
        out = MarkerTable(self.names, self.xyz.copy(), self.time.copy(), self.rate, dict(self.meta))
        xyz = np.asarray(xyz, dtype=float).reshape(self.n_frames, len(names), 3)
        new = []
        for k, name in enumerate(names):
            if name in out.names:
                out.xyz[:, out.names.index(name)] = xyz[:, k]
            else:
                new.append(k)
        if new:
            out.names += [names[k] for k in new]
            out.xyz = np.concatenate([out.xyz, xyz[:, new]], axis=1)
        return out


def read_trc(path: str | Path) -> MarkerTable:
    """Read a .trc file into metres."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"marker file {path} does not exist; give the path of a .trc file", given=path, valid="a .trc file"
        )
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", given=path, valid="a readable .trc file") from None
    if len(lines) < 5 or not lines[0].startswith("PathFileType"):
        raise InputError(
            f"{path} is not a .trc file (it must start with a PathFileType line)",
            given=path,
            valid="a .trc file starting with a PathFileType line",
        )
    keys = lines[1].split("\t")
    values = lines[2].split("\t")
    header = {k.strip(): v.strip() for k, v in zip(keys, values, strict=False)}
    units = header.get("Units", "m").strip().lower()
    if units not in _UNIT_SCALE:
        raise InputError(
            f"{path}: Units {units!r} is not one of {sorted(_UNIT_SCALE)}",
            key="Units",
            given=units,
            valid=sorted(_UNIT_SCALE),
        )
    try:
        rate = float(header.get("DataRate") or header.get("CameraRate") or "")
    except (TypeError, ValueError):
        raise InputError(
            f"{path}: DataRate {header.get('DataRate')!r} is not a number",
            key="DataRate",
            given=header.get("DataRate"),
            valid="a number",
        ) from None
    name_cells = lines[3].split("\t")
    if len(name_cells) < 3 or name_cells[0].strip() != "Frame#":
        raise InputError(
            f"{path}: line 4 must read 'Frame#<TAB>Time<TAB>marker names'",
            given=path,
            valid="Frame#<TAB>Time<TAB>marker names",
        )
    names = [c.strip() for c in name_cells[2:] if c.strip()]
    n = len(names)
    if n == 0:
        raise InputError(f"{path} names no markers", given=path, valid="at least one marker")
    width = 2 + 3 * n  # frame, time, then X, Y, Z of each marker named
    rows: list[np.ndarray] = []  # each as long as the row is (short rows are fine), never as the header claims
    held = 0
    for line in lines[5:]:
        if not line.strip():
            continue
        cells = line.split("\t", width)[:width]
        row = np.full(len(cells), np.nan)
        for j, cell in enumerate(cells):
            cell = cell.strip()
            if cell:
                try:
                    row[j] = float(cell)
                except ValueError:
                    raise InputError(
                        f"{path}: cannot read {cell!r} as a number in row {len(rows) + 1}", given=cell, valid="a number"
                    ) from None
        rows.append(row)
        held += len(cells)
    if not rows:
        raise InputError(f"{path} holds no frames", given=path, valid="at least one frame")
    if len(rows) * width > max(MAX_EMPTY_SHARE * held, MIN_CELLS):  # refused before the table is made
        raise InputError(
            f"{path} names {n} markers on line 4 ({width} values per row), but its {len(rows)} rows hold "
            f"{held} values in all ({max(len(r) for r in rows)} at most in a row); a .trc names the markers its "
            f"rows hold (frame, time, then X, Y, Z of each), so the table would be mostly cells no row has: "
            f"fix line 4 or the rows",
            given=path,
            valid="rows that hold the markers line 4 names",
        )
    data = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        data[i, : row.size] = row
    time = data[:, 1]
    if np.isnan(time).any():
        time = data[0, 1] + np.arange(len(data)) / rate if np.isfinite(data[0, 1]) else np.arange(len(data)) / rate
    xyz = data[:, 2:].reshape(len(data), n, 3) * _UNIT_SCALE[units]
    return MarkerTable(names, xyz, time, rate, {"source": str(path), "units": units})


def _fmt(value: float) -> str:
    return "" if not np.isfinite(value) else f"{value:.6f}"


def trc_header(name: str, names: list[str], rate: float, n_frames: int | str, units: str = "m") -> str:
    """The header of a .trc up to and including its X/Y/Z column line.

    Parameters
    ----------
    name : str
        The file's name, on its first line.
    names : list of str
        The marker names.
    rate : float
        The frame rate (Hz).
    n_frames : int or str
        The number of frames (a str: a placeholder a recorder fills in when it finishes).
    units : str
        The units of the coordinates, ``"m"`` or ``"mm"``.

    Returns
    -------
    str
        The header's lines.
    """
    cols = "\t\t\t".join(names)
    sub = "\t".join(f"X{i + 1}\tY{i + 1}\tZ{i + 1}" for i in range(len(names)))
    return (
        f"PathFileType\t4\t(X/Y/Z)\t{name}\n"
        "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames\n"
        f"{rate:g}\t{rate:g}\t{n_frames}\t{len(names)}\t{units}\t{rate:g}\t1\t{n_frames}\n"
        f"Frame#\tTime\t{cols}\t\t\t\n"
        f"\t\t{sub}\t\n"
        "\n"
    )


def trc_row(frame: int, time: float, xyz: np.ndarray, scale: float = 1.0) -> str:
    """One .trc row: frame number, time and the markers' ``xyz`` times ``scale`` (missing values as blank cells)."""
    cells = "\t".join(_fmt(v * scale) for v in np.asarray(xyz, dtype=float).ravel())
    return f"{frame}\t{time:.6f}\t{cells}\n"


def write_trc(path: str | Path, table: MarkerTable, units: str = "m") -> Path:
    """Write ``table`` to ``path`` (missing values as blank cells)."""
    path = Path(path)
    if units not in _UNIT_SCALE:
        raise InputError(
            f"units {units!r} is not one of {sorted(_UNIT_SCALE)}", key="units", given=units, valid=sorted(_UNIT_SCALE)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    scale = 1.0 / _UNIT_SCALE[units]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(trc_header(path.name, table.names, table.rate, table.n_frames, units))
        for i in range(table.n_frames):
            fh.write(trc_row(i + 1, table.time[i], table.xyz[i], scale))
    return path
