"""One person's frame path, synchronous and without I/O: keypoints in, joint angles, joint centres and reps out.

    prepare: arrange (the model's axes, the augmenter's keypoint order) -> clean -> augment   (FrameProcessor)
    solve:   frame-wise IK -> joint centres -> rep events                                   (FrameSolver)

:class:`Pipeline` holds both for one person. Everything a frame gives comes back as a value: the frame the
cleaner released (:class:`Prepared`, inside a :class:`Taken` with the notes and drops of that step) and, once
solved, a :class:`Result` with the angles, the joint centres and a rep that ended. Nothing is polled and nothing
is set from outside: the floor offset, the rate and the model are constructor arguments.

The two steps are separate so that a caller can schedule them apart: the live service prepares every frame
(the filters and the LSTM need them all) but solves only the newest when it falls behind. :meth:`Pipeline.step`
does both. ``serve``, ``process --streaming`` and ``calibrate`` all run these classes, so a live session gives
the numbers ``process --streaming`` gives on its recording.

Each frame carries a ``tag`` of the caller's (its index in a trial, when and how it arrived) through the
cleaner's look-ahead and back out with its own results.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from kinestream.augment import StreamingAugmenter
from kinestream.centres import BodyPoses, StateCentres, centres_dict
from kinestream.clean import streaming_cleaner
from kinestream.errors import KinestreamError
from kinestream.ingest import DERIVED
from kinestream.reps import RepCounter
from kinestream.settings import Settings
from kinestream.solve import ik_setup, load_model, streaming_ik

if TYPE_CHECKING:
    from kinestream.assets import Assets
    from kinestream.reps import RepCounter, RepEvent
    from kinestream.solve import StreamingIK

T = TypeVar("T")

RATE_CHECK_FRAMES = 64  # the stream's rate is checked again every this many frames, on the latest ones


@dataclass(frozen=True)
class Prepared(Generic[T]):
    """A frame out of clean + augment.

    Its time, the cleaned keypoints (20, 3), the 43 markers (43, 3), and the tag it went in with.
    """

    t: float
    keypoints: np.ndarray
    markers: np.ndarray
    tag: T


@dataclass(frozen=True)
class Taken(Generic[T]):
    """What one step of the prepare stage gave: the frame the cleaner released, what the stage did, what was refused.

    The frame is cleaned and augmented (None while the look-ahead fills, or when the augmenter refused it); what the
    stage did out of the ordinary is, say, a filter redesigned for the stream's rate; the count is of frames the
    augmenter refused (time not after the last).
    """

    prepared: Prepared[T] | None
    notes: tuple[str, ...] = ()
    dropped: int = 0


@dataclass(frozen=True)
class RepNews:
    """What the rep counter said on a frame, or as a stream ended.

    A rep that ended (complete or not) with the set so far, or why the counter failed (the angles go on without it).
    """

    event: RepEvent | None = None
    summary: dict | None = None  # the set so far (RepCounter.summary), with an event
    error: str | None = None


NO_REP = RepNews()


@dataclass(frozen=True)
class Result(Generic[T]):
    """A solved frame: the coordinates, the marker error, the joint centres and what the rep counter said.

    Coordinates in degrees / metres, NaN when unsolved; joint centres None when not asked for or unsolved.
    """

    t: float
    tag: T
    keypoints: np.ndarray
    markers: np.ndarray
    q: np.ndarray
    rmse_mm: float
    max_error_mm: float
    ok: bool
    event: str | None  # what the solver did out of the ordinary (a marker left out, a re-assembly)
    centres: np.ndarray | None
    rep: RepNews = NO_REP
    error: str | None = None  # the solver raised: the frame is unsolved, the next one starts afresh
    bodies: np.ndarray | None = None  # every body's pose in ground (position, quaternion w x y z) when asked for


class FrameProcessor:
    """Clean and augment one keypoint frame at a time (the prepare stage).

    Incoming keypoints are turned into the model's axes (``[ingest]`` up and rotate: a Z-up source gives what its
    Y-up twin gives), put in the augmenter's keypoint order (MidHip and Neck derived from the hips and shoulders
    when absent), cleaned (gap bridging, causal low-pass, outlier holding) and augmented into the 43 anatomical
    markers, moved up by ``floor_offset`` (metres; a calibrated subject's).
    """

    def __init__(
        self,
        assets: Assets,
        settings: Settings,
        height: float,
        mass: float,
        rate: float = 60.0,
        floor_offset: float = 0.0,
    ):
        self.rate = rate
        self.orientation = settings.ingest.matrix()  # None: the keypoints are Y-up already
        self.augmenter = StreamingAugmenter.from_assets(
            assets, height, mass, reset_after=int(settings.augment.reset_after_frames)
        )
        self.keypoints = list(self.augmenter.keypoints)
        self.clean = settings.clean
        self.cleaner = streaming_cleaner(self.clean, len(self.keypoints), rate)
        self.markers = list(self.augmenter.markers)
        self._columns: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._lift = np.array([0.0, float(floor_offset), 0.0]) if floor_offset else None
        index = self.keypoints.index
        self._derived = [(index(name), index(a), index(b)) for name, (a, b) in DERIVED.items()]
        self._times: list[float] = []
        self._first: tuple[np.ndarray, float, Any] | None = None  # the session's first frame, for a redesign
        self._recent: deque[float] = deque(maxlen=RATE_CHECK_FRAMES)  # the latest frame times, to check the rate again
        self._since_check = 0
        # The first frame is kept for a seamless redesign at the second one (see _check_rate).

    def _check_rate(self, t: float) -> str | None:
        """Redesign the filter when the stream's frame rate is not the one assumed (more than 10% off).

        Returns a note on what was done, if anything worth saying.

        The first check comes with the second frame. The cleaner's first output is its input whatever the design
        (the filter starts in the steady state of the first frame), so a cleaner built then at the measured rate
        and given the first frame again is exactly the cleaner that rate would have had from the start: a live
        120 Hz stream gives the numbers ``process --streaming`` gives on its recording. The median of the first
        16 intervals is checked again, and after that the median of the latest 64 every 64 frames, so that a
        burst of frames at 900 Hz at the start cannot leave a 60 Hz stream filtered at a tenth of its cutoff.
        Rates are taken to 0.1 Hz, so that time stamps written to a few decimals read as the camera's rate.
        """
        self._recent.append(t)
        if len(self._times) >= 16:
            self._since_check += 1
            if self._since_check < RATE_CHECK_FRAMES:
                return None
            self._since_check = 0  # and every 64 frames after: a burst at the start must not set it for good
            times = list(self._recent)
        else:
            self._times.append(t)
            if len(self._times) not in (2, 16):
                return None
            times = self._times
        measured = round(1.0 / float(np.median(np.diff(times))), 1)
        if not 10.0 <= measured <= 1000.0:  # not a camera rate (a pause, a burst): keep the design
            if len(self._times) == 16:
                return f"the stream's frames come at {measured:.3g} Hz; kept {self.rate:g} Hz"
            return None
        if abs(measured - self.rate) <= 0.1 * self.rate:
            return None
        first = len(self._times) == 2
        if first and self.cleaner.filler.lookahead:  # frame 1 is still in the look-ahead: wait for 16 frames
            return None
        try:
            cleaner = streaming_cleaner(self.clean, len(self.keypoints), measured)
        except KinestreamError as exc:  # e.g. the cutoff above that rate's Nyquist frequency
            return (
                f"the stream runs at {measured:g} Hz, but the filter cannot be designed for it "
                f"({exc}); kept {self.rate:g} Hz"
            )
        note = f"the stream runs at {measured:g} Hz, not {self.rate:g} Hz: filter redesigned"
        self.rate = measured
        self.cleaner = cleaner
        if first and self._first is not None:
            self.cleaner.push_tagged(*self._first)  # its output is the frame already released
        return note

    def _arrange(self, names: list[str], xyz: np.ndarray) -> np.ndarray:
        key = tuple(names)
        if key not in self._columns:
            if len(self._columns) >= 16:  # a source that changes its names every frame must not grow this
                self._columns.clear()
            pos = {n: i for i, n in enumerate(names)}
            src = np.array([pos.get(n, -1) for n in self.keypoints])
            self._columns[key] = (src, src >= 0)
        src, have = self._columns[key]
        out = np.full((len(self.keypoints), 3), np.nan)
        out[have] = xyz[src[have]]
        for i, a, b in self._derived:
            if not np.isfinite(out[i]).all():
                out[i] = 0.5 * (out[a] + out[b])
        return out

    def step(self, names: list[str], xyz: np.ndarray, t: float, tag: T = None) -> Taken[T]:  # type: ignore[assignment]
        """One keypoint frame in; the frame the cleaner releases, cleaned and augmented, with what the step did.

        ``tag`` comes back with its own frame.
        """
        note = self._check_rate(t)
        if self.orientation is not None:
            xyz = np.asarray(xyz, dtype=float) @ self.orientation.T
        arranged = self._arrange(names, xyz)
        if len(self._times) == 1:  # the session's first frame (_check_rate has counted it)
            self._first = (arranged, t, tag)
        got = self.cleaner.push_tagged(arranged, t, tag)
        notes = (note,) if note else ()
        if got is None:
            return Taken(None, notes)
        return self._augment(*got, notes=notes)

    def flush(self) -> list[Taken[Any]]:
        """The frames still in the cleaner's look-ahead, cleaned and augmented (end of a stream), one each."""
        return [self._augment(*got) for got in self.cleaner.flush_tagged()]

    def _augment(self, clean: np.ndarray, t: float, tag: Any, notes: tuple[str, ...] = ()) -> Taken[Any]:
        markers = self.augmenter.step(clean, t)
        if markers is None:
            return Taken(None, notes, dropped=1)
        if self._lift is not None:
            markers = markers + self._lift
        return Taken(Prepared(t, clean, markers, tag), notes)

    def reset(self) -> None:
        """Forget the stream (a new session from the source)."""
        self.cleaner.reset()
        self.augmenter.reset()
        self._times = []
        self._recent.clear()
        self._since_check = 0

    def delay_ms(self) -> float:
        """The clean stage's low-pass delay (ms)."""
        return self.cleaner.delay_ms()

    @property
    def augmenter_resets(self) -> int:
        """How often the augmenter started its state afresh (after a silence, or ``reset_after_frames``)."""
        return int(self.augmenter.resets)

    def describe(self) -> list[str]:
        """What the stage did over the stream so far.

        The filter, its delay, its counts and the augmenter's resets.
        """
        counts = self.cleaner.counts()
        return [
            f"streaming clean: {self.cleaner.describe()}, delay {self.delay_ms():.0f} ms at 1 Hz; "
            f"{counts['bridged']} marker-frames bridged, {counts['outliers']} "
            f"outliers, {counts['missing']} missing",
            f"streaming augmenter: {self.augmenter_resets} state resets",
        ]


class FrameSolver:
    """The solve stage: frame-wise IK, the joint centres of the posed model and a rep counter.

    IK is warm-started from the previous frame's own solution; joint centres with ``centres``, reps with ``reps`` (None:
    no reps).
    """

    def __init__(self, ik: StreamingIK, *, centres: bool = True, reps: RepCounter | None = None):

        self.ik = ik
        self.coordinates = list(ik.coordinates)
        self.centres = centres or reps is not None
        self.reps = reps
        self._bodies = BodyPoses(ik.model)
        self._centres = StateCentres(ik.model) if self.centres else None
        self.body_names = self._bodies.names  # the rows of a Result's ``bodies``

    def solve(self, prepared: Prepared[T], bodies: bool = False) -> Result[T]:
        """IK on one prepared frame.

        With ``bodies``, every body's pose in ground too (:class:`BodyPoses`, about 0.2 ms: for a frame that goes to an
        avatar). Never raises: a solver that raises gives an unsolved frame (``error`` says why), a rep counter that
        raises gives the angles without it (``rep.error``).
        """
        ik = self.ik
        error = None
        poses = None
        try:
            frame = ik.step(prepared.markers, prepared.t)
            centres = self._centres.of(ik.state) if frame.ok and self._centres is not None else None
            poses = self._bodies.of(ik.state) if frame.ok and bodies else None
            q, rmse, emax, ok, event = frame.q, frame.rmse_mm, frame.max_error_mm, frame.ok, frame.event
        except Exception as exc:  # the solver must not take the stream down; the frame says what happened
            error = f"IK: {type(exc).__name__}: {exc}"
            q, rmse, emax, ok, centres = np.full(len(self.coordinates), np.nan), np.nan, np.nan, False, None
            event = "IK raised"
        rep = NO_REP
        if self.reps is not None:
            try:
                rep = self._news(self.reps.step(prepared.t, q, centres_dict(centres)))
            except Exception as exc:  # feedback must not cost the angles
                rep = RepNews(error=f"{type(exc).__name__}: {exc}")
        return Result(
            prepared.t,
            prepared.tag,
            prepared.keypoints,
            prepared.markers,
            q,
            float(rmse),
            float(emax),
            bool(ok),
            event,
            centres,
            rep,
            error,
            poses,
        )

    def _news(self, event: RepEvent | None) -> RepNews:
        if event is None:
            return NO_REP
        assert self.reps is not None
        summary = {k: v for k, v in self.reps.summary().items() if k not in ("partials", "incomplete_reps")}
        return RepNews(event, summary)

    def finish(self) -> RepNews:
        """The stream ended: a rep under way is closed out (complete or not)."""
        if self.reps is None:
            return NO_REP
        try:
            return self._news(self.reps.finish())
        except Exception as exc:
            return RepNews(error=f"{type(exc).__name__}: {exc}")

    def restart(self) -> RepNews:
        """A new session: the rep under way is closed out, the set starts again, the next frame from neutral."""
        news = self.finish()
        self.ik.reset()
        if self.reps is not None:
            self.reps.reset()
        return news

    def rep_events(self) -> list[RepEvent]:
        """The complete reps of the set so far."""
        return list(self.reps.events) if self.reps is not None else []


class Pipeline(Generic[T]):
    """One person's frame path: :class:`FrameProcessor` then :class:`FrameSolver` on ``model``.

    ``model`` is a scaled .osim (the generic model when None); the rep counter and joint centres follow the ``[reps]``
    and ``[cues]`` settings.

    ``template``: a pipeline made with the same assets and settings. When it is on the same model file, this one
    shares its loaded model and what its solver learned of it, each solving in a state of its own: a person
    served beside others is made in milliseconds, not the half second of a model load, and gives the numbers a
    pipeline of their own would.
    """

    solve_stage: FrameSolver
    removed: list[str]  # what was stripped from the model before IK

    def __init__(
        self,
        assets: Assets,
        settings: Settings,
        *,
        height: float,
        mass: float,
        model: str | Path | None = None,
        rate: float = 60.0,
        floor_offset: float = 0.0,
        template: Pipeline | None = None,
    ):

        self.prepare_stage = FrameProcessor(assets, settings, height, mass, rate, floor_offset)
        self.model_path = Path(model or assets.generic_model)
        like = template.solve_stage.ik if template is not None and template.model_path == self.model_path else None
        if like is not None:
            osim_model, self.removed = like.model, list(template.removed)  # type: ignore[union-attr]
        else:
            osim_model, self.removed = load_model(self.model_path, assets.marker_set)
        setup = ik_setup(settings.ik, assets.ik_setup)
        ik = streaming_ik(settings.ik, osim_model, setup, self.prepare_stage.markers, like=like)
        reps = RepCounter(settings.reps, ik.coordinates, settings.cues)
        self.solve_stage = FrameSolver(ik, reps=reps)
        self.keypoints = list(self.prepare_stage.keypoints)
        self.markers = list(self.prepare_stage.markers)
        self.coordinates = list(self.solve_stage.coordinates)
        self.bodies = list(self.solve_stage.body_names)  # the model's bodies, the rows of a Result's ``bodies``
        self.solver = ik.solver  # "fast" or "opensim"
        self.notes = list(ik.notes)  # e.g. why the fast solver is not used for this model

    def prepare(self, names: list[str], xyz: np.ndarray, t: float, tag: T) -> Taken[T]:
        """One keypoint frame through clean + augment (:meth:`FrameProcessor.step`)."""
        return self.prepare_stage.step(names, xyz, t, tag)

    def solve(self, prepared: Prepared[T], bodies: bool = False) -> Result[T]:
        """IK on one prepared frame (:meth:`FrameSolver.solve`)."""
        return self.solve_stage.solve(prepared, bodies)

    def step(self, names: list[str], xyz: np.ndarray, t: float, tag: T) -> tuple[Taken[T], Result[T] | None]:
        """Both steps: the frame prepared and, when the cleaner released one, solved."""
        taken = self.prepare(names, xyz, t, tag)
        return taken, (None if taken.prepared is None else self.solve(taken.prepared))

    def flush(self) -> list[Taken[T]]:
        """The frames still in the cleaner's look-ahead, prepared (end of a stream; solve them after)."""
        return self.prepare_stage.flush()

    def finish(self) -> RepNews:
        """The stream ended: a rep under way is closed out."""
        return self.solve_stage.finish()

    def restart(self) -> RepNews:
        """The source started a new session: every stage forgets the last one; a rep under way is closed out."""
        self.prepare_stage.reset()
        return self.solve_stage.restart()

    def delay_ms(self) -> float:
        """The clean stage's low-pass delay (ms)."""
        return self.prepare_stage.delay_ms()

    @property
    def augmenter_resets(self) -> int:
        """How often the augmenter started its state afresh."""
        return self.prepare_stage.augmenter_resets

    def rep_events(self) -> list[RepEvent]:
        """The complete reps of the stream so far."""
        return self.solve_stage.rep_events()
