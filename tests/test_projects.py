"""A separate static trial, and Pose2Sim and OpenCap folders: real augmenter, real OpenSim, the real command."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

from kinestream.commands.main import main
from kinestream.errors import InputError, KinestreamError
from kinestream.files.mot import read_mot
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.offline import process
from kinestream.osim import opensim_module
from kinestream.projects import find_project, read_flat_yaml, subject_values
from kinestream.settings import load_settings
from kinestream.synth import synthesize

WINDOW = "0.5:1.5"  # inside the synthetic trial's standing phase (0-2.5 s)
STANDING_FRAMES = 150  # 2.5 s at 60 Hz: the static trial cut out of the still one
SAME_POSE_M = 0.003  # m: a static trial's model against the same window's within the trial (1.5 mm measured)


def quiet(*_):
    pass


def run(*argv: str) -> tuple[int, str, str]:
    """The kinestream command in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def model_numbers(path) -> np.ndarray:
    """What scaling sets in a model: body masses and mass centres, marker locations, joint frame offsets."""
    osim = opensim_module()
    model = osim.Model(str(path))
    numbers: list[float] = []
    for i in range(model.getBodySet().getSize()):
        body = model.getBodySet().get(i)
        numbers += [body.getMass(), *(body.getMassCenter().get(k) for k in range(3))]
    for i in range(model.getMarkerSet().getSize()):
        numbers += [model.getMarkerSet().get(i).get_location().get(k) for k in range(3)]
    for i in range(model.getJointSet().getSize()):
        joint = model.getJointSet().get(i)
        for f in range(joint.getPropertyByName("frames").size()):
            numbers += [joint.get_frames(f).get_translation().get(k) for k in range(3)]
    return np.array(numbers)


def model_mass(path) -> float:
    model = opensim_module().Model(str(path))
    return sum(model.getBodySet().get(i).getMass() for i in range(model.getBodySet().getSize()))


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """A still-then-squatting trial (no noise), a noisy squatting one, and the first's standing phase on its own."""
    root = tmp_path_factory.mktemp("trials")
    still = synthesize(root / "still", seconds=5)
    moving = synthesize(root / "moving", seconds=5, noise_mm=3.0, seed=1)
    static = write_trc(root / "static_cut.trc", read_trc(still.keypoints_trc).frames(0, STANDING_FRAMES))
    return still, moving, static


@pytest.fixture(scope="module")
def runs(trials, assets, tmp_path_factory):
    """The still trial scaled from a window of its own; the moving one scaled from the cut-out static trial; and
    the moving one scaled from its own window."""
    still, moving, static = trials
    root = tmp_path_factory.mktemp("runs")
    settings = load_settings()
    common = dict(static=WINDOW, plot=False)
    own = process(still.keypoints_trc, still.mass, still.height, root / "own", settings, **common)
    separate = process(
        moving.keypoints_trc, still.mass, still.height, root / "sep", settings, static_trial=static, **common
    )
    moving_own = process(moving.keypoints_trc, still.mass, still.height, root / "mov", settings, **common)
    return own, separate, moving_own


def test_a_static_trial_scales_as_the_same_window_within_the_trial(runs, trials):
    """The static trial's frames are averaged into one still pose and augmented held still; the trial's own window
    is filtered and augmented within the trial, so the LSTM has another history: the two models agree within
    :data:`SAME_POSE_M` (1.5 mm measured), where a model from the wrong frames is centimetres off."""
    own, separate, moving_own = runs
    still, moving, static = trials
    got, want = model_numbers(separate.scaled_model), model_numbers(own.scaled_model)
    assert got.size > 300
    np.testing.assert_allclose(got, want, rtol=0, atol=SAME_POSE_M)
    # IK ran on the movement trial, every frame of it.
    assert separate.motion.time.size == moving.keypoints.n_frames
    np.testing.assert_allclose(read_mot(separate.mot).time, moving.keypoints.time, atol=1e-6)
    assert separate.scaled_model.name == "static_cut_scaled.osim"
    assert (separate.mot.parent / "static_cut_augmented.trc").is_file()
    assert any(m.startswith(f"static trial {static}") for m in separate.messages)


def test_a_static_trial_and_a_model_together_are_refused(trials, tmp_path):
    still, _, static = trials
    with pytest.raises(InputError) as info:
        process(still.keypoints_trc, 70, 1.7, tmp_path, load_settings(), model=static, static_trial=static)
    assert (info.value.key, info.value.given, info.value.valid) == ("static_trial", (static, static), "one of them")
    with pytest.raises(InputError) as info:
        process(still.keypoints_trc, 70, 1.7, tmp_path, load_settings(), static_trial=tmp_path / "absent.trc")
    assert (info.value.key, info.value.given) == ("static_trial", tmp_path / "absent.trc")
    status, _, stderr = run("process", still.keypoints_trc, "--static-trial", tmp_path / "absent.trc")
    assert status == 2 and stderr == f"kinestream: error: static trial {tmp_path / 'absent.trc'} does not exist\n"


# ----------------------------------------------------------------------------------------------- Pose2Sim --

P2S_CONFIG = """\
[project]
project_dir = '.'
multi_person = false
participant_height = 1.70   # m
participant_mass = [72.5, 60.0]  # two participants: kinestream takes the first
frame_rate = 60
frame_range = 'auto'
exclude_from_batch = []

[pose]
pose_model = 'Body_with_feet'
"""


@pytest.fixture(scope="module")
def pose2sim(trials, assets, tmp_path_factory):
    """A Pose2Sim project as Pose2Sim leaves it after triangulation, filtering and augmentation, processed by
    ``kinestream process FOLDER``."""
    still, moving, static = trials
    folder = tmp_path_factory.mktemp("pose2sim") / "Demo_SinglePerson"
    pose3d = folder / "pose-3d"
    pose3d.mkdir(parents=True)
    (folder / "Config.toml").write_text(P2S_CONFIG)
    shutil.copy(moving.keypoints_trc, pose3d / "Demo_squats_0-299.trc")
    shutil.copy(still.keypoints_trc, pose3d / "Demo_stand_then_squat_0-299.trc")
    shutil.copy(static, pose3d / "Demo_static_0-149.trc")
    shutil.copy(moving.keypoints_trc, pose3d / "Demo_squats_0-299_filt_butterworth.trc")  # a filtered copy
    shutil.copy(moving.keypoints_trc, pose3d / "Demo_squats_0-299_filt_butterworth_LSTM.trc")  # augmented
    out = folder.parent / "out"
    options = folder.parent / "options.toml"
    options.write_text("[output]\nplot = false\n")
    status, stdout, stderr = run("process", folder, "--out", out, "--config", options)
    return folder, out, status, stdout, stderr


def test_a_pose2sim_project_processes_every_trial_from_its_static_trial(pose2sim):
    folder, out, status, stdout, stderr = pose2sim
    assert status == 0, stderr
    subject = out / folder.name  # batch's layout: OUT/<subject>/<trial>/, the static trial's in _static/
    assert {p.name for p in out.iterdir()} == {"manifest.json", "summary.csv", subject.name}
    done = sorted(p.name for p in subject.iterdir())
    assert done == ["Demo_squats_0-299", "Demo_stand_then_squat_0-299", "_static"]  # not the copies or LSTM
    for name in done[:2]:
        assert (subject / name / f"{name}.mot").is_file() and not list((subject / name).glob("*.osim"))
    model = subject / "_static" / "Demo_static_0-149_scaled.osim"  # scaled once, for both trials
    assert model_mass(model) == pytest.approx(72.5, abs=1e-9)
    assert "2 done, 0 skipped (unchanged), 0 failed of 2" in stdout
    config = folder / "Config.toml"
    assert (
        f"height 1.7 m from {config} [project] participant_height; "
        f"mass 72.5 kg from {config} [project] participant_mass" in stderr
    )
    assert "lists 2 participants ([72.5, 60.0]); kinestream takes the first" in stderr
    assert "static trial pose-3d/Demo_static_0-149.trc (its name says so)" in stderr
    assert "left out Pose2Sim's filtered copies Demo_squats_0-299_filt_butterworth.trc" in stderr
    assert f"frame rate 60 Hz from {config} [project] frame_rate" in stderr


def test_the_command_line_wins_over_the_files_and_they_over_the_settings(pose2sim):
    folder = pose2sim[0]
    project = find_project(folder)
    height, mass, notes = subject_values(project, 1.8, None, load_settings())
    assert (height, mass) == (1.8, 72.5)
    assert notes[-1] == (
        f"height 1.8 m from the command line (--height); mass 72.5 kg from {folder / 'Config.toml'} [project] "
        f"participant_mass"
    )
    settings = load_settings().override({"subject": {"mass": 66.0}})
    assert subject_values(project, None, 81.0, settings)[:2] == (1.7, 81.0)
    assert subject_values(None, None, None, settings) == (
        1.75,
        66.0,
        ["height 1.75 m from the default settings ([subject] height); mass 66 kg from the settings ([subject] mass)"],
    )


def tiny_trc(path, rate: float = 60.0):
    """A two-frame .trc: discovery reads only names and headers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_trc(path, MarkerTable(["Neck"], np.zeros((2, 1, 3)), np.arange(2) / rate, rate))


def project_toml(path, **values):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["[project]"] + [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")


def test_a_pose2sim_session_merges_each_trial_config_over_the_session(tmp_path):
    session = tmp_path / "session"
    project_toml(session / "Config.toml", participant_height="auto", participant_mass=70.0, frame_rate=60)
    project_toml(session / "T1_static" / "Config.toml", participant_height=1.66)
    project_toml(session / "T2_squat" / "Config.toml", participant_height=1.66, frame_rate=30)
    tiny_trc(session / "T1_static" / "pose-3d" / "T1_static_0-1.trc")
    tiny_trc(session / "T2_squat" / "pose-3d" / "T2_squat_0-1.trc", rate=30.0)
    project = find_project(session)
    assert project.kind == "Pose2Sim" and project.static.name == "T1_static_0-1.trc"
    assert [t.name for t in project.trials] == ["T2_squat_0-1.trc"]
    assert project.height.value == 1.66 and project.height.source.startswith(str(session / "T1_static"))
    assert project.mass.value == 70.0 and project.rate is None  # the trials differ in rate: each keeps its own
    # A trial whose Config.toml names another participant's height is refused: one folder, one subject.
    project_toml(session / "T2_squat" / "Config.toml", participant_height=1.80)
    with pytest.raises(InputError) as info:
        find_project(session)
    assert info.value.key == "participant_height" and sorted(info.value.given.values()) == [1.66, 1.8]
    # exclude_from_batch leaves a trial out, as Pose2Sim does
    project_toml(session / "T2_squat" / "Config.toml", participant_height=1.66)
    project_toml(session / "Config.toml", participant_height=1.66, exclude_from_batch=["T2_squat"])
    assert [t.name for t in find_project(session).trials] == ["T1_static_0-1.trc"]


def test_height_auto_falls_back_to_the_settings_and_says_so(tmp_path):
    folder = tmp_path / "proj"
    project_toml(folder / "Config.toml", participant_height="auto", participant_mass=0)
    tiny_trc(folder / "pose-3d" / "walk.trc")
    height, mass, notes = subject_values(find_project(folder), settings=load_settings())
    assert (height, mass) == (1.75, 70.0)
    assert any("participant_height is 'auto' (Pose2Sim estimates the height; kinestream does not)" in n for n in notes)
    assert notes[-1].endswith("mass 70 kg from the default settings ([subject] mass)")


TRC = object()  # in a folder layout: a tiny .trc
BAD_FOLDERS = {  # case: (the folder's files, what the one line says)
    "no trial": ({"Config.toml": "[project]\nparticipant_height = 1.7\n"}, r"holds no trial: no pose-3d/\*\.trc"),
    "augmented only": (
        {"Config.toml": "[project]\nparticipant_height = 1.7\n", "pose-3d/walk_LSTM.trc": TRC},
        "holds no trial",
    ),
    "nothing": ({"notes.txt": "hello"}, "is neither a Pose2Sim project or session .* nor an OpenCap session"),
    "no height": (
        {"Config.toml": "[project]\nparticipant_mass = 70\n", "pose-3d/walk.trc": TRC},
        r"Config.toml \[project\] participant_height is not set: .* give --height",
    ),
    "bad height": (
        {"Config.toml": "[project]\nparticipant_height = 'tall'\n", "pose-3d/walk.trc": TRC},
        r"participant_height = 'tall' is not valid; give a number \(metres\)",
    ),
    "centimetres": (
        {"Config.toml": "[project]\nparticipant_height = 172\n", "pose-3d/walk.trc": TRC},
        r"height 172.0 looks like centimetres.*\(height from .*participant_height",
    ),
    "bad toml": ({"Config.toml": "[project\n", "pose-3d/walk.trc": TRC}, "Config.toml is not valid TOML"),
    "opencap no height": (
        {"sessionMetadata.yaml": "subjectID: s01\nmass_kg: 70\n", "MarkerData/walk.trc": TRC},
        "sessionMetadata.yaml height_m is not set",
    ),
    "opencap bad height": (
        {"sessionMetadata.yaml": "height_m: tall\n", "MarkerData/walk.trc": TRC},
        r"sessionMetadata.yaml height_m = 'tall' is not valid; give a number in metres",
    ),
    "opencap no trial": ({"sessionMetadata.yaml": "height_m: 1.7\n"}, "holds no trial: no MarkerData/"),
}


@pytest.mark.parametrize("case", sorted(BAD_FOLDERS))
def test_bad_folders_are_one_clear_line(case, tmp_path):
    files, said = BAD_FOLDERS[case]
    folder = tmp_path / "f"
    for name, text in files.items():
        if text is TRC:
            tiny_trc(folder / name)
        else:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    with pytest.raises(KinestreamError, match=said) as caught:
        subject_values(find_project(folder), settings=load_settings())
    assert "\n" not in str(caught.value)
    status, _, stderr = run("process", folder)
    assert status == 2 and stderr.count("\n") == 1 and stderr.startswith("kinestream: error: "), stderr


def test_truth_with_a_folder_is_refused(tmp_path):
    folder = tmp_path / "proj"
    project_toml(folder / "Config.toml", participant_height=1.7)
    tiny_trc(folder / "pose-3d" / "walk.trc")
    status, _, stderr = run("process", folder, "--truth", tmp_path / "coords.mot")
    assert status == 2 and "--truth holds one trial's true angles" in stderr


# ------------------------------------------------------------------------------------------------ OpenCap --

OPENCAP_METADATA = """\
calibrationSettings:
  overwriteDeployedIntrinsics: false
  saveSessionIntrinsics: false
checkerBoard:
  black2BlackCornersHeight_n: 8
  placement: ground
gender_mf: f
height_m: 1.69
iphoneModel:
  Cam0: iphone13,3
markerAugmentationSettings:
  markerAugmenterModel: LSTM
mass_kg: '68.0'   # quoted, with a comment
openSimModel: LaiUhlrich2022
subjectID: subject01
"""


def test_the_flat_lines_of_sessionmetadata(tmp_path):
    path = tmp_path / "sessionMetadata.yaml"
    path.write_text(OPENCAP_METADATA)
    values = read_flat_yaml(path)
    assert values["height_m"] == "1.69" and values["mass_kg"] == "68.0" and values["subjectID"] == "subject01"
    assert "placement" not in values and "checkerBoard" not in values  # nested: not top-level


@pytest.fixture(scope="module")
def opencap(runs, tmp_path_factory):
    """A session as OpenCap's download leaves it: its MarkerData .trc hold the keypoints and OpenCap's 43
    augmented markers (here kinestream's, which are the same LSTM's), the static trial called "neutral"."""
    own, separate, moving_own = runs
    folder = tmp_path_factory.mktemp("opencap") / "OpenCapData_1234"
    (folder / "MarkerData").mkdir(parents=True)
    (folder / "sessionMetadata.yaml").write_text(OPENCAP_METADATA)
    shutil.copy(separate.mot.parent / "static_cut_augmented.trc", folder / "MarkerData" / "neutral.trc")
    shutil.copy(moving_own.augmented_trc, folder / "MarkerData" / "squats.trc")
    out = folder.parent / "out"
    status, stdout, stderr = run("process", folder, "--out", out)
    return folder, out, status, stdout, stderr


def test_an_opencap_session_takes_its_subject_and_neutral_trial(opencap, runs):
    folder, out, status, stdout, stderr = opencap
    assert status == 0, stderr
    subject = out / folder.name
    assert sorted(p.name for p in subject.iterdir()) == ["_static", "squats"]
    model = subject / "_static" / "neutral_scaled.osim"
    assert model_mass(model) == pytest.approx(68.0, abs=1e-9)
    meta = folder / "sessionMetadata.yaml"
    assert f"height 1.69 m from {meta} height_m; mass 68 kg from {meta} mass_kg" in stderr
    assert "static trial MarkerData/neutral.trc (its name says so)" in stderr
    got = read_mot(subject / "squats" / "squats.mot")
    assert np.isfinite(got.get("knee_angle_r")).all() and np.nanmax(got.get("knee_angle_r")) > 60


def test_one_rule_names_the_static_trial_in_every_layout(tmp_path):
    """split_static is the rule process FOLDER and batch share: a glob on the path within the folder or on one of
    its parts, any case; the first match is the static trial; a lone trial is processed."""
    from kinestream.batch import find_study
    from kinestream.projects import split_static

    folder = tmp_path / "s"
    trials = [folder / p for p in ("A/walk.trc", "Static_1/pose-3d/x.trc", "b/STATIC_2.trc", "c/cal.trc")]
    static, others, notes = split_static(folder, trials)
    assert static == trials[1] and others == [trials[0], trials[2], trials[3]]
    assert notes[-1] == "STATIC_2.trc look static too; they are processed as trials"
    assert split_static(folder, trials, ("cal.*",))[0] == trials[3]  # a part of the path, not only the whole
    assert split_static(folder, trials[:1], ("*walk*",)) == (
        None,
        trials[:1],
        ["walk.trc is the only trial; it is scaled from its own still pose"],
    )
    # batch's study and process's project of one OpenCap session name the same static trial, by one rule
    session = tmp_path / "OpenCapData_1"
    for name in ("neutral.trc", "squat.trc", "jump.trc"):
        tiny_trc(session / "MarkerData" / name)
    (session / "sessionMetadata.yaml").write_text("height_m: 1.75\nmass_kg: 60\n")
    project = find_project(session)
    subject = find_study(session, load_settings()).subjects[0]
    assert project.static.name == subject.static.name == "neutral.trc"
    assert [t.name for t in subject.trials] == [t.name for t in project.trials] == ["jump.trc", "squat.trc"]
    assert find_study(session, load_settings(), static_pattern="*jump*").subjects[0].static.name == "jump.trc"
