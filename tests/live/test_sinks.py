"""The live sinks (kinestream.live.sinks) on their own: what they write and send, from values."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_angles, decode_pose
from kinestream.live.protocol import TOPIC_ANGLES, TOPIC_POSE
from kinestream.live.sinks import PoseSink, RecorderSink, Solved, ZmqSink
from kinestream.live.source import Arrival
from kinestream.pipeline import Prepared, Result

COORDS = ["hip_flexion_r", "knee_angle_r"]
KEYPOINTS = ["MidHip", "Neck"]
MARKERS = ["r_knee_study", "L_knee_study", "r_ankle_study"]


def prepared(k: int, t: float) -> Prepared[Arrival]:
    rng = np.random.default_rng(k)
    return Prepared(t, rng.normal(size=(2, 3)), rng.normal(size=(3, 3)), Arrival(k, 1000 + k, None))


def solved(p: Prepared[Arrival], ok: bool = True) -> Solved:
    q = np.array([10.0 + p.tag.seq, 20.0]) if ok else np.full(2, np.nan)
    result = Result(p.t, p.tag, p.keypoints, p.markers, q, 5.0, 9.0, ok, None, None)
    return Solved(result, COORDS, "ana", 1.5)


def test_the_recording_goes_on_in_time_across_a_restart_and_leaves_unsolved_frames_out(tmp_path):
    sink = RecorderSink(tmp_path / "session.mot", COORDS, KEYPOINTS + MARKERS, rate=60.0)
    frames = [prepared(k, t) for k, t in enumerate([10.0, 10.5, 11.0])]
    for p in frames:
        sink.on_prepared(p)
    sink.on_frame(solved(frames[0]))
    sink.on_frame(solved(frames[1], ok=False))
    sink.on_frame(solved(frames[2]))
    sink.on_restart(0.0)  # the source starts over at t = 0
    again = prepared(3, 0.0)
    sink.on_prepared(again)
    sink.on_frame(solved(again))
    assert sink.status() == {"rows_not_recorded": 1}
    sink.close()
    motion = read_mot(tmp_path / "session.mot")
    assert np.allclose(motion.time, [10.0, 11.0, 11.0 + 1 / 60], atol=1e-6)
    assert motion.get("hip_flexion_r").tolist() == [10.0, 12.0, 13.0]
    markers = read_trc(tmp_path / "session_markers.trc")
    assert np.allclose(markers.time, [10.0, 10.5, 11.0, 11.0 + 1 / 60], atol=1e-6)
    assert np.allclose(markers.xyz[3], np.vstack([again.keypoints, again.markers]), atol=1e-5)


def test_an_earlier_recording_is_set_aside_not_overwritten(tmp_path):
    first = RecorderSink(tmp_path / "s.mot", COORDS, KEYPOINTS + MARKERS, rate=60.0)
    p = prepared(0, 1.0)
    first.on_prepared(p)
    first.on_frame(solved(p))
    first.close()
    RecorderSink(tmp_path / "s.mot", COORDS, KEYPOINTS + MARKERS, rate=60.0).close()
    assert len(list(tmp_path.glob("s*.mot"))) == 2


@pytest.fixture
def output():
    """An XPUB as the service binds it and a subscriber to every topic."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{port}")
    assert pub.poll(5000) and pub.recv() == b"\x01"  # the subscription arrived
    yield pub, sub
    sub.close(0)
    pub.close(0)
    ctx.term()


def test_angles_go_out_on_every_frame_and_the_pose_only_while_wanted(output):
    pub, sub = output
    angles = ZmqSink(pub)
    pose = PoseSink(pub, 2, KEYPOINTS, MARKERS)
    frames = [solved(prepared(k, 1.0 + k / 60)) for k in range(6)]
    for k, out in enumerate(frames):
        pose.want(k >= 2)
        angles.on_frame(out)
        pose.on_frame(out)
    got = []
    while len(got) < 8 and sub.poll(5000):
        got.append(sub.recv_multipart())
    topics = [topic for topic, _ in got]
    assert topics.count(TOPIC_ANGLES) == 6 and topics.count(TOPIC_POSE) == 2  # frames 3 and 5 (every 2nd, wanted)
    seqs = [decode_pose(payload)["seq"] for topic, payload in got if topic == TOPIC_POSE]
    assert seqs == [2, 4]
    first = decode_angles(got[0][1])
    assert first["subject"] == "ana" and first["seq"] == 0 and first["q"][0] == pytest.approx(10.0)
    assert pose.status() == {"pose": {"every": 2, "subscribed": True, "sent": 2}}
