"""Keypoints in: layouts, name aliases, derived keypoints, arrays to .trc.

Keypoint names are OpenPose's (BODY_25). Files from other tools name the
pelvis centre ``Hip`` (Pose2Sim, HALPE_26), ``midHip`` or ``CHip``;
:func:`canonical` maps those to ``MidHip``. When a trial lacks ``MidHip`` or
``Neck``, :func:`complete_keypoints` derives them from the hips and shoulders.

:data:`LAYOUTS` holds the keypoint orders of the pose estimators kinestream
reads by name alone (a live source sends ``layout`` instead of the names):
BODY_25, BODY_25B, HALPE_26, COCO_133 and COCO_17. A keypoint that is a
BODY_25 body part carries the BODY_25 name; the others (head top, face,
hands) keep their own names and are not read. COCO_17 has no feet, which the
marker augmenter needs: :func:`layout_lacks` says what a layout cannot give,
:func:`unusable_layout` says it in one line.

Orientation: the model wants Y up. :func:`orientation` gives the one matrix
that turns a source's axes into the model's (``up`` "z" for a Z-up camera
system, then any further ``rotate`` turns), :func:`orient` applies it to a
table, and :class:`~kinestream.settings.IngestSettings` (the ``[ingest]`` settings) carries both
for the offline commands and the live service alike.
"""

from __future__ import annotations

import math

import numpy as np

from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable

# OpenPose BODY_25: POSE_BODY_25_BODY_PARTS in openpose src/openpose/pose/poseParameters.cpp.
BODY_25 = [
    "Nose",
    "Neck",
    "RShoulder",
    "RElbow",
    "RWrist",
    "LShoulder",
    "LElbow",
    "LWrist",
    "MidHip",
    "RHip",
    "RKnee",
    "RAnkle",
    "LHip",
    "LKnee",
    "LAnkle",
    "REye",
    "LEye",
    "REar",
    "LEar",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
]

# COCO 17 body keypoints (COCO keypoint challenge; MMPose configs/_base_/datasets/coco.py), BODY_25 names.
COCO_17 = [
    "Nose",
    "LEye",
    "REye",
    "LEar",
    "REar",
    "LShoulder",
    "RShoulder",
    "LElbow",
    "RElbow",
    "LWrist",
    "RWrist",
    "LHip",
    "RHip",
    "LKnee",
    "RKnee",
    "LAnkle",
    "RAnkle",
]

# OpenPose BODY_25B (openpose_train experimental_models/README.md; the order of Pose2Sim's BODY_25B ids):
# COCO's 17, then UpperNeck and HeadTop (OpenPose's names; Pose2Sim calls them Neck and Head, but the upper neck
# is not BODY_25's Neck, which sits between the shoulders), then the feet. No MidHip, no Neck: both are derived.
BODY_25B = COCO_17 + [
    "UpperNeck",
    "HeadTop",
    "LBigToe",
    "LSmallToe",
    "LHeel",
    "RBigToe",
    "RSmallToe",
    "RHeel",
]

# HALPE_26 (AlphaPose Halpe-FullBody; MMPose configs/_base_/datasets/halpe26.py; Pose2Sim's HALPE_26 ids), the
# default of Pose2Sim and RTMPose: COCO's 17, then head, neck, hip (the pelvis centre: ``Hip`` reads as MidHip),
# then the feet, left and right alternating.
HALPE_26 = COCO_17 + [
    "Head",
    "Neck",
    "Hip",
    "LBigToe",
    "RBigToe",
    "LSmallToe",
    "RSmallToe",
    "LHeel",
    "RHeel",
]


def _numbered(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(1, count + 1)]


def _hand(side: str) -> list[str]:
    """One hand of COCO-WholeBody: the root (at the wrist), then four points per finger, thumb to little finger."""
    fingers = ["Thumb", "Index", "Middle", "Ring", "Pinky"]
    return [f"{side}HandRoot"] + [name for finger in fingers for name in _numbered(side + finger, 4)]


# COCO-WholeBody, 133 keypoints (MMPose configs/_base_/datasets/coco_wholebody.py; Pose2Sim's COCO_133 ids):
# COCO's 17, the feet (left then right), the 68 face points in the 300-W order (jaw, right then left eyebrow,
# nose, right then left eye, mouth; Pose2Sim's face names), the left hand, the right hand (21 points each).
COCO_133 = (
    COCO_17
    + ["LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"]
    + _numbered("Jaw", 17)
    + _numbered("EyebrowR", 5)
    + _numbered("EyebrowL", 5)
    + _numbered("Nose", 9)
    + _numbered("REye", 6)
    + _numbered("LEye", 6)
    + _numbered("Mouth", 20)
    + _hand("L")
    + _hand("R")
)

LAYOUTS = {"BODY_25": BODY_25, "BODY_25B": BODY_25B, "HALPE_26": HALPE_26, "COCO_133": COCO_133, "COCO_17": COCO_17}

ALIASES = {"hip": "MidHip", "midhip": "MidHip", "chip": "MidHip", "pelvis": "MidHip"}
_BY_LOWER = {name.lower(): name for name in BODY_25}

# Keypoints that can be derived as the midpoint of two others.
DERIVED = {"MidHip": ("RHip", "LHip"), "Neck": ("RShoulder", "LShoulder")}

# What the augmenter reads (both body halves) plus its reference marker.
REQUIRED = [
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
    "RElbow",
    "LElbow",
    "RWrist",
    "LWrist",
    "MidHip",
]


FEET = ("LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")


def canonical(name: str) -> str:
    """The BODY_25 name for ``name`` (case and known aliases folded), else ``name``."""
    low = name.strip().lower()
    return ALIASES.get(low) or _BY_LOWER.get(low) or name.strip()


def _lacking(names) -> list[str]:
    """The keypoints of :data:`REQUIRED` that ``names`` (canonical) cannot give, in BODY_25 order.

    A keypoint ``names`` can derive (:data:`DERIVED`) counts as given.
    """
    have = set(names)
    have |= {name for name, (a, b) in DERIVED.items() if a in have and b in have}
    return sorted((n for n in REQUIRED if n not in have), key=BODY_25.index)


def layout_lacks(layout: str) -> list[str]:
    """The keypoints the marker augmenter reads that layout ``layout`` (a key of :data:`LAYOUTS`) has no way to give.

    MidHip and Neck count as given when the hips and shoulders are there.
    """
    return _lacking(canonical(n) for n in LAYOUTS[layout])


def unusable_layout(layout: str) -> str | None:
    """Why the augmenter cannot run on layout ``layout``, in one line; None when it can."""
    lacking = layout_lacks(layout)
    if not lacking:
        return None
    usable = [name for name in LAYOUTS if not layout_lacks(name)]
    what = "the feet" if set(lacking) <= set(FEET) else "them"
    return (
        f"layout {layout} has no {', '.join(lacking)}: the marker augmenter needs {what}; "
        f"use {', '.join(usable[:-1])} or {usable[-1]}"
    )


def complete_keypoints(table: MarkerTable, required: list[str] | None = None) -> MarkerTable:
    """Rename keypoints to BODY_25 names and derive MidHip and Neck if absent.

    Raises KinestreamError naming the keypoints still missing from ``required``
    (default: everything the augmenter reads).
    """
    names = [canonical(n) for n in table.names]
    out = MarkerTable(names, table.xyz, table.time, table.rate, dict(table.meta))
    derived = []
    for name, (a, b) in DERIVED.items():
        if name not in out and a in out and b in out:
            out = out.with_markers([name], 0.5 * (out.get(a) + out.get(b))[:, None, :])
            derived.append(name)
    missing = [n for n in (required or REQUIRED) if n not in out]
    if missing:
        for layout in LAYOUTS:  # a trial from a layout that cannot do: say so, and which layouts can
            within = set(names) <= {canonical(n) for n in LAYOUTS[layout]}
            if within and sorted(missing) == sorted(layout_lacks(layout)):
                raise InputError(
                    f"the trial holds the keypoints of layout {layout}; {unusable_layout(layout)}",
                    key="layout",
                    given=layout,
                    valid=REQUIRED,
                )
        raise InputError(
            f"the trial lacks keypoints {missing}; it has {table.names}. kinestream needs the BODY_25 body "
            f"and feet keypoints {REQUIRED} (MidHip and Neck may be absent: they are derived from the hips "
            f"and shoulders)",
            given=missing,
            valid=REQUIRED,
        )
    out.meta["derived"] = derived
    return out


AXES = ("x", "y", "z")
UP = ("y", "z")  # the up axes a source may have; the model's is y
_PLANE = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}  # the two axes a rotation about each one turns, in order
_ROTATE_FORM = "give AXIS:DEG[,AXIS:DEG] with AXIS x, y or z and DEG in degrees, e.g. y:90 or x:-90,z:180"


def rotation_matrix(axis: str, degrees: float) -> np.ndarray:
    """The right-handed rotation by ``degrees`` about a coordinate axis ('x', 'y' or 'z'), for column vectors.

    ``rotation_matrix("x", -90) @ (0, 0, 1)`` is (0, 1, 0): Z up becomes Y up. Quarter turns are exact (0 and
    +-1, no rounding), so a trial turned by them keeps its numbers bit for bit.
    """
    name = axis.strip().lower() if isinstance(axis, str) else axis
    if name not in AXES:
        raise SettingsError(
            f"rotation axis {axis!r} is not one of 'x', 'y', 'z'", key="ingest.rotate", given=axis, valid=list(AXES)
        )
    deg = float(degrees)
    if not math.isfinite(deg):
        raise SettingsError(
            f"rotation angle {degrees!r} is not a finite number of degrees",
            key="ingest.rotate",
            given=degrees,
            valid="a finite number of degrees",
        )
    if deg % 90 == 0:
        c, s = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(deg // 90) % 4]
    else:
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = _PLANE[name]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def parse_rotate(spec) -> list[tuple[str, float]]:
    """``"AXIS:DEG[,AXIS:DEG]"`` (or a sequence of (axis, degrees) pairs) as [(axis, degrees), ...]; "" is []."""
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return []
    parts = [p.strip() for p in spec.split(",")] if isinstance(spec, str) else list(spec)
    turns = []
    for part in parts:
        pair = part.split(":") if isinstance(part, str) else list(part)
        if len(pair) != 2:
            raise SettingsError(
                f"rotation {spec!r} (--rotate, [ingest] rotate) is not valid; {_ROTATE_FORM}",
                key="ingest.rotate",
                given=spec,
                valid=_ROTATE_FORM,
            )
        axis, text = pair
        axis = str(axis).strip().lower()
        if axis not in AXES:
            raise SettingsError(
                f"rotation {spec!r} (--rotate, [ingest] rotate) is not valid: axis {pair[0]!r} is not one of x, y, "
                f"z; {_ROTATE_FORM}",
                key="ingest.rotate",
                given=spec,
                valid=_ROTATE_FORM,
            )
        try:
            degrees = float(text)
        except (TypeError, ValueError):
            degrees = math.nan
        if not math.isfinite(degrees) or isinstance(text, bool):
            raise SettingsError(
                f"rotation {spec!r} (--rotate, [ingest] rotate) is not valid: {text!r} is not a number of degrees; "
                f"{_ROTATE_FORM}",
                key="ingest.rotate",
                given=spec,
                valid=_ROTATE_FORM,
            )
        turns.append((axis, degrees))
    return turns


def orientation(up: str = "y", rotate="") -> np.ndarray | None:
    """The 3x3 matrix that turns a source's keypoints into the model's axes (Y up), or None when they are already.

    ``up``: the source's up axis, "y" (as OpenSim) or "z" (many camera systems); Z up turns to Y up by -90 deg
    about x (x stays, new y = old z, new z = -old y). ``rotate``: further turns about the model's axes after
    that, applied in the order given (:func:`parse_rotate`). Rows of keypoints turn as ``xyz @ matrix.T``.
    """
    key = up.strip().lower() if isinstance(up, str) else up
    if key not in UP:
        raise SettingsError(
            f"up {up!r} (--up, [ingest] up) is not valid; give 'y' (the keypoints are Y-up, as OpenSim wants) or "
            f"'z' (Z-up, as many camera systems)",
            key="ingest.up",
            given=up,
            valid=list(UP),
        )
    matrix = rotation_matrix("x", -90) if key == "z" else np.eye(3)
    for axis, degrees in parse_rotate(rotate):
        matrix = rotation_matrix(axis, degrees) @ matrix
    return None if np.array_equal(matrix, np.eye(3)) else matrix


def describe_orientation(up: str = "y", rotate="") -> str | None:
    """What :func:`orientation` does, in words; None when it does nothing."""
    if orientation(up, rotate) is None:
        return None
    steps = ["Z-up to Y-up (-90 deg about x)"] if up.strip().lower() == "z" else []
    steps += [f"{degrees:g} deg about {axis}" for axis, degrees in parse_rotate(rotate)]
    return "keypoints turned " + ", then ".join(steps)


def orient(table: MarkerTable, matrix: np.ndarray | None) -> MarkerTable:
    """``table`` with every position turned by ``matrix`` (from :func:`orientation`); ``table`` itself for None."""
    if matrix is None:
        return table
    return MarkerTable(table.names, table.xyz @ np.asarray(matrix).T, table.time.copy(), table.rate, dict(table.meta))


def keypoints_to_table(
    keypoints: np.ndarray,
    rate: float,
    names: list[str] | None = None,
    rotation: tuple[str, float] | None = None,
    start_time: float = 0.0,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.0,
) -> MarkerTable:
    """A marker table from a keypoint array (frames x keypoints x 3, metres).

    ``names`` defaults to BODY_25 order. ``rotation`` = (axis, degrees) turns
    camera axes into the model's (Y up), e.g. ('x', -90) for a Z-up capture (see :func:`orientation`).
    Zero or NaN positions, and keypoints below ``min_confidence``, become
    missing.
    """
    keypoints = np.array(keypoints, dtype=float)
    names = list(names or BODY_25)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(names), 3):
        raise InputError(
            f"keypoints have shape {keypoints.shape}; expected (frames, {len(names)}, 3)",
            given=keypoints.shape,
            valid=f"(frames, {len(names)}, 3)",
        )
    if not rate > 0:
        raise InputError(f"frame rate {rate} is not positive", key="rate", given=rate, valid="a positive number")
    missing = np.all(keypoints == 0, axis=2) | np.any(~np.isfinite(keypoints), axis=2)
    if confidence is not None:
        missing |= ~(np.asarray(confidence, dtype=float) >= min_confidence)
    if rotation is not None:
        keypoints = keypoints @ rotation_matrix(*rotation).T
    keypoints[missing] = np.nan
    time = start_time + np.arange(len(keypoints)) / rate
    return MarkerTable([canonical(n) for n in names], keypoints, time, rate)
