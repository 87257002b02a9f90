"""The .trc and .mot files kinestream writes, read back by kinestream and by OpenSim."""

import numpy as np
import pytest

from kinestream.errors import InputError
from kinestream.files.mot import Motion, read_mot, write_mot
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.ingest import BODY_25, complete_keypoints, keypoints_to_table
from kinestream.osim import opensim_module
from limits import read_limited


def _table(n=50, names=("A", "B", "C")):
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(n, len(names), 3))
    return MarkerTable(list(names), xyz, np.arange(n) / 60.0, 60.0)


def test_trc_round_trip_with_blanks_and_opensim_reader(tmp_path):
    t = _table()
    t.xyz[10:14, 1] = np.nan
    path = write_trc(tmp_path / "a.trc", t)
    back = read_trc(path)
    assert back.names == t.names and back.rate == 60.0
    np.testing.assert_allclose(back.xyz, t.xyz, atol=1e-6, equal_nan=True)
    assert np.isnan(back.xyz[10:14, 1]).all()
    osim = opensim_module()
    table = osim.TimeSeriesTableVec3(str(path))
    assert table.getNumRows() == 50 and table.getNumColumns() == 3
    v = table.getDependentColumn("C")[7]
    np.testing.assert_allclose([v.get(0), v.get(1), v.get(2)], t.xyz[7, 2], atol=1e-6)


def test_trc_in_millimetres_reads_as_metres(tmp_path):
    t = _table()
    path = write_trc(tmp_path / "mm.trc", t, units="mm")
    assert "\tmm\t" in path.read_text().splitlines()[2]
    np.testing.assert_allclose(read_trc(path).xyz, t.xyz, atol=1e-8)


def test_mot_round_trip_and_opensim_reader(tmp_path):
    time = np.arange(30) / 60.0
    values = np.column_stack([np.sin(time), np.cos(time) * 90, time * 0.1])
    path = write_mot(tmp_path / "a.mot", Motion(time, ["knee_angle_r", "hip_flexion_r", "pelvis_ty"], values))
    back = read_mot(path)
    np.testing.assert_allclose(back.values, values, atol=1e-7)
    osim = opensim_module()
    table = osim.TimeSeriesTable(str(path))
    assert table.getNumRows() == 30
    assert list(table.getColumnLabels()) == ["knee_angle_r", "hip_flexion_r", "pelvis_ty"]
    assert table.getDependentColumn("hip_flexion_r")[3] == pytest.approx(values[3, 1], abs=1e-6)


def test_keypoints_to_table_rotation_and_missing():
    kp = np.zeros((4, 25, 3))
    kp[:, :, 2] = 1.0  # Z up in the camera frame
    kp[2, 3] = 0.0  # a zero keypoint is missing
    t = keypoints_to_table(kp, 30.0, rotation=("x", -90))
    assert t.names == BODY_25
    np.testing.assert_allclose(t.xyz[0, 0], [0, 1, 0], atol=1e-12)  # now Y up
    assert np.isnan(t.xyz[2, 3]).all() and np.isfinite(t.xyz[2, 4]).all()


def test_aliases_and_derived_keypoints():
    names = [n for n in BODY_25 if n not in ("MidHip", "Neck")]
    t = MarkerTable(names, np.random.default_rng(0).normal(size=(5, len(names), 3)), np.arange(5) / 60, 60)
    out = complete_keypoints(t)
    np.testing.assert_allclose(out.get("MidHip"), 0.5 * (t.get("RHip") + t.get("LHip")))
    np.testing.assert_allclose(out.get("Neck"), 0.5 * (t.get("RShoulder") + t.get("LShoulder")))
    renamed = MarkerTable(["Hip" if n == "RHip" else n for n in names], t.xyz, t.time, 60)
    with pytest.raises(InputError) as info:
        complete_keypoints(renamed)
    assert "RHip" in info.value.given and "RHip" in info.value.valid


def test_trc_errors(tmp_path):
    with pytest.raises(InputError) as info:
        read_trc(tmp_path / "nope.trc")
    assert (info.value.given, info.value.valid) == (tmp_path / "nope.trc", "a .trc file")
    bad = tmp_path / "bad.trc"
    bad.write_text("hello\n")
    with pytest.raises(InputError) as info:
        read_trc(bad)
    assert info.value.given == bad and "PathFileType" in info.value.valid


def test_a_header_naming_a_million_markers_is_refused_before_allocating(tmp_path):
    """A 9 MB .trc whose line 4 names 10^6 markers: reading each of its rows as wide as that is gigabytes."""
    path = tmp_path / "wide.trc"
    names = "\t\t\t".join(f"M{k}" for k in range(10**6))
    rows = "".join(f"{k + 1}\t{k / 60:.6f}\t0.1\t1.0\t0.2\n" for k in range(200))
    path.write_text(
        "PathFileType\t4\t(X/Y/Z)\twide.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\n"
        f"60\t60\t200\t1000000\tm\nFrame#\tTime\t{names}\n\tX1\tY1\tZ1\n" + rows
    )
    assert 8e6 < path.stat().st_size < 12e6
    status, said = read_limited(path)
    assert status == 2, said
    assert said.count("\n") == 1 and str(path) in said
    assert "names 1000000 markers on line 4 (3000002 values per row)" in said and "200 rows hold 1000 values" in said


def test_short_rows_and_a_few_more_names_than_values_are_read(tmp_path):
    """What the refusal leaves alone: rows that stop before the last markers (missing), as some writers do."""
    path = tmp_path / "short.trc"
    names = "\t\t\t".join(f"M{k}" for k in range(5))
    rows = "".join(f"{k + 1}\t{k / 60:.6f}\t0.1\t1.0\t0.2\n" for k in range(50))
    path.write_text(
        "PathFileType\t4\t(X/Y/Z)\tshort.trc\nDataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\n"
        f"60\t60\t50\t5\tm\nFrame#\tTime\t{names}\n\tX1\tY1\tZ1\n" + rows
    )
    table = read_trc(path)
    assert table.xyz.shape == (50, 5, 3) and np.isnan(table.xyz[:, 1:]).all()
    np.testing.assert_allclose(table.xyz[:, 0], [[0.1, 1.0, 0.2]] * 50)
