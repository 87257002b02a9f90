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
"""

from __future__ import annotations

import numpy as np

from kinestream.errors import KinestreamError
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
    """The keypoints of :data:`REQUIRED` that ``names`` (canonical) cannot give, derived ones counted, in BODY_25
    order."""
    have = set(names)
    have |= {name for name, (a, b) in DERIVED.items() if a in have and b in have}
    return sorted((n for n in REQUIRED if n not in have), key=BODY_25.index)


def layout_lacks(layout: str) -> list[str]:
    """The keypoints the marker augmenter reads that layout ``layout`` (a key of :data:`LAYOUTS`) has no way to
    give (MidHip and Neck count as given when the hips and shoulders are there)."""
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
                raise KinestreamError(f"the trial holds the keypoints of layout {layout}; {unusable_layout(layout)}")
        raise KinestreamError(
            f"the trial lacks keypoints {missing}; it has {table.names}. kinestream needs the BODY_25 body "
            f"and feet keypoints {REQUIRED} (MidHip and Neck may be absent: they are derived from the hips "
            f"and shoulders)"
        )
    out.meta["derived"] = derived
    return out


def rotation_matrix(axis: str, degrees: float) -> np.ndarray:
    """Rotation about a coordinate axis ('x', 'y' or 'z')."""
    if axis.lower() not in ("x", "y", "z"):
        raise KinestreamError(f"rotation axis {axis!r} is not one of 'x', 'y', 'z'")
    from scipy.spatial.transform import Rotation  # only here: it costs 0.35 s to import

    return Rotation.from_euler(axis.lower(), degrees, degrees=True).as_matrix()


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
    camera axes into the model's (Y up), e.g. ('x', 90) for a Z-up capture.
    Zero or NaN positions, and keypoints below ``min_confidence``, become
    missing.
    """
    keypoints = np.array(keypoints, dtype=float)
    names = list(names or BODY_25)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (len(names), 3):
        raise KinestreamError(f"keypoints have shape {keypoints.shape}; expected (frames, {len(names)}, 3)")
    if not rate > 0:
        raise KinestreamError(f"frame rate {rate} is not positive")
    missing = np.all(keypoints == 0, axis=2) | np.any(~np.isfinite(keypoints), axis=2)
    if confidence is not None:
        missing |= ~(np.asarray(confidence, dtype=float) >= min_confidence)
    if rotation is not None:
        keypoints = keypoints @ rotation_matrix(*rotation).T
    keypoints[missing] = np.nan
    time = start_time + np.arange(len(keypoints)) / rate
    return MarkerTable([canonical(n) for n in names], keypoints, time, rate)
