"""Squat feedback: repetitions found in the joint angles as they arrive, with per-rep measures and cues.

A synchronous core (no I/O), called once per solved frame by the live service
and over every frame of a recorded .mot offline, so both give the same reps.

What a rep is. The signal is knee flexion, the mean of ``knee_angle_r`` and
``knee_angle_l`` (degrees). A squat rep is an excursion of it above
``knee_start_deg``: it **starts** when the knee flexion rises through
``knee_start_deg`` and **ends** when it falls back through ``knee_start_deg``
(both times interpolated between the two frames either side). Two hysteresis
rules keep noise near the threshold from making or breaking reps: the
excursion only counts once it has reached ``knee_start_deg + hysteresis_deg``,
and nothing starts until the knees have been seen below ``knee_start_deg``
(a stream that begins crouched, but not seated, waits until they stand). The
rep's event is returned by the very frame that ends it: there is no
look-ahead, so the live service can publish it one frame after the rep ends.

Seated. The athlete is seated when knee flexion is at least
``seated_knee_deg`` and hip flexion at least ``seated_hip_deg`` (when the
angles have it), held within ``seated_still_deg`` of the greatest knee flexion
for ``seated_hold_s`` -- or when the stream begins so (however long that was
seen). Standing up from seated is a **sit-to-stand** rep (``kind``
``"sit_to_stand"``), ended, like a squat, when the knees fall through
``knee_start_deg``. Its ``bottom`` is the seat-off (the last frame within
``seated_still_deg`` of the seated knee flexion before the rise),
``seated_s`` the time seated, ``descent_s`` the sit-down before it (None when
the stream began seated) and ``ascent_s`` the rise. A sit-to-stand set's
seated pauses are often short (half a second) and look like a squat's bottom
to the knees alone, so after a sit-to-stand rep, a rep that starts within
``sit_set_break_s`` is one too. The counter cannot see a chair: a squat held
at the bottom for ``seated_hold_s`` counts as sitting.

An excursion is then judged:

- shorter than ``min_rep_s`` (a sit-to-stand rise: shorter than
  ``MIN_RISE_S``) or longer than ``max_rep_s``: rejected (counted in the
  summary as ``too_short`` / ``too_long``; a squat passing ``max_rep_s`` is
  dropped at once and the counter waits for the knees to straighten; sitting
  has no time limit);
- knee flexion peaking below ``min_depth_deg``: a partial rep (a half squat),
  counted in the summary as ``partial``, no event;
- otherwise a rep: a :class:`RepEvent`.

The end of the stream. :meth:`RepCounter.finish` closes a rep in progress
(:func:`detect_reps` calls it at the end of a recording, the live service when
the stream stops or restarts): one whose knees are on their way up and within
``end_margin_deg`` of ``knee_start_deg`` is reported as a rep (its ``end`` the
last frame, its ``reason`` saying so); any other is reported as incomplete
(``complete`` false, not counted) with the ``reason``: seated, at the bottom,
on the way up or down. An athlete seated since the stream began is not a rep
in progress.

The bottom is the frame of greatest knee flexion (sit-to-stand: the seat-off).
With ``smooth_hz`` > 0 the rep's frames are low-passed (zero lag: the rep is
over when it is measured) before the peaks and the bottom are taken, so
single-frame noise does not inflate the depth.

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
- ``trunk_lean_deg``: the back's angle as a coach sees it: the line from the
  mid hip joint centre to the mid shoulder joint centre (humerus origins),
  from vertical, in the sagittal plane (the vertical plane square to the
  line between the hips), **forward positive**; at the bottom frame.
- ``torso_frame_lean_deg``: the torso body frame's Y axis, measured the same
  way: a model quantity, not what a coach means by trunk lean. It turns with
  the lumbar joint alone, so it leans further forward than the hip-shoulder
  line as the pelvis tilts and the back rounds (6 to 16 deg further at the
  bottom of the synth squats and the real sit-to-stand).
- ``knee_asymmetry_deg``: right minus left knee flexion at the bottom frame.

Cues. With :class:`CueSettings` (the ``[cues]`` section) each complete rep
gets at most ``max_per_rep`` short cues (:data:`CUES`, most important first):
"knees out" (either knee's valgus over ``knees_out_cm``), "chest up" (trunk
lean over ``chest_up_deg``; squats only: a sit-to-stand leans forward to
rise), "go deeper" (peak knee flexion under ``go_deeper_deg``; squats only),
"control the descent" (descent under ``control_the_descent_s``), "even it
out" (knee asymmetry over ``even_it_out_deg``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from kinestream.centres import TORSO_AXIS
from kinestream.config import DEFAULTS
from kinestream.errors import KinestreamError
from kinestream.files.mot import Motion, is_translation

KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")
KINDS = ("squat", "sit_to_stand")
MIN_RISE_S = 0.15  # a rise from seated faster than this is a tracking jump, not a person standing up


# --------------------------------------------------------------------------- settings


_REPS = DEFAULTS["reps"]
_CUES = DEFAULTS["cues"]


@dataclass(frozen=True)
class RepSettings:
    """How reps are found and judged; the ``[reps]`` section of the config.

    knee_start_deg   knee flexion (mean of both knees, deg) through which a rep
                     starts (rising) and ends (falling)
    hysteresis_deg   an excursion above knee_start_deg counts only once it
                     reaches knee_start_deg + hysteresis_deg
    min_depth_deg    peak knee flexion a rep needs; shallower: a partial rep
    deep_knee_deg    peak knee flexion that is deep enough (``deep_enough``)
    min_rep_s        shorter excursions are rejected (noise, a stumble)
    max_rep_s        longer ones are rejected (resting crouched); not sitting
    smooth_hz        zero-lag low-pass of the rep's frames before peaks and
                     bottom are taken; 0: off
    seated_knee_deg  seated: knee flexion at least this...
    seated_hip_deg   ...and hip flexion at least this (when known)...
    seated_still_deg ...within this of the greatest knee flexion...
    seated_hold_s    ...held this long (or from the stream's start)
    sit_set_break_s  after a sit-to-stand rep, a rep starting within this is
                     a sit-to-stand rep too
    end_margin_deg   at the stream's end, a rep on its way up within this of
                     knee_start_deg is reported complete
    """

    knee_start_deg: float = _REPS["knee_start_deg"]
    hysteresis_deg: float = _REPS["hysteresis_deg"]
    min_depth_deg: float = _REPS["min_depth_deg"]
    deep_knee_deg: float = _REPS["deep_knee_deg"]
    min_rep_s: float = _REPS["min_rep_s"]
    max_rep_s: float = _REPS["max_rep_s"]
    smooth_hz: float = _REPS["smooth_hz"]
    seated_knee_deg: float = _REPS["seated_knee_deg"]
    seated_hip_deg: float = _REPS["seated_hip_deg"]
    seated_still_deg: float = _REPS["seated_still_deg"]
    seated_hold_s: float = _REPS["seated_hold_s"]
    sit_set_break_s: float = _REPS["sit_set_break_s"]
    end_margin_deg: float = _REPS["end_margin_deg"]

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
        if not self.knee_start_deg + self.hysteresis_deg < self.seated_knee_deg <= 160.0:
            bad(
                "seated_knee_deg",
                f"above knee_start_deg + hysteresis_deg ({self.knee_start_deg + self.hysteresis_deg:g}) "
                f"and at most 160 degrees",
            )
        if not 0.0 <= self.seated_hip_deg <= 160.0:
            bad("seated_hip_deg", "from 0 to 160 degrees of hip flexion")
        if not 0.5 <= self.seated_still_deg <= 30.0:
            bad("seated_still_deg", "from 0.5 to 30 degrees")
        if not 0.1 <= self.seated_hold_s <= 60.0:
            bad("seated_hold_s", "from 0.1 to 60 seconds")
        if not 0.0 <= self.sit_set_break_s <= 600.0:
            bad("sit_set_break_s", "from 0 (no sets) to 600 seconds")
        if not 0.0 <= self.end_margin_deg <= self.seated_knee_deg - self.knee_start_deg:
            bad(
                "end_margin_deg",
                f"from 0 to seated_knee_deg - knee_start_deg ({self.seated_knee_deg - self.knee_start_deg:g}) degrees",
            )


@dataclass(frozen=True)
class CueSettings:
    """The cue rules; the ``[cues]`` section of the config (see the module notes and default.toml)."""

    enabled: bool = _CUES["enabled"]
    max_per_rep: int = _CUES["max_per_rep"]
    knees_out: bool = _CUES["knees_out"]
    knees_out_cm: float = _CUES["knees_out_cm"]
    chest_up: bool = _CUES["chest_up"]
    chest_up_deg: float = _CUES["chest_up_deg"]
    go_deeper: bool = _CUES["go_deeper"]
    go_deeper_deg: float = _CUES["go_deeper_deg"]
    control_the_descent: bool = _CUES["control_the_descent"]
    control_the_descent_s: float = _CUES["control_the_descent_s"]
    even_it_out: bool = _CUES["even_it_out"]
    even_it_out_deg: float = _CUES["even_it_out_deg"]

    @classmethod
    def from_config(cls, config: dict | None) -> CueSettings:
        """Settings from ``config["cues"]`` (missing keys: defaults); KinestreamError names a bad key or value."""
        from kinestream.config import section, validate

        values = section(config, "cues", cls)
        validate({"cues": values}, "the settings")
        return cls(**values)


#: The cues, most important first: at most max_per_rep of them go with a rep, in this order.
CUES = ("knees out", "chest up", "go deeper", "control the descent", "even it out")


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
    """One rep, measured when it ended. Angles in degrees, times in seconds (the stream's clock).

    An incomplete rep (``complete`` false: the stream ended during it) has the
    measures of the frames seen, ``end`` at the last frame, and its ``reason``.
    """

    index: int  # 1-based, in the session (an incomplete rep: the number it would have had)
    start: float  # knee flexion rose through knee_start_deg (sit-to-stand from the stream's start: its first frame)
    bottom: float  # greatest knee flexion (sit-to-stand: the seat-off)
    end: float  # knee flexion fell back through knee_start_deg (or the stream's last frame)
    descent_s: float | None  # start to bottom (sit-to-stand: the sit-down; None when not seen)
    ascent_s: float  # bottom to end (sit-to-stand: the rise)
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
    trunk_lean_deg: float | None  # mid hip to mid shoulder line from vertical, sagittal plane, forward +, at the bottom
    kind: str = "squat"  # "squat" or "sit_to_stand"
    complete: bool = True
    reason: str | None = None  # why incomplete, or how a rep the end of the stream closed was closed
    seated_s: float | None = None  # sit-to-stand: time seated before the rise
    torso_frame_lean_deg: float | None = None  # the torso frame's Y axis, measured as trunk_lean_deg
    cues: tuple[str, ...] = ()  # at most max_per_rep of CUES

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        """Rounded for display and transport: times to the ms, angles to 0.1 deg, lengths to 0.1 cm."""
        out: dict = {}
        for name, value in asdict(self).items():
            if name == "index":
                out[name] = int(value)
            elif name in ("kind", "reason", "complete"):
                out[name] = value
            elif name == "cues":
                out[name] = list(value)
            elif name in ("start", "bottom", "end", "descent_s", "ascent_s", "seated_s"):
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


def _finite(*values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def cues_for(event: RepEvent, settings: CueSettings | None = None) -> tuple[str, ...]:
    """The cues a complete rep earns (most important first, at most ``max_per_rep``); none for an incomplete one."""
    s = settings or CueSettings()
    if not (s.enabled and event.complete):
        return ()
    squat = event.kind == "squat"
    valgus = _finite(event.knee_valgus_cm_r, event.knee_valgus_cm_l)
    lean = _finite(event.trunk_lean_deg)
    rules = (
        ("knees out", s.knees_out and bool(valgus) and max(valgus) > s.knees_out_cm),
        ("chest up", s.chest_up and squat and bool(lean) and lean[0] > s.chest_up_deg),
        ("go deeper", s.go_deeper and squat and event.knee_peak < s.go_deeper_deg),
        (
            "control the descent",
            s.control_the_descent and event.descent_s is not None and event.descent_s < s.control_the_descent_s,
        ),
        ("even it out", s.even_it_out and abs(event.knee_asymmetry_deg) > s.even_it_out_deg),
    )
    return tuple(cue for cue, fired in rules if fired)[: s.max_per_rep]


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


_NEEDED = ("hip_r", "hip_l", "knee_r", "knee_l", "ankle_r", "ankle_l", "shoulder_r", "shoulder_l", TORSO_AXIS)


def frame_measures(centres: dict | None) -> tuple[float, float, float, float, float]:
    """One frame's (hip above knee cm, valgus right cm, valgus left cm, trunk lean deg, torso frame lean deg).

    NaN where unknown. Plain float arithmetic: this runs on every frame of a live stream.
    """
    nan = math.nan
    if not centres:
        return nan, nan, nan, nan, nan
    try:
        p = {name: _point(centres, name) for name in _NEEDED}
    except AttributeError:  # not a mapping
        return nan, nan, nan, nan, nan
    hip_r, hip_l, knee_r, knee_l = p["hip_r"], p["hip_l"], p["knee_r"], p["knee_l"]
    height = nan
    if hip_r and hip_l and knee_r and knee_l:
        height = 50.0 * ((hip_r[1] - knee_r[1]) + (hip_l[1] - knee_l[1]))
    if not (hip_r and hip_l):
        return height, nan, nan, nan, nan
    right = _unit((hip_r[0] - hip_l[0], 0.0, hip_r[2] - hip_l[2]))  # horizontal, towards the right hip
    if right is None:
        return height, nan, nan, nan, nan
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
    shoulder_r, shoulder_l = p["shoulder_r"], p["shoulder_l"]
    if shoulder_r and shoulder_l:
        back = (
            0.5 * (shoulder_r[0] + shoulder_l[0] - hip_r[0] - hip_l[0]),
            0.5 * (shoulder_r[1] + shoulder_l[1] - hip_r[1] - hip_l[1]),
            0.5 * (shoulder_r[2] + shoulder_l[2] - hip_r[2] - hip_l[2]),
        )
        lean = math.degrees(math.atan2(_dot(back, forward), back[1]))
    torso = nan
    axis = p[TORSO_AXIS]
    if axis:
        torso = math.degrees(math.atan2(_dot(axis, forward), axis[1]))
    return height, valgus[0], valgus[1], lean, torso


# --------------------------------------------------------------------------- the counter

# Columns of a rep's frame buffer.
_T, _KR, _KL, _HR, _HL, _HEIGHT, _VR, _VL, _LEAN, _TORSO = range(10)
_WAIT, _STANDING, _RISING, _IN_REP, _SEATED = "wait", "standing", "rising", "in_rep", "seated"


def _crossing(t0: float, k0: float, t1: float, k1: float, level: float) -> float:
    if k1 == k0:
        return t1
    return t0 + (level - k0) / (k1 - k0) * (t1 - t0)


def _mean_finite(a: float, b: float) -> float:
    """The mean of the finite ones of two values; NaN when neither is."""
    if math.isfinite(a) and math.isfinite(b):
        return 0.5 * (a + b)
    return a if math.isfinite(a) else b


class RepCounter:
    """Streaming rep detector: feed solved frames in time order; a :class:`RepEvent` comes back when a rep ends.

    ``coords``: the names of the values in each ``q`` (OpenSim coordinate
    names; degrees for rotations). It must hold ``knee_angle_r`` and
    ``knee_angle_l``; ``hip_flexion_r/l`` are used when present. ``cues``:
    the cue rules (default: the ``[cues]`` defaults). Call :meth:`finish` when
    the stream ends.
    """

    def __init__(self, settings: RepSettings | None, coords: list[str], cues: CueSettings | None = None):
        self.settings = settings or RepSettings()
        self.settings.check()
        self.cues = cues or CueSettings()
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
        self.incomplete: list[RepEvent] = []  # reps the end of the stream cut short (not counted)
        self.counts = {"frames": 0, "skipped": 0, "too_short": 0, "too_long": 0}
        self._last_sit_to_stand = -math.inf  # end of the last sit-to-stand rep (its set goes on)
        self._restart()

    def _restart(self) -> None:
        """A new stream: nothing under way, and it may begin seated."""
        self._state = _WAIT
        self._fresh = True  # no frame used yet: a seated start is possible
        self._prev: tuple[float, float] | None = None  # (t, knee) of the last used frame
        self._rows: list[list[float]] = []
        self._start = math.nan
        self._peak = -math.inf  # greatest knee flexion of the excursion so far
        self._near_since: float | None = None  # since when the knees have stayed seated near that peak
        self._hold_start = math.nan  # seated: when the athlete reached the seat (or the stream began)
        self._sit_down_s: float | None = None  # seated: how long the sit-down took (None: not seen)

    @property
    def in_rep(self) -> bool:
        """True while an excursion that counts (past knee_start_deg + hysteresis_deg) is under way."""
        return self._state == _IN_REP

    @property
    def seated(self) -> bool:
        """True while the athlete is seated (see the module notes)."""
        return self._state == _SEATED

    def _seated_pose(self, knee: float, hip: float) -> bool:
        """Knee (and hip, when known) flexed as far as seated."""
        s = self.settings
        return knee >= s.seated_knee_deg and (not math.isfinite(hip) or hip >= s.seated_hip_deg)

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
        hip = _mean_finite(*hips)
        s = self.settings
        prev, self._prev = self._prev, (t, knee)
        fresh, self._fresh = self._fresh, False
        start_level = s.knee_start_deg

        if self._state == _WAIT:
            if fresh and self._seated_pose(knee, hip):  # the stream begins seated
                self._start = self._hold_start = t
                self._sit_down_s = None
                self._rows = [[t, kr, kl, *hips, *frame_measures(centres)]]
                self._state = _SEATED
            elif knee < start_level:
                self._state = _STANDING
            return None
        if self._state == _STANDING:
            if knee > start_level:
                self._start = _crossing(*prev, t, knee, start_level) if prev is not None else t
                self._rows = []
                self._peak, self._near_since = -math.inf, None
                self._state = _RISING
            else:
                return None
        if knee < start_level:  # an excursion, or a rise from seated, ends
            end = _crossing(*prev, t, knee, start_level) if prev is not None else t
            state, self._state = self._state, _STANDING
            if state == _SEATED:
                return self._finish_rise(end)
            return self._finish(end) if state == _IN_REP else None
        self._rows.append([t, kr, kl, *hips, *frame_measures(centres)])
        if self._state == _SEATED:
            if t - self._rows[0][_T] > 2 * s.max_rep_s:  # sitting has no time limit; its frames are kept to a bound
                self._rows = [row for row in self._rows if row[_T] >= t - s.max_rep_s]
            return None
        if self._state == _RISING and knee >= start_level + s.hysteresis_deg:
            self._state = _IN_REP
        self._track_seat(t, knee, hip)
        if self._state == _IN_REP and self._near_since is not None and t - self._near_since >= s.seated_hold_s:
            self._state = _SEATED  # sat down
            self._hold_start = self._near_since
            self._sit_down_s = self._near_since - self._start
            return None
        if t - self._start > s.max_rep_s:
            if self._state == _IN_REP:
                self.counts["too_long"] += 1
            self._rows = []
            self._state = _WAIT
        return None

    def _track_seat(self, t: float, knee: float, hip: float) -> None:
        """Follow since when the knees have stayed seated within seated_still_deg of the excursion's peak."""
        s = self.settings
        if knee > self._peak:
            self._peak = knee
            since = None  # a new peak: how far back the frames stay near it
            for row in reversed(self._rows):
                k = 0.5 * (row[_KR] + row[_KL])
                if k >= knee - s.seated_still_deg and self._seated_pose(k, _mean_finite(row[_HR], row[_HL])):
                    since = row[_T]
                else:
                    break
            self._near_since = since
        elif knee >= self._peak - s.seated_still_deg and self._seated_pose(knee, hip):
            if self._near_since is None:
                self._near_since = t
        else:
            self._near_since = None

    def _take_rows(self) -> np.ndarray:
        rows = np.array(self._rows, dtype=float)
        self._rows = []
        return rows

    def _finish(self, end: float) -> RepEvent | None:
        """An excursion from standing ended at ``end``: a squat, or a sit-to-stand rep of a set under way."""
        s = self.settings
        start = self._start
        rows = self._take_rows()
        if end - start < s.min_rep_s or len(rows) == 0:
            self.counts["too_short"] += 1
            return None
        rows = _smooth(rows, s.smooth_hz)
        knee = 0.5 * (rows[:, _KR] + rows[:, _KL])
        b = int(np.argmax(knee))
        if knee[b] < s.min_depth_deg:
            self.partials.append(PartialRep(start, float(rows[b, _T]), end, float(knee[b])))
            return None
        if start - self._last_sit_to_stand <= s.sit_set_break_s:  # the set of sit-to-stands goes on
            off, seat = self._seat_off(rows, knee)
            return self._sit_to_stand(rows, knee, off, start, end, seat - start, float(rows[off, _T]) - seat)
        return self._event(rows, knee, b, start, end)

    def _finish_rise(self, end: float) -> RepEvent | None:
        """The athlete stood up from seated at ``end``: a sit-to-stand rep."""
        s = self.settings
        start = self._start
        rows = self._take_rows()
        if len(rows) == 0:
            self.counts["too_short"] += 1
            return None
        rows = _smooth(rows, s.smooth_hz)
        knee = 0.5 * (rows[:, _KR] + rows[:, _KL])
        off, _ = self._seat_off(rows, knee)
        rise = end - float(rows[off, _T])
        if rise < MIN_RISE_S or end - start < s.min_rep_s:
            self.counts["too_short"] += 1
            return None
        if rise > s.max_rep_s:
            self.counts["too_long"] += 1
            return None
        if float(knee.max()) < s.min_depth_deg:
            self.partials.append(PartialRep(start, float(rows[off, _T]), end, float(knee.max())))
            return None
        seated = float(rows[off, _T]) - self._hold_start  # the frames of a long sit are not all kept: its start is
        return self._sit_to_stand(rows, knee, off, start, end, self._sit_down_s, seated)

    def _seat_off(self, rows: np.ndarray, knee: np.ndarray) -> tuple[int, float]:
        """(frame of the seat-off, time the athlete reached the seat) of a rep's smoothed frames.

        The seated level is the greatest knee flexion in the last seated_hold_s before the knees last left
        seated_knee_deg; the seat-off is the last frame within seated_still_deg of it, and the seat was reached
        where the frames before it leave that band.
        """
        s = self.settings
        t = rows[:, _T]
        high = np.flatnonzero(knee >= s.seated_knee_deg)
        last = int(high[-1]) if len(high) else int(np.argmax(knee))
        window = (t >= t[last] - s.seated_hold_s) & (np.arange(len(t)) <= last)
        band = knee >= float(knee[window].max()) - s.seated_still_deg
        off = int(np.flatnonzero(band)[-1])
        first = off
        while first > 0 and band[first - 1]:
            first -= 1
        return off, float(t[first])

    def _sit_to_stand(
        self, rows, knee, off: int, start: float, end: float, descent: float | None, seated: float
    ) -> RepEvent:
        event = self._event(rows, knee, off, start, end, kind="sit_to_stand", descent=descent, seated=seated)
        self._last_sit_to_stand = end
        return event

    def _event(
        self,
        rows: np.ndarray,
        knee: np.ndarray,
        b: int,
        start: float,
        end: float,
        *,
        kind: str = "squat",
        descent: float | None = math.nan,
        seated: float | None = None,
        complete: bool = True,
        reason: str | None = None,
    ) -> RepEvent:
        """The event of a rep's (smoothed) frames with its bottom at frame ``b``; kept in events (or incomplete).

        ``descent``: NaN for bottom minus start.
        """

        def peak_of(col):
            v = rows[:, col]
            return float(np.nanmax(v)) if np.isfinite(v).any() else None

        def at_bottom(col):
            v = float(rows[b, col])
            return v if math.isfinite(v) else None

        bottom = float(rows[b, _T])
        height = rows[:, _HEIGHT]
        lowest = float(np.nanmin(height)) if np.isfinite(height).any() else None
        peak = float(knee.max())
        event = RepEvent(
            index=len(self.events) + 1,
            start=start,
            bottom=bottom,
            end=end,
            descent_s=bottom - start if descent is not None and math.isnan(descent) else descent,
            ascent_s=end - bottom,
            knee_peak=peak,
            knee_peak_r=float(np.max(rows[:, _KR])),
            knee_peak_l=float(np.max(rows[:, _KL])),
            hip_peak_r=peak_of(_HR),
            hip_peak_l=peak_of(_HL),
            deep_enough=bool(peak >= self.settings.deep_knee_deg),
            knee_asymmetry_deg=float(rows[b, _KR] - rows[b, _KL]),
            below_parallel=None if lowest is None else bool(lowest < 0.0),
            hip_above_knee_cm=lowest,
            knee_valgus_cm_r=at_bottom(_VR),
            knee_valgus_cm_l=at_bottom(_VL),
            trunk_lean_deg=at_bottom(_LEAN),
            kind=kind,
            complete=complete,
            reason=reason,
            seated_s=seated,
            torso_frame_lean_deg=at_bottom(_TORSO),
        )
        event = replace(event, cues=cues_for(event, self.cues))
        (self.events if complete else self.incomplete).append(event)
        return event

    def finish(self) -> RepEvent | None:
        """The stream has ended: close the rep under way, if any; the counter then waits for a new stream.

        A rep on its way up and within end_margin_deg of knee_start_deg is a rep (returned, counted, its
        ``reason`` saying it was closed at the end of the stream, its ``end`` the last frame); any other rep
        under way is returned incomplete (``complete`` false, kept in ``incomplete``, not counted) with the
        ``reason``. Nothing under way (standing, an excursion short of the hysteresis, seated since the
        stream began): None.
        """
        try:
            return self._close()
        finally:
            self._restart()

    def _close(self) -> RepEvent | None:
        s = self.settings
        state = self._state
        if state not in (_IN_REP, _SEATED) or not self._rows:
            return None
        raw = np.array(self._rows, dtype=float)
        t, knee = raw[:, _T], 0.5 * (raw[:, _KR] + raw[:, _KL])
        now, peak, last = float(knee[-1]), float(knee.max()), float(t[-1])
        if now <= s.knee_start_deg + s.end_margin_deg and peak - now >= max(s.hysteresis_deg, s.seated_still_deg):
            event = self._finish_rise(last) if state == _SEATED else self._finish(last)
            if event is not None:
                event = replace(
                    event,
                    reason=f"closed at the end of the stream: knee flexion back to {now:.0f} deg, within "
                    f"end_margin_deg of knee_start_deg ({s.knee_start_deg:g})",
                )
                self.events[-1] = event
            return event
        still = now >= peak - s.seated_still_deg
        if state == _SEATED and self._sit_down_s is None and still:
            return None  # seated since the stream began: no rep was under way
        before = knee[t >= last - 0.1][0]
        if state == _SEATED:
            reason = f"the stream ended with the athlete seated (knee flexion {now:.0f} deg): no stand-up followed"
        elif still and now - before > 1.0:
            reason = f"the stream ended on the way down (knee flexion {now:.0f} deg)"
        elif still:
            reason = f"the stream ended at the bottom (knee flexion {now:.0f} deg)"
        else:
            reason = f"the stream ended on the way up (knee flexion {now:.0f} deg, from a peak of {peak:.0f})"
        rows = _smooth(raw, s.smooth_hz)
        smooth = 0.5 * (rows[:, _KR] + rows[:, _KL])
        seated = state == _SEATED or self._start - self._last_sit_to_stand <= s.sit_set_break_s
        return self._event(
            rows,
            smooth,
            int(np.argmax(smooth)),
            self._start,
            last,
            kind="sit_to_stand" if seated else "squat",
            descent=self._sit_down_s if state == _SEATED else math.nan,
            seated=last - self._hold_start if state == _SEATED else None,
            complete=False,
            reason=reason,
        )

    def summary(self) -> dict:
        """The set so far: counts, depth, tempo, form and cues, plus the partial and incomplete reps (JSON-ready)."""
        ev = self.events

        def mean(values):
            values = _finite(*values)
            return float(np.mean(values)) if values else None

        def extreme(values, fn):
            values = _finite(*values)
            return float(fn(values)) if values else None

        depths = [e.knee_peak for e in ev]
        parallel = [e.below_parallel for e in ev if e.below_parallel is not None]
        cues: dict[str, int] = {}
        for e in ev:
            for cue in e.cues:
                cues[cue] = cues.get(cue, 0) + 1
        out = {
            "reps": len(ev),
            "sit_to_stand": sum(e.kind == "sit_to_stand" for e in ev),
            "partial": len(self.partials),
            "incomplete": len(self.incomplete),
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
            "cues": cues,
            "in_rep": self.in_rep,
            "seated": self.seated,
            "frames": self.counts["frames"],
            "skipped_frames": self.counts["skipped"],
            "partials": [p.to_dict() for p in self.partials],
            "incomplete_reps": [e.to_dict() for e in self.incomplete],
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
    motion: Motion,
    centres: dict | None = None,
    settings: RepSettings | None = None,
    cues: CueSettings | None = None,
) -> tuple[list[RepEvent], dict]:
    """Every rep of a recorded motion, by the streaming :class:`RepCounter` fed frame by frame and finished
    at the last frame (a rep the recording cuts short is closed out: counted, or in the summary's
    ``incomplete_reps`` with its reason).

    ``centres``: arrays (frames, 3) as :func:`joint_centres` returns, or None.
    Returns the events and the summary at the end of the motion.
    """
    counter = RepCounter(settings, motion.names, cues)
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
    summary_before = counter.summary()
    counter.finish()
    summary = counter.summary()
    summary["in_rep"], summary["seated"] = summary_before["in_rep"], summary_before["seated"]  # as the recording ended
    return list(counter.events), summary
