"""100,000 hostile messages over ZeroMQ into a running `kinestream serve`, then a real trial.

The service runs as its own process, as a user starts it; the messages come
from tests/hostile.py, each built to break one rule of the protocol (or to be
odd but valid), so the count each rejection reason must reach is known in
advance. Afterwards the service must be alive, have counted every message by
its reason, hold no more memory or file descriptors than bounded queues
explain, and turn a valid trial into the same angles as the offline streaming
pipeline.
"""

import asyncio
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio

from kinestream.assets import get_assets
from kinestream.config import load_config
from kinestream.pipeline import process
from kinestream.protocol import decode_angles
from kinestream.replay import replay
from kinestream.synth import synthesize
from kinestream.trc import read_trc

from hostile import ACCEPTED, TRANSPORT_LIMIT, Tally, hostile_messages
from served import Served

MESSAGES = 100_000
# Memory the service may gain over the flood. Its queues are bounded: 1000
# messages in ZeroMQ's receive queue, caches of 16 name lists and 64 subject
# clocks, 2000 latency samples. The flood's messages average ~100 bytes with
# oversize ones up to 256 kB, so what is legitimately held is a few MB plus
# allocator slack; holding on to every message would add 100,000 x ~0.3 kB
# = 30 MB and more (and every oversize one, 291 x 160 kB = 45 MB).
RSS_GROWTH_MB = 25.0


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("fuzz"), seconds=6.0, noise_mm=5.0, seed=4)


def wait_for(served, done, what, timeout=240.0):
    deadline = time.monotonic() + timeout
    while True:
        status = served.status()
        if done(status):
            return status
        assert time.monotonic() < deadline, f"{what}: {status}"
        time.sleep(0.2)


def answered(s):
    return s["frames_out"] + s["skipped"] == s["frames_in"]


async def flood(endpoint, messages, then=()):
    """Bind like a keypoint source, wait for the service's subscription, send everything (no high-water mark:
    nothing is dropped on the way), then the ``then`` messages; returns when all is delivered."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 300_000)  # closing waits until the service has taken every message
    sock.bind(endpoint)
    assert (await asyncio.wait_for(sock.recv(), 20))[0] == 1  # the service subscribed
    sent = 0
    for parts, _expect in messages:
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
    config.write_text("[service]\nlatest_wins = false\n")  # every frame solved: the trial compares exactly
    served = Served(tmp_path, "--config", str(config), "--mass", str(trial.mass), "--height", str(trial.height))
    table = read_trc(trial.keypoints_trc)
    try:
        served.status()
        warm = asyncio.run(replay(table.frames(0, 120), served.src, wait_subscriber=10.0))
        base = wait_for(served, lambda s: s["frames_in"] == warm and answered(s), "warm-up")
        rss0, fds0 = served.rss_mb(), served.fds()

        tally = Tally()
        pose = table.xyz[60].astype(np.float32)
        from kinestream.ingest import BODY_25

        full = np.zeros((25, 3), np.float32)
        full[[BODY_25.index(n) for n in table.names]] = np.nan_to_num(pose)
        messages = hostile_messages(seed=1, n=MESSAGES, pose=full, t0=1000.0, tally=tally)
        # last, messages over the transport limit: ZeroMQ drops them (and the link) before the decoder
        over = [[b"keypoints", b"\x00" * (TRANSPORT_LIMIT + 1)]] * 3
        t0 = time.monotonic()
        sent = asyncio.run(flood(served.src, messages, then=over))
        total = warm + MESSAGES
        status = wait_for(served, lambda s: s["frames_in"] + sum(s["rejected"].values()) >= total, "accounting")
        elapsed = time.monotonic() - t0
        status = wait_for(served, answered, "the accepted frames answered")
        rss1, fds1 = served.rss_mb(), served.fds()
        print(f"\n{sent} hostile messages in {elapsed:.1f} s ({sent / elapsed:.0f}/s); expected {tally.expected}; "
              f"service RSS {rss0:.1f} -> {rss1:.1f} MB, fds {fds0} -> {fds1}")

        assert sent == MESSAGES
        rejected = {k: v for k, v in status["rejected"].items() if v}
        expected = {k: v for k, v in tally.expected.items() if k != ACCEPTED}
        assert rejected == expected  # every bad message counted once, by the reason it was built for
        assert status["frames_in"] == warm + tally.expected[ACCEPTED]
        assert status["resets"] == base["resets"] + tally.restarts
        assert "stage_error" not in rejected  # no stage raised, IK included
        assert rss1 - rss0 < RSS_GROWTH_MB
        assert abs(fds1 - fds0) <= 2

        after = served.status()
        assert after["rejected"] == status["rejected"]  # the ones over the transport limit never got this far

        # a real trial right after: the same angles as the offline streaming pipeline
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
    offline = process(trial.keypoints_trc, trial.mass, trial.height, tmp_path / "offline", load_config(),
                      plot=False, streaming=True, model=get_assets().generic_model)
    live_t = np.array([m["t"] for m in got])
    np.testing.assert_allclose(live_t, offline.motion.time, atol=1e-6)
    coords = got[0]["coords"]
    worst = {}
    for name in ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l", "ankle_angle_r", "pelvis_tilt"):
        live = np.array([m["q"][coords.index(name)] for m in got])
        worst[name] = float(np.nanmax(np.abs(live - offline.motion.get(name))))
    print("after the flood, live vs process --streaming, worst difference (deg):", worst)
    assert max(worst.values()) < 0.1
