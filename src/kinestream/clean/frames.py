"""What the stages share: runs of samples, frame shapes and counts, the frame index of a sample that never came."""

from __future__ import annotations

import numpy as np

from kinestream.errors import SettingsError

NEVER = -(2**62)  # frame index of a sample that never came: any gap since then is "too long"


def check_count(name: str, value, what: str) -> int:
    """A whole number >= 0, or a KinestreamError that says what was given."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise SettingsError(
            f"{name} {value!r} is not valid; give {what} (a whole number >= 0)",
            key=name,
            given=value,
            valid=f"{what} (a whole number >= 0)",
        )
    return int(value)


def frame_shape(shape) -> tuple[int, ...]:
    """Frame shape from a number of signals or a shape tuple."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool) else tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise SettingsError(
            f"frame shape {shape!r} is not valid; give a number of signals such as 60, or a shape such as (20, 3)",
            key="shape",
            given=shape,
            valid="a number of signals or a shape",
        )
    return tuple(int(d) for d in dims)


def runs_of(mask: np.ndarray) -> np.ndarray:
    """Start (inclusive) and stop (exclusive) of each run of True in a boolean vector, shape (runs, 2)."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.column_stack((np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))
