"""Several people in one keypoint stream, over real sockets (ZeroMQ in and out, a real mosquitto broker), real
OpenSim and onnxruntime: each subject served by their own pipeline, recorded on their own, refused beyond
service.max_people or with an unsafe id, closed out after service.person_timeout_s."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import msgpack
import numpy as np
import pytest
import zmq
import zmq.asyncio
from test_service import endpoints

from broker import Broker, until
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.live.messages import decode_angles, decode_pose, decode_reps
from kinestream.live.protocol import TOPIC_KEYPOINTS, encode_keypoints
from kinestream.live.replay import wire_frames
from kinestream.live.service import Service
from kinestream.settings import Settings
from streamed import rotational_worst, streaming_motion

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out


class Source:
    """A keypoint source on ``src`` (bound, as replay binds) that sends several subjects' frames interleaved."""

    def __init__(self, src: str):
        self.src = src

    async def __aenter__(self) -> Source:
        self.ctx = zmq.asyncio.Context()
        self.pub = self.ctx.socket(zmq.XPUB)  # hands over the subscriptions it receives: sends once the service is in
        self.pub.bind(self.src)
        assert await asyncio.wait_for(self.pub.recv(), 30) == b"\x01keypoints", "the service's subscription"
        return self

    async def __aexit__(self, *exc) -> None:
        self.pub.close(0)
        self.ctx.term()

    async def play(self, streams: dict, start: int = 0, stop: int | None = None, speed: float = 1.0, until=None) -> int:
        """Frames ``start:stop`` of each subject's table (``streams``: subject -> MarkerTable), frame k of every
        subject together, at the tables' rate times ``speed`` (``until()`` true: no more); the number sent."""
        wired = {subject: (table, *wire_frames(table)) for subject, table in streams.items()}
        last = min(t.n_frames for t in streams.values()) if stop is None else stop
        began, sent = time.perf_counter(), 0
        rate = next(iter(streams.values())).rate * speed
        for k in range(start, last):
            delay = began + (k - start) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the camera's pace, not a wait for a condition
            if until is not None and until():
                break
            for subject, (table, names, xyz) in wired.items():
                t = float(table.time[k])
                payload = encode_keypoints(k, t, xyz[k], names=names, subject=subject, sent_ns=time.time_ns())
                await self.pub.send_multipart([TOPIC_KEYPOINTS, payload])
                sent += 1
        return sent


async def start(settings, *, record=None, mqtt_port=None, mass=70.0, height=1.75):
    src, out = endpoints()
    service = Service(
        settings,
        input_endpoint=src,
        output_endpoint=out,
        record=record,
        mqtt=f"127.0.0.1:{mqtt_port}" if mqtt_port else None,
        mass=mass,
        height=height,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    return service, src, out, stop, serving


async def answered(service, frames: int) -> None:
    m = service.metrics
    await until(
        lambda: m.frames_in == frames and m.frames_out + m.skipped == frames,
        lambda: f"{frames} frames in and answered; {service.status()}",
        timeout=120.0,
    )


def test_several_people_each_served_and_recorded_as_process_streaming(athletes, tmp_path, assets):
    """Three people interleaved in one stream at 60 Hz each, in real time: frames without a subject (the default
    person, serve's --mass/--height), "ben" (his height and mass from [people]) and "cy" (her own model file from
    [people], with the subject file calibrate writes beside it). Every frame of every person is answered; each
    person's recording (SESSION.mot, SESSION_ben.mot, SESSION_cy.mot) equals process --streaming on their trial within
    1e-6 deg; every angle, rep and pose message and each MQTT topic names its subject; the status has a line each."""
    (a, ta), (b, tb), (c, tc) = athletes
    cy_model = tmp_path / "models" / "cy.osim"
    cy_model.parent.mkdir()
    shutil.copy(assets.generic_model, cy_model)  # "her" model: the generic one under her name, for the comparison
    cy_model.with_suffix(".json").write_text(json.dumps({"mass": c.mass, "height": c.height, "floor_offset_m": 0.0}))
    settings = Settings().override(
        {
            "service": {"latest_wins": False},  # every frame solved: the recordings must hold every frame
            "people": {"ben": {"height": b.height, "mass": b.mass}, "cy": {"model": str(cy_model)}},
        }
    )
    record = tmp_path / "live" / "SESSION.mot"
    broker = Broker()
    broker.start()
    got: dict[str, list] = {"angles": [], "reps": [], "pose": [], "status": [], "mqtt": []}

    async def session():
        service, src, out, stop, serving = await start(
            settings, record=record, mqtt_port=broker.port, mass=a.mass, height=a.height
        )
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(out)
        subscribed = asyncio.Event()

        async def collect():
            while True:
                topic, payload = await sub.recv_multipart()
                got[topic.decode()].append(payload)

        async def collect_mqtt():
            import aiomqtt

            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.subscribe("kinestream/#")
                subscribed.set()
                async for message in client.messages:
                    got["mqtt"].append((str(message.topic), json.loads(message.payload)))

        tasks = [asyncio.create_task(collect()), asyncio.create_task(collect_mqtt())]
        await until(subscribed.is_set, "the MQTT subscriber's subscription")
        await until(lambda: got["status"], "a status on the ZeroMQ subscriber (then it is connected)")
        async with Source(src) as source:
            sent = await source.play({None: ta, "ben": tb, "cy": tc})
        await answered(service, sent)
        final_seen = service.metrics.frames_out
        await until(
            lambda: sum(1 for _, m in got["mqtt"] if "frames_out" in m and m["frames_out"] == final_seen) > 0,
            "a status sent after the last answer, on MQTT",
        )
        status = service.status()
        stop.set()
        final = await serving
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        sub.close(0)
        ctx.term()
        return sent, final, status, service

    try:
        sent, final, status, service = asyncio.run(session())
    finally:
        broker.stop()
    n = ta.n_frames + tb.n_frames + tc.n_frames
    assert sent == n and final["frames_in"] == n and final["frames_out"] == n and final["skipped"] == 0
    assert set(status["people"]) == {"subject", "ben", "cy"}  # [subject] name for the frames without one
    assert [status["people"][p]["frames_in"] for p in ("subject", "ben", "cy")] == [ta.n_frames] * 3
    assert not final["rejected"].get("too_many_people") and not final["rejected"].get("stage_error")
    assert "cy:" in service.metrics.line(status).splitlines()[3]  # the status line: totals, then one per person
    assert service.recordings() == [
        (record, record.with_name("SESSION_markers.trc")),
        (record.with_name("SESSION_ben.mot"), record.with_name("SESSION_ben_markers.trc")),
        (record.with_name("SESSION_cy.mot"), record.with_name("SESSION_cy_markers.trc")),
    ]

    # every message names its subject: angles, reps and pose on ZeroMQ; angles and reps on MQTT, a topic each
    angles = [decode_angles(p) for p in got["angles"]]
    for subject, table in (("subject", ta), ("ben", tb), ("cy", tc)):
        mine = [m["seq"] for m in angles if m["subject"] == subject]
        assert mine == list(range(table.n_frames)), subject
        topic = f"kinestream/{subject}/angles"
        assert [m["seq"] for t, m in got["mqtt"] if t == topic] == mine, final["mqtt"]
        assert all(m["subject"] == subject for t, m in got["mqtt"] if t == topic)
    reps = [decode_reps(p) for p in got["reps"]]
    assert {r["subject"] for r in reps} == {"subject", "ben", "cy"}
    for subject in ("subject", "ben", "cy"):
        assert [r["rep"] for r in reps if r["subject"] == subject] == [
            m["rep"] for t, m in got["mqtt"] if t == f"kinestream/{subject}/reps"
        ]
    poses = [decode_pose(p) for p in got["pose"]]
    assert {p["subject"] for p in poses} == {"subject", "ben", "cy"}

    # each recording equals process --streaming on that person's own trial, with their own height and mass
    for name, syn, model in (
        ("SESSION.mot", a, assets.generic_model),
        ("SESSION_ben.mot", b, assets.generic_model),
        ("SESSION_cy.mot", c, cy_model),
    ):
        offline = streaming_motion(syn.keypoints_trc, syn.mass, syn.height, tmp_path / "offline" / name, model=model)
        recorded = read_mot(record.with_name(name))
        assert recorded.values.shape == offline.values.shape, name
        np.testing.assert_allclose(recorded.time, offline.time, atol=1e-6)
        worst = rotational_worst(recorded, offline)
        print(f"{name}: live vs process --streaming, worst coordinate differs by {worst:.2e} deg")
        assert worst < 1e-6, name
        assert len(read_trc(record.with_name(name.replace(".mot", "_markers.trc"))).time) == syn_frames(syn)


def syn_frames(syn) -> int:
    return read_trc(syn.keypoints_trc).n_frames


def test_beyond_max_people_and_unsafe_subjects_are_refused_and_counted(athletes, tmp_path):
    """service.max_people = 2: a third subject's frames are refused (too_many_people) and counted while two are
    served; subjects unsafe as a file name or an MQTT topic level are refused (unsafe_subject) and counted; the
    service goes on serving the two, and writes no file for the refused."""
    (_, ta), (_, tb), (_, tc) = athletes
    settings = Settings().override({"service": {"max_people": 2, "latest_wins": False}})
    record = tmp_path / "SESSION.mot"
    unsafe = ["../up", "a/b", "x+y", "all#", ".", "tab\there", "z" * 65]

    async def session():
        service, src, _out, stop, serving = await start(settings, record=record)
        async with Source(src) as source:
            sent = await source.play({"ana": ta, "ben": tb, "cy": tc}, 0, 60, speed=2.0)
            for k, subject in enumerate(unsafe):
                xyz = ta.xyz[60 + k].astype(np.float32)
                payload = encode_keypoints(60 + k, float(ta.time[60 + k]), xyz, names=ta.names, subject=subject)
                await source.pub.send_multipart([TOPIC_KEYPOINTS, payload])
            sent += await source.play({"ana": ta, "ben": tb}, 60 + len(unsafe), 120, speed=2.0)
        served = sent - 60  # cy's 60 frames refused (and the unsafe ones, sent on their own)
        await until(
            lambda: sum(service.status()["rejected"].values()) == 60 + len(unsafe),
            lambda: f"every refusal counted; {service.status()['rejected']}",
        )
        await answered(service, served)
        status = service.status()
        stop.set()
        return await serving, status

    final, status = asyncio.run(session())
    assert final["rejected"]["too_many_people"] == 60
    assert final["rejected"]["unsafe_subject"] == len(unsafe)
    assert set(status["people"]) == {"ana", "ben"}
    assert final["frames_out"] == final["frames_in"] == 2 * 120 - 2 * len(unsafe)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mot") == [
        "SESSION.mot",  # the default person's, made as the service opens (empty: every frame named a subject)
        "SESSION_ana.mot",
        "SESSION_ben.mot",
    ]
    assert len(read_mot(tmp_path / "SESSION_ana.mot").time) > 0


def test_a_person_silent_too_long_is_closed_out_and_comes_back_afresh(athletes, tmp_path):
    """service.person_timeout_s = 0.5: ben stops sending while ana goes on; he is closed out (his recording
    complete: OpenSim reads it, the rep under way finished), and his clock may be forgotten. When he comes back he
    is a new person: a new recording under his name, the first one set aside as SESSION_ben.1.mot, not
    overwritten."""
    from kinestream.osim import opensim_module

    (_, ta), (_, tb), _ = athletes
    settings = Settings().override({"service": {"person_timeout_s": 0.5, "latest_wins": False}})
    record = tmp_path / "SESSION.mot"
    first = tmp_path / "SESSION_ben.mot"

    async def session():
        service, src, _out, stop, serving = await start(settings, record=record)
        async with Source(src) as source:
            sent = await source.play({"ana": ta, "ben": tb}, 0, 120)
            await answered(service, sent)
            # ana goes on in real time until ben is closed out (0.5 s: about 30 of her frames)
            sent += await source.play({"ana": ta}, 120, None, until=lambda: service.status()["closed_out"] > 0)
            await answered(service, sent)
            status = service.status()
            assert status["closed_out"] == 1 and set(status["people"]) == {"ana"}, status
            closed = read_mot(first)  # complete and readable while the service goes on
            assert opensim_module().TimeSeriesTable(str(first)).getNumRows() == len(closed.time) > 0
            text = first.read_text()
            sent += await source.play({"ben": tb}, 0, 60)  # ben again, his clock from the start: a new person
            await answered(service, sent)
            back = service.status()
        stop.set()
        return await serving, closed, text, back, service

    final, closed, text, back, service = asyncio.run(session())
    assert back["people"]["ben"]["frames_in"] == 60  # (ana, silent meanwhile, may be closed out by now)
    assert final["rejected"].get("time_backwards", 0) == 0  # a new person: his old clock was let go
    kept = tmp_path / "SESSION_ben.1.mot"
    assert kept.read_text() == text and len(read_mot(kept).time) == len(closed.time)
    assert 0 < len(read_mot(first).time) <= 60
    assert (tmp_path / "SESSION_ben_markers.1.trc").is_file()
    recordings = [m.name for m, _ in service.recordings()]
    assert recordings == ["SESSION.mot", "SESSION_ana.mot", "SESSION_ben.1.mot", "SESSION_ben.mot"]


def test_two_services_on_one_source_share_the_people_between_them(athletes, tmp_path):
    """service.people (serve --people) "0/2" and "1/2": two services subscribed to one source serve everyone
    between them, each person by exactly one of them (the share of their id's hash), every frame of each answered
    by it; the other service counts that person's frames as others', refusing none. Both record to one --record
    path: each person's recording is made once, by their service, and nothing is set aside."""
    from kinestream.live.people import share

    tables = {"ana": athletes[0][1], "ben": athletes[1][1], "cy": athletes[2][1], "dan": athletes[0][1]}
    shares = ["0/2", "1/2"]
    mine = [{name for name in tables if share(spec)(name)} for spec in shares]
    assert mine[0] | mine[1] == set(tables) and not mine[0] & mine[1] and mine[0] and mine[1]

    async def main():
        src = endpoints()[0]
        ctx = zmq.asyncio.Context()
        pub = ctx.socket(zmq.XPUB)
        pub.setsockopt(zmq.XPUB_VERBOSE, 1)  # each service's subscription, not only the first
        pub.bind(src)
        services, runs, stop = [], [], asyncio.Event()
        for spec in shares:
            # every frame solved: the counts are exact
            settings = Settings().override({"service": {"people": spec, "latest_wins": False}})
            service = Service(
                settings,
                input_endpoint=src,
                output_endpoint=endpoints()[1],
                mass=70.0,
                height=1.75,
                record=tmp_path / "SESSION.mot",
            )
            ready = asyncio.Event()
            runs.append(asyncio.create_task(service.run(stop, ready)))
            await ready.wait()
            services.append(service)
        for _ in shares:
            assert await asyncio.wait_for(pub.recv(), 30) == b"\x01keypoints"
        frames = min(t.n_frames for t in tables.values())
        wired = {name: wire_frames(table) for name, table in tables.items()}
        began, rate = time.perf_counter(), tables["ana"].rate
        for k in range(frames):
            delay = began + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the camera's pace, not a wait for a condition
            for name, (names, xyz) in wired.items():
                t = float(tables[name].time[k])
                await pub.send_multipart([TOPIC_KEYPOINTS, encode_keypoints(k, t, xyz[k], names=names, subject=name)])
        for service, theirs in zip(services, mine, strict=True):
            m = service.metrics
            want = len(theirs) * frames
            await until(
                lambda m=m, want=want: m.frames_in == want and m.frames_out == want,
                lambda service=service: f"{service.status()}",
                timeout=180.0,
            )
            await until(lambda m=m, want=want: m.others == len(tables) * frames - want, lambda m=m: f"{m.others}")
            assert set(service.status()["people"]) == theirs and not m.rejected
        stop.set()
        await asyncio.gather(*runs)
        pub.close(0)
        ctx.term()

    asyncio.run(main())
    recorded = sorted(p.name for p in tmp_path.glob("*.mot"))
    # the default person (frames without a subject: none here) is recorded by the one service whose share they are
    assert recorded == sorted(["SESSION.mot", *(f"SESSION_{name}.mot" for name in tables)])
    for name in tables:  # every frame of each, recorded by their service
        assert len(read_mot(tmp_path / f"SESSION_{name}.mot").time) == min(t.n_frames for t in tables.values())


def test_a_hostile_person_costs_the_others_nothing(athletes, tmp_path, assets):
    """Two athletes and mallory in one stream. Mallory sends ten frames for each of theirs (a flood beyond
    service.max_rate_hz), and those frames are hostile: coordinates kilometres out, all NaN, teleporting,
    time going back and jumping ahead, payloads cut short, a subject that is no string. Ana's and ben's every
    frame is answered, and their recordings equal process --streaming on their trials within 1e-6 deg, as if
    mallory had not been there; mallory's frames are refused and counted (over_rate, the decoder's reasons) or
    served as the nonsense they are; the service stays healthy."""
    (a, ta), (b, tb), _ = athletes
    settings = Settings().override(
        {
            # every frame solved: the recordings must hold every frame; mallory offers 600 a second
            "service": {"latest_wins": False, "max_rate_hz": 120.0},
            "people": {"ana": {"height": a.height, "mass": a.mass}, "ben": {"height": b.height, "mass": b.mass}},
        }
    )
    record = tmp_path / "live" / "SESSION.mot"
    rng = np.random.default_rng(7)
    names, xyz = wire_frames(ta)

    def mallory(k: int, j: int) -> bytes:
        t = k / 60.0 + j / 600.0
        kind = (k * 10 + j) % 8
        pose = xyz[k % len(xyz)]
        if kind == 0:
            return encode_keypoints(k, t, pose * 1e4, names=names, subject="mallory")  # kilometres out
        if kind == 1:
            return encode_keypoints(k, t, np.full_like(pose, np.nan), names=names, subject="mallory")
        if kind == 2:
            return encode_keypoints(k, t, pose + rng.normal(scale=3.0, size=pose.shape), names=names, subject="mallory")
        if kind == 3:
            return encode_keypoints(k, t - 5.0, pose, names=names, subject="mallory")  # back in time
        if kind == 4:
            return encode_keypoints(k, t + 7200.0, pose, names=names, subject="mallory")  # two hours ahead
        if kind == 5:
            return encode_keypoints(k, t, pose, names=names, subject="mallory")[:-7]  # cut short
        if kind == 6:
            return msgpack.packb({"v": 1, "seq": k, "t": t, "subject": ["mallory"]})  # a subject that is no string
        return encode_keypoints(k, t, pose, names=names, subject="mallory")

    async def session():
        service, src, out, stop, serving = await start(settings, record=record, mass=a.mass, height=a.height)
        async with Source(src) as source:
            wired = {"ana": (ta, *wire_frames(ta)), "ben": (tb, *wire_frames(tb))}
            frames = min(ta.n_frames, tb.n_frames)
            began = time.perf_counter()
            for k in range(frames):
                delay = began + k / 60.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # the camera's pace, not a wait for a condition
                for j in range(10):
                    await source.pub.send_multipart([TOPIC_KEYPOINTS, mallory(k, j)])
                for subject, (table, n, x) in wired.items():
                    payload = encode_keypoints(k, float(table.time[k]), x[k], names=n, subject=subject)
                    await source.pub.send_multipart([TOPIC_KEYPOINTS, payload])
        people = lambda: service.status()["people"]  # noqa: E731
        await until(
            lambda: all(people().get(s, {}).get("frames_out") == frames for s in ("ana", "ben")),
            lambda: f"ana's and ben's {frames} frames answered: {service.status()}",
            timeout=180.0,
        )
        taking = time.perf_counter() - began  # the service took frames for at most this long
        status = service.status()
        stop.set()
        final = await serving
        return frames, status, final, taking

    frames, status, final, taking = asyncio.run(session())
    assert final["healthy"], final
    offered = 10 * frames
    refused = final["rejected"]
    # of what the decoder took, at most 120 a second (and a second's worth at once) reached mallory's pipeline (on a
    # machine slow enough that the service takes them slower than that, none is over the rate: RateCap's own test)
    assert status["people"]["mallory"]["frames_in"] <= 120 * (taking + 1)
    mallory_in = status["people"].get("mallory", {}).get("frames_in", 0)
    decoder = sum(v for r, v in refused.items() if r not in ("over_rate", "stage_dropped", "stage_error"))
    assert mallory_in + refused.get("over_rate", 0) + decoder == offered, (mallory_in, refused)
    for name, syn in (("ana", a), ("ben", b)):
        assert status["people"][name]["frames_in"] == frames and status["people"][name]["skipped"] == 0
        offline = streaming_motion(syn.keypoints_trc, syn.mass, syn.height, tmp_path / "offline" / name)
        recorded = read_mot(record.with_name(f"SESSION_{name}.mot"))
        assert recorded.values.shape == offline.values.shape, name
        assert rotational_worst(recorded, offline) < 1e-6, name


def test_serve_calibrate_calibrates_each_newcomer_from_their_own_still_pose(athletes, tmp_path):
    """With a calibration folder (serve --calibrate), ben and cy, new in the stream with only their height and
    mass in [people], are each calibrated from their own standing window while they stand: their frames are
    counted, not answered, until their own model is scaled (in another process) and written to
    <folder>/<subject>/scaled.osim with its subject file; from then on every frame of theirs is answered on it
    and recorded. Each model is scaled to its own body: cy's thighs are longer than ben's, by about the ratio of
    the sizes they were made with (1.08 / 0.92 = 1.17), and on either side of the generic model's."""
    from kinestream.assets import get_assets
    from kinestream.osim import opensim_module

    (_, _), (b, tb), (c, tc) = athletes
    settings = Settings().override(
        {
            "service": {"latest_wins": False},  # every frame solved: the counts are exact
            "people": {"ben": {"height": b.height, "mass": b.mass}, "cy": {"height": c.height, "mass": c.mass}},
        }
    )
    folder = tmp_path / "calibration"
    record = tmp_path / "live" / "SESSION.mot"
    tables = {"ben": tb, "cy": tc}
    standing = int(min(b.standing[1], c.standing[1]) * 60) - 1

    async def session():
        src, out = endpoints()
        service = Service(settings, input_endpoint=src, output_endpoint=out, record=record, calibrate=folder)
        stop, ready = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(service.run(stop, ready))
        await ready.wait()
        seen_calibrating = set()

        def calibrated() -> bool:
            people = service.status()["people"]
            seen_calibrating.update(n for n, p in people.items() if "calibrating" in p)
            return all(n in people and "calibrating" not in people[n] for n in tables)

        async with Source(src) as source:
            wired = {name: wire_frames(table) for name, table in tables.items()}
            began, k = time.perf_counter(), 0
            while not calibrated():  # they stand (the trials' standing phase, over and over) until calibrated
                assert time.perf_counter() - began < 120, f"not calibrated in 120 s: {service.status()['people']}"
                delay = began + k / 60.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # the camera's pace, not a wait for a condition
                for name, (names, xyz) in wired.items():
                    payload = encode_keypoints(k, k / 60.0, xyz[k % standing], names=names, subject=name)
                    await source.pub.send_multipart([TOPIC_KEYPOINTS, payload])
                k += 1
            before = {n: service.status()["people"][n]["frames_in"] for n in tables}
            frames = min(t.n_frames for t in tables.values())
            restart = k
            for j in range(frames):  # then they squat, their time going on
                delay = began + (restart + j) / 60.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                for name, (names, xyz) in wired.items():
                    t = (restart + j) / 60.0
                    payload = encode_keypoints(restart + j, t, xyz[j], names=names, subject=name)
                    await source.pub.send_multipart([TOPIC_KEYPOINTS, payload])
        await until(
            lambda: all(service.status()["people"][n]["frames_in"] - before[n] == frames for n in tables),
            lambda: f"{frames} frames in after the calibration: {service.status()['people']}",
        )
        await until(
            lambda: all(p["frames_out"] + p["skipped"] == p["frames_in"] for p in service.status()["people"].values()),
            lambda: f"every frame answered: {service.status()['people']}",
            timeout=120.0,
        )
        stop.set()
        return await serving, frames, seen_calibrating  # the final status: after the drain

    status, frames, seen_calibrating = asyncio.run(session())
    assert seen_calibrating == set(tables)  # each was calibrating first
    osim = opensim_module()
    generic = osim.Model(str(get_assets().generic_model))

    def thigh(model) -> float:
        knee = model.getJointSet().get("walker_knee_r")
        return float(np.linalg.norm(knee.get_frames(0).get_translation().to_numpy()))

    ratio = {}
    for name, syn in (("ben", b), ("cy", c)):
        model = folder / name / "scaled.osim"
        subject = json.loads(model.with_suffix(".json").read_text())
        assert subject["subject"] == name and subject["height"] == pytest.approx(syn.height)
        ratio[name] = thigh(osim.Model(str(model))) / thigh(generic)
        # answered from their calibration on: at least the squat's frames, all recorded
        assert status["people"][name]["frames_out"] >= frames
        assert len(read_mot(record.with_name(f"SESSION_{name}.mot")).time) == status["people"][name]["frames_out"]
    print(f"\ncalibrated thighs: ben x{ratio['ben']:.3f}, cy x{ratio['cy']:.3f} of the generic model's")
    assert ratio["ben"] < 1.0 < ratio["cy"] and 1.1 < ratio["cy"] / ratio["ben"] < 1.25


def test_the_rate_cap_lets_a_camera_through_and_holds_a_flood_back():
    """service.max_rate_hz by arrival: a 60 Hz camera is never held back, nor its backlog of a second after a
    stall; a sender flooding at 600 a second gets 120 a second through (and a second's worth at once)."""
    from kinestream.live.people import RateCap

    cap = RateCap(120.0)
    second = 1_000_000_000
    camera = [cap.admits("ana", k * second // 60) for k in range(600)]  # ten seconds at 60 Hz
    backlog = [cap.admits("ana", 11 * second) for _ in range(60)]  # a second of frames, taken at once after a stall
    flood = sum(cap.admits("mallory", k * second // 600) for k in range(6000))  # ten seconds at 600 a second
    assert all(camera) and all(backlog)
    assert 120 * 10 <= flood <= 120 * 10 + 120 + 1
    cap.forget("mallory")
    assert cap.admits("mallory", 10 * second)  # forgotten (closed out): a fresh start
