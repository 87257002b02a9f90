"""Static trials of any length from one frame: averaged into one still pose, outliers refused; real augmenter, real
OpenSim, the real command (Pose2Sim's demo keeps a 13-frame static trial, written in BODY_25B)."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

from kinestream.augment import MODEL_RATE
from kinestream.commands.main import main
from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.ingest import LAYOUTS
from kinestream.static import HOLD_S, OUTLIER_MM, still_pose
from kinestream.synth import synthesize

RATE = 30.0  # Hz, as Pose2Sim's demo
SHORT = 13  # frames in Pose2Sim's demo static trial


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def pose_table(n: int, noise_mm: float = 0.0, seed: int = 0) -> tuple[MarkerTable, np.ndarray]:
    """``n`` frames of one made-up pose of 25 keypoints with noise; and the pose."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(-0.5, 0.5, (25, 3)) + [0.0, 1.0, 0.0]
    xyz = pose + rng.normal(0.0, noise_mm / 1000.0, (n, 25, 3))
    return MarkerTable([f"k{i}" for i in range(25)], xyz, np.arange(n) / RATE + 2.0, RATE), pose


# ------------------------------------------------------------------------------------------------ the core --


def test_one_frame_is_the_pose_held_on_the_augmenters_grid():
    table, pose = pose_table(1)
    still = still_pose(table)
    assert still.frames == 1 and still.refused == 0 and still.observations == 25
    assert still.table.rate == MODEL_RATE and still.table.n_frames == round(HOLD_S * MODEL_RATE)
    np.testing.assert_allclose(still.table.time[:2], [2.0, 2.0 + 1 / MODEL_RATE])
    np.testing.assert_array_equal(still.table.xyz, np.repeat(table.xyz, still.table.n_frames, axis=0))
    start, end = still.scale_window
    assert end == pytest.approx(still.table.time[-1]) and end - start == pytest.approx(1.0)


def test_frames_are_averaged_and_outliers_refused():
    """Noise averages out; a keypoint that jumps (a swapped limb) in two of 13 frames is refused, not averaged in:
    averaged in, it would move 15 cm / 13 = 12 mm."""
    table, pose = pose_table(SHORT, noise_mm=3.0, seed=1)
    table.xyz[4, 7] += [0.15, 0.0, 0.0]
    table.xyz[9, 7] += [0.0, -0.15, 0.0]
    table.xyz[2, 3] = np.nan  # a frame without that keypoint
    still = still_pose(table)
    assert still.refused == 2 and still.observations == 25 * SHORT - 1
    err = np.linalg.norm(still.table.xyz[0] - pose, axis=1)
    assert err.max() < 0.005  # 3 mm noise a coordinate, averaged over 11-13 frames: 1.4 mm RMS, 3.1 mm at worst
    assert "2 of 324 keypoint observations farther than 30 mm" in still.describe()
    assert OUTLIER_MM == 30.0


def test_a_keypoint_never_seen_stays_missing_and_empty_trials_are_refused():
    table, _ = pose_table(3)
    table.xyz[:, 5] = np.nan
    still = still_pose(table)
    assert np.isnan(still.table.xyz[:, 5]).all() and np.isfinite(still.table.xyz[:, 6]).all()
    with pytest.raises(InputError) as info:
        still_pose(table.frames(0, 0))
    assert (info.value.given, info.value.valid) == (0, "at least one frame")
    table.xyz[:] = np.nan
    with pytest.raises(InputError) as info:
        still_pose(table)
    assert info.value.given == 3  # frames, none with data
    with pytest.raises(SettingsError) as info:
        still_pose(pose_table(1)[0], outlier_mm=-1)
    assert (info.value.key, info.value.given) == ("outlier_mm", -1)


# ------------------------------------------------------------------------------------- through the command --


def body_25b(table: MarkerTable) -> MarkerTable:
    """The keypoints BODY_25B has (no MidHip, no Neck: derived on reading), as Pose2Sim writes its demo."""
    return table.select([n for n in LAYOUTS["BODY_25B"] if n in table.names])


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """A noisy synth trial (standing 0-2.5 s, then squats) and static trials cut from its standing phase: 13
    frames, one frame, and 2 s (the reference), in BODY_25B."""
    root = tmp_path_factory.mktemp("static")
    syn = synthesize(root / "syn", seconds=5, noise_mm=2.0, seed=3)
    keypoints = body_25b(read_trc(syn.keypoints_trc))
    statics = {
        "short": write_trc(root / "static_13.trc", keypoints.frames(30, 30 + SHORT)),
        "one": write_trc(root / "static_1.trc", keypoints.frames(40, 41)),
        "long": write_trc(root / "static_long.trc", keypoints.frames(15, 135)),
    }
    return syn, statics, root


def scale_factors(stderr: str) -> np.ndarray:
    line = next(x for x in stderr.splitlines() if x.startswith("scale factors:"))
    return np.array([float(v) for v in line.replace("(", " ").replace(")", " ").replace(",", " ").split()
                     if v.replace(".", "").isdigit()])  # fmt: skip


@pytest.fixture(scope="module")
def processed(trials, assets):
    syn, statics, root = trials
    out = {}
    for name, static in statics.items():
        status, stdout, stderr = run(
            "process", syn.keypoints_trc, "--static-trial", static, "--mass", syn.mass, "--height", syn.height,
            "--out", root / f"out_{name}",
        )  # fmt: skip
        assert status == 0, stderr
        out[name] = stdout + stderr
    return out


def test_a_13_frame_and_a_1_frame_static_trial_scale_as_a_long_one(processed):
    """Scaling from 13 frames lands within 1% of scaling from 2 s of the same standing, and from one frame within
    2.5%: the keypoints carry 2 mm of noise, which one frame cannot average out (1.5% of the pelvis width measured)."""
    want = scale_factors(processed["long"])
    assert want.size >= 12
    for name, rtol in (("short", 0.01), ("one", 0.025)):
        got = scale_factors(processed[name])
        np.testing.assert_allclose(got, want, rtol=rtol, err_msg=name)
    assert f"{SHORT} frames averaged into one still pose" in processed["short"]
    assert "1 frame averaged into one still pose" in processed["one"]


def test_a_pose2sim_folder_with_a_13_frame_static_trial(trials, assets):
    syn, statics, root = trials
    folder = root / "Demo" / "pose-3d"
    folder.mkdir(parents=True)
    shutil.copy(statics["short"], folder / "Demo_static_0-12.trc")
    shutil.copy(syn.keypoints_trc, folder / "Demo_balancing_0-299.trc")
    status, stdout, stderr = run(
        "process", folder.parent, "--mass", syn.mass, "--height", syn.height, "--out", root / "demo_out"
    )
    assert status == 0, stderr
    assert (root / "demo_out" / "Demo" / "Demo_balancing_0-299" / "Demo_balancing_0-299.mot").is_file()
    assert "13 frames averaged into one still pose" in stdout + stderr


def test_a_bad_static_trial_is_named_in_the_error(trials, assets):
    """The error names the static trial, not the movement trial."""
    syn, statics, root = trials
    empty = read_trc(statics["short"])
    empty.xyz[:] = np.nan
    bad = write_trc(root / "static_empty.trc", empty)
    status, _, stderr = run("process", syn.keypoints_trc, "--static-trial", bad, "--out", root / "bad")
    assert status != 0
    assert stderr.startswith(f"kinestream: error: static trial {bad}: no keypoint has data"), stderr
    assert stderr.count("\n") == 1 and syn.keypoints_trc.name not in stderr
    # A window outside the static trial's frames is its error too.
    status, _, stderr = run(
        "process", syn.keypoints_trc, "--static-trial", statics["short"], "--static", "9:10", "--out", root / "bad"
    )
    assert status != 0
    assert stderr.startswith(f"kinestream: error: static trial {statics['short']}: static range 9-10 s holds none"), (
        stderr
    )
