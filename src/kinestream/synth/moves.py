"""Any model, walking, squatting and jumping by forward kinematics.

:func:`drive_model`: a truth motion and its markers as a marker augmenter's output looks.
"""

from __future__ import annotations

import numpy as np

from kinestream.errors import SettingsError
from kinestream.files.mot import Motion
from kinestream.files.trc import MarkerTable
from kinestream.osim import opensim_module
from kinestream.synth.squat import _min_jerk

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
        raise SettingsError(
            f"unknown motion {kind!r}; give one of {', '.join(MOVES)}", key="kind", given=kind, valid=list(MOVES)
        )
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
    """A truth motion ``kind`` (walk, squat, jump) of any gait model and its markers ``names`` by forward kinematics.

    The markers look as a marker augmenter's output does: each off its model place by a fixed offset (Gaussian,
    ``offset_mm`` per axis) and by frame-to-frame noise (``noise_mm``), seeded.

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
