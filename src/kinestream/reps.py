"""Squat feedback: repetitions found in the joint angles as they arrive, with per-rep measures.

    kinestream reps SESSION.mot [--model scaled.osim] [--json] [--out PLOT.png] [--config FILE]

A synchronous core (no I/O), called once per solved frame by the live service
and over every frame of a recorded .mot offline, so both give the same reps.

What a rep is. The signal is knee flexion, the mean of ``knee_angle_r`` and
``knee_angle_l`` (degrees). A rep is an excursion of it above
``knee_start_deg``: it **starts** when the knee flexion rises through
``knee_start_deg`` and **ends** when it falls back through ``knee_start_deg``
(both times interpolated between the two frames either side). Two hysteresis
rules keep noise near the threshold from making or breaking reps: the
excursion only counts once it has reached ``knee_start_deg + hysteresis_deg``,
and nothing starts until the knees have been seen below ``knee_start_deg``
(a stream that begins with the person seated or crouched waits until they
stand). The rep's event is returned by the very frame that ends it: there is
no look-ahead, so the live service can publish it one frame after the rep
ends.

An excursion is then judged:

- shorter than ``min_rep_s`` or longer than ``max_rep_s``: rejected (counted
  in the summary as ``too_short`` / ``too_long``; a rep passing
  ``max_rep_s`` is dropped at once and the counter waits for the knees to
  straighten);
- knee flexion peaking below ``min_depth_deg``: a partial rep (a half squat),
  counted in the summary as ``partial``, no event;
- otherwise a rep: a :class:`RepEvent`.

The bottom is the frame of greatest knee flexion. With ``smooth_hz`` > 0 the
rep's frames are low-passed (zero lag: the rep is over when it is measured)
before the peaks and the bottom are taken, so single-frame noise does not
inflate the depth.

Measures that need positions (below parallel, knee valgus, trunk lean) come
from joint centres in ground (metres, Y up), see :func:`centres_from_state`.
Without them they are None.

- ``below_parallel``: the hip joint centre (femur origin) is lower than the
  knee joint centre (tibia origin), both sides averaged, at the rep's lowest
  point; ``hip_above_knee_cm`` is that height difference (negative: below
  parallel).
- ``knee_valgus_cm_r`` / ``_l``: seen from the front, how far the knee joint
  centre sits from the line from hip to ankle joint centre (talus origin),
  in centimetres, **medial positive** (knee caving in: valgus), lateral
  negative (knees pushed out: varus). "From the front" is along the
  horizontal forward direction, which is perpendicular to the line between the
  hip joint centres; at the bottom frame.
- ``trunk_lean_deg``: the torso's long axis (the torso frame's Y axis) from
  vertical, in the sagittal plane, **forward positive**; at the bottom frame.
- ``knee_asymmetry_deg``: right minus left knee flexion at the bottom frame.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from kinestream.errors import KinestreamError
from kinestream.files.mot import Motion
from kinestream.live.protocol import is_translation

KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")

# Joint centres: name -> body whose origin it is. The torso's long axis rides along as "torso_axis".
CENTRE_BODIES = {
    "pelvis": "pelvis",
    "hip_r": "femur_r",
    "hip_l": "femur_l",
    "knee_r": "tibia_r",
    "knee_l": "tibia_l",
    "ankle_r": "talus_r",
    "ankle_l": "talus_l",
    "torso": "torso",
}
TORSO_AXIS = "torso_axis"  # unit vector (not a point): the torso frame's Y axis in ground


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RepSettings:
    """How reps are found and judged; the ``[reps]`` section of the config.

    knee_start_deg  knee flexion (mean of both knees, deg) through which a rep
                    starts (rising) and ends (falling)
    hysteresis_deg  an excursion above knee_start_deg counts only once it
                    reaches knee_start_deg + hysteresis_deg
    min_depth_deg   peak knee flexion a rep needs; shallower: a partial rep
    deep_knee_deg   peak knee flexion that is deep enough (``deep_enough``)
    min_rep_s       shorter excursions are rejected (noise, a stumble)
    max_rep_s       longer ones are rejected (sitting down, resting crouched)
    smooth_hz       zero-lag low-pass of the rep's frames before peaks and
                    bottom are taken; 0: off
    """

    knee_start_deg: float = 25.0
    hysteresis_deg: float = 5.0
    min_depth_deg: float = 60.0
    deep_knee_deg: float = 90.0
    min_rep_s: float = 0.5
    max_rep_s: float = 10.0
    smooth_hz: float = 6.0

    @classmethod
    def from_config(cls, config: dict | None) -> RepSettings:
        """Settings from ``config["reps"]`` (missing keys: defaults); raises KinestreamError on bad values."""
        section = (config or {}).get("reps", {})
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise KinestreamError(f"[reps] must be a table of settings, not {section!r}")
        known = {f.name: f.default for f in fields(cls)}
        unknown = sorted(set(section) - set(known))
        if unknown:
            raise KinestreamError(
                f"[reps] has unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(known)}"
            )
        values = {}
        for name, default in known.items():
            value = section.get(name, default)
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
            if not math.isfinite(number):
                raise KinestreamError(
                    f"[reps] {name}={value!r} is not valid; it must be a number (default {default:g})"
                )
            values[name] = number
        settings = cls(**values)
        settings.check(given=section)
        return settings

    def check(self, given: dict | None = None) -> None:
        """Raise KinestreamError unless the values are usable; ``given``: the values as written, for the message."""

        def bad(name: str, rule: str):
            shown = (given or {}).get(name, getattr(self, name))
            raise KinestreamError(f"[reps] {name}={shown!r} is not valid; it must be {rule}")

        if not 5.0 <= self.knee_start_deg <= 60.0:
            bad("knee_start_deg", "from 5 to 60 degrees of knee flexion")
        if not 0.0 <= self.hysteresis_deg <= 30.0:
            bad("hysteresis_deg", "from 0 to 30 degrees")
        if not self.knee_start_deg + self.hysteresis_deg < self.min_depth_deg <= 160.0:
            bad(
                "min_depth_deg",
                f"above knee_start_deg + hysteresis_deg "
                f"({self.knee_start_deg + self.hysteresis_deg:g}) and at most 160 degrees",
            )
        if not self.min_depth_deg <= self.deep_knee_deg <= 160.0:
            bad("deep_knee_deg", f"from min_depth_deg ({self.min_depth_deg:g}) to 160 degrees")
        if not 0.0 < self.max_rep_s <= 600.0:
            bad("max_rep_s", "above 0 and at most 600 seconds")
        if not 0.0 <= self.min_rep_s < self.max_rep_s:
            bad("min_rep_s", f"from 0 to below max_rep_s ({self.max_rep_s:g}) seconds")
        if not (self.smooth_hz == 0.0 or 1.0 <= self.smooth_hz <= 30.0):
            bad("smooth_hz", "0 (off) or from 1 to 30 Hz")


# --------------------------------------------------------------------------- events


def _r(value, digits: int):
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


@dataclass(frozen=True)
class RepEvent:
    """One rep, measured when it ended. Angles in degrees, times in seconds (the stream's clock)."""

    index: int  # 1-based, in the session
    start: float  # knee flexion rose through knee_start_deg
    bottom: float  # greatest knee flexion
    end: float  # knee flexion fell back through knee_start_deg
    descent_s: float
    ascent_s: float
    knee_peak: float  # peak of the mean of both knees (at the bottom)
    knee_peak_r: float
    knee_peak_l: float
    hip_peak_r: float | None
    hip_peak_l: float | None
    deep_enough: bool  # knee_peak >= deep_knee_deg
    knee_asymmetry_deg: float  # right minus left knee flexion at the bottom
    below_parallel: bool | None  # hip joint centres lower than the knee joint centres at the lowest point
    hip_above_knee_cm: float | None  # that height difference (negative: below parallel)
    knee_valgus_cm_r: float | None  # knee medial of the hip-ankle line, seen from the front (cm, medial +)
    knee_valgus_cm_l: float | None
    trunk_lean_deg: float | None  # torso axis from vertical, sagittal plane, forward +, at the bottom

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        """Rounded for display and transport: times to the ms, angles to 0.1 deg, lengths to 0.1 cm."""
        out = {}
        for name, value in asdict(self).items():
            if name == "index":
                out[name] = int(value)
            elif name in ("start", "bottom", "end", "descent_s", "ascent_s"):
                out[name] = _r(value, 3)
            else:
                out[name] = _r(value, 1)
        return out

    def to_json(self) -> str:
        """One compact JSON object (no spaces), e.g. for MQTT."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class PartialRep:
    """An excursion that did not reach min_depth_deg (a half squat): counted, not a rep."""

    start: float
    bottom: float
    end: float
    knee_peak: float

    def to_dict(self) -> dict:
        return {
            "start": _r(self.start, 3),
            "bottom": _r(self.bottom, 3),
            "end": _r(self.end, 3),
            "knee_peak": _r(self.knee_peak, 1),
        }


# --------------------------------------------------------------------------- per-frame geometry


def _point(centres: dict, name: str) -> tuple[float, float, float] | None:
    value = centres.get(name)
    if value is None:
        return None
    try:
        x, y, z = (float(v) for v in np.asarray(value, dtype=float).reshape(3))
    except (TypeError, ValueError):
        return None
    return (x, y, z) if math.isfinite(x + y + z) else None


def _sub(a, b):
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a, b):
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _unit(v):
    n = math.sqrt(_dot(v, v))
    return (v[0] / n, v[1] / n, v[2] / n) if n > 1e-9 else None


def frame_measures(centres: dict | None) -> tuple[float, float, float, float]:
    """(hip above knee in cm, valgus right cm, valgus left cm, trunk lean deg) of one frame; NaN where unknown.

    Plain float arithmetic: this runs on every frame of a live stream.
    """
    nan = math.nan
    if not centres:
        return nan, nan, nan, nan
    try:
        p = {
            name: _point(centres, name)
            for name in ("hip_r", "hip_l", "knee_r", "knee_l", "ankle_r", "ankle_l", TORSO_AXIS)
        }
    except AttributeError:  # not a mapping
        return nan, nan, nan, nan
    hip_r, hip_l, knee_r, knee_l = p["hip_r"], p["hip_l"], p["knee_r"], p["knee_l"]
    height = nan
    if hip_r and hip_l and knee_r and knee_l:
        height = 50.0 * ((hip_r[1] - knee_r[1]) + (hip_l[1] - knee_l[1]))
    if not (hip_r and hip_l):
        return height, nan, nan, nan
    right = _unit((hip_r[0] - hip_l[0], 0.0, hip_r[2] - hip_l[2]))  # horizontal, towards the right hip
    if right is None:
        return height, nan, nan, nan
    forward = _cross((0.0, 1.0, 0.0), right)
    valgus = [nan, nan]
    for k, (hip, knee, ankle, sign) in enumerate(
        ((hip_r, knee_r, p["ankle_r"], 1.0), (hip_l, knee_l, p["ankle_l"], -1.0))
    ):
        if not (knee and ankle):
            continue
        # Normal of the plane through hip and ankle that holds the forward direction: seen from the
        # front, the hip-ankle line. Turned to point away from the body's midline.
        normal = _unit(_cross(_sub(ankle, hip), forward))
        if normal is None:
            continue
        if sign * _dot(normal, right) < 0:
            normal = (-normal[0], -normal[1], -normal[2])
        valgus[k] = -100.0 * _dot(_sub(knee, hip), normal)
    lean = nan
    axis = p[TORSO_AXIS]
    if axis:
        lean = math.degrees(math.atan2(_dot(axis, forward), axis[1]))
    return height, valgus[0], valgus[1], lean


# --------------------------------------------------------------------------- the counter

# Columns of a rep's frame buffer.
_T, _KR, _KL, _HR, _HL, _HEIGHT, _VR, _VL, _LEAN = range(9)
_WAIT, _STANDING, _RISING, _IN_REP = "wait", "standing", "rising", "in_rep"


def _crossing(t0: float, k0: float, t1: float, k1: float, level: float) -> float:
    if k1 == k0:
        return t1
    return t0 + (level - k0) / (k1 - k0) * (t1 - t0)


class RepCounter:
    """Streaming rep detector: feed solved frames in time order; a :class:`RepEvent` comes back when a rep ends.

    ``coords``: the names of the values in each ``q`` (OpenSim coordinate
    names; degrees for rotations). It must hold ``knee_angle_r`` and
    ``knee_angle_l``; ``hip_flexion_r/l`` are used when present.
    """

    def __init__(self, settings: RepSettings | None, coords: list[str]):
        self.settings = settings or RepSettings()
        self.settings.check()
        coords = list(coords)
        missing = [k for k in KNEES if k not in coords]
        if missing:
            raise KinestreamError(
                f"the joint angles have no {' or '.join(missing)}; the rep counter needs both "
                f"knee angles (columns: {', '.join(coords[:12])}{', ...' if len(coords) > 12 else ''})"
            )
        self.coords = coords
        self._knees = [coords.index(k) for k in KNEES]
        self._hips = [coords.index(h) if h in coords else -1 for h in HIPS]
        self.reset()

    def reset(self) -> None:
        """Forget the session: counts, events and any rep under way."""
        self.events: list[RepEvent] = []
        self.partials: list[PartialRep] = []
        self.counts = {"frames": 0, "skipped": 0, "too_short": 0, "too_long": 0}
        self._state = _WAIT
        self._prev: tuple[float, float] | None = None  # (t, knee) of the last used frame
        self._rows: list[list[float]] = []
        self._start = math.nan

    @property
    def in_rep(self) -> bool:
        """True while an excursion that counts (past knee_start_deg + hysteresis_deg) is under way."""
        return self._state == _IN_REP

    def step(self, t: float, q, centres: dict | None = None) -> RepEvent | None:
        """One frame: time (s), joint angles (degrees, in ``coords`` order), joint centres or None.

        Returns the rep this frame ended, else None. Never raises: frames whose
        knee angles are not finite, or whose time does not increase, are skipped.
        """
        self.counts["frames"] += 1
        try:
            t = float(t)
            q = np.asarray(q, dtype=float).reshape(-1)
            kr, kl = float(q[self._knees[0]]), float(q[self._knees[1]])
            hips = [float(q[i]) if i >= 0 else math.nan for i in self._hips]
        except (TypeError, ValueError, IndexError):
            self.counts["skipped"] += 1
            return None
        if not (math.isfinite(t) and math.isfinite(kr) and math.isfinite(kl)) or (
            self._prev is not None and t <= self._prev[0]
        ):
            self.counts["skipped"] += 1
            return None
        knee = 0.5 * (kr + kl)
        s = self.settings
        prev, self._prev = self._prev, (t, knee)
        start_level = s.knee_start_deg

        if self._state == _WAIT:
            if knee < start_level:
                self._state = _STANDING
            return None
        if self._state == _STANDING:
            if knee > start_level:
                self._start = _crossing(*prev, t, knee, start_level) if prev is not None else t
                self._rows = []
                self._state = _RISING
            else:
                return None
        if knee < start_level:  # an excursion ends
            end = _crossing(*prev, t, knee, start_level)
            counted = self._state == _IN_REP
            self._state = _STANDING
            return self._finish(end) if counted else None
        if t - self._start > s.max_rep_s:
            if self._state == _IN_REP:
                self.counts["too_long"] += 1
            self._rows = []
            self._state = _WAIT
            return None
        self._rows.append([t, kr, kl, *hips, *frame_measures(centres)])
        if self._state == _RISING and knee >= start_level + s.hysteresis_deg:
            self._state = _IN_REP
        return None

    def _finish(self, end: float) -> RepEvent | None:
        s = self.settings
        start = self._start
        rows = np.array(self._rows, dtype=float)
        self._rows = []
        if end - start < s.min_rep_s or len(rows) == 0:
            self.counts["too_short"] += 1
            return None
        rows = _smooth(rows, s.smooth_hz)
        mean_knee = 0.5 * (rows[:, _KR] + rows[:, _KL])
        b = int(np.argmax(mean_knee))
        bottom = float(rows[b, _T])
        peak = float(mean_knee[b])
        if peak < s.min_depth_deg:
            self.partials.append(PartialRep(start, bottom, end, peak))
            return None

        def peak_of(col):
            v = rows[:, col]
            return float(np.nanmax(v)) if np.isfinite(v).any() else None

        def at_bottom(col):
            v = float(rows[b, col])
            return v if math.isfinite(v) else None

        height = rows[:, _HEIGHT]
        lowest = float(np.nanmin(height)) if np.isfinite(height).any() else None
        event = RepEvent(
            index=len(self.events) + 1,
            start=start,
            bottom=bottom,
            end=end,
            descent_s=bottom - start,
            ascent_s=end - bottom,
            knee_peak=peak,
            knee_peak_r=float(np.max(rows[:, _KR])),
            knee_peak_l=float(np.max(rows[:, _KL])),
            hip_peak_r=peak_of(_HR),
            hip_peak_l=peak_of(_HL),
            deep_enough=bool(peak >= s.deep_knee_deg),
            knee_asymmetry_deg=float(rows[b, _KR] - rows[b, _KL]),
            below_parallel=None if lowest is None else bool(lowest < 0.0),
            hip_above_knee_cm=lowest,
            knee_valgus_cm_r=at_bottom(_VR),
            knee_valgus_cm_l=at_bottom(_VL),
            trunk_lean_deg=at_bottom(_LEAN),
        )
        self.events.append(event)
        return event

    def summary(self) -> dict:
        """The set so far: counts, depth, tempo and form, plus the partial reps (JSON-ready, rounded)."""
        ev = self.events

        def mean(values):
            values = [v for v in values if v is not None and math.isfinite(v)]
            return float(np.mean(values)) if values else None

        def extreme(values, fn):
            values = [v for v in values if v is not None and math.isfinite(v)]
            return float(fn(values)) if values else None

        depths = [e.knee_peak for e in ev]
        parallel = [e.below_parallel for e in ev if e.below_parallel is not None]
        out = {
            "reps": len(ev),
            "partial": len(self.partials),
            "too_short": self.counts["too_short"],
            "too_long": self.counts["too_long"],
            "deep_enough": sum(e.deep_enough for e in ev),
            "below_parallel": sum(parallel) if parallel else None,
            "depth_mean_deg": _r(mean(depths), 1),
            "depth_min_deg": _r(extreme(depths, min), 1),
            "depth_max_deg": _r(extreme(depths, max), 1),
            "rep_s_mean": _r(mean([e.duration_s for e in ev]), 3),
            "descent_s_mean": _r(mean([e.descent_s for e in ev]), 3),
            "ascent_s_mean": _r(mean([e.ascent_s for e in ev]), 3),
            "knee_asymmetry_mean_deg": _r(mean([e.knee_asymmetry_deg for e in ev]), 1),
            "knee_valgus_max_cm_r": _r(extreme([e.knee_valgus_cm_r for e in ev], max), 1),
            "knee_valgus_max_cm_l": _r(extreme([e.knee_valgus_cm_l for e in ev], max), 1),
            "trunk_lean_max_deg": _r(extreme([e.trunk_lean_deg for e in ev], max), 1),
            "in_rep": self.in_rep,
            "frames": self.counts["frames"],
            "skipped_frames": self.counts["skipped"],
            "partials": [p.to_dict() for p in self.partials],
        }
        return out


def _smooth(rows: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Zero-lag 2nd-order Butterworth low-pass of every finite column (time column kept).

    The filter runs on the time stamps, not the frame count: frames the
    service skipped (latest wins) leave holes, so the rows are put on an even
    grid at the usual frame interval first and brought back to their own
    times after.
    """
    if cutoff_hz <= 0 or len(rows) < 16:
        return rows
    t = rows[:, _T]
    dt = np.diff(t)
    step = float(np.median(dt))
    rate = 1.0 / step
    if not (math.isfinite(rate) and cutoff_hz < 0.45 * rate) or np.any(dt <= 0):
        return rows
    even = bool(np.all(np.abs(dt - step) <= 0.01 * step))
    grid = t if even else np.arange(t[0], t[-1] + 0.5 * step, step)
    from scipy.signal import butter, filtfilt  # here, not at import: the command line starts faster

    try:
        b, a = butter(2, cutoff_hz / (0.5 * rate))
        out = rows.copy()
        for col in range(1, rows.shape[1]):
            if np.isfinite(rows[:, col]).all():
                values = rows[:, col] if even else np.interp(grid, t, rows[:, col])
                smooth = filtfilt(b, a, values, padtype="odd", padlen=min(len(grid) - 1, 15))
                out[:, col] = smooth if even else np.interp(t, grid, smooth)
    except ValueError:  # a rep too odd to filter (it cannot raise into the stream): measured unsmoothed
        return rows
    return out


# --------------------------------------------------------------------------- joint centres


def _load_model(model):
    """An OpenSim model and a fresh state from a path (or a model as it is)."""
    from kinestream.osim import read_model

    if isinstance(model, (str, Path)):
        model = read_model(model)
    state = model.initSystem()
    return model, state


def _bodies(model) -> dict:
    bodies = model.getBodySet()
    missing = [b for b in CENTRE_BODIES.values() if not bodies.contains(b)]
    if missing:
        raise KinestreamError(
            f"the model {model.getName()!r} has no body {', '.join(missing)}; the joint centres "
            f"need the bodies {', '.join(CENTRE_BODIES.values())} (OpenSim's gait models, "
            f"Pose2Sim's and OpenCap's have them)"
        )
    return {name: bodies.get(body) for name, body in CENTRE_BODIES.items()}


def _centres(bodies: dict, state, vec_y) -> dict[str, np.ndarray]:
    out = {name: body.getPositionInGround(state).to_numpy().copy() for name, body in bodies.items()}
    out[TORSO_AXIS] = bodies["torso"].expressVectorInGround(state, vec_y).to_numpy().copy()
    return out


CENTRE_KEYS = (*CENTRE_BODIES, TORSO_AXIS)  # the rows of centres_array


def centres_array(model, state) -> np.ndarray:
    """:func:`centres_from_state` as one (len(CENTRE_KEYS), 3) array: what an IK process sends back."""
    centres = centres_from_state(model, state)
    return np.stack([centres[k] for k in CENTRE_KEYS])


def centres_dict(rows: np.ndarray | None) -> dict[str, np.ndarray] | None:
    """The dict form of a :func:`centres_array` (None stays None)."""
    if rows is None:
        return None
    return {k: rows[i] for i, k in enumerate(CENTRE_KEYS)}


def centres_from_state(model, state) -> dict[str, np.ndarray]:
    """Joint centres of a posed model, in ground (metres, Y up), from a state realized to Position.

    Keys: ``hip_r``/``hip_l`` (femur origins), ``knee_r``/``knee_l`` (tibia
    origins), ``ankle_r``/``ankle_l`` (talus origins), ``pelvis`` and
    ``torso`` (body origins), and ``torso_axis``: the torso frame's Y axis, a
    unit vector. For many frames, :class:`CentresFromModel` avoids looking the
    bodies up each time.
    """
    from kinestream.osim import opensim_module

    model.realizePosition(state)  # returns at once when already realized
    return _centres(_bodies(model), state, opensim_module().Vec3(0.0, 1.0, 0.0))


class CentresFromModel:
    """Joint centres frame by frame from one model: pose it from coordinate values, read the centres.

    ``model``: a path to an .osim file or an OpenSim model (a state of its
    own is made either way). ``frame(coords, q)`` poses the model from values
    in degrees (rotations) and metres; names the model lacks are ignored.
    A state posed elsewhere (by an IK solver) is read by :func:`centres_from_state`.
    """

    def __init__(self, model):
        from kinestream.osim import opensim_module

        osim = opensim_module()
        self.model, self.state = _load_model(model)
        self._bodies = _bodies(self.model)
        self._y = osim.Vec3(0.0, 1.0, 0.0)
        cs = self.model.getCoordinateSet()
        self._coords = {cs.get(i).getName(): cs.get(i) for i in range(cs.getSize())}
        self._rotational = {n: c.getMotionType() == osim.Coordinate.Rotational for n, c in self._coords.items()}
        self._plan: tuple[tuple[str, ...], list] | None = None

    def frame(self, coords: list[str], q, in_degrees: bool = True) -> dict[str, np.ndarray]:
        """Centres with the model posed at ``q`` (ordered as ``coords``); all NaN if a used value is not finite."""
        key = tuple(coords)
        if self._plan is None or self._plan[0] != key:
            plan = [
                (j, self._coords[n], self._rotational[n] and in_degrees)
                for j, n in enumerate(coords)
                if n in self._coords
            ]
            self._plan = (key, plan)
        q = np.asarray(q, dtype=float)
        values = [(c, math.radians(q[j]) if deg else float(q[j])) for j, c, deg in self._plan[1]]
        if not all(math.isfinite(v) for _, v in values):
            return {name: np.full(3, np.nan) for name in (*CENTRE_BODIES, TORSO_AXIS)}
        for c, v in values:
            c.setValue(self.state, v, False)
        self.model.realizePosition(self.state)
        return _centres(self._bodies, self.state, self._y)


def joint_centres(model_path, motion: Motion) -> dict[str, np.ndarray]:
    """Joint centres (frames, 3) for every frame of a motion, by forward kinematics of ``model_path``.

    ``model_path``: a .osim path, or None for the generic model. Frames with a
    non-finite coordinate give NaN. Keys as :func:`centres_from_state`.
    """
    if model_path is None:
        from kinestream.assets import get_assets

        model_path = get_assets(progress=lambda *_: None).generic_model
    fk = CentresFromModel(model_path)
    names = (*CENTRE_BODIES, TORSO_AXIS)
    out = {name: np.full((len(motion.time), 3), np.nan) for name in names}
    for i in range(len(motion.time)):
        frame = fk.frame(motion.names, motion.values[i], motion.in_degrees)
        for name in names:
            out[name][i] = frame[name]
    return out


# --------------------------------------------------------------------------- offline


def _translation(name: str) -> bool:
    """Metres, not degrees: the model's translations and the IK error column."""
    return is_translation(name) or name == "rmse_mm"


def detect_reps(
    motion: Motion, centres: dict | None = None, settings: RepSettings | None = None
) -> tuple[list[RepEvent], dict]:
    """Every rep of a recorded motion, by the streaming :class:`RepCounter` fed frame by frame.

    ``centres``: arrays (frames, 3) as :func:`joint_centres` returns, or None.
    Returns the events and the summary at the end of the motion.
    """
    counter = RepCounter(settings, motion.names)
    values = np.asarray(motion.values, dtype=float)
    if not motion.in_degrees:
        values = values.copy()
        for j, name in enumerate(motion.names):
            if not _translation(name):
                values[:, j] = np.degrees(values[:, j])
    if centres is not None:
        centres = {k: np.asarray(v, dtype=float) for k, v in centres.items()}
        for k, v in centres.items():
            if v.shape != (len(motion.time), 3):
                raise KinestreamError(
                    f"joint centre {k!r} has shape {v.shape}; it needs one point per frame ({len(motion.time)}, 3)"
                )
    for i, t in enumerate(motion.time):
        counter.step(float(t), values[i], None if centres is None else {k: v[i] for k, v in centres.items()})
    return list(counter.events), counter.summary()


# --------------------------------------------------------------------------- command line


def _fmt(value, spec: str, none: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


TABLE_HEADER = (
    "rep   start  bottom     end  down    up   knee  knee_r knee_l  hip_r  hip_l  deep  below_par  "
    "asym  valgus_r valgus_l  lean"
)
TABLE_UNITS = (
    "        (s)     (s)     (s)   (s)   (s)  (deg)   (deg)  (deg)  (deg)  (deg)       (hip-knee)  "
    "(deg)  (cm,med+) (cm,med+) (deg)"
)


def format_rep(e: RepEvent) -> str:
    """One line of the rep table."""
    below = "-" if e.below_parallel is None else f"{'yes' if e.below_parallel else 'no'} {e.hip_above_knee_cm:+.0f}cm"
    return (
        f"{e.index:3d} {e.start:7.2f} {e.bottom:7.2f} {e.end:7.2f} {e.descent_s:5.2f} {e.ascent_s:5.2f} "
        f"{e.knee_peak:6.1f}  {e.knee_peak_r:6.1f} {e.knee_peak_l:6.1f} {_fmt(e.hip_peak_r, '6.1f'):>6} "
        f"{_fmt(e.hip_peak_l, '6.1f'):>6}  {'yes' if e.deep_enough else 'no':>4}  {below:>9}  "
        f"{e.knee_asymmetry_deg:+5.1f}  {_fmt(e.knee_valgus_cm_r, '+8.1f'):>8} "
        f"{_fmt(e.knee_valgus_cm_l, '+8.1f'):>8} {_fmt(e.trunk_lean_deg, '5.1f'):>5}"
    )


def format_summary(summary: dict) -> str:
    s = summary
    lines = [
        f"{s['reps']} reps ({s['deep_enough']} deep enough"
        + (f", {s['below_parallel']} below parallel" if s["below_parallel"] is not None else "")
        + f"), {s['partial']} partial, {s['too_short'] + s['too_long']} rejected (too short/long)"
    ]
    if s["reps"]:
        lines.append(
            f"depth: mean {s['depth_mean_deg']:.1f} deg knee flexion (min {s['depth_min_deg']:.1f}, "
            f"max {s['depth_max_deg']:.1f}); tempo: {s['rep_s_mean']:.2f} s a rep "
            f"({s['descent_s_mean']:.2f} s down, {s['ascent_s_mean']:.2f} s up); "
            f"knee asymmetry (R-L) {s['knee_asymmetry_mean_deg']:+.1f} deg"
        )
    for p in s["partials"]:
        lines.append(f"partial rep {p['start']:.2f}-{p['end']:.2f} s: knee flexion peaked at {p['knee_peak']:.1f} deg")
    if s["in_rep"]:
        lines.append("the recording ends during a rep (not counted)")
    return "\n".join(lines)


def run_reps(args, config: dict | None = None) -> tuple[list[RepEvent], dict]:
    """The ``reps`` command: table (or JSON lines) of the reps of a .mot, and a plot."""
    from kinestream.config import load_config
    from kinestream.files.mot import read_mot
    from kinestream.plots import plot_reps

    if config is None:
        config = load_config(getattr(args, "config", None))
    settings = RepSettings.from_config(config)
    path = Path(args.mot)
    if not path.is_file():
        raise KinestreamError(
            f"motion file {path} does not exist; give the .mot of a session (from 'kinestream "
            f"process', 'ik' or 'serve --record')"
        )
    motion = read_mot(path)
    if len(motion.time) == 0:
        raise KinestreamError(f"{path} holds no frames")
    missing = [k for k in KNEES if k not in motion]
    if missing:
        raise KinestreamError(
            f"{path} has no {' or '.join(missing)} column; the rep counter needs both knee angles "
            f"(a .mot from 'kinestream process', 'ik' or 'serve --record')"
        )
    if args.model:
        model = args.model
    else:
        from kinestream.assets import get_assets

        model = get_assets(config, progress=lambda m: print(m, file=sys.stderr)).generic_model
        print(
            "note: joint centres from the generic model, unscaled (give --model scaled.osim for the subject's)",
            file=sys.stderr,
        )
    centres = joint_centres(model, motion)
    events, summary = detect_reps(motion, centres, settings)
    if args.json:
        for e in events:
            print(e.to_json())
        print(json.dumps({"summary": summary}, separators=(",", ":")))
    else:
        print(
            f"{path.name}: knee flexion through {settings.knee_start_deg:g} deg starts and ends a rep; "
            f"a rep needs {settings.min_depth_deg:g} deg, deep enough at {settings.deep_knee_deg:g} deg"
        )
        if events:
            print(TABLE_HEADER)
            print(TABLE_UNITS)
            for e in events:
                print(format_rep(e))
        print(format_summary(summary))
    plot = config.get("output", {}).get("plot", True) and not getattr(args, "no_plot", False)
    if plot:
        out = Path(args.out) if args.out else path.with_name(path.stem + "_reps.png")
        plot_reps(motion, events, out, settings=settings, partials=summary["partials"], title=path.stem)
        print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout)
    return events, summary


def add_reps_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``kinestream reps`` on the command's subparsers."""
    p = subparsers.add_parser("reps", help="count squat reps in a .mot and measure each (depth, tempo, form)")
    p.add_argument("mot", help="joint angles .mot (from process, ik or serve --record)")
    p.add_argument("--model", help="scaled .osim for the joint centres (default: the generic model, unscaled)")
    p.add_argument("--json", action="store_true", help="one JSON object per rep per line, then the summary")
    p.add_argument("--out", help="plot .png (default: SESSION_reps.png beside the .mot)")
    p.add_argument("--no-plot", action="store_true", help="write no plot")
    p.set_defaults(func=run_reps)
    return p
