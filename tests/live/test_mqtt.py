"""MqttPublisher against a real mosquitto broker: delivery, outages, bounds, cancelling.

How fast it publishes or reconnects is for a benchmark: here every wait is on a condition."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import tracemalloc

import aiomqtt
import paho.mqtt.client as paho
import pytest

from broker import (
    DEADLINE_S,
    HOST,
    Broker,
    free_port,
    require_mosquitto,
    tls_with_password,
    until,
    wait_until,
)
from kinestream.errors import SettingsError
from kinestream.live.mqtt import MqttPublisher, parse_endpoint

FAST = (0.05, 0.5)  # backoff short enough for tests


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int, text: str) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level and text in r.getMessage()]


def capture(name: str) -> tuple[logging.Logger, Records]:
    log = logging.getLogger(f"kinestream.mqtt.test.{name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    records = Records()
    log.handlers[:] = [records]
    return log, records


class Subscriber:
    """A blocking paho subscriber, subscribed when the constructor returns.

    Blocking on purpose: called inside a test's event loop it keeps the
    publisher from sending before the subscription exists.
    """

    def __init__(self, port: int, topic: str, *, ca_file=None, username=None, password=None) -> None:
        self.payloads: list[bytes] = []
        self.topics: list[str] = []
        subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        if ca_file:
            self.client.tls_set(ca_certs=str(ca_file))
        if username:
            self.client.username_pw_set(username, password)
        self.client.connect(HOST, port)
        self.client.subscribe(topic)
        self.client.loop_start()
        if not subscribed.wait(DEADLINE_S):
            self.close()
            raise AssertionError(f"no SUBACK from the broker on port {port}")

    def _on_message(self, client, userdata, message) -> None:
        self.topics.append(message.topic)
        self.payloads.append(message.payload)

    @property
    def seqs(self) -> list[int]:
        return [int(p) for p in self.payloads]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def cancel(task: asyncio.Task) -> None:
    """Cancel ``task`` and see it end cancelled (a cancel that is lost leaves it running: it fails here)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=30)


def pauses(records: Records) -> list[float]:
    """The backoff pauses the publisher logged ("retrying in X s"), in seconds."""
    return [
        float(line.rsplit("retrying in ", 1)[1].rstrip("s"))
        for level in (logging.WARNING, logging.DEBUG)
        for line in records.lines(level, "retrying in")
    ]


def frame(seq: int) -> str:
    return json.dumps({"t": seq / 60, "seq": seq, "angles": {"knee_angle_r": 0.5 * seq, "hip_flexion_r": 1.0}})


def test_angles_reach_a_subscriber_in_order(broker):
    frames = [frame(i) for i in range(200)]

    async def main():
        pub = MqttPublisher.from_endpoint(broker.endpoint, subject="athlete1", backoff=FAST)
        got = []
        async with aiomqtt.Client(HOST, broker.port) as sub:
            await sub.subscribe("kinestream/athlete1/#")
            task = asyncio.create_task(pub.run())
            for payload in frames:
                pub.publish("angles", payload)
            pub.publish("angles", b"raw bytes")
            async with asyncio.timeout(30):
                async for message in sub.messages:
                    got.append((str(message.topic), message.payload))
                    if len(got) == len(frames) + 1:
                        break
            assert pub.stats()["connected"]
            await cancel(task)
        return pub.stats(), got

    stats, got = asyncio.run(main())
    assert got == [("kinestream/athlete1/angles", f.encode()) for f in frames] + [
        ("kinestream/athlete1/angles", b"raw bytes")
    ]
    assert json.loads(got[10][1])["angles"]["knee_angle_r"] == 5.0
    assert stats == {
        "connected": False,
        "published": 201,
        "dropped": 0,
        "reconnects": 0,
        "last_error": None,
        "queued": 0,
    }


def test_broker_down_at_start_then_up():
    require_mosquitto()
    log, records = capture("late")
    port = free_port()

    async def main():
        pub = MqttPublisher(HOST, port, subject="s1", backoff=FAST, log=log)
        task = asyncio.create_task(pub.run())
        for seq in range(3):
            pub.publish("angles", str(seq))
        await until(lambda: len(records.lines(logging.DEBUG, "unreachable")) >= 2, "two failed retries")
        assert not task.done(), "run() must keep trying while the broker is away"
        down = pub.stats()
        with Broker() as late:
            late.start(port)
            sub = Subscriber(port, "kinestream/s1/angles")
            await until(lambda: pub.stats()["connected"], "the connection")
            for seq in range(3, 6):
                pub.publish("angles", str(seq))
            await until(lambda: len(sub.payloads) == 6, lambda: f"six messages, got {sub.seqs}")
            sub.close()
            await cancel(task)
        return down, sub.seqs, pub.stats()

    down, seqs, stats = asyncio.run(main())
    assert down["connected"] is False and down["queued"] == 3 and down["published"] == 0
    assert "Connection refused" in down["last_error"]
    warnings = records.lines(logging.WARNING, f"MQTT broker 127.0.0.1:{port} unreachable")
    assert len(warnings) == 1, "one warning per outage"
    assert "retrying in" in warnings[0]
    assert len(records.lines(logging.DEBUG, "unreachable")) >= 2, "it kept retrying"
    assert records.lines(logging.INFO, f"connected to 127.0.0.1:{port}")
    assert max(pauses(records)) <= FAST[1], "the backoff stays under its cap"
    assert seqs == list(range(6)), "messages queued while down are sent first, in order"
    assert stats["published"] == 6 and stats["dropped"] == 0 and stats["reconnects"] == 0


def test_reconnects_by_itself_after_a_broker_restart(broker):
    log, records = capture("restart")
    queue_size, period = 20, 0.004

    async def main():
        pub = MqttPublisher(HOST, broker.port, subject="s2", queue_size=queue_size, backoff=(0.1, 1.0), log=log)
        before = Subscriber(broker.port, "kinestream/s2/angles")
        task = asyncio.create_task(pub.run())
        await until(lambda: pub.stats()["connected"], "the connection")
        produced = 0
        first_up = None  # the first frame published after the reconnection
        running = True

        async def produce():
            nonlocal produced, first_up
            while running:
                if first_up is None and produced > first_down > 0 and pub.stats()["connected"]:
                    first_up = produced
                pub.publish("angles", str(produced))
                produced += 1
                await asyncio.sleep(period)

        first_down = 0
        producer = asyncio.create_task(produce())
        await until(lambda: len(before.payloads) >= 50, "50 messages delivered before the outage")
        broker.stop()
        at_loss = await until(lambda: not pub.stats()["connected"] and pub.stats(), "the loss noticed")
        first_down = produced
        queued_max = 0
        for _ in range(80):  # 0.8 s of outage while frames keep coming (the scenario, not a wait)
            await asyncio.sleep(0.01)
            queued_max = max(queued_max, pub.stats()["queued"])
        broker.start(broker.port)
        after = Subscriber(broker.port, "kinestream/s2/angles")  # blocks the loop: subscribed before reconnection
        await until(lambda: pub.stats()["connected"], "the reconnection")
        await until(lambda: first_up is not None and produced >= first_up + 50, "50 frames after the reconnection")
        running = False
        await producer
        await until(
            lambda: after.payloads and after.seqs[-1] == produced - 1,
            lambda: f"the last message ({produced - 1}), got up to {after.seqs[-1:]}",
        )
        before.close()
        after.close()
        await cancel(task)
        return pub.stats(), at_loss, produced, first_down, first_up, queued_max, before.seqs, after.seqs

    stats, at_loss, produced, first_down, first_up, queued_max, seqs1, seqs2 = asyncio.run(main())
    assert stats["reconnects"] == 1
    assert stats["dropped"] > 0 and queued_max <= queue_size
    assert stats["published"] + stats["dropped"] == produced, "every message is either sent or counted as dropped"
    assert seqs1 == sorted(set(seqs1)) and seqs1[-1] < first_down + queue_size
    # After the restart: the latest queued frames, then the new ones, in order; a slow drain may drop some,
    # counted above, but every message sent on the new connection arrives.
    assert seqs2 == sorted(set(seqs2)) and seqs2[-1] == produced - 1
    assert len(seqs2) == stats["published"] - at_loss["published"], "sent on the new connection, all delivered"
    assert 0 < first_up - seqs2[0] <= queue_size, "what was queued while down: the latest queue_size frames"
    assert max(pauses(records)) <= 1.0, "the backoff stays under its cap"
    assert len(records.lines(logging.WARNING, "unreachable")) == 1, "one warning per outage"
    assert records.lines(logging.INFO, f"reconnected to {broker.endpoint}")


def test_queue_is_bounded_and_the_latest_messages_win(broker):
    async def main():
        pub = MqttPublisher(HOST, broker.port, subject="s3", queue_size=50, backoff=FAST)
        for seq in range(10_000):
            pub.publish("angles", str(seq))
        full = pub.stats()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for seq in range(100_000):
            pub.publish("angles", str(seq + 10_000))
        grown = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        sub = Subscriber(broker.port, "kinestream/s3/angles")
        task = asyncio.create_task(pub.run())
        await until(lambda: len(sub.payloads) == 50, lambda: f"the 50 queued messages, got {len(sub.payloads)}")
        sub.close()
        await cancel(task)
        return full, grown, sub.seqs, pub.stats()

    full, grown, seqs, stats = asyncio.run(main())
    assert full["queued"] == 50 and full["dropped"] == 9_950
    assert grown < 64_000, f"memory grew by {grown} bytes while the queue was full"
    assert seqs == list(range(110_000 - 50, 110_000))
    assert stats["dropped"] == 110_000 - 50 and stats["published"] == 50


def test_publish_never_raises_and_a_full_queue_stays_full():
    """publish() with the broker away and the queue full, and with bad topics and payloads. (What a call
    costs is a benchmark's business, not a test's.)"""
    log, records = capture("fast")
    payload = json.dumps({"t": 1.0, "seq": 1, "angles": {f"coord_{i}": 12.345 for i in range(40)}})

    async def main():
        pub = MqttPublisher(HOST, free_port(), subject="s4", queue_size=8, backoff=(5.0, 30.0), log=log)
        task = asyncio.create_task(pub.run())  # the broker is absent: the queue stays full
        await until(lambda: pub.stats()["last_error"], "a failed connection attempt")
        for _ in range(20_000):
            pub.publish("angles", payload)
        for suffix, body in [
            ("angles", {"not": "serialised"}),
            ("angles", None),
            ("a/#", "x"),
            ("", "x"),
            (None, "x"),
            ("angles", bytearray(b"ok")),
        ]:
            pub.publish(suffix, body)
        stats = pub.stats()
        await cancel(task)
        return stats

    stats = asyncio.run(main())
    assert stats["queued"] == 8
    assert stats["dropped"] == 20_000 - 8 + 5 + 1  # five rejected, and the bytearray pushed one more out
    assert "not valid" in stats["last_error"]
    assert len(records.lines(logging.WARNING, "MQTT message dropped")) == 5


@pytest.mark.parametrize("state", ["connected", "backing off"])
def test_cancel_ends_the_task(broker, state):
    """Cancelled while connected or while backing off, run() ends; connected, it disconnects cleanly."""
    log, records = capture("cancel")

    async def main():
        port = broker.port if state == "connected" else free_port()
        pub = MqttPublisher(HOST, port, backoff=(5.0, 30.0), log=log)
        task = asyncio.create_task(pub.run())
        if state == "connected":
            await until(lambda: pub.stats()["connected"], "the connection")
            pub.publish("angles", "last")
            await until(lambda: pub.stats()["published"] == 1, "the message published")
        else:
            await until(lambda: pub.stats()["last_error"] is not None, "a failed attempt")
        await cancel(task)
        return pub.stats()

    stats = asyncio.run(main())
    assert stats["connected"] is False
    if state == "connected":
        assert records.lines(logging.INFO, "disconnected from")
        wait_until(lambda: "disconnected." in broker.tail(), "the broker to see a clean MQTT disconnect")


@pytest.mark.parametrize("anonymous", [True, False], ids=["accepted", "refused"])
def test_cancel_at_any_moment_ends_the_task(anonymous):
    """Cancels landing while connecting, sending or backing off are never lost."""
    _, asyncio_errors = capture("unused")
    logging.getLogger("asyncio").addHandler(asyncio_errors)
    log = capture("random-cancel")[0]
    try:
        with Broker(config=f"allow_anonymous {str(anonymous).lower()}") as running:
            running.start()

            async def main():
                for i in range(60):
                    pub = MqttPublisher(HOST, running.port, backoff=(0.001, 0.002), log=log)
                    for seq in range(i % 7 * 10):
                        pub.publish("angles", str(seq))
                    task = asyncio.create_task(pub.run())
                    await asyncio.sleep(random.uniform(0, 0.008))  # a random moment: the scenario
                    await cancel(task)
                    assert pub.stats()["connected"] is False

            asyncio.run(main())
    finally:
        logging.getLogger("asyncio").removeHandler(asyncio_errors)
    assert asyncio_errors.lines(logging.ERROR, "") == []


def test_an_unexpected_client_error_starts_a_new_connection(broker, monkeypatch):
    log, records = capture("unexpected")
    real_publish = aiomqtt.Client.publish
    calls = []

    async def flaky_publish(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError("client state went wrong")
        return await real_publish(self, *args, **kwargs)

    monkeypatch.setattr(aiomqtt.Client, "publish", flaky_publish)

    async def main():
        pub = MqttPublisher(HOST, broker.port, subject="s6", backoff=FAST, log=log)
        sub = Subscriber(broker.port, "kinestream/s6/angles")
        task = asyncio.create_task(pub.run())
        pub.publish("angles", "kept")
        await until(lambda: sub.payloads, "the delivery after the error")
        sub.close()
        await cancel(task)
        return pub.stats(), sub.payloads

    stats, payloads = asyncio.run(main())
    assert payloads == [b"kept"], "the message that met the error is sent on the next connection"
    assert stats["reconnects"] == 1 and stats["published"] == 1 and stats["dropped"] == 0
    assert records.lines(logging.ERROR, "failed unexpectedly")


def test_tls_and_password(broker):
    ca = tls_with_password(broker)
    broker.restart()
    d = ca.parent

    async def attempt(password: str):
        pub = MqttPublisher(
            HOST,
            broker.port,
            subject="s5",
            username="coach",
            password=password,
            ca_file=d / "ca.crt",
            backoff=FAST,
            log=capture("tls")[0],
        )
        sub = Subscriber(broker.port, "kinestream/s5/angles", ca_file=d / "ca.crt", username="coach", password="squat")
        task = asyncio.create_task(pub.run())
        pub.publish("angles", "secure")
        if password == "squat":
            await until(lambda: sub.payloads, "the delivery")
        else:  # refused: nothing can have gone out
            await until(lambda: pub.stats()["last_error"], "the broker's refusal")
        sub.close()
        await cancel(task)
        return pub.stats(), sub.payloads

    stats, payloads = asyncio.run(attempt("squat"))
    assert payloads == [b"secure"] and stats["published"] == 1
    stats, payloads = asyncio.run(attempt("wrong"))
    assert payloads == [] and stats["published"] == 0 and "authori" in stats["last_error"].lower()


def test_endpoint_and_options_are_checked(tmp_path):
    assert parse_endpoint("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_endpoint(" broker.local:8883 ") == ("broker.local", 8883)
    assert parse_endpoint("[::1]:1884") == ("::1", 1884)
    pub = MqttPublisher.from_endpoint("localhost:1999", subject="p7", qos=1)
    assert (pub.host, pub.port, pub.qos, pub.address) == ("localhost", 1999, 1, "localhost:1999")
    for bad in ["localhost", "localhost:", ":1883", "host:port", "host:0", "host:70000", "::1:1883", ""]:
        with pytest.raises(SettingsError) as info:
            MqttPublisher.from_endpoint(bad)
        assert (info.value.key, info.value.given) == ("mqtt.broker", bad)
    for options, key in [
        ({"qos": 3}, "mqtt.qos"),
        ({"subject": "a/b"}, "subject"),
        ({"subject": "#"}, "subject"),
        ({"queue_size": 0}, "queue_size"),
        ({"backoff": (0, 1)}, "backoff"),
        ({"backoff": (5, 1)}, "backoff"),
        ({"ca_file": tmp_path / "missing.pem"}, "mqtt.ca_file"),
    ]:
        with pytest.raises(SettingsError) as info:
            MqttPublisher("localhost", **options)
        assert (info.value.key, info.value.given) == (key, *options.values())
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    tls = MqttPublisher("localhost", 8883, ca_file=ca, username="u", password="p")
    assert tls.tls and tls.ca_file == str(ca)
