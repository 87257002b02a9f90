"""The live service over real sockets: ZeroMQ in and out, a real mosquitto broker, real OpenSim."""

import asyncio
import json

import numpy as np
import pytest
import zmq
import zmq.asyncio

from broker import Broker, free_port, until
from kinestream.assets import get_assets
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_angles, decode_status
from kinestream.live.protocol import encode_keypoints
from kinestream.live.replay import replay
from kinestream.live.service import Service
from kinestream.reps import CUES
from kinestream.settings import Settings
from kinestream.synth import synthesize
from streamed import rotational_worst, streaming_motion

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out


@pytest.fixture(scope="module")
def session(synth_trial):
    return synth_trial(seconds=10.0, noise_mm=5.0, gaps=4, seed=11)


def endpoints():
    return f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"


async def live(settings, frames, *, session, record=None, mqtt_port=None, rate=1.0, before=None, reps_after=0):
    """Serve, replay ``frames`` (a MarkerTable) into it, collect every output.

    ``before(src, service)``, when given, runs once the subscribers are in and before the replay. Stops
    the service once every frame in is answered and a status sent after the last answer has reached the
    subscribers (ZeroMQ, MQTT): everything published before it has arrived too. ``reps_after``: rep events
    the service publishes as it stops (a rep the end of the stream closes), awaited at the subscribers."""
    src, out = endpoints()
    service = Service(
        settings,
        input_endpoint=src,
        output_endpoint=out,
        record=record,
        mqtt=f"127.0.0.1:{mqtt_port}" if mqtt_port else None,
        mass=session.mass,
        height=session.height,
    )
    stop, ready, subscribed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(out)
    got = {"angles": [], "status": [], "reps": [], "pose": [], "mqtt": [], "mqtt_reps": [], "mqtt_status": []}

    async def collect():
        while True:
            topic, payload = await sub.recv_multipart()
            got[topic.decode()].append(payload)

    async def collect_mqtt():
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", mqtt_port) as client:
            await client.subscribe("kinestream/#")
            subscribed.set()
            async for message in client.messages:
                for kind in ("angles", "reps", "status"):
                    if message.topic.matches(f"kinestream/+/{kind}"):
                        got["mqtt" if kind == "angles" else f"mqtt_{kind}"].append(json.loads(message.payload))

    tasks = [asyncio.create_task(collect())]
    if mqtt_port:
        tasks.append(asyncio.create_task(collect_mqtt()))
        await until(subscribed.is_set, "the MQTT subscriber's subscription")
    await until(lambda: got["status"], "a status on the ZeroMQ subscriber (then it is connected)")
    if before is not None:
        await before(src, service)
    m = service.metrics
    earlier = m.frames_in
    sent = await replay(frames, src, rate=rate, wait_subscriber=30.0)
    await until(
        lambda: m.frames_in == earlier + sent and m.frames_out + m.skipped == m.frames_in,
        lambda: f"{earlier + sent} frames in and answered; {service.status()}",
    )

    def delivered() -> bool:
        """A status with every answer counted reached each subscriber."""
        zmq_done = bool(got["status"]) and decode_status(got["status"][-1])["frames_out"] == m.frames_out
        return zmq_done and (
            not mqtt_port or bool(got["mqtt_status"]) and got["mqtt_status"][-1]["frames_out"] == m.frames_out
        )

    await until(delivered, "a status sent after the last answer, at every subscriber")
    before_stop = len(got["reps"]), len(got["mqtt_reps"])
    stop.set()
    final = await serving
    await until(
        lambda: (
            len(got["reps"]) >= before_stop[0] + reps_after
            and (not mqtt_port or len(got["mqtt_reps"]) >= before_stop[1] + reps_after)
        ),
        f"{reps_after} rep events published as the service stopped, at every subscriber",
    )
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sub.close(0)
    ctx.term()
    return sent, final, got


def test_live_session_equals_offline_streaming(session, tmp_path):
    """Default configuration, MQTT on, real time: no frame skipped, and the recording equals process --streaming."""
    settings = Settings()
    broker = Broker()
    broker.start()
    try:
        record = tmp_path / "live.mot"
        table = read_trc(session.keypoints_trc)
        sent, final, got = asyncio.run(live(settings, table, session=session, record=record, mqtt_port=broker.port))
    finally:
        broker.stop()
    n = table.n_frames
    assert sent == n and final["frames_in"] == n and final["frames_out"] == n and final["skipped"] == 0
    assert len(got["angles"]) == n
    seqs = [decode_angles(p)["seq"] for p in got["angles"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == n
    assert len(got["mqtt"]) == n
    assert [m["seq"] for m in got["mqtt"]] == seqs
    assert set(got["mqtt"][0]["angles"]) >= {"knee_angle_r", "hip_flexion_l", "pelvis_tx"}
    assert got["status"] and decode_status(got["status"][-1])["frames_in"] > 0

    offline = streaming_motion(session.keypoints_trc, session.mass, session.height, tmp_path / "offline", settings)
    recorded = read_mot(record)
    assert recorded.values.shape == offline.values.shape
    np.testing.assert_allclose(recorded.time, offline.time, atol=1e-6)
    worst = rotational_worst(recorded, offline)
    print(f"live vs process --streaming: worst coordinate differs by {worst:.2e} deg")
    assert worst < 1e-6
    # what the ZeroMQ subscriber got is what was recorded
    last = decode_angles(got["angles"][-1])
    knee = last["coords"].index("knee_angle_r")
    assert last["q"][knee] == pytest.approx(recorded.get("knee_angle_r")[-1], abs=1e-3)
    assert last["sent_ns"] > 0 and last["latency_ms"] > 0

    # one rep event per squat, on ZeroMQ and MQTT, equal to the offline counter on the recording
    from kinestream.centres import joint_centres
    from kinestream.live.messages import decode_reps
    from kinestream.reps import detect_reps

    reps = [decode_reps(p) for p in got["reps"]]
    squats = [q for q in session.squats if not q.partial]
    assert len(reps) == len(squats) == len(got["mqtt_reps"]) >= 2
    assert [r["rep"]["index"] for r in reps] == list(range(1, len(squats) + 1))
    assert [r["rep"] for r in reps] == [m["rep"] for m in got["mqtt_reps"]]
    assert reps[-1]["set"]["reps"] == len(squats) and reps[0]["sent_ns"] > 0
    events, _ = detect_reps(recorded, joint_centres(get_assets().generic_model, recorded))
    assert [r["rep"] for r in reps] == [e.to_dict() for e in events]
    for r, squat in zip(reps, squats, strict=True):
        assert r["rep"]["bottom"] == pytest.approx(squat.bottom, abs=0.15)
        assert r["rep"]["knee_peak"] == pytest.approx((squat.knee_angle_r + squat.knee_angle_l) / 2, abs=4.0)


def test_live_at_120_hz_equals_offline_streaming(tmp_path):
    """A 120 Hz camera, default configuration, real time: no frame skipped, the recording equals process
    --streaming within 1e-6 deg (the augmenter steps on its 60 Hz clock; the filter is designed for 120 Hz)."""
    fast = synthesize(tmp_path / "session120", fs=120.0, seconds=6.0, noise_mm=5.0, gaps=2, seed=12)
    record = tmp_path / "live120.mot"
    table = read_trc(fast.keypoints_trc)
    sent, final, got = asyncio.run(live(Settings(), table, session=fast, record=record, rate=1.0))
    assert sent == final["frames_in"] == final["frames_out"] == table.n_frames and final["skipped"] == 0
    offline = streaming_motion(fast.keypoints_trc, fast.mass, fast.height, tmp_path / "offline120")
    recorded = read_mot(record)
    assert recorded.values.shape == offline.values.shape
    worst = rotational_worst(recorded, offline)
    print(
        f"120 Hz live vs process --streaming: worst coordinate differs by {worst:.2e} deg; service latency "
        f"p99 {final['latency_ms']['p99']} ms"
    )
    assert worst < 1e-6


def test_a_recording_with_jittered_times_ends_as_a_c3d(session, tmp_path, capsys):
    """serve --record at the end of the session (commands.live): the recorded markers as .c3d, read back from the
    _markers.trc, the source's jittered time stamps put on the 60 Hz grid; ezc3d reads the .trc's values back."""
    from c3dcheck import assert_frames_kept
    from kinestream.commands.live import _finish_recording
    from kinestream.files.trc import MarkerTable

    table = read_trc(session.keypoints_trc).frames(0, 300)
    jitter = np.random.default_rng(7).uniform(-0.002, 0.002, table.n_frames)  # a camera clock, +-2 ms
    jittered = MarkerTable(table.names, table.xyz, table.time + jitter, table.rate)
    record, settings = tmp_path / "jittered.mot", Settings()
    c3d = tmp_path / "jittered_markers.c3d"
    c3d.write_text("an earlier session's\n")  # set aside with its recording, as the .mot and .trc are
    sent, final, _ = asyncio.run(live(settings, jittered, session=session, record=record, rate=2.0))
    assert (tmp_path / "jittered_markers.1.c3d").read_text() == "an earlier session's\n"
    _finish_recording(record, settings)
    assert f"wrote {c3d}: frames put on the even 60 Hz grid" in capsys.readouterr().out
    trc = read_trc(tmp_path / "jittered_markers.trc")
    assert trc.n_frames == sent == table.n_frames and len(trc.names) == 20 + 43  # keypoints, markers
    np.testing.assert_allclose(trc.time, jittered.time, atol=1e-6)  # the recording keeps the source's times
    back, empty = assert_frames_kept(c3d, trc, 60.0)
    assert back.n_frames == trc.n_frames and empty.size == 0


def test_hostile_frames_and_a_restarted_source_do_not_stop_the_service(session, tmp_path):
    settings = Settings()
    table = read_trc(session.keypoints_trc).frames(0, 240)

    async def garbage(src, service):
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.XPUB)  # hands over the subscriptions it receives: sends once the service is in
        pub.bind(src)
        assert await asyncio.wait_for(pub.recv(), 30) == b"\x01keypoints", "the service's subscription"
        xyz = np.zeros((25, 3), np.float32)
        for payload in (b"\x00garbage", b"\x93\x01", encode_keypoints(1, 5.0, xyz), b"x" * 100000):
            await pub.send_multipart([b"keypoints", payload])
        await pub.send_multipart([b"keypoints"])  # one part only
        # a source that runs ahead, then restarts at t = 0
        good = encode_keypoints(7, 100.0, table.xyz[0].astype(np.float32), names=table.names)
        await pub.send_multipart([b"keypoints", good])
        await until(
            lambda: service.metrics.frames_in == 1 and sum(service.status()["rejected"].values()) >= 5,
            lambda: f"the six messages handled; {service.status()}",
        )
        pub.close(0)
        ctx.term()

    sent, final, got = asyncio.run(live(settings, table, session=session, before=garbage))
    assert sent == 240
    assert final["rejected"]["not_msgpack"] >= 2 and final["rejected"]["oversize"] == 1
    assert final["rejected"]["all_missing"] == 1 and final["rejected"]["bad_envelope"] == 1
    assert final["resets"] == 1  # the jump back from t = 100 s to 0 is a restarted source
    assert final["frames_out"] + final["skipped"] == final["frames_in"] == 241, final
    knees = [decode_angles(p)["q"][decode_angles(p)["coords"].index("knee_angle_r")] for p in got["angles"][-60:]]
    assert np.isfinite(knees).all()


async def serve_while(session, feed, frames: int, settings=None):
    """Run a one-worker service, ``await feed(src, service)``, wait for ``frames`` to be answered, stop."""
    src, out = endpoints()
    service = Service(
        settings or Settings(), input_endpoint=src, output_endpoint=out, mass=session.mass, height=session.height
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    await feed(src, service)
    m = service.metrics
    await until(
        lambda: m.frames_in == frames and m.frames_out + m.skipped == frames,
        lambda: f"{frames} frames in and answered; {service.status()}",
    )
    stop.set()
    return await serving, service


def test_a_silent_source_that_comes_back_a_minute_later(session, tmp_path):
    """Two seconds of stream, three seconds of silence, then the source again one minute later by its clock."""
    settings = Settings()
    table = read_trc(session.keypoints_trc)
    first, later = table.frames(0, 120), table.frames(300, 420)
    later.time = later.time - later.time[0] + first.time[-1] + 60.0

    async def feed(src, service):
        await replay(first, src, wait_subscriber=30.0)
        await asyncio.sleep(3.0)
        await replay(later, src, wait_subscriber=30.0)

    final, service = asyncio.run(serve_while(session, feed, 240, settings))
    assert final["frames_in"] == 240 and final["frames_out"] + final["skipped"] == 240
    assert final["resets"] == 0  # later in time is no restart
    assert service.pipeline.augmenter_resets >= 1  # the LSTM state started afresh after the silence
    assert np.isfinite(service.metrics.last_angles["knee_angle_r"])


def test_an_ik_failure_costs_one_frame_not_the_service(session):
    """StreamingIK never raises by design; should it ever, the frame is published as unsolved and the next one
    starts afresh. (The fault is injected: a wrapper around the real solver raises once, on the 100th frame.)"""
    settings = Settings()
    table = read_trc(session.keypoints_trc).frames(0, 240)

    async def feed(src, service):
        ik = service.pipeline.solve_stage.ik
        real = ik.step
        calls = {"n": 0}

        def step(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 100:
                raise RuntimeError("injected")
            return real(*args, **kwargs)

        ik.step = step
        await replay(table, src, wait_subscriber=30.0)

    final, service = asyncio.run(serve_while(session, feed, 240, settings))
    assert final["frames_in"] == 240 and final["frames_out"] + final["skipped"] == 240
    assert final["ik_failures"] == 1 and final["rejected"]["stage_error"] == 1
    assert np.isfinite(service.metrics.last_angles["knee_angle_r"])


def test_a_rep_ending_as_the_stream_stops_is_published(session, tmp_path):
    """The stream stops on the frame where the true knee flexion of the last squat passes back through 25 deg (the
    rep ends in the last 0.2 s): the live angles, a few frames behind, are still above it, and the service closes
    the rep out as it stops, on ZeroMQ and MQTT alike. Its cues travel with it and show on the status line."""
    t = session.motion.time
    knee = 0.5 * (session.motion.get("knee_angle_r") + session.motion.get("knee_angle_l"))
    last = int(np.flatnonzero((knee[:-1] >= 25.0) & (knee[1:] < 25.0))[-1])  # the last frame still above 25
    table = read_trc(session.keypoints_trc).frames(0, last + 1)
    broker = Broker()
    broker.start()
    try:
        sent, final, got = asyncio.run(live(Settings(), table, session=session, mqtt_port=broker.port, reps_after=1))
    finally:
        broker.stop()
    from kinestream.live.messages import decode_reps

    reps = [decode_reps(p) for p in got["reps"]]
    print("rep events:", [(r["rep"]["index"], r["rep"]["end"], r["rep"]["reason"], r["rep"]["cues"]) for r in reps])
    assert sent == last + 1 and len(reps) == len(session.squats) == len(got["mqtt_reps"])
    closing = reps[-1]["rep"]
    assert (
        closing["complete"]
        and "end of the stream" in closing["reason"]
        and closing["end"] == pytest.approx(t[last], abs=1e-3)
    )
    assert [r["rep"] for r in reps] == [m["rep"] for m in got["mqtt_reps"]]
    assert reps[-1]["set"]["reps"] == len(session.squats) == final["reps"]
    assert t[last] - 0.2 <= closing["end"] <= t[last]  # it ended in the stream's last 0.2 s
    assert final["last_rep_cues"] == closing["cues"] and all(c in CUES for c in closing["cues"])
