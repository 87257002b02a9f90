"""The Python API (kinestream.api) end to end on a short synth trial, its names, its docstring example, and
plots that return Figures."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import ezc3d
import numpy as np
import pytest

import kinestream
import kinestream.api as ks
import kinestream.settings
from c3dcheck import assert_same_as_trc
from kinestream.augment import LOWER_MARKERS, UPPER_MARKERS
from kinestream.errors import InputError, SettingsError

KNEES = ("knee_angle_r", "knee_angle_l")
MARKERS = LOWER_MARKERS + UPPER_MARKERS  # the 43 the augmenter predicts


def _rms(a, b):
    return float(np.sqrt(np.nanmean((a - b) ** 2)))


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """The shortest synth trial (stand, one squat), 5 mm keypoint noise and two gaps."""
    return ks.synth(tmp_path_factory.mktemp("api_synth"), seconds=5.0, noise_mm=5.0, gaps=2, seed=3)


@pytest.fixture(scope="module")
def processed(trial, tmp_path_factory):
    return ks.process(trial.keypoints_trc, tmp_path_factory.mktemp("api_process"), height=trial.height, mass=trial.mass)


def test_the_docstring_examples_run():
    result = doctest.testmod(ks, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


def test_process_equals_the_command(trial, processed, tmp_path):
    """The same files as `kinestream process` with the same subject, byte for byte (the plot aside)."""
    import matplotlib

    from kinestream.commands.main import main

    out = tmp_path / "cli"
    args = ["process", str(trial.keypoints_trc), "--mass", repr(trial.mass), "--height", repr(trial.height)]
    backend = matplotlib.get_backend()
    assert main([*args, "--out", str(out)]) == 0
    stem = trial.keypoints_trc.stem
    for name in (f"{stem}.mot", f"{stem}_augmented.trc"):
        assert (out / name).read_bytes() == (processed.mot.parent / name).read_bytes(), name
    assert (out / f"{stem}_angles.png").is_file() and processed.plot.is_file()
    np.testing.assert_array_equal(
        ezc3d.c3d(str(out / f"{stem}_augmented.c3d"))["data"]["points"],
        ezc3d.c3d(str(processed.augmented_c3d))["data"]["points"],
    )
    assert matplotlib.get_backend() == backend  # its plot is a Figure of its own: no backend chosen, none needed


def test_process_writes_the_augmented_markers_as_c3d(trial, processed):
    """TRIAL_augmented.c3d beside the .trc: ezc3d reads the .trc's values (keypoints and markers) to float32."""
    assert processed.augmented_c3d == processed.augmented_trc.with_suffix(".c3d")
    assert f"wrote {processed.augmented_c3d}" in processed.summary()
    trc = ks.read_trc(processed.augmented_trc)
    assert trc.names == trial.keypoints.names + MARKERS and trc.n_frames == trial.keypoints.n_frames
    assert_same_as_trc(processed.augmented_c3d, trc)


def test_c3d_off_writes_none(trial, processed, tmp_path):
    result = ks.process(
        trial.keypoints_trc,
        tmp_path,
        height=trial.height,
        mass=trial.mass,
        config={"output": {"c3d": False, "plot": False}},
        model=processed.scaled_model,
    )
    assert result.augmented_c3d is None and result.plot is None and not list(tmp_path.glob("*.c3d"))


def test_augment_turns_the_keypoints_as_process_does(trial, tmp_path):
    """A Z-up trial through ``augment`` with ``[ingest] up = "z"`` gives the augmented markers ``process --up z``
    writes (to the .trc's 5 decimals), whether given as a path or a table, the setting as a dict of sections or as
    Settings; without the setting they would lie on their side."""
    from kinestream.ingest import orient, orientation

    z_up = orient(ks.read_trc(trial.keypoints_trc), orientation("z").T)  # the trial as a Z-up camera system sees it
    path = ks.write_trc(tmp_path / "z_up.trc", z_up)
    config = {"ingest": {"up": "z"}}
    processed = ks.process(path, tmp_path / "out", height=trial.height, mass=trial.mass, config=config)
    written = ks.read_trc(processed.augmented_trc)
    settings = ks.load_settings().override(config)
    for given, how in ((path, config), (ks.read_trc(path), config), (path, settings), (ks.read_trc(path), settings)):
        markers = ks.augment(given, height=trial.height, mass=trial.mass, config=how)
        assert markers.names == written.names
        assert np.abs(markers.xyz - written.xyz).max() < 1e-5
        assert any("Z-up to Y-up" in note for note in markers.meta["notes"])


def test_augment_scale_ik_chain_recovers_the_knee(trial, processed, tmp_path):
    """Table in, objects out: the chain gives the angles process gives, the knees within test_pipeline's 5 deg
    RMS of the truth."""
    markers = ks.augment(trial.keypoints_trc, height=trial.height, mass=trial.mass)
    assert isinstance(markers, ks.MarkerTable) and markers.n_frames == trial.keypoints.n_frames
    assert markers.names == trial.keypoints.names + MARKERS
    assert any("augmented" in note for note in markers.meta["notes"])
    scaled = ks.scale(markers, tmp_path / "scaled.osim", height=trial.height, mass=trial.mass)
    assert isinstance(scaled, ks.ScaleResult) and scaled.model_path.is_file() and scaled.method == "static"
    motion = ks.ik(markers, scaled)
    assert isinstance(motion, ks.Motion) and motion.in_degrees
    np.testing.assert_allclose(motion.time, trial.keypoints.time, atol=1e-6)  # as the .trc has them
    errors = {n: _rms(motion.get(n), trial.motion.get(n)) for n in KNEES}
    print("API chain, knee RMS error vs truth (deg):", {n: round(e, 2) for n, e in errors.items()})
    assert max(errors.values()) < 5.0
    np.testing.assert_allclose(motion.values, processed.motion.values, atol=1e-9)
    assert motion.names == processed.motion.names

    # a table from memory works as a file does, and the result is JSON-ready
    again = ks.ik(ks.read_trc(processed.augmented_trc), scaled.model_path, config={"ik": {"arms": True}})
    # the .trc keeps micrometres; IK on them lands within a tenth of a degree
    assert np.nanmax(np.abs(again.get("knee_angle_r") - motion.get("knee_angle_r"))) < 0.1
    data = json.loads(json.dumps(motion.to_dict()))
    assert data["in_degrees"] is True and len(data["time"]) == motion.time.size
    assert data["coordinates"]["knee_angle_r"] == pytest.approx(motion.get("knee_angle_r").tolist())
    table = json.loads(json.dumps(markers.frames(0, 3).to_dict()))
    assert table["rate"] == markers.rate and table["markers"]["r_knee_study"][0] == pytest.approx(
        markers.get("r_knee_study")[0].tolist()
    )


def test_bad_input_is_one_clear_error(trial, tmp_path):
    cases = [
        (lambda: ks.augment(tmp_path / "missing.trc"), InputError, None, tmp_path / "missing.trc"),
        (lambda: ks.augment([1, 2, 3]), InputError, "keypoints", [1, 2, 3]),
        (lambda: ks.augment(trial.keypoints, height=-1.0), SettingsError, "subject.height", -1.0),
        (lambda: ks.augment(trial.keypoints, config={"clean": {"cutoff": 6}}), SettingsError, "clean.cutoff", "cutoff"),
        (lambda: ks.augment(trial.keypoints, config=42), SettingsError, "config", 42),
        (lambda: ks.ik(trial.markers, tmp_path / "none.osim"), InputError, "model", tmp_path / "none.osim"),
        (lambda: ks.process(tmp_path / "missing.trc", tmp_path), InputError, None, tmp_path / "missing.trc"),
    ]
    for call, kind, key, given in cases:
        with pytest.raises(kind) as info:
            call()
        assert (info.value.key, info.value.given) == (key, given)


def test_the_library_prints_nothing_and_logs_what_it_did(trial, processed, tmp_path, capsys, caplog):
    """What process has to say goes to the kinestream loggers (INFO), nothing to stdout or stderr, no progress bar:
    only the command line prints."""
    capsys.readouterr()
    with caplog.at_level("INFO", logger="kinestream"):
        result = ks.process(
            trial.keypoints_trc, tmp_path, height=trial.height, mass=trial.mass, model=processed.scaled_model
        )
    assert capsys.readouterr() == ("", "")
    said = [r.getMessage() for r in caplog.records if r.name.startswith("kinestream") and r.levelname == "INFO"]
    assert said == result.messages and any("using the scaled model" in m for m in said)


def test_the_command_line_prints_the_librarys_log_as_lines_and_only_while_it_runs(capsys):
    """One handler, around each command: a library INFO record is a plain line on stderr, a logger a command
    hides says nothing but its warnings, and once the command is over the library is silent again."""
    import logging

    from kinestream.commands.terminal import show, showing_log

    said, hidden = logging.getLogger("kinestream.assets"), logging.getLogger("kinestream.synth")
    with showing_log():
        show("kinestream.synth", None)
        said.info("kinestream: fetching %s", "the wheel")
        hidden.info("synth: posing 10 frames")
        hidden.warning("a warning shows")
        said.debug("a debug record does not")
    said.info("after the command: not printed")
    assert capsys.readouterr() == ("", "kinestream: fetching the wheel\na warning shows\n")


def test_plots_return_figures_and_leave_the_backend_alone(trial, tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # the caller's choice (a notebook's inline backend, say)
    try:
        fig = ks.plot_angles(trial.motion, tmp_path / "angles.png", title="synth")
        assert isinstance(fig, Figure) and len(fig.axes) == 4
        assert (tmp_path / "angles.png").stat().st_size > 20_000
        reps = ks.plot_reps(trial.motion, [], title="synth")  # no path: nothing written
        assert isinstance(reps, Figure) and list(tmp_path.iterdir()) == [tmp_path / "angles.png"]
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == []  # pyplot keeps none of them: the caller holds the only reference
    finally:
        matplotlib.use(before)


def test_all_names_resolve():
    for name in ks.__all__:
        assert getattr(ks, name) is not None, name
    assert set(kinestream.__all__) == (set(ks.__all__) - {"augment", "scale", "synth"}) | {"api"}
    for name in kinestream.__all__:
        value = getattr(kinestream, name)
        assert value is (ks if name == "api" else getattr(ks, name)), name
    assert set(kinestream.__all__) <= set(dir(kinestream)) and set(ks.__all__) <= set(dir(ks))
    # the settings are one tree, from kinestream.settings; its sections are reached through it, not exported
    assert ks.Settings is kinestream.Settings is kinestream.settings.Settings
    assert ks.load_settings is kinestream.settings.load_settings
    assert not {name for name in ks.__all__ if name.endswith("Settings") and name != "Settings"}
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        kinestream.nothing  # noqa: B018


IMPORT_ORDERS = {
    "package first": """
import sys, types
import kinestream
heavy = {"kinestream.api", "kinestream.offline", "opensim", "scipy", "matplotlib", "onnxruntime"}
assert not heavy & set(sys.modules), sorted(heavy & set(sys.modules))
from kinestream import scale, augment, synth
assert all(isinstance(m, types.ModuleType) for m in (scale, augment, synth))
assert kinestream.process.__module__ == "kinestream.api"  # loads the API, which imports the stage modules
import kinestream.scale
assert kinestream.scale is scale and kinestream.augment is augment and kinestream.synth is synth
from kinestream.api import scale as f
assert callable(f) and not isinstance(f, types.ModuleType)
print("ok")
""",
    "api first": """
import types
import kinestream.api as ks
import kinestream.settings
from kinestream import augment, scale, synth, process
assert all(isinstance(m, types.ModuleType) for m in (scale, augment, synth)), (scale, augment, synth)
assert ks.scale.__module__ == "kinestream.api" and process is ks.process
import kinestream
assert kinestream.scale.scale_model and kinestream.StreamingIK.__module__ == "kinestream.solve.stream"
assert not hasattr(kinestream.scale, "ScaleSettings") and kinestream.Settings.__module__ == "kinestream.settings"
print("ok")
""",
}


@pytest.mark.parametrize("order", sorted(IMPORT_ORDERS))
def test_importing_is_light_and_the_stage_modules_keep_their_names(order):
    """`import kinestream` loads nothing heavy; kinestream.scale (augment, synth) is the module whatever was
    imported first, and the API's functions of those names live in kinestream.api."""
    run = subprocess.run([sys.executable, "-c", IMPORT_ORDERS[order]], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
