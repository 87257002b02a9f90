"""IK against forward-kinematics ground truth, with real OpenSim."""

import numpy as np
import pytest

from kinestream import solve
from kinestream.osim import opensim_module


@pytest.fixture(scope="module")
def squat(synth_trial):
    return synth_trial(seconds=8.0)


@pytest.fixture(scope="module")
def ik_on_truth(squat, assets):
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    return solve.solve_trial(model, squat.markers, solve.read_ik_setup(assets.ik_setup))


def _rms(a, b):
    return float(np.sqrt(np.nanmean((a - b) ** 2)))


def test_ik_on_true_markers_recovers_true_angles(squat, ik_on_truth):
    got, truth = ik_on_truth.motion, squat.motion
    for side in "rl":
        assert _rms(got.get(f"hip_flexion_{side}"), truth.get(f"hip_flexion_{side}")) < 1.0
        assert _rms(got.get(f"knee_angle_{side}"), truth.get(f"knee_angle_{side}")) < 0.5
        assert _rms(got.get(f"ankle_angle_{side}"), truth.get(f"ankle_angle_{side}")) < 1.0
    for axis in ("tx", "ty", "tz"):
        assert _rms(got.get(f"pelvis_{axis}"), truth.get(f"pelvis_{axis}")) < 0.005
    assert np.nanmean(ik_on_truth.rmse_mm) < 2.0
    # the squats are really there: the solved knee reaches the true depth
    assert np.nanmax(got.get("knee_angle_r")) == pytest.approx(np.max(truth.get("knee_angle_r")), abs=1.0)


def test_lumbar_coordinate_task_biases_hip_flexion(squat, assets, ik_on_truth):
    """Why coordinate tasks are off by default: the setup's L5_S1 pull tilts the pelvis."""
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    setup = solve.read_ik_setup(assets.ik_setup, coordinate_tasks=True)
    assert "L5_S1_Flex_Ext" in setup.coordinate_tasks
    with_task = solve.solve_trial(model, squat.markers.frames(0, 400), setup).motion
    truth = squat.motion.get("hip_flexion_r")[:400]
    assert np.max(np.abs(with_task.get("hip_flexion_r") - truth)) > 5.0
    assert np.max(np.abs(ik_on_truth.motion.get("hip_flexion_r")[:400] - truth)) < 2.0


def test_missing_markers_are_left_out_of_the_fit(squat, assets, ik_on_truth):
    markers = squat.markers.frames(0, 300)
    markers.xyz[150:160, markers.index("r_knee_study")] = np.nan
    markers.xyz[200, :] = np.nan  # a frame with nothing: no answer, no exception
    model, _ = solve.load_model(assets.generic_model, assets.marker_set)
    got = solve.solve_trial(model, markers, solve.read_ik_setup(assets.ik_setup)).motion
    ref = ik_on_truth.motion
    knee = got.get("knee_angle_r")
    assert np.nanmax(np.abs(knee[150:160] - ref.get("knee_angle_r")[150:160])) < 1.0
    assert np.isfinite(knee[201:]).all()


def _opencap_like(assets, path):
    """Test double for an OpenCap model (LaiUhlrich2022 is not on PyPI, so it cannot be fetched here):
    the generic model plus patellae on pin joints whose angle a CoordinateCouplerConstraint ties to the
    knee angle, as OpenCap's models do, and a marker on each patella."""
    osim = opensim_module()
    model = osim.Model(str(assets.generic_model))
    solve.attach_markers(model, assets.marker_set)  # OpenCap models carry the _study markers, malleoli on the ankle
    for side in "rl":
        femur = model.getBodySet().get(f"femur_{side}")
        patella = osim.Body(f"patella_{side}", 0.01, osim.Vec3(0), osim.Inertia(1e-5))
        joint = osim.PinJoint(
            f"patellofemoral_{side}", femur, osim.Vec3(0.05, -0.4, 0), osim.Vec3(0), patella, osim.Vec3(0), osim.Vec3(0)
        )
        joint.upd_coordinates(0).setName(f"knee_angle_{side}_beta")
        model.addBody(patella)
        model.addJoint(joint)
        coupler = osim.CoordinateCouplerConstraint()
        coupler.setName(f"patellofemoral_knee_angle_{side}_con")
        names = osim.ArrayStr()
        names.append(f"knee_angle_{side}")
        coupler.setIndependentCoordinateNames(names)
        coupler.setDependentCoordinateName(f"knee_angle_{side}_beta")
        coupler.setFunction(osim.LinearFunction(0.5, 0.0))
        model.addConstraint(coupler)
        model.addMarker(osim.Marker(f"patella_{side}_marker", patella, osim.Vec3(0.02, 0, 0)))
    model.finalizeConnections()
    model.printToXML(str(path))
    return path


def test_opencap_style_model_loses_patellae_not_accuracy(squat, assets, ik_on_truth, tmp_path):
    path = _opencap_like(assets, tmp_path / "opencap_like.osim")
    model, removed = solve.load_model(path, assets.marker_set)
    text = " ".join(removed)
    for part in (
        "body patella_r",
        "body patella_l",
        "joint patellofemoral_r",
        "constraint patellofemoral_knee_angle_l_con",
    ):
        assert part in text
    assert model.getConstraintSet().getSize() == 0
    assert "knee_angle_r_beta" not in solve.coordinate_names(model)
    got = solve.solve_trial(model, squat.markers.frames(0, 200), solve.read_ik_setup(assets.ik_setup)).motion
    ref = ik_on_truth.motion
    assert np.max(np.abs(got.get("knee_angle_r") - ref.get("knee_angle_r")[:200])) < 1e-3
