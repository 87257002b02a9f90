"""Squat feedback: repetitions found in the joint angles as they arrive, with per-rep measures.

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
from joint centres in ground (metres, Y up), see :func:`kinestream.centres.centres_from_state`.
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

import json
import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from kinestream.centres import TORSO_AXIS
from kinestream.config import DEFAULTS
from kinestream.errors import KinestreamError
from kinestream.files.mot import Motion, is_translation

KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")


# --------------------------------------------------------------------------- settings


_REPS = DEFAULTS["reps"]


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

    knee_start_deg: float = _REPS["knee_start_deg"]
    hysteresis_deg: float = _REPS["hysteresis_deg"]
    min_depth_deg: float = _REPS["min_depth_deg"]
    deep_knee_deg: float = _REPS["deep_knee_deg"]
    min_rep_s: float = _REPS["min_rep_s"]
    max_rep_s: float = _REPS["max_rep_s"]
    smooth_hz: float = _REPS["smooth_hz"]

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
            end = _crossing(*prev, t, knee, start_level) if prev is not None else t
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
