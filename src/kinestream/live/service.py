"""The live service: keypoint frames in over ZeroMQ, joint angles out on ZeroMQ, MQTT and .mot.

The asyncio process is a thin shell around the stage cores, one frame straight
through:

    SUB socket -> decode (protocol) -> the subject's person (people: up to service.max_people, each with their own
               pipeline) -> Pipeline.prepare (arrange, clean, augment)
               -> Pipeline.solve (the fast IK solver, warm-started from the previous frame; joint centres; reps)
               -> ZeroMQ PUB "angles", MQTT kinestream/<subject>/angles, their .mot/.trc recorders, "reps"
               (-> ZeroMQ PUB "pose": keypoints, markers, joint centres, while someone subscribes to it)

Everything runs in the event loop, about 2.5 ms a frame with arm markers,
while ZeroMQ's own I/O thread keeps receiving. Every frame warm-starts from
the previous frame's own solution, so a recording equals ``process
--streaming`` on the same frames. When the loop falls behind (frames waiting
in ZeroMQ's queue), every waiting frame is still cleaned and augmented (the
filters and the LSTM need them all) but only the newest is solved: the others
are skipped (latest wins), counted and logged. With ``service.latest_wins =
false`` (recordings where every frame matters more than latency) every frame
is solved, later. With several people, each turn solves one frame of each person with frames waiting, in turn,
until none waits: latest wins within each person's own frames, and no one's backlog holds another's frames back.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kinestream.assets import get_assets
from kinestream.live import release_signals, stop_on_signals
from kinestream.live.calibrate import served_subject
from kinestream.live.metrics import Metrics, Throttled
from kinestream.live.mqtt import MqttPublisher
from kinestream.live.mqtt import check_settings as check_mqtt
from kinestream.live.people import People, Refusal
from kinestream.live.sinks import MqttSink, PoseSink, Sink, ZmqSink
from kinestream.live.sockets import Sockets
from kinestream.live.source import Arrival, Heard, KeypointSource, Refused
from kinestream.live.transport import Access, check_bind
from kinestream.pipeline import Pipeline
from kinestream.settings import Settings

if TYPE_CHECKING:
    from kinestream.reps import RepEvent

log = logging.getLogger("kinestream.live.service")

SUBSCRIPTION_MAX_BYTES = (
    1024  # a frame from a subscriber: a topic (the longest, b"status"), or a CURVE handshake (~300)
)
SUBSCRIPTION_QUEUE = 1000  # subscription messages queued per subscriber before ZeroMQ stops reading it


# ---------------------------------------------------------------- the asyncio shell


def _attempt(what: str, fn, *args) -> None:
    """``fn(*args)`` to close ``what``; a failure is logged, and the caller goes on closing the rest."""
    try:
        fn(*args)
    except Exception as exc:
        log.error("closing %s failed: %s: %s", what, type(exc).__name__, exc)


class Supervisor:
    """The service's tasks, each run as a named task, restarted when it dies.

    When one dies it is logged, marked in ``health`` and started again (at most RESTARTS times); past that ``stop`` is
    set and ``healthy`` is False (exit status 1, for a supervisor of the process to restart it).
    """

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


def _output_sinks(
    pub, mqtt_endpoint: str | None, settings: Settings, subject: str, pose_every: int, pipeline: Pipeline
) -> tuple[list[Sink], MqttSink | None, PoseSink]:
    """The service's sinks: the angles on ZeroMQ, on MQTT when a broker is given (``settings.mqtt``), the pose topic."""
    sinks: list[Sink] = [ZmqSink(pub)]
    mqtt = MqttSink(MqttPublisher.from_settings(mqtt_endpoint, settings.mqtt, subject)) if mqtt_endpoint else None
    if mqtt is not None:
        sinks.append(mqtt)
    pose = PoseSink(pub, pose_every, pipeline.keypoints, pipeline.markers)
    return [*sinks, pose], mqtt, pose


class Service:
    """Sockets and tasks around the people served (:class:`kinestream.live.people.People`).

    What the source hears is admitted (each subject their own person, up to ``service.max_people``), the waiting frames
    are solved each turn of the receive loop, one of each person's in turn, people silent too long are closed out, the
    status is published, and the tasks are supervised.

    ``model``: a scaled .osim (``<model>.json`` beside it holding mass, height and floor offset, as ``calibrate``
    writes); None: the generic model, unscaled. ``calibrate``: a folder; everyone new without a ``[people]`` model
    is calibrated from their own still pose first (``serve --calibrate``). A worker of ``serve --workers N`` is
    ``worker`` "k/N" (in its status), its output connects to its parent's relay (``output_connect``), and only the
    first has the default person (``default_person``). ``settings``: every setting the service and its people read.
    """

    MAX_BATCH = 1000  # messages taken from ZeroMQ before the waiting frames are solved
    # A turn of the receive loop takes messages for at most this long, then solves and lets the other tasks
    # (status, subscriptions, MQTT) run: a flood (each frame up to 11 LSTM steps) cannot hold the loop.
    TURN_BUDGET_S = 0.010

    def __init__(
        self,
        settings: Settings,
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
        output_connect: bool = False,
        default_person: bool = True,
        worker: str = "",
        calibrate: str | Path | None = None,
    ):
        self.settings, self.input_endpoint = settings, input_endpoint
        self.output_endpoint, self.mqtt_endpoint = output_endpoint, mqtt
        if mqtt:
            check_mqtt(mqtt, settings.mqtt)  # a bad broker address or a password in the clear: said before it starts
        self.record = Path(record) if record else None
        self.worker, self.output_connect = worker, output_connect
        self.status_interval, self.status_out, self.rate = status_interval, status_out, rate
        self.assets = get_assets(settings)
        person = served_subject(settings, self.assets, model, mass, height)  # the default person's model
        self.subject = str(settings.subject.name)
        self.metrics = Metrics()
        svc = settings.service
        self.source = KeypointSource(svc)  # decoding, the time rules per subject, restarts
        self.people = People(  # the default person (frames without a subject) made now, everyone else as they come
            settings,
            self.assets,
            person,
            self.subject,
            self.metrics,
            self.metrics.reject,
            record=self.record,
            rate=rate,
            default_person=default_person,
            calibrate=Path(calibrate) if calibrate else None,
        )
        self.person = self.people.default
        self.pipeline: Pipeline[Arrival] = self.person.pipeline
        self.coords = self.pipeline.coordinates
        self.pose_every = int(svc.pose_every)  # 0: never
        self._log_every = Throttled(log)  # one line per kind every 5 s at most: a flood must not flood the log
        if model is None:
            log.warning("no --model given: the generic model, unscaled; 'kinestream calibrate' makes the subject's")
        self.sinks: list[Sink] = []  # where frames go, made when the service opens
        self._pose: PoseSink | None = None
        self._mqtt: MqttSink | None = None
        self.supervisor = Supervisor()  # the tasks, started again when they die; the service's health

        if not output_connect:
            check_bind(output_endpoint, settings, "angles output")
        self.access = Access.from_settings(settings.curve)  # CURVE keys and who may connect; None when off
        self.sockets = Sockets(settings, input_endpoint, output_endpoint, self.access, self.metrics)

    # -- set-up and tear-down

    def _open(self) -> None:
        self.sockets.open(
            send_queue=int(self.settings.service.send_queue),
            subscription_max_bytes=SUBSCRIPTION_MAX_BYTES,
            subscription_queue=SUBSCRIPTION_QUEUE,
            output_connect=self.output_connect,
        )
        self.sub, self.pub = self.sockets.sub, self.sockets.pub
        self.sinks, self._mqtt, self._pose = _output_sinks(
            self.pub, self.mqtt_endpoint, self.settings, self.subject, self.pose_every, self.pipeline
        )
        # each person's recording (serve writes its .c3d from the markers at the end: commands.live.recording_c3d)
        self.people.open(self.sinks)

    def _close(self) -> None:
        """Close every resource, each on its own: one that fails to close leaves none of the others open."""
        _attempt("the recordings", self.people.close)
        for sink in self.sinks:
            _attempt(sink.name, sink.close)
        self.sockets.close(_attempt)

    # -- the frame path

    def handle(self, payload: bytes, recv_ns: int) -> None:
        """One keypoint payload from the SUB socket: decode, clean, augment, dispatch. Never raises."""
        self._admit(self.source.decode(payload, recv_ns))

    def _admit(self, heard: Heard | Refused) -> None:
        """A frame the source heard, admitted to its subject's person, then cleaned and augmented; or refused.

        The person is made when new, up to max_people; what the source or the people refused is counted and logged.
        """
        if not isinstance(heard, Heard):
            self.metrics.reject(heard.reason, heard.detail, counted_by=self.source.counts)
            return
        frame, recv_ns = heard.frame, heard.recv_ns
        person = self.people.admit(frame.subject, recv_ns)
        if person is None:  # another service's (service.people)
            self.metrics.others += 1
            return
        if isinstance(person, Refusal):
            self.metrics.reject(person.reason, person.detail)
            return
        if heard.restart is not None:  # one line every 5 s at most: a source that keeps restarting must not flood
            self._log_every(
                "restart",
                logging.WARNING,
                "keypoint source of %s restarted (%s): a new session, stages reset; %d resets so far",
                person.subject,
                heard.restart,
                self.metrics.resets + 1,
            )
            person.restart(frame.t)
            self.metrics.resets += 1
        self.source.keep(frame.subject)
        self.metrics.frames_in += 1
        if heard.silence_s is not None:
            log.info("stream of %s resumed after %.1f s of silence", person.subject, heard.silence_s)
        person.prepare(frame, recv_ns)

    def recordings(self) -> list[tuple[Path, Path]]:
        """Every recording made so far, one per person and appearance: (.mot, _markers.trc), in order."""
        return list(self.people.recordings)

    def rep_events(self) -> list[RepEvent]:
        """The complete reps of the session so far (the default person's: frames without a subject)."""
        return self.person.rep_events()

    # -- tasks

    async def _take_held(self) -> bool:
        """Take what ZeroMQ holds now (at most MAX_BATCH messages): each frame decoded, cleaned and augmented.

        True when nothing is left (every frame that has arrived is taken).
        """
        import zmq

        deadline = time.perf_counter_ns() + int(self.TURN_BUDGET_S * 1e9)
        for _ in range(self.MAX_BATCH):
            try:
                parts = await self.sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return True
            self._admit(self.source.take(parts, time.time_ns()))  # [b"keypoints", payload], or refused
            if time.perf_counter_ns() >= deadline:  # the rest waits for the next turn, after the other tasks
                return False
        return False

    async def _receive(self, stop: asyncio.Event) -> None:
        """Take what ZeroMQ holds, then solve the waiting frames, one of each person's in turn, for at most a turn.

        A turn's time at most; then close out the people silent too long; again as frames come.
        """
        while not stop.is_set():
            taken = True
            if await self.sub.poll(0 if self.people.waiting() else 100):
                taken = await self._take_held()
            self.people.solve_turn(self.TURN_BUDGET_S)
            if taken:  # silence is judged only with every frame that has arrived taken (a busy loop is no silence)
                for subject in self.people.close_silent(time.time_ns()):
                    self.source.forget(subject)
            await asyncio.sleep(0)  # let the status, MQTT and monitor tasks run between batches

    async def _status(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.status_interval)
            except TimeoutError:
                pass
            snap = self.status()
            for sink in self.sinks:  # the status topic on ZeroMQ and MQTT
                try:
                    sink.on_status(snap)
                except Exception as exc:  # the status is lost there, the service goes on
                    self.metrics.reject(sink.failure, f"{sink.name}: status: {type(exc).__name__}: {exc}")
            if self.status_out is not None:
                try:
                    self.status_out(self.metrics.line(snap))
                except OSError:  # a closed terminal or pipe costs the status line, not the status
                    self.status_out = None

    def status(self) -> dict:
        """The service's status: its totals, the source's counts, the tasks' health and each person's line."""
        snap = self.metrics.snapshot()
        snap.update(self.source.status())  # rejected, missed_frames, clock_resets
        snap["rejected"] = {**snap["rejected"], **self.metrics.rejected}
        snap["subject"] = self.subject
        snap["share"] = self.people.share  # whom this service serves (service.people): "" everyone
        if self.worker:
            snap["worker"] = self.worker
        snap["pid"] = os.getpid()  # the process serving (a worker's, under serve --workers)
        snap["healthy"] = self.supervisor.healthy  # False once a task kept dying and the service stopped itself
        snap["tasks"] = dict(self.supervisor.health)  # a task that died and what became of it
        snap["filter_delay_ms"] = round(self.person.delay_ms(), 1)
        snap["people"] = self.people.status()  # a line for each person served now, by subject
        snap["closed_out"] = self.people.closed_out
        snap["curve"] = self.access is not None
        snap["pose"] = {"every": self.pose_every, "subscribed": False, "sent": 0}  # until it opens
        for sink in self.sinks:
            snap.update(sink.status())  # the pose topic, MQTT
        # solved frames left out of the recordings (unsolved ones), when recording
        snap["rows_not_recorded"] = self.people.rows_not_recorded()
        return snap

    async def _drain(self) -> None:
        """Finish what is in flight.

        The frames ZeroMQ has already received, the cleaner's look-ahead and every waiting frame, none skipped.
        """
        await self._take_held()
        self.people.drain("the service stopped")
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
        """Serve, opened (``async with service``), until ``stop`` is set; returns the final status.

        The tasks are started and supervised, then the frames in flight drained and the tasks ended.
        """
        tasks = self.supervisor
        tasks.start("receive", lambda: self._receive(stop), stop)
        tasks.start("status", lambda: self._status(stop), stop)
        pose = self._pose  # the output's subscriptions tell it whether "pose" is wanted
        assert pose is not None, "serve runs opened: async with service"
        tasks.start("subscriptions", lambda: self.sockets.subscriptions(pose.subscription, stop), stop)
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
            self.people.default_subject.model,
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
