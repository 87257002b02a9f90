"""Joint angles out to XR clients over MQTT.

:class:`MqttPublisher` owns one broker connection. The service hands it
messages with :meth:`MqttPublisher.publish`, which never waits and never
raises; :meth:`MqttPublisher.run` is the connection task that sends them.

Topics are ``kinestream/<subject>/<suffix>`` (joint angles go to
``kinestream/<subject>/angles``); the publisher's subject unless a message
names another (one topic per person of a stream of several). Live data wants the newest frame, not every
frame: the outgoing queue is bounded and, when full, the oldest message makes
room for the new one and is counted as dropped. While the broker is away the
queue keeps the latest ``queue_size`` messages and ``run`` retries with
exponential backoff; the first message sent after a reconnect is the oldest
one still queued, so the order within the stream is kept.

For a broker on this machine, run ``scripts/mosquitto [PORT]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from pathlib import Path

import aiomqtt

from kinestream.errors import SettingsError
from kinestream.settings import MqttSettings

TOPIC_ROOT = "kinestream"
ENDPOINT_HINT = "give HOST:PORT, e.g. 127.0.0.1:1883"
TIMEOUT_S = 5.0  # connect, acknowledgements, disconnect
SETTLE_S = 0.4  # on cancel, how long a connect in flight may finish so it can be closed cleanly
MAX_TOPICS = 64  # topic strings kept ready for the hot path
MAX_WARNINGS = 32  # distinct reasons for dropping a message that get a log line
SEND_BATCH = 64  # messages handed to the client at once


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (``"[::1]:1883"`` for IPv6) as ``(host, port)``."""
    text = str(endpoint).strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(
            f"MQTT endpoint {endpoint!r} is not valid; {ENDPOINT_HINT}",
            key="mqtt.broker",
            given=endpoint,
            valid="HOST:PORT",
        )
    if ":" in host and not text.startswith("["):
        raise SettingsError(
            f"MQTT endpoint {endpoint!r} is not valid; write IPv6 hosts in brackets, e.g. [::1]:1883",
            key="mqtt.broker",
            given=endpoint,
            valid="[HOST]:PORT",
        )
    return host, int(port)


def _check_topic_level(what: str, value: str) -> None:
    if not value or any(c in value for c in "+#\0"):
        raise SettingsError(
            f"MQTT {what} {value!r} is not valid; it must be non-empty without '+', '#' or NUL",
            key=what,
            given=value,
            valid="non-empty without '+', '#' or NUL",
        )


def _check_options(host, port, subject, qos, queue_size, backoff, ca_file) -> None:
    """Refuse what a publisher cannot work with (a SettingsError naming the option, what was given, what is valid)."""
    if not host:
        raise SettingsError(f"MQTT host {host!r} is empty; {ENDPOINT_HINT}", key="host", given=host, valid="HOST:PORT")
    if not 0 < int(port) < 65536:
        raise SettingsError(
            f"MQTT port {port!r} is not valid; give 1 to 65535", key="port", given=port, valid=(1, 65535)
        )
    _check_topic_level("subject", subject)
    if "/" in subject:
        raise SettingsError(
            f"MQTT subject {subject!r} is not valid; it is one topic level, without '/'",
            key="subject",
            given=subject,
            valid="one topic level",
        )
    if qos not in (0, 1, 2):
        raise SettingsError(
            f"MQTT QoS {qos!r} is not valid; give 0, 1 or 2", key="mqtt.qos", given=qos, valid=[0, 1, 2]
        )
    if queue_size < 1:
        raise SettingsError(
            f"MQTT queue_size {queue_size!r} is not valid; give at least 1 message",
            key="queue_size",
            given=queue_size,
            valid="at least 1",
        )
    first, cap = backoff
    if not 0 < first <= cap:
        raise SettingsError(
            f"MQTT backoff {backoff!r} is not valid; give (first, max) seconds with 0 < first <= max",
            key="backoff",
            given=backoff,
            valid="0 < first <= max",
        )
    if ca_file is not None and not Path(ca_file).is_file():
        raise SettingsError(
            f"MQTT CA file {ca_file} does not exist; give the broker's CA certificate (PEM)",
            key="mqtt.ca_file",
            given=ca_file,
            valid="the broker's CA certificate (PEM)",
        )


class MqttPublisher:
    """A bounded, reconnecting MQTT publisher for live messages.

    Start :meth:`run` as a task and call :meth:`publish` from the event loop
    thread. Cancelling the task disconnects from the broker.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        subject: str = "subject",
        qos: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | Path | None = None,
        queue_size: int = 256,
        backoff: tuple[float, float] = (0.5, 30.0),
        log: logging.Logger | None = None,
    ) -> None:
        _check_options(host, port, subject, qos, queue_size, backoff, ca_file)
        first, cap = backoff
        self.host, self.port = host, int(port)
        self.subject, self.qos = subject, qos
        self.username, self.password = username, password
        self.tls = tls or ca_file is not None
        self.ca_file = str(ca_file) if ca_file is not None else None
        self.queue_size = queue_size
        self.backoff = (float(first), float(cap))
        self.log = log or logging.getLogger("kinestream.live.mqtt")
        self._queue: asyncio.Queue[tuple[str, str | bytes]] = asyncio.Queue(maxsize=queue_size)
        self._prefix = f"{TOPIC_ROOT}/{subject}/"
        self._topics: dict[tuple[str | None, str], str] = {}  # (subject, suffix) -> topic
        self._unsent: tuple[str, str | bytes] | None = None  # its send failed: the first to go after a reconnect
        self._connected = False
        self._ever_connected = False
        self._outage_since: float | None = None
        self._published = 0
        self._dropped = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._warned: set[str] = set()

    @classmethod
    def from_endpoint(cls, endpoint: str, **options) -> MqttPublisher:
        """A publisher for ``"HOST:PORT"``; ``options`` as for the constructor."""
        host, port = parse_endpoint(endpoint)
        return cls(host, port, **options)

    @classmethod
    def from_settings(cls, endpoint: str, mqtt: MqttSettings, subject: str) -> MqttPublisher:
        """A publisher for ``endpoint`` with the ``[mqtt]`` settings ``mqtt`` (:func:`check_settings` first)."""
        return cls.from_endpoint(
            endpoint,
            subject=subject,
            qos=int(mqtt.qos),
            username=mqtt.username or None,
            password=mqtt.password or None,
            tls=bool(mqtt.tls),
            ca_file=mqtt.ca_file or None,
        )

    @property
    def address(self) -> str:
        """The broker's ``host:port`` (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # -- the hot path ------------------------------------------------------

    def publish(self, suffix: str, payload: str | bytes, subject: str | None = None) -> None:
        """Queue ``payload`` for ``kinestream/<subject>/<suffix>`` (``subject``: the publisher's when None).

        Never blocks, never raises.

        When the queue is full the oldest message is dropped and counted.
        """
        try:
            topic = self._topics.get((subject, suffix))
            if topic is None:
                topic = self._topic(suffix, subject)
                if topic is None:
                    return
            if type(payload) is not str and type(payload) is not bytes:
                if isinstance(payload, str):
                    payload = str(payload)
                elif isinstance(payload, (bytes, bytearray, memoryview)):
                    payload = bytes(payload)
                else:
                    self._reject(f"payload must be str or bytes, not {type(payload).__name__}")
                    return
            queue = self._queue
            if queue.qsize() + (self._unsent is not None) >= self.queue_size:
                if self._unsent is not None:  # the oldest message of all
                    self._unsent = None
                else:
                    queue.get_nowait()
                self._dropped += 1
            queue.put_nowait((topic, payload))
        except Exception as exc:  # a publisher must not take the service down
            self._reject(f"{type(exc).__name__}: {exc}")

    def _topic(self, suffix: str, subject: str | None) -> str | None:
        topic = None
        if subject is not None and not (
            isinstance(subject, str) and subject and not any(c in subject for c in "/+#\0")
        ):
            self._reject(f"subject {subject!r} is not valid; it must be one topic level, without '/', '+', '#'")
        elif isinstance(suffix, str) and suffix and not any(c in suffix for c in "+#\0"):
            topic = (self._prefix if subject is None else f"{TOPIC_ROOT}/{subject}/") + suffix
            if len(self._topics) < MAX_TOPICS:
                self._topics[(subject, suffix)] = topic
        else:
            self._reject(f"topic suffix {suffix!r} is not valid; it must be a non-empty str without '+', '#'")
        return topic

    def _reject(self, reason: str) -> None:
        self._dropped += 1
        self._last_error = reason
        if reason not in self._warned and len(self._warned) < MAX_WARNINGS:
            self._warned.add(reason)
            self.log.warning("MQTT message dropped: %s", reason)

    # -- the connection task -------------------------------------------------

    def stats(self) -> dict:
        """Counters since construction: connected, published, dropped, reconnects, last_error, queued."""
        return {
            "connected": self._connected,
            "published": self._published,
            "dropped": self._dropped,
            "reconnects": self._reconnects,
            "last_error": self._last_error,
            "queued": self._queue.qsize() + (self._unsent is not None),
        }

    def _client(self) -> aiomqtt.Client:
        tls_params = aiomqtt.TLSParameters(ca_certs=self.ca_file) if self.tls else None
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            tls_params=tls_params,
            timeout=TIMEOUT_S,
        )

    async def run(self) -> None:
        """Connect, send queued messages, reconnect with backoff; runs until cancelled."""
        first, cap = self.backoff
        delay = first
        try:
            while True:
                try:
                    async with contextlib.AsyncExitStack() as stack:
                        client = self._client()
                        await _connect(client)
                        stack.push_async_exit(client)
                        self._on_connected()
                        delay = first
                        await self._serve(client)
                except Exception as exc:
                    self._connected = False
                    if _cancelling():  # a cancel the client turned into an error
                        raise asyncio.CancelledError from exc
                    if not isinstance(exc, (aiomqtt.MqttError, OSError)):
                        self.log.error("MQTT client failed unexpectedly; starting a new connection", exc_info=exc)
                    pause = random.uniform(delay / 2, delay)
                    self._on_failure(exc, pause)
                    await asyncio.sleep(pause)
                    delay = min(cap, delay * 2)
        finally:
            if self._connected:
                self.log.info("disconnected from %s", self.address)
            self._connected = False

    def _on_connected(self) -> None:
        self._connected = True
        if self._ever_connected:
            self._reconnects += 1
        if self._outage_since is not None and self._ever_connected:
            self.log.info(
                "reconnected to %s after %.1f s (%d messages dropped so far)",
                self.address,
                time.monotonic() - self._outage_since,
                self._dropped,
            )
        else:
            self.log.info("connected to %s", self.address)
        self._ever_connected = True
        self._outage_since = None

    def _on_failure(self, exc: BaseException, pause: float) -> None:
        reason = _reason(exc)
        self._last_error = reason
        level = logging.DEBUG
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            level = logging.WARNING
        self.log.log(level, "MQTT broker %s unreachable (%s); retrying in %.1fs", self.address, reason, pause)

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Send until the connection drops; raise the MqttError that ended it."""
        sender = asyncio.ensure_future(self._send(client))
        watcher = asyncio.ensure_future(_until_disconnected(client))
        try:
            done, _ = await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sender.cancel()
            watcher.cancel()
            await asyncio.gather(sender, watcher, return_exceptions=True)
        failure = sender.exception() if sender in done and not sender.cancelled() else None
        if failure is not None:
            raise failure
        raise aiomqtt.MqttError("connection lost")

    async def _send(self, client: aiomqtt.Client) -> None:
        """Send what is queued, in order.

        The messages waiting behind the first (up to SEND_BATCH) go with it: each is handed to the client in turn and
        all are awaited together, so that the rate does not hang on one turn of the event loop per message (a service
        busy with several people's frames gets few turns).
        """
        queue = self._queue
        while True:
            item, self._unsent = self._unsent, None
            if item is None:
                item = queue.get_nowait() if not queue.empty() else await queue.get()
            batch = [item]
            while len(batch) < SEND_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            sends = [asyncio.ensure_future(client.publish(topic, payload, qos=self.qos)) for topic, payload in batch]
            try:
                await asyncio.gather(*sends, return_exceptions=True)
            finally:  # cancelled or not: what went out is counted, what did not is kept or dropped
                lost = self._settle(batch, sends)
            if lost is not None:
                raise lost
            if _cancelling():  # a cancel that came with the acknowledgement
                raise asyncio.CancelledError

    def _settle(self, batch: list, sends: list) -> BaseException | None:
        """Count a batch's messages: published, refused, or not sent; returns what ended the connection, if anything.

        Refused: a message the broker would refuse, not the connection. Not sent: connection lost or task cancelled; the
        first is kept to go first after a reconnect unless newer ones fill the queue, the rest are dropped.
        """
        lost: BaseException | None = None
        for item, send in zip(batch, sends, strict=True):
            if not send.done() or send.cancelled():  # not confirmed: counted as not sent
                send.cancel()
                exc: BaseException | None = asyncio.CancelledError()
            else:
                exc = send.exception()
            if exc is None:
                self._published += 1
            elif isinstance(exc, (ValueError, TypeError)):
                self._reject(f"{type(exc).__name__}: {exc}")
            else:
                if lost is None and self._unsent is None and self._queue.qsize() < self.queue_size:
                    self._unsent = item
                else:
                    self._dropped += 1
                lost = lost or exc
        return None if isinstance(lost, asyncio.CancelledError) and not _cancelling() else lost


async def _connect(client: aiomqtt.Client) -> None:
    """Connect ``client``.

    When cancelled meanwhile, a connect in flight gets SETTLE_S to finish so it can be closed cleanly, then the cancel
    goes on.
    """
    entering = asyncio.ensure_future(client.__aenter__())
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        await asyncio.wait([entering], timeout=SETTLE_S)
        if entering.done():
            leaving = _close_if_connected(entering, client)
            if leaving is not None:
                await asyncio.wait([leaving], timeout=SETTLE_S)
        else:
            entering.cancel()  # should it connect all the same, the callback closes it
            entering.add_done_callback(lambda task: _close_if_connected(task, client))
        raise


def _cancelling() -> bool:
    """Whether the running task is being cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _close_if_connected(entering: asyncio.Future, client: aiomqtt.Client) -> asyncio.Future | None:
    """Disconnect ``client`` when its connect, awaited by nobody any more, succeeded."""
    if entering.cancelled() or entering.exception() is not None:
        return None
    leaving = asyncio.ensure_future(client.__aexit__(None, None, None))
    leaving.add_done_callback(lambda task: task.cancelled() or task.exception())
    return leaving


async def _until_disconnected(client: aiomqtt.Client) -> None:
    """Return never; raise MqttError when the broker connection is lost."""
    async for _ in client.messages:  # nothing is subscribed: this only watches the connection
        pass


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause):
        text = f"{text}: {cause}"
    return text


def check_settings(endpoint: str, mqtt: MqttSettings) -> None:
    """A bad broker address, or a password that would cross the network in the clear, said before anything starts.

    It is a KinestreamError. ``mqtt`` is the ``[mqtt]`` section.
    """
    parse_endpoint(endpoint)
    if mqtt.password and not mqtt.tls and not mqtt.allow_plaintext_password:
        raise SettingsError(
            "mqtt.password is set but mqtt.tls is off: the password would cross the network "
            "in the clear; turn mqtt.tls on, or set mqtt.allow_plaintext_password = true "
            "(a broker on this machine, say)",
            key="mqtt.tls",
            given=False,
            valid="mqtt.tls = true, or mqtt.allow_plaintext_password = true",
        )
