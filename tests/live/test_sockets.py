"""The service's sockets against peers that abuse them: subscriptions without end, oversized subscription frames, a
flood of frames. Real ZeroMQ sockets, the real service in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np
import zmq
import zmq.asyncio

from broker import free_port, until, wait_until
from kinestream.live.protocol import encode_keypoints
from kinestream.live.service import SUBSCRIPTION_MAX_BYTES, Service
from kinestream.settings import Settings


def keypoints(seq: int, t: float) -> bytes:
    rng = np.random.default_rng(seq)
    return encode_keypoints(seq, t, rng.normal(0.0, 0.3, (25, 3)) + [0.0, 1.0, 0.0])


async def serving(settings=None):
    src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    service = Service(settings or Settings(), input_endpoint=src, output_endpoint=out, mass=70.0, height=1.75)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    return service, stop, task, out


def test_subscriptions_cost_the_same_however_many_a_peer_holds():
    """20,000 topics subscribed, then ``po`` (which covers ``pose``) on the same connection, so they reach the
    service first: it holds nothing but the prefixes of ``pose`` (at most five), where a set of every topic grew
    with each and was scanned on every toggle. Toggling them changes nothing but ``pose``."""

    async def main():
        service, stop, task, out = await serving()
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SNDHWM, 0)  # a SUB drops subscriptions beyond its queue: every one is sent here
        sub.connect(out)
        for k in range(20_000):
            sub.setsockopt(zmq.SUBSCRIBE, f"topic-{k}".encode())
        sub.setsockopt(zmq.SUBSCRIBE, b"po")
        sub.setsockopt(zmq.SUBSCRIBE, b"status")
        await until(lambda: service.status()["pose"]["subscribed"], "the pose subscription seen")
        held = set(service._pose.topics)
        for k in range(0, 20_000, 2):
            sub.setsockopt(zmq.UNSUBSCRIBE, f"topic-{k}".encode())
        sub.setsockopt(zmq.UNSUBSCRIBE, b"po")
        await until(lambda: not service.status()["pose"]["subscribed"], "the pose unsubscription seen")
        after = set(service._pose.topics)
        alive = await sub.poll(10_000)
        stop.set()
        await task
        sub.close(0)
        ctx.term()
        return held, after, alive

    held, after, alive = asyncio.run(main())
    assert held == {b"po"} and after == set()
    assert alive, "the status topic still published"


def zmtp_greeting() -> bytes:
    """A ZMTP 3.0 greeting (RFC 23): signature, version 3.0, the NULL mechanism, as a client."""
    return b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def zmtp_ready(socket_type: bytes) -> bytes:
    body = bytes([5]) + b"READY" + bytes([11]) + b"Socket-Type" + len(socket_type).to_bytes(4, "big") + socket_type
    return bytes([0x04, len(body)]) + body


def zmtp_message(body: bytes) -> bytes:
    return bytes([0x02]) + len(body).to_bytes(8, "big") + body


def test_a_subscription_frame_too_long_for_a_topic_drops_its_peer():
    """A raw ZMTP peer (no ZeroMQ library: one would keep the topic itself) subscribes with a 1 MB topic: the
    service hangs up on it before buffering the frame (a 200 MB one would cost 200 MB; and ZeroMQ's subscription
    tree, one level per byte, overflows the stack when it is freed). A subscriber of the real topics keeps its
    connection and gets the status."""
    assert SUBSCRIPTION_MAX_BYTES <= 1024

    async def main():
        service, stop, task, out = await serving()
        host, port = out[len("tcp://") :].rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(zmtp_greeting())
        await reader.readexactly(64)  # the service's greeting
        writer.write(zmtp_ready(b"SUB"))
        await writer.drain()
        writer.write(zmtp_message(b"\x01" + b"s" * 1_000_000))
        hung_up = asyncio.ensure_future(reader.read())  # everything until the service closes the connection
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await until(hung_up.done, "the service hanging up on the oversized subscriber")
        ctx = zmq.asyncio.Context()
        good = ctx.socket(zmq.SUB)
        good.setsockopt(zmq.SUBSCRIBE, b"status")
        good.connect(out)
        alive = await good.poll(10_000)
        writer.close()
        stop.set()
        final = await task
        good.close(0)
        ctx.term()
        return alive, final

    alive, final = asyncio.run(main())
    assert alive, "the status topic still reaches a proper subscriber"
    assert final["frames_in"] == 0


def test_a_turn_of_the_receive_loop_stops_when_its_time_is_spent():
    """A flood of frames already queued is taken a budget at a time, so the status and subscription tasks run
    between turns: with no time to spend, each turn takes one frame; all of them are taken in the end."""

    async def main():
        settings = Settings()
        endpoint = f"inproc://flood-{free_port()}"
        service = Service(settings, input_endpoint=endpoint, output_endpoint=f"tcp://127.0.0.1:{free_port()}",
                          mass=70.0, height=1.75)  # fmt: skip
        service._open()
        try:
            pub = service.sockets.sync_ctx.socket(zmq.PUB)
            pub.bind(endpoint)
            probe = 0

            def arrived() -> bool:
                nonlocal probe
                pub.send_multipart([b"keypoints", keypoints(probe, 1.0 + probe / 60)])
                probe += 1
                return bool(service.sub.getsockopt(zmq.EVENTS) & zmq.POLLIN)

            wait_until(arrived, "the input subscription in place")
            await service._take_held()  # the probes
            first = service.metrics.frames_in
            n = 20
            for k in range(n):
                pub.send_multipart([b"keypoints", keypoints(probe + k, 1.0 + (probe + k) / 60)])
            service.TURN_BUDGET_S = 0.0
            steps = []
            while service.metrics.frames_in < first + n:
                before = service.metrics.frames_in
                await service._take_held()
                steps.append(service.metrics.frames_in - before)
                assert len(steps) <= 2 * n, f"the flood was not taken: {steps}"
            pub.close(0)
            return steps
        finally:
            service._close()

    steps = asyncio.run(main())
    assert steps and max(steps) == 1, steps


def test_the_service_is_an_async_context_manager():
    """``async with service``: the sockets open on entry (the status comes on the output socket while it serves) and
    are closed on exit (the output endpoint can be bound again), after what was in flight is drained."""

    async def main():
        out = f"tcp://127.0.0.1:{free_port()}"
        service = Service(Settings(), input_endpoint=f"tcp://127.0.0.1:{free_port()}", output_endpoint=out,
                          mass=70.0, height=1.75, status_interval=0.1)  # fmt: skip
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"status")
        try:
            async with service as opened:
                assert opened is service
                stop, ready = asyncio.Event(), asyncio.Event()
                serving = asyncio.create_task(service.serve(stop, ready))
                await ready.wait()
                sub.connect(out)
                topic, _ = await asyncio.wait_for(sub.recv_multipart(), 30.0)
                stop.set()
                final = await serving
            again = ctx.socket(zmq.PUB)
            again.bind(out)  # closed: the endpoint is free again
            again.close(0)
        finally:
            sub.close(0)
            ctx.term()
        return topic, final

    topic, final = asyncio.run(main())
    assert topic == b"status" and final["healthy"] and final["frames_in"] == 0


def test_a_status_that_cannot_be_sent_is_logged_and_the_service_goes_on(caplog):
    """A status value msgpack cannot carry (a count past 2**64, as an unbounded counter would reach) is said in
    the log each time it is lost, instead of vanishing; the service keeps running and serving."""

    async def main():
        service, stop, task, out = await serving()
        service.metrics.refused["output"] = 2**70  # what the status would carry: beyond msgpack's integers
        await until(
            lambda: any("publish_error" in r.getMessage() and "status" in r.getMessage() for r in caplog.records),
            "a log line for the status that could not be sent",
        )
        service.metrics.refused.pop("output")
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"status")
        sub.connect(out)
        alive = await sub.poll(10_000)  # published again once it can be
        stop.set()
        final = await task
        sub.close(0)
        ctx.term()
        return alive, final

    with caplog.at_level(logging.WARNING, logger="kinestream.live.service"):
        alive, final = asyncio.run(main())
    assert alive and final["healthy"]
