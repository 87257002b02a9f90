"""`kinestream serve` as its own process: signals, recordings, a broker that comes and goes."""

import json
import signal
from pathlib import Path

import pytest

from broker import Broker, free_port, wait_until
from kinestream.files.record import recover
from kinestream.files.trc import read_trc
from kinestream.osim import opensim_module
from served import Served, feed

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out


@pytest.fixture(scope="module")
def trial(synth_trial):
    return synth_trial(seconds=8.0, noise_mm=5.0, seed=2)


def test_sigterm_leaves_complete_recordings(trial, tmp_path):
    record = tmp_path / "session.mot"
    served = Served(tmp_path, "--record", str(record), "--mass", str(trial.mass), "--height", str(trial.height))
    served.status()
    sent = feed(read_trc(trial.keypoints_trc), served.src)
    served.status_when(lambda s: s["frames_in"] == sent, f"all {sent} frames in")
    code, out = served.stop(signal.SIGTERM)
    assert code == 0
    final = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
    assert final["frames_in"] == sent
    osim = opensim_module()
    table = osim.TimeSeriesTable(str(record))
    assert final["frames_out"] + final["skipped"] == sent  # nothing lost silently
    assert table.getNumRows() == final["frames_out"] - final["rows_not_recorded"] > 0
    markers = osim.TimeSeriesTableVec3(str(record.with_name("session_markers.trc")))
    assert markers.getNumRows() == sent
    assert record.with_name("session_angles.png").is_file()
    assert recover(record).changed is False  # nothing to repair


def test_sigkill_loses_at_most_a_second(trial, tmp_path):
    record = tmp_path / "killed.mot"
    served = Served(tmp_path, "--record", str(record))
    served.status()
    sent = feed(read_trc(trial.keypoints_trc), served.src, seconds=5.0)
    # a status with every frame in is taken after those frames were answered: its counters are final
    last = served.status_when(lambda s: s["frames_in"] == sent, f"all {sent} frames in")
    served.stop(signal.SIGKILL)
    recorded = last["frames_out"] - last["rows_not_recorded"]  # rows handed to the recorder (none for skipped)
    report = recover(record)
    osim = opensim_module()
    rows = osim.TimeSeriesTable(str(record)).getNumRows()
    assert rows == report.rows
    assert recorded - 60 <= rows <= recorded, (rows, recorded)  # at most a second at 60 Hz lost
    markers = last["frames_out"] + last["skipped"]  # every frame's markers are recorded, skipped or not
    recover(record.with_name("killed_markers.trc"))
    assert markers - 60 <= osim.TimeSeriesTableVec3(str(record.with_name("killed_markers.trc"))).getNumRows() <= markers


def test_broker_down_at_start_then_up_and_restarted(trial, tmp_path):
    """No broker at first: ZeroMQ and the recording go on, MQTT messages wait in the queue. The broker
    comes: every waiting message goes out, none dropped. It restarts: the service reconnects and every angle
    message after that reaches it too. Counted against the service's own counters and the broker's log,
    not against the 60 Hz of the feed: skipped frames (latest wins, on a busy machine) publish no angles,
    and the status messages queued meanwhile come one a second, however long the outage lasts."""
    broker = Broker(config="log_type all")  # the broker logs every PUBLISH it receives: Broker.received
    port = free_port()
    served = Served(tmp_path, "--mqtt", f"127.0.0.1:{port}", "--record", str(tmp_path / "s.mot"))
    try:
        served.status()
        table = read_trc(trial.keypoints_trc)
        sent = feed(table, served.src, seconds=2.0)  # no broker yet: ZeroMQ and recording go on
        down = served.status_when(lambda s: s["frames_in"] == sent, f"the {sent} frames in")
        assert down["frames_out"] + down["skipped"] == sent and down["frames_out"] > 0
        # one angle message per frame out, and the status messages, all waiting: the queue holds 256
        mqtt = down["mqtt"]
        assert mqtt["connected"] is False and mqtt["published"] == mqtt["dropped"] == 0
        assert mqtt["queued"] > down["frames_out"]
        broker.start(port)
        up = served.status_when(
            lambda s: s["mqtt"]["connected"] and s["mqtt"]["queued"] == 0,
            "the service to connect to the broker and send what it kept",
        )
        assert up["mqtt"]["dropped"] == 0 and up["mqtt"]["published"] >= mqtt["queued"]
        wait_until(
            lambda: broker.received("angles") >= down["frames_out"],
            lambda: f"{down['frames_out']} angle messages at the broker, got {broker.received('angles')}",
        )
        assert broker.received("angles") == down["frames_out"]  # every one kept during the outage, once
        broker.restart()
        served.status_when(
            lambda s: s["mqtt"]["connected"] and s["mqtt"]["reconnects"] >= 1,
            "the service to reconnect after the broker restarted",
        )
        sent += feed(table, served.src, seconds=2.0)
        final = served.status_when(
            lambda s: s["frames_in"] == sent and s["mqtt"]["queued"] == 0, f"the {sent} frames in and their angles sent"
        )
        wait_until(
            lambda: broker.received("angles") >= final["frames_out"],
            lambda: f"{final['frames_out']} angle messages at the broker, got {broker.received('angles')}",
        )
        assert broker.received("angles") == final["frames_out"]
        assert final["mqtt"]["dropped"] == 0 and final["mqtt"]["published"] > up["mqtt"]["published"]
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
    source = [
        sys.executable,
        "-m",
        "kinestream",
        "replay",
        str(trial.keypoints_trc),
        "--endpoint",
        served.src,
        "--wait-subscriber",
        "30",
    ]
    try:
        served.status()
        first = subprocess.Popen(source, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        served.status_when(lambda s: s["frames_in"] >= 120, "two seconds of the first source's frames in")
        first.kill()
        first.wait()
        before = served.settled()  # what the killed source had sent on its way has arrived
        assert 120 <= before["frames_in"] < trial.keypoints.n_frames  # it died mid-trial
        second = subprocess.run(source, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        n = trial.keypoints.n_frames
        status = served.status_when(
            lambda s: s["frames_in"] == before["frames_in"] + n and s["frames_out"] + s["skipped"] == s["frames_in"],
            f"the restarted source's {n} frames in and answered",
        )
    finally:
        code, out = served.stop()
    assert code == 0
    assert status["resets"] == 1  # the second run's clock starting over is a new session
    assert sum(status["rejected"].values()) == 0
    rows = opensim_module().TimeSeriesTable(str(record)).getNumRows()
    assert rows == status["frames_out"] - status["rows_not_recorded"]
    print(
        f"\nkilled source: {before['frames_in']} frames in before the kill, then all {n} of the restarted one; "
        f"{status['skipped']} skipped (latest wins), {rows} rows recorded"
    )
