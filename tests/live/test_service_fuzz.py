"""100,000 hostile messages over ZeroMQ into a running `kinestream serve`, then a real trial; and time attacks,
each followed by a real trial.

The service runs as its own process, as a user starts it; the messages come
from tests/hostile.py, each built to break one rule of the protocol (or to be
odd but valid, or to restart the source's clock), so the count each rejection
reason must reach, and the resets, are known in advance. Afterwards the
service must be alive, have counted every message by its reason, hold no more
memory or file descriptors than bounded queues explain, and turn a valid trial
into the same angles as the offline streaming pipeline.

The flood carries the time attacks too (times at 2**48, 2**52, 1e300 and
integers near 2**63; steps just under and over every threshold; 64 throwaway
subjects; bursts at 900 Hz), with one trial at its end. The second test runs
a few of them on their own, each followed by a short trial that must equal
``process --streaming`` on it.
"""

import asyncio
import time
from types import SimpleNamespace

import numpy as np
import pytest
import zmq
import zmq.asyncio

from hostile import ACCEPTED, RESTART, TRANSPORT_LIMIT, Hostile, Tally, hostile_messages
from kinestream.files.trc import read_trc, write_trc
from kinestream.ingest import BODY_25
from kinestream.live.messages import decode_angles
from kinestream.live.replay import replay
from kinestream.synth import synthesize
from served import Served
from streamed import streaming_motion

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out

MESSAGES = 100_000
# Memory the service may gain over the flood. Its queues are bounded: 1000
# messages in ZeroMQ's receive queue, caches of 16 name lists and 64 subject
# clocks, 2000 latency samples. The flood's messages average ~100 bytes with
# oversize ones up to 256 kB, so what is legitimately held is a few MB plus
# allocator slack; holding on to every message would add 100,000 x ~0.3 kB
# = 30 MB and more (and every oversize one, 291 x 160 kB = 45 MB).
RSS_GROWTH_MB = 25.0


@pytest.fixture(scope="module")
def trial(synth_trial):
    return synth_trial(seconds=6.0, noise_mm=5.0, seed=4)


def wait_for(served, done, what, timeout=240.0):
    deadline = time.monotonic() + timeout
    while True:
        status = served.status()
        if done(status):
            return status
        assert time.monotonic() < deadline, f"{what}: {status}"
        time.sleep(0.2)


# Rejections the service counts for frames it has already taken in (frames_in): a frame the augmenter refused
# or a stage raised on. They should stay 0; when they do not, the frame is never answered.
TAKEN_IN = ("stage_dropped", "stage_error", "reps_error", "record_error", "publish_error")


def answered(s):
    return s["frames_out"] + s["skipped"] == s["frames_in"]


def answered_or_lost(s):
    """Every frame answered but those a stage refused (stage_dropped, stage_error: never answered, so waiting
    for them would never end; the counts then show them)."""
    lost = sum(s["rejected"].get(k, 0) for k in ("stage_dropped", "stage_error"))
    return s["frames_out"] + s["skipped"] + lost >= s["frames_in"]


def counted(s):
    """Messages the service has taken: frames in plus rejections of messages that never became frames."""
    return s["frames_in"] + sum(v for k, v in s["rejected"].items() if k not in TAKEN_IN)


def body25(table, k):
    """Frame ``k`` of ``table`` as a BODY_25 pose (zeros for what it lacks)."""
    full = np.zeros((25, 3), np.float32)
    full[[BODY_25.index(n) for n in table.names]] = np.nan_to_num(table.xyz[k].astype(np.float32))
    return full


def live_vs_offline(got, offline):
    """The worst difference (deg) between the angles a live trial got and ``process --streaming``'s, by
    coordinate; the times must be the same."""
    live_t = np.array([m["t"] for m in got])
    np.testing.assert_allclose(live_t, offline.time, atol=1e-6)
    coords = got[0]["coords"]
    worst = {}
    for name in ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l", "ankle_angle_r", "pelvis_tilt"):
        live = np.array([m["q"][coords.index(name)] for m in got])
        worst[name] = float(np.nanmax(np.abs(live - offline.get(name))))
    return worst


async def flood(endpoint, messages, then=()):
    """Bind like a keypoint source, wait for the service's subscription, send everything (no high-water mark:
    nothing is dropped on the way), then the ``then`` messages; returns when all is delivered. An item that
    is a number instead of ``(parts, expect)`` is a pause of that many seconds (the source falls silent)."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 300_000)  # closing waits until the service has taken every message
    sock.bind(endpoint)
    assert (await asyncio.wait_for(sock.recv(), 20))[0] == 1  # the service subscribed
    sent = 0
    for item in messages:
        if isinstance(item, (int, float)):
            await asyncio.sleep(item)
            continue
        parts, _expect = item
        await sock.send_multipart(parts)
        sent += 1
        if sent % 2000 == 0:
            await asyncio.sleep(0)
    for parts in then:
        await sock.send_multipart(parts)
    sock.close()
    ctx.term()
    return sent


def test_a_flood_of_hostile_messages_is_counted_and_changes_nothing(trial, tmp_path):
    config = tmp_path / "fuzz.toml"
    config.write_text("[service]\nlatest_wins = false\nmax_people = 1\n")  # every frame solved: the trial compares
    # exactly; the one person is the stream's own (frames without a subject), every other subject is refused
    served = Served(tmp_path, "--config", str(config), "--mass", str(trial.mass), "--height", str(trial.height))
    table = read_trc(trial.keypoints_trc)
    try:
        served.status()
        warm = asyncio.run(replay(table.frames(0, 120), served.src, wait_subscriber=10.0))
        base = wait_for(served, lambda s: s["frames_in"] == warm and answered(s), "warm-up")
        rss0, fds0 = served.rss_mb(), served.fds()

        tally = Tally()
        messages = hostile_messages(seed=1, n=MESSAGES, pose=body25(table, 60), t0=1000.0, tally=tally)
        # last, messages over the transport limit: ZeroMQ drops them (and the link) before the decoder
        over = [[b"keypoints", b"\x00" * (TRANSPORT_LIMIT + 1)]] * 3
        t0 = time.monotonic()
        sent = asyncio.run(flood(served.src, messages, then=over))
        total = warm + MESSAGES
        status = wait_for(served, lambda s: counted(s) >= total, "accounting")
        elapsed = time.monotonic() - t0
        status = wait_for(served, answered_or_lost, "the accepted frames answered")
        rss1, fds1 = served.rss_mb(), served.fds()
        rejected = {k: v for k, v in status["rejected"].items() if v}
        print(
            f"\n{sent} hostile messages in {elapsed:.1f} s ({sent / elapsed:.0f}/s); expected "
            f"{dict(sorted(tally.expected.items()))}, {tally.restarts} restarts; counted "
            f"{dict(sorted(rejected.items()))}, frames in {status['frames_in'] - warm}, resets "
            f"{status['resets'] - base['resets']}; service RSS {rss0:.1f} -> {rss1:.1f} MB, fds {fds0} -> {fds1}"
        )

        assert sent == MESSAGES
        assert rejected == tally.rejected()  # every bad message counted once, by the reason it was built for
        assert status["frames_in"] == warm + tally.expected[ACCEPTED]
        assert status["resets"] == base["resets"] + tally.restarts
        assert answered(status)
        assert "stage_error" not in rejected  # no stage raised, IK included
        assert rss1 - rss0 < RSS_GROWTH_MB
        assert abs(fds1 - fds0) <= 2

        after = served.status()
        assert after["rejected"] == status["rejected"]  # the ones over the transport limit never got this far

        # a real trial right after: the same angles as the offline streaming pipeline. Its first frame is far
        # back of where the flood left the clock: a restart at once, and every frame after it on time
        assert [tally.clock.offer(t) for t in table.time] == [RESTART] + [ACCEPTED] * (table.n_frames - 1)
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"angles")
        sub.connect(served.out)
        time.sleep(0.3)
        frames = asyncio.run(replay(table, served.src, wait_subscriber=10.0))
        final = wait_for(served, lambda s: s["frames_in"] == after["frames_in"] + frames and answered(s), "trial")
        got = []
        while sub.poll(500):
            got.append(decode_angles(sub.recv_multipart()[1]))
        sub.close(0)
        ctx.term()
        assert final["resets"] == after["resets"] + 1  # the trial's clock starting over is a new session
    finally:
        code, _ = served.stop()
    assert code == 0

    assert len(got) == frames == table.n_frames
    offline = streaming_motion(trial.keypoints_trc, trial.mass, trial.height, tmp_path / "offline")
    worst = live_vs_offline(got, offline)
    print("after the flood, live vs process --streaming, worst difference (deg):", worst)
    assert max(worst.values()) < 0.1


# --------------------------------------------------------------------------- time attacks, each then a trial

SHORT_S = 3.0  # seconds of trial after each attack


@pytest.fixture(scope="module")
def short_trial(tmp_path_factory):
    """3 s of a synthetic trial (standing, then into a squat) and process --streaming's angles for it."""
    out = tmp_path_factory.mktemp("short")
    synth = synthesize(out, seconds=5.0, noise_mm=5.0, seed=7)
    table = read_trc(synth.keypoints_trc)
    start = int(round(1.5 * table.rate))
    path = write_trc(out / "short.trc", table.frames(start, start + int(round(SHORT_S * table.rate))))
    offline = streaming_motion(path, synth.mass, synth.height, out / "offline")
    return SimpleNamespace(path=path, table=read_trc(path), mass=synth.mass, height=synth.height, offline=offline)


def huge_times(h):
    """Times no clock may hold, floats and msgpack integers, between frames on time; then 1e10 s, reached from
    a restart just under it and passed, and -1e10 s, reached and passed."""
    from hostile import FAR_FLOATS, FAR_INTS, JUST_OVER

    for t in FAR_FLOATS + FAR_INTS + JUST_OVER:
        yield h.valid()
        yield h.at(t, "time_implausible")
    yield from h.edge_ahead()
    yield from h.edge_behind()


def thresholds(h):
    """Just over and exactly max_jump_s ahead; back by 1 s and just over; runs of 29 (ended by a frame on time)
    and of 30 (a restart), back and ahead."""
    yield from h.jump_edge()
    yield from h.back_edge()
    yield from h.back_run(restart=False)
    yield from h.back_run(restart=True)
    yield from h.jump_run(restart=False)
    yield from h.jump_run(restart=True)


def burst(h):
    """A session that starts with 16 frames at 900 Hz, then 20 at 60 Hz (too few to measure the rate again)."""
    yield from h.burst(session_start=True, then=20)


def hold(h):
    """With max_people = 1, another subject is refused (too_many_people) however long the stream's own subject
    has been silent (1 s, 3 s): frames without a subject are the default person, never closed out for silence,
    and the stream's own subject goes on, on its own clock."""
    for _ in range(5):
        yield h.valid()
    yield 1.0
    yield h.of("latecomer", 50.0, "too_many_people")
    yield h.valid()
    yield 3.0
    yield h.of("newcomer", 50.0, "too_many_people")
    for _ in range(5):
        yield h.valid()


def subjects_63(h):
    """63 throwaway subjects then a frame 0.5 s back (refused); 63 more, then the trial."""
    yield from h.throwaway_subjects(63, then="back")
    yield from h.throwaway_subjects(63, then="none")


def subjects_64(h):
    """64 throwaway subjects (as many as the decoder keeps clocks for) then a frame 0.5 s back (refused, as
    after 63); 64 more, then the trial (a restart, as after 63)."""
    yield from h.throwaway_subjects(64, then="back")
    yield from h.throwaway_subjects(64, then="none")


ATTACKS = [huge_times, thresholds, burst, hold, subjects_63, subjects_64]


def test_time_attacks_each_followed_by_a_trial_equal_offline(short_trial, tmp_path):
    """Each time attack, then a short trial replayed: every message counted by the reason it was built for,
    every restart a reset, the trial answered in full and its angles those of process --streaming."""
    config = tmp_path / "fuzz.toml"
    config.write_text("[service]\nlatest_wins = false\nmax_people = 1\n")  # other subjects refused, as above
    table = short_trial.table
    served = Served(
        tmp_path, "--config", str(config), "--mass", str(short_trial.mass), "--height", str(short_trial.height)
    )
    h = Hostile(seed=2, pose=body25(table, 0), t0=900.0)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"angles")
    sub.connect(served.out)

    def angles():
        got = []
        while sub.poll(500):
            got.append(decode_angles(sub.recv_multipart()[1]))
        return got

    def delta(after, before):
        keys = set(after["rejected"]) | set(before["rejected"])
        return {
            k: after["rejected"].get(k, 0) - before["rejected"].get(k, 0)
            for k in keys
            if after["rejected"].get(k, 0) != before["rejected"].get(k, 0)
        }

    problems = []
    try:
        s0 = served.status()
        for i, attack in enumerate(ATTACKS):
            name = attack.__name__
            tally = Tally()
            items = [h.at(1000.0 + 100.0 * i, ACCEPTED)] + list(attack(h))  # labelled before anything is sent
            messages = [item for item in items if not isinstance(item, (int, float))]
            for _parts, label in messages:
                tally.add(label)
            asyncio.run(flood(served.src, items))
            s1 = wait_for(
                served,
                lambda s, s0=s0, messages=messages: counted(s) >= counted(s0) + len(messages),
                f"{name}: accounting",
                60,
            )
            s1 = wait_for(served, answered_or_lost, f"{name}: answered", 60)
            angles()  # the attack's own frames

            labels = [h.clock.offer(t) for t in table.time]  # the trial starts far back of where the attack left
            assert labels == [RESTART] + [ACCEPTED] * (table.n_frames - 1), f"{name}: the trial would not restart"
            for label in labels:
                tally.add(label)
            frames = asyncio.run(replay(table, served.src, rate="max", wait_subscriber=10.0))
            s2 = wait_for(
                served,
                lambda s, s1=s1, frames=frames: counted(s) >= counted(s1) + frames and answered_or_lost(s),
                f"{name}: trial",
                60,
            )
            got = angles()

            counts = {
                "rejected": delta(s2, s0),
                "frames_in": s2["frames_in"] - s0["frames_in"],
                "resets": s2["resets"] - s0["resets"],
            }
            want = {"rejected": tally.rejected(), "frames_in": tally.expected[ACCEPTED], "resets": tally.restarts}
            worst = live_vs_offline(got, short_trial.offline) if len(got) == table.n_frames else None
            print(
                f"\n{name}: {len(messages)} messages then a {table.n_frames}-frame trial; expected {want}; "
                f"counted {counts}; trial angles {len(got)}, worst difference (deg) "
                f"{max(worst.values()) if worst else None}"
            )
            if counts != want:
                problems.append(f"{name}: counted {counts}, expected {want}")
            if not answered(s2):
                problems.append(
                    f"{name}: frames in {s2['frames_in']}, out {s2['frames_out']}, skipped "
                    f"{s2['skipped']}: not every frame answered"
                )
            if worst is None:
                problems.append(f"{name}: the trial got {len(got)} angle messages of {table.n_frames}")
            elif max(worst.values()) >= 0.1:
                problems.append(f"{name}: the trial's angles differ from process --streaming by {worst}")
            s0 = s2
    finally:
        sub.close(0)
        ctx.term()
        code, _ = served.stop()
    assert code == 0
    assert not problems, "\n".join(problems)
