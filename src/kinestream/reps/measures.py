"""The geometry of one frame (:func:`frame_measures`): what the rep's measures below are taken from.

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
"""

from __future__ import annotations

import math

import numpy as np

from kinestream.centres import TORSO_AXIS


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
