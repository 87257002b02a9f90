"""The augment stage against a direct re-computation of OpenCap's normalisation."""

import numpy as np
import onnxruntime as ort
import pytest

from conftest import real_trial
from kinestream.augment import LOWER_FEATURES, LOWER_MARKERS, UPPER_FEATURES, UPPER_MARKERS, Augmenter, augment_table
from kinestream.errors import SettingsError
from kinestream.files.trc import read_trc
from kinestream.ingest import complete_keypoints


def reference_augment(table, height, mass, model_dir, features, markers):
    """OpenCap's recipe written out step by step on flat (frames, 3k) columns."""
    cols = np.hstack([table.get(n) for n in features])  # x1 y1 z1 x2 ...
    hip = table.get("MidHip")
    x = cols - np.tile(hip, (1, len(features)))
    x = x / height
    x = np.concatenate([x, height * np.ones((len(x), 1)), mass * np.ones((len(x), 1))], axis=1)
    x = (x - np.load(model_dir / "mean.npy")) / np.load(model_dir / "std.npy")
    sess = ort.InferenceSession(str(model_dir / "model.onnx"))
    y = sess.run(["output_0"], {"inputs": x[None].astype(np.float32)})[0][0]
    y = y * height + np.tile(hip, (1, len(markers)))
    return y.reshape(len(y), len(markers), 3)


def test_augment_matches_reference_normalisation(assets):
    table = complete_keypoints(read_trc(real_trial("drop_vertical_jump.trc")))
    height, mass = 1.68, 63.0
    out, report = augment_table(table, Augmenter.from_assets(assets), height, mass)
    assert report.frames_missing == 0
    for d, feats, names in (
        (assets.lower_dir, LOWER_FEATURES, LOWER_MARKERS),
        (assets.upper_dir, UPPER_FEATURES, UPPER_MARKERS),
    ):
        ref = reference_augment(table, height, mass, d, feats, names)
        ours = out.select(names).xyz
        assert np.max(np.abs(ours - ref)) < 1e-5
    # the markers land on the body: lateral knee marker within 8 cm of the knee keypoint
    dist = np.linalg.norm(out.get("r_knee_study") - out.get("RKnee"), axis=1)
    assert np.median(dist) < 0.08


def test_missing_keypoints_split_the_trial_and_floor_offset(assets):
    table = complete_keypoints(read_trc(real_trial("sit_to_stand.trc"))).frames(0, 200)
    table.xyz[100:103, table.index("RKnee")] = np.nan
    aug = Augmenter.from_assets(assets)
    out, report = augment_table(table, aug, 1.7, 70.0, apply_floor_offset=True)
    assert report.frames_missing == 3 and report.segments == 2
    markers = out.select(aug.markers).xyz
    assert np.isnan(markers[100:103, :35]).all()  # lower body missing where RKnee is
    assert np.isfinite(markers[100:103, 35:]).all()  # upper body does not read RKnee
    assert np.nanmin(out.xyz[..., 1]) == pytest.approx(0.01, abs=1e-9)
    assert "floor offset" in report.describe()
    # the second segment starts from a fresh state: equal to augmenting it alone
    alone, _ = augment_table(table.frames(103, 200), aug, 1.7, 70.0)
    np.testing.assert_allclose(
        out.select(aug.markers).xyz[103:, :35] - report.floor_offset_m * np.array([0, 1, 0]),
        alone.select(aug.markers).xyz[:, :35],
        atol=1e-6,
    )


@pytest.mark.parametrize("height,mass,key", [(1.7, -5.0, "mass"), (0.0, 70.0, "height"), (170.0, 70.0, "height")])
def test_bad_subject(assets, height, mass, key):
    table = complete_keypoints(read_trc(real_trial("sit_to_stand.trc"))).frames(0, 10)
    with pytest.raises(SettingsError) as info:
        augment_table(table, Augmenter.from_assets(assets), height, mass)
    assert (info.value.key, info.value.given) == (f"subject.{key}", mass if key == "mass" else height)
