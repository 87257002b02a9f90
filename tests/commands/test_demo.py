"""The README's main job, `kinestream demo`, end to end: calibrate, serve, record, count reps."""

import pytest

from broker import free_port
from kinestream.commands.demo import run_demo
from kinestream.files.mot import read_mot
from kinestream.settings import Settings

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out


def test_demo_calibrates_serves_records_and_counts_every_squat(tmp_path, capsys):
    settings = Settings().override(
        {"service": {"input": f"tcp://127.0.0.1:{free_port()}", "output": f"tcp://127.0.0.1:{free_port()}"}}
    )
    final = run_demo(settings, tmp_path, seconds=10.0, rate=1.0)  # real time, as the README runs it
    out = capsys.readouterr().out
    motion = read_mot(tmp_path / "session.mot")
    # Every frame answered. The demo plays in real time, so on a machine whose other core is busy latest wins may
    # skip a frame that waited too long (one of 600 seen): skipped, counted, never lost.
    assert final["frames_in"] == 600 and final["frames_out"] + final["skipped"] == 600
    assert final["skipped"] <= 6
    assert len(motion.time) == final["frames_out"] - final["rows_not_recorded"] > 590
    assert (tmp_path / "calibration" / "scaled.osim").is_file() and (tmp_path / "calibration" / "scaled.json").is_file()
    assert (tmp_path / "session_markers.c3d").is_file()  # serve --record's markers as .c3d, at the end
    for png in ("session_angles.png", "session_reps.png"):
        assert (tmp_path / png).stat().st_size > 20_000
    import re

    counted, performed = map(int, re.search(r"squat reps: (\d+) of the (\d+) performed", out).groups())
    assert final["reps"] == counted == performed >= 2  # live and offline, every squat
    # each live rep event's depth is the peak of the curve the service recorded
    for rep, peak in zip(final["live_reps"], final["recorded_peaks"], strict=True):
        assert abs(rep["knee_peak"] - peak) < 0.5
