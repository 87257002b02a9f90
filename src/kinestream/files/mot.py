"""Joint angles in OpenSim Storage (.mot) files.

Rotational coordinates are written in degrees (``inDegrees=yes``),
translations in metres, as OpenSim's InverseKinematicsTool does, so
``opensim.TimeSeriesTable(path)`` and the OpenSim GUI load the files.
Extra columns (``rmse_mm``, the per-frame IK marker error) ride along; OpenSim
ignores columns that name no coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinestream.errors import InputError


@dataclass
class Motion:
    """Coordinates over time: ``values`` is (frames, columns)."""

    time: np.ndarray
    names: list[str]
    values: np.ndarray
    in_degrees: bool = True

    def get(self, name: str) -> np.ndarray:
        """The column ``name``; KinestreamError when the motion has no such column."""
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise InputError(
                f"column {name!r} is not in the motion; it has {self.names}", given=name, valid=self.names
            ) from None

    def __contains__(self, name: str) -> bool:
        """Whether the motion has a column ``name``."""
        return name in self.names

    def to_dict(self) -> dict:
        """A JSON-ready copy: ``{"time": [...], "coordinates": {name: [...]}, "in_degrees": bool}``.

        ``coordinates`` holds every column (the coordinates, and ``rmse_mm``
        when IK added it), rotations in degrees when ``in_degrees``,
        translations in metres; NaN (a frame not solved) becomes None, which
        JSON writes as null.
        """
        values = np.asarray(self.values, dtype=float)
        return {
            "time": json_list(self.time),
            "coordinates": {name: json_list(values[:, k]) for k, name in enumerate(self.names)},
            "in_degrees": bool(self.in_degrees),
        }


def json_list(values) -> list:
    """Numbers as a list of Python floats, NaN and infinities as None (JSON has neither)."""
    a = np.asarray(values, dtype=float)
    out = a.astype(object)
    out[~np.isfinite(a)] = None
    return out.tolist()


def mot_header(name: str, columns: list[str], n_rows: int | str, in_degrees: bool = True) -> str:
    """The header of a .mot (OpenSim's Storage format) up to and including its column names.

    Parameters
    ----------
    name : str
        The motion's name, its first line.
    columns : list of str
        The column names after ``time``.
    n_rows : int or str
        The number of rows (a str: a placeholder a recorder fills in when it finishes).
    in_degrees : bool
        Whether the rotations are in degrees.

    Returns
    -------
    str
        The header's lines.
    """
    return (
        f"{name}\nversion=1\nnRows={n_rows}\nnColumns={len(columns) + 1}\n"
        f"inDegrees={'yes' if in_degrees else 'no'}\nendheader\n" + "\t".join(["time", *columns]) + "\n"
    )


def mot_row(time: float, values: np.ndarray) -> str:
    """One .mot row: ``time`` then ``values``, tab-separated, NaN written as ``NaN``."""
    return "\t".join([f"{time:.6f}", *(f"{v:.8f}" if np.isfinite(v) else "NaN" for v in values)]) + "\n"


def write_mot(path: str | Path, motion: Motion) -> Path:
    """Write ``motion`` to ``path`` as a .mot (its folder made when missing); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.asarray(motion.values, dtype=float)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(mot_header(path.stem, motion.names, len(values), motion.in_degrees))
        for t, row in zip(motion.time, values, strict=False):
            fh.write(mot_row(float(t), row))
    return path


def read_mot(path: str | Path) -> Motion:
    """Read an OpenSim .mot/.sto file (as written here or by OpenSim)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"motion file {path} does not exist; give the path of a .mot file", given=path, valid="a .mot file"
        )
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    in_degrees = True
    for i, line in enumerate(lines):  # noqa: B007 (i, the endheader line, is read after the loop)
        low = line.strip().lower()
        if low.startswith("indegrees="):
            in_degrees = low.split("=", 1)[1].startswith("y")
        if low == "endheader":
            break
    else:
        raise InputError(
            f"{path} is not an OpenSim motion file (no 'endheader' line)", given=path, valid="an OpenSim motion file"
        )
    names = lines[i + 1].split()
    if not names or names[0].lower() != "time":
        raise InputError(
            f"{path}: the line after 'endheader' must name the columns, starting with 'time'",
            given=path,
            valid="column names starting with 'time'",
        )
    rows = [np.array(line.split(), dtype=float) for line in lines[i + 2 :] if line.strip()]
    data = np.vstack(rows) if rows else np.empty((0, len(names)))
    if data.shape[1] != len(names):
        raise InputError(
            f"{path}: rows have {data.shape[1]} values for {len(names)} columns", given=data.shape[1], valid=len(names)
        )
    return Motion(data[:, 0], names[1:], data[:, 1:], in_degrees)


def solved_rows(motion: Motion) -> tuple[Motion, int]:
    """The motion without frames that hold NaN, and how many were dropped.

    OpenSim's legacy Storage reader (the GUI's) stops reading at the first
    NaN, so files meant for OpenSim leave unsolved frames out.
    """
    keep = np.isfinite(motion.values).all(axis=1)
    return Motion(motion.time[keep], list(motion.names), motion.values[keep], motion.in_degrees), int((~keep).sum())


def is_translation(coord: str) -> bool:
    """Whether an OpenSim coordinate is a translation (metres, not degrees), by OpenSim's naming (pelvis_tx, ...)."""
    return coord.endswith(("_tx", "_ty", "_tz"))
