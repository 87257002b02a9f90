"""The live service: keypoint frames in over ZeroMQ, joint angles out on ZeroMQ, MQTT and .mot.

The asyncio process is a thin shell around the stage cores, one frame straight
through:

    SUB socket -> decode (protocol) -> Pipeline.prepare (arrange, clean, augment)
               -> Pipeline.solve (the fast IK solver, warm-started from the previous frame; joint centres; reps)
               -> ZeroMQ PUB "angles", MQTT kinestream/<subject>/angles, .mot/.trc recorders, "reps"
               (-> ZeroMQ PUB "pose": keypoints, markers, joint centres, while someone subscribes to it)

Everything runs in the event loop, about 2.5 ms a frame with arm markers,
while ZeroMQ's own I/O thread keeps receiving. Every frame warm-starts from
the previous frame's own solution, so a recording equals ``process
--streaming`` on the same frames. When the loop falls behind (frames waiting
in ZeroMQ's queue), every waiting frame is still cleaned and augmented (the
filters and the LSTM need them all) but only the newest is solved: the others
are skipped (latest wins), counted and logged. With ``service.latest_wins =
false`` (recordings where every frame matters more than latency) every frame
is solved, later.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinestream.live import release_signals, stop_on_signals
from kinestream.live.calibrate import served_subject
from kinestream.live.metrics import Metrics, Throttled
from kinestream.live.mqtt import check_settings as check_mqtt
from kinestream.live.person import Person
from kinestream.live.protocol import (
    TOPIC_POSE,
    TOPIC_STATUS,
    encode_status,
)
from kinestream.live.sinks import MqttSink, PoseSink, RecorderSink, Sink, ZmqSink
from kinestream.live.sockets import Sockets
from kinestream.live.source import Arrival, Heard, KeypointSource, Refused
from kinestream.pipeline import Pipeline

if TYPE_CHECKING:
    from kinestream.reps import RepEvent

log = logging.getLogger("kinestream.live.service")

SUBSCRIPTION_MAX_BYTES = (
    1024  # a frame from a subscriber: a topic (the longest, b"status"), or a CURVE handshake (~300)
)
SUBSCRIPTION_QUEUE = 1000  # subscription messages queued per subscriber before ZeroMQ stops reading it
# Subscriptions are taken for 1 ms, then not for 10 ms when more wait: however fast subscribers send them, they
# get a tenth of the event loop at most (ZeroMQ holds the rest back, and the sender's queue fills).
SUBSCRIPTION_BUDGET_S = 0.001
SUBSCRIPTION_REST_S = 0.010


# ---------------------------------------------------------------- the asyncio shell


class Supervisor:
    """The service's tasks: each runs as a named task; when one dies it is logged, marked in ``health`` and started
    again (at most RESTARTS times); past that ``stop`` is set and ``healthy`` is False (exit status 1, for a
    supervisor of the process to restart it)."""

    RESTARTS = 3

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task] = {}
        self.health: dict[str, str] = {}
        self.healthy = True
        self._restarts: dict[str, int] = {}

    def start(self, name: str, make, stop: asyncio.Event) -> None:
        """Run the coroutine ``make()`` as task ``name`` until ``stop``."""
        task = asyncio.create_task(make(), name=name)
        self.tasks[name] = task

        def done(t: asyncio.Task) -> None:
            if t.cancelled() or stop.is_set():
                return
            exc = t.exception()
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
            self._restarts[name] = self._restarts.get(name, 0) + 1
            self.health[name] = f"died ({why}); restarted {self._restarts[name]} times"
            log.error("task %s died: %s", name, why, exc_info=exc)
            if self._restarts[name] > self.RESTARTS:
                log.critical("task %s keeps dying: stopping (exit status 1, for a supervisor to restart)", name)
                self.healthy = False
                stop.set()
                return
            self.start(name, make, stop)

        task.add_done_callback(done)

    async def end(self, name: str | None = None) -> None:
        """Task ``name`` (None: every task) cancelled and awaited; one that ended with an error is logged."""
        names = [name] if name is not None else list(self.tasks)
        tasks = [self.tasks.pop(n) for n in names if n in self.tasks]
        for task in tasks:
            task.cancel()
        for task, result in zip(tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=False):
            if isinstance(result, Exception):
                log.error("task %s ended with %s: %s", task.get_name(), type(result).__name__, result)


class Service:
    """Sockets and tasks around the person served (:class:`kinestream.live.person.Person`): what the source hears
    is admitted (one person at a time), the waiting frames are solved each turn of the receive loop, the status is
    published, and the tasks are supervised.

    ``model``: a scaled .osim (with an optional ``<model>.json`` beside it
    holding the subject's mass, height and floor offset, as ``calibrate``
    writes); None uses the generic model, unscaled.
    """

    MAX_BATCH = 1000  # messages taken from ZeroMQ before the waiting frames are solved
    # A turn of the receive loop takes messages for at most this long, then solves and lets the other tasks
    # (status, subscriptions, MQTT) run: a flood (each frame up to 11 LSTM steps) cannot hold the loop.
    TURN_BUDGET_S = 0.010
    SUBJECT_HOLD_S = 2.0  # frames of another subject are refused until the current one is this long silent
    SHOWN = ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l")  # on the status line

    def __init__(
        self,
        config: dict,
        *,
        input_endpoint: str,
        output_endpoint: str,
        mqtt: str | None = None,
        record: str | Path | None = None,
        model: str | Path | None = None,
        mass: float | None = None,
        height: float | None = None,
        status_interval: float = 1.0,
        status_out=None,
        rate: float = 60.0,
    ):
        from kinestream.assets import get_assets

        self.config = config
        self.input_endpoint = input_endpoint
        self.output_endpoint = output_endpoint
        self.mqtt_endpoint = mqtt
        if mqtt:
            check_mqtt(mqtt, config)  # a bad broker address or a password in the clear is said before anything starts
        self.record = Path(record) if record else None
        self.status_interval = status_interval
        self.status_out = status_out
        self.rate = rate
        self.assets = get_assets(config, progress=lambda m: log.info(m))
        person = served_subject(config, self.assets, model, mass, height)
        if model is None:
            log.warning(
                "no --model given: angles come from the generic model, unscaled; run 'kinestream "
                "calibrate' (or serve --calibrate) for the subject's own"
            )
        self.model_path, self.mass, self.height = person.model, person.mass, person.height
        self.subject = str(config["subject"].get("name", "subject"))
        self.metrics = Metrics()
        self.pipeline: Pipeline[Arrival] = Pipeline(
            self.assets,
            config,
            height=self.height,
            mass=self.mass,
            model=self.model_path,
            rate=rate,
            floor_offset=person.floor_offset,
        )
        self.coords = self.pipeline.coordinates
        svc = config.get("service", {})
        self.source = KeypointSource(config)  # decoding, the time rules per subject, restarts
        self.person = Person(
            self.subject,
            self.pipeline,
            self.metrics,
            self._reject,
            latest_wins=bool(svc.get("latest_wins", True)),
            max_lag_ns=int(float(svc.get("max_lag_ms", 50.0)) * 1e6),
            shown=self.SHOWN,
        )
        self.pose_every = int(svc.get("pose_every", 1))  # 0: never
        # The subscriptions on the output (XPUB) socket that cover "pose" (b"", b"p", ... b"pose": at most five);
        # any other topic a subscriber holds costs nothing here, however many there are.
        self._pose_topics: set[bytes] = set()
        self._pose_wanted = False  # a subscription covers "pose": only then is it encoded and sent
        self._log_every = Throttled(log)  # one line per kind every 5 s at most: a flood must not flood the log
        self._last_t: float | None = None
        self._source_subject: str | None = None  # the subject being served (frames name it, or not)
        self._source_ns = 0  # when its last frame arrived
        self.sinks: list[Sink] = []  # where frames go, made when the service opens
        self._pose: PoseSink | None = None
        self._mqtt: MqttSink | None = None
        self.supervisor = Supervisor()  # the tasks, started again when they die; the service's health
        from kinestream.live.transport import Access, check_bind

        check_bind(output_endpoint, config, "angles output")
        self.access = Access.from_config(config)  # CURVE keys and who may connect; None when off
        self.sockets = Sockets(config, input_endpoint, output_endpoint, self.access, self._refused)

    # -- set-up and tear-down

    def _open(self) -> None:
        self.sockets.open(
            send_queue=int(self.config.get("service", {}).get("send_queue", 1000)),
            subscription_max_bytes=SUBSCRIPTION_MAX_BYTES,
            subscription_queue=SUBSCRIPTION_QUEUE,
        )
        self.sub, self.pub = self.sockets.sub, self.sockets.pub
        if self.pipeline.removed:
            log.info("removed before IK: %s", ", ".join(self.pipeline.removed))
        for note in self.pipeline.notes:
            log.warning(note)
        self.sinks = [ZmqSink(self.pub)]
        if self.mqtt_endpoint:
            from kinestream.live.mqtt import MqttPublisher

            self._mqtt = MqttSink(MqttPublisher.from_config(self.mqtt_endpoint, self.config, self.subject))
            self.sinks.append(self._mqtt)
        if self.record:  # and the .c3d that serve writes from the markers at the end (commands.live.recording_c3d)
            columns = self.pipeline.keypoints + self.pipeline.markers
            self.sinks.append(RecorderSink(self.record, self.coords, columns, self.rate))
        self._pose = PoseSink(self.pub, self.pose_every, self.pipeline.keypoints, self.pipeline.markers)
        self._pose.want(self._pose_wanted)
        self.sinks.append(self._pose)
        self.person.attach(self.sinks)

    def _close(self) -> None:
        """Close every resource, each on its own: one that fails to close leaves none of the others open."""

        def attempt(what: str, fn, *args) -> None:
            try:
                fn(*args)
            except Exception as exc:
                log.error("closing %s failed: %s: %s", what, type(exc).__name__, exc)

        for sink in self.sinks:
            attempt(sink.name, sink.close)
        self.sockets.close(attempt)

    def _refused(self, name: str, event: Mapping[str, Any]) -> None:
        from kinestream.live.transport import REFUSED_NAMES

        self.metrics.refused[name] = self.metrics.refused.get(name, 0) + 1
        self._log_every(
            f"refused-{name}",
            logging.WARNING,
            "refused a peer on the %s socket (%s, %s): no authorized key, or not kinestream's protocol; %d so far",
            name,
            getattr(event["endpoint"], "decode", str)(),
            REFUSED_NAMES.get(event["event"], event["event"]),
            self.metrics.refused[name],
        )

    # -- the frame path

    def _reject(self, reason: str, detail: str = "", count: bool = True) -> None:
        """Count (service-level reasons; the decoder counts its own) and log a rejected frame."""
        if count:
            self.metrics.rejected[reason] = self.metrics.rejected.get(reason, 0) + 1
        so_far = self.metrics.rejected.get(reason) or self.source.counts.get(reason, 0)
        self._log_every(
            reason,
            logging.WARNING,
            "rejected a frame (%s%s); %d so far",
            reason,
            f": {detail}" if detail else "",
            so_far,
        )

    def _restart_source(self, why: str, new_t: float) -> None:
        log.warning("keypoint source restarted (%s): a new session, stages reset", why)
        self.person.restart(new_t)
        self._last_t = None
        self.metrics.resets += 1

    def _take(self, parts: list, recv_ns: int) -> None:
        """One multipart message from the SUB socket: ``[b"keypoints", payload]``, or a refused envelope."""
        self._admit(self.source.take(parts, recv_ns))

    def handle(self, payload: bytes, recv_ns: int) -> None:
        """One keypoint payload from the SUB socket: decode, clean, augment, dispatch. Never raises."""
        self._admit(self.source.decode(payload, recv_ns))

    def _admit(self, heard: Heard | Refused) -> None:
        """A frame the source heard, admitted when it is the subject being served (one person at a time), then
        cleaned and augmented; or what the source refused, counted and logged."""
        if not isinstance(heard, Heard):
            self._reject(heard.reason, heard.detail, count=False)  # the source counted it
            return
        frame, recv_ns = heard.frame, heard.recv_ns
        silence = heard.silence_s
        if frame.subject != self._source_subject and self._last_t is not None:
            if recv_ns - self._source_ns < self.SUBJECT_HOLD_S * 1e9:  # one person at a time
                self._reject("other_subject", f"subject {frame.subject!r} while {self._source_subject!r} streams")
                return
            self._restart_source(f"subject {frame.subject!r} follows {self._source_subject!r}", frame.t)
            silence = None
        elif heard.restart is not None:
            self._restart_source(heard.restart, frame.t)
        self._source_subject, self._source_ns = frame.subject, recv_ns
        self.source.keep(frame.subject)
        self.metrics.frames_in += 1
        if silence is not None:
            log.info("stream resumed after %.1f s of silence", silence)
        self._last_t = frame.t
        self.person.prepare(frame, recv_ns)

    def rep_events(self) -> list[RepEvent]:
        """The complete reps of the session so far."""
        return self.person.rep_events()

    # -- tasks

    async def _take_held(self) -> None:
        """Take what ZeroMQ holds now (at most MAX_BATCH messages): each frame decoded, cleaned and augmented."""
        import zmq

        deadline = time.perf_counter_ns() + int(self.TURN_BUDGET_S * 1e9)
        for _ in range(self.MAX_BATCH):
            try:
                parts = await self.sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._take(parts, time.time_ns())
            if time.perf_counter_ns() >= deadline:  # the rest waits for the next turn, after the other tasks
                return

    async def _receive(self, stop: asyncio.Event) -> None:
        """Take what ZeroMQ holds, then solve the waiting frames; again as frames come."""
        while not stop.is_set():
            if not await self.sub.poll(100):
                continue
            await self._take_held()
            self.person.solve_waiting()
            await asyncio.sleep(0)  # let the status, MQTT and monitor tasks run between batches

    async def _subscriptions(self, stop: asyncio.Event) -> None:
        """Keep track of the topics subscribed on the output socket (ZeroMQ tells an XPUB when a topic gets its
        first subscriber and loses its last one), so that ``pose`` is encoded only while someone wants it."""
        import zmq
        import zmq.asyncio

        sock = zmq.asyncio.Socket.from_socket(self.pub)  # the same socket, awaited from the event loop
        budget_ns = int(SUBSCRIPTION_BUDGET_S * 1e9)
        while not stop.is_set():
            if not await sock.poll(100):
                continue
            deadline = time.perf_counter_ns() + budget_ns
            while True:
                try:
                    msg = self.pub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.subscription(msg)
                if time.perf_counter_ns() >= deadline:  # a subscriber that never stops waits on its queue
                    await asyncio.sleep(SUBSCRIPTION_REST_S)
                    break

    def subscription(self, msg: bytes) -> None:
        """One message of the output socket's subscribers: ``\\x01`` + topic subscribes, ``\\x00`` + topic
        unsubscribes (ZeroMQ passes a topic's first subscription and last unsubscription). Constant cost: only
        whether ``pose`` is covered is kept."""
        topic = msg[1:]
        if not TOPIC_POSE.startswith(topic):
            return
        if msg[:1] == b"\x01":
            self._pose_topics.add(topic)
        elif msg[:1] == b"\x00":
            self._pose_topics.discard(topic)
        wanted = bool(self._pose_topics)
        if wanted != self._pose_wanted:
            log.info("a subscriber %s the pose topic", "wants" if wanted else "no longer wants")
            if self._pose is not None:
                self._pose.want(wanted)
        self._pose_wanted = wanted

    async def _status(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.status_interval)
            except TimeoutError:
                pass
            snap = self.status()
            try:
                self.pub.send_multipart([TOPIC_STATUS, encode_status(snap)])
            except Exception as exc:  # noqa: BLE001 - the status is lost, the service goes on: say so
                log.warning("status not published: %s", exc)
            for sink in self.sinks:  # MQTT's status topic
                try:
                    sink.on_status(snap)
                except Exception as exc:  # the status is lost there, the service goes on
                    self._reject(sink.failure, f"{sink.name}: status: {type(exc).__name__}: {exc}")
            if self.status_out is not None:
                try:
                    self.status_out(self.metrics.line(snap))
                except OSError:  # a closed terminal or pipe costs the status line, not the status
                    self.status_out = None

    def status(self) -> dict:
        snap = self.metrics.snapshot()
        snap.update(self.source.status())  # rejected, missed_frames, clock_resets
        snap["rejected"] = {**snap["rejected"], **self.metrics.rejected}
        snap["subject"] = self.subject
        snap["healthy"] = self.supervisor.healthy  # False once a task kept dying and the service stopped itself
        snap["tasks"] = dict(self.supervisor.health)  # a task that died and what became of it
        snap["filter_delay_ms"] = round(self.person.delay_ms(), 1)
        snap["curve"] = self.access is not None
        snap["pose"] = {"every": self.pose_every, "subscribed": self._pose_wanted, "sent": 0}  # until it opens
        snap["rows_not_recorded"] = 0  # solved frames left out of the recording (unsolved ones), when recording
        for sink in self.sinks:
            snap.update(sink.status())  # the pose topic, MQTT, rows left out of the recording
        return snap

    async def _drain(self) -> None:
        """Finish what is in flight: the frames ZeroMQ has already received, the cleaner's look-ahead and every
        waiting frame, none skipped."""
        await self._take_held()
        self.person.drain("the service stopped")
        if self._mqtt is not None:
            await self._mqtt.flush()  # up to a second for what the drain queued (a connected broker only)

    async def __aenter__(self) -> Service:
        """The sockets bound and connected, the sinks opened (a recording's files made)."""
        self._open()
        return self

    async def __aexit__(self, *exc_info) -> None:
        """Every socket, sink and the CURVE authenticator closed."""
        self._close()

    async def run(self, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> dict:
        """Open, serve until ``stop`` is set (or SIGINT/SIGTERM), close; returns the final status.

        Its ``healthy`` is False when a task kept dying and the service stopped itself: the command
        line then exits with status 1.
        """
        stop = stop or asyncio.Event()
        taken = stop_on_signals(stop)
        try:
            async with self:
                # Start-up leaves about 120,000 objects the collector tracks (OpenSim's proxies, the augmenter,
                # numpy's modules) and that live as long as the service: one full collection over them took 50 ms,
                # six frames at 120 Hz. Frozen, they leave its view; what frames allocate is collected as before.
                gc.collect()
                gc.freeze()
                try:
                    return await self.serve(stop, ready)
                finally:
                    gc.unfreeze()  # a process that serves again (tests, the demo) has its objects collected as before
        finally:
            release_signals(taken)

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> dict:
        """Serve, opened (``async with service``), until ``stop`` is set: the tasks started and supervised, then
        the frames in flight drained and the tasks ended; returns the final status."""
        tasks = self.supervisor
        tasks.start("receive", lambda: self._receive(stop), stop)
        tasks.start("status", lambda: self._status(stop), stop)
        tasks.start("subscriptions", lambda: self._subscriptions(stop), stop)
        for name in Sockets.NAMES:  # refused peers counted; a lost input link connected afresh
            tasks.start(f"watch-{name}", lambda name=name: self.sockets.watch(name, stop), stop)
        if self._mqtt is not None:
            tasks.start("mqtt", self._mqtt.run, stop)
        log.info(
            "serving: keypoints from %s, angles on %s%s%s; IK solver %s; model %s",
            self.input_endpoint,
            self.output_endpoint,
            f", MQTT {self.mqtt_endpoint}" if self.mqtt_endpoint else "",
            f", recording to {self.record}" if self.record else "",
            self.pipeline.solver,
            self.model_path,
        )
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
            await tasks.end("receive")  # it stops taking frames; the drain takes the rest
            await self._drain()
        finally:
            await tasks.end()
        return self.status()
