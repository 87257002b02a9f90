"""The squat: the timeline, the designed motion and the form, designed, checked and measured.

The designed motion: standing posture, squat shapes, depths, sway; the form: trunk lean, knee valgus, asymmetry, descent
time.

Motion. The subject stands perfectly still for ``STAND_S`` seconds (the
window used to scale a model), then squats: ``SQUAT_S`` seconds each
(minimum-jerk descent of ``DESCENT_S``, minimum-jerk ascent), separated by
``PAUSE_S`` of standing; time left at the end is standing. At the bottom of a
full-depth squat the right knee reaches 105 deg, the right hip 95 deg, the
ankles about 25 deg of dorsiflexion, with 15 deg of anterior pelvic tilt,
20 deg of lumbar flexion, the neck extended to keep the gaze level and the
arms raised forward (75 deg) for balance; the whole-body centre of mass stays
over the feet. Depth varies from squat to squat (``DEPTHS``: knee peaks of
about 105, 100 and 110 deg in the default trial) and the left leg flexes 3 %
less than the right (the pelvis lists and shifts a few centimetres to
the right to keep both feet down).

Variations, for tests of the squat feedback stage: ``depths`` sets each
squat's knee peak (degrees; a squat peaking below ``HALF_SQUAT_DEG`` is a half
squat, ``Squat.partial``), ``pauses`` the standing time between squats, and
``sway_deg`` adds a slow standing sway after the still window: the weight
shifts from side to side (pelvic list), the pelvis turns a little, and hips
and knees bend and straighten by up to ``sway_deg``, each at its own slow rhythm.

Form, for tests of the cues and the form measures: ``trunk_lean_deg``, the
trunk lean at the bottom (the line from the mid hip joint centre to the mid
shoulder joint centre, from vertical in the sagittal plane, forward positive),
reached by lumbar flexion or extension; ``descent_s``, the time from standing to
the bottom (the bottom stays where it was: the squat starts later);
``asymmetry_deg``, the right knee's flexion minus the left's at the bottom
(default: the left leg flexes 3 % less) -- each one number for every squat or a
list of one per squat; and ``valgus_cm``, the knee valgus of both knees at the
bottom of the first squat (seen from the front, the knee joint centre's
distance from the hip-ankle line, medial positive), reached by the stance: the
feet turned in (valgus) or out (varus) by the hips' rotation while standing, for
the whole trial (the model's knees bend about one axis, so with both feet flat
on the floor nothing else can move a knee in or out). Lean and valgus grow with the depth of the squat, from their
standing values to the designed ones at the bottom. :func:`trunk_lean` and
:func:`knee_valgus` measure them on the model's joint centres (written here
apart from :mod:`kinestream.reps`, whose measures the tests check against
these).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kinestream import checks
from kinestream.centres import CENTRE_BODIES
from kinestream.errors import SettingsError, SolverError
from kinestream.synth.kinematics import _FootClosure, _Kinematics

# Timeline (seconds).
STAND_S = 2.5  # still standing at the start
DESCENT_S = 1.2  # standing to the bottom of a squat
SQUAT_S = 2.5  # one squat: descent and ascent
PAUSE_S = 0.6  # standing between squats
MIN_SECONDS = STAND_S + SQUAT_S

# Relative depth of successive squats (cycled).
DEPTHS = (1.0, 0.95, 1.05, 0.97)
# A squat whose knee flexion (mean of both knees) peaks below this is a half
# squat: not a rep for the rep counter at its default settings (reps.RepSettings).
HALF_SQUAT_DEG = 60.0
# Bounds of the designed knee peak of a squat (``depths``) and of the sway.
MIN_DEPTH_DEG, MAX_DEPTH_DEG = 20.0, 135.0
MAX_SWAY_DEG = 15.0
# Bounds of the designed form.
TRUNK_LEAN_DEG = (0.0, 70.0)
VALGUS_CM = (-8.0, 8.0)
MAX_STANCE_TURN_DEG = 35.0  # the feet turned in or out (hip rotation while standing) for a designed valgus
MIN_DESCENT_S = 0.3
MAX_ASYMMETRY_DEG = 10.0
# The arms rise with depth up to this fraction of the full-depth change (beyond: out of the shoulder's range).
ARM_DEPTH_MAX = 1.1
# Sway: frequencies (Hz) of the knee/hip bend, the side-to-side weight shift and
# the pelvis turn; it fades in over SWAY_RAMP_S after the still window.
_SWAY_BEND_HZ, _SWAY_LIST_HZ, _SWAY_TURN_HZ = 0.21, 0.13, 0.09
SWAY_RAMP_S = 1.0
# The left leg flexes this fraction of the right's excursion; the left arm likewise.
LEFT_LEG = 0.97
LEFT_ARM = 0.93

# Standing posture, degrees (rotations) and metres (translations). The ankle
# is set so the foot is flat: foot pitch = pelvis_tilt + hip_flexion - knee + ankle.
_STAND = {
    "pelvis_tilt": 0.0,
    "pelvis_list": 0.0,
    "pelvis_rotation": 0.0,
    "pelvis_tx": 0.0,
    "pelvis_ty": 0.0,
    "pelvis_tz": 0.0,
    "hip_flexion": 2.0,
    "hip_adduction": -3.0,
    "hip_rotation": -4.0,
    "knee_angle": 3.0,
    "ankle_angle": 1.0,
    "subtalar_angle": 0.0,
    "mtp_angle": 0.0,
    "L5_S1_Flex_Ext": 0.0,
    "L5_S1_Lat_Bending": 0.0,
    "L5_S1_axial_rotation": 0.0,
    "neck_flexion": 0.0,
    "neck_bending": 0.0,
    "neck_rotation": 0.0,
    "arm_flex": 0.0,
    "arm_add": -6.0,
    "arm_rot": 0.0,
    "elbow_flex": 12.0,
    "pro_sup": 90.0,
    "wrist_flex": 0.0,
    "wrist_dev": 0.0,
}
# Change from standing at the bottom of a full-depth squat (degrees). Signs in
# this model: pelvis_tilt < 0 tilts the pelvis forward, L5_S1_Flex_Ext < 0
# flexes the trunk, neck_flexion > 0 lifts the chin, hip_adduction < 0
# abducts, hip_rotation < 0 rotates externally, ankle_angle > 0 dorsiflexes,
# arm_flex > 0 raises the arm forward, arm_add toward 0 brings it to the side.
_KNEE, _HIP, _TILT = 102.0, 93.0, -15.0
_DELTA = {
    "pelvis_tilt": _TILT,
    "pelvis_list": 1.0,
    "pelvis_rotation": -1.0,
    "hip_flexion": _HIP,
    "hip_adduction": -5.0,
    "hip_rotation": -4.0,
    "knee_angle": _KNEE,
    "ankle_angle": _KNEE - _HIP - _TILT,
    "L5_S1_Flex_Ext": -20.0,
    "L5_S1_Lat_Bending": 1.0,
    "neck_flexion": 18.0,
    "arm_flex": 75.0,
    "arm_add": 4.0,
    "elbow_flex": 15.0,
}
_LEG = {"hip_flexion", "hip_adduction", "hip_rotation", "knee_angle", "ankle_angle", "subtalar_angle", "mtp_angle"}
_ARM = {"arm_flex", "arm_add", "arm_rot", "elbow_flex", "pro_sup", "wrist_flex", "wrist_dev"}
# Joint centres of the form measures: the origins of these bodies.
_CENTRES = {name: body for name, body in CENTRE_BODIES.items() if name not in ("pelvis", "torso")}


@dataclass(frozen=True)
class Squat:
    """One squat: its window, bottom time (s), true peak angles (degrees) and true form at the bottom.

    ``start`` and ``end`` bound the designed movement (the knees leave and
    regain the standing pose); ``partial`` marks a half squat, whose knee
    flexion (mean of both knees) peaks below ``HALF_SQUAT_DEG``. The form at
    the bottom frame, designed or not: ``trunk_lean_deg``
    (:func:`trunk_lean`), ``knee_valgus_cm_r/l`` (:func:`knee_valgus`)
    and ``knee_asymmetry_deg`` (right minus left knee flexion);
    ``descent_s``: the designed time from standing to the bottom.
    """

    index: int
    start: float
    bottom: float
    end: float
    knee_angle_r: float
    knee_angle_l: float
    hip_flexion_r: float
    hip_flexion_l: float
    partial: bool = False
    trunk_lean_deg: float = math.nan
    knee_valgus_cm_r: float = math.nan
    knee_valgus_cm_l: float = math.nan
    knee_asymmetry_deg: float = math.nan
    descent_s: float = DESCENT_S


# --------------------------------------------------------------------------- motion design


def _min_jerk(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def _squat_shape(time: np.ndarray, start: float, descent_s: float = DESCENT_S) -> np.ndarray:
    """0 standing, 1 at the bottom (``start + DESCENT_S``); smooth (zero velocity and acceleration at the ends).

    A ``descent_s`` shorter than DESCENT_S stands longer first: the bottom and the ascent stay where they were.
    """
    u = time - start
    down = _min_jerk((u - (DESCENT_S - descent_s)) / descent_s)
    up = 1.0 - _min_jerk((u - DESCENT_S) / (SQUAT_S - DESCENT_S))
    shape = np.where(u < DESCENT_S, down, up)
    shape[(u <= 0.0) | (u >= SQUAT_S)] = 0.0
    return shape


def squat_starts(n_squats: int, pauses=None) -> list[float]:
    """Start times of the squats; ``pauses``: standing seconds between them (one number or one per gap)."""
    if pauses is None:
        return [STAND_S + k * (SQUAT_S + PAUSE_S) for k in range(n_squats)]
    gaps = _pause_list(pauses, n_squats)
    return [STAND_S + k * SQUAT_S + float(sum(gaps[:k])) for k in range(n_squats)]


def _pause_list(pauses, n_squats: int) -> list[float]:
    if np.ndim(pauses) == 0:
        return [float(pauses)] * max(0, n_squats - 1)
    return [float(p) for p in pauses]


def max_squats(seconds: float, pause_s: float = PAUSE_S) -> int:
    """How many squats (with pauses of ``pause_s``) fit after the standing phase."""
    return max(0, int(math.floor((seconds - STAND_S + pause_s) / (SQUAT_S + pause_s) + 1e-9)))


def _depth_factor(knee_peak_deg: float) -> float:
    """Fraction of the full-depth change that brings the knee from standing to ``knee_peak_deg``."""
    return (knee_peak_deg - _STAND["knee_angle"]) / _KNEE


def _sway(time: np.ndarray, amplitude: float) -> dict[str, np.ndarray]:
    """Slow standing sway after the still window (degrees), by base coordinate name."""
    u = time - STAND_S
    fade = _min_jerk(u / SWAY_RAMP_S)
    bend = amplitude * fade * 0.5 * (1.0 - np.cos(2 * np.pi * _SWAY_BEND_HZ * np.maximum(u, 0.0)))
    shift = amplitude * fade * np.sin(2 * np.pi * _SWAY_LIST_HZ * np.maximum(u, 0.0))
    turn = amplitude * fade * np.sin(2 * np.pi * _SWAY_TURN_HZ * np.maximum(u, 0.0))
    hip = 0.8 * bend
    tilt = -0.3 * bend
    return {
        "knee_angle": bend,
        "hip_flexion": hip,
        "pelvis_tilt": tilt,
        "ankle_angle": bend - hip - tilt,
        "pelvis_list": 0.5 * shift,
        "pelvis_rotation": 0.3 * turn,
    }


def _design(
    names: list[str],
    time: np.ndarray,
    n_squats: int,
    starts: list[float] | None = None,
    factors: list[float] | None = None,
    sway_deg: float = 0.0,
    descents: list[float] | None = None,
    left_gains: list[float] | None = None,
    stance: dict[str, float] | None = None,
) -> np.ndarray:
    """Designed coordinate values (frames x coordinates), degrees and metres.

    ``starts`` and ``factors`` (relative depths) default to the standard
    timeline and ``DEPTHS``; ``sway_deg`` adds the standing sway;
    ``descents``: each squat's descent time (default DESCENT_S);
    ``left_gains``: each squat's left-leg fraction of the right's
    excursion (default LEFT_LEG); ``stance``: standing values (degrees) of
    some coordinates, by full name, instead of the standing posture's.
    """
    stance = stance or {}
    depth = np.zeros_like(time)
    depth_left = np.zeros_like(time)
    starts = squat_starts(n_squats) if starts is None else starts
    for k, start in enumerate(starts):
        factor = DEPTHS[k % len(DEPTHS)] if factors is None else factors[k]
        shape = _squat_shape(time, start, DESCENT_S if descents is None else descents[k])
        depth += factor * shape
        if left_gains is not None:
            depth_left += factor * left_gains[k] * shape
    sway = _sway(time, sway_deg) if sway_deg else {}
    out = np.zeros((len(time), len(names)))
    for j, name in enumerate(names):
        base, side = (name[:-2], name[-1]) if name[-2:] in ("_r", "_l") else (name, "")
        if base not in _STAND:
            raise SolverError(
                f"the model has coordinate {name!r}, which the squat design does not know",
                given=name,
                valid=sorted(_STAND),
            )
        gain = 1.0
        if side == "l":
            gain = LEFT_LEG if base in _LEG else LEFT_ARM if base in _ARM else 1.0
        standing = stance.get(name, _STAND[base])
        if side == "l" and base in _LEG and left_gains is not None:
            out[:, j] = standing + _DELTA.get(base, 0.0) * depth_left
        else:
            out[:, j] = standing + gain * _DELTA.get(base, 0.0) * (
                np.minimum(depth, ARM_DEPTH_MAX) if base in _ARM else depth
            )
        if base in sway:
            out[:, j] += sway[base]
    return out


# --------------------------------------------------------------------------- form


def _horizontal_unit(v: np.ndarray) -> np.ndarray:
    """``v`` without its vertical (Y) part, made unit length."""
    flat = np.array([v[0], 0.0, v[2]], dtype=float)
    return flat / np.linalg.norm(flat)


def trunk_lean(centres: dict) -> float:
    """Trunk lean (degrees, forward positive): the mid hip to mid shoulder joint centre line, from vertical.

    Measured in the sagittal plane (the vertical plane square to the line between the hips).

    ``centres``: points in ground (metres, Y up) named ``hip_r``, ``hip_l``, ``shoulder_r``, ``shoulder_l``.
    """
    right = _horizontal_unit(centres["hip_r"] - centres["hip_l"])
    forward = np.cross((0.0, 1.0, 0.0), right)
    line = 0.5 * (centres["shoulder_r"] + centres["shoulder_l"]) - 0.5 * (centres["hip_r"] + centres["hip_l"])
    return math.degrees(math.atan2(float(line @ forward), float(line[1])))


def knee_valgus(centres: dict, side: str) -> float:
    """Knee valgus of one leg (``side`` "r" or "l"), centimetres, medial positive (the knee caving in).

    Seen from the front (along the horizontal forward direction, square to the line between the hips): the knee
    joint centre's distance from the line from the hip joint centre to the ankle joint centre. ``centres``:
    points in ground named ``hip_r``, ``hip_l`` and ``hip_<side>``, ``knee_<side>``, ``ankle_<side>``.
    """
    right = _horizontal_unit(centres["hip_r"] - centres["hip_l"])

    def seen_from_the_front(p):  # (lateral to the right, up)
        return np.array([p @ right, p[1]])

    hip, knee, ankle = (seen_from_the_front(centres[f"{c}_{side}"]) for c in ("hip", "knee", "ankle"))
    direction = (ankle - hip) / np.linalg.norm(ankle - hip)
    normal = np.array([-direction[1], direction[0]])
    lateral = normal if normal[0] * (1.0 if side == "r" else -1.0) > 0 else -normal
    return float(-100.0 * (knee - hip) @ lateral)


def _centres_now(kin: _Kinematics, bodies: dict) -> dict[str, np.ndarray]:
    """The joint centres of the form measures in the posed model."""
    return {name: body.getPositionInGround(kin.state).to_numpy().copy() for name, body in bodies.items()}


@dataclass(frozen=True)
class _Form:
    """The designed form, one value per squat (None: not designed)."""

    leans: list[float] | None = None
    valgus: float | None = None
    descents: list[float] | None = None
    left_gains: list[float] | None = None


def _per_squat(what: str, value, n: int, low: float, high: float, unit: str) -> list[float] | None:
    """``value`` (one number, or a list of one per squat) as a list of ``n`` checked numbers; None stays None."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return [checks.number(what, value, low, high, unit)] * n
    if np.ndim(value) == 1 and len(value) == n:
        return [checks.number(f"{what}[{k}]", v, low, high, unit) for k, v in enumerate(value)]
    raise SettingsError(
        f"{what}={value!r} is not valid; it must be one number ({unit}) or a list of one per squat ({n} squats)",
        key=what,
        given=value,
        valid=f"one number ({unit}) or a list of {n}",
    )


def _check_form(trunk_lean, valgus, descent, asymmetry, n_squats: int, factors) -> _Form:
    """The designed form, checked: what was given and what is valid when it is not."""
    asymmetries = _per_squat("asymmetry_deg", asymmetry, n_squats, -MAX_ASYMMETRY_DEG, MAX_ASYMMETRY_DEG, "degrees")
    gains = None
    if asymmetries is not None:
        gains = []
        for k, a in enumerate(asymmetries):
            excursion = _KNEE * (DEPTHS[k % len(DEPTHS)] if factors is None else factors[k])
            gain = 1.0 - a / excursion
            if not 0.5 <= gain <= 1.5:
                raise SettingsError(
                    f"asymmetry_deg={a:g} is too large for squat {k + 1}, whose right knee bends {excursion:.0f} deg "
                    f"from standing; it must be at most half of that either way",
                    key="asymmetry_deg",
                    given=a,
                    valid=f"at most {excursion / 2:.0f} deg either way",
                )
            gains.append(gain)
    return _Form(
        leans=_per_squat("trunk_lean_deg", trunk_lean, n_squats, *TRUNK_LEAN_DEG, "degrees"),
        valgus=None if valgus is None else checks.number("valgus_cm", valgus, *VALGUS_CM, "cm (medial +)"),
        descents=_per_squat("descent_s", descent, n_squats, MIN_DESCENT_S, DESCENT_S, "seconds"),
        left_gains=gains,
    )


def _lean_by_lumbar(kin: _Kinematics, bodies: dict, q: np.ndarray, target_deg: float) -> float:
    """The lumbar flexion to add (radians) to pose ``q`` for a trunk lean of ``target_deg``: secant steps.

    The lumbar joint moves neither hips nor feet, so the foot closure is not disturbed.
    """
    lumbar = kin.names.index("L5_S1_Flex_Ext")

    def miss(add: float) -> float:
        posed = q.copy()
        posed[lumbar] += add
        kin.pose(posed, [lumbar])
        return trunk_lean(_centres_now(kin, bodies)) - target_deg

    kin.pose(q)
    a0, f0 = 0.0, miss(0.0)
    a1 = -math.radians(f0)  # flexing the lumbar spine (negative) leans the trunk forward, about degree for degree
    f1 = miss(a1)
    for _ in range(30):
        if abs(f1) < 1e-6:
            break
        a0, f0, a1 = a1, f1, a1 - f1 * (a1 - a0) / (f1 - f0)
        f1 = miss(a1)
    else:
        raise RuntimeError(f"the trunk lean of {target_deg:g} deg was not reached")  # a defect, not the input's
    return a1


def _stance_for_valgus(kin: _Kinematics, bodies: dict, make, bottom: int, target_cm: float) -> dict[str, float]:
    """The hips' standing rotation that brings both knees to ``target_cm`` of valgus at frame ``bottom``.

    Degrees, each side: the feet turned in or out; found by Newton steps on that frame's pose.

    ``make(stance)`` returns the design and the standing pose of a stance (see :func:`_design`).
    """

    def miss(turn: np.ndarray) -> np.ndarray:
        design, q_stand = make({"hip_rotation_r": float(turn[0]), "hip_rotation_l": float(turn[1])})
        kin.pose(_FootClosure(kin, q_stand).solve(design[bottom], q_stand, max_iter=200))
        centres = _centres_now(kin, bodies)
        return np.array([knee_valgus(centres, "r"), knee_valgus(centres, "l")]) - target_cm

    turn = np.full(2, _STAND["hip_rotation"])
    try:
        off = miss(turn)
        for _ in range(20):
            if np.abs(off).max() < 1e-4:
                return {"hip_rotation_r": float(turn[0]), "hip_rotation_l": float(turn[1])}
            slope = np.column_stack([(miss(turn + step) - off) / 0.5 for step in ((0.5, 0.0), (0.0, 0.5))])
            turn = turn - np.linalg.solve(slope, off)
            if np.abs(turn).max() > MAX_STANCE_TURN_DEG:
                break
            off = miss(turn)
    except (RuntimeError, np.linalg.LinAlgError):
        pass
    raise SettingsError(
        f"valgus_cm={target_cm:g} cannot be reached at the bottom of this squat with the feet turned in or out "
        f"by at most {MAX_STANCE_TURN_DEG:g} deg; give a smaller valgus (from {VALGUS_CM[0]:g} to {VALGUS_CM[1]:g} "
        f"cm reach a squat of 100 deg)",
        key="valgus_cm",
        given=target_cm,
        valid=VALGUS_CM,
    )
