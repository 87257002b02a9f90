"""What ezc3d reads back from a .c3d kinestream wrote, checked against the .trc it came from (the tests of files/c3d,
the API and the live service share these)."""

from __future__ import annotations

import ezc3d
import numpy as np
import pytest

from kinestream.files.c3d import read_c3d
from kinestream.files.trc import MarkerTable

F32 = float(np.finfo(np.float32).eps)  # relative precision of a C3D float: 1.2e-7


def open_c3d(path):
    """Labels, rate, units, points (frames, markers, 3) and residuals (frames, markers), as ezc3d reads them."""
    c3d = ezc3d.c3d(str(path))
    point = c3d["parameters"]["POINT"]
    labels = list(point["LABELS"]["value"]) + list(point.get("LABELS2", {}).get("value", []))
    xyz = c3d["data"]["points"][:3].transpose(2, 1, 0)
    residuals = c3d["data"]["meta_points"]["residuals"][0].T
    return labels, float(point["RATE"]["value"][0]), point["UNITS"]["value"], xyz, residuals, c3d


def assert_same_as_trc(c3d_path, trc: MarkerTable):
    """What ezc3d reads from ``c3d_path`` is ``trc`` (read from the .trc) in mm, to float32 precision."""
    labels, rate, units, xyz, residuals, c3d = open_c3d(c3d_path)
    assert labels == trc.names
    assert rate == trc.rate
    assert units == ["mm"]
    assert xyz.shape == trc.xyz.shape and c3d["header"]["points"]["size"] == len(trc.names)
    missing = np.isnan(trc.xyz).any(axis=2)
    # NaN in, missing out: residual -1 and NaN exactly where the .trc has a gap, nowhere else.
    assert np.array_equal(residuals == -1, missing) and np.all(residuals[~missing] == 0)
    assert np.array_equal(np.isnan(xyz).all(axis=2), missing) and not np.isnan(xyz[~missing]).any()
    np.testing.assert_allclose(xyz[~missing], trc.xyz[~missing] * 1000.0, rtol=F32, atol=0)


def assert_frames_kept(c3d_path, trc: MarkerTable, rate: float):
    """Every .trc frame is in the .c3d with its values (float32), at most a quarter frame from its time; the
    grid frames no .trc frame landed on are missing."""
    labels, c3d_rate, _, xyz, residuals, _ = open_c3d(c3d_path)
    back = read_c3d(c3d_path)
    assert labels == trc.names and c3d_rate == pytest.approx(rate, rel=1e-6)
    np.testing.assert_allclose(np.diff(back.time), 1.0 / rate, rtol=1e-6)
    slots = np.rint((trc.time - back.time[0]) * back.rate).astype(int)
    assert np.abs(back.time[slots] - trc.time).max() <= 0.25 / rate + 1e-6
    missing = np.isnan(trc.xyz).any(axis=2)
    np.testing.assert_allclose(xyz[slots][~missing], trc.xyz[~missing] * 1000.0, rtol=F32, atol=0)
    assert np.array_equal(residuals[slots] == -1, missing)
    empty = np.setdiff1d(np.arange(back.n_frames), slots)
    assert np.isnan(back.xyz[empty]).all() and (residuals[empty] == -1).all()
    return back, empty
