""".c3d output: ezc3d reads back what the .trc holds (labels, rate, frames, values, gaps), and bad input is refused."""

from __future__ import annotations

import math
import sys

import ezc3d
import numpy as np
import pytest

from c3dcheck import F32, assert_frames_kept, assert_same_as_trc, open_c3d
from conftest import real_trial
from kinestream.errors import AssetError, InputError
from kinestream.files.c3d import MAX_FRAMES, read_c3d, write_c3d
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.synth import MIN_SECONDS, synthesize
from limits import read_limited


def _assert_same_table(got: MarkerTable, want: MarkerTable):
    """read_c3d gives the .trc's table back: metres to float32 precision, times to the .trc's 6 decimals."""
    assert got.names == want.names and got.rate == want.rate and got.n_frames == want.n_frames
    assert np.array_equal(np.isnan(got.xyz), np.isnan(want.xyz))
    np.testing.assert_allclose(got.xyz, want.xyz, rtol=2 * F32, atol=0)  # mm in float32, back to m in float64
    np.testing.assert_allclose(got.time, want.time, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
    """A synth trial with NaN gaps, keypoints and augmented markers together, as written to and read from .trc.

    The keypoints' gaps come from synthesize; each gap is copied to one augmented marker too, so that the
    long ``_study`` labels carry missing samples as well.
    """
    out = tmp_path_factory.mktemp("c3d_synth")
    trial = synthesize(out, seconds=MIN_SECONDS, gaps=3)
    keypoints = read_trc(trial.keypoints_trc)
    assert np.isnan(keypoints.xyz).any()
    markers = trial.markers.select(trial.markers.names)
    for gap, name in zip(trial.gaps, ("r.ASIS_study", "L_calc_study", "r_mknee_study"), strict=True):
        markers.xyz[gap.start : gap.stop, markers.index(name)] = np.nan
    table = keypoints.with_markers(markers.names, markers.xyz)
    return read_trc(write_trc(out / "augmented.trc", table))


@pytest.mark.parametrize("name", ["sit_to_stand.trc", "drop_vertical_jump.trc"])
def test_real_trial_reads_back_with_ezc3d_as_the_trc(tmp_path, name):
    trc = read_trc(real_trial(name))
    path = write_c3d(tmp_path / "trial.c3d", trc)
    assert path == tmp_path / "trial.c3d" and sorted(tmp_path.iterdir()) == [path]  # no partial file left
    assert_same_as_trc(path, trc)
    _, _, _, _, _, c3d = open_c3d(path)
    assert c3d["header"]["points"]["first_frame"] == 0  # frame 1 on disk: the trial starts at t=0
    assert c3d["header"]["points"]["frame_rate"] == 60.0
    assert c3d["parameters"]["KINESTREAM"]["FIRST_TIME"]["value"] == ["0.0"]
    _assert_same_table(read_c3d(path), trc)


def test_augmented_synth_trial_with_gaps(tmp_path, augmented):
    assert len(augmented.names) == 21 + 43
    assert np.isnan(augmented.xyz).any(axis=2).sum() > 6  # gaps in keypoints and in _study markers
    assert max(len(n) for n in augmented.names) <= 16  # c3d.org's recommended label length
    path = write_c3d(tmp_path / "augmented.c3d", augmented)
    assert_same_as_trc(path, augmented)
    back = read_c3d(path)
    _assert_same_table(back, augmented)
    assert back.meta == {"source": str(path), "units": "mm"}


def test_a_trial_cut_from_a_longer_one_keeps_its_time(tmp_path):
    trc = read_trc(real_trial("sit_to_stand.trc")).frames(90, 200)  # from t = 1.5 s
    path = write_c3d(tmp_path / "cut.c3d", trc)
    assert_same_as_trc(path, trc)
    _, _, _, _, _, c3d = open_c3d(path)
    assert c3d["header"]["points"]["first_frame"] == 90  # frame 91 on disk, as a lab's trimmed trial
    assert c3d["header"]["points"]["last_frame"] == 199
    assert read_c3d(path).time[0] == 1.5
    _assert_same_table(read_c3d(path), trc)

    # Not a whole number of frames after 0: the header starts at frame 1, the exact time is in the parameter.
    shifted = MarkerTable(trc.names, trc.xyz, trc.time + 0.004321, trc.rate)
    path = write_c3d(tmp_path / "shifted.c3d", shifted)
    _, _, _, _, _, c3d = open_c3d(path)
    assert c3d["header"]["points"]["first_frame"] == 0
    assert c3d["parameters"]["KINESTREAM"]["FIRST_TIME"]["value"] == [repr(1.5 + 0.004321)]
    _assert_same_table(read_c3d(path), shifted)

    # Before t=0 (a live session's clock, say): frame 1 in the header, the time in the parameter.
    early = MarkerTable(trc.names, trc.xyz, trc.time - 2.0, trc.rate)
    path = write_c3d(tmp_path / "early.c3d", early)
    assert open_c3d(path)[5]["header"]["points"]["first_frame"] == 0
    _assert_same_table(read_c3d(path), early)


@pytest.mark.parametrize("units, factor", [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_units(tmp_path, units, factor):
    trc = read_trc(real_trial("drop_vertical_jump.trc")).frames(0, 30)
    path = write_c3d(tmp_path / "u.c3d", trc, units=units)
    _, _, stored_units, xyz, _, _ = open_c3d(path)
    assert stored_units == [units]
    np.testing.assert_allclose(xyz, trc.xyz * factor, rtol=F32, atol=0)
    back = read_c3d(path)
    assert back.meta["units"] == units
    np.testing.assert_allclose(back.xyz, trc.xyz, rtol=2 * F32, atol=0)


def test_reads_a_lab_file(tmp_path):
    """A .c3d made without kinestream: time from the header's first frame, labels padded, a missing point."""
    c3d = ezc3d.c3d()
    c3d["parameters"]["POINT"]["RATE"]["value"] = [100.0]
    c3d["parameters"]["POINT"]["UNITS"]["value"] = ["mm"]
    c3d["parameters"]["POINT"]["LABELS"]["value"] = ["LASI", "RASI  "]
    points = np.ones((4, 2, 5))
    points[:3] = np.arange(30.0).reshape(3, 2, 5)
    residuals = np.full((1, 2, 5), 0.5)
    residuals[0, 1, 3] = -1.0
    c3d["data"]["points"] = points
    c3d["data"]["meta_points"] = {"residuals": residuals}
    c3d["header"]["points"]["first_frame"] = 9  # frame 10 on disk
    c3d.write(str(tmp_path / "lab.c3d"))

    table = read_c3d(tmp_path / "lab.c3d")
    assert table.names == ["LASI", "RASI"] and table.rate == 100.0 and table.n_frames == 5
    np.testing.assert_allclose(table.time, 0.09 + np.arange(5) / 100.0, rtol=0, atol=1e-12)
    assert np.array_equal(np.isnan(table.xyz).any(axis=2), residuals[0].T < 0)
    np.testing.assert_allclose(table.get("LASI"), points[:3, 0].T / 1000.0, rtol=1e-15)


def test_more_than_255_markers_and_labels_up_to_255_bytes(tmp_path):
    names = [f"M{k}" for k in range(298)] + ["x" * 255, "é" * 127]  # 254 bytes in UTF-8
    rng = np.random.default_rng(0)
    table = MarkerTable(names, rng.uniform(-2, 2, (4, len(names), 3)), np.arange(4) / 30.0, 30.0)
    table.xyz[2, 7] = np.nan
    path = write_c3d(tmp_path / "many.c3d", table)
    labels, _, _, xyz, residuals, _ = open_c3d(path)
    assert labels == names and residuals[2, 7] == -1 and np.isnan(xyz[2, 7]).all()
    _assert_same_table(read_c3d(path), table)


def _small(names=("a", "b"), frames=3, rate=60.0, time=None):
    time = np.arange(frames) / 60.0 if time is None else np.asarray(time, dtype=float)
    return MarkerTable(list(names), np.zeros((frames, len(names), 3)), time, rate)


@pytest.mark.parametrize(
    "table, key, given",
    [
        (_small(names=["a", "x" * 256]), "names[1]", "x" * 256),
        (_small(names=["a", "é" * 128]), "names[1]", "é" * 128),
        (_small(names=["a", "b", "a"]), "names", "a"),
        (_small(names=["a", ""]), "names[1]", ""),
        (_small(names=["a", "b "]), "names[1]", "b "),
        (_small(names=[]), None, []),
        (_small(frames=0), None, 0),
        (_small(frames=MAX_FRAMES + 1), None, MAX_FRAMES + 1),
        (_small(rate=0.0), "rate", 0.0),
        (_small(rate=float("nan")), "rate", math.nan),
        (_small(time=[0.0, 0.02, 0.03]), "time[1]", 0.02),
        (_small(time=[0.0, np.nan, 2 / 60]), "time[1]", math.nan),
    ],
)
def test_bad_tables_are_refused(tmp_path, table, key, given):
    with pytest.raises(InputError) as info:
        write_c3d(tmp_path / "x.c3d", table)
    assert info.value.key == key
    assert info.value.given == given or (math.isnan(given) and math.isnan(info.value.given))
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_units_are_refused(tmp_path):
    table = _small()
    (tmp_path / "folder.c3d").mkdir()
    (tmp_path / "file").write_text("")
    cases = [
        (tmp_path / "x.trc", {}, None, tmp_path / "x.trc", "a path ending in .c3d"),
        (tmp_path / "x.C3D", {}, None, tmp_path / "x.C3D", "a path ending in .c3d"),
        (tmp_path / "folder.c3d", {}, None, tmp_path / "folder.c3d", "the path of a .c3d file"),
        (tmp_path / "file" / "x.c3d", {}, None, tmp_path / "file" / "x.c3d", "a path that can be written"),
        (tmp_path / ("n" * 300 + ".c3d"), {}, None, tmp_path / ("n" * 300 + ".c3d"), "a path that can be written"),
        # The name fits but its temporary one does not: ezc3d writes nothing and says nothing.
        (tmp_path / ("n" * 245 + ".c3d"), {}, None, tmp_path / ("n" * 245 + ".c3d"), "a writable folder"),
        (tmp_path / "x.c3d", {"units": "in"}, "units", "in", ["cm", "m", "mm"]),
    ]
    for path, kwargs, key, given, valid in cases:
        with pytest.raises(InputError) as info:
            write_c3d(path, table, **kwargs)
        assert (info.value.key, info.value.given, info.value.valid) == (key, given, valid), path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder.c3d"]


def test_a_failed_write_keeps_the_earlier_file(tmp_path):
    good = write_c3d(tmp_path / "x.c3d", _small()).read_bytes()
    path = tmp_path / ("n" * 245 + ".c3d")  # a valid name whose temporary one is too long
    path.write_bytes(good)
    with pytest.raises(InputError) as info:
        write_c3d(path, _small(names=["c", "d"]))
    assert (info.value.given, info.value.valid) == (path, "a writable folder")
    assert path.read_bytes() == good and read_c3d(path).names == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "x.c3d"])


def test_bad_files_are_refused_on_reading(tmp_path):
    (tmp_path / "text.c3d").write_text("PathFileType\t4\t(X/Y/Z)\tnot.c3d\n")
    (tmp_path / "empty.c3d").write_bytes(b"")
    (tmp_path / "folder.c3d").mkdir()
    inches = ezc3d.c3d()
    inches["parameters"]["POINT"]["RATE"]["value"] = [60.0]
    inches["parameters"]["POINT"]["UNITS"]["value"] = ["in"]
    inches["parameters"]["POINT"]["LABELS"]["value"] = ["a"]
    inches["data"]["points"] = np.ones((4, 1, 2))
    inches.write(str(tmp_path / "inches.c3d"))
    cases = [
        ("missing.c3d", None, tmp_path / "missing.c3d"),
        ("n" * 300 + ".c3d", None, tmp_path / ("n" * 300 + ".c3d")),
        ("folder.c3d", None, tmp_path / "folder.c3d"),  # refused before ezc3d, which hangs on a folder
        ("text.c3d", None, tmp_path / "text.c3d"),
        ("empty.c3d", None, tmp_path / "empty.c3d"),
        ("inches.c3d", "POINT:UNITS", "in"),
    ]
    for name, key, given in cases:
        with pytest.raises(InputError) as info:
            read_c3d(tmp_path / name)
        assert (info.value.key, info.value.given) == (key, given), name


def test_without_ezc3d_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    path = write_c3d(tmp_path / "x.c3d", _small())
    monkeypatch.setitem(sys.modules, "ezc3d", None)  # what `import ezc3d` meets when it is not installed
    for call in (lambda: write_c3d(tmp_path / "y.c3d", _small()), lambda: read_c3d(path)):
        with pytest.raises(AssetError) as info:
            call()
        assert (info.value.given, info.value.valid) == ("ezc3d", "pip install ezc3d")
    assert not (tmp_path / "y.c3d").exists()


# ------------------------------------------------------------------ live recordings: jittered times


def _recording(path, time, rate=60.0, n_markers=4, seed=0):
    """A .trc as the live recorder writes it: frame times as given, random positions with a short gap."""
    from kinestream.files.record import TrcRecorder

    xyz = np.random.default_rng(seed).normal(0.0, 0.5, (len(time), n_markers, 3))
    xyz[7:9, 1] = np.nan
    names = [f"m{k}" for k in range(n_markers)]
    with TrcRecorder(path, names, rate) as rec:
        for t, frame in zip(time, xyz, strict=True):
            rec.write(float(t), frame)
    return read_trc(path)


def test_a_jittered_live_recording_is_put_on_its_grid(tmp_path):
    from kinestream.files.c3d import trc_to_c3d

    rng = np.random.default_rng(1)
    time = 1234.5 + np.arange(300) / 60.0 + rng.uniform(-0.003, 0.003, 300)  # 3 ms jitter at 60 Hz
    time = np.delete(time, range(100, 105))  # five frames skipped by the service
    trc = _recording(tmp_path / "session_markers.trc", time)
    before = (tmp_path / "session_markers.trc").read_bytes()
    path, note = trc_to_c3d(tmp_path / "session_markers.trc")
    assert path == tmp_path / "session_markers.c3d"
    assert "even 60 Hz grid" in note and "5 grid frames that no frame landed on are missing" in note
    back, empty = assert_frames_kept(path, trc, 60.0)
    assert list(empty) == list(range(100, 105)) and back.n_frames == 300
    assert (tmp_path / "session_markers.trc").read_bytes() == before  # only read


def test_a_source_faster_than_the_recorders_rate_gets_its_own(tmp_path):
    from kinestream.files.c3d import trc_to_c3d

    time = np.arange(240) / 120.0 + np.random.default_rng(2).uniform(-0.001, 0.001, 240)
    trc = _recording(tmp_path / "fast.trc", time, rate=60.0)  # the recorder was told 60 Hz
    path, note = trc_to_c3d(tmp_path / "fast.trc")
    assert "the file says 60 Hz; the times say 120 Hz" in note
    assert_frames_kept(path, trc, 120.0)
    ntsc = np.arange(3000) / 59.94
    path, note = trc_to_c3d(_recording(tmp_path / "ntsc.trc", ntsc, rate=60.0).meta["source"])
    assert_frames_kept(path, read_trc(tmp_path / "ntsc.trc"), 59.94)


def test_an_even_trial_is_written_as_it_is(tmp_path):
    from kinestream.files.c3d import on_even_grid, trc_to_c3d

    trc = read_trc(real_trial("sit_to_stand.trc"))
    assert on_even_grid(trc) == (trc, None)
    path, note = trc_to_c3d(real_trial("sit_to_stand.trc"), tmp_path / "s.c3d")
    assert note is None
    assert_same_as_trc(path, trc)


def test_times_too_uneven_for_a_c3d_are_refused(tmp_path):
    from kinestream.files.c3d import on_even_grid, trc_to_c3d

    rng = np.random.default_rng(3)
    uneven = np.cumsum(rng.uniform(0.005, 0.03, 200))  # a source with no steady clock
    trc = _recording(tmp_path / "uneven.trc", uneven)
    with pytest.raises(InputError) as info:
        trc_to_c3d(tmp_path / "uneven.trc")
    assert info.value.key.startswith("time[") and info.value.valid == "frames evenly spaced"
    assert not (tmp_path / "uneven.c3d").exists()
    backwards = MarkerTable(trc.names, trc.xyz[:3], [0.0, 0.02, 0.01], 60.0)
    with pytest.raises(InputError) as info:
        on_even_grid(backwards)
    assert (info.value.key, info.value.given, info.value.valid) == ("time[2]", 0.01, "times that increase")


def test_the_serve_command_writes_the_recordings_c3d_or_says_why_not(tmp_path, capsys):
    from kinestream.commands.live import recording_c3d
    from kinestream.settings import load_settings

    settings = load_settings()
    time = np.arange(120) / 60.0 + np.random.default_rng(4).uniform(-0.002, 0.002, 120)
    trc = _recording(tmp_path / "s_markers.trc", time)
    (tmp_path / "s.mot").write_text("not looked at\n")
    assert recording_c3d(tmp_path / "s.mot", settings) == tmp_path / "s_markers.c3d"
    assert f"wrote {tmp_path / 's_markers.c3d'}: frames put on the even 60 Hz grid" in capsys.readouterr().out
    assert_frames_kept(tmp_path / "s_markers.c3d", trc, 60.0)

    assert recording_c3d(tmp_path / "s.mot", settings.override({"output": {"c3d": False}})) is None
    _recording(tmp_path / "bad_markers.trc", np.cumsum(np.random.default_rng(5).uniform(0.005, 0.03, 50)))
    assert recording_c3d(tmp_path / "bad.mot", settings) is None
    out, err = capsys.readouterr()
    assert not out and len(err.strip().splitlines()) == 1
    assert err.startswith(f"kinestream: no .c3d of {tmp_path / 'bad_markers.trc'} (the .mot and .trc are complete): ")
    assert not (tmp_path / "bad_markers.c3d").exists() and (tmp_path / "bad_markers.trc").is_file()


C3D_THEN_OPENSIM = """
import numpy as np
from kinestream import solve
from kinestream.files.c3d import read_c3d, write_c3d
from kinestream.files.trc import MarkerTable

table = MarkerTable(["a", "b"], np.zeros((3, 2, 3)), np.arange(3) / 60, 60.0)
osim = solve.opensim_module()
weights = osim.SetMarkerWeights()
weights.cloneAndAppend(osim.MarkerWeight("a", 1.0))
for first in ("c3d", "opensim") * 2:  # each after the other, in one process, as process and serve run them
    if first == "c3d":
        write_c3d("{dir}/t.c3d", table)
        assert read_c3d("{dir}/t.c3d").names == ["a", "b"]
    else:
        markers = solve.vec3_table(["a", "b"], table.time, table.xyz)
        assert list(markers.getColumnLabels()) == ["a", "b"]
        osim.MarkersReference(markers, weights)
print("ok")
"""


@pytest.mark.parametrize("first", ["c3d", "opensim"])
def test_c3d_files_and_opensim_tables_in_one_process(tmp_path, first):
    """ezc3d and OpenSim share SWIG's std::vector<std::string>: IK's marker table (solve.vec3_table) after a .c3d
    (process writes one before IK), and a .c3d after IK (serve writes one after the session), both work. In a
    fresh process, so that the order is this test's."""
    import subprocess

    code = C3D_THEN_OPENSIM.replace("{dir}", str(tmp_path))
    if first == "opensim":
        code = code.replace('("c3d", "opensim") * 2', '("opensim", "c3d") * 2')
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-2000:]


def test_a_time_span_too_long_for_a_c3d_is_refused_before_its_grid_is_made(tmp_path):
    """A .trc whose last frame is at 10^6 s, or a live recording with jumps just under max_time_jump_s: their
    even grid is 10^8 (or 10^6) frames; a .c3d holds 65,535. Refused before the grid, so no gigabytes."""
    from kinestream.files.c3d import on_even_grid

    far = _recording(tmp_path / "far_markers.trc", np.array([0.0, 1 / 60, 2 / 60, 1e6]))
    status, said = read_limited(tmp_path / "far_markers.trc", "c3d")
    assert status == 2, said
    assert said.count("\n") == 1 and str(tmp_path / "far_markers.trc") in said
    assert "the frames span 1e+06 s" in said and "which holds at most 65535" in said
    assert not (tmp_path / "far_markers.c3d").exists()
    assert far.n_frames == 4

    jumps = np.concatenate([k * 3599.0 + np.arange(20) / 60 for k in range(30)])  # each jump under an hour
    live = _recording(tmp_path / "jumps_markers.trc", jumps)
    status, said = read_limited(tmp_path / "jumps_markers.trc", "c3d")
    assert status == 2 and "which holds at most 65535" in said, said
    with pytest.raises(InputError, match="jumps_markers.trc: the frames span"):  # the message names the recording
        on_even_grid(live)
