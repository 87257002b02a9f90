"""One synthetic trial: :func:`synthesize` poses the truth model through the squat design.

It writes what the cameras and the marker lab would have recorded (:class:`SynthResult`), with seeded noise and gaps
(:class:`Gap`). See :mod:`kinestream.synth`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream import checks
from kinestream.assets import get_assets
from kinestream.errors import InputError, SettingsError
from kinestream.files.mot import Motion, write_mot
from kinestream.files.trc import MarkerTable, write_trc
from kinestream.synth.kinematics import _FootClosure, _Kinematics
from kinestream.synth.model import _FOOT_BODIES, generic_height, truth_model
from kinestream.synth.squat import (
    _CENTRES,
    DESCENT_S,
    HALF_SQUAT_DEG,
    MAX_DEPTH_DEG,
    MAX_SWAY_DEG,
    MIN_DEPTH_DEG,
    MIN_SECONDS,
    PAUSE_S,
    SQUAT_S,
    STAND_S,
    Squat,
    _centres_now,
    _check_form,
    _depth_factor,
    _design,
    _Form,
    _lean_by_lumbar,
    _pause_list,
    _squat_shape,
    _stance_for_valgus,
    knee_valgus,
    max_squats,
    squat_starts,
    trunk_lean,
)

log = logging.getLogger(__name__)

MIN_FS, MAX_FS = 10.0, 1000.0
FOOT_CLEARANCE = 0.015  # lowest foot marker above the floor (y = 0) while standing, metres


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


# --------------------------------------------------------------------------- arguments


def _check_variations(depths, pauses, sway_deg, squats):
    """(depths as a list or None, pauses as a list or None, sway) checked; squats must agree with depths."""
    if depths is not None:
        if np.ndim(depths) != 1 or len(depths) == 0:
            raise SettingsError(
                f"depths={depths!r} is not valid; it must be a list of knee peaks in degrees, one per squat",
                key="depths",
                given=depths,
                valid="a list of knee peaks in degrees, one per squat",
            )
        depths = [
            checks.number(f"depths[{k}]", d, MIN_DEPTH_DEG, MAX_DEPTH_DEG, "degrees of knee flexion")
            for k, d in enumerate(depths)
        ]
        if squats is not None and squats != len(depths):
            raise SettingsError(
                f"squats={squats!r} must match depths, which lists {len(depths)} squats (or leave squats out)",
                key="squats",
                given=squats,
                valid=len(depths),
            )
    if pauses is not None:
        if np.ndim(pauses) == 0:
            pauses = checks.number("pauses", pauses, 0.0, 60.0, "seconds")
        elif np.ndim(pauses) == 1:
            pauses = [checks.number(f"pauses[{k}]", p, 0.0, 60.0, "seconds") for k, p in enumerate(pauses)]
        else:
            raise SettingsError(
                f"pauses={pauses!r} is not valid; it must be seconds of standing between "
                f"squats: one number, or one per gap",
                key="pauses",
                given=pauses,
                valid="one number, or one per gap",
            )
    sway_deg = checks.number("sway_deg", sway_deg, 0.0, MAX_SWAY_DEG, "degrees")
    return depths, pauses, sway_deg


def _check_arguments(fs, seconds, noise_mm, gaps, scale, seed, squats, depths=None, pauses=None):
    try:
        fs_ok = float(fs)
    except (TypeError, ValueError):
        fs_ok = math.nan
    if isinstance(fs, bool) or not (math.isfinite(fs_ok) and MIN_FS <= fs_ok <= MAX_FS):
        raise SettingsError(
            f"sampling rate fs={fs!r} Hz is not valid; it must be a number from {MIN_FS:g} to {MAX_FS:g} Hz",
            key="fs",
            given=fs,
            valid=(MIN_FS, MAX_FS),
        )
    try:
        sec = float(seconds)
    except (TypeError, ValueError):
        sec = math.nan
    if isinstance(seconds, bool) or not (math.isfinite(sec) and sec >= MIN_SECONDS):
        raise SettingsError(
            f"seconds={seconds!r} is too short or not a number; the trial needs at least "
            f"{MIN_SECONDS:g} s ({STAND_S:g} s standing plus one {SQUAT_S:g} s squat)",
            key="seconds",
            given=seconds,
            valid=f"at least {MIN_SECONDS:g} s",
        )
    try:
        noise = float(noise_mm)
    except (TypeError, ValueError):
        noise = math.nan
    if isinstance(noise_mm, bool) or not (math.isfinite(noise) and noise >= 0.0):
        raise SettingsError(
            f"noise_mm={noise_mm!r} is not valid; it must be a finite number >= 0 "
            f"(standard deviation per axis, millimetres)",
            key="noise_mm",
            given=noise_mm,
            valid="a finite number >= 0",
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
                raise SettingsError(
                    f"seconds={sec:g} leave no room for a squat after {STAND_S:g} s of standing",
                    key="seconds",
                    given=sec,
                    valid=f"more than {STAND_S:g} s",
                )
        gaps_s = _pause_list(PAUSE_S if pauses is None else pauses, n_squats)
        if len(gaps_s) != n_squats - 1:
            raise SettingsError(
                f"pauses lists {len(gaps_s)} pauses for {n_squats} squats; it needs "
                f"{n_squats - 1} (one between each two squats) or a single number",
                key="pauses",
                given=len(gaps_s),
                valid=n_squats - 1,
            )
        need = STAND_S + n_squats * SQUAT_S + sum(gaps_s)
        if need > sec + 1e-9:
            raise SettingsError(
                f"{n_squats} squats with pauses of {gaps_s} s do not fit in seconds={sec:g}: they "
                f"need {need:g} s ({STAND_S:g} s standing, {SQUAT_S:g} s a squat); make the "
                f"trial longer",
                key="seconds",
                given=sec,
                valid=f"at least {need:g} s",
            )
    elif squats is None:
        n_squats = fits
    else:
        n_squats = checks.integer("squats", squats, 1)
        if n_squats > fits:
            need = STAND_S + n_squats * SQUAT_S + (n_squats - 1) * PAUSE_S
            raise SettingsError(
                f"squats={n_squats} do not fit in seconds={sec:g}: they need {need:g} s "
                f"({STAND_S:g} s standing, {SQUAT_S:g} s a squat, {PAUSE_S:g} s between); "
                f"at most {fits} fit, or make the trial longer",
                key="squats",
                given=n_squats,
                valid=f"at most {fits}",
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
    Each stage is logged at INFO as it begins.

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
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"out_dir {out} is a file; give a folder (it is created if needed)",
            key="out_dir",
            given=out,
            valid="a folder",
        )
    out.mkdir(parents=True, exist_ok=True)

    assets = get_assets()
    log.info("synth: building the model (scale %g)", scale)
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
        log.info("synth: turning the feet for %g cm of knee valgus", form.valgus)
        stance = _stance_for_valgus(kin, bodies, make, bottoms[0], form.valgus)
    design, q_stand = make(stance)

    log.info("synth: posing %d frames", n_frames)
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
        raise SettingsError(
            f"the designed form (trunk_lean_deg={trunk_lean_deg!r}, valgus_cm={valgus_cm!r}, "
            f"descent_s={descent_s!r}, asymmetry_deg={asymmetry_deg!r}) takes the model out of its range in "
            f"{', '.join(outside)}; give milder values",
            given=outside,
            valid="milder values",
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

    log.info("synth: writing %s", out)
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
