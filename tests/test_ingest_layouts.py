"""Every keypoint layout end to end: one trial, expressed in each layout, gives BODY_25's angles, offline and live.

The trial is a synthetic squat in BODY_25 names. Expressed in a layout, each of its keypoints goes to the index the
published definition gives it (:data:`PUBLISHED`, read here from OpenPose, MMPose and Pose2Sim independently of
``ingest.LAYOUTS``); every other index (eyes, ears, head, face, hands) holds a made-up point near the nose; what
the layout lacks is dropped (MidHip and Neck in BODY_25B and COCO_133, then derived from the hips and shoulders).
That array is named by ``ingest.LAYOUTS`` (a .trc written with the layout's names; a live frame sent with
``layout`` alone). The reference is the BODY_25 trial holding the same BODY_25 keypoints, so a table that
misplaces or misnames a keypoint the augmenter reads changes the angles.
"""

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest

from kinestream.errors import InputError, ProtocolError
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.ingest import LAYOUTS, REQUIRED, canonical, complete_keypoints, unusable_layout
from kinestream.live.protocol import REASONS, FrameDecoder, Rejected, encode_keypoints
from kinestream.live.service import Service
from kinestream.offline import process, stream_ik
from kinestream.pipeline import FrameProcessor
from kinestream.settings import load_settings

USABLE = ["BODY_25", "BODY_25B", "HALPE_26", "COCO_133"]
COCO_17_LINE = (
    "layout COCO_17 has no LBigToe, LSmallToe, LHeel, RBigToe, RSmallToe, RHeel: the marker augmenter needs "
    "the feet; use BODY_25, BODY_25B, HALPE_26 or COCO_133"
)

# Where the trial's BODY_25 keypoints sit in each layout, by index, as published: BODY_25 in OpenPose's
# poseParameters.cpp; COCO's 17 body points (shared by COCO_17, BODY_25B, HALPE_26, COCO_133) and the feet in
# MMPose's coco, halpe26 and coco_wholebody dataset configs and Pose2Sim's skeleton ids; BODY_25B's feet in
# OpenPose's experimental models. HALPE_26's index 19, "Hip", is the pelvis centre: MidHip.
COCO_BODY = {
    "Nose": 0,
    "LShoulder": 5,
    "RShoulder": 6,
    "LElbow": 7,
    "RElbow": 8,
    "LWrist": 9,
    "RWrist": 10,
    "LHip": 11,
    "RHip": 12,
    "LKnee": 13,
    "RKnee": 14,
    "LAnkle": 15,
    "RAnkle": 16,
}
PUBLISHED = {
    "BODY_25": {
        "Nose": 0,
        "Neck": 1,
        "RShoulder": 2,
        "RElbow": 3,
        "RWrist": 4,
        "LShoulder": 5,
        "LElbow": 6,
        "LWrist": 7,
        "MidHip": 8,
        "RHip": 9,
        "RKnee": 10,
        "RAnkle": 11,
        "LHip": 12,
        "LKnee": 13,
        "LAnkle": 14,
        "LBigToe": 19,
        "LSmallToe": 20,
        "LHeel": 21,
        "RBigToe": 22,
        "RSmallToe": 23,
        "RHeel": 24,
    },
    "BODY_25B": {**COCO_BODY, "LBigToe": 19, "LSmallToe": 20, "LHeel": 21, "RBigToe": 22, "RSmallToe": 23, "RHeel": 24},
    "HALPE_26": {
        **COCO_BODY,
        "Neck": 18,
        "MidHip": 19,
        "LBigToe": 20,
        "RBigToe": 21,
        "LSmallToe": 22,
        "RSmallToe": 23,
        "LHeel": 24,
        "RHeel": 25,
    },
    "COCO_133": {**COCO_BODY, "LBigToe": 17, "LSmallToe": 18, "LHeel": 19, "RBigToe": 20, "RSmallToe": 21, "RHeel": 22},
    "COCO_17": COCO_BODY,
}
SIZE = {"BODY_25": 25, "BODY_25B": 25, "HALPE_26": 26, "COCO_133": 133, "COCO_17": 17}


def quiet(*_):
    """process() logs here: nothing."""


@pytest.fixture(scope="module")
def trial(synth_trial):
    """Five seconds (the shortest synth trial): standing, then one squat; noise and two gaps."""
    return synth_trial(seconds=5.0, noise_mm=2.0, gaps=2, seed=14)


def in_layout(table: MarkerTable, layout: str) -> np.ndarray:
    """(frames, N, 3): the trial's keypoints at their published indices of ``layout``, every other index a
    made-up point a few centimetres from the nose (a different one each)."""
    xyz = np.empty((table.n_frames, SIZE[layout], 3))
    for k in range(SIZE[layout]):
        xyz[:, k] = table.get("Nose") + 0.01 * np.array([np.cos(k), 1.0 + np.sin(k), 0.5])
    for name, k in PUBLISHED[layout].items():
        xyz[:, k] = table.get(name)
    return xyz


def express(table: MarkerTable, layout: str) -> MarkerTable:
    """The trial as a file in ``layout``: :func:`in_layout` named by ``ingest.LAYOUTS``."""
    return MarkerTable(list(LAYOUTS[layout]), in_layout(table, layout), table.time.copy(), table.rate)


def named(table: MarkerTable, names: list[str]) -> MarkerTable:
    """The trial under ``names``, in that order, as another tool writes it (``Hip`` is MidHip; a keypoint the
    trial lacks, such as ``Head``, is made up 12 cm above the nose)."""
    head = table.get("Nose") + [0.0, 0.12, 0.0]
    xyz = np.stack([table.get(canonical(n)) if canonical(n) in table else head for n in names], axis=1)
    return MarkerTable(list(names), xyz, table.time, table.rate)


def shared(table: MarkerTable, layout: str) -> MarkerTable:
    """The BODY_25 trial cut to the keypoints ``layout`` has too: the reference for that layout."""
    return table.select([n for n in table.names if n in PUBLISHED[layout]])


def assert_same_motion(got, want, what: str) -> None:
    assert got.names == want.names and got.values.shape == want.values.shape, what
    np.testing.assert_allclose(got.time, want.time, atol=1e-9)
    np.testing.assert_array_equal(np.isnan(got.values), np.isnan(want.values))
    worst = float(np.nanmax(np.abs(got.values - want.values)))
    print(f"{what}: worst coordinate differs from BODY_25's by {worst:.2e}")
    assert worst < 1e-6, what  # degrees for rotations (metres and mm elsewhere: tighter still)


def test_the_tables():
    """Sizes, unique names, and the keypoints the augmenter reads at the indices of the published definitions."""
    assert {name: len(names) for name, names in LAYOUTS.items()} == SIZE
    for layout, names in LAYOUTS.items():
        folded = [canonical(n) for n in names]
        assert {name: folded.index(name) for name in PUBLISHED[layout]} == PUBLISHED[layout], layout
        assert len(set(folded)) == len(names), layout
        # only HALPE_26's Hip is renamed; no other name folds into a BODY_25 one
        assert [n for n, c in zip(names, folded, strict=True) if c != n] == (["Hip"] if layout == "HALPE_26" else [])
    assert LAYOUTS["BODY_25B"][17:19] == ["UpperNeck", "HeadTop"] and LAYOUTS["HALPE_26"][17] == "Head"
    assert LAYOUTS["COCO_133"][91] == "LHandRoot" and LAYOUTS["COCO_133"][112] == "RHandRoot"
    for layout in USABLE:
        assert unusable_layout(layout) is None
    assert unusable_layout("COCO_17") == COCO_17_LINE


# ------------------------------------------------------------------------------------------------ offline


@pytest.fixture(scope="module")
def offline_reference(trial, tmp_path_factory):
    """The offline angles of the BODY_25 trial cut to a layout's keypoints (two distinct cuts, each run once)."""
    done = {}
    out = tmp_path_factory.mktemp("offline_reference")

    def angles(layout: str):
        table = shared(trial.keypoints, layout)
        key = tuple(table.names)
        if key not in done:
            path = write_trc(out / f"body25_{len(done)}.trc", table)
            done[key] = process(path, trial.mass, trial.height, out / str(len(done)), load_settings(), plot=False)
        return done[key].motion

    return angles


@pytest.mark.parametrize("layout", USABLE)
def test_offline_angles_equal_body25s(layout, trial, offline_reference, tmp_path):
    path = write_trc(tmp_path / f"{layout}.trc", express(trial.keypoints, layout))
    written = read_trc(path).names
    assert written == LAYOUTS[layout]
    result = process(path, trial.mass, trial.height, tmp_path / "out", load_settings(), plot=False)
    derived = next((m for m in result.messages if m.startswith("derived ")), "")
    if layout in ("BODY_25B", "COCO_133"):  # no MidHip (nor Hip), no Neck
        assert not {"MidHip", "Hip", "Neck"} & set(written)
        assert derived == "derived MidHip, Neck from the hips/shoulders"
    else:  # BODY_25's MidHip and HALPE_26's Hip are read, not derived
        assert derived == ""
    assert_same_motion(result.motion, offline_reference(layout), f"offline {layout}")


def test_a_halpe_26_trial_as_pose2sim_writes_it(trial, offline_reference, tmp_path):
    """Pose2Sim writes the keypoints of its skeleton tree in tree order: Hip first, no eyes or ears."""
    tree_order = ["Hip", "RHip", "RKnee", "RAnkle", "RBigToe", "RSmallToe", "RHeel"]
    tree_order += ["LHip", "LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel", "Neck", "Head", "Nose"]
    tree_order += ["RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist"]
    path = write_trc(tmp_path / "pose2sim_halpe.trc", named(trial.keypoints, tree_order))
    result = process(path, trial.mass, trial.height, tmp_path / "out", load_settings(), plot=False)
    assert_same_motion(result.motion, offline_reference("HALPE_26"), "offline HALPE_26 in Pose2Sim's order")


def test_a_coco_17_trial_is_refused_in_one_line(trial, tmp_path):
    full = express(trial.keypoints, "COCO_17")
    tree_order = ["RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Nose"]  # as Pose2Sim writes COCO_17
    pose2sim = named(trial.keypoints, tree_order + ["RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist"])
    for table in (full, pose2sim):
        with pytest.raises(InputError) as err:
            complete_keypoints(table)
        assert (err.value.key, err.value.given) == ("layout", "COCO_17")
        assert str(err.value) == f"the trial holds the keypoints of layout COCO_17; {COCO_17_LINE}"  # the one line
    path = write_trc(tmp_path / "coco17.trc", full)
    with pytest.raises(InputError) as info:
        process(path, trial.mass, trial.height, tmp_path / "out", load_settings(), plot=False)
    assert (info.value.key, info.value.given) == ("layout", "COCO_17")
    proc = subprocess.run(
        [sys.executable, "-m", "kinestream", "process", str(path), "--mass", "70", "--height", "1.7"]
        + ["--out", str(tmp_path / "cli")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.strip()] == [
        f"kinestream: error: the trial holds the keypoints of layout COCO_17; {COCO_17_LINE}"
    ]


def test_a_trial_short_of_keypoints_still_says_which():
    """Not a layout's own keypoints: the general message, naming what is missing."""
    table = MarkerTable(["RHip", "LHip", "RKnee"], np.ones((5, 3, 3)), np.arange(5) / 60, 60)
    with pytest.raises(InputError) as info:
        complete_keypoints(table)
    assert info.value.given[:2] == ["Neck", "RShoulder"] and "Neck" in info.value.valid


# ------------------------------------------------------------------------------------------------ live


def live_angles(table: MarkerTable, assets, trial, layout: str | None = None):
    """``table`` through the live path, frame by frame: encoded (by ``layout``, else with its names), decoded,
    cleaned and augmented by the service's FrameProcessor, solved by the frame-wise IK on the generic model
    (the service's model when none is given)."""
    settings = load_settings()
    decoder = FrameDecoder()
    processor = FrameProcessor(assets, settings, trial.height, trial.mass, table.rate)
    outs = []
    for k in range(table.n_frames):
        if layout is None:
            payload = encode_keypoints(k, table.time[k], table.xyz[k], names=table.names)
        else:
            payload = encode_keypoints(k, table.time[k], table.xyz[k], layout=layout)
        frame = decoder.decode(payload)
        out = processor.step(frame.names, frame.xyz, frame.t).prepared
        outs += [out] if out is not None else []
    outs += [taken.prepared for taken in processor.flush() if taken.prepared is not None]
    assert len(outs) == table.n_frames and decoder.rejected == 0
    markers = MarkerTable(
        list(processor.markers), np.stack([o.markers for o in outs]), np.array([o.t for o in outs]), table.rate
    )
    return stream_ik(assets.generic_model, markers, assets.ik_setup, settings, marker_set=assets.marker_set).motion


@pytest.fixture(scope="module")
def live_reference(trial, assets):
    """The live angles of the BODY_25 trial cut to a layout's keypoints, sent with names (each cut run once)."""
    done = {}

    def angles(layout: str):
        table = shared(trial.keypoints, layout)
        key = tuple(table.names)
        if key not in done:
            done[key] = live_angles(table, assets, trial)
        return done[key]

    return angles


@pytest.mark.parametrize("layout", USABLE)
def test_live_angles_equal_body25s(layout, trial, assets, live_reference):
    """Sent by layout name alone (no names on the wire)."""
    table = express(trial.keypoints, layout)
    assert_same_motion(live_angles(table, assets, trial, layout), live_reference(layout), f"live {layout}")


def test_decoded_layout_names_are_body25s():
    frame = FrameDecoder().decode(encode_keypoints(0, 0.0, np.ones((26, 3)), layout="HALPE_26"))
    assert frame.names[19] == "MidHip" and set(REQUIRED) <= set(frame.names)
    assert FrameDecoder().decode(_with_layout("halpe_26", 26)).names == frame.names  # read in upper case too
    frame = FrameDecoder().decode(encode_keypoints(0, 0.0, np.ones((25, 3)), layout="BODY_25B"))
    assert "MidHip" not in frame.names and "Neck" not in frame.names and frame.names[17] == "UpperNeck"


def test_a_coco_17_frame_is_refused_with_the_line():
    payload = encode_keypoints(0, 0.0, np.ones((17, 3)), layout="COCO_17")
    decoder = FrameDecoder()
    with pytest.raises(Rejected) as err:
        decoder.decode(payload)
    assert err.value.reason == "unusable_layout" and err.value.detail == COCO_17_LINE
    assert decoder.counts["unusable_layout"] == 1 and "COCO_17" in REASONS["unusable_layout"]


def test_the_service_refuses_coco_17_and_keeps_serving(trial, caplog):
    """The service's own frame path: COCO_17 frames are counted and logged with the line, not processed; the
    HALPE_26 frames that follow are."""
    service = Service(
        load_settings(),
        input_endpoint="tcp://127.0.0.1:5555",
        output_endpoint="tcp://127.0.0.1:5556",
        mass=trial.mass,
        height=trial.height,
    )
    coco = express(trial.keypoints, "COCO_17")
    halpe = express(trial.keypoints, "HALPE_26")
    with caplog.at_level("WARNING", logger="kinestream.live.service"):
        for k in range(5):
            service.handle(encode_keypoints(k, coco.time[k], coco.xyz[k], layout="COCO_17"), time.time_ns())
        for k in range(5, 10):
            service.handle(encode_keypoints(k, halpe.time[k], halpe.xyz[k], layout="HALPE_26"), time.time_ns())
    status = service.status()
    assert status["rejected"]["unusable_layout"] == 5 and status["frames_in"] == 5
    refusals = [r.getMessage() for r in caplog.records if "unusable_layout" in r.getMessage()]
    assert refusals == [f"rejected a frame (unusable_layout: {COCO_17_LINE}); 1 so far"]


@pytest.mark.parametrize("layout", ["COCO_18", "body_25x", "", "HALPE"])
def test_unknown_layouts_keep_their_reason(layout):
    with pytest.raises(Rejected) as err:
        FrameDecoder().decode(_with_layout(layout))
    assert err.value.reason == "unknown_layout"
    assert all(name in err.value.detail and name in REASONS["unknown_layout"] for name in LAYOUTS)
    with pytest.raises(ProtocolError) as info:
        encode_keypoints(0, 0.0, np.ones((25, 3)), layout=layout)
    assert (info.value.key, info.value.given, info.value.valid) == ("layout", layout, list(LAYOUTS))


def _with_layout(layout: str, n: int = 25) -> bytes:
    """A frame of ``n`` keypoints naming ``layout`` as it is (the encoder takes known names only)."""
    return msgpack.packb({"v": 1, "seq": 0, "t": 0.0, "layout": layout, "xyz": np.ones((n, 3), "<f4").tobytes()})
