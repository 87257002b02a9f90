"""Every stage's settings dataclass: its defaults are default.toml's, and the config reaches the stage."""

from __future__ import annotations

import dataclasses
import math

import pytest

from kinestream.augment import AugmentSettings
from kinestream.clean import CleanSettings, StreamingCleaner
from kinestream.config import DEFAULTS, OPTIONAL, SCHEMA, load_config
from kinestream.errors import SettingsError
from kinestream.ingest import IngestSettings
from kinestream.live.settings import ServiceSettings
from kinestream.reps import CueSettings, RepSettings
from kinestream.scale import ScaleSettings
from kinestream.solve import IKSettings

STAGES = [(IngestSettings, "ingest"), (CleanSettings, "clean"), (AugmentSettings, "augment"), (ScaleSettings, "scale"),
          (IKSettings, "ik"), (RepSettings, "reps"), (CueSettings, "cues"), (ServiceSettings, "service")]  # fmt: skip


@pytest.mark.parametrize("cls,name", STAGES)
def test_defaults_are_the_shipped_file(cls, name):
    """One source: a stage's field defaults are default.toml's [section], key for key."""
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields == set(DEFAULTS[name]) | set(OPTIONAL.get(name, {}))
    default = dataclasses.asdict(cls())
    for key, value in DEFAULTS[name].items():
        assert default[key] == (tuple(value) if isinstance(value, list) else value), (name, key)
    assert cls.from_config(load_config()) == cls() == cls.from_config(None) == cls.from_config({})


@pytest.mark.parametrize("cls,name", STAGES)
def test_a_setting_given_is_taken_and_an_unknown_one_refused(cls, name):
    key, value = next(iter(DEFAULTS[name].items()))  # the section's first setting, whatever its kind
    if isinstance(value, bool):
        other = not value
    elif isinstance(value, (int, float)):
        other = 30.0 if key == "knee_start_deg" else value * 2
    elif isinstance(value, list):
        other = [v * 2 for v in value]
    else:  # another of its choices, when it has some
        rule = SCHEMA[name][key][1]
        other = next((r for r in rule if r != value), value) if isinstance(rule, tuple) else "elsewhere"
    got = getattr(cls.from_config({name: {key: other}}), key)
    assert got == (tuple(other) if isinstance(other, list) else other)
    with pytest.raises(SettingsError) as info:
        cls.from_config({name: {"no_such_setting": 1}})
    assert (info.value.key, info.value.given) == (name, ["no_such_setting"]) and key in info.value.valid


@pytest.mark.parametrize("cls,name", STAGES)
def test_a_stage_s_settings_are_checked_as_a_file_s_are(cls, name):
    """Every stage's from_config checks its section against the rules a settings file meets (one validator):
    a value of the wrong kind is refused, naming its key and what was given."""
    key, value = next((k, v) for k, v in DEFAULTS[name].items() if not isinstance(v, bool))
    wrong = "no" if not isinstance(value, str) else 7
    with pytest.raises(SettingsError) as info:
        cls.from_config({name: {key: wrong}})
    assert (info.value.key, info.value.given) == (f"{name}.{key}", wrong)


def test_the_settings_reach_the_stages(tmp_path):
    ik = IKSettings.from_config({"ik": {"constraint_weight": "inf", "accuracy": 1e-7, "arms": False}})
    from kinestream.assets import get_assets

    setup = ik.setup(get_assets().ik_setup)
    assert setup.accuracy == 1e-7 and math.isinf(setup.constraint_weight)
    assert not any(m.startswith(("r_lelbow", "L_wrist", "r_mwrist")) for m in setup.marker_weights)
    assert any(m.startswith("r_lelbow") for m in IKSettings().setup(get_assets().ik_setup).marker_weights)
    cleaner = CleanSettings.from_config({"clean": {"streaming_filter": "kalman"}}).streaming(3, 60.0)
    assert cleaner.design == "kalman" and StreamingCleaner.from_config({}, 3, 60.0).design == "one_euro"
    with pytest.raises(SettingsError) as info:
        CleanSettings(cutoff_hz="auto").streaming(3, 60.0)
    assert (info.value.key, info.value.given) == ("clean.cutoff_hz", "auto")
    assert ScaleSettings.from_config({"scale": {"still_window_s": [2.0, 0.5]}}).still_window_s == (2.0, 0.5)


def test_people_and_their_limits_are_checked():
    """[service] max_people and person_timeout_s are settings like the others; [people] holds a table per subject
    (its name one file name and one MQTT topic level) giving a model and/or height and mass."""
    from kinestream.config import validate

    config = load_config()
    assert config["service"]["max_people"] == 8 and config["service"]["person_timeout_s"] == 5.0
    assert config["people"] == {}
    validate({"people": {"ana": {"model": "ana.osim"}, "ben": {"height": 1.92, "mass": 88.0}}})
    for bad, key, given in [
        ({"service": {"max_people": 0}}, "service.max_people", 0),
        ({"service": {"person_timeout_s": 0}}, "service.person_timeout_s", 0),
        ({"people": {"a/b": {"height": 1.8}}}, "people", "a/b"),
        ({"people": {"x+y": {"height": 1.8}}}, "people", "x+y"),
        ({"people": {"ana": {"height": 180}}}, "people.ana.height", 180),
        ({"people": {"ana": {"model": ""}}}, "people.ana.model", ""),
        ({"people": {"ana": {"weight": 70}}}, "people.ana.weight", "weight"),
        ({"people": {"ana": "ana.osim"}}, "people.ana", "ana.osim"),
    ]:
        with pytest.raises(SettingsError) as info:
            validate(bad)
        assert (info.value.key, info.value.given) == (key, given)


def test_an_override_is_a_new_config_checked_as_a_file_is():
    """Command-line flags make a new config; the one they were applied to is left as it was."""
    import copy

    from kinestream.config import load_config, override

    config = load_config()
    before = copy.deepcopy(config)
    changed = override(config, {"ik": {"solver": "opensim"}, "people": {"ana": {"height": 1.6, "mass": 55.0}}})
    assert config == before
    assert changed["ik"]["solver"] == "opensim" and changed["people"] == {"ana": {"height": 1.6, "mass": 55.0}}
    assert changed["ik"]["accuracy"] == config["ik"]["accuracy"]  # the rest of the section kept
    changed["clean"]["cutoff_hz"] = 3.0  # and the new config shares nothing with the old
    assert config["clean"] == before["clean"]
    with pytest.raises(SettingsError) as info:
        override(config, {"ik": {"solver": "quick"}})
    assert (info.value.key, info.value.given) == ("ik.solver", "quick")
    assert str(info.value).startswith("the command line: [ik] solver = 'quick' is not valid")


def test_a_default_is_written_once():
    """A setting's default is default.toml's: the code reads a setting through config.setting (or its section's
    settings class), never with a second copy of the default beside it (config["output"].get("plot", True))."""
    import re
    from pathlib import Path

    from kinestream.config import setting

    src = Path(__file__).resolve().parents[1] / "src" / "kinestream"
    names = "|".join(DEFAULTS)
    copied = re.compile(rf'\.get\("({names})", \{{\}}\)\.get\(|\["({names})"\]\.get\("\w+", ')
    found = [
        f"{path.relative_to(src)}:{n}: {line.strip()}"
        for path in sorted(src.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if copied.search(line)
    ]
    assert found == []
    assert copied.search('plot = bool(config.get("output", {}).get("plot", True))')  # what it catches
    # a partial config (a caller's dict, a batch task's sections) falls back on default.toml, as a whole one does
    assert setting({"output": {"c3d": False}}, "output", "plot") is DEFAULTS["output"]["plot"]
    assert setting({"output": {"c3d": False}}, "output", "c3d") is False
    assert setting(None, "subject", "name") == DEFAULTS["subject"]["name"]
