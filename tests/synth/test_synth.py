"""The ground-truth generator: files agree with the model, feet stay down, truth is what it says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinestream.errors import SettingsError
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.osim import opensim_module
from kinestream.synth import HALF_SQUAT_DEG, SQUAT_S, STAND_S, synthesize, truth_model

FS = 60.0


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """The default trial: 12 s at 60 Hz, scale 1, clean keypoints."""
    return synthesize(tmp_path_factory.mktemp("synth_default"))


@pytest.fixture(scope="module")
def tall(synth_trial):
    return synth_trial(seconds=5.0, scale=1.1)


@pytest.fixture(scope="module")
def noisy(synth_trial):
    return synth_trial(seconds=8.0, noise_mm=10.0, gaps=12, seed=7)


@pytest.fixture(scope="module")
def varied(synth_trial):
    """Chosen depths (a deep squat, a half squat, a shallow one) and pauses, no sway."""
    return synth_trial(seconds=11.5, depths=[130, 45, 80], pauses=[1.0, 0.5])


@pytest.fixture(scope="module")
def sway(synth_trial):
    return synth_trial(seconds=11.0, depths=[100], sway_deg=10.0)


@pytest.fixture(scope="module")
def model1():
    model, state, _, _ = truth_model(1.0)
    return model, state


def _pose(model, state, motion, frame):
    """Set every coordinate from a motion read back from disk (degrees -> radians)."""
    coords = model.getCoordinateSet()
    for j, name in enumerate(motion.names):
        c = coords.get(name)
        value = motion.values[frame, j]
        c.setValue(state, math.radians(value) if c.getMotionType() == 1 else value, False)
    model.realizePosition(state)


def _locations(model, state, names):
    markers = model.getMarkerSet()
    return np.array([markers.get(n).getLocationInGround(state).to_numpy() for n in names])


def test_layout_of_the_default_trial(trial):
    assert trial.keypoints.n_frames == trial.markers.n_frames == len(trial.motion.time) == 720
    assert np.allclose(np.diff(trial.motion.time), 1 / FS)
    assert len(trial.markers.names) == 43 and all(n.endswith("_study") for n in trial.markers.names)
    assert trial.keypoints.names == [
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
        "LBigToe",
        "LSmallToe",
        "LHeel",
        "RBigToe",
        "RSmallToe",
        "RHeel",
    ]
    assert len(trial.motion.names) == 40 and "knee_angle_r" in trial.motion.names
    assert len(trial.squats) == 3
    for path, name in (
        (trial.keypoints_trc, "keypoints.trc"),
        (trial.markers_trc, "markers.trc"),
        (trial.coords_mot, "coords.mot"),
    ):
        assert path.name == name and path.is_file()
    # No noise asked: the written keypoints are the truth and complete.
    assert np.array_equal(trial.keypoints.xyz, trial.keypoints_true.xyz)
    assert not np.isnan(trial.keypoints.xyz).any()


def test_reposing_the_written_coordinates_reproduces_the_written_markers(trial, model1):
    model, state = model1
    motion = read_mot(trial.coords_mot)
    assert motion.in_degrees
    markers = read_trc(trial.markers_trc)
    keypoints = read_trc(trial.keypoints_trc)
    assert markers.names == trial.markers.names and keypoints.names == trial.keypoints.names
    for frame in (0, 149, 222, 300, 408, 594, 719):
        _pose(model, state, motion, frame)
        assert np.abs(_locations(model, state, markers.names) - markers.xyz[frame]).max() < 1e-6
        assert np.abs(_locations(model, state, keypoints.names) - keypoints.xyz[frame]).max() < 1e-6
        assert np.abs(_locations(model, state, markers.names) - trial.markers.xyz[frame]).max() < 1e-6


def test_feet_stay_planted_on_the_floor(trial):
    for name in ("r_calc_study", "L_calc_study", "r_toe_study", "L_5meta_study"):
        path = trial.markers.get(name)
        assert np.linalg.norm(path - path[0], axis=1).max() < 1e-3, name
    for name in ("RHeel", "LHeel", "RBigToe", "LSmallToe"):
        path = trial.keypoints_true.get(name)
        assert np.linalg.norm(path - path[0], axis=1).max() < 1e-3, name
    # ...while the body really squats: the pelvis drops by more than 30 cm.
    assert np.ptp(trial.motion.get("pelvis_ty")) > 0.3
    assert np.ptp(trial.keypoints_true.get("MidHip")[:, 1]) > 0.3
    # The lowest foot marker is 1 to 2 cm above the floor (Y up).
    foot = [n for n in trial.markers.names if any(k in n for k in ("calc", "toe", "5meta"))]
    lowest = min(trial.markers.get(n)[:, 1].min() for n in foot)
    lowest = min(
        lowest,
        *(
            trial.keypoints_true.get(n)[:, 1].min()
            for n in ("RHeel", "LHeel", "RBigToe", "LBigToe", "RSmallToe", "LSmallToe")
        ),
    )
    assert 0.01 <= lowest <= 0.02


def test_standing_window_is_still(trial):
    start, end = trial.standing
    assert start == 0.0 and end - start >= 2.0
    still = (trial.markers.time >= start) & (trial.markers.time <= end)
    assert still.sum() >= 2 * FS
    for table in (trial.markers, trial.keypoints_true):
        block = table.xyz[still]
        assert np.abs(block - block[0]).max() < 1e-4
    coords = trial.motion.values[still]
    assert np.abs(coords - coords[0]).max() < 1e-9
    # The first squat starts right after: 0.5 s later the knees have moved.
    after = np.searchsorted(trial.motion.time, end + 0.5)
    assert trial.motion.get("knee_angle_r")[after] - trial.motion.get("knee_angle_r")[0] > 10


def test_squat_truth_matches_the_motion(trial):
    motion = read_mot(trial.coords_mot)
    t = motion.time
    for squat in trial.squats:
        assert squat.end - squat.start == pytest.approx(SQUAT_S)
        assert squat.start < squat.bottom < squat.end
        inside = (t >= squat.start - 1e-9) & (t <= squat.end + 1e-9)
        for name in ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l"):
            assert motion.get(name)[inside].max() == pytest.approx(getattr(squat, name), abs=1e-6), name
        # The deepest frame is at the reported bottom.
        deepest = t[inside][np.argmax(motion.get("knee_angle_r")[inside])]
        assert abs(deepest - squat.bottom) <= 2 / FS
        assert 95 <= squat.knee_angle_r <= 115 and 95 <= squat.knee_angle_l <= 115
        assert 85 <= squat.hip_flexion_r <= 105 and 85 <= squat.hip_flexion_l <= 105
        assert 1.0 < squat.knee_angle_r - squat.knee_angle_l < 6.0  # small asymmetry
        ankle = motion.get("ankle_angle_r")[inside].max()
        assert 20 <= ankle <= 32
    knees = [s.knee_angle_r for s in trial.squats]
    assert max(knees) - min(knees) > 5  # depth varies from squat to squat
    assert trial.squats[0].knee_angle_r == pytest.approx(105, abs=1.0)
    # Trunk leans forward and the arms come forward at the bottom.
    bottom = np.searchsorted(t, trial.squats[0].bottom - 1e-9)
    assert motion.get("pelvis_tilt")[bottom] < -10 and motion.get("L5_S1_Flex_Ext")[bottom] < -10
    assert motion.get("arm_flex_r")[bottom] > 60


def test_motion_is_smooth(trial):
    """No solver jitter, no jumps: third differences stay tiny (degrees, metres per frame^3)."""
    translations = {"pelvis_tx", "pelvis_ty", "pelvis_tz"}
    for name in trial.motion.names:
        jerk = np.abs(np.diff(trial.motion.get(name), 3)).max()
        assert jerk < (1e-4 if name in translations else 0.05), name


def test_all_coordinates_inside_the_model_ranges(trial, model1):
    model, _ = model1
    coords = model.getCoordinateSet()
    for j, name in enumerate(trial.motion.names):
        c = coords.get(name)
        lo, hi = c.getRangeMin(), c.getRangeMax()
        if c.getMotionType() == 1:
            lo, hi = math.degrees(lo), math.degrees(hi)
        values = trial.motion.values[:, j]
        assert lo - 1e-6 <= values.min() and values.max() <= hi + 1e-6, name


def test_subject_size(trial, tall):
    assert 1.6 < trial.height < 1.8
    assert trial.mass == pytest.approx(75.1645, abs=1e-3)
    assert tall.height == pytest.approx(1.1 * trial.height, rel=1e-12)
    assert tall.mass == pytest.approx(1.331 * trial.mass, rel=1e-9)
    # The top of the head is above every marker of the standing subject.
    top = max(trial.markers.xyz[0, :, 1].max(), trial.keypoints_true.xyz[0, :, 1].max())
    floor = trial.markers.get("r_calc_study")[0, 1] - 0.05
    assert top - floor < trial.height + 0.05


def test_scaling_is_uniform(trial, tall):
    def femur(result, side):
        """Hip joint centre to the midpoint of the femoral epicondyles, standing."""
        m, p = result.markers, {"R": "r", "L": "L"}[side]
        knee = 0.5 * (m.get(f"{p}_knee_study")[0] + m.get(f"{p}_mknee_study")[0])
        return np.linalg.norm(m.get(f"{side}HJC_study")[0] - knee)

    for side in "RL":
        ratio = femur(tall, side) / femur(trial, side)
        assert ratio == pytest.approx(1.1, rel=1e-3)
    shank = [
        np.linalg.norm(r.keypoints_true.get("RKnee")[0] - r.keypoints_true.get("RAnkle")[0]) for r in (trial, tall)
    ]
    assert shank[1] / shank[0] == pytest.approx(1.1, rel=1e-3)


def test_noise_has_the_requested_std_and_gaps_are_where_reported(noisy):
    error = noisy.keypoints.xyz - noisy.keypoints_true.xyz
    finite = np.isfinite(error)
    assert abs(np.std(error[finite]) - 0.010) < 0.001
    assert abs(np.mean(error[finite])) < 0.0005
    for axis in range(3):
        assert abs(np.std(error[..., axis][finite[..., axis]]) - 0.010) < 0.001
    # NaN exactly where the gaps say, whole keypoints at a time.
    expected = np.zeros(noisy.keypoints.xyz.shape[:2], dtype=bool)
    first, last = noisy.squats[0].start, noisy.squats[-1].end
    for gap in noisy.gaps:
        assert 2 <= gap.stop - gap.start <= int(0.15 * noisy.fs)
        assert noisy.keypoints.time[gap.start] >= first and noisy.keypoints.time[gap.stop - 1] <= last
        expected[gap.start : gap.stop, noisy.keypoints.index(gap.keypoint)] = True
    assert len(noisy.gaps) == 12
    assert np.array_equal(np.isnan(noisy.keypoints.xyz).any(axis=2), expected)
    assert np.array_equal(np.isnan(noisy.keypoints.xyz).all(axis=2), expected)
    # The same on disk; the truth stays clean.
    on_disk = read_trc(noisy.keypoints_trc)
    assert np.array_equal(np.isnan(on_disk.xyz).any(axis=2), expected)
    assert not np.isnan(noisy.markers.xyz).any() and not np.isnan(noisy.motion.values).any()
    assert not np.isnan(noisy.keypoints_true.xyz).any()


def test_seed_controls_noise_and_gaps_not_the_motion(noisy, tmp_path):
    again = synthesize(tmp_path / "a", seconds=8.0, noise_mm=10.0, gaps=12, seed=7)
    assert np.array_equal(again.keypoints.xyz, noisy.keypoints.xyz, equal_nan=True)
    assert again.gaps == noisy.gaps
    other = synthesize(tmp_path / "b", seconds=8.0, noise_mm=10.0, gaps=12, seed=8)
    assert not np.allclose(other.keypoints.xyz, noisy.keypoints.xyz, equal_nan=True)
    assert other.gaps != noisy.gaps
    assert np.array_equal(other.motion.values, noisy.motion.values)
    assert np.array_equal(other.markers.xyz, noisy.markers.xyz)


def test_opensim_reads_the_files(trial, noisy):
    osim = opensim_module()
    for result in (trial, noisy):
        for path, table in ((result.keypoints_trc, result.keypoints), (result.markers_trc, result.markers)):
            ts = osim.TimeSeriesTableVec3(str(path))
            assert ts.getNumRows() == table.n_frames
            assert list(ts.getColumnLabels()) == table.names
            row = ts.getRowAtIndex(100)
            first = np.array([row[0][k] for k in range(3)])
            assert np.allclose(first, table.xyz[100, 0], atol=1e-6, equal_nan=True)
    mot = osim.TimeSeriesTable(str(trial.coords_mot))
    assert mot.getNumRows() == 720
    assert list(mot.getColumnLabels()) == trial.motion.names
    knee = mot.getDependentColumn("knee_angle_r").to_numpy()
    assert np.allclose(knee, trial.motion.get("knee_angle_r"), atol=1e-6)


def test_chosen_depths_and_pauses(varied):
    assert [s.start for s in varied.squats] == pytest.approx(
        [STAND_S, STAND_S + SQUAT_S + 1.0, STAND_S + 2 * SQUAT_S + 1.5]
    )
    # The right knee peaks where asked (the foot closure moves it by well under a degree), the left 3 % less.
    for squat, depth in zip(varied.squats, (130, 45, 80), strict=True):
        assert squat.knee_angle_r == pytest.approx(depth, abs=1.0)
        assert squat.knee_angle_l == pytest.approx(3 + 0.97 * (depth - 3), abs=1.0)
    assert [s.partial for s in varied.squats] == [False, True, False]
    assert HALF_SQUAT_DEG == 60.0
    # Standing during the pauses: the knees are back at the standing angle between squats.
    t, knee = varied.motion.time, varied.motion.get("knee_angle_r")
    for a, b in zip(varied.squats, varied.squats[1:], strict=False):
        between = (t > a.end + 1e-9) & (t < b.start - 1e-9)
        assert between.sum() >= 25 and np.abs(knee[between] - knee[0]).max() < 0.5
    # The deep squat keeps the feet down and stays in the model's ranges (synthesize checks the ranges).
    for name in ("r_calc_study", "L_toe_study"):
        path = varied.markers.get(name)
        assert np.linalg.norm(path - path[0], axis=1).max() < 1e-3


def test_standing_sway(sway):
    t, m = sway.motion.time, sway.motion
    still = t <= STAND_S
    assert np.abs(m.values[still] - m.values[0]).max() < 1e-9  # the still window for scaling stays still
    after = t > sway.squats[0].end + 0.1  # standing, swaying
    bend = m.get("knee_angle_r")[after] - m.get("knee_angle_r")[0]
    assert 7.0 < bend.max() < 11.0 and bend.min() > -1.0
    assert 2.0 < np.ptp(m.get("pelvis_list")[after]) < 15.0
    for name in ("RHeel", "LBigToe"):
        path = sway.keypoints_true.get(name)
        assert np.linalg.norm(path - path[0], axis=1).max() < 1e-3
    assert not sway.squats[0].partial and sway.squats[0].knee_angle_r > 100.0  # the sway adds to the squat


@pytest.mark.parametrize(
    "kwargs, key, given",
    [
        ({"fs": 0}, "fs", 0),
        ({"fs": -60.0}, "fs", -60.0),
        ({"fs": float("nan")}, "fs", float("nan")),
        ({"seconds": 3.0}, "seconds", 3.0),
        ({"noise_mm": -1.0}, "noise_mm", -1.0),
        ({"scale": 0.0}, "scale", 0.0),
        ({"scale": -1.2}, "scale", -1.2),
        ({"gaps": -2}, "gaps", -2),
        ({"squats": 0}, "squats", 0),
        ({"squats": 9}, "squats", 9),
        ({"seed": -1}, "seed", -1),
        ({"depths": []}, "depths", []),
        ({"depths": [100, 200]}, "depths[1]", 200),
        ({"depths": [100, "deep"]}, "depths[1]", "deep"),
        ({"depths": [100, 100], "squats": 3}, "squats", 3),
        ({"depths": [100] * 5}, "seconds", 12.0),  # five squats do not fit in the default 12 s
        ({"pauses": -1.0}, "pauses", -1.0),
        ({"pauses": [1.0, 1.0], "squats": 2}, "pauses", 2),
        ({"sway_deg": 30}, "sway_deg", 30),
        ({"sway_deg": float("nan")}, "sway_deg", float("nan")),
    ],
)
def test_bad_arguments_are_refused(tmp_path, kwargs, key, given):
    with pytest.raises(SettingsError) as info:
        synthesize(tmp_path / "x", **kwargs)
    assert info.value.key == key
    assert info.value.given == given or (given != given and info.value.given != info.value.given)  # nan
    assert not (tmp_path / "x").exists()
