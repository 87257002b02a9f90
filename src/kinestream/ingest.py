"""Keypoints in: layouts, name aliases, derived keypoints, arrays to .trc.

Keypoint names are OpenPose's (BODY_25). Files from other tools name the
pelvis centre ``Hip`` (Pose2Sim), ``midHip`` or ``CHip``; :func:`canonical`
maps those to ``MidHip``. When a trial lacks ``MidHip`` or ``Neck``,
:func:`complete_keypoints` derives them from the hips and shoulders.
"""

from __future__ import annotations

import numpy as np

from kinestream.errors import KinestreamError
from kinestream.files.trc import MarkerTable

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
LAYOUTS = {"BODY_25": BODY_25}

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


def canonical(name: str) -> str:
    """The BODY_25 name for ``name`` (case and known aliases folded), else ``name``."""
    low = name.strip().lower()
    return ALIASES.get(low) or _BY_LOWER.get(low) or name.strip()


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
