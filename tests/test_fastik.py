"""The fast IK solver against OpenSim's InverseKinematicsTool: the same objective, a cost as low or lower.

Every comparison runs OpenSim's own tool on the same .trc, model and IK setup,
evaluates OpenSim's objective (Simbody's Markers goal) at both solutions with
OpenSim's kinematics, and compares the angles. OpenSim's assembler stops short
of the minimum (at accuracy 1e-5 or tighter alike), so where the objective's
valley is flat (pelvis tilt against hip and lumbar flexion, the arm and
forearm rotations, the subtalar angle) the two solvers differ more, with the
fast one lower on cost.
"""

import os
from pathlib import Path

import numpy as np
import pytest

import ikcheck
from conftest import real_trial
from kinestream import fastik, solve
from kinestream.augment import Augmenter, augment_table
from kinestream.errors import SettingsError, SolverError
from kinestream.fastik import FastIK
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc, write_trc
from kinestream.ingest import complete_keypoints
from kinestream.synth import drive_model

# flexion and the pelvis: what a coach or clinician reads; held to 0.25 deg RMS of OpenSim's tool
FIRM = [
    "pelvis_tilt",
    "pelvis_list",
    "hip_flexion_r",
    "hip_adduction_r",
    "knee_angle_r",
    "ankle_angle_r",
    "hip_flexion_l",
    "hip_adduction_l",
    "knee_angle_l",
    "ankle_angle_l",
]
# the flat valley: hip and lumbar axial rotation, lumbar bending, the subtalar angle
FLAT = [
    "pelvis_rotation",
    "hip_rotation_r",
    "hip_rotation_l",
    "subtalar_angle_r",
    "subtalar_angle_l",
    "L5_S1_Flex_Ext",
    "L5_S1_Lat_Bending",
    "L5_S1_axial_rotation",
]


def _rms(a, b):
    return float(np.sqrt(np.nanmean((a - b) ** 2)))


def compare_with_tool(assets, markers, trc, tmp_path, model_path=None):
    """Fast solver on every frame vs OpenSim's InverseKinematicsTool on the same .trc.

    Returns (fast motion, tool motion, fast cost, tool cost) with costs of OpenSim's objective per frame.
    """
    model_path = model_path or assets.generic_model
    tool = read_mot(
        solve.run_ik_tool(model_path, trc, assets.ik_setup, tmp_path / "tool.mot", marker_set=assets.marker_set)
    )
    model, _ = solve.load_model(model_path, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    fast = solve.solve_trial(model, markers, setup, solver="fast")
    assert not fast.notes, fast.notes
    ik = FastIK(model, setup, fast.markers_used)
    xyz = markers.xyz[:, [markers.index(n) for n in fast.markers_used]]
    names = solve.coordinate_names(model)
    rot = solve._rotational(model)

    def costs(motion):
        out = []
        for i in range(markers.n_frames):
            values = np.array([motion.get(n)[i] for n in names])
            values[rot] = np.radians(values[rot])
            q = ik.neutral.copy()
            q[ik.qindex] = values
            out.append(ik.cost(q, xyz[i]))
        return np.array(out)

    return fast.motion, tool, costs(fast.motion), costs(tool)


def converged_minimum(assets, markers, tool, model_path=None):
    """The objective's own minimum near OpenSim's answer: the fast solver started from OpenSim's solution of
    each frame and run to a tolerance far below both solvers' (relative 1e-13). Returns {coordinate: degrees}."""
    model, _ = solve.load_model(model_path or assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    names = [n for n in setup.marker_weights if n in markers and model.getMarkerSet().contains(n)]
    ik = FastIK(model, setup, names, ftol=1e-13, max_iterations=400)
    coords = solve.coordinate_names(model)
    rot = solve._rotational(model)
    xyz = markers.xyz[:, [markers.index(n) for n in names]]
    out = np.zeros((markers.n_frames, len(coords)))
    for i in range(markers.n_frames):
        values = np.array([tool.get(n)[i] for n in coords])
        values[rot] = np.radians(values[rot])
        q = ik.neutral.copy()
        q[ik.qindex] = values
        out[i] = ik.solve(xyz[i], q).q[ik.qindex]
    out[:, rot] = np.degrees(out[:, rot])
    return {n: out[:, k] for k, n in enumerate(coords)}


def report(fast, tool, fast_cost, tool_cost, minimum=None):
    ratio = fast_cost / tool_cost
    diff = {n: round(_rms(fast.get(n), tool.get(n)), 3) for n in FIRM + FLAT}
    print(
        f"\ncost fast/OpenSim: median {np.median(ratio):.6f}, worst {ratio.max():.6f}, "
        f"fast <= OpenSim on {np.mean(fast_cost <= tool_cost):.1%} of frames"
    )
    print("RMS difference from OpenSim's tool (deg):", diff)
    if minimum is None:
        return ratio, diff, None
    off = {n: round(_rms(fast.get(n), minimum[n]), 3) for n in FIRM + FLAT}
    short = {n: round(_rms(tool.get(n), minimum[n]), 3) for n in FIRM + FLAT}
    print("fast solver from the converged minimum (deg):", off)
    print("OpenSim's tool from the converged minimum (deg):", short)
    return ratio, diff, off


@pytest.fixture(scope="module")
def squat(synth_trial):
    return synth_trial(seconds=6.0)


def test_jacobian_is_opensims_marker_motion(assets):
    """The station Jacobian, columns in Simbody's q order, equals finite differences of OpenSim's marker positions."""
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    ik = FastIK(model, setup, list(setup.marker_weights))
    rng = np.random.default_rng(3)
    q = np.clip(ik.neutral + rng.uniform(-0.4, 0.4, ik.nq), ik.lower, ik.upper)
    ik._set(q)
    jac = ik.jacobian()
    numeric = np.zeros_like(jac)
    for k in range(ik.nq):
        step = np.zeros(ik.nq)
        step[k] = 1e-6
        ik._set(q + step)
        plus = ik.positions().ravel()
        ik._set(q - step)
        numeric[:, k] = (plus - ik.positions().ravel()) / 2e-6
    assert np.abs(jac - numeric).max() < 1e-6


def test_newton_curvature_is_the_objectives(assets):
    """The Hessian the solver steps with, Gauss-Newton's J^T J plus the residuals' own curvature built from the
    coordinates' axes, equals finite differences of OpenSim's gradient J^T r where the markers fit only
    roughly (2 cm of noise): all but the knees' curved translations, a few thousandths of the largest term."""
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    ik = FastIK(model, setup, list(setup.marker_weights))
    assert ik.second_order
    rng = np.random.default_rng(5)
    q = np.clip(ik.neutral + rng.uniform(-0.4, 0.4, ik.nq), ik.lower, ik.upper)
    ik._set(q)
    observed = ik.positions() + rng.normal(scale=0.02, size=(len(ik.names), 3))
    _, obs, sqrtw = ik._observations(observed)
    rows = np.repeat(sqrtw, 3)[:, None]

    def gradient(at):
        r, _ = ik._residual(at, obs, sqrtw)
        jac = ik._jacobian_at() * rows
        return jac.T @ r, jac, r

    _, jac, r = gradient(q)
    ik._residual(q, obs, sqrtw)
    hessian = jac.T @ jac + ik._curvature(jac, r, ik._axes())
    numeric = np.zeros_like(hessian)
    for k in range(ik.nq):
        step = np.zeros(ik.nq)
        step[k] = 1e-6
        numeric[:, k] = (gradient(q + step)[0] - gradient(q - step)[0]) / 2e-6
    moving = np.abs(jac).sum(axis=0) > 0
    error = np.abs(hessian - numeric)[np.ix_(moving, moving)]
    gauss_newton = np.abs(jac.T @ jac - numeric)[np.ix_(moving, moving)]
    scale = np.abs(numeric[np.ix_(moving, moving)]).max()
    assert error.max() < 0.005 * scale
    assert gauss_newton.max() > 10 * error.max()  # what the second-order term adds


def test_newton_converges_in_few_steps_a_frame(squat, assets):
    """Frame after frame of a squat whose markers sit 1 cm off their places (as augmented markers do) with 2 mm
    of noise, each frame from the last: Newton's steps with the full curvature reach the minimum (the Newton
    decrement under 1e-12 of the cost, or a Newton step under 1e-4) in 4 steps a frame, at most 5, where
    Gauss-Newton's linear convergence takes 8, up to 11 (and in flat valleys, such as a straight elbow, up to
    60). Each answer is within 1e-4 deg of the converged minimum."""
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    names = [n for n in setup.marker_weights if n in squat.markers.names]
    ik = FastIK(model, setup, names)
    rng = np.random.default_rng(2)
    xyz = squat.markers.xyz[:, [squat.markers.names.index(n) for n in names]]
    xyz = xyz + rng.normal(scale=0.01, size=(1,) + xyz.shape[1:]) + rng.normal(scale=0.002, size=xyz.shape)
    fit = ik.solve(xyz[0])
    steps, off = [], []
    for i, frame in enumerate(xyz[1:]):
        fit = ik.solve(frame, fit.q)
        assert fit.converged
        steps.append(fit.iterations)
        if i % 40 == 0:
            off.append(np.degrees(np.abs(fastik.converged_minimum(ik, frame, fit.q) - fit.q)).max())
            ik.solve(frame, fit.q)  # the state back at this frame's answer
    print("largest distance from the converged minimum (deg):", max(off))
    assert max(off) < 1e-4
    print("steps a frame: median", np.median(steps), "max", max(steps))
    assert np.median(steps) <= 5 and max(steps) <= 8


def test_fast_finds_the_true_pose_on_exact_markers(squat, assets, tmp_path):
    """On exact markers the minimum is the true pose (cost 0): the fast solver reaches it. (How far short of
    it OpenSim's tool stops is printed, not asserted: that is the tool's business.)"""
    fast, tool, fast_cost, tool_cost = compare_with_tool(assets, squat.markers, squat.markers_trc, tmp_path)
    report(fast, tool, fast_cost, tool_cost)
    assert np.all(fast_cost <= tool_cost)
    truth = {n: _rms(fast.get(n), squat.motion.get(n)) for n in FIRM + FLAT}
    opensim = {n: _rms(tool.get(n), squat.motion.get(n)) for n in FIRM + FLAT}
    print("fast vs truth (deg):", {k: round(v, 4) for k, v in truth.items()})
    print("OpenSim vs truth (deg):", {k: round(v, 3) for k, v in opensim.items()})
    assert max(truth.values()) < 0.01


def test_fast_equals_opensim_on_noisy_augmented_markers(assets, tmp_path, synth_trial):
    syn = synth_trial(seconds=6.0, noise_mm=5.0)
    augmented, _ = augment_table(complete_keypoints(syn.keypoints), Augmenter.from_assets(assets), syn.height, syn.mass)
    trc = write_trc(tmp_path / "augmented.trc", augmented)
    fast, tool, fast_cost, tool_cost = compare_with_tool(assets, augmented, trc, tmp_path)
    ratio, diff, off = report(fast, tool, fast_cost, tool_cost, converged_minimum(assets, augmented, tool))
    # The promise: a cost at or below OpenSim's, at the converged minimum. How far OpenSim's own tool stops
    # short of that minimum (diff, printed by report: 0.25-0.4 deg here) depends on the machine and the model,
    # so it is not asserted.
    assert np.mean(ratio <= 1.0) >= 0.99
    assert max(off[n] for n in FIRM) < 0.1 and max(off[n] for n in FLAT) < 0.1


@pytest.mark.parametrize("name", ["sit_to_stand", "drop_vertical_jump"])
def test_fast_equals_opensim_on_real_trials(name, assets, tmp_path):
    augmented, _ = augment_table(
        complete_keypoints(read_trc(real_trial(f"{name}.trc"))), Augmenter.from_assets(assets), 1.85, 75.0
    )
    trc = write_trc(tmp_path / "augmented.trc", augmented)
    fast, tool, fast_cost, tool_cost = compare_with_tool(assets, augmented, trc, tmp_path)
    ratio, diff, off = report(fast, tool, fast_cost, tool_cost, converged_minimum(assets, augmented, tool))
    # As above: the cost and the distance from the converged minimum are asserted, not how far OpenSim's tool
    # stops short (lumbar axial rotation costs almost nothing on these trials: it stops 2-3 deg short).
    assert np.mean(ratio <= 1.0) >= 0.99
    assert ratio.max() < 1.001
    # Lumbar axial rotation is so nearly free of cost here that its minimum is not determined within degrees
    # (3.3 deg apart on the sit-to-stand at a cost ratio <= 1.001): it is held to the cost alone.
    loose = {"L5_S1_axial_rotation"}
    assert max(off[n] for n in FIRM) < 0.1 and max(off[n] for n in FLAT if n not in loose) < 0.3


def test_ranges_and_locks_are_kept_as_opensim_keeps_them(squat, assets):
    """A clamped range stops the solution at its bound; a locked coordinate keeps its value; OpenSim agrees."""
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    cs = model.getCoordinateSet()
    cs.get("knee_angle_r").setRangeMax(np.radians(40.0))  # the squat goes to about 100 deg
    cs.get("hip_adduction_l").setDefaultValue(np.radians(5.0))
    cs.get("hip_adduction_l").setDefaultLocked(True)
    model.initSystem()
    setup = solve.read_ik_setup(assets.ik_setup)
    markers = squat.markers.frames(150, 260)  # into the squat and out
    fast = solve.solve_trial(model, markers, setup, solver="fast").motion
    opensim = solve.solve_trial(model, markers, setup, solver="opensim").motion
    knee = fast.get("knee_angle_r")
    deep = squat.motion.get("knee_angle_r")[150:260] > 45.0
    assert knee.max() <= 40.0 + 1e-9
    assert deep.sum() > 20 and np.all(knee[deep] > 40.0 - 1e-6)  # it rests on the bound through the deep part
    assert np.allclose(fast.get("hip_adduction_l"), 5.0)
    assert np.allclose(opensim.get("hip_adduction_l"), 5.0, atol=1e-6)
    ik = FastIK(model, setup, [n for n in setup.marker_weights if n in markers])
    xyz = markers.xyz[:, [markers.index(n) for n in ik.names]]
    rot = solve._rotational(model)
    names = solve.coordinate_names(model)

    def cost(motion, i):
        values = np.array([motion.get(n)[i] for n in names])
        values[rot] = np.radians(values[rot])
        q = ik.neutral.copy()
        q[ik.qindex] = values
        return ik.cost(q, xyz[i])

    ratio = np.array([cost(fast, i) / cost(opensim, i) for i in range(markers.n_frames)])
    print(f"\nwith a bound and a lock, cost fast/OpenSim: median {np.median(ratio):.6f}, worst {ratio.max():.6f}")
    assert np.mean(ratio <= 1.0) >= 0.99
    # the angles: at the minimum of the bounded objective, not wherever OpenSim's solver stops
    result = ikcheck.check(model, setup, ik.names, xyz, fast, opensim)
    print(ikcheck.summary(result))
    assert result["off"].max() < 0.05


def test_a_model_with_constraints_gets_opensims_solver(assets):
    osim = pytest.importorskip("opensim")
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    coupler = osim.CoordinateCouplerConstraint()
    coupler.setName("knee_follows_hip")
    names = osim.ArrayStr()
    names.append("hip_flexion_r")
    coupler.setIndependentCoordinateNames(names)
    coupler.setDependentCoordinateName("knee_angle_r")
    coupler.setFunction(osim.LinearFunction(0.5, 0.0))
    model.addConstraint(coupler)
    model.initSystem()
    setup = solve.read_ik_setup(assets.ik_setup)
    with pytest.raises(SolverError) as info:
        FastIK(model, setup, list(setup.marker_weights))
    assert (info.value.key, info.value.valid) == ("ik.solver", "opensim") and "knee_follows_hip" in info.value.given
    ik = solve.StreamingIK(model, setup, list(setup.marker_weights), solver="fast")
    assert ik.solver == "opensim" and "knee_follows_hip" in ik.notes[0]


def test_unknown_solver_is_refused(assets):
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup)
    with pytest.raises(SettingsError) as info:
        solve.StreamingIK(model, setup, list(setup.marker_weights), solver="quick")
    assert (info.value.key, info.value.given, info.value.valid) == ("ik.solver", "quick", ["fast", "opensim"])


# -- the gait models labs use: OpenCap's and OpenSim's, with their own IK setups. Models are not carried in the
# repository: they are read from KINESTREAM_LAB_MODELS (default ~/.cache/kinestream/lab-models), where
# scripts/bench_fastik_models.py's docstring says what to put; without them these tests are skipped, saying so.

MODELS = Path(os.environ.get("KINESTREAM_LAB_MODELS", Path.home() / ".cache" / "kinestream" / "lab-models"))
OPENCAP_MARKERS = MODELS / "LaiUhlrich2022_markers_augmenter.xml"
LAB_MODELS = {
    "lai_uhlrich": (MODELS / "LaiUhlrich2022.osim", OPENCAP_MARKERS, MODELS / "opencap_Setup_IK.xml"),
    "gait2354": (MODELS / "gait2354_subject01.osim", None, MODELS / "gait2354_Setup_IK.xml"),
    "rajagopal": (MODELS / "Rajagopal2016.osim", OPENCAP_MARKERS, MODELS / "opencap_Setup_IK.xml"),
    "lai_arnold": (
        MODELS / "LaiArnoldModified2017_poly_withArms_weldHand.osim",
        OPENCAP_MARKERS,
        MODELS / "opencap_Setup_IK.xml",
    ),
}


def lab_trial(key: str, move: str, fs: float = 30.0):
    """A lab model, its own IK setup (coordinate tasks on) and a motion of it: markers by forward kinematics,
    each off its place by a fixed 10 mm (per axis, seeded) and 3 mm of noise, as augmented markers are."""
    path, marker_set, setup_path = LAB_MODELS[key]
    if not path.is_file():
        pytest.skip(f"{path.name} is not in {MODELS}: see scripts/bench_fastik_models.py for the lab models")
    model, _ = solve.load_model(path, marker_set)
    setup = solve.read_ik_setup(setup_path, coordinate_tasks=True)
    names = [n for n in setup.marker_weights if model.getMarkerSet().contains(n)]
    _, table = drive_model(model, names, move, seconds=2.0, fs=fs, seed=1)
    return model, setup, names, table


@pytest.mark.parametrize("move", ["walk", "squat", "jump"])
@pytest.mark.parametrize("key", ["lai_uhlrich", "gait2354", "rajagopal"])
def test_fast_reaches_the_minimum_on_lab_models(key, move):
    """The promise on OpenCap's LaiUhlrich2022, OpenSim's Gait2354 and Rajagopal2016: a cost at or below
    OpenSim's solver's (the same objective evaluated alike at both answers) on 99% of frames and never above
    it by more than 0.1%, and angles within 0.05 deg of the converged minimum. At 30 Hz the jump's take-off
    and landing move the pelvis up to 8 cm and the knees up to 28 deg a frame: each frame starts from the one
    before."""
    model, setup, names, table = lab_trial(key, move)
    fast = solve.solve_trial(model, table, setup, solver="fast")
    assert not fast.notes, fast.notes
    opensim = solve.solve_trial(model, table, setup, solver="opensim")
    result = ikcheck.check(model, setup, names, table.xyz, fast.motion, opensim.motion)
    print(f"\n{key} {move}: {ikcheck.summary(result)}")
    ratio = result["cost"] / result["reference_cost"]
    assert np.mean(ratio <= 1.0) >= 0.99
    assert ratio.max() <= 1.001
    assert result["off"].max() < 0.05


def test_a_shoulder_in_gimbal_lock_on_its_bound_gets_opensims_solver():
    """LaiArnoldModified2017's shoulder (plane of elevation, elevation, axial rotation) degenerates at elevation
    0, its bound: the fast solver refuses the model and OpenSim's solves it, with the note."""
    model, setup, names, table = lab_trial("lai_arnold", "walk")
    with pytest.raises(SolverError, match="glenohumeral_r") as info:  # the joint is named only in the message
        FastIK(model, setup, names)
    assert (info.value.key, info.value.given, info.value.valid) == ("ik.solver", "sh_elev_r", "opensim")
    result = solve.solve_trial(model, table.frames(0, 5), setup, solver="fast")
    assert "OpenSim's IK solver instead" in result.notes[0] and "gimbal lock" in result.notes[0]
    assert np.isfinite(result.motion.get("sh_elev_r")).all()
