"""The viewer's core: the service's topics, or a recorded session, logged to Rerun in one layout.

:class:`RerunLog` writes what kinestream knows into a Rerun recording under
fixed entity paths, on the timeline ``time`` (the frame's time in seconds: the
source's clock live, the file's time column in playback):

    world                          view coordinates: right-handed, Y up (OpenSim's)
    world/keypoints                the keypoints (live: cleaned, as the augmenter reads them)
    world/keypoints/skeleton       their connections (OpenPose BODY_25's pairs present in the frame)
    world/markers                  the augmented markers (*_study)
    world/model/joints             the model's joint centres (pelvis, hips, knees, ankles, torso)
    world/model/segments           pelvis-hip-knee-ankle on each side, pelvis-torso
    angles/knee                    flexion in degrees, right and left (two series); so angles/hip,
                                   angles/ankle; and angles/pelvis_tilt
    angles/knee/reps               each rep at its bottom, at its depth (peak knee flexion)
    reps                           one line per rep, at its end: depth, deep enough or not, tempo
    status, status/*               live only: the service's rate, latency, skipped frames (text and curves)

:class:`LiveView` feeds it from a running service (topics ``angles``, ``pose``,
``reps``, ``status``; CURVE as any subscriber). :func:`play_motion` feeds it
from a recorded .mot (with its ``_markers.trc`` and the scaled model, joint
centres by the model's own kinematics, reps by the same counter), and
:func:`play_trc` from a .trc of keypoints. Live and playback give the same
entities, but for ``status``: a file has none.

This module imports rerun (the optional ``view`` extra); the command checks
for it first (:func:`kinestream.live.viewers.require_rerun`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from kinestream.centres import CENTRE_BODIES, TORSO_AXIS, CentresFromModel
from kinestream.errors import ProtocolError
from kinestream.files.mot import Motion, is_translation
from kinestream.files.trc import MarkerTable
from kinestream.ingest import canonical
from kinestream.live.messages import decode_angles, decode_pose, decode_reps, decode_status
from kinestream.live.protocol import TOPIC_ANGLES, TOPIC_POSE, TOPIC_REPS, TOPIC_STATUS, Rejected
from kinestream.live.transport import endpoint_host, secure_client
from kinestream.reps import detect_reps
from kinestream.settings import Settings

TIMELINE = "time"
FLUSH_S = 0.1  # the live view sends what it received this often (in bulk: cheaper than frame by frame)
APPLICATION_ID = "kinestream"

#: The curves shown: entity -> the model's coordinates it plots (degrees), right then left.
CURVES = {
    "angles/knee": ("knee_angle_r", "knee_angle_l"),
    "angles/hip": ("hip_flexion_r", "hip_flexion_l"),
    "angles/ankle": ("ankle_angle_r", "ankle_angle_l"),
    "angles/pelvis_tilt": ("pelvis_tilt",),
}
REP_MARKS = "angles/knee/reps"

#: OpenPose BODY_25's connections (its POSE_BODY_25_PAIRS_RENDER), by keypoint name.
BONES = (
    ("Neck", "MidHip"),
    ("Neck", "RShoulder"),
    ("RShoulder", "RElbow"),
    ("RElbow", "RWrist"),
    ("Neck", "LShoulder"),
    ("LShoulder", "LElbow"),
    ("LElbow", "LWrist"),
    ("MidHip", "RHip"),
    ("RHip", "RKnee"),
    ("RKnee", "RAnkle"),
    ("MidHip", "LHip"),
    ("LHip", "LKnee"),
    ("LKnee", "LAnkle"),
    ("Neck", "Nose"),
    ("Nose", "REye"),
    ("REye", "REar"),
    ("Nose", "LEye"),
    ("LEye", "LEar"),
    ("LAnkle", "LBigToe"),
    ("LBigToe", "LSmallToe"),
    ("LAnkle", "LHeel"),
    ("RAnkle", "RBigToe"),
    ("RBigToe", "RSmallToe"),
    ("RAnkle", "RHeel"),
)
#: The model's segments between joint centres.
SEGMENTS = (
    ("pelvis", "hip_r"),
    ("hip_r", "knee_r"),
    ("knee_r", "ankle_r"),
    ("pelvis", "hip_l"),
    ("hip_l", "knee_l"),
    ("knee_l", "ankle_l"),
    ("pelvis", "torso"),
)

RIGHT, LEFT, MIDDLE = (230, 80, 60), (60, 130, 230), (200, 200, 200)
MARKER_COLOUR, JOINT_COLOUR, REP_COLOUR = (255, 170, 40), (90, 220, 120), (255, 220, 0)


def side(name: str) -> tuple[int, int, int]:
    """The colour of a keypoint, marker or joint by its side: right red, left blue, else grey."""
    if name.startswith(("R", "r_", "r.")) or name.endswith("_r") or name == "RHJC_study":
        return RIGHT
    if name.startswith(("L", "l_", "L_", "L.")) or name.endswith("_l"):
        return LEFT
    return MIDDLE


def blueprint(live: bool) -> rrb.Blueprint:
    """The layout: the body in 3D on the left; knee, hip, ankle and pelvis curves, the reps and the status on the right.

    The body has a floor grid; the status is live only. Live, the curves scroll: they show the last 10 s.
    """
    window = (
        rrb.VisibleTimeRange(
            TIMELINE,
            start=rrb.TimeRangeBoundary.cursor_relative(seconds=-10.0),
            end=rrb.TimeRangeBoundary.cursor_relative(),
        )
        if live
        else None
    )

    def curve(origin: str, name: str) -> rrb.TimeSeriesView:
        return rrb.TimeSeriesView(origin=origin, name=name, time_ranges=window)

    below: list[rrb.View] = [rrb.TextLogView(origin="reps", name="reps")]
    if live:
        below.append(rrb.TextDocumentView(origin="status", name="service"))
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Spatial3DView(
                origin="world",
                name="body",
                line_grid=rrb.LineGrid3D(visible=True, spacing=0.25),
                eye_controls=rrb.EyeControls3D(position=(1.9, 1.3, 1.5), look_target=(0.0, 0.8, 0.0), eye_up=(0, 1, 0)),
            ),
            rrb.Vertical(
                curve("angles/knee", "knee flexion (deg)"),
                curve("angles/hip", "hip flexion (deg)"),
                curve("angles/ankle", "ankle flexion (deg)"),
                curve("angles/pelvis_tilt", "pelvis tilt (deg)"),
                rrb.Horizontal(*below),
                row_shares=[3, 2, 2, 2, 2],
            ),
            column_shares=[3, 2],
        ),
        collapse_panels=True,
    )


@dataclass
class _Column:
    """Frames of one entity waiting to be sent as columns.

    Their times and, per frame, an array of rows (points (N, 3), segments (N, 2, 3) or scalars (N,)).
    """

    kind: Any  # rr.Points3D, rr.LineStrips3D or rr.Scalars (Any: their type is rerun's, absent without the extra)
    times: list[float] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    def columns(self):
        lengths = [len(r) for r in self.rows]
        if self.kind is rr.Points3D:
            data = np.concatenate(self.rows) if sum(lengths) else np.empty((0, 3), np.float32)
            return rr.Points3D.columns(positions=data).partition(lengths)
        if self.kind is rr.LineStrips3D:
            data = np.concatenate(self.rows) if sum(lengths) else np.empty((0, 2, 3), np.float32)
            return rr.LineStrips3D.columns(strips=data).partition(lengths)
        return rr.Scalars.columns(scalars=np.concatenate(self.rows)).partition(lengths)


class RerunLog:
    """What kinestream knows, logged to one Rerun recording under the entities of this module's docstring.

    A live viewer logs 60 frames a second beside the service on the same machine, so it logs little and in
    bulk: a frame's positions and curve values wait in columns until :meth:`flush` sends them (one call per
    entity for all the frames waiting: the live view flushes every :data:`FLUSH_S`); names, colours and sizes
    go out only when the set of points shown changes (Rerun keeps the latest of each); the two sides of a
    curve share an entity. Rep events and the status go out at once.
    """

    def __init__(self, rec: rr.RecordingStream):
        self.rec = rec
        self._bones: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        self._curves: dict[tuple[str, ...], list[tuple[str, list[int]]]] = {}
        self._shown: dict[str, tuple] = {}  # entity -> the names (or bones) its labels and colours were logged for
        self._pending: dict[str, _Column] = {}

    def _later(self, entity: str, kind: type, t: float, rows: np.ndarray) -> None:
        column = self._pending.setdefault(entity, _Column(kind))
        column.times.append(float(t))
        column.rows.append(rows)

    def flush(self) -> None:
        """Send every frame waiting, one call per entity."""
        for entity, column in self._pending.items():
            if column.times:
                self.rec.send_columns(
                    entity,
                    indexes=[rr.TimeColumn(TIMELINE, duration=np.array(column.times))],
                    columns=column.columns(),
                )
        self._pending.clear()

    def setup(self, live: bool) -> None:
        """The static parts (axes, curve styles) and the layout; call once the sinks are set."""
        rec = self.rec
        rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Y_UP, static=True)
        for entity, coords in CURVES.items():
            sides = [c.rsplit("_", 1)[-1] for c in coords] if len(coords) == 2 else [entity.rsplit("/", 1)[-1]]
            colours = [RIGHT, LEFT] if len(coords) == 2 else [MIDDLE]
            rec.log(entity, rr.SeriesLines(colors=colours, names=sides, widths=[2.0] * len(sides)), static=True)
        rec.log(
            REP_MARKS,
            rr.SeriesPoints(colors=[REP_COLOUR], markers=["diamond"], marker_sizes=[7.0], names=["rep depth"]),
            static=True,
        )
        rec.send_blueprint(blueprint(live))

    def _time(self, t: float) -> None:
        self.rec.set_time(TIMELINE, duration=float(t))

    def _points(self, entity: str, t: float, names: list[str], xyz: np.ndarray, radius: float, colours) -> np.ndarray:
        """The finite points of ``xyz`` at ``t``: positions in the next flush; returns which rows were finite.

        Names, colours and size go at once when the set shown changes.
        """
        ok = np.isfinite(xyz).all(axis=1)
        shown = tuple(_kept(names, ok))
        if self._shown.get(entity) == shown:
            self._later(entity, rr.Points3D, t, xyz[ok])
        else:
            self._shown[entity] = shown
            colours = colours(shown) if callable(colours) else [colours]
            self._time(t)
            self.rec.log(
                entity, rr.Points3D(xyz[ok], radii=radius, colors=colours, labels=list(shown), show_labels=False)
            )
        return ok

    def _lines(
        self, entity: str, t: float, ends: list[tuple[int, int]], xyz: np.ndarray, radius: float, colours
    ) -> None:
        """One segment per pair of rows of ``xyz`` at ``t``: the lines in the next flush.

        Colours and size go at once when the segments shown change.
        """
        strips = xyz[np.array(ends, dtype=int).reshape(-1, 2)]  # (segments, 2, 3)
        if self._shown.get(entity) == tuple(ends):
            self._later(entity, rr.LineStrips3D, t, strips)
        else:
            self._shown[entity] = tuple(ends)
            self._time(t)
            self.rec.log(entity, rr.LineStrips3D(strips, radii=radius, colors=colours(ends)))

    def keypoints(self, t: float, names: list[str], xyz: np.ndarray) -> None:
        """The keypoints, labelled, and their connections, coloured by side.

        The labels show on hover; a bone is drawn when both ends are present.
        """
        key = tuple(names)
        if key not in self._bones:
            index = {n: i for i, n in enumerate(names)}
            self._bones[key] = [(index[a], index[b]) for a, b in BONES if a in index and b in index]
        xyz = np.asarray(xyz, dtype=np.float32)
        ok = self._points("world/keypoints", t, names, xyz, 0.018, lambda shown: [side(n) for n in shown])
        bones = [(a, b) for a, b in self._bones[key] if ok[a] and ok[b]]

        def colours(ends):
            return [side(names[b]) if side(names[a]) == side(names[b]) else MIDDLE for a, b in ends]

        self._lines("world/keypoints/skeleton", t, bones, xyz, 0.008, colours)

    def markers(self, t: float, names: list[str], xyz: np.ndarray) -> None:
        """The augmented markers, labelled (the labels show on hover)."""
        self._points("world/markers", t, names, np.asarray(xyz, dtype=np.float32), 0.01, MARKER_COLOUR)

    def centres(self, t: float, names: list[str], xyz: np.ndarray) -> None:
        """The model's joint centres and the segments between them (nothing when IK did not solve the frame)."""
        xyz = np.asarray(xyz, dtype=np.float32)
        index = {n: i for i, n in enumerate(names)}
        ok = self._points("world/model/joints", t, names, xyz, 0.025, JOINT_COLOUR)
        segments = [
            (index[a], index[b]) for a, b in SEGMENTS if a in index and b in index and ok[index[a]] and ok[index[b]]
        ]
        self._lines("world/model/segments", t, segments, xyz, 0.015, lambda ends: [JOINT_COLOUR] * len(ends))

    def angles(self, t: float, coords: list[str], q: np.ndarray) -> None:
        """The shown curves at ``t`` (degrees).

        An entity whose values are not all finite (an unsolved frame) is left out of that frame.
        """
        key = tuple(coords)
        if key not in self._curves:
            index = {c: i for i, c in enumerate(coords)}
            self._curves[key] = [
                (entity, [index[c] for c in shown])
                for entity, shown in CURVES.items()
                if all(c in index for c in shown)
            ]
        q = np.asarray(q, dtype=float)
        for entity, columns in self._curves[key]:
            values = q[columns]
            if np.isfinite(values).all():
                self._later(entity, rr.Scalars, t, values)

    def rep(self, rep: dict) -> None:
        """A completed rep: a mark on the knee curve at its bottom and depth, a line in ``reps`` at its end.

        The line gives its kind and cues. A rep the stream's end left incomplete is a line with its reason, and no mark.
        """
        if rep.get("complete") is False:
            self._time(rep.get("end", rep.get("start", 0.0)))
            self.rec.log("reps", rr.TextLog(f"rep {rep['index']} incomplete: {rep.get('reason')}", level="WARN"))
            return
        depth = float(rep["knee_peak"])
        self._time(rep["bottom"])
        self.rec.log(REP_MARKS, rr.Scalars(depth))
        self._time(rep["end"])
        tempo = f"down {rep.get('descent_s', float('nan')):.1f} s, up {rep.get('ascent_s', float('nan')):.1f} s"
        deep = "deep enough" if rep.get("deep_enough") else "not deep enough"
        kind = str(rep.get("kind", "squat")).replace("_", "-")
        cues = f"; {', '.join(rep['cues'])}" if rep.get("cues") else ""
        text = f"rep {rep['index']} ({kind}): depth {depth:.0f} deg (knee), {deep}, {tempo}{cues}"
        self.rec.log("reps", rr.TextLog(text, level="REP"))

    def status(self, t: float, status: dict) -> None:
        """The service's status at the latest frame: a text and the curves of rate, latency p99 and skipped."""
        lat = status.get("latency_ms") or {}
        text = (
            f"**{status.get('rate_hz', 0):.1f} Hz** — frames in {status.get('frames_in')}, "
            f"out {status.get('frames_out')}, skipped {status.get('skipped')}  \n"
            f"latency p50/p95/p99 {lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')} ms  \n"
            f"reps {status.get('reps', 0)}, last depth {status.get('last_rep_depth_deg')} deg"
        )
        self._time(t)
        self.rec.log("status", rr.TextDocument(text, media_type=rr.MediaType.MARKDOWN))
        for name, value in (
            ("rate_hz", status.get("rate_hz")),
            ("latency_p99_ms", lat.get("p99")),
            ("skipped", status.get("skipped")),
        ):
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.rec.log(f"status/{name}", rr.Scalars(float(value)))


def _kept(names: list[str], ok: np.ndarray) -> list[str]:
    return [n for n, k in zip(names, ok, strict=True) if k]


# ---------------------------------------------------------------- live


@dataclass
class LiveCounts:
    """What a live view has received and logged, by topic; ``rejected``: messages it could not read."""

    angles: int = 0
    pose: int = 0
    reps: int = 0
    status: int = 0
    rejected: int = 0
    last_status: dict = field(default_factory=dict)


class LiveView:
    """A subscriber to a running service that logs every message to a :class:`RerunLog`."""

    TOPICS = (TOPIC_ANGLES, TOPIC_POSE, TOPIC_REPS, TOPIC_STATUS)

    def __init__(self, log: RerunLog):
        self.log = log
        self.counts = LiveCounts()
        self._t: float | None = None  # the latest frame's time: where the status goes on the timeline

    def handle(self, topic: bytes, payload: bytes) -> None:
        """One message from the service, logged; one that cannot be read is counted, never raised."""
        try:
            if topic == TOPIC_ANGLES:
                msg = decode_angles(payload)
                self._t = float(msg["t"])
                self.log.angles(self._t, msg["coords"], msg["q"])
                self.counts.angles += 1
            elif topic == TOPIC_POSE:
                msg = decode_pose(payload)
                t = float(msg["t"])
                for part, write in (
                    ("keypoints", self.log.keypoints),
                    ("markers", self.log.markers),
                    ("centres", self.log.centres),
                ):
                    if part in msg:
                        write(t, msg[part], msg[f"{part}_xyz"])
                self.counts.pose += 1
            elif topic == TOPIC_REPS:
                self.log.rep(decode_reps(payload)["rep"])
                self.counts.reps += 1
            elif topic == TOPIC_STATUS:
                msg = decode_status(payload)
                if self._t is not None:
                    self.log.status(self._t, msg)
                self.counts.status += 1
                self.counts.last_status = msg
        except (Rejected, KeyError, TypeError, ValueError):
            self.counts.rejected += 1

    async def run(
        self,
        endpoint: str,
        settings: Settings,
        stop: asyncio.Event,
        on_status: Callable[[LiveCounts], None] | None = None,
    ) -> LiveCounts:
        """Subscribe to ``endpoint`` (CURVE when ``settings.curve`` turns it on) until ``stop`` is set.

        ``on_status`` is called after each status message (about once a second).
        """
        import zmq
        import zmq.asyncio

        endpoint_host(endpoint)  # a malformed endpoint is said before anything starts
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.RCVHWM, 100_000)  # a slow viewer loses nothing for a long while; the service never waits
            secure_client(sub, settings.curve)
            for topic in self.TOPICS:
                sub.setsockopt(zmq.SUBSCRIBE, topic)
            try:
                sub.connect(endpoint)
            except zmq.ZMQError as exc:
                raise ProtocolError(
                    f"cannot connect to {endpoint}: {exc}; give --endpoint tcp://HOST:PORT",
                    key="--endpoint",
                    given=endpoint,
                    valid="tcp://HOST:PORT",
                ) from None
            flushed = time.monotonic()
            while not stop.is_set():
                if await sub.poll(int(FLUSH_S * 500)):
                    await self._take_held(sub, on_status)
                if time.monotonic() - flushed >= FLUSH_S:
                    self.log.flush()
                    flushed = time.monotonic()
            await self._take_held(sub, on_status)  # what arrived before the stop is logged too
            self.log.flush()
        finally:
            sub.close(0)
            ctx.term()
        return self.counts

    async def _take_held(self, sub, on_status) -> None:
        """Every message ZeroMQ holds now."""
        import zmq

        while True:
            try:
                parts = await sub.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self.counts.rejected += 1
                continue
            self.handle(bytes(parts[0]), bytes(parts[1]))
            if parts[0] == TOPIC_STATUS and on_status is not None:
                on_status(self.counts)


# ---------------------------------------------------------------- playback


def _is_marker(name: str) -> bool:
    return name.endswith("_study")


def play_trc(log: RerunLog, table: MarkerTable) -> int:
    """Every frame of a .trc: its keypoints and, when it holds them, its augmented markers; returns the frame count.

    The keypoints have OpenPose names, read as BODY_25's; a session's ``_markers.trc`` holds the markers.
    """
    names = [canonical(n) for n in table.names]
    kp = [i for i, n in enumerate(names) if not _is_marker(n)]
    mk = [i for i, n in enumerate(names) if _is_marker(n)]
    for i, t in enumerate(table.time):
        if kp:
            log.keypoints(float(t), [names[k] for k in kp], table.xyz[i, kp])
        if mk:
            log.markers(float(t), [names[k] for k in mk], table.xyz[i, mk])
    log.flush()
    return table.n_frames


def play_motion(
    log: RerunLog,
    motion: Motion,
    *,
    model: str | Path,
    markers: MarkerTable | None = None,
    rep_settings=None,
) -> dict:
    """A recorded session: the curves, joint centres, keypoints, markers and reps; returns what was logged.

    The curves of ``motion``, the joint centres of ``model`` posed frame by frame (OpenSim's kinematics), the keypoints
    and markers of ``markers`` at the motion's times, and the reps the counter finds. What was logged: frames, frames
    with markers, reps.
    """
    fk = CentresFromModel(model)
    joints = list(CENTRE_BODIES)
    values = np.asarray(motion.values, dtype=float)
    shown = values.copy()
    if not motion.in_degrees:  # the curves are in degrees, whatever the file
        for k, c in enumerate(motion.names):
            if not is_translation(c):
                shown[:, k] = np.degrees(values[:, k])
    rows: dict[float, int] = {}
    names: list[str] = []
    if markers is not None:
        rows = {round(float(t), 6): i for i, t in enumerate(markers.time)}
        names = [canonical(n) for n in markers.names]
    kp = [i for i, n in enumerate(names) if not _is_marker(n)]
    mk = [i for i, n in enumerate(names) if _is_marker(n)]
    centres = {name: np.full((len(motion.time), 3), np.nan) for name in (*joints, TORSO_AXIS)}
    with_markers = 0
    for i, t in enumerate(motion.time):
        t = float(t)
        log.angles(t, motion.names, shown[i])
        frame = fk.frame(motion.names, values[i], motion.in_degrees)
        for name in centres:
            centres[name][i] = frame[name]
        log.centres(t, joints, np.stack([frame[j] for j in joints]))
        row = rows.get(round(t, 6))
        if markers is not None and row is not None:
            if kp:
                log.keypoints(t, [names[k] for k in kp], markers.xyz[row, kp])
            if mk:
                log.markers(t, [names[k] for k in mk], markers.xyz[row, mk])
            with_markers += 1
    log.flush()
    events, _ = detect_reps(motion, centres, rep_settings)
    for event in events:
        log.rep(event.to_dict())
    return {"frames": len(motion.time), "with_markers": with_markers, "reps": len(events)}
