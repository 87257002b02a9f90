"""Ground truth: a squatting OpenSim model seen by cameras and by a marker lab.

:func:`synthesize` drives the generic model (uniformly scaled) through a
standing phase and a series of bodyweight squats by forward kinematics, and
writes what two measurement systems would have recorded:

- ``keypoints.trc``: the BODY_25 joint-centre keypoints a camera system
  reports (Markers_Body25.xml, ``CHip`` named ``MidHip``, no face points but
  the nose), optionally with seeded Gaussian noise and gaps (NaN);
- ``markers.trc``: the 43 anatomical ``_study`` markers of Markers_LSTM.xml,
  noise-free: what the marker augmenter should output;
- ``coords.mot``: all 40 coordinates (degrees / metres), the joint angles the
  pipeline should recover.

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

Feet stay planted. A designed pose does not in general keep both feet where
they stood (the legs form a closed chain through the floor), so each frame is
the pose closest to the design, in a weighted sense, that keeps the calcaneus,
first-toe and fifth-metatarsal markers of both feet exactly at their standing
positions. Knees, hip flexion and pelvic tilt are weighted heavily (they follow
the design to within about a degree); the pelvis translations, pelvic
list and rotation, hip ad/abduction and rotation, ankles and subtalar joints
absorb the closure. The pose is found by Gauss-Newton steps with analytic
station Jacobians from the multibody system.

Subject. ``height`` is the generic model's standing height times ``scale``:
the vertical distance, with every joint angle at zero, from the lowest vertex
of the foot meshes (calcaneus and toes bodies: the sole) to the highest vertex
of the head meshes (skull and jaw: the top of the head). ``mass`` is the
generic model's total mass times ``scale**3`` (uniform scaling at constant
density); the scaled model carries that mass.
"""

from __future__ import annotations

import functools
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream import checks
from kinestream.assets import get_assets
from kinestream.config import DEFAULTS
from kinestream.errors import KinestreamError
from kinestream.files.mot import Motion, write_mot
from kinestream.files.trc import MarkerTable, write_trc
from kinestream.ingest import BODY_25
from kinestream.osim import opensim_module
from kinestream.solve import register_joint_centres

# Timeline (seconds).
STAND_S = 2.5  # still standing at the start
DESCENT_S = 1.2  # standing to the bottom of a squat
SQUAT_S = 2.5  # one squat: descent and ascent
PAUSE_S = 0.6  # standing between squats
MIN_SECONDS = STAND_S + SQUAT_S

MIN_FS, MAX_FS = 10.0, 1000.0
FOOT_CLEARANCE = 0.015  # lowest foot marker above the floor (y = 0) while standing, metres

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

# Coordinates the foot closure may move, with the weight (per radian, per
# metre for translations) of a departure from the design.
_FREE = {
    "pelvis_tilt": 20.0,
    "pelvis_list": 10.0,
    "pelvis_rotation": 10.0,
    "pelvis_tx": 0.01,
    "pelvis_ty": 0.01,
    "pelvis_tz": 0.01,
    **{
        f"{c}_{s}": w
        for s in "rl"
        for c, w in (
            ("hip_flexion", 20.0),
            ("hip_adduction", 2.0),
            ("hip_rotation", 2.0),
            ("knee_angle", 50.0),
            ("ankle_angle", 5.0),
            ("subtalar_angle", 2.0),
        )
    },
}
# Markers held at their standing positions (all fixed to the calcaneus bodies).
_PLANTED = ["r_calc_study", "r_toe_study", "r_5meta_study", "L_calc_study", "L_toe_study", "L_5meta_study"]
# Joint centres of the form measures: the origins of these bodies.
_CENTRES = {
    "hip_r": "femur_r",
    "hip_l": "femur_l",
    "knee_r": "tibia_r",
    "knee_l": "tibia_l",
    "ankle_r": "talus_r",
    "ankle_l": "talus_l",
    "shoulder_r": "humerus_r",
    "shoulder_l": "humerus_l",
}

_FACE = {"REye", "LEye", "REar", "LEar"}
_KEYPOINT_RENAME = {"CHip": "MidHip"}
_FOOT_BODIES = ("calcn_r", "calcn_l", "toes_r", "toes_l")
_HEAD_BODIES = ("head",)


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


@dataclass(frozen=True)
class Gap:
    """Keypoint ``keypoint`` is NaN in frames ``start`` to ``stop - 1`` (0-based)."""

    keypoint: str
    start: int
    stop: int


@dataclass
class SynthResult:
    """What :func:`synthesize` wrote, and the truth behind it."""

    keypoints_trc: Path
    markers_trc: Path
    coords_mot: Path
    keypoints: MarkerTable  # as written: with noise and gaps
    keypoints_true: MarkerTable  # the same keypoints, noise-free and complete
    markers: MarkerTable  # the 43 anatomical markers, noise-free
    motion: Motion  # all coordinates, degrees / metres
    mass: float  # kg
    height: float  # m
    standing: tuple[float, float]  # still window (start, end), seconds
    squats: list[Squat]
    gaps: list[Gap] = field(default_factory=list)
    fs: float = 60.0
    scale: float = 1.0
    noise_mm: float = 0.0
    seed: int = 0


# --------------------------------------------------------------------------- model


def _marker_lists(assets) -> tuple[list, list]:
    """(anatomical markers, keypoint markers) as OpenSim Marker clones, renamed."""
    osim = opensim_module()
    anatomical = []
    lstm = osim.MarkerSet(str(assets.marker_set))
    for i in range(lstm.getSize()):
        if lstm.get(i).getName().endswith("_study"):
            anatomical.append(lstm.get(i).clone())
    keypoints = []
    body25 = osim.MarkerSet(str(assets.keypoint_marker_set))
    for i in range(body25.getSize()):
        marker = body25.get(i).clone()
        marker.setName(_KEYPOINT_RENAME.get(marker.getName(), marker.getName()))
        keypoints.append(marker)
    order = {name: k for k, name in enumerate(BODY_25)}
    keypoints = [m for m in keypoints if m.getName() in order and m.getName() not in _FACE]
    keypoints.sort(key=lambda m: order[m.getName()])
    return anatomical, keypoints


def truth_model(scale: float = 1.0, assets=None):
    """The generic model, scaled uniformly by ``scale``, with both marker sets.

    Returns ``(model, state, anatomical_names, keypoint_names)``. The model
    holds the 43 ``_study`` markers of Markers_LSTM.xml (the malleoli on the ankle joint centre, as scaling
    puts them: ``[scale] joint_centre_markers``) and the BODY_25
    keypoint markers of Markers_Body25.xml (``CHip`` renamed ``MidHip``; the
    OpenPose-named markers of Markers_LSTM.xml are left out so names stay
    unique). Its total mass is the generic mass times ``scale**3``.
    """
    checks.positive("scale", scale)
    osim = opensim_module()
    assets = assets or get_assets(progress=lambda *_: None)
    model = osim.Model(str(assets.generic_model))
    anatomical, keypoints = _marker_lists(assets)
    for marker in anatomical + keypoints:
        model.addMarker(marker)
    state = model.initSystem()
    # the anatomical markers where scaling puts them: a pair that defines a joint centre sits on it
    if register_joint_centres(model, state, DEFAULTS["scale"]["joint_centre_markers"]):
        state = model.initSystem()
    generic_mass = model.getTotalMass(state)
    if scale != 1.0:
        factors = osim.ScaleSet()
        bodies = model.getBodySet()
        for i in range(bodies.getSize()):
            factor = osim.Scale()
            factor.setSegmentName(bodies.get(i).getName())
            factor.setScaleFactors(osim.Vec3(scale, scale, scale))
            factor.setApply(True)
            factors.cloneAndAppend(factor)
        if not model.scale(state, factors, True, generic_mass * scale**3):
            raise KinestreamError(f"OpenSim could not scale the model by {scale}")
        state = model.initSystem()
    return model, state, [m.getName() for m in anatomical], [m.getName() for m in keypoints]


def _mesh_vertices(path: Path) -> np.ndarray:
    """Vertices (n, 3) of a VTK PolyData (.vtp) file with ASCII points."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise KinestreamError(f"cannot read mesh {path} to measure the model's height: {exc}") from None
    array = root.find("./PolyData/Piece/Points/DataArray")
    if array is None or array.get("format", "ascii") != "ascii":
        raise KinestreamError(f"mesh {path} has no ASCII point list; cannot measure the model's height")
    return np.array((array.text or "").split(), dtype=float).reshape(-1, 3)


def _body_mesh_points(model, state, body_name: str, geometry_dir: Path) -> np.ndarray:
    """All mesh vertices attached to a body, in ground coordinates."""
    osim = opensim_module()
    body = model.getBodySet().get(body_name)
    origin = body.findStationLocationInGround(state, osim.Vec3(0, 0, 0)).to_numpy()
    rot = np.column_stack(
        [body.findStationLocationInGround(state, osim.Vec3(*e)).to_numpy() - origin for e in np.eye(3)]
    )
    points = []
    n_geometry = body.getPropertyByName("attached_geometry").size()
    for i in range(n_geometry):
        mesh = osim.Mesh.safeDownCast(body.get_attached_geometry(i))
        if mesh is None:
            continue
        local = _mesh_vertices(geometry_dir / mesh.get_mesh_file()) * mesh.get_scale_factors().to_numpy()
        points.append(origin + local @ rot.T)
    if not points:
        raise KinestreamError(f"body {body_name!r} carries no mesh; cannot measure the model's height")
    return np.vstack(points)


@functools.lru_cache(maxsize=4)
def generic_height(model_path: str, geometry_dir: str) -> float:
    """Standing height (m) of a generic model: sole to top of head, all joint angles zero.

    The sole is the lowest vertex of the meshes on the calcaneus and toe
    bodies, the top of the head the highest vertex of the head's meshes.
    """
    osim = opensim_module()
    model = osim.Model(model_path)
    state = model.initSystem()
    coords = model.getCoordinateSet()
    for i in range(coords.getSize()):
        if coords.get(i).getMotionType() == 1:  # rotational
            coords.get(i).setValue(state, 0.0, False)
    model.realizePosition(state)
    geometry = Path(geometry_dir)
    top = max(_body_mesh_points(model, state, b, geometry)[:, 1].max() for b in _HEAD_BODIES)
    sole = min(_body_mesh_points(model, state, b, geometry)[:, 1].min() for b in _FOOT_BODIES)
    return float(top - sole)


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
            raise KinestreamError(f"the model has coordinate {name!r}, which the squat design does not know")
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
    """Trunk lean (degrees, forward positive): the line from the mid hip joint centre to the mid shoulder joint
    centre, from vertical, in the sagittal plane (the vertical plane square to the line between the hips).

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
    raise KinestreamError(
        f"{what}={value!r} is not valid; it must be one number ({unit}) or a list of one per squat ({n} squats)"
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
                raise KinestreamError(
                    f"asymmetry_deg={a:g} is too large for squat {k + 1}, whose right knee bends {excursion:.0f} deg "
                    f"from standing; it must be at most half of that either way"
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
    """The hips' standing rotation (degrees, each side: the feet turned in or out) that brings both knees to
    ``target_cm`` of valgus at frame ``bottom``; Newton steps on that frame's pose.

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
    raise KinestreamError(
        f"valgus_cm={target_cm:g} cannot be reached at the bottom of this squat with the feet turned in or out "
        f"by at most {MAX_STANCE_TURN_DEG:g} deg; give a smaller valgus (from {VALGUS_CM[0]:g} to {VALGUS_CM[1]:g} "
        f"cm reach a squat of 100 deg)"
    )


# --------------------------------------------------------------------------- kinematics


class _Kinematics:
    """One model and one state, posed by coordinate values in model units."""

    def __init__(self, model, state):
        self.model, self.state = model, state
        coords = model.getCoordinateSet()
        self.coords = [coords.get(i) for i in range(coords.getSize())]
        self.names = [c.getName() for c in self.coords]
        self.rotational = np.array([c.getMotionType() == 1 for c in self.coords])
        self.ranges = np.array([[c.getRangeMin(), c.getRangeMax()] for c in self.coords])
        # Position of each coordinate in the state's Q. Every joint of this model
        # has qdot = u, so it is also the column of the velocity Jacobians.
        if state.getNQ() != state.getNU():
            raise KinestreamError(
                "the model has joints whose speeds are not coordinate rates; "
                "the squat generator needs a model without ball or free joints"
            )
        self.qindex = np.empty(len(self.coords), dtype=int)
        for j, c in enumerate(self.coords):
            before = state.getQ().to_numpy().copy()
            value = c.getValue(state)
            c.setValue(state, value + 0.5, False)
            self.qindex[j] = int(np.flatnonzero(state.getQ().to_numpy() != before)[0])
            c.setValue(state, value, False)
        self.matter = model.getMatterSubsystem()

    def to_model_units(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rotational, np.radians(values), values)

    def to_file_units(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rotational, np.degrees(values), values)

    def pose(self, q: np.ndarray, which=None) -> None:
        for j in range(len(self.coords)) if which is None else which:
            self.coords[j].setValue(self.state, float(q[j]), False)
        self.model.realizePosition(self.state)

    def locations(self, markers) -> np.ndarray:
        return np.array([m.getLocationInGround(self.state).to_numpy() for m in markers])


class _FootClosure:
    """Nearest pose to a design that keeps both feet at their standing placement."""

    def __init__(self, kin: _Kinematics, q_stand: np.ndarray):
        osim = opensim_module()
        self.kin = kin
        marker_set = kin.model.getMarkerSet()
        self.markers = [marker_set.get(n) for n in _PLANTED]
        self.stations = []
        for m in self.markers:
            body = kin.model.getBodySet().get(m.getParentFrame().getName())
            self.stations.append((body.getMobilizedBodyIndex(), osim.Vec3(m.get_location())))
        self.free = np.array([kin.names.index(n) for n in _FREE])
        self.weight = np.array(list(_FREE.values()))
        self.columns = kin.qindex[self.free]
        self._jac = osim.Matrix()
        kin.pose(q_stand)
        self.target = kin.locations(self.markers).ravel()

    def _jacobian(self) -> np.ndarray:
        rows = []
        for mobod, station in self.stations:
            self.kin.matter.calcStationJacobian(self.kin.state, mobod, station, self._jac)
            rows.append(self._jac.to_numpy()[:, self.columns])
        return np.vstack(rows)

    def solve(self, q_design: np.ndarray, q_start: np.ndarray, tol: float = 1e-7, max_iter: int = 50) -> np.ndarray:
        kin = self.kin
        q = q_design.copy()
        q[self.free] = q_start[self.free]
        kin.pose(q)
        w = self.weight
        for _ in range(max_iter):
            residual = self.target - kin.locations(self.markers).ravel()
            # Step to the point of the linearised constraint set nearest the design,
            # in the metric of the weights: y = W dq, A y = r, minimise |y - c|.
            a = self._jacobian() / w
            c = -w * (q[self.free] - q_design[self.free])
            y = c + np.linalg.lstsq(a, residual - a @ c, rcond=1e-10)[0]
            step = y / w
            q[self.free] += step
            # Newton steps converge quadratically: after a step this small the
            # remaining error is of the order of its square.
            if np.abs(step).max() < tol:
                return q
            kin.pose(q, self.free)
        raise RuntimeError("the foot closure did not converge")  # a defect of the design, not of the input


# --------------------------------------------------------------------------- arguments


def _check_variations(depths, pauses, sway_deg, squats):
    """(depths as a list or None, pauses as a list or None, sway) checked; squats must agree with depths."""
    if depths is not None:
        if np.ndim(depths) != 1 or len(depths) == 0:
            raise KinestreamError(
                f"depths={depths!r} is not valid; it must be a list of knee peaks in degrees, one per squat"
            )
        depths = [
            checks.number(f"depths[{k}]", d, MIN_DEPTH_DEG, MAX_DEPTH_DEG, "degrees of knee flexion")
            for k, d in enumerate(depths)
        ]
        if squats is not None and squats != len(depths):
            raise KinestreamError(
                f"squats={squats!r} must match depths, which lists {len(depths)} squats (or leave squats out)"
            )
    if pauses is not None:
        if np.ndim(pauses) == 0:
            pauses = checks.number("pauses", pauses, 0.0, 60.0, "seconds")
        elif np.ndim(pauses) == 1:
            pauses = [checks.number(f"pauses[{k}]", p, 0.0, 60.0, "seconds") for k, p in enumerate(pauses)]
        else:
            raise KinestreamError(
                f"pauses={pauses!r} is not valid; it must be seconds of standing between "
                f"squats: one number, or one per gap"
            )
    sway_deg = checks.number("sway_deg", sway_deg, 0.0, MAX_SWAY_DEG, "degrees")
    return depths, pauses, sway_deg


def _check_arguments(fs, seconds, noise_mm, gaps, scale, seed, squats, depths=None, pauses=None):
    try:
        fs_ok = float(fs)
    except (TypeError, ValueError):
        fs_ok = math.nan
    if isinstance(fs, bool) or not (math.isfinite(fs_ok) and MIN_FS <= fs_ok <= MAX_FS):
        raise KinestreamError(
            f"sampling rate fs={fs!r} Hz is not valid; it must be a number from {MIN_FS:g} to {MAX_FS:g} Hz"
        )
    try:
        sec = float(seconds)
    except (TypeError, ValueError):
        sec = math.nan
    if isinstance(seconds, bool) or not (math.isfinite(sec) and sec >= MIN_SECONDS):
        raise KinestreamError(
            f"seconds={seconds!r} is too short or not a number; the trial needs at least "
            f"{MIN_SECONDS:g} s ({STAND_S:g} s standing plus one {SQUAT_S:g} s squat)"
        )
    try:
        noise = float(noise_mm)
    except (TypeError, ValueError):
        noise = math.nan
    if isinstance(noise_mm, bool) or not (math.isfinite(noise) and noise >= 0.0):
        raise KinestreamError(
            f"noise_mm={noise_mm!r} is not valid; it must be a finite number >= 0 "
            f"(standard deviation per axis, millimetres)"
        )
    n_gaps = checks.integer("gaps", gaps, 0)
    scale = checks.positive("scale", scale)
    seed = checks.integer("seed", seed, 0)
    fits = max_squats(sec)
    if pauses is not None or depths is not None:
        if squats is not None:
            n_squats = checks.integer("squats", squats, 1)
        elif depths is not None:
            n_squats = len(depths)
        elif np.ndim(pauses) == 1:
            n_squats = len(pauses) + 1
        else:
            n_squats = max_squats(sec, pauses)
            if n_squats == 0:
                raise KinestreamError(f"seconds={sec:g} leave no room for a squat after {STAND_S:g} s of standing")
        gaps_s = _pause_list(PAUSE_S if pauses is None else pauses, n_squats)
        if len(gaps_s) != n_squats - 1:
            raise KinestreamError(
                f"pauses lists {len(gaps_s)} pauses for {n_squats} squats; it needs "
                f"{n_squats - 1} (one between each two squats) or a single number"
            )
        need = STAND_S + n_squats * SQUAT_S + sum(gaps_s)
        if need > sec + 1e-9:
            raise KinestreamError(
                f"{n_squats} squats with pauses of {gaps_s} s do not fit in seconds={sec:g}: they "
                f"need {need:g} s ({STAND_S:g} s standing, {SQUAT_S:g} s a squat); make the "
                f"trial longer"
            )
    elif squats is None:
        n_squats = fits
    else:
        n_squats = checks.integer("squats", squats, 1)
        if n_squats > fits:
            need = STAND_S + n_squats * SQUAT_S + (n_squats - 1) * PAUSE_S
            raise KinestreamError(
                f"squats={n_squats} do not fit in seconds={sec:g}: they need {need:g} s "
                f"({STAND_S:g} s standing, {SQUAT_S:g} s a squat, {PAUSE_S:g} s between); "
                f"at most {fits} fit, or make the trial longer"
            )
    return fs_ok, sec, noise, n_gaps, scale, seed, n_squats


# --------------------------------------------------------------------------- main


def synthesize(
    out_dir,
    fs: float = 60.0,
    seconds: float = 12.0,
    noise_mm: float = 0.0,
    gaps: int = 0,
    scale: float = 1.0,
    seed: int = 0,
    squats: int | None = None,
    progress=None,
    *,
    depths=None,
    pauses=None,
    sway_deg: float = 0.0,
    trunk_lean_deg=None,
    valgus_cm=None,
    descent_s=None,
    asymmetry_deg=None,
) -> SynthResult:
    """Simulate a standing-then-squatting subject; write keypoints, markers and coordinates.

    ``fs`` sampling rate (Hz, 10 to 1000); ``seconds`` trial length (at least
    ``MIN_SECONDS``); ``noise_mm`` std of Gaussian noise per axis on the
    keypoints only; ``gaps`` number of NaN gaps in the keypoints only (random
    keypoint, 2 to 0.15*fs frames, inside the squatting part); ``scale``
    uniform size of the subject relative to the generic model; ``seed``
    seeds noise and gaps (the motion itself does not depend on it); ``squats``
    number of squats (default: as many as fit, or one per ``depths``).
    ``progress`` is called with a message at each stage.

    ``depths``: the designed knee peak of each squat (degrees, right knee;
    the left flexes 3 % less), e.g. ``[105, 45, 120]``; a squat whose mean
    knee peak stays below ``HALF_SQUAT_DEG`` is marked ``partial``.
    ``pauses``: seconds of standing between squats, one number or one per
    gap (default ``PAUSE_S``). ``sway_deg``: amplitude of a slow standing sway
    after the still window (0 to ``MAX_SWAY_DEG``; default 0: none).

    Form at the bottom, each one number or a list of one per squat:
    ``trunk_lean_deg`` (0 to 70 deg, :func:`trunk_lean`), ``descent_s`` (0.3 s
    to ``DESCENT_S``) and ``asymmetry_deg`` (right minus left knee flexion,
    -10 to 10 deg; the feet stay planted, so the closure gives back about a
    tenth of it); and one number, ``valgus_cm`` (-8 to 8 cm, medial +,
    :func:`knee_valgus`, both knees at the bottom of the first squat: the
    stance turns the feet in or out). ``Squat`` reports the form each squat
    has at its bottom, designed or not. A design the model cannot reach
    (out of a joint's range) is refused. Without these the trial is exactly
    the default one.
    """
    depths, pauses, sway_deg = _check_variations(depths, pauses, sway_deg, squats)
    fs, seconds, noise_mm, n_gaps, scale, seed, n_squats = _check_arguments(
        fs, seconds, noise_mm, gaps, scale, seed, squats, depths, pauses
    )
    starts = squat_starts(n_squats, pauses)
    factors = None if depths is None else [_depth_factor(d) for d in depths]
    form = _check_form(trunk_lean_deg, valgus_cm, descent_s, asymmetry_deg, n_squats, factors)
    descents = form.descents or [DESCENT_S] * n_squats
    say = progress or (lambda *_: None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise KinestreamError(f"out_dir {out} is a file; give a folder (it is created if needed)")
    out.mkdir(parents=True, exist_ok=True)

    assets = get_assets(progress=say)
    say(f"synth: building the model (scale {scale:g})")
    model, state, anatomical, keypoints = truth_model(scale, assets)
    kin = _Kinematics(model, state)
    height = generic_height(str(assets.generic_model), str(assets.geometry)) * scale
    mass = model.getTotalMass(state)

    n_frames = int(round(seconds * fs))
    time = np.arange(n_frames) / fs
    shapes = np.array([_squat_shape(time, start, d) for start, d in zip(starts, descents, strict=True)])
    bottoms = [int(round((start + DESCENT_S) * fs)) for start in starts]
    bodies = {name: model.getBodySet().get(body) for name, body in _CENTRES.items()}
    marker_set = model.getMarkerSet()
    markers_anat = [marker_set.get(n) for n in anatomical]
    markers_key = [marker_set.get(n) for n in keypoints]
    foot_markers = [m for m in markers_anat + markers_key if m.getParentFrame().getName() in _FOOT_BODIES]
    ty = kin.names.index("pelvis_ty")

    def make(stance: dict[str, float] | None) -> tuple[np.ndarray, np.ndarray]:
        """The design (model units) and the standing pose, the lowest foot marker FOOT_CLEARANCE above the floor."""
        design = kin.to_model_units(
            _design(kin.names, time, n_squats, starts, factors, sway_deg, form.descents, form.left_gains, stance)
        )
        q_stand = design[0].copy()
        kin.pose(q_stand)
        q_stand[ty] += FOOT_CLEARANCE - kin.locations(foot_markers)[:, 1].min()
        design[:, ty] = q_stand[ty]
        return design, q_stand

    stance = None
    if form.valgus is not None:  # every squat fits in the trial (checked above): so does its bottom
        say(f"synth: turning the feet for {form.valgus:g} cm of knee valgus")
        stance = _stance_for_valgus(kin, bodies, make, bottoms[0], form.valgus)
    design, q_stand = make(stance)

    say(f"synth: posing {n_frames} frames")
    closure = _FootClosure(kin, q_stand)
    q = np.empty_like(design)
    for i in range(n_frames):
        if np.array_equal(design[i], q_stand):
            q[i] = q_stand
        else:
            # Start from the last two solutions extrapolated: the motion is smooth.
            start = 2 * q[i - 1] - q[i - 2] if i >= 2 else q_stand
            q[i] = closure.solve(design[i], start)
    if form.leans is not None:  # lumbar flexion growing with each squat's depth, to its designed lean at the bottom
        lumbar = kin.names.index("L5_S1_Flex_Ext")
        for shape, bottom, lean in zip(shapes, bottoms, form.leans, strict=True):
            q[:, lumbar] += shape * _lean_by_lumbar(kin, bodies, q[bottom], lean)
    low, high = kin.ranges[:, 0] - 1e-9, kin.ranges[:, 1] + 1e-9
    outside = [kin.names[j] for j in range(len(kin.names)) if (q[:, j] < low[j]).any() or (q[:, j] > high[j]).any()]
    if outside and form != _Form():
        raise KinestreamError(
            f"the designed form (trunk_lean_deg={trunk_lean_deg!r}, valgus_cm={valgus_cm!r}, "
            f"descent_s={descent_s!r}, asymmetry_deg={asymmetry_deg!r}) takes the model out of its range in "
            f"{', '.join(outside)}; give milder values"
        )
    if outside:
        raise RuntimeError(f"the squat design leaves the model's range in {outside}")

    xyz_anat = np.empty((n_frames, len(markers_anat), 3))
    xyz_key = np.empty((n_frames, len(markers_key), 3))
    for i in range(n_frames):
        kin.pose(q[i])
        xyz_anat[i] = kin.locations(markers_anat)
        xyz_key[i] = kin.locations(markers_key)

    # What the camera system reports: noise and gaps, seeded, on the keypoints only.
    observed = xyz_key.copy()
    if noise_mm > 0:
        observed += np.random.default_rng([seed, 1]).normal(0.0, noise_mm / 1000.0, observed.shape)
    gap_list = _make_gaps(
        n_gaps, np.random.default_rng([seed, 2]), keypoints, fs, time, starts[0], starts[-1] + SQUAT_S
    )
    for gap in gap_list:
        observed[gap.start : gap.stop, keypoints.index(gap.keypoint)] = np.nan

    meta = {"synthetic": True, "scale": scale, "seed": seed}
    keypoints_true = MarkerTable(keypoints, xyz_key, time, fs, dict(meta))
    keypoints_obs = MarkerTable(keypoints, observed, time, fs, {**meta, "noise_mm": noise_mm})
    markers = MarkerTable(anatomical, xyz_anat, time, fs, dict(meta))
    motion = Motion(time, list(kin.names), kin.to_file_units(q), in_degrees=True)

    say(f"synth: writing {out}")
    paths = (
        write_trc(out / "keypoints.trc", keypoints_obs),
        write_trc(out / "markers.trc", markers),
        write_mot(out / "coords.mot", motion),
    )

    squat_list = []
    for k, start in enumerate(starts):
        inside = (time >= start) & (time <= start + SQUAT_S)
        peak = {
            n: float(motion.get(n)[inside].max())
            for n in ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l")
        }
        partial = 0.5 * (peak["knee_angle_r"] + peak["knee_angle_l"]) < HALF_SQUAT_DEG
        b = min(bottoms[k], n_frames - 1)
        kin.pose(q[b])
        centres = _centres_now(kin, bodies)
        squat_list.append(
            Squat(
                k,
                round(start + DESCENT_S - descents[k], 9),
                round(start + DESCENT_S, 9),
                round(start + SQUAT_S, 9),
                **peak,
                partial=bool(partial),
                trunk_lean_deg=trunk_lean(centres),
                knee_valgus_cm_r=knee_valgus(centres, "r"),
                knee_valgus_cm_l=knee_valgus(centres, "l"),
                knee_asymmetry_deg=float(motion.get("knee_angle_r")[b] - motion.get("knee_angle_l")[b]),
                descent_s=descents[k],
            )
        )

    return SynthResult(
        *paths,
        keypoints=keypoints_obs,
        keypoints_true=keypoints_true,
        markers=markers,
        motion=motion,
        mass=float(mass),
        height=float(height),
        standing=(0.0, STAND_S),
        squats=squat_list,
        gaps=gap_list,
        fs=fs,
        scale=scale,
        noise_mm=noise_mm,
        seed=seed,
    )


def _make_gaps(
    n: int, rng: np.random.Generator, names: list[str], fs: float, time: np.ndarray, first: float, last: float
) -> list[Gap]:
    """``n`` gaps of 2 to 0.15*fs frames, each wholly inside [first, last] seconds."""
    inside = np.flatnonzero((time >= first) & (time <= last))
    lo, hi = int(inside[0]), int(inside[-1]) + 1
    longest = max(2, min(int(0.15 * fs), hi - lo))
    out = []
    for _ in range(n):
        length = int(rng.integers(2, longest + 1))
        start = int(rng.integers(lo, hi - length + 1))
        out.append(Gap(names[int(rng.integers(len(names)))], start, start + length))
    return out


def synthesize_study(
    root, subjects: int = 3, trials: int = 3, seconds: float = MIN_SECONDS, noise_mm: float = 2.0
) -> list[SynthResult]:
    """A small study in ``batch``'s plain layout: per subject (each of another size) a static trial (the
    standing phase of a trial of theirs) and ``trials`` squat trials, and ``subjects.toml`` with each one's
    height and mass. Returns each subject's first trial (its truth: height, mass, scale)."""
    import tempfile

    root = Path(root)
    firsts = []
    lines = ["# subjects of a synthetic study (kinestream synth)"]
    scratch = tempfile.TemporaryDirectory(prefix="kinestream-study-")  # synth's other files: not the study's
    for s in range(subjects):
        name = f"p{s + 1:02d}"
        size = 0.9 + 0.2 * s / max(1, subjects - 1)
        folder = root / name
        made = []
        for k in range(trials):
            syn = synthesize(
                Path(scratch.name) / f"{name}_{k}", seconds=seconds, noise_mm=noise_mm, scale=size, seed=100 * s + k
            )
            write_trc(folder / f"{name}_squat{k + 1}.trc", syn.keypoints)
            made.append(syn)
        first = made[0]
        t = first.keypoints.time
        still = (t >= first.standing[0]) & (t <= first.standing[1])
        i0, i1 = int(np.flatnonzero(still)[0]), int(np.flatnonzero(still)[-1]) + 1
        write_trc(folder / f"{name}_static.trc", first.keypoints.frames(i0, i1))
        lines += ["", "[[subject]]", f'name = "{name}"', f'pattern = "{name}/*.trc"']
        lines += [f"height = {first.height!r}", f"mass = {first.mass!r}"]
        firsts.append(first)
    (root / "subjects.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    scratch.cleanup()
    return firsts


# -- any model: walking, squatting and jumping by forward kinematics

MOVES = ("walk", "squat", "jump")


def _move_design(kind: str, t: np.ndarray) -> dict[str, np.ndarray]:
    """Designed coordinates (degrees; metres for pelvis_tx/ty/tz, offsets from the default pose) over ``t``.

    Names are those of OpenSim's gait models (Gait2354, Rajagopal, OpenCap's Lai models); a model without a
    name keeps its default value there. Right side positive flexion; the left side follows half a cycle on.
    """
    two_pi = 2 * np.pi
    d: dict[str, np.ndarray] = {}
    if kind == "walk":  # 1.2 m/s, one gait cycle a second
        ph = two_pi * t
        d["pelvis_tx"] = 1.2 * t
        d["pelvis_ty"] = 0.02 * np.cos(2 * ph) - 0.02
        d["pelvis_tz"] = 0.02 * np.sin(ph)
        d["pelvis_tilt"] = -3.0 + 3.0 * np.sin(2 * ph)
        d["pelvis_list"] = 4.0 * np.sin(ph)
        d["pelvis_rotation"] = 6.0 * np.sin(ph)
        d["lumbar_extension"] = -4.0 + 3.0 * np.sin(2 * ph + 0.5)
        d["lumbar_bending"] = -3.0 * np.sin(ph)
        d["lumbar_rotation"] = -5.0 * np.sin(ph)
        for side, shift in (("r", 0.0), ("l", np.pi)):
            p = ph + shift
            d[f"hip_flexion_{side}"] = 10.0 + 25.0 * np.cos(p)
            d[f"hip_adduction_{side}"] = 3.0 * np.sin(p)
            d[f"hip_rotation_{side}"] = 5.0 * np.sin(p + 1.0)
            d[f"knee_angle_{side}"] = 30.0 - 28.0 * np.cos(p + 0.9) + 8 * np.sin(2 * p)
            d[f"ankle_angle_{side}"] = 12.0 * np.sin(p + 0.4)
            d[f"subtalar_angle_{side}"] = 5.0 * np.sin(p)
            d[f"mtp_angle_{side}"] = 10.0 + 10.0 * np.sin(p - 0.5)
            for arm in ("arm_flex", "sh_elev"):
                d[f"{arm}_{side}"] = 15.0 - 20.0 * np.cos(p)
            d[f"arm_add_{side}"] = d[f"sh_plane_elev_{side}"] = np.full_like(t, -10.0)
            d[f"elbow_flex_{side}"] = 35.0 + 15.0 * np.cos(p)
            d[f"pro_sup_{side}"] = np.full_like(t, 60.0)
    elif kind == "squat":  # two squats of 2 s from standing to thighs level and back
        s = _min_jerk(np.clip(1.0 - np.abs((t % 2.0) - 1.0), 0.0, 1.0))
        d["pelvis_ty"] = -0.35 * s
        d["pelvis_tx"] = -0.12 * s
        d["pelvis_tilt"] = 15.0 * s
        d["pelvis_list"] = 2.0 * s
        d["lumbar_extension"] = -20.0 * s
        d["lumbar_bending"] = 3.0 * s
        d["lumbar_rotation"] = 2.0 * s
        for side, k in (("r", 1.0), ("l", 0.97)):
            d[f"hip_flexion_{side}"] = 95.0 * k * s
            d[f"hip_adduction_{side}"] = -5.0 * s
            d[f"hip_rotation_{side}"] = 8.0 * s
            d[f"knee_angle_{side}"] = 105.0 * k * s
            d[f"ankle_angle_{side}"] = 25.0 * k * s
            d[f"subtalar_angle_{side}"] = 4.0 * s
            for arm in ("arm_flex", "sh_elev"):
                d[f"{arm}_{side}"] = 75.0 * s
            d[f"elbow_flex_{side}"] = 20.0 * s
            d[f"pro_sup_{side}"] = np.full_like(t, 60.0)
    elif kind == "jump":  # a countermovement jump: down in 0.5 s, up and off in 0.25 s, 0.4 s in the air
        down = _min_jerk(np.clip(t / 0.5, 0, 1)) - _min_jerk(np.clip((t - 0.5) / 0.25, 0, 1))
        flight = np.clip((t - 0.75) / 0.45, 0, 1)
        height = np.where((t > 0.75) & (t < 1.2), 4 * 0.25 * flight * (1 - flight), 0.0)
        land = _min_jerk(np.clip((t - 1.2) / 0.15, 0, 1)) - _min_jerk(np.clip((t - 1.5) / 0.5, 0, 1))
        crouch = down + 0.7 * land
        d["pelvis_ty"] = -0.3 * crouch + height
        d["pelvis_tx"] = -0.1 * crouch + 0.3 * np.clip((t - 0.75) / 0.45, 0, 1)
        d["pelvis_tilt"] = 25.0 * crouch - 5.0 * height / 0.25
        d["lumbar_extension"] = -15.0 * crouch + 5.0 * height / 0.25
        for side in ("r", "l"):
            d[f"hip_flexion_{side}"] = 90.0 * crouch
            d[f"knee_angle_{side}"] = 100.0 * crouch + 10.0
            d[f"ankle_angle_{side}"] = 25.0 * crouch - 30.0 * height / 0.25
            d[f"mtp_angle_{side}"] = 20.0 * height / 0.25
            for arm in ("arm_flex", "sh_elev"):
                d[f"{arm}_{side}"] = -50.0 * down + 150.0 * height / 0.25
            d[f"elbow_flex_{side}"] = 30.0 * crouch
            d[f"pro_sup_{side}"] = np.full_like(t, 60.0)
    else:
        raise KinestreamError(f"unknown motion {kind!r}; give one of {', '.join(MOVES)}")
    return d


def drive_model(
    model,
    names: list[str],
    kind: str,
    seconds: float = 2.0,
    fs: float = 60.0,
    noise_mm: float = 3.0,
    offset_mm: float = 10.0,
    seed: int = 0,
) -> tuple[Motion, MarkerTable]:
    """A truth motion ``kind`` (walk, squat, jump) of any gait model and its markers ``names`` by forward
    kinematics, as a marker augmenter's output looks: each marker off its model place by a fixed offset
    (Gaussian, ``offset_mm`` per axis) and by frame-to-frame noise (``noise_mm``), seeded.

    Returns (the coordinates in degrees / metres, the markers). Coordinate ranges of the model bound the
    designed values (clamped coordinates stay in their ranges).
    """
    osim = opensim_module()
    state = model.initSystem()
    time = np.arange(int(round(seconds * fs))) / fs
    design = _move_design(kind, time)
    cs = model.getCoordinateSet()
    coords = [cs.get(i) for i in range(cs.getSize())]
    default = np.array([c.getValue(state) for c in coords])
    rotational = np.array([c.getMotionType() == osim.Coordinate.Rotational for c in coords])
    values = np.tile(default, (time.size, 1))
    for k, c in enumerate(coords):
        if c.getName() in design and not c.getLocked(state):
            v = design[c.getName()]
            values[:, k] = default[k] + v if not rotational[k] else np.radians(v)
            if c.getClamped(state):
                values[:, k] = np.clip(values[:, k], c.getRangeMin(), c.getRangeMax())
    markers = model.getMarkerSet()
    xyz = np.zeros((time.size, len(names), 3))
    for i in range(time.size):
        for k, c in enumerate(coords):
            c.setValue(state, float(values[i, k]), False)
        model.realizePosition(state)
        xyz[i] = [markers.get(n).getLocationInGround(state).to_numpy() for n in names]
    rng = np.random.default_rng(seed)
    xyz += rng.normal(0.0, offset_mm / 1000, (1, len(names), 3)) + rng.normal(0.0, noise_mm / 1000, xyz.shape)
    out = values.copy()
    out[:, rotational] = np.degrees(out[:, rotational])
    names_c = [c.getName() for c in coords]
    return Motion(time, names_c, out, in_degrees=True), MarkerTable(names, xyz, time, fs)
