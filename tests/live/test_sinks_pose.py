"""The optional ``pose`` topic: what it carries, and that the service sends it only to those who ask for it."""

import asyncio

import numpy as np
import pytest
import zmq
import zmq.asyncio

from broker import free_port, until
from kinestream.errors import ProtocolError
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_angles, decode_pose, decode_status, encode_pose
from kinestream.live.protocol import Rejected
from kinestream.live.replay import replay
from kinestream.live.service import Service
from kinestream.settings import Settings


def test_pose_round_trip_keeps_names_and_float32_positions():
    xyz = np.array([[0.1, 1.0, -0.2], [np.nan, np.nan, np.nan]])
    payload = encode_pose(7, 1.5, {"markers": (["a_study", "b_study"], xyz)}, subject="ann")
    msg = decode_pose(payload)
    assert (msg["seq"], msg["t"], msg["subject"], msg["markers"]) == (7, 1.5, "ann", ["a_study", "b_study"])
    assert msg["markers_xyz"].dtype == np.float32 and msg["markers_xyz"].shape == (2, 3)
    np.testing.assert_array_equal(msg["markers_xyz"], xyz.astype(np.float32))
    assert "keypoints" not in msg


def test_pose_bodies_carry_positions_and_quaternions():
    poses = np.array([[0.0, 0.9, 0.1, 1.0, 0.0, 0.0, 0.0], [0.1, 0.5, 0.0, 0.7071068, 0.0, 0.7071068, 0.0]])
    msg = decode_pose(encode_pose(3, 0.5, {"bodies": (["pelvis", "femur_r"], poses)}))
    assert msg["bodies"] == ["pelvis", "femur_r"]
    np.testing.assert_array_equal(msg["bodies_xyz"], poses[:, :3].astype(np.float32))
    np.testing.assert_array_equal(msg["bodies_quat"], poses[:, 3:].astype(np.float32))
    with pytest.raises(ProtocolError) as info:
        encode_pose(0, 0.0, {"bodies": (["a", "b"], poses[:, :3])})
    assert (info.value.key, info.value.given, info.value.valid) == ("bodies", (2, 3), (2, 7))
    import msgpack

    no_quat = msgpack.packb({"v": 1, "bodies": ["a"], "bodies_xyz": b"\0" * 12})
    with pytest.raises(Rejected, match="bodies_quat is a"):
        decode_pose(no_quat)


def test_pose_refuses_what_is_not_a_pose():
    with pytest.raises(ProtocolError) as info:
        encode_pose(0, 0.0, {"markers": (["a"], [1.0, 2.0])})
    assert (info.value.key, info.value.given, info.value.valid) == ("pose markers", (2,), (1, 3))
    with pytest.raises(ProtocolError) as info:
        encode_pose(0, 0.0, {"bones": (["a"], [[1.0, 2.0, 3.0]])})
    assert (info.value.key, info.value.given) == ("parts", "bones") and "markers" in info.value.valid
    import msgpack

    with pytest.raises(Rejected, match="a pose message needs at least one of"):
        decode_pose(msgpack.packb({"v": 1, "seq": 0, "t": 0.0}))
    short = msgpack.packb({"v": 1, "markers": ["a", "b"], "markers_xyz": b"\0" * 12})
    with pytest.raises(Rejected, match="markers_xyz holds 12 bytes for 2 names; expected 24"):
        decode_pose(short)


@pytest.fixture(scope="module")
def trial(synth_trial):
    table = read_trc(synth_trial(seconds=5.0, noise_mm=5.0, seed=3).keypoints_trc)
    return table.frames(0, 120)  # two seconds


async def serve_and_listen(settings, table, topics: list[bytes]):
    """Serve; one subscriber holding ``topics`` (plus status, to know it is connected); replay ``table``;
    every message the subscriber got, by topic, and the final status."""
    src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    service = Service(settings, input_endpoint=src, output_endpoint=out)
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    for topic in [*topics, b"status"]:
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(out)
    got: dict[bytes, list] = {}

    async def collect():
        while True:
            topic, payload = await sub.recv_multipart()
            got.setdefault(topic, []).append(payload)

    collector = asyncio.create_task(collect())
    await until(lambda: got.get(b"status"), "a status at the subscriber")
    if b"pose" in topics and settings.service.pose_every:
        await until(lambda: service.status()["pose"]["subscribed"], "the service to see the pose subscription")
    sent = await replay(table, src, rate=float("inf"), wait_subscriber=30.0)
    m = service.metrics
    await until(lambda: m.frames_in == sent and m.frames_out + m.skipped == sent, "every frame answered")
    await until(
        lambda: decode_status(got[b"status"][-1])["frames_out"] == m.frames_out, "a status after the last answer"
    )
    collector.cancel()
    await asyncio.gather(collector, return_exceptions=True)
    sub.close(0)  # the subscriber leaves: ZeroMQ tells the service, which stops encoding poses
    await until(lambda: not service.status()["pose"]["subscribed"], "the service to see the subscriber go")
    stop.set()
    final = await serving
    ctx.term()
    return got, final


def test_pose_goes_to_its_subscribers_every_nth_frame(trial):
    # every frame solved: the count is exact
    settings = Settings().override({"service": {"latest_wins": False, "pose_every": 3}})
    got, final = asyncio.run(serve_and_listen(settings, trial, [b"angles", b"pose"]))
    angles = [decode_angles(p) for p in got[b"angles"]]
    poses = [decode_pose(p) for p in got[b"pose"]]
    assert len(angles) == final["frames_out"] == trial.n_frames
    assert [p["seq"] for p in poses] == [a["seq"] for a in angles][::3]
    assert final["pose"] == {"every": 3, "subscribed": False, "sent": len(poses)}
    pose = poses[-1]
    assert len(pose["keypoints"]) == 20 and len(pose["markers"]) == 43
    centres = [
        "pelvis",
        "hip_r",
        "hip_l",
        "knee_r",
        "knee_l",
        "ankle_r",
        "ankle_l",
        "torso",
        "shoulder_r",
        "shoulder_l",
    ]
    assert pose["centres"] == centres
    knee, ankle = pose["centres_xyz"][3], pose["centres_xyz"][5]
    assert 0.3 < float(np.linalg.norm(knee - ankle)) < 0.5  # a shank, in metres
    # the markers sit on the body the keypoints outline
    assert float(np.nanmax(np.abs(pose["markers_xyz"].mean(0) - pose["keypoints_xyz"].mean(0)))) < 0.3
    # every body of the model, for an avatar: each pose's femur and tibia origins are its hip and knee centres,
    # and each orientation is a unit quaternion
    for each in poses:
        assert each["bodies"][0] == "pelvis" and {"femur_r", "tibia_l", "hand_r"} <= set(each["bodies"])
        assert each["bodies_xyz"].shape == (len(each["bodies"]), 3) and each["bodies_quat"].shape[1] == 4
        for centre, body in (("hip_r", "femur_r"), ("knee_l", "tibia_l"), ("pelvis", "pelvis")):
            np.testing.assert_allclose(
                each["bodies_xyz"][each["bodies"].index(body)], each["centres_xyz"][centres.index(centre)], atol=1e-6
            )
        np.testing.assert_allclose(np.linalg.norm(each["bodies_quat"], axis=1), 1.0, atol=1e-6)


def test_pose_is_not_encoded_without_a_subscriber_or_when_off(trial):
    settings = Settings()
    got, final = asyncio.run(serve_and_listen(settings, trial, [b"angles"]))
    assert b"pose" not in got and final["pose"]["sent"] == 0 and final["frames_out"] > 0
    settings = settings.override({"service": {"pose_every": 0}})
    got, final = asyncio.run(serve_and_listen(settings, trial, [b"angles", b"pose"]))
    assert b"pose" not in got and final["pose"]["sent"] == 0
