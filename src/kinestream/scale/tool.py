"""The generic model scaled to the subject by OpenSim's ScaleTool (:func:`scale_model`), with the ``[scale]`` settings.

From a still window's marker-pair distances, or from segment lengths over the least-flexed frames. See
:mod:`kinestream.scale`.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean

from kinestream import checks, solve
from kinestream.errors import AssetError, InputError, SolverError
from kinestream.files.trc import MarkerTable, write_trc
from kinestream.osim import opensim_module
from kinestream.scale.window import StaticWindow, parse_static, posture, static_window
from kinestream.settings import ScaleSettings

log = logging.getLogger(__name__)

# Segment-length scaling: frames whose hips and knees are within this of
# extension count as least flexed; the trimmed mean drops this share of the
# distances at each end.
LEAST_FLEXED_DEG = 45.0
TRIM_EACH_SIDE = 0.25
MIN_LEAST_FLEXED_FRAMES = 10

# At most this many frames are posed by IK to measure the scaled model's error.
IK_CHECK_FRAMES = 30


@dataclass
class ScaleResult:
    """What scaling wrote and how well the scaled model fits the markers.

    ``method`` is "static" (a still window) or "segment-lengths" (no still
    window: trimmed-mean marker-pair distances over the least-flexed frames).
    ``scale_factors`` are OpenSim's per-body (sx, sy, sz) as applied.
    ``rmse_mm``/``max_error_mm`` are the marker errors of the scaled model
    posed by IK (IK setup weights) on up to 30 of the frames that set the
    scale. ``messages`` say, in sentences, what was chosen and done.
    """

    model_path: Path
    method: str  # "static" or "segment-lengths"
    window: StaticWindow | None
    scale_factors: dict[str, np.ndarray]  # body -> (sx, sy, sz)
    rmse_mm: float
    max_error_mm: float
    messages: list[str] = field(default_factory=list)
    mass: float = float("nan")
    height: float = float("nan")
    frames: np.ndarray | None = None  # the frames whose markers set the scale (and were posed by IK)


# ------------------------------------------------------------ the scaling --


@dataclass
class _Measurement:
    name: str
    pairs: list[tuple[str, str]]
    bodies: list[tuple[str, str]]  # (body, axes such as "X Y Z")


def _load_generic(assets, osim):
    """The generic model with the marker set attached, in its default pose."""
    for path, what in (
        (assets.generic_model, "generic model"),
        (assets.marker_set, "marker set"),
        (assets.scale_setup, "scaling setup"),
        (assets.ik_setup, "IK setup"),
    ):
        if not Path(path).is_file():
            raise AssetError(
                f"{what} {path} does not exist; run 'kinestream assets' or fix the path in the config",
                key=what,
                given=path,
                valid="run 'kinestream assets' or fix the path in the config",
            )
    try:
        model = osim.Model(str(assets.generic_model))
        model.updateMarkerSet(osim.MarkerSet(str(assets.marker_set)))
        state = model.initSystem()
    except Exception as exc:
        raise AssetError(
            f"could not load {assets.generic_model} with the markers of {assets.marker_set}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
            given=assets.generic_model,
        ) from None
    return model, state


def _prepare_measurements(
    tool, body_names: set[str], model_markers: set[str], available: set[str], say
) -> list[_Measurement]:
    """Edit the ScaleTool's measurements to what this model and trial allow; return those that remain."""
    mset = tool.getModelScaler().getMeasurementSet()
    used: list[_Measurement] = []
    lacking_bodies: set[str] = set()
    skipped: list[str] = []
    for i in range(mset.getSize()):
        meas = mset.get(i)
        if not meas.getApply():
            continue
        bss = meas.getBodyScaleSet()
        bodies = []
        for j in reversed(range(bss.getSize())):
            name = bss.get(j).getName()
            if name in body_names:
                axes = bss.get(j).getAxisNames()
                bodies.append((name, " ".join(axes.get(k) for k in range(axes.getSize()))))
            else:
                lacking_bodies.add(name)
                bss.remove(j)
        pset = meas.getMarkerPairSet()
        pairs, missing = [], set()
        for j in reversed(range(pset.getSize())):
            a, b = pset.get(j).getMarkerName(0), pset.get(j).getMarkerName(1)
            gone = {m for m in (a, b) if m not in model_markers or m not in available}
            if gone:
                missing |= gone
                pset.remove(j)
            else:
                pairs.append((a, b))
        if not bodies or not pairs:
            meas.setApply(False)
            why = (
                "it scales no body of this model"
                if not bodies
                else f"the trial or model lacks {', '.join(sorted(missing))}"
            )
            skipped.append(f"{meas.getName()} ({why})")
            continue
        used.append(_Measurement(meas.getName(), pairs[::-1], bodies[::-1]))
    if lacking_bodies:
        say(f"the scaling setup names bodies this model lacks ({', '.join(sorted(lacking_bodies))}); left out")
    if skipped:
        say(f"measurements not used: {'; '.join(skipped)}")
    if not used:
        raise InputError(
            "none of the scaling setup's measurements can be taken: the marker pairs need the augmented markers "
            "(r_knee_study, RHJC_study, r.ASIS_study, ...) in the trial and in the model; run 'kinestream augment' "
            "first or check the marker set",
            valid="the augmented markers in the trial and the model",
        )
    return used


def _fill_window(table: MarkerTable) -> tuple[MarkerTable, set[str]]:
    """The window with each marker's gaps filled by its window mean; markers missing in most frames dropped."""
    keep, cols = [], []
    for k, name in enumerate(table.names):
        xyz = table.xyz[:, k]
        good = np.isfinite(xyz).all(axis=1)
        if good.mean() >= 0.5:
            mean = xyz[good].mean(axis=0)
            cols.append(np.where(good[:, None], xyz, mean))
            keep.append(name)
    if not keep:
        raise InputError("the static window holds no complete marker; choose another range", valid="another range")
    return MarkerTable(keep, np.stack(cols, axis=1), table.time, table.rate), set(keep)


def _least_flexed_frames(table: MarkerTable) -> tuple[np.ndarray, str]:
    """Frames with hips and knees nearest extension, and a sentence saying how they were picked."""
    flex = posture(table).flexion
    finite = np.flatnonzero(np.isfinite(flex))
    if finite.size == 0:
        return np.arange(table.n_frames), "all frames (hip and knee flexion not measurable from these markers)"
    straight = finite[flex[finite] <= LEAST_FLEXED_DEG]
    if straight.size >= min(MIN_LEAST_FLEXED_FRAMES, finite.size):
        return straight, (
            f"the {straight.size} frames with hips and knees within {LEAST_FLEXED_DEG:g} deg of extension"
        )
    count = min(finite.size, max(MIN_LEAST_FLEXED_FRAMES, int(round(0.2 * finite.size))))
    frames = np.sort(finite[np.argsort(flex[finite], kind="stable")[:count]])
    return frames, (
        f"the {count} least-flexed frames (hips and knees bent up to {np.max(flex[frames]):.0f} deg; "
        f"none of the trial is straighter)"
    )


def _segment_length_factors(
    table: MarkerTable, frames: np.ndarray, measurements: list[_Measurement], model, state
) -> dict[str, float]:
    """Each measurement's factor: trimmed-mean pair distance on the subject / the same on the generic model."""
    markers = model.getMarkerSet()
    factors = {}
    for meas in measurements:
        ratios = []
        for a, b in meas.pairs:
            d = np.linalg.norm(table.get(a)[frames] - table.get(b)[frames], axis=1)
            d = d[np.isfinite(d)]
            if d.size == 0:
                continue
            subject = float(trim_mean(d, TRIM_EACH_SIDE))
            generic = float(
                np.linalg.norm(
                    markers.get(a).getLocationInGround(state).to_numpy()
                    - markers.get(b).getLocationInGround(state).to_numpy()
                )
            )
            if generic > 1e-6:
                ratios.append(subject / generic)
        if ratios:
            factors[meas.name] = float(np.mean(ratios))
    return factors


def _manual_scale_set(osim, measurements: list[_Measurement], factors: dict[str, float], path: Path):
    """An OpenSim ScaleSet file with each body's per-axis factor, later measurements overriding earlier ones."""
    per_body: dict[str, np.ndarray] = {}
    for meas in measurements:
        if meas.name not in factors:
            continue
        for body, axes in meas.bodies:
            v = per_body.setdefault(body, np.ones(3))
            for axis in axes.split():
                v["XYZ".index(axis.upper())] = factors[meas.name]
    sset = osim.ScaleSet()
    for body, v in per_body.items():
        sc = osim.Scale()
        sc.setName(body)
        sc.setSegmentName(body)
        sc.setScaleFactors(osim.Vec3(*map(float, v)))
        sc.setApply(True)
        sset.cloneAndAppend(sc)
    sset.printToXML(str(path))
    return per_body


def _run_scale_tool(
    osim,
    tool,
    assets,
    mass: float,
    height: float,
    name: str,
    order: str,
    out_model: Path,
    out_scales: Path,
    trc: Path | None = None,
    time_range: tuple[float, float] | None = None,
    scale_set_file: Path | None = None,
    *,
    marker_set: Path,
) -> None:
    tool.setName(name)
    tool.setPathToSubject("")  # every path below is absolute
    tool.setSubjectMass(mass)
    tool.setSubjectHeight(height * 1000.0)  # the setup file keeps height in mm, for information
    maker = tool.getGenericModelMaker()
    maker.setModelFileName(str(Path(assets.generic_model).resolve()))
    maker.setMarkerSetFileName(str(Path(marker_set).resolve()))
    scaler = tool.getModelScaler()
    scaler.setApply(True)
    orders = osim.ArrayStr()
    orders.append(order)
    scaler.setScalingOrder(orders)
    if trc is not None:
        scaler.setMarkerFileName(str(trc))
    if time_range is not None:
        tr = osim.ArrayDouble()
        tr.append(time_range[0])
        tr.append(time_range[1])
        scaler.setTimeRange(tr)
    if scale_set_file is not None:
        scaler.setScaleSetFile(str(scale_set_file))
    scaler.setPreserveMassDist(True)
    scaler.setOutputModelFileName(str(out_model))
    scaler.setOutputScaleFileName(str(out_scales))
    tool.getMarkerPlacer().setApply(False)  # measurement-based scaling only; markers stay where the set puts them
    try:
        tool.run()  # reports False when the (disabled) marker placer does not run; the files tell
    except Exception as exc:
        raise SolverError(f"OpenSim's ScaleTool failed: {str(exc).strip()[:300]}", given=assets.scale_setup) from None
    if not out_model.is_file() or not out_scales.is_file():
        raise SolverError(
            f"OpenSim's ScaleTool wrote no scaled model (setup {assets.scale_setup}); run with "
            f"OpenSim's log at 'info' to see why",
            given=assets.scale_setup,
        )


def _read_scale_factors(osim, scales_file: Path, body_names: set[str]) -> dict[str, np.ndarray]:
    sset = osim.ScaleSet(str(scales_file))
    out = {}
    for i in range(sset.getSize()):
        sc = sset.get(i)
        if sc.getSegmentName() in body_names:
            out[sc.getSegmentName()] = np.array(sc.getScaleFactors().to_numpy(), dtype=float)
    return out


def _pick(frames: np.ndarray, k: int) -> np.ndarray:
    if frames.size <= k:
        return frames
    return frames[np.unique(np.round(np.linspace(0, frames.size - 1, k)).astype(int))]


def _ik_error(model_path: Path, table: MarkerTable, frames: np.ndarray, assets) -> tuple[float, float]:
    """RMS and largest marker error (mm) of the scaled model posed by IK on some of ``frames``."""
    model, _ = solve.load_model(model_path)
    setup = solve.read_ik_setup(assets.ik_setup)
    frames = _pick(np.asarray(frames), IK_CHECK_FRAMES)
    sub = MarkerTable(table.names, table.xyz[frames], table.time[frames], table.rate)
    result = solve.solve_trial(model, sub, setup)
    rmse = result.rmse_mm[np.isfinite(result.rmse_mm)]
    if rmse.size == 0:
        return float("nan"), float("nan")
    return float(math.sqrt(np.mean(rmse**2))), float(np.nanmax(result.max_error_mm))


def _summary(factors: dict[str, np.ndarray]) -> str:
    shown = [
        b
        for b in ("pelvis", "femur_r", "femur_l", "tibia_r", "tibia_l", "torso", "humerus_r", "humerus_l")
        if b in factors
    ] or sorted(factors)[:8]
    parts = []
    for b in shown:
        f = factors[b]
        parts.append(f"{b} {f[0]:.3f}" if np.allclose(f, f[0]) else f"{b} ({f[0]:.3f}, {f[1]:.3f}, {f[2]:.3f})")
    return "scale factors: " + ", ".join(parts)


def scale_model(
    markers: MarkerTable,
    mass: float,
    height: float,
    out_model: str | Path,
    assets,
    settings: ScaleSettings | None = None,
    static=None,
) -> ScaleResult:
    """Scale the generic model to the subject of ``markers`` (an augmented table) and write ``out_model``.

    ``settings``: the ``[scale]`` settings (default.toml's when None): the still window asked for, the stillness
    thresholds and windows tried, and the markers put on joint centres first. ``static`` overrides their still
    window: "auto" (find the still upright window; when there is none, fall back to segment lengths over the
    least-flexed frames), a (start, end) range in seconds or "START:END". ``mass`` in kg, ``height`` in metres.
    What was chosen and done is in the result's ``messages`` (each also logged, at DEBUG, as it happens: the
    caller shows the messages).
    """
    settings = settings or ScaleSettings()
    static = parse_static(settings.static if static is None else static)
    thresholds_mm, windows_s = settings.still_threshold_mm, settings.still_window_s
    height, mass = checks.subject(height, mass)
    if not isinstance(markers, MarkerTable) or markers.n_frames == 0:
        raise InputError(
            "the marker table is empty; give an augmented trial with at least one frame",
            given=markers,
            valid="an augmented trial with at least one frame",
        )
    osim = opensim_module()
    messages: list[str] = []

    def say(text: str) -> None:
        messages.append(text)
        log.debug("%s", text)

    out_model = Path(out_model)
    generic, state = _load_generic(assets, osim)
    moved = solve.register_joint_centres(generic, state, settings.joint_centre_markers)
    if moved:
        state = generic.initSystem()
        say("generic markers put on the joint centres they define: " + "; ".join(moved))
    body_names = {generic.getBodySet().get(i).getName() for i in range(generic.getBodySet().getSize())}
    model_markers = {generic.getMarkerSet().get(i).getName() for i in range(generic.getMarkerSet().getSize())}
    try:
        tool = osim.ScaleTool(str(assets.scale_setup))
    except Exception as exc:
        raise AssetError(
            f"{assets.scale_setup} is not an OpenSim ScaleTool setup file: {exc}",
            given=assets.scale_setup,
            valid="an OpenSim ScaleTool setup file",
        ) from None

    # Which markers' stillness counts: the augmented ones and those the measurements use.
    pair_markers: set[str] = set()
    mset = tool.getModelScaler().getMeasurementSet()
    for i in range(mset.getSize()):
        pset = mset.get(i).getMarkerPairSet()
        for j in range(pset.getSize()):
            pair_markers |= {pset.get(j).getMarkerName(0), pset.get(j).getMarkerName(1)}
    still_markers = [n for n in markers.names if n.endswith("_study") or n in pair_markers]

    window = static_window(markers, static, thresholds_mm, windows_s, still_markers)

    stem = out_model.stem
    with tempfile.TemporaryDirectory(prefix="kinestream-scale-") as tmp_name:
        tmp = Path(tmp_name)
        marker_set = tmp / "markers.xml"  # the generic markers as registered, for the ScaleTool to read
        generic.getMarkerSet().printToXML(str(marker_set))
        tmp_model, tmp_scales = tmp / f"{stem}.osim", tmp / f"{stem}_scales.xml"
        run_scale_tool = functools.partial(
            _run_scale_tool,
            osim,
            tool,
            assets,
            mass,
            height,
            stem,
            out_model=tmp_model,
            out_scales=tmp_scales,
            marker_set=marker_set,
        )
        if window is not None:
            say(window.description)
            sub, available = _fill_window(markers.frames(window.start, window.stop))
            used = _prepare_measurements(tool, body_names, model_markers, available, say)
            trc = write_trc(tmp / "static.trc", sub)
            t_first, t_last = round(float(sub.time[0]), 6), round(float(sub.time[-1]), 6)
            run_scale_tool("measurements", trc=trc, time_range=(t_first, t_last))
            method = "static"
            frames = np.arange(window.start, window.stop)
            say(
                f"scaled {Path(assets.generic_model).name} with OpenSim's ScaleTool from {len(used)} measurements "
                f"({', '.join(m.name for m in used)}), averaging the {window.n_frames} static frames; mass set to "
                f"{mass:g} kg with the generic mass distribution"
            )
        else:
            frames, how = _least_flexed_frames(markers)
            available = {
                n
                for n in markers.names
                if np.isfinite(markers.get(n)[frames]).all(axis=1).sum() >= max(3, 0.25 * frames.size)
            }
            say(
                f"no still, upright window in the trial (stillness thresholds {thresholds_mm[0]:g}-"
                f"{thresholds_mm[1]:g} mm, windows {windows_s[0]:g}-{windows_s[1]:g} s): the person never stood "
                f"still, so the model is scaled from segment lengths instead"
            )
            used = _prepare_measurements(tool, body_names, model_markers, available, say)
            factors = _segment_length_factors(markers, frames, used, generic, state)
            used = [m for m in used if m.name in factors]
            if not used:
                raise InputError(
                    "no marker-pair distance could be measured in the trial; the augmented markers "
                    "are missing in its least-flexed frames",
                    valid="the augmented markers in its least-flexed frames",
                )
            manual = tmp / "manual_scales.xml"
            _manual_scale_set(osim, used, factors, manual)
            run_scale_tool("manualScale", scale_set_file=manual)
            method = "segment-lengths"
            say(
                f"segment lengths: trimmed means ({TRIM_EACH_SIDE:.0%} cut at each end) of each marker-pair "
                f"distance over {how}, divided by the generic model's, applied by OpenSim's ScaleTool as manual "
                f"scales ({', '.join(f'{m.name} {factors[m.name]:.3f}' for m in used)}); mass set to {mass:g} kg "
                f"with the generic mass distribution"
            )
        scale_factors = _read_scale_factors(osim, tmp_scales, body_names)
        out_model.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_model, out_model)
    say(_summary(scale_factors))

    try:
        check = osim.Model(str(out_model))
        n_markers = check.getMarkerSet().getSize()
    except Exception as exc:
        raise SolverError(f"the scaled model {out_model} does not load in OpenSim: {exc}", given=out_model) from None
    if n_markers == 0:
        raise SolverError(
            f"the scaled model {out_model} carries no markers; check the marker set {assets.marker_set}",
            given=out_model,
            valid=assets.marker_set,
        )
    rmse, emax = _ik_error(out_model, markers, frames, assets)
    return ScaleResult(out_model, method, window, scale_factors, rmse, emax, messages, mass, height, np.asarray(frames))
