"""`kinestream serve` as its own process: signals, recordings, a broker that comes and goes."""

import json
import signal
import time
from pathlib import Path

import pytest

from kinestream.osim import opensim_module
from kinestream.record import recover
from kinestream.synth import synthesize
from kinestream.trc import read_trc

from broker import Broker, free_port
from served import Served, feed


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("trial"), seconds=8.0, noise_mm=5.0, seed=2)


def test_sigterm_leaves_complete_recordings(trial, tmp_path):
    record = tmp_path / "session.mot"
    served = Served(tmp_path, "--record", str(record), "--mass", str(trial.mass), "--height", str(trial.height))
    served.status()
    sent = feed(read_trc(trial.keypoints_trc), served.src)
    time.sleep(1.0)
    code, out = served.stop(signal.SIGTERM)
    assert code == 0
    final = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert final["frames_in"] == sent
    osim = opensim_module()
    table = osim.TimeSeriesTable(str(record))
    assert final["frames_out"] + final["skipped"] == sent  # nothing lost silently
    assert table.getNumRows() == final["frames_out"] - final["rows_not_recorded"] > 0.9 * sent
    markers = osim.TimeSeriesTableVec3(str(record.with_name("session_markers.trc")))
    assert markers.getNumRows() == sent
    assert record.with_name("session_angles.png").is_file()
    assert recover(record).changed is False  # nothing to repair


def test_sigkill_loses_at_most_a_second(trial, tmp_path):
    record = tmp_path / "killed.mot"
    served = Served(tmp_path, "--record", str(record))
    served.status()
    sent = feed(read_trc(trial.keypoints_trc), served.src, seconds=5.0)
    time.sleep(0.3)
    served.stop(signal.SIGKILL)
    report = recover(record)
    osim = opensim_module()
    rows = osim.TimeSeriesTable(str(record)).getNumRows()
    assert rows == report.rows
    assert rows >= sent - 60 - 0.1 * sent, (rows, sent)  # at most a second at 60 Hz lost, besides skipped frames
    recover(record.with_name("killed_markers.trc"))
    assert osim.TimeSeriesTableVec3(str(record.with_name("killed_markers.trc"))).getNumRows() >= sent - 60


def test_broker_down_at_start_then_up_and_restarted(trial, tmp_path):
    broker = Broker()
    port = free_port()
    served = Served(tmp_path, "--mqtt", f"127.0.0.1:{port}", "--record", str(tmp_path / "s.mot"))
    try:
        served.status()
        table = read_trc(trial.keypoints_trc)
        feed(table, served.src, seconds=2.0)  # no broker yet: ZeroMQ and recording go on
        time.sleep(1.5)
        status = served.status()
        assert status["frames_out"] >= 100 and status["mqtt"]["connected"] is False
        broker.start(port)
        deadline = time.monotonic() + 40
        while not (s := served.status())["mqtt"]["connected"] or s["mqtt"]["queued"]:
            assert time.monotonic() < deadline, "the service did not connect to the broker"
        # the 2 s outage (120 angle messages and a few status ones) fitted the 256-message queue: all delivered
        assert s["mqtt"]["dropped"] == 0 and s["mqtt"]["published"] >= 120
        broker.restart()
        deadline = time.monotonic() + 40
        while True:
            s = served.status()
            if s["mqtt"]["connected"] and s["mqtt"]["reconnects"] >= 1:
                break
            assert time.monotonic() < deadline, "the service did not reconnect after the broker restarted"
        feed(table, served.src, seconds=2.0)
        final = served.status()
        assert final["mqtt"]["published"] > 0
    finally:
        served.stop()
        broker.stop()
    log = Path(tmp_path / "serve.log").read_text()
    assert "unreachable" in log and "connected to 127.0.0.1" in log


def test_a_killed_publisher_restarted_loses_only_what_it_never_sent(trial, tmp_path):
    """SIGKILL the replaying source mid-trial, start it again: every frame that reached the service is
    answered, and the restarted source's frames all arrive, as a new session."""
    import subprocess
    import sys

    record = tmp_path / "restart.mot"
    served = Served(tmp_path, "--record", str(record), "--mass", str(trial.mass), "--height", str(trial.height))
    source = [sys.executable, "-m", "kinestream", "replay", str(trial.keypoints_trc), "--endpoint", served.src,
              "--wait-subscriber", "10"]
    try:
        served.status()
        first = subprocess.Popen(source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while served.status()["frames_in"] < 120:  # two seconds of the trial in
            assert time.monotonic() < deadline, "the first source never got through"
        first.kill()
        first.wait()
        time.sleep(1.0)
        before = served.status()
        assert 120 <= before["frames_in"] < trial.keypoints.n_frames  # it died mid-trial
        second = subprocess.run(source, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        n = trial.keypoints.n_frames
        deadline = time.monotonic() + 30
        while True:
            status = served.status()
            if status["frames_in"] == before["frames_in"] + n and \
                    status["frames_out"] + status["skipped"] == status["frames_in"]:
                break
            assert time.monotonic() < deadline, status
    finally:
        code, out = served.stop()
    assert code == 0
    assert status["resets"] == 1  # the second run's clock starting over is a new session
    assert sum(status["rejected"].values()) == 0
    rows = opensim_module().TimeSeriesTable(str(record)).getNumRows()
    assert rows == status["frames_out"] - status["rows_not_recorded"]
    print(f"\nkilled source: {before['frames_in']} frames in before the kill, then all {n} of the restarted one; "
          f"{status['skipped']} skipped (latest wins), {rows} rows recorded")
