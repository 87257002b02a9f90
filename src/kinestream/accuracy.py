"""Joint angles against a reference: the field's accuracy measure.

OpenCap's lab validation (Uhlrich et al. 2023, PLOS Comput Biol 19(10):
e1011462) compares video-based kinematics with marker-based motion capture
as the RMSE of each of 18 degrees of freedom: pelvis tilt, list and rotation;
hip flexion, adduction and rotation, knee, ankle and subtalar on each side;
lumbar extension, bending and rotation. Each DOF is reported as it is and
with its mean offset removed (what is left is the error in the motion, not
in the neutral pose).

The two recordings run on different clocks. :func:`align` finds the offset
(estimate time = reference time + offset) that best correlates knee flexion,
and :func:`compare` then samples the estimate on the reference's time base.
Coordinates are matched by OpenSim name; models that name the lumbar joint
otherwise (Pose2Sim's ``L5_S1_*``) are mapped by :data:`ALIASES`, whose axes
and signs are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kinestream.errors import InputError
from kinestream.files.mot import Motion, is_translation

PELVIS = ("pelvis_tilt", "pelvis_list", "pelvis_rotation")
LUMBAR = ("lumbar_extension", "lumbar_bending", "lumbar_rotation")
LEG = ("hip_flexion", "hip_adduction", "hip_rotation", "knee_angle", "ankle_angle", "subtalar_angle")
LOWER_LIMB = tuple(f"{c}_{s}" for s in "rl" for c in LEG)
DOFS = PELVIS + LOWER_LIMB + LUMBAR  # the 18 DOF of OpenCap's validation

# Each DOF's group, as the accuracy table reports them.
GROUPS = {
    "pelvis": PELVIS,
    "hip": tuple(f"hip_{c}_{s}" for c in ("flexion", "adduction", "rotation") for s in "rl"),
    "knee": ("knee_angle_r", "knee_angle_l"),
    "ankle": ("ankle_angle_r", "ankle_angle_l"),
    "subtalar": ("subtalar_angle_r", "subtalar_angle_l"),
    "lumbar": LUMBAR,
}

# Other models' names for the same coordinate (same axis, same sign).
ALIASES = {
    "lumbar_extension": ("L5_S1_Flex_Ext",),
    "lumbar_bending": ("L5_S1_Lat_Bending",),
    "lumbar_rotation": ("L5_S1_axial_rotation",),
}

KNEES = ("knee_angle_r", "knee_angle_l")


def degrees(motion: Motion) -> Motion:
    """``motion`` with its rotations in degrees (a file written ``inDegrees=no`` holds radians)."""
    if motion.in_degrees:
        return motion
    values = np.array(motion.values, dtype=float)
    for k, name in enumerate(motion.names):
        if not is_translation(name) and name != "rmse_mm":
            values[:, k] = np.degrees(values[:, k])
    return Motion(np.asarray(motion.time, dtype=float), list(motion.names), values, True)


def column(motion: Motion, dof: str) -> np.ndarray | None:
    """The column of ``dof`` in ``motion`` under its own name or an alias; None when the model lacks it."""
    for name in (dof, *ALIASES.get(dof, ())):
        if name in motion:
            return np.asarray(motion.get(name), dtype=float)
    return None


def _knee(motion: Motion) -> np.ndarray:
    cols = [c for c in (column(motion, k) for k in KNEES) if c is not None]
    if not cols:
        raise InputError(
            f"the motion has no knee angle to align clocks by; it has {motion.names[:8]}...",
            given=motion.names,
            valid=list(KNEES),
        )
    return np.nanmean(np.column_stack(cols), axis=1)


def sample(motion: Motion, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """``values`` (a column of ``motion``) linearly interpolated at ``times``; NaN outside its span."""
    t = np.asarray(motion.time, dtype=float)
    ok = np.isfinite(values)
    if ok.sum() < 2:
        return np.full(len(times), np.nan)
    out = np.interp(times, t[ok], values[ok])
    out[(times < t[ok][0] - 1e-9) | (times > t[ok][-1] + 1e-9)] = np.nan
    return out


def align(estimate: Motion, reference: Motion, search_s: float = 1.0, step_s: float = 0.001) -> float:
    """The clock offset (s) with estimate time = reference time + offset, that best correlates knee flexion.

    Offsets from ``-search_s`` to ``+search_s`` around the one that puts the two recordings' middles together
    are tried in ``step_s`` steps; the one with the highest correlation coefficient wins (only offsets at which
    the estimate covers at least 80% of the reference count).
    """
    estimate, reference = degrees(estimate), degrees(reference)
    ref_knee = _knee(reference)
    est_knee = _knee(estimate)
    t_ref = np.asarray(reference.time, dtype=float)
    centre = float(np.mean(estimate.time[[0, -1]]) - np.mean(t_ref[[0, -1]]))
    offsets = centre + np.arange(-search_s, search_s + step_s / 2, step_s)
    best, best_r = None, -np.inf
    for off in offsets:
        e = sample(estimate, est_knee, t_ref + off)
        ok = np.isfinite(e) & np.isfinite(ref_knee)
        if ok.sum() < max(3, 0.8 * len(t_ref)):
            continue
        r = np.corrcoef(e[ok], ref_knee[ok])[0, 1]
        if np.isfinite(r) and r > best_r:
            best, best_r = float(off), float(r)
    if best is None:
        raise InputError(
            f"the two motions never overlap for 80% of the reference ({t_ref[0]:.2f}-{t_ref[-1]:.2f} s) within "
            f"{search_s:g} s of lining up their middles; give a larger search or the matching trial",
            key="search_s",
            given=search_s,
            valid="a larger search or the matching trial",
        )
    return best


@dataclass
class Comparison:
    """RMSE (deg) per DOF of an estimate against a reference, raw and with each DOF's mean offset removed."""

    offset_s: float  # estimate time = reference time + offset
    frames: int  # reference frames compared
    rmse: dict[str, float] = field(default_factory=dict)
    rmse_centred: dict[str, float] = field(default_factory=dict)
    bias: dict[str, float] = field(default_factory=dict)  # mean of estimate - reference
    missing: list[str] = field(default_factory=list)  # DOFs one of the two lacks

    def mean(self, dofs=DOFS, centred: bool = False) -> float:
        """Mean RMSE over ``dofs`` (those both motions have)."""
        table = self.rmse_centred if centred else self.rmse
        values = [table[d] for d in dofs if d in table]
        return float(np.mean(values)) if values else float("nan")

    def group(self, name: str, centred: bool = False) -> float:
        """The mean error of the DOF group ``name`` (:data:`GROUPS`), centred (each DOF's offset taken out) or raw."""
        return self.mean(GROUPS[name], centred)

    def row(self) -> dict[str, float]:
        """The headline figures: means over the 18 DOF and the lower limb, raw and centred, and each group."""
        out = {
            "mean18": self.mean(),
            "mean18_centred": self.mean(centred=True),
            "lower_limb": self.mean(LOWER_LIMB),
            "lower_limb_centred": self.mean(LOWER_LIMB, centred=True),
        }
        out.update({g: self.group(g) for g in GROUPS})
        return out


def compare(
    estimate: Motion,
    reference: Motion,
    offset_s: float | None = None,
    dofs=DOFS,
    search_s: float = 1.0,
) -> Comparison:
    """RMSE per DOF of ``estimate`` against ``reference`` on the reference's time base.

    ``offset_s``: estimate time = reference time + offset; None finds it by :func:`align`. Reference frames
    the estimate does not cover, and NaN in either, are left out per DOF.
    """
    estimate, reference = degrees(estimate), degrees(reference)
    if offset_s is None:
        offset_s = align(estimate, reference, search_s)
    t = np.asarray(reference.time, dtype=float)
    result = Comparison(float(offset_s), len(t))
    for dof in dofs:
        ref, est = column(reference, dof), column(estimate, dof)
        if ref is None or est is None:
            result.missing.append(dof)
            continue
        diff = sample(estimate, est, t + offset_s) - ref
        diff = diff[np.isfinite(diff)]
        if diff.size == 0:
            result.missing.append(dof)
            continue
        bias = float(np.mean(diff))
        result.rmse[dof] = float(np.sqrt(np.mean(diff**2)))
        result.rmse_centred[dof] = float(np.sqrt(np.mean((diff - bias) ** 2)))
        result.bias[dof] = bias
    return result
