"""The settings: one typed, frozen tree (kinestream.settings.Settings) whose defaults are default.toml's, checked
once against the rules of kinestream.config, and reaching the stages."""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle

import pytest

from kinestream.clean import streaming_cleaner
from kinestream.config import DEFAULTS, OPTIONAL, SCHEMA, validate
from kinestream.errors import SettingsError
from kinestream.settings import (
    LIVE_ONLY,
    CleanSettings,
    CurveSettings,
    MqttSettings,
    PersonSettings,
    ServiceSettings,
    Settings,
    load_settings,
)
from kinestream.solve import ik_setup

SECTIONS = [f.name for f in dataclasses.fields(Settings) if f.name != "people"]  # [people]: a table per subject


def test_the_tree_has_a_section_per_table_of_the_shipped_file():
    assert {f.name for f in dataclasses.fields(Settings)} == set(DEFAULTS)
    for name in SECTIONS:
        assert type(getattr(Settings(), name)).SECTION == name


def test_the_defaults_are_the_shipped_file():
    """Settings() is default.toml's, however it is made; written back, it is default.toml's dict."""
    assert Settings() == load_settings() == Settings.from_config({}) == Settings.from_config(None)
    assert Settings().to_config() == DEFAULTS
    assert Settings().people == {}


@pytest.mark.parametrize("name", SECTIONS)
def test_a_section_s_defaults_are_the_shipped_file(name):
    """One source: a section's field defaults are default.toml's [section], key for key."""
    cls = type(getattr(Settings(), name))
    fields = {f.name for f in dataclasses.fields(cls)}
    assert fields == set(DEFAULTS[name]) | set(OPTIONAL.get(name, {}))
    default = dataclasses.asdict(cls())
    for key, value in DEFAULTS[name].items():
        assert default[key] == (tuple(value) if isinstance(value, list) else value), (name, key)
    assert getattr(load_settings(), name) == cls() == getattr(Settings.from_config({}), name)


@pytest.mark.parametrize("name", SECTIONS)
def test_a_setting_given_is_taken_and_an_unknown_one_refused(name):
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
    settings = Settings.from_config({name: {key: other}})
    assert getattr(getattr(settings, name), key) == (tuple(other) if isinstance(other, list) else other)
    assert settings.to_config()[name][key] == other  # written back as the file has it
    with pytest.raises(SettingsError) as info:
        Settings.from_config({name: {"no_such_setting": 1}})
    assert (info.value.key, info.value.given) == (f"{name}.no_such_setting", "no_such_setting")
    assert key in info.value.valid


@pytest.mark.parametrize("name", SECTIONS)
def test_a_bad_value_in_any_section_is_refused_naming_it(name):
    """Settings.from_config checks every section against the rules a settings file meets (one validator): a value
    of the wrong kind is refused, naming its key, what was given and what is valid."""
    key, value = next(iter(DEFAULTS[name].items()))
    wrong = 7 if isinstance(value, str) else "no"  # a number for text; text for a number, a switch or a list
    with pytest.raises(SettingsError) as info:
        Settings.from_config({name: {key: wrong}})
    assert (info.value.key, info.value.given) == (f"{name}.{key}", wrong)
    assert info.value.valid
    with pytest.raises(SettingsError) as info:
        Settings.from_config({name: "not a table"})
    assert (info.value.key, info.value.given) == (name, "not a table")


def test_an_unknown_section_is_refused():
    with pytest.raises(SettingsError) as info:
        Settings.from_config({"cleaning": {"cutoff_hz": 6.0}})
    assert (info.value.key, info.value.given) == ("cleaning", "cleaning") and "clean" in info.value.valid


@pytest.mark.parametrize("name", SECTIONS)
def test_the_sections_are_frozen(name):
    """Nothing changes a tree once built: not a setting of a section, nor a section of the tree."""
    settings = load_settings()
    section = getattr(settings, name)
    key = next(iter(DEFAULTS[name]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(section, key, getattr(section, key))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, name, section)
    assert settings == Settings()


def test_the_settings_reach_the_stages(tmp_path):
    ik = Settings.from_config({"ik": {"constraint_weight": "inf", "accuracy": 1e-7, "arms": False}}).ik
    from kinestream.assets import get_assets

    setup = ik_setup(ik, get_assets().ik_setup)
    assert setup.accuracy == 1e-7 and math.isinf(setup.constraint_weight)
    assert not any(m.startswith(("r_lelbow", "L_wrist", "r_mwrist")) for m in setup.marker_weights)
    assert any(m.startswith("r_lelbow") for m in ik_setup(Settings().ik, get_assets().ik_setup).marker_weights)
    cleaner = streaming_cleaner(Settings().override({"clean": {"streaming_filter": "kalman"}}).clean, 3, 60.0)
    assert cleaner.design == "kalman" and streaming_cleaner(Settings().clean, 3, 60.0).design == "one_euro"
    with pytest.raises(SettingsError) as info:
        streaming_cleaner(CleanSettings(cutoff_hz="auto"), 3, 60.0)
    assert (info.value.key, info.value.given) == ("clean.cutoff_hz", "auto")
    assert Settings.from_config({"scale": {"still_window_s": [2.0, 0.5]}}).scale.still_window_s == (2.0, 0.5)


def test_people_and_their_limits_are_checked():
    """[service] max_people and person_timeout_s are settings like the others; [people] holds a table per subject
    (its name one file name and one MQTT topic level) giving a model and/or height and mass."""
    settings = load_settings()
    assert settings.service.max_people == 8 and settings.service.person_timeout_s == 5.0
    assert settings.people == {}
    people = {"ana": {"model": "ana.osim"}, "ben": {"height": 1.92, "mass": 88.0}}
    validate(people_config := {"people": people})
    assert Settings.from_config(people_config).people == {
        "ana": PersonSettings(model="ana.osim"),
        "ben": PersonSettings(height=1.92, mass=88.0),
    }
    assert Settings.from_config(people_config).to_config()["people"] == people
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
        for check in (validate, Settings.from_config):
            with pytest.raises(SettingsError) as info:
                check(bad)
            assert (info.value.key, info.value.given) == (key, given)


def test_an_override_is_new_settings_checked_as_a_file_is():
    """Command-line flags make new settings; the ones they were applied to are left as they were."""
    settings = load_settings()
    before = copy.deepcopy(settings)
    changed = settings.override({"ik": {"solver": "opensim"}, "people": {"ana": {"height": 1.6, "mass": 55.0}}})
    assert isinstance(changed, Settings) and changed is not settings
    assert settings == before and settings.ik.solver == DEFAULTS["ik"]["solver"] != "opensim"
    assert changed.ik.solver == "opensim" and changed.people == {"ana": PersonSettings(height=1.6, mass=55.0)}
    assert changed.ik.accuracy == settings.ik.accuracy  # the rest of the section kept
    assert changed.clean == settings.clean  # and the other sections
    again = changed.override({"clean": {"cutoff_hz": 3.0}, "people": {"ben": {"height": 1.9}}})
    assert again.clean.cutoff_hz == 3.0 and changed.clean == settings.clean
    assert set(again.people) == {"ana", "ben"} and set(changed.people) == {"ana"}
    again.people["cy"] = PersonSettings(height=1.7)  # the new tree shares no table with the old
    assert set(changed.people) == {"ana"}
    with pytest.raises(SettingsError) as info:
        settings.override({"ik": {"solver": "quick"}})
    assert (info.value.key, info.value.given) == ("ik.solver", "quick")
    assert str(info.value).startswith("the command line: [ik] solver = 'quick' is not valid")
    with pytest.raises(SettingsError) as info:  # rules between a section's fields too
        settings.override({"reps": {"knee_start_deg": 58.0}})  # 58 + 5 > min_depth_deg 60
    assert info.value.key == "reps.min_depth_deg"
    assert settings == before


def test_settings_written_back_and_pickled_are_the_same_settings():
    """to_config gives back what from_config takes, and a tree crosses to another process (a batch worker) whole."""
    settings = load_settings().override(
        {
            "clean": {"cutoff_hz": "auto", "reinit_after_frames": 12},
            "scale": {"still_window_s": [2.0, 0.5]},
            "people": {"ana": {"model": "ana.osim"}},
        }
    )
    assert Settings.from_config(settings.to_config()) == settings
    assert settings.to_config()["clean"]["reinit_after_frames"] == 12
    assert "reinit_after_frames" not in Settings().to_config()["clean"]  # unset: left out, as default.toml does
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert pickle.loads(pickle.dumps(Settings())) == Settings()
    assert settings != Settings()


def test_workers_get_no_mqtt_password_nor_curve_keys():
    """for_workers: the settings a batch task carries, the live sections at their defaults and the rest as given."""
    settings = load_settings().override(
        {
            "mqtt": {"password": "mqtt-password-7Qz", "username": "mqtt-user-7Qz"},
            "curve": {"secret_key": "/keys/service.key_secret-7Qz", "server_key": "/keys/service.key-7Qz"},
            "service": {"max_people": 3},
            "people": {"ana": {"height": 1.6}},
            "ik": {"arms": False},
            "clean": {"cutoff_hz": 4.0},
        }
    )
    sent = settings.for_workers()
    assert isinstance(sent, Settings)
    assert sent.mqtt == MqttSettings() and sent.curve == CurveSettings() and sent.service == ServiceSettings()
    assert sent.people == {}
    assert {name for name in DEFAULTS if getattr(sent, name) != getattr(settings, name)} == set(LIVE_ONLY)
    assert sent.ik.arms is False and sent.clean.cutoff_hz == 4.0
    carried = pickle.dumps(sent)
    for secret in (b"mqtt-password-7Qz", b"mqtt-user-7Qz", b"7Qz"):
        assert secret not in carried
    assert settings.mqtt.password == "mqtt-password-7Qz"  # the settings it came from are left as they were
    assert b"mqtt-password-7Qz" in pickle.dumps(settings)  # what the check above would catch


def test_a_default_is_written_once():
    """A setting's default is default.toml's: the code reads a setting from the settings tree (whose defaults are
    default.toml's), never with a second copy of the default beside it (config["output"].get("plot", True))."""
    import re
    from pathlib import Path

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
    # partial settings (a caller's dict) fall back on default.toml, as whole ones do
    assert Settings.from_config({"output": {"c3d": False}}).output.plot is DEFAULTS["output"]["plot"]
    assert Settings.from_config({"output": {"c3d": False}}).output.c3d is False
    assert Settings.from_config(None).subject.name == DEFAULTS["subject"]["name"]
