"""The session recorder: .mot and .trc written row by row, read back by OpenSim and
kinestream, surviving SIGTERM and SIGKILL, and repaired by recover()."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import kinestream.files.record as record_module
from broker import wait_until
from kinestream.commands.recover import add_parser as add_recover_parser
from kinestream.errors import RecordingError
from kinestream.files.mot import Motion, mot_row, read_mot, write_mot
from kinestream.files.record import COUNT_WIDTH, MotRecorder, TrcRecorder, count_field, recover
from kinestream.files.trc import read_trc, trc_row
from kinestream.osim import opensim_module

COLS = [f"coord_{i}" for i in range(39)] + ["rmse_mm"]
MARKERS = [f"m{i}" for i in range(40)]


def _angles(n, cols=None, seed=0):
    cols = len(COLS) if cols is None else cols
    return np.round(np.random.default_rng(seed).normal(scale=40.0, size=(n, cols)), 8)


def _markers(n, k=None, seed=0):
    k = len(MARKERS) if k is None else k
    return np.round(np.random.default_rng(seed).normal(scale=0.8, size=(n, k, 3)), 6)


def _header_count(path: Path) -> str:
    text = path.read_text()
    if path.suffix == ".mot":
        return next(line for line in text.splitlines() if line.startswith("nRows=")).split("=", 1)[1]
    return text.splitlines()[2].split("\t")[2]


def _osim_rows(path: Path) -> tuple[int, int]:
    """Rows as OpenSim's table reader and its legacy reader (the GUI's and tools') see them."""
    osim = opensim_module()
    if path.suffix == ".mot":
        return osim.TimeSeriesTable(str(path)).getNumRows(), osim.Storage(str(path)).getSize()
    return osim.TimeSeriesTableVec3(str(path)).getNumRows(), osim.MarkerData(str(path)).getNumFrames()


# --------------------------------------------------------------------------- recording


def test_mot_recorder_loads_in_opensim_and_kinestream(tmp_path):
    n = 240
    values = _angles(n)
    time_s = np.arange(n) / 60.0
    path = tmp_path / "session.mot"
    with MotRecorder(path, COLS) as rec:
        for t, row in zip(time_s, values, strict=True):
            rec.write(t, row)
        assert rec.rows == n
    assert rec.closed and rec.flushed_rows == n
    assert _header_count(path) == count_field(n) and len(count_field(n)) == COUNT_WIDTH

    back = read_mot(path)
    assert back.names == COLS and back.in_degrees
    np.testing.assert_array_equal(back.values, values)  # written to 8 decimals, values have 8
    np.testing.assert_allclose(back.time, time_s, atol=5e-7)
    assert _osim_rows(path) == (n, n)
    table = opensim_module().TimeSeriesTable(str(path))
    assert list(table.getColumnLabels()) == COLS
    col = table.getDependentColumn("coord_7")
    np.testing.assert_array_equal([col[i] for i in range(n)], values[:, 7])
    # the fast row formatting writes what the reference formatter writes
    lines = path.read_text().splitlines(keepends=True)[-n:]
    assert lines[17] == mot_row(time_s[17], values[17])


def test_mot_recorder_writes_nan_as_NaN(tmp_path):
    values = _angles(20, 3)
    values[4, 1] = np.nan
    values[6, 2] = np.inf
    path = tmp_path / "nan.mot"
    with MotRecorder(path, ["a", "b", "c"], in_degrees=False) as rec:
        for i, row in enumerate(values):
            rec.write(i / 60, row)
    text = path.read_text()
    assert "inDegrees=no" in text
    assert text.splitlines()[-16] == mot_row(4 / 60, values[4]).rstrip("\n")
    data = text.split("endheader\n", 1)[1]
    assert "\tNaN\t" in data and "nan" not in data and "inf" not in data
    back = read_mot(path)
    assert np.isnan(back.values[4, 1]) and np.isnan(back.values[6, 2])
    np.testing.assert_array_equal(
        np.nan_to_num(back.values, nan=0.0, posinf=0.0), np.nan_to_num(values, nan=0.0, posinf=0.0)
    )
    table = opensim_module().TimeSeriesTable(str(path))
    assert table.getNumRows() == 20 and np.isnan(table.getDependentColumn("b")[4])


@pytest.mark.parametrize("units", ["m", "mm"])
def test_trc_recorder_loads_in_opensim_and_kinestream(tmp_path, units):
    n = 150
    xyz = _markers(n)
    xyz[10:13, 5] = np.nan  # a short gap: blank cells
    path = tmp_path / "session.trc"
    with TrcRecorder(path, MARKERS, 60.0, units=units) as rec:
        for i in range(n):
            rec.write(i / 60.0, xyz[i])
    lines = path.read_text().splitlines()
    assert lines[2].split("\t")[2] == count_field(n) and lines[2].split("\t")[7] == count_field(n)
    assert lines[2].split("\t")[4] == units
    assert "\t\t\t" in lines[6 + 10]  # missing marker: three blank cells

    back = read_trc(path)
    assert back.names == MARKERS and back.rate == 60.0 and back.n_frames == n
    np.testing.assert_allclose(back.xyz, xyz, atol=1e-12, equal_nan=True)
    assert np.isnan(back.xyz[10:13, 5]).all()
    assert _osim_rows(path) == (n, n)
    table = opensim_module().TimeSeriesTableVec3(str(path))
    v = table.getDependentColumn("m3")[42]
    scale = 1000.0 if units == "mm" else 1.0
    np.testing.assert_allclose([v.get(0), v.get(1), v.get(2)], xyz[42, 3] * scale, atol=1e-9)
    if units == "m":
        assert lines[6 + 20] == trc_row(21, 20 / 60.0, xyz[20]).rstrip("\n")


def test_rows_reach_the_disk_every_flush_interval_without_close(tmp_path):
    path = tmp_path / "live.mot"
    values = _angles(30, 4)
    rec = MotRecorder(path, ["a", "b", "c", "d"], flush_interval_s=0.1)
    try:
        header_size = path.stat().st_size
        for i in range(30):
            rec.write(i / 60, values[i])
        # the flush thread writes the rows, then their count in the header
        wait_until(
            lambda: _header_count(path) == count_field(30),
            lambda: f"the header to count 30 rows: {_header_count(path)!r}, {rec}",
        )
        # the file is a complete recording as it stands, header count included
        assert rec.flushed_rows == 30 and _header_count(path) == count_field(30)
        assert _osim_rows(path) == (30, 30)
        np.testing.assert_array_equal(read_mot(path).values, values)
        assert path.read_bytes()[:header_size].endswith(b"endheader\ntime\ta\tb\tc\td\n")  # header kept its size
    finally:
        rec.close()
    rec.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        rec.write(1.0, values[0])
    assert rec.rows == 30


class _Clock:
    """Stands in for the ``time`` module in kinestream.record: ``monotonic()`` is what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_foreground_mode_flushes_on_write(tmp_path, monkeypatch):
    clock = _Clock()  # the flush interval passes when the test says so, not when the machine gets round to it
    monkeypatch.setattr(record_module, "time", clock)
    path = tmp_path / "fg.trc"
    rec = TrcRecorder(path, ["A", "B"], 100.0, flush_interval_s=0.05, background=False, fsync=False)
    for i in range(5):
        rec.write(i / 100, np.full((2, 3), i, dtype=float))
    assert rec.flushed_rows == 0  # not due yet
    clock.now += 0.06
    rec.write(0.05, np.zeros((2, 3)))
    assert rec.flushed_rows == 6 and _header_count(path) == count_field(6)
    rec.write(0.06, np.zeros(6))  # flat (3n,) positions work too
    rec.close()
    assert read_trc(path).n_frames == 7


def test_time_must_increase_and_shapes_must_match(tmp_path):
    with MotRecorder(tmp_path / "t.mot", ["a", "b"]) as rec:
        rec.write(0.0, [1.0, 2.0])
        with pytest.raises(ValueError, match="strictly increasing"):
            rec.write(0.0, [1.0, 2.0])
        with pytest.raises(ValueError, match="strictly increasing"):
            rec.write(0.0000001, [1.0, 2.0])  # the same time once written to 6 decimals
        with pytest.raises(ValueError, match="3 values for 2 columns"):
            rec.write(1.0, [1.0, 2.0, 3.0])
        with pytest.raises(ValueError, match="finite"):
            rec.write(float("nan"), [1.0, 2.0])
        rec.write(0.001, np.array([[3.0, 4.0]]))
        assert rec.rows == 2
    assert _osim_rows(tmp_path / "t.mot") == (2, 2)
    with TrcRecorder(tmp_path / "t.trc", ["A", "B"], 60) as rec:
        with pytest.raises(ValueError, match="2 markers"):
            rec.write(0.0, np.zeros((3, 3)))
        rec.write(0.0, np.zeros((2, 3)))


def test_bad_names_and_settings(tmp_path):
    with pytest.raises(RecordingError) as info:
        MotRecorder(tmp_path / "a.mot", ["knee angle"])
    assert (info.value.key, info.value.given) == ("column names", "knee angle")
    with pytest.raises(RecordingError) as info:
        MotRecorder(tmp_path / "a.mot", ["a", "a"])
    assert (info.value.key, info.value.given, info.value.valid) == ("column names", "a", "unique column names")
    with pytest.raises(RecordingError) as info:
        MotRecorder(tmp_path / "a.mot", ["time", "a"])
    assert (info.value.key, info.value.given) == ("column names", "time")
    with pytest.raises(RecordingError) as info:
        TrcRecorder(tmp_path / "a.trc", ["A"], 60, units="in")
    assert (info.value.key, info.value.given, info.value.valid) == ("units", "in", ["cm", "m", "mm"])
    with pytest.raises(RecordingError) as info:
        TrcRecorder(tmp_path / "a.trc", ["A"], 0)
    assert (info.value.key, info.value.given) == ("rate", 0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        MotRecorder(tmp_path / "a.mot", ["a"], flush_interval_s=0)
    assert not (tmp_path / "a.mot").exists() and not (tmp_path / "a.trc").exists()


def test_second_recorder_on_a_live_file_is_refused(tmp_path):
    path = tmp_path / "live.mot"
    with MotRecorder(path, ["a"]) as rec:
        rec.write(0.0, [1.0])
        rec.flush()
        with pytest.raises(RecordingError) as info:
            MotRecorder(path, ["a"])
        assert info.value.given == path and "set_aside" in info.value.valid
        with pytest.raises(RecordingError) as info:
            recover(path)
        assert info.value.given == path and "after the recorder has stopped" in info.value.valid
        assert read_mot(path).values.tolist() == [[1.0]]  # untouched


# --------------------------------------------------------------------------- killed recorders

_CHILD = textwrap.dedent("""
    import math, signal, sys, time
    import numpy as np
    from kinestream.files.record import MotRecorder, TrcRecorder

    out, mode = sys.argv[1], sys.argv[2]
    cols = [f"c{j}" for j in range(40)]
    markers = [f"m{j}" for j in range(20)]

    def angles(i):
        return np.round(np.sin(0.05 * i + np.arange(40)) * 90.0, 6)

    def xyz(i):
        return np.round(np.cos(0.03 * i + np.arange(60).reshape(20, 3)), 6)

    if mode == "term":
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    mot = MotRecorder(out + ".mot", cols, flush_interval_s=0.5)
    trc = TrcRecorder(out + ".trc", markers, 60.0, flush_interval_s=0.5)
    try:
        with mot, trc:
            start = time.monotonic()
            i = 0
            while True:
                mot.write(i / 60.0, angles(i))
                trc.write(i / 60.0, xyz(i))
                i += 1
                print(i, flush=True)  # rows written so far, both files
                time.sleep(max(0.0, start + i / 60.0 - time.monotonic()))
    finally:
        print("closed", mot.rows, trc.rows, flush=True)
""")


def _expected_angles(i):
    return np.round(np.sin(0.05 * i + np.arange(40)) * 90.0, 6)


def _expected_xyz(i):
    return np.round(np.cos(0.03 * i + np.arange(60).reshape(20, 3)), 6)


def _run_child(tmp_path, mode, sig, rows_before_signal=120):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    out = str(tmp_path / "session")
    proc = subprocess.Popen([sys.executable, str(script), out, mode], stdout=subprocess.PIPE, text=True)
    printed = 0
    try:
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            printed = int(line)
            if printed >= rows_before_signal or time.monotonic() > deadline:
                break
        proc.send_signal(sig)
        rest = proc.stdout.read()
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    tail = rest.split()
    closed = None
    if "closed" in tail:
        k = tail.index("closed")
        closed = (int(tail[k + 1]), int(tail[k + 2]))
        tail = tail[:k]
    if tail:
        printed = int(tail[-1])
    return Path(out + ".mot"), Path(out + ".trc"), printed, closed, proc.returncode


def test_sigkill_loses_at_most_one_second_and_recover_repairs(tmp_path):
    mot, trc, printed, closed, rc = _run_child(tmp_path, "kill", signal.SIGKILL)
    assert rc == -signal.SIGKILL and closed is None
    written = printed + 1  # a row may have been written but not yet reported when the signal came
    assert printed >= 110, f"the child wrote only {printed} rows"
    for path in (mot, trc):
        report = recover(path)
        print(f"\n{report.describe()} (rows written before the kill: {printed}..{written})")
        assert written - 60 <= report.rows <= written
        assert _osim_rows(path) == (report.rows, report.rows)
        assert _header_count(path).strip() == str(report.rows)
        again = recover(path)
        assert not again.changed and again.rows == report.rows
    motion = read_mot(mot)
    kept = len(motion.time)
    np.testing.assert_array_equal(motion.values, np.array([_expected_angles(i) for i in range(kept)]))
    np.testing.assert_array_equal(motion.time, np.round(np.arange(kept) / 60.0, 6))
    markers = read_trc(trc)
    np.testing.assert_array_equal(markers.xyz, np.array([_expected_xyz(i) for i in range(markers.n_frames)]))
    table = opensim_module().TimeSeriesTable(str(mot))
    col = table.getDependentColumn("c5")
    assert [col[i] for i in range(kept)] == [_expected_angles(i)[5] for i in range(kept)]


def test_sigterm_with_a_handler_closes_complete_files(tmp_path):
    mot, trc, printed, closed, rc = _run_child(tmp_path, "term", signal.SIGTERM, rows_before_signal=30)
    assert rc == 0 and closed is not None
    n_mot, n_trc = closed
    assert n_mot >= printed and n_trc >= printed
    assert len(read_mot(mot).time) == n_mot and read_trc(trc).n_frames == n_trc
    assert _osim_rows(mot) == (n_mot, n_mot) and _osim_rows(trc) == (n_trc, n_trc)
    for path in (mot, trc):
        assert not recover(path).changed


# --------------------------------------------------------------------------- recover


def _recorded(tmp_path, kind, n=100):
    if kind == "mot":
        path = tmp_path / "r.mot"
        with MotRecorder(path, ["a", "b", "c"]) as rec:
            for i, row in enumerate(_angles(n, 3)):
                rec.write(i / 60, row)
    else:
        path = tmp_path / "r.trc"
        with TrcRecorder(path, ["A", "B"], 60) as rec:
            for i, xyz in enumerate(_markers(n, 2)):
                rec.write(i / 60, xyz)
    return path


@pytest.mark.parametrize("kind", ["mot", "trc"])
def test_recover_drops_a_cut_off_last_row(tmp_path, kind):
    path = _recorded(tmp_path, kind)
    whole = path.read_bytes()
    last = whole[whole.rindex(b"\n", 0, len(whole) - 1) + 1 :]
    for cut in (5, len(last) - 9):  # mid-number (all fields present, no line end), and fields missing
        path.write_bytes(whole[:-cut])
        report = recover(path)
        assert report.changed and report.rows == 99 and report.bytes_dropped == len(last) - cut
        assert report.header_rows == 100
        assert path.read_bytes() == whole[: -len(last)].replace(count_field(100).encode(), count_field(99).encode())
        assert _osim_rows(path) == (99, 99)
        assert "kept 99 rows" in report.describe() and "row count in the header 100 -> 99" in report.describe()


@pytest.mark.parametrize("kind", ["mot", "trc"])
def test_recover_fixes_a_stale_row_count(tmp_path, kind):
    # killed between appending rows and rewriting the count: every row complete, the count behind
    path = _recorded(tmp_path, kind)
    data = path.read_bytes().replace(count_field(100).encode(), count_field(90).encode())
    path.write_bytes(data)
    assert _osim_rows(path) == (100, 90)  # the legacy reader stops at the count
    report = recover(path)
    assert report.changed and report.rows == 100 and report.bytes_dropped == 0 and report.header_rows == 90
    assert _osim_rows(path) == (100, 100)


@pytest.mark.parametrize("kind", ["mot", "trc"])
def test_recover_on_a_good_file_changes_nothing(tmp_path, kind):
    path = _recorded(tmp_path, kind)
    before, stat = path.read_bytes(), path.stat()
    report = recover(path)
    assert not report.changed and report.rows == 100 and report.bytes_dropped == 0
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert "nothing changed" in report.describe()


def test_recover_a_file_with_a_narrow_count_field(tmp_path):
    # a file from write_mot ("nRows=9") with rows appended after it: the count needs more digits
    time_s = np.arange(9) / 60
    path = write_mot(tmp_path / "w.mot", Motion(time_s, ["a"], time_s[:, None] * 10))
    with open(path, "a") as fh:
        for i in range(9, 12):
            fh.write(mot_row(i / 60, np.array([i / 6])))
        fh.write("0.2000")
    report = recover(path)
    assert report.rows == 12 and report.header_rows == 9 and report.bytes_dropped == 6
    assert "nRows=12\n" in path.read_text()
    assert _osim_rows(path) == (12, 12)
    assert not recover(path).changed


def test_recover_writes_no_file_through_a_planted_symlink(tmp_path):
    """A narrow count field makes recover write a new file and swap it in: a symlink planted at the name it
    used to take (FILE.recover-tmp) must get neither the recording's text nor its mode."""
    time_s = np.arange(9) / 60
    path = write_mot(tmp_path / "w.mot", Motion(time_s, ["a"], time_s[:, None] * 10))
    with open(path, "a") as fh:
        for i in range(9, 12):
            fh.write(mot_row(i / 60, np.array([i / 6])))
    path.chmod(0o644)
    target = tmp_path / "precious.txt"
    target.write_text("not to be touched\n")
    target.chmod(0o600)
    (tmp_path / "w.mot.recover-tmp").symlink_to(target)
    report = recover(path)
    assert report.rows == 12 and "nRows=12\n" in path.read_text()
    assert not path.is_symlink() and (path.stat().st_mode & 0o777) == 0o644
    assert target.read_text() == "not to be touched\n" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt", "w.mot", "w.mot.recover-tmp"]


def test_recover_never_repairs_through_a_symlink(tmp_path):
    path = _recorded(tmp_path, "mot")
    with open(path, "a") as fh:
        fh.write("0.2000")  # a cut-off row: recover would cut it
    before = path.read_bytes()
    link = tmp_path / "link.mot"
    link.symlink_to(path)
    with pytest.raises(RecordingError) as info:
        recover(link)
    assert (info.value.given, info.value.valid) == (link, os.path.realpath(path))
    assert path.read_bytes() == before and link.is_symlink()
    assert recover(path).changed


def test_recover_rejects_what_it_cannot_repair(tmp_path):
    text = tmp_path / "notes.mot"
    text.write_text("shopping list\neggs\nmilk\n")
    with pytest.raises(RecordingError) as info:
        recover(text)
    assert info.value.given == text and "'endheader'" in info.value.valid
    fake_trc = tmp_path / "notes.trc"
    fake_trc.write_text("shopping list\neggs\nmilk\n")
    with pytest.raises(RecordingError) as info:
        recover(fake_trc)
    assert info.value.given == fake_trc and "PathFileType" in info.value.valid
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(RecordingError) as info:
        recover(other)
    assert (info.value.given, info.value.valid) == (other, [".mot", ".sto", ".trc"])
    with pytest.raises(RecordingError) as info:
        recover(tmp_path / "missing.mot")
    assert info.value.given == tmp_path / "missing.mot"
    path = _recorded(tmp_path, "mot")
    lines = path.read_text().splitlines(keepends=True)
    lines[20] = "0.1\t1\t2\n"  # damage in the middle is not what a killed recorder leaves
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(RecordingError) as info:
        recover(path)
    assert (info.value.key, info.value.given) == ("line 21", path)
    assert path.read_bytes() == before


def test_recover_a_trc_without_frames_says_so(tmp_path):
    path = tmp_path / "empty.trc"
    TrcRecorder(path, ["A"], 60).close()
    report = recover(path)
    assert report.rows == 0 and not report.changed
    assert "hangs" in report.describe()


# --------------------------------------------------------------------------- command line


def test_recover_command(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="kinestream")
    add_recover_parser(parser.add_subparsers(dest="command", required=True))
    good = _recorded(tmp_path, "mot")
    cut = _recorded(tmp_path, "trc")
    cut.write_bytes(cut.read_bytes()[:-10])
    args = parser.parse_args(["recover", str(good), str(cut)])
    args.func(args, {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: complete, 100 rows; nothing changed"
    assert out[1].startswith(f"{cut}: kept 99 rows, dropped ")
    bad = tmp_path / "bad.txt"
    bad.write_text("x")
    args = parser.parse_args(["recover", str(bad), str(good)])
    with pytest.raises(RecordingError, match="1 of 2 files"):  # the command's one error line
        args.func(args, {})
    captured = capsys.readouterr()
    assert "neither a .mot/.sto nor a .trc" in captured.err and "nothing changed" in captured.out


def test_recover_through_the_kinestream_command(tmp_path):
    from kinestream.commands.main import build_parser

    build_parser().parse_args(["recover", "x.mot"])  # wired into the command line
    path = _recorded(tmp_path, "mot")
    path.write_bytes(path.read_bytes()[:-4])
    env = dict(os.environ)
    run = subprocess.run(
        [sys.executable, "-m", "kinestream", "recover", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "kept 99 rows" in run.stdout
    run = subprocess.run(
        [sys.executable, "-m", "kinestream", "recover", str(tmp_path / "no.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 2 and "neither a .mot/.sto nor a .trc" in run.stderr
