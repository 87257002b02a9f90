"""A rep as it is reported, and a set's summary (:func:`summarize`).

:class:`RepEvent` (or :class:`PartialRep`, a half squat), its cues (:func:`cues_for`), the rounding for display and
transport.

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
from dataclasses import asdict, dataclass

import numpy as np

from kinestream.settings import CueSettings


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
        """The rep's duration (s), start to end."""
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
        """Rounded for display and transport: times to the ms, the knee's peak to 0.1 deg."""
        return {
            "start": _r(self.start, 3),
            "bottom": _r(self.bottom, 3),
            "end": _r(self.end, 3),
            "knee_peak": _r(self.knee_peak, 1),
        }


def _finite(*values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


#: The cues, most important first: at most max_per_rep of them go with a rep, in this order.
CUES = ("knees out", "chest up", "go deeper", "control the descent", "even it out")


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


def summarize(
    events: list[RepEvent],
    partials: list[PartialRep],
    incomplete: list[RepEvent],
    counts: dict,
    *,
    in_rep: bool,
    seated: bool,
) -> dict:
    """A set's summary (:meth:`RepCounter.summary`): counts, depth, tempo, form and cues, and the odd reps (JSON-ready).

    The odd reps are the partial and incomplete ones. ``counts``: the counter's frames, skipped, too_short and too_long;
    ``in_rep`` and ``seated``: its state.
    """
    ev = events

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
        "partial": len(partials),
        "incomplete": len(incomplete),
        "too_short": counts["too_short"],
        "too_long": counts["too_long"],
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
        "in_rep": in_rep,
        "seated": seated,
        "frames": counts["frames"],
        "skipped_frames": counts["skipped"],
        "partials": [p.to_dict() for p in partials],
        "incomplete_reps": [e.to_dict() for e in incomplete],
    }
    return out
