"""Orientation: a Z-up or turned trial, told so (--up, --rotate, [ingest]), gives the angles of its Y-up twin,
offline and live. Real augmenter, real OpenSim, the real command."""

from __future__ import annotations

import contextlib
import io
from dataclasses import replace

import numpy as np
import pytest

from kinestream.commands.main import main
from kinestream.config import DEFAULTS
from kinestream.errors import SettingsError
from kinestream.files.mot import Motion, read_mot
from kinestream.files.trc import read_trc, write_trc
from kinestream.ingest import orientation, rotation_matrix
from kinestream.live.protocol import FrameDecoder, encode_keypoints
from kinestream.offline import process
from kinestream.pipeline import FrameProcessor
from kinestream.settings import IngestSettings, Settings, load_settings
from kinestream.synth import synthesize

TOLERANCE_DEG = 1e-6


def run(*argv) -> tuple[int, str, str]:
    """The kinestream command in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def assert_same_angles(got: Motion, want: Motion) -> None:
    assert got.names == want.names and got.values.shape == want.values.shape
    np.testing.assert_array_equal(got.time, want.time)
    assert np.isfinite(want.get("knee_angle_r")).all()
    worst = np.nanmax(np.abs(got.values - want.values))
    assert worst < TOLERANCE_DEG, f"angles differ by up to {worst:g}"


# ---------------------------------------------------------------------------------------------- the matrix --


def test_z_up_turns_to_y_up_right_handed_and_exactly():
    turn = orientation("z")
    np.testing.assert_array_equal(turn @ [0, 0, 1], [0, 1, 0])  # up stays up
    np.testing.assert_array_equal(turn @ [1, 0, 0], [1, 0, 0])  # x stays
    np.testing.assert_array_equal(turn @ [0, 1, 0], [0, 0, -1])  # new z = -old y
    assert np.linalg.det(turn) == 1.0 and set(np.unique(turn)) <= {-1.0, 0.0, 1.0}  # a rotation, no rounding
    assert orientation("y") is None and orientation("Y", "") is None and orientation("y", "y:90,y:-90") is None
    # the turns of rotate come after up, in the order given, about the model's axes
    np.testing.assert_array_equal(
        orientation("z", "y:90,x:180"), rotation_matrix("x", 180) @ rotation_matrix("y", 90) @ turn
    )
    np.testing.assert_array_equal(rotation_matrix("y", 90) @ [0, 0, 1], [1, 0, 0])
    from scipy.spatial.transform import Rotation

    for axis in "xyz":
        for degrees in (-90, 30, 90, 180, 270, 12.5):
            want = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
            np.testing.assert_allclose(rotation_matrix(axis, degrees), want, atol=1e-15)


@pytest.mark.parametrize(
    "up,rotate,key,given",
    [
        ("x", "", "ingest.up", "x"),
        ("y", "w:90", "ingest.rotate", "w:90"),
        ("y", "y:ninety", "ingest.rotate", "y:ninety"),
        ("y", "y:nan", "ingest.rotate", "y:nan"),
        ("y", "y90", "ingest.rotate", "y90"),
        ("y", "y:90,", "ingest.rotate", "y:90,"),
    ],
)
def test_bad_orientations_are_one_clear_line(up, rotate, key, given):
    with pytest.raises(SettingsError) as caught:
        orientation(up, rotate)
    assert (caught.value.key, caught.value.given) == (key, given)
    assert "\n" not in str(caught.value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_config({"ingest": {"up": up, "rotate": rotate}})
    assert (caught.value.key, caught.value.given) == (key, given)


def test_ingest_settings_come_from_default_toml_and_are_checked(tmp_path):
    assert DEFAULTS["ingest"] == {"up": "y", "rotate": ""}
    assert IngestSettings() == Settings().ingest == load_settings().ingest == Settings.from_config({}).ingest
    assert Settings.from_config({"ingest": {"up": "z"}}).ingest.describe() == (
        "keypoints turned Z-up to Y-up (-90 deg about x)"
    )
    mine = tmp_path / "mine.toml"
    mine.write_text('[ingest]\nup = "x"\n')
    with pytest.raises(SettingsError) as info:
        load_settings(mine)
    assert (info.value.key, info.value.given, info.value.valid) == ("ingest.up", "x", ["y", "z"])
    with pytest.raises(SettingsError) as info:
        Settings.from_config({"ingest": {"upp": "z"}})
    assert (info.value.key, info.value.given) == ("ingest.upp", "upp")
    status, _, stderr = run("process", tmp_path / "absent.trc", "--rotate", "q:1")
    assert status == 2 and stderr.count("\n") == 1 and "axis 'q' is not one of x, y, z" in stderr


# ------------------------------------------------------------------------------------------------- offline --


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """A squat trial with noise and gaps, Y-up; the same keypoints Z-up; and turned 90 deg about y."""
    root = tmp_path_factory.mktemp("orientation")
    syn = synthesize(root / "syn", seconds=5, noise_mm=3.0, gaps=2, seed=4)
    table = read_trc(syn.keypoints_trc)
    x, y, z = np.moveaxis(table.xyz, 2, 0)
    # Written out by hand, not with the code under test: Z-up has the old y as z, and -z as y; a right-handed
    # turn of 90 deg about y takes z to x and x to -z.
    z_up = write_trc(root / "z_up.trc", replace(table, xyz=np.stack([x, -z, y], axis=2)))
    turned = write_trc(root / "turned.trc", replace(table, xyz=np.stack([z, y, -x], axis=2)))
    options = root / "options.toml"
    options.write_text("[output]\nplot = false\n")
    return syn, z_up, turned, options


@pytest.fixture(scope="module")
def y_up_angles(trials, assets, tmp_path_factory):
    syn, _, _, options = trials
    out = tmp_path_factory.mktemp("y_up")
    status, _, stderr = run("process", syn.keypoints_trc, "--out", out, "--config", options)
    assert status == 0, stderr
    return read_mot(out / "keypoints.mot")


def test_a_z_up_trial_with_up_z_gives_the_y_up_angles(trials, y_up_angles, tmp_path):
    syn, z_up, _, options = trials
    assert not np.allclose(read_trc(z_up).xyz, syn.keypoints.xyz, equal_nan=True)  # it is Z-up indeed
    status, _, stderr = run("process", z_up, "--up", "z", "--out", tmp_path, "--config", options)
    assert status == 0, stderr
    assert_same_angles(read_mot(tmp_path / "z_up.mot"), y_up_angles)


def test_rotate_undoes_a_turned_trial(trials, y_up_angles, tmp_path):
    _, _, turned, options = trials
    status, stdout, stderr = run("process", turned, "--rotate", "y:-90", "--out", tmp_path, "--config", options)
    assert status == 0, stderr
    assert "keypoints turned -90 deg about y" in stdout
    assert_same_angles(read_mot(tmp_path / "turned.mot"), y_up_angles)


def test_augment_with_up_z_writes_the_y_up_markers(trials, assets, tmp_path):
    syn, z_up, _, _ = trials
    plain, turned = tmp_path / "plain.trc", tmp_path / "turned.trc"
    assert run("augment", syn.keypoints_trc, "--out", plain)[0] == 0
    status, _, stderr = run("augment", z_up, "--up", "z", "--out", turned)
    assert status == 0 and "keypoints turned Z-up to Y-up" in stderr
    want, got = read_trc(plain), read_trc(turned)
    assert got.names == want.names and "r_knee_study" in got.names
    np.testing.assert_allclose(got.xyz, want.xyz, rtol=0, atol=1e-12, equal_nan=True)


def test_a_z_up_static_trial_streaming_is_turned_once(trials, assets, tmp_path):
    """``process --streaming`` hands the keypoints to the live cores, which turn them by [ingest] themselves; the
    static trial is turned on reading and averaged into a still pose. Turned twice (or not at all), either would put
    the angles far off."""
    syn, z_up, _, _ = trials
    y_settings = load_settings()
    z_settings = y_settings.override({"ingest": {"up": "z"}})
    common = dict(plot=False, streaming=True)
    got = process(z_up, syn.mass, syn.height, tmp_path / "z", z_settings, static_trial=z_up, **common)
    same = process(syn.keypoints_trc, syn.mass, syn.height, tmp_path / "ys", y_settings, static_trial=syn.keypoints_trc,
                   **common)  # fmt: skip
    assert_same_angles(got.motion, same.motion)


# ---------------------------------------------------------------------------------------------------- live --


def live_frames(table, settings, trial, assets) -> np.ndarray:
    """``table`` sent over the wire format frame by frame into the service's FrameProcessor: every frame's
    cleaned keypoints and markers."""
    decoder = FrameDecoder()
    processor = FrameProcessor(assets, settings, trial.height, trial.mass, table.rate)
    outs = []
    for k in range(table.n_frames):
        frame = decoder.decode(encode_keypoints(k, table.time[k], table.xyz[k], names=table.names))
        out = processor.step(frame.names, frame.xyz, frame.t).prepared
        outs += [out] if out is not None else []
    outs += [taken.prepared for taken in processor.flush() if taken.prepared is not None]
    assert len(outs) == table.n_frames
    return np.stack([np.vstack([o.keypoints, o.markers]) for o in outs])


def test_the_live_service_with_up_z_gives_what_y_up_input_gives(trials, assets):
    syn, z_up, turned, _ = trials
    want = live_frames(read_trc(syn.keypoints_trc), load_settings(), syn, assets)
    settings = load_settings()
    got = live_frames(read_trc(z_up), settings.override({"ingest": {"up": "z", "rotate": ""}}), syn, assets)
    assert np.isfinite(want).all()
    np.testing.assert_array_equal(got, want)
    turned_back = settings.override({"ingest": {"up": "y", "rotate": "y:-90"}})
    np.testing.assert_array_equal(live_frames(read_trc(turned), turned_back, syn, assets), want)
