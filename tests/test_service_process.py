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
        while not served.status()["mqtt"]["connected"]:
            assert time.monotonic() < deadline, "the service did not connect to the broker"
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
