"""Marker augmentation: OpenCap's LSTM predicts 43 anatomical markers from keypoints.

Two trained models (OpenCap LSTM v0.3): the lower-body model reads 15
keypoints and predicts 35 markers (pelvis, legs, feet, shoulders, C7, thigh
and shank clusters, hip joint centres); the upper-body model reads 7 keypoints
and predicts 8 elbow and wrist markers.

The inputs are normalised as the models were trained:

1. every keypoint minus the reference keypoint (MidHip), per frame;
2. divided by the subject's height (m);
3. two more features appended: height (m) and mass (kg);
4. standardised with the training mean and standard deviation shipped with
   each model (``mean.npy``, ``std.npy``, used as they are).

The outputs are multiplied by the height and added to MidHip again. The
models are causal stacks of LSTM layers, so frames with a missing input
keypoint split the trial into segments that are each run from a fresh state;
markers in those frames are missing (NaN).

:class:`StreamingAugmenter` is the same stage for live input, one frame in,
43 markers out. By default it carries the LSTM state from frame to frame
(a one-step form of the same models, see :mod:`kinestream.lstm`), so each
frame costs the same however long the session, and the result equals
whole-trial inference on the same frames. It steps the models on the 60 Hz
clock they were trained at, whatever the input rate (see the class). Its
input side (keypoints by name or row order, MidHip and Neck derived, what is
usable, each model's normalised input) is :mod:`kinestream.augment_input`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream import checks
from kinestream.augment_input import StreamInput
from kinestream.clean import runs_of
from kinestream.errors import AssetError, SettingsError
from kinestream.files.trc import MarkerTable
from kinestream.lstm import StepModel, cpu_session
from kinestream.normalise import BodyPart, denormalise, normalise

__all__ = [
    "REFERENCE",
    "LOWER_FEATURES",
    "LOWER_MARKERS",
    "UPPER_FEATURES",
    "UPPER_MARKERS",
    "AUGMENTED_MARKERS",
    "FLOOR_CLEARANCE_M",
    "BodyPart",
    "normalise",
    "denormalise",
    "Augmenter",
    "AugmentReport",
    "floor_offset",
    "augment_table",
    "MODEL_RATE",
    "STREAM_MODES",
    "STREAM_CLOCKS",
    "SNAP",
    "StreamingAugmenter",
]

REFERENCE = "MidHip"

LOWER_FEATURES = [
    "Neck",
    "RShoulder",
    "LShoulder",
    "RHip",
    "LHip",
    "RKnee",
    "LKnee",
    "RAnkle",
    "LAnkle",
    "RHeel",
    "LHeel",
    "RSmallToe",
    "LSmallToe",
    "RBigToe",
    "LBigToe",
]
LOWER_MARKERS = [
    "r.ASIS_study",
    "L.ASIS_study",
    "r.PSIS_study",
    "L.PSIS_study",
    "r_knee_study",
    "r_mknee_study",
    "r_ankle_study",
    "r_mankle_study",
    "r_toe_study",
    "r_5meta_study",
    "r_calc_study",
    "L_knee_study",
    "L_mknee_study",
    "L_ankle_study",
    "L_mankle_study",
    "L_toe_study",
    "L_calc_study",
    "L_5meta_study",
    "r_shoulder_study",
    "L_shoulder_study",
    "C7_study",
    "r_thigh1_study",
    "r_thigh2_study",
    "r_thigh3_study",
    "L_thigh1_study",
    "L_thigh2_study",
    "L_thigh3_study",
    "r_sh1_study",
    "r_sh2_study",
    "r_sh3_study",
    "L_sh1_study",
    "L_sh2_study",
    "L_sh3_study",
    "RHJC_study",
    "LHJC_study",
]
UPPER_FEATURES = ["Neck", "RShoulder", "LShoulder", "RElbow", "LElbow", "RWrist", "LWrist"]
UPPER_MARKERS = [
    "r_lelbow_study",
    "r_melbow_study",
    "r_lwrist_study",
    "r_mwrist_study",
    "L_lelbow_study",
    "L_melbow_study",
    "L_lwrist_study",
    "L_mwrist_study",
]
AUGMENTED_MARKERS = LOWER_MARKERS + UPPER_MARKERS
FLOOR_CLEARANCE_M = 0.01


class Augmenter:
    """The lower- and upper-body augmenter models, run with onnxruntime.

    Whole-trial inference (offline). Keypoint names are BODY_25's.
    """

    def __init__(self, lower_model: str | Path, upper_model: str | Path, threads: int = 1):
        self.parts = [
            BodyPart.load("lower-body", lower_model, LOWER_FEATURES, LOWER_MARKERS),
            BodyPart.load("upper-body", upper_model, UPPER_FEATURES, UPPER_MARKERS),
        ]
        self.threads = threads
        self._sessions: dict[str, object] = {}

    @classmethod
    def from_assets(cls, assets, threads: int = 1) -> Augmenter:
        """The augmenter of the lower- and upper-body models of ``assets``, onnxruntime on ``threads`` threads."""
        return cls(assets.lower_model, assets.upper_model, threads)

    @property
    def markers(self) -> list[str]:
        """The augmented markers, the body parts' in turn (the order :meth:`augment` gives them in)."""
        return [m for part in self.parts for m in part.markers]

    @property
    def keypoints(self) -> list[str]:
        """The keypoints the models read: the reference (MidHip) first, then each part's features once."""
        names = [REFERENCE]
        for part in self.parts:
            names += [f for f in part.features if f not in names]
        return names

    def session(self, part: BodyPart):
        """The onnxruntime session of ``part``, made on first use; KinestreamError when the model cannot be loaded."""
        if part.name not in self._sessions:
            try:
                self._sessions[part.name] = cpu_session(part.onnx_path, self.threads)
            except Exception as exc:
                raise AssetError(
                    f"{part.name} augmenter {part.onnx_path} could not be loaded: {exc}", given=part.onnx_path
                ) from None
        return self._sessions[part.name]

    def run_part(self, part: BodyPart, inputs: np.ndarray) -> np.ndarray:
        """Whole-sequence inference: (frames, n_inputs) float32 -> (frames, 3m)."""
        sess = self.session(part)
        name = sess.get_inputs()[0].name
        return sess.run(None, {name: inputs[None]})[0][0]

    def predict(self, table: MarkerTable, height: float, mass: float) -> np.ndarray:
        """Augmented markers (frames, 43, 3) for a keypoint table; NaN where inputs are missing."""
        height, mass = checks.subject(height, mass)
        ref = table.get(REFERENCE)
        out = []
        for part in self.parts:
            feats = np.stack([table.get(n) for n in part.features], axis=1)
            ok = np.isfinite(feats).all(axis=(1, 2)) & np.isfinite(ref).all(axis=1)
            markers = np.full((table.n_frames, len(part.markers), 3), np.nan)
            for start, stop in runs_of(ok):
                x = normalise(feats[start:stop], ref[start:stop], height, mass, part.mean, part.std)
                y = self.run_part(part, x)
                markers[start:stop] = denormalise(y, ref[start:stop], height)
            out.append(markers)
        return np.concatenate(out, axis=1)


@dataclass
class AugmentReport:
    """What the offline augmenter did to a trial.

    Attributes
    ----------
    frames : int
        The trial's frames.
    frames_missing : int
        Frames without the keypoints the models read (their markers are NaN).
    segments : int
        The runs of frames augmented apart (missing keypoints split the trial).
    floor_offset_m : float or None
        How far the markers were shifted up to stand on the floor (m); None when they were not.
    """

    frames: int
    frames_missing: int
    segments: int
    floor_offset_m: float | None

    def describe(self) -> str:
        """The report in one line, for notes and logs."""
        text = f"augmented {self.frames - self.frames_missing}/{self.frames} frames"
        if self.segments > 1:
            text += f" in {self.segments} segments (missing keypoints split the trial)"
        if self.floor_offset_m is not None:
            text += f"; floor offset: shifted up by {self.floor_offset_m * 1000:.1f} mm"
        return text


def floor_offset(xyz: np.ndarray, clearance: float = FLOOR_CLEARANCE_M) -> float:
    """Vertical shift (m) that puts the lowest marker at ``clearance`` above y = 0."""
    lowest = np.nanmin(xyz[..., 1])
    return float(clearance - lowest)


def augment_table(
    table: MarkerTable, augmenter: Augmenter, height: float, mass: float, apply_floor_offset: bool = False
) -> tuple[MarkerTable, AugmentReport]:
    """The keypoints plus the 43 augmented markers, as one table."""
    markers = augmenter.predict(table, height, mass)
    out = table.with_markers(augmenter.markers, markers)
    missing = ~np.isfinite(markers).all(axis=(1, 2))
    offset = None
    if apply_floor_offset:
        offset = floor_offset(out.xyz)
        out.xyz[..., 1] += offset
    segs = len(runs_of(~missing))
    return out, AugmentReport(table.n_frames, int(missing.sum()), segs, offset)


# --------------------------------------------------------------------------------------------------------
# Streaming: one frame in, the 43 markers out

MODEL_RATE = 60.0  # Hz; the augmenter models were trained on 60 Hz sequences
STREAM_MODES = ("stateful", "windowed")
STREAM_CLOCKS = ("model", "input")
SNAP = 0.1  # a frame within this fraction of a model period of the next model tick is taken as that tick


@dataclass(eq=False)
class _PartStream:
    """What the stream keeps for one body part between frames."""

    k: int  # position among the parts
    part: BodyPart
    out: slice  # columns of the part's outputs among all model outputs
    h: np.ndarray | None = None  # stateful mode: LSTM state
    c: np.ndarray | None = None
    window: deque = field(default_factory=deque)  # windowed mode: the last model inputs
    fresh: bool = True  # nothing fed since the start or the last reset
    missing: int = 0  # consecutive frames without usable input
    resets: int = 0
    x_prev: np.ndarray | None = None  # model input of the previous frame, when it was usable
    t_prev: float = 0.0
    x_tick: np.ndarray | None = None  # model input and output at the last model tick fed
    y_tick: np.ndarray | None = None
    t_tick: float = float("nan")


class _ModelClock:
    """The streaming augmenter's time: which frames are taken, a pause in the input, the model ticks."""

    def __init__(self, clock: str, reset_after: int):
        self.clock, self.reset_after = clock, reset_after
        self.reset()

    def reset(self) -> None:
        self.t_last: float | None = None  # the previous frame's time
        self.last_tick: float | None = None

    def accept(self, t: float | None) -> float | None:
        """The frame's time (without ``t``: 1/60 s after the previous frame's); None when not after the previous."""
        period = 1.0 / MODEL_RATE
        if t is None:
            t = 0.0 if self.t_last is None else self.t_last + period
        t = float(t)
        if not math.isfinite(t) or (self.t_last is not None and t <= self.t_last):
            return None
        return t

    def paused(self, t: float) -> bool:
        """Whether the input paused for longer than a state is held."""
        period = 1.0 / MODEL_RATE
        return self.t_last is not None and t - self.t_last > self.reset_after * period

    def ticks_before(self, t: float) -> tuple[list[float], bool]:
        """Model ticks in (previous frame, t) and whether t itself is a tick; moves the clock."""
        if self.clock == "input":
            self.last_tick = t
            return [], True
        period = 1.0 / MODEL_RATE
        if self.last_tick is None:
            self.last_tick = t
            return [], True
        # the ticks last + k * period (k >= 1) before t - SNAP * period: counted, not stepped through, so no
        # time step, however large or however close to the limits of float resolution, makes this loop long
        span = (t - self.last_tick) / period - SNAP
        count = max(0, math.ceil(span) - 1) if math.isfinite(span) else 0
        if count > self.reset_after:  # longer than a state is held (the caller resets first): start here
            self.last_tick = t
            return [], True
        before = [self.last_tick + k * period for k in range(1, count + 1)]
        tick = self.last_tick + (count + 1) * period
        if tick <= t + SNAP * period:
            self.last_tick = t  # the clock follows the source
            return before, True
        if before:
            self.last_tick = before[-1]
        return before, False


def _check_options(mode: str, clock: str, window: int, reset_after: int, max_reach: float) -> None:
    """Refuse what a :class:`StreamingAugmenter` cannot run with (a SettingsError naming the option)."""
    if mode not in STREAM_MODES:
        raise SettingsError(
            f"augmenter mode {mode!r} is not one of {STREAM_MODES}", key="mode", given=mode, valid=STREAM_MODES
        )
    if clock not in STREAM_CLOCKS:
        raise SettingsError(
            f"augmenter clock {clock!r} is not one of {STREAM_CLOCKS}",
            key="clock",
            given=clock,
            valid=STREAM_CLOCKS,
        )
    if int(window) < 1:
        raise SettingsError(
            f"augmenter window {window} must be at least 1 frame",
            key="window",
            given=window,
            valid="at least 1 frame",
        )
    if int(reset_after) < 1:
        raise SettingsError(
            f"reset_after {reset_after} must be at least 1 frame",
            key="augment.reset_after_frames",
            given=reset_after,
            valid="at least 1 frame",
        )
    if not max_reach > 0:
        raise SettingsError(
            f"max_reach {max_reach} must be a positive multiple of the height",
            key="max_reach",
            given=max_reach,
            valid="a positive multiple of the height",
        )


class StreamingAugmenter:
    """The augmenter for live input: ``step(keypoints, t)`` returns the 43 markers of the frame.

    Parameters
    ----------
    lower_model, upper_model : the whole-sequence ONNX models (mean.npy and std.npy beside them).
    height, mass : the subject's, for the whole session.
    threads : onnxruntime intra-op threads.
    mode : ``"stateful"`` (default) carries the LSTM state (h, c of every
        layer) from one model step to the next: constant cost per frame, and
        the result of whole-trial inference. ``"windowed"`` re-runs the
        shipped model on the last ``window`` model steps for every frame and
        keeps its last output (cost grows with the window; for comparison).
    window : model steps in windowed mode (the models were trained on 60).
    reset_after : consecutive frames without usable input for a body part
        after which the subject counts as lost and that part's LSTM state is
        reset; a pause in the input longer than ``reset_after`` model periods
        resets every part. When the subject comes back, inference starts
        afresh, as whole-trial inference of a new trial would.
    clock : ``"model"`` (default) steps the models on the 60 Hz clock they
        were trained on, whatever the input rate. Model ticks falling between
        two frames get the input interpolated linearly between them (causal:
        done when the later frame arrives) and advance the state. A frame on
        a tick (within 10 % of a period; the clock then re-aligns to the
        frame, so a 59.94 Hz or slightly jittery 60 Hz source is stepped once
        per frame) returns that step's output. A frame between ticks, at a
        fraction a of a period after the last tick, extrapolates the input
        linearly to the next tick, runs one step from the last tick's state
        without keeping it, and returns the output interpolated at a between
        the last tick's and that one. At 60 Hz every frame is one tick; at
        120 Hz every other frame is. ``"input"`` advances the state once per
        input frame at any rate, which the models were not trained for (at
        120 Hz they see the motion at half speed).
    names : row order of array input (e.g. ``ingest.BODY_25``); default
        :attr:`keypoints`, the 20 keypoints the models read: MidHip, Neck,
        RShoulder, LShoulder, RHip, LHip, RKnee, LKnee, RAnkle, LAnkle, RHeel,
        LHeel, RSmallToe, LSmallToe, RBigToe, LBigToe, RElbow, LElbow, RWrist,
        LWrist. Dict input takes any of these names (aliases folded).
    max_reach : a keypoint further than ``max_reach`` x height from MidHip
        along any axis is taken as a wrong detection: the frame counts as
        missing for the parts that read it.
    on_reset : optional ``callback(parts, t)`` called when parts are reset.

    Notes
    -----
    Missing input never raises. A frame whose inputs for a part are missing
    (NaN) or implausible yields NaN markers for that part, and the part's
    state is held (nothing is fed to it); model ticks between a missing frame
    and its neighbours are skipped, so after a short gap the output equals
    whole-trial inference on the trial without the missing frames.

    Counters: ``frames`` (accepted frames), ``rejected`` (frames whose time
    was not after the previous frame's: ``step`` returns None), ``steps``
    (model runs), ``resets`` (frames at which any part was reset),
    ``part_resets`` ({part: resets}); ``reset_parts`` names the parts reset
    by the latest ``step`` (empty tuple otherwise), the flag to poll.
    """

    def __init__(
        self,
        lower_model: str | Path,
        upper_model: str | Path,
        height: float,
        mass: float,
        threads: int = 1,
        mode: str = "stateful",
        window: int = 60,
        reset_after: int = 10,
        clock: str = "model",
        names: Sequence[str] | None = None,
        max_reach: float = 1.5,
        on_reset: Callable[[tuple[str, ...], float], None] | None = None,
    ):
        height, mass = checks.subject(height, mass)
        _check_options(mode, clock, window, reset_after, max_reach)
        self.offline = Augmenter(lower_model, upper_model, threads)
        self.parts = self.offline.parts
        self.height, self.mass = float(height), float(mass)
        self.mode, self.clock = mode, clock
        self.window, self.reset_after = int(window), int(reset_after)
        self.max_reach = float(max_reach)
        self.on_reset = on_reset
        self.keypoints = self.offline.keypoints
        self.markers = self.offline.markers
        self._input = StreamInput(
            self.keypoints, self.parts, names, self.height, self.mass, self.max_reach * self.height
        )
        self.names = self._input.names
        self._clock = _ModelClock(clock, self.reset_after)
        self._model = None
        if mode == "stateful":
            self._model = StepModel({p.name: p.onnx_path for p in self.parts}, threads)
        self._streams: list[_PartStream] = []
        start = 0
        for k, part in enumerate(self.parts):
            if not (np.isfinite(part.mean).all() and np.isfinite(part.std).all() and (part.std != 0).all()):
                raise AssetError(
                    f"{part.name} augmenter: mean.npy/std.npy hold non-finite or zero values",
                    given=part.name,
                    valid="finite, non-zero mean.npy and std.npy",
                )
            stop = start + 3 * len(part.markers)
            self._streams.append(_PartStream(k, part, slice(start, stop)))
            start = stop
        self.reset()

    @classmethod
    def from_assets(cls, assets, height: float, mass: float, **kwargs) -> StreamingAugmenter:
        """The streaming augmenter of the models of ``assets`` for a subject of ``height`` (m) and ``mass`` (kg)."""
        return cls(assets.lower_model, assets.upper_model, height, mass, **kwargs)

    # ---- input

    def as_array(self, keypoints: Mapping[str, Sequence[float]] | np.ndarray) -> np.ndarray:
        """Keypoints (dict name -> xyz, or an array in :attr:`names` order) as (len(keypoints), 3).

        Absent keypoints are NaN; MidHip and Neck, when absent, are the midpoints
        of the hips and of the shoulders.
        """
        return self._input.as_array(keypoints)

    # ---- state

    def reset(self) -> None:
        """Forget everything: state, clock, counters."""
        for ps in self._streams:
            self._clear(ps)
            ps.missing = 0
            ps.resets = 0
        self._clock.reset()
        self.frames = 0
        self.rejected = 0
        self.steps = 0
        self.resets = 0
        self.reset_parts: tuple[str, ...] = ()

    def _clear(self, ps: _PartStream) -> None:
        if self._model is not None:
            ps.h, ps.c = self._model.zero_state(ps.k)
        else:
            ps.window = deque(maxlen=self.window)
        ps.fresh = True
        ps.x_prev = ps.x_tick = ps.y_tick = None
        ps.t_tick = float("nan")

    @property
    def part_resets(self) -> dict[str, int]:
        """How often each body part's stream started afresh, by part name."""
        return {ps.part.name: ps.resets for ps in self._streams}

    def _lose(self, ps: _PartStream, lost: list) -> None:
        """The subject is lost for this part: start afresh when it comes back."""
        if not ps.fresh:
            self._clear(ps)
            ps.resets += 1
            lost.append(ps.part.name)
        ps.x_prev = None

    # ---- model steps

    def _run(self, xs: dict[int, np.ndarray], keep: bool, want: bool = True) -> dict[int, np.ndarray]:
        """One model step of the parts in ``xs`` (inputs (1, n)); outputs (1, 3m).

        ``keep``: the step is a model tick: the state moves on. Otherwise the
        state is left as it was. ``want``: the outputs are needed (windowed
        mode runs the model only then).
        """
        streams = self._streams
        out: dict[int, np.ndarray] = {}
        if self._model is not None:
            res = self._model.step(
                [
                    (xs[k][None], ps.h, ps.c) if k in xs and ps.h is not None and ps.c is not None else None
                    for k, ps in enumerate(streams)
                ]
            )
            self.steps += 1
            for k in xs:
                got = res[k]
                assert got is not None  # each part fed gives its step
                y, h, c = got
                if keep:
                    ps = streams[k]
                    ps.h, ps.c, ps.fresh = h, c, False
                out[k] = y
            return out
        for k, x in xs.items():
            ps = streams[k]
            if keep:
                ps.window.append(x[0])
                ps.fresh = False
                seq = list(ps.window)
            else:
                seq = list(ps.window)[max(0, len(ps.window) - self.window + 1) :] if self.window > 1 else []
                seq.append(x[0])
            if want:
                out[k] = self.offline.run_part(ps.part, np.asarray(seq, dtype=np.float32))[-1:]
                self.steps += 1
        return out

    def _tick(self, xs: dict[int, np.ndarray], t: float, want: bool) -> dict[int, np.ndarray]:
        ys = self._run(xs, keep=True, want=want)
        for k, x in xs.items():
            ps = self._streams[k]
            ps.x_tick, ps.y_tick, ps.t_tick = x, ys.get(k), t
        return ys

    def step(self, keypoints: Mapping[str, Sequence[float]] | np.ndarray, t: float | None = None) -> np.ndarray | None:
        """The 43 markers (metres, :attr:`markers` order) of one frame, NaN for parts without input.

        ``keypoints``: dict name -> xyz (metres) or an array in :attr:`names`
        order (default :attr:`keypoints`: MidHip first). ``t``: capture time
        in seconds; without it, frames are taken to be 1/60 s apart. Returns
        None, and counts the frame as rejected, when ``t`` is not after the
        previous frame's time.
        """
        t = self._clock.accept(t)
        if t is None:
            self.rejected += 1
            return None
        kp = self.as_array(keypoints)
        self.frames += 1
        lost: list[str] = []
        if self._clock.paused(t):
            # the input paused for longer than a state is held: subject lost, clock restarts
            for ps in self._streams:
                self._lose(ps, lost)
            self._clock.last_tick = None
        self._clock.t_last = t
        before, on_tick = self._clock.ticks_before(t)

        xs: dict[int, np.ndarray] = {}
        usable = self._input.usable(kp)
        for k, ps in enumerate(self._streams):
            x = self._input.model_input(k, kp, usable)
            if x is None:
                ps.missing += 1
                if ps.missing >= self.reset_after:
                    self._lose(ps, lost)
                ps.x_prev = None
            else:
                ps.missing = 0
                xs[k] = x

        # ticks since the previous frame, on inputs interpolated between it and this one
        for n, tick in enumerate(before):
            batch = {
                k: ps.x_prev + ((tick - ps.t_prev) / (t - ps.t_prev)) * (xs[k] - ps.x_prev)
                for k, ps in enumerate(self._streams)
                if k in xs and ps.x_prev is not None
            }
            if batch:
                self._tick(batch, tick, want=n == len(before) - 1 and not on_tick)

        if on_tick:
            ys = self._tick(xs, t, want=True) if xs else {}
        else:
            ys = self._between(xs, t)

        y_all = np.full((1, 3 * len(self.markers)), np.nan)  # NaN stays NaN for parts without output
        for k, x in xs.items():
            ps = self._streams[k]
            ps.x_prev, ps.t_prev = x, t
            y_all[:, ps.out] = ys[k]
        out = denormalise(y_all, kp[:1], self.height)[0]
        self.reset_parts = tuple(lost)
        if lost:
            self.resets += 1
            if self.on_reset is not None:
                self.on_reset(self.reset_parts, t)
        return out

    def _between(self, xs: dict[int, np.ndarray], t: float) -> dict[int, np.ndarray]:
        """Outputs for a frame between model ticks; the state stays at the last tick."""
        period = 1.0 / MODEL_RATE
        last = t if self._clock.last_tick is None else self._clock.last_tick
        a = (t - last) / period  # fraction of a period since the last tick
        ext, plain, held = {}, {}, {}
        for k, x in xs.items():
            ps = self._streams[k]
            if ps.t_tick != self._clock.last_tick or ps.y_tick is None:
                plain[k] = x  # no output at the last tick to start from: one step on this frame's input
            elif a < SNAP:
                held[k] = ps.y_tick  # as good as on the last tick
            else:
                ext[k] = ps.x_tick + (x - ps.x_tick) / a  # input extrapolated to the next tick
        ys = self._run({**ext, **plain}, keep=False) if ext or plain else {}
        for k in ext:
            y_tick = self._streams[k].y_tick
            ys[k] = y_tick + a * (ys[k] - y_tick)
        ys.update(held)
        return ys
