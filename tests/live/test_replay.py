"""kinestream replay: a recorded trial published over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.asyncio

import kinestream.live.replay as replay_module
from broker import wait_until
from conftest import real_trial
from kinestream.commands.replay import add_parser as add_replay_parser
from kinestream.commands.replay import run_replay
from kinestream.errors import InputError, ProtocolError, SettingsError
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.ingest import BODY_25
from kinestream.live.protocol import TOPIC_KEYPOINTS, FrameDecoder
from kinestream.live.replay import parse_rate, replay, wire_frames
from kinestream.settings import Settings

FS = 60.0
N_FRAMES = 31  # 0.5 s at 60 Hz
# The real trials' 20 keypoints, with Pose2Sim's lower-case "midHip"
NAMES = [
    "Neck",
    "RShoulder",
    "RElbow",
    "RWrist",
    "LShoulder",
    "LElbow",
    "LWrist",
    "midHip",
    "RHip",
    "RKnee",
    "RAnkle",
    "LHip",
    "LKnee",
    "LAnkle",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
]


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture()
def trial(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    xyz = rng.normal(0.0, 0.5, (N_FRAMES, len(NAMES), 3))
    xyz[5, 2] = np.nan  # a gap in one keypoint
    table = MarkerTable(NAMES, xyz, 1.5 + np.arange(N_FRAMES) / FS, FS)
    return write_trc(tmp_path / "trial.trc", table)


async def _collect(endpoint: str, want: int, timeout: float = 30.0):
    """(receive time, decoded frame) for ``want`` frames from a SUB socket."""
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RECONNECT_IVL, 10)
    sub.subscribe(TOPIC_KEYPOINTS)
    sub.connect(endpoint)  # before the replay binds: ZeroMQ keeps retrying
    dec = FrameDecoder()
    got = []
    try:
        deadline = time.perf_counter() + timeout
        while len(got) < want:
            left = deadline - time.perf_counter()
            if left <= 0 or not await sub.poll(left * 1000):
                break
            topic, payload = await sub.recv_multipart()
            assert topic == TOPIC_KEYPOINTS
            got.append((time.perf_counter(), dec.decode(payload)))
    finally:
        sub.close()
        ctx.term()
    assert dec.rejected == 0
    return got


def _pacing(monkeypatch) -> list[tuple[float, float]]:
    """Record how the replay paces its frames: (target, woke) of every wait for a frame's time, perf_counter
    seconds, the real waits done all the same."""
    waits = []
    real = replay_module._sleep_until

    async def sleep_until(target, stop_event):
        await real(target, stop_event)
        waits.append((target, time.perf_counter()))

    monkeypatch.setattr(replay_module, "_sleep_until", sleep_until)
    return waits


async def _run(trial, want: int, **kw):
    endpoint = free_endpoint()
    stop = kw.pop("stop_event", None)
    collector = asyncio.create_task(_collect(endpoint, want))
    sent = await replay(trial, endpoint, stop_event=stop, **kw)
    return sent, await collector


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_every_frame_arrives_in_order_at_the_trial_rate(trial, rate, monkeypatch, caplog):
    table = read_trc(trial)
    waits = _pacing(monkeypatch)
    with caplog.at_level("INFO", logger="kinestream.live.replay"):
        sent, got = asyncio.run(_run(trial, N_FRAMES, rate=rate, subject="ana"))
    lines = [r.getMessage() for r in caplog.records if r.name == "kinestream.live.replay"]
    assert sent == N_FRAMES and len(got) == N_FRAMES
    frames = [f for _, f in got]
    assert [f.seq for f in frames] == list(range(N_FRAMES))
    np.testing.assert_allclose([f.t for f in frames], table.time, atol=1e-9)
    for k, f in enumerate(frames):
        assert f.names == BODY_25 and f.subject == "ana"  # layout BODY_25: all 20 names are BODY_25's
        idx = [BODY_25.index("MidHip" if n == "midHip" else n) for n in NAMES]
        np.testing.assert_allclose(f.xyz[idx], table.xyz[k], atol=1e-6)  # NaN where the trial has a gap
        assert np.isnan(f.xyz[[BODY_25.index(n) for n in ("Nose", "REye", "LEye", "REar", "LEar")]]).all()
    assert np.isnan(frames[5].xyz[BODY_25.index("RElbow")]).all()
    sent_ns = [f.sent_ns for f in frames]
    assert sent_ns == sorted(sent_ns) and abs(sent_ns[-1] - time.time_ns()) < 60e9  # the wall clock
    # pacing: frame k waits for start + (t_k - t_0) / rate, and never leaves before it (how late it leaves
    # depends on the machine: that is for a benchmark)
    targets = np.array([target for target, _ in waits])
    assert len(waits) == N_FRAMES
    np.testing.assert_allclose(targets - targets[0], (table.time - table.time[0]) / rate, atol=1e-9)
    assert all(woke >= target for target, woke in waits)
    assert any("subscriber joined" in line for line in lines)
    assert any(f"sent {N_FRAMES} frames" in line for line in lines)


def test_loop_keeps_time_increasing(trial):
    want = int(2.5 * N_FRAMES)

    async def main():
        stop = asyncio.Event()
        endpoint = free_endpoint()

        async def collect_then_stop():
            got = await _collect(endpoint, want)
            stop.set()
            return got

        collector = asyncio.create_task(collect_then_stop())
        sent = await replay(trial, endpoint, rate=10.0, loop=True, stop_event=stop)
        return sent, await collector

    sent, got = asyncio.run(main())
    frames = [f for _, f in got]
    assert len(frames) == want and sent >= want
    assert [f.seq for f in frames] == list(range(want))
    t = np.array([f.t for f in frames])
    assert (np.diff(t) > 0).all()
    np.testing.assert_allclose(np.diff(t), 1 / FS, atol=1e-6)  # the loop seam is one frame period too
    np.testing.assert_allclose(frames[N_FRAMES].xyz, frames[0].xyz)  # the second pass repeats the first


def test_several_people_send_each_frame_once_each(trial):
    """``subject`` as a list: each frame goes out once for each subject, in that order, with each subject's own
    sequence numbers and the frame's time: several people in one stream."""
    table = read_trc(trial)
    sent, got = asyncio.run(_run(trial, 3 * N_FRAMES, rate="max", subject=["ana", "ben", "cy"]))
    assert sent == 3 * N_FRAMES and len(got) == 3 * N_FRAMES
    frames = [f for _, f in got]
    assert [f.subject for f in frames[:6]] == ["ana", "ben", "cy"] * 2
    for who in ("ana", "ben", "cy"):
        mine = [f for f in frames if f.subject == who]
        assert [f.seq for f in mine] == list(range(N_FRAMES))
        np.testing.assert_allclose([f.t for f in mine], table.time, atol=1e-9)


def test_names_are_sent_when_asked_or_not_body25(trial):
    sent, got = asyncio.run(_run(trial, N_FRAMES, rate="max", send_names=True))
    assert got[0][1].names == [("MidHip" if n == "midHip" else n) for n in NAMES]
    other = MarkerTable(["RKnee", "knee_marker"], np.ones((4, 2, 3)), np.arange(4) / FS, FS)
    names, xyz = wire_frames(other)
    assert names == ["RKnee", "knee_marker"] and xyz.shape == (4, 2, 3) and xyz.dtype == np.float32


def test_max_rate_sends_back_to_back(trial, monkeypatch):
    waits = _pacing(monkeypatch)
    sent, got = asyncio.run(_run(trial, N_FRAMES, rate="max"))
    assert sent == N_FRAMES and [f.seq for _, f in got] == list(range(N_FRAMES))
    assert waits == []  # no frame waits for its time


def test_no_subscriber_waits_then_sends_anyway(trial, caplog):
    start = time.perf_counter()
    with caplog.at_level("INFO", logger="kinestream.live.replay"):
        sent = asyncio.run(replay(trial, free_endpoint(), rate="max", wait_subscriber=0.2))
    lines = [r.getMessage() for r in caplog.records if r.name == "kinestream.live.replay"]
    assert sent == N_FRAMES
    assert time.perf_counter() - start >= 0.2  # it waited (how much longer depends on the machine)
    assert any("no subscriber after 0.2 s" in line for line in lines)


def test_stop_event_ends_a_loop():
    """Four frames at once, the fifth a minute later: the stop, set once the four have arrived, ends the
    looping replay while it waits for the fifth."""
    table = MarkerTable(["Neck"], np.ones((5, 1, 3)), np.array([0.0, 0.01, 0.02, 0.03, 60.0]), 100.0)

    async def main():
        stop = asyncio.Event()
        endpoint = free_endpoint()

        async def collect_then_stop():
            got = await _collect(endpoint, 4, timeout=30.0)
            stop.set()
            return got

        collector = asyncio.create_task(collect_then_stop())
        sent = await asyncio.wait_for(
            replay(table, endpoint, loop=True, wait_subscriber=30.0, stop_event=stop), timeout=30.0
        )
        return sent, await collector

    sent, got = asyncio.run(main())
    assert len(got) == 4 and sent == 4


def test_bad_inputs_say_what_is_valid(trial, tmp_path):
    for bad in (0, -1, "fast", math.nan):
        with pytest.raises(SettingsError) as info:
            parse_rate(bad)
        assert info.value.key == "rate" and info.value.given is bad and "'max'" in info.value.valid
    assert parse_rate("max") == math.inf and parse_rate("2") == 2.0
    with pytest.raises(SettingsError) as info:
        asyncio.run(replay(trial, "nonsense", wait_subscriber=0))
    assert (info.value.key, info.value.given) == ("endpoint", "nonsense")
    endpoint = free_endpoint()
    ctx = zmq.Context()
    taken = ctx.socket(zmq.PUB)
    taken.bind(endpoint)
    try:
        with pytest.raises(ProtocolError) as info:
            asyncio.run(replay(trial, endpoint, wait_subscriber=0))
        assert (info.value.key, info.value.given) == ("endpoint", endpoint)
    finally:
        taken.close(0)
        ctx.term()
    with pytest.raises(InputError) as info:
        asyncio.run(replay(tmp_path / "absent.trc", free_endpoint()))
    assert info.value.given == tmp_path / "absent.trc"
    backwards = MarkerTable(["Neck"], np.ones((3, 1, 3)), np.array([0.0, 0.2, 0.1]), 10.0)
    with pytest.raises(InputError) as info:
        asyncio.run(replay(backwards, free_endpoint()))
    assert (info.value.key, info.value.given) == ("Time", 0.1)
    twice = MarkerTable(["Hip", "midHip"], np.ones((3, 2, 3)), np.arange(3) / 10, 10.0)
    with pytest.raises(InputError) as info:
        asyncio.run(replay(twice, free_endpoint()))
    assert info.value.given == ["MidHip"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinestream")
    add_replay_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_parser_and_run(trial, capsys):
    args = _parser().parse_args(
        [
            "replay",
            str(trial),
            "--rate",
            "max",
            "--endpoint",
            free_endpoint(),
            "--wait-subscriber",
            "0",
            "--subject",
            "ana",
        ]
    )
    assert args.func is run_replay and args.rate == math.inf and not args.loop and args.subject == "ana"
    assert args.func(args, Settings()) == N_FRAMES
    assert f"sent {N_FRAMES} frames" in capsys.readouterr().out
    defaults = _parser().parse_args(["replay", "x.trc"])
    assert (defaults.rate, defaults.endpoint, defaults.wait_subscriber, defaults.subject) == (
        1.0,
        "tcp://127.0.0.1:5555",
        1.0,
        None,
    )
    for bad in (["--rate", "0"], ["--rate", "quick"], ["--wait-subscriber", "-1"]):
        with pytest.raises(SystemExit) as exc:
            _parser().parse_args(["replay", "x.trc", *bad])
        assert exc.value.code == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_a_looping_replay_cleanly(trial):
    code = (
        "import argparse, sys; from kinestream.commands.replay import add_parser as add_replay_parser; "
        "from kinestream.settings import Settings; "
        "p = argparse.ArgumentParser(); add_replay_parser(p.add_subparsers()); "
        "a = p.parse_args(sys.argv[1:]); a.func(a, Settings())"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "replay",
            str(trial),
            "--loop",
            "--wait-subscriber",
            "0",
            "--endpoint",
            free_endpoint(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    lines = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(
            lambda: any("pass 2 begins" in line for line in lines),
            lambda: f"the second pass of the loop; stderr: {''.join(lines)[-2000:]}",
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=30)
        out, err = proc.stdout.read(), "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    sent = int(out.split("sent ")[1].split()[0])
    assert sent >= N_FRAMES  # the whole first pass, then the loop went on until Ctrl-C


def test_a_real_recorded_trial_replays_without_a_rejection():
    path = real_trial("drop_vertical_jump.trc")
    table = read_trc(path)
    sent, got = asyncio.run(_run(path, table.n_frames, rate="max"))
    assert sent == table.n_frames == len(got)  # _collect asserts the decoder rejected nothing
    frame = got[100][1]
    assert frame.names == BODY_25 and frame.present.sum() == 20  # no face keypoints in the trial
    np.testing.assert_allclose(frame.xyz[BODY_25.index("MidHip")], table.get("midHip")[100], atol=1e-6)
