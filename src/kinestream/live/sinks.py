"""Where a person's frames go: the angles and reps on ZeroMQ, on MQTT, into the recording, and the pose topic.

Each sink takes what the service hands it, as values: a prepared frame (:meth:`Sink.on_prepared`, the markers of
every frame, solved or skipped), a solved frame (:meth:`Sink.on_frame`), a rep message (:meth:`Sink.on_rep`), a
restarted source (:meth:`Sink.on_restart`), a person closed out (:meth:`Sink.on_leave`) and the status
(:meth:`Sink.on_status`); :meth:`Sink.status` is what it has to add to the status; :meth:`Sink.close` ends it.
The ZeroMQ, MQTT and pose sinks serve every person (each frame names its subject); a recording is one person's.
A sink may raise: the service counts the failure under the sink's ``failure`` reason and goes on, and no sink's
failure costs another sink its frame.

The sockets are the service's: a sink is given the output socket and sends on it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kinestream.centres import CENTRE_BODIES
from kinestream.files.record import MotRecorder, TrcRecorder, set_aside
from kinestream.live.messages import angles_json, encode_angles, encode_pose, encode_reps, encode_status
from kinestream.live.protocol import TOPIC_ANGLES, TOPIC_POSE, TOPIC_REPS, TOPIC_STATUS
from kinestream.live.source import Arrival
from kinestream.pipeline import Prepared, Result

if TYPE_CHECKING:
    from kinestream.live.mqtt import MqttPublisher

log = logging.getLogger("kinestream.live.service")


@dataclass(frozen=True)
class Solved:
    """A solved frame as the sinks take it.

    The pipeline's result, the names of its coordinates, whose it is and how long since it arrived.
    """

    result: Result[Arrival]
    coords: list[str]
    subject: str
    latency_ms: float
    bodies: tuple[str, ...] = ()  # the model's bodies: the rows of ``result.bodies`` when it has them


class Sink:
    """A place frames go; every method does nothing unless the sink has use for it."""

    name = "a sink"  # said with a failure
    failure = "publish_error"  # the reason a failure of this sink is counted under

    def on_prepared(self, prepared: Prepared[Arrival]) -> None:
        """A frame out of clean + augment (solved later, or skipped)."""

    def on_frame(self, out: Solved) -> None:
        """A solved frame."""

    def on_rep(self, message: dict) -> None:
        """A rep that ended (the protocol's reps message)."""

    def on_restart(self, t: float) -> None:
        """The source started a new session; its first frame's time is ``t``."""

    def on_status(self, status: dict) -> None:
        """The service's status, every status interval."""

    def on_leave(self, subject: str) -> None:
        """``subject`` was closed out (silent too long): what the sink kept for them may go."""

    def wants_bodies(self, subject: str) -> bool:
        """Whether ``subject``'s next solved frame should carry every body's pose (computed only when asked)."""
        return False

    def status(self) -> dict:
        """What the sink adds to the status."""
        return {}

    def close(self) -> None:
        """No more frames."""


class ZmqSink(Sink):
    """Angles (``angles``), reps (``reps``) and the status (``status``) on the output socket."""

    name = "angles"

    def __init__(self, pub):
        self.pub = pub

    def on_frame(self, out: Solved) -> None:
        """Publish the frame's angles on the ``angles`` topic."""
        r = out.result
        payload = encode_angles(
            r.tag.seq,
            r.t,
            out.coords,
            r.q,
            rmse_mm=r.rmse_mm,
            latency_ms=out.latency_ms,
            sent_ns=r.tag.sent_ns,
            subject=out.subject,
        )
        self.pub.send_multipart([TOPIC_ANGLES, payload], copy=False)

    def on_rep(self, message: dict) -> None:
        """Publish the rep on the ``reps`` topic."""
        self.pub.send_multipart([TOPIC_REPS, encode_reps(message)], copy=False)

    def on_status(self, status: dict) -> None:
        """Publish the status on the ``status`` topic."""
        self.pub.send_multipart([TOPIC_STATUS, encode_status(status)])


class PoseSink(Sink):
    """The keypoints, markers and joint centres of every ``every``-th solved frame on the output's ``pose`` topic.

    Joint centres are NaN when IK failed. Sent while a subscription covers the topic (:meth:`want`); ``every`` 0: never.
    Every person's frames are counted on their own.
    """

    name = "pose"

    def __init__(self, pub, every: int, keypoints: list[str], markers: list[str]):
        self.pub = pub
        self.every = int(every)
        self.keypoints = list(keypoints)
        self.markers = list(markers)
        self.wanted = False
        self.topics: set[bytes] = set()  # the subscriptions that cover "pose"
        self.sent = 0
        self._frames: dict[str, int] = {}  # subject -> their frames so far

    def want(self, wanted: bool) -> None:
        """Whether a subscription on the output socket covers ``pose`` (only then is it encoded and sent)."""
        if wanted != self.wanted:
            log.info("a subscriber %s the pose topic", "wants" if wanted else "no longer wants")
        self.wanted = wanted

    def subscription(self, msg: bytes) -> None:
        r"""One message of the output socket's subscribers: ``\x01`` + topic subscribes, ``\x00`` + topic unsubscribes.

        ZeroMQ passes a topic's first subscription and last unsubscription. Constant cost: only the subscriptions that
        cover ``pose`` are kept (b"", b"p", ... b"pose": at most five); any other topic a subscriber holds costs nothing
        here, however many there are.
        """
        topic = msg[1:]
        if not TOPIC_POSE.startswith(topic):
            return
        if msg[:1] == b"\x01":
            self.topics.add(topic)
        elif msg[:1] == b"\x00":
            self.topics.discard(topic)
        self.want(bool(self.topics))

    def _due(self, before: int) -> bool:
        """Whether a subject's frame that has ``before`` frames before it goes out as a pose."""
        return self.wanted and bool(self.every) and before % self.every == 0

    def wants_bodies(self, subject: str) -> bool:
        """A pose goes out with ``subject``'s next frame: it carries every body's pose (an avatar's)."""
        return self._due(self._frames.get(subject, 0))

    def on_frame(self, out: Solved) -> None:
        """Publish the frame's pose when it is due (every ``every``-th of its person's) and a subscription wants it."""
        before = self._frames.get(out.subject, 0)
        self._frames[out.subject] = before + 1
        if not self._due(before):
            return
        r = out.result
        n = len(CENTRE_BODIES)  # the joint centres: the first rows of a centres_array (torso_axis is no point)
        parts = {
            "keypoints": (self.keypoints, r.keypoints),
            "markers": (self.markers, r.markers),
            "centres": (list(CENTRE_BODIES), r.centres[:n] if r.centres is not None else np.full((n, 3), np.nan)),
        }
        if out.bodies:  # NaN when the frame was not solved (or its poses were not asked for)
            bodies = r.bodies if r.bodies is not None else np.full((len(out.bodies), 7), np.nan)
            parts["bodies"] = (list(out.bodies), bodies)
        self.pub.send_multipart([TOPIC_POSE, encode_pose(r.tag.seq, r.t, parts, subject=out.subject)], copy=False)
        self.sent += 1

    def on_leave(self, subject: str) -> None:
        """Forget ``subject``'s frame count."""
        self._frames.pop(subject, None)

    def status(self) -> dict:
        """The ``pose`` topic's part of the status: every how many frames, whether subscribed, how many sent."""
        return {"pose": {"every": self.every, "subscribed": self.wanted, "sent": self.sent}}


class MqttSink(Sink):
    """Angles, reps and the status as JSON on MQTT (``kinestream/<subject>/...``).

    Each person's go under their subject; the status under the publisher's. Its publisher runs as a task of the service
    (:meth:`run`) and reconnects by itself.
    """

    name = "MQTT"

    def __init__(self, publisher: MqttPublisher):
        self.publisher = publisher

    def on_frame(self, out: Solved) -> None:
        """Publish the frame's angles as JSON under its subject's ``angles`` topic."""
        r = out.result
        self.publisher.publish("angles", angles_json(r.tag.seq, r.t, out.coords, r.q, out.subject), out.subject)

    def on_rep(self, message: dict) -> None:
        """Publish the rep as JSON under its subject's ``reps`` topic."""
        self.publisher.publish("reps", json.dumps(message, separators=(",", ":")), message.get("subject"))

    def on_status(self, status: dict) -> None:
        """Publish the status as JSON under the publisher's ``status`` topic."""
        self.publisher.publish("status", json.dumps(status))

    def status(self) -> dict:
        """The MQTT publisher's counts, for the status."""
        return {"mqtt": self.publisher.stats()}

    async def run(self) -> None:
        """Run the MQTT publisher (a task of the service): connect, send, reconnect, until cancelled."""
        await self.publisher.run()

    async def flush(self, timeout_s: float = 1.0) -> None:
        """Give MQTT up to ``timeout_s`` to send what is queued (a connected broker only)."""
        import asyncio
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            stats = self.publisher.stats()
            if not (stats["connected"] and stats["queued"]):
                return
            await asyncio.sleep(0.01)


class RecorderSink(Sink):
    """The session recorded, crash-safe: the angles to a .mot, the keypoints and markers to a .trc beside it.

    The angles of every solved frame go to ``path`` (.mot, with rmse_mm), the cleaned keypoints and markers of every
    prepared frame beside it (``<stem>_markers.trc``; ``serve`` writes its .c3d at the end). An earlier recording at
    those paths is set aside, not overwritten. Rows go on in time across a restarted source, from the recording's own
    last row. ``path`` and ``markers`` are where it writes; ``moved``, the earlier files it set aside (old, new).
    """

    name = "the recording"
    failure = "record_error"

    def __init__(self, path: str | Path, coords: list[str], columns: list[str], rate: float):

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        markers = path.with_name(path.stem + "_markers.trc")
        self.path, self.markers = path, markers
        self.moved = set_aside(path, markers, markers.with_suffix(".c3d"))
        for old, new in self.moved:
            log.warning(
                "kept the earlier recording %s as %s (if it was cut short: kinestream recover %s)", old, new.name, new
            )
        self.rate = rate
        self.offset = 0.0
        self.rows_not_recorded = 0  # solved frames left out (unsolved: OpenSim's readers stop at a NaN)
        self.mot = MotRecorder(path, list(coords) + ["rmse_mm"])
        try:
            self.trc = TrcRecorder(markers, list(columns), rate)
        except Exception:
            self.mot.close()
            raise

    def on_prepared(self, prepared: Prepared[Arrival]) -> None:
        """Record the frame's keypoints and markers in the .trc."""
        self.trc.write(prepared.t + self.offset, np.vstack([prepared.keypoints, prepared.markers]))

    def on_frame(self, out: Solved) -> None:
        """Record the frame's angles in the .mot; an unsolved frame is counted, not recorded."""
        r = out.result
        if r.ok and np.isfinite(r.q).all():  # OpenSim's Storage reader (the GUI's) stops at a NaN
            self.mot.write(r.t + self.offset, np.append(r.q, r.rmse_mm))
        else:
            self.rows_not_recorded += 1

    def on_restart(self, t: float) -> None:
        """Go on in time from the recording's last row: the new session's frames are shifted after it."""
        recorded = [r.last_time for r in (self.mot, self.trc) if r.last_time is not None]
        if recorded:  # the recording goes on in time after the restart, from its own last row
            self.offset = max(recorded) + 1.0 / self.rate - t

    def status(self) -> dict:
        """The rows left out of the recording (unsolved frames), for the status."""
        return {"rows_not_recorded": self.rows_not_recorded}

    def close(self) -> None:
        """Both files closed, each on its own: one that fails to close leaves the other closed."""
        try:
            self.mot.close()
        finally:
            self.trc.close()
