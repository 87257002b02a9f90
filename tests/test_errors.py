"""KinestreamError is the root of six kinds of error; each carries what was given, what is valid and the key."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from kinestream.commands.main import main
from kinestream.errors import (
    AssetError,
    InputError,
    KinestreamError,
    ProtocolError,
    RecordingError,
    SettingsError,
    SolverError,
)

KINDS = [SettingsError, InputError, AssetError, SolverError, ProtocolError, RecordingError]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_a_kinestream_error_whose_attributes_default_to_none(kind):
    assert issubclass(kind, KinestreamError) and kind.__doc__
    said = "the trial has no frames; it needs at least one"
    bare = kind(said)
    assert (bare.given, bare.valid, bare.key) == (None, None, None)
    assert str(bare) == said and bare.args == (said,)
    full = kind("[clean] cutoff_hz = -1 is not valid; give a number > 0", given=-1, valid="> 0", key="clean.cutoff_hz")
    assert str(full) == "[clean] cutoff_hz = -1 is not valid; give a number > 0"
    assert (full.given, full.valid, full.key) == (-1, "> 0", "clean.cutoff_hz")
    with pytest.raises(KinestreamError):  # what every handler of the root catches
        raise full
    again = pickle.loads(pickle.dumps(full))  # as a batch worker's error reaches the client
    assert type(again) is kind and str(again) == str(full) and vars(again) == vars(full)


def test_reworded_keeps_the_kind_and_the_attributes():
    error = InputError("t.trc holds no frames", given="t.trc", valid="at least one frame")
    said = error.reworded("static trial s.trc: t.trc holds no frames")
    assert type(said) is InputError and str(said) == "static trial s.trc: t.trc holds no frames"
    assert (said.given, said.valid, said.key) == ("t.trc", "at least one frame", None)
    assert str(error) == "t.trc holds no frames"  # the original is left as it was


def test_a_rejected_frame_is_a_protocol_error_with_its_own_attributes():
    from kinestream.live.protocol import FrameDecoder, Rejected

    with pytest.raises(Rejected) as info:
        FrameDecoder().decode(b"\xc1")
    assert isinstance(info.value, ProtocolError) and info.value.reason == "not_msgpack"
    assert str(info.value) == f"not_msgpack: {info.value.detail}"


def test_the_command_line_prints_the_message_unchanged(tmp_path, capsys):
    from kinestream.settings import load_settings

    absent = tmp_path / "absent.toml"
    with pytest.raises(SettingsError) as info:
        load_settings(absent)
    assert info.value.given == absent
    assert main(["--config", str(absent), "assets"]) == 2
    assert capsys.readouterr().err == f"kinestream: error: {info.value}\n"


# One raise site of each kind, with the attributes it passes.


def test_a_setting_out_of_range():
    from kinestream.config import validate

    with pytest.raises(SettingsError) as info:
        validate({"clean": {"cutoff_hz": -1}})
    assert (info.value.key, info.value.given) == ("clean.cutoff_hz", -1)
    assert "auto" in info.value.valid


def test_an_input_file_that_is_not_there(tmp_path):
    from kinestream.files.trc import read_trc

    with pytest.raises(InputError) as info:
        read_trc(tmp_path / "nope.trc")
    assert (info.value.key, info.value.given, info.value.valid) == (None, tmp_path / "nope.trc", "a .trc file")


def test_an_asset_that_is_not_there(tmp_path, monkeypatch):
    from kinestream import assets

    monkeypatch.setenv("KINESTREAM_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    with pytest.raises(AssetError) as info:
        assets.install_wheel(tmp_path / "missing.whl")
    assert (info.value.key, info.value.given, info.value.valid) == (
        "--wheel",
        tmp_path / "missing.whl",
        assets.WHEEL_FILE,
    )


def test_a_model_opensim_cannot_load(tmp_path):
    from kinestream.osim import read_model

    path = tmp_path / "broken.osim"
    path.write_text("not a model\n")
    with pytest.raises(SolverError) as info:
        read_model(path)
    assert info.value.given == path


def test_a_frame_that_cannot_be_encoded():
    from kinestream.live.protocol import encode_keypoints

    with pytest.raises(ProtocolError) as info:
        encode_keypoints(0, 0.0, np.zeros(9))
    assert (info.value.key, info.value.given, info.value.valid) == ("xyz", (9,), "(N, 3)")


def test_a_recording_with_a_column_named_twice(tmp_path):
    from kinestream.files.record import MotRecorder

    with pytest.raises(RecordingError) as info:
        MotRecorder(tmp_path / "a.mot", ["knee_angle_r", "knee_angle_r"])
    assert (info.value.key, info.value.given, info.value.valid) == (
        "column names",
        "knee_angle_r",
        "unique column names",
    )
    assert not (tmp_path / "a.mot").exists()
