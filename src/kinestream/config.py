"""Settings: the package's default.toml merged with a user's file and command-line flags."""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Self

from kinestream.checks import HEIGHT_M, MASS_KG, subject_id
from kinestream.errors import KinestreamError, SettingsError

DEFAULT_FILE = "default.toml"  # inside the package (configs/default.toml links to it): every setting, documented


def _read_defaults() -> dict[str, Any]:
    with resources.files("kinestream").joinpath(DEFAULT_FILE).open("rb") as fh:
        return tomllib.load(fh)


#: Every setting and its default, read from the package's default.toml: the one source of both.
DEFAULTS: dict[str, Any] = _read_defaults()

# What a setting may be beyond its default's type: for numbers a range (low, high; None: open), for text the
# choices; and the kind where a setting takes a number or a word ("auto", "inf"). Every key here must be in
# default.toml (a test checks), except OPTIONAL ones, which have no default.
NUMBER = (int, float)
SOLVERS = ("fast", "opensim")  # ik.solver: kinestream.fastik's Newton solver, or OpenSim's own
RULES: dict[str, dict[str, tuple]] = {
    "subject": {"mass": (NUMBER, MASS_KG), "height": (NUMBER, HEIGHT_M)},  # the ranges every stage checks
    "ingest": {"up": (str, ("y", "z"))},  # rotate: its form is ingest.parse_rotate's
    "clean": {
        "max_gap_s": (NUMBER, (0.0, 10.0)),
        "gap_method": (str, ("pchip", "linear")),
        "cutoff_hz": ((*NUMBER, str), ("auto", (0.1, 100.0))),
        "filter_order": (int, (1, 8)),
        "hold_method": (str, ("hold", "extrapolate")),
        "lookahead_frames": (int, (0, 120)),
        "max_jump_m": (NUMBER, (0.01, 10.0)),
        "max_outlier_frames": (int, (1, 1000)),
        "streaming_filter": (str, ("butterworth", "kalman", "one_euro")),
        "kalman_accel": (NUMBER, (0.01, 10000.0)),
        "kalman_noise_m": (NUMBER, (1e-5, 1.0)),
        "one_euro_min_cutoff_hz": (NUMBER, (0.01, 100.0)),
        "one_euro_beta": (NUMBER, (0.0, 10000.0)),
    },
    "augment": {"reset_after_frames": (int, (1, 10000))},
    "scale": {
        "still_threshold_mm": (list, (NUMBER, 1, 10)),
        "still_window_s": (list, (NUMBER, 1, 10)),
        "joint_centre_markers": (list, ((str,), 0, 100)),
    },
    "ik": {
        "solver": (str, SOLVERS),
        "accuracy": (NUMBER, (1e-12, 1.0)),
        "tolerance": (NUMBER, (1e-15, 1e-2)),
        "constraint_weight": ((*NUMBER, str), ("inf", (0.0, None))),
        "min_markers": (int, (3, 1000)),
        "outlier_mm": (NUMBER, (1.0, None)),
        "reassemble_mm": (NUMBER, (1.0, None)),
    },
    "service": {
        "max_lag_ms": (NUMBER, (1.0, 60000.0)),
        "max_time_jump_s": (NUMBER, (1.0, None)),
        "max_message_bytes": (int, (64, 1 << 24)),
        "receive_queue": (int, (1, 1_000_000)),
        "send_queue": (int, (1, 1_000_000)),
        "pose_every": (int, (0, 100_000)),
        "max_people": (int, (1, 64)),  # the source keeps the clocks of 64 subjects
        "person_timeout_s": (NUMBER, (0.1, 86400.0)),
        "max_rate_hz": (NUMBER, (1.0, 100_000.0)),
    },
    "mqtt": {"qos": (int, (0, 2))},
    # [reps]: numbers; their ranges and how they relate are reps.RepSettings.check's
    "cues": {
        "max_per_rep": (int, (1, 2)),
        "knees_out_cm": (NUMBER, (0.0, 20.0)),
        "chest_up_deg": (NUMBER, (0.0, 90.0)),
        "go_deeper_deg": (NUMBER, (0.0, 160.0)),
        "control_the_descent_s": (NUMBER, (0.0, 10.0)),
        "even_it_out_deg": (NUMBER, (0.0, 90.0)),
    },
}
#: Settings without a default: unset, the code derives them.
OPTIONAL: dict[str, dict[str, tuple]] = {
    "clean": {"reinit_after_frames": (int, (1, 100000))},  # unset: a tenth of a second of frames
}


def _kind(default) -> type | tuple:
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return NUMBER
    if isinstance(default, list):
        return list
    return str


def _schema() -> dict[str, dict[str, tuple]]:
    """Section -> key -> (kind, rule): the keys and kinds from DEFAULTS, the rules from RULES and OPTIONAL."""
    schema: dict[str, dict[str, tuple]] = {}
    for section, values in DEFAULTS.items():
        rules = RULES.get(section, {})
        schema[section] = {key: rules.get(key, (_kind(default), None)) for key, default in values.items()}
        schema[section].update(OPTIONAL.get(section, {}))
    return schema


SCHEMA = _schema()


def _describe(kind, rule) -> str:
    if kind is bool:
        return "true or false"
    if kind is list:
        item, low, high = rule
        return f"a list of {low} to {high} {'texts' if item == (str,) else 'numbers'}"
    parts = []
    if isinstance(rule, tuple) and rule and all(isinstance(r, str) for r in rule):
        return "one of " + ", ".join(f'"{r}"' for r in rule)
    rng = rule
    if isinstance(rule, tuple) and rule and isinstance(rule[0], str):  # a word or a number
        parts.append(f'"{rule[0]}"')
        rng = rule[1]
    noun = "a whole number" if kind is int else "a number" if kind in (NUMBER, (*NUMBER, str)) else "text"
    if rng is not None and not (isinstance(rng, tuple) and rng and isinstance(rng[0], str)):
        low, high = rng
        noun += (f" from {low:g}" if low is not None else "") + (f" to {high:g}" if high is not None else "")
    parts.append(noun)
    return " or ".join(parts)


def _valid(value, kind, rule) -> bool:
    if kind is bool:
        return type(value) is bool
    if kind is int:
        ok = type(value) is int
    elif kind is list:
        item, low, high = rule
        return (
            isinstance(value, list)
            and low <= len(value) <= high
            and all(type(v) in item and (type(v) is str or math.isfinite(v)) for v in value)
        )
    elif kind is str:
        return type(value) is str and (rule is None or value in rule)
    else:  # a number, perhaps or a word
        if type(value) is str:
            return isinstance(rule, tuple) and bool(rule) and value == rule[0]
        ok = type(value) in NUMBER and math.isfinite(value)
        if isinstance(rule, tuple) and rule and isinstance(rule[0], str):
            rule = rule[1]
    if not ok or rule is None:
        return ok
    low, high = rule
    return (low is None or value >= low) and (high is None or value <= high)


def validate(config: dict, source: str = "the settings") -> dict:
    """``config`` when every section and key is known and every value valid.

    Otherwise a KinestreamError naming the key, what was given and what is valid.
    """
    for section, values in config.items():
        if section not in SCHEMA:
            raise SettingsError(
                f"{source}: unknown section [{section}]; the sections are {', '.join(f'[{k}]' for k in SCHEMA)}",
                given=section,
                valid=list(SCHEMA),
                key=section,
            )
        if not isinstance(values, dict):
            raise SettingsError(
                f"{source}: [{section}] must be a table of settings, not {values!r}",
                key=section,
                given=values,
                valid="a table of settings",
            )
        if section == "people":
            _validate_people(values, source)
            continue
        for key, value in values.items():
            if key not in SCHEMA[section]:
                close = difflib.get_close_matches(key, SCHEMA[section], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise SettingsError(
                    f"{source}: unknown setting [{section}] {key}{hint}; [{section}] has {', '.join(SCHEMA[section])}",
                    key=f"{section}.{key}",
                    given=key,
                    valid=list(SCHEMA[section]),
                )
            kind, rule = SCHEMA[section][key]
            if not _valid(value, kind, rule):
                raise SettingsError(
                    f"{source}: [{section}] {key} = {value!r} is not valid; give {_describe(kind, rule)}",
                    key=f"{section}.{key}",
                    given=value,
                    valid=list(rule) if kind is str and rule else _describe(kind, rule),  # choices: the list
                )
    return config


PERSON_KEYS = ("model", "height", "mass")  # what a subject's table in [people] may give


def _validate_people(people: dict, source: str) -> None:
    """[people]: a table per subject (its id a :func:`kinestream.checks.subject_id`).

    Each gives ``model`` (a path) and/or ``height`` and ``mass`` (the [subject] ranges).
    """
    for name, entry in people.items():
        try:
            subject_id(f"{source}: [people] subject", name)
        except KinestreamError as exc:
            raise SettingsError(str(exc), key="people", given=name, valid=exc.valid) from None
        if not isinstance(entry, dict) or not entry:
            raise SettingsError(
                f'{source}: [people.{name}] = {entry!r} is not valid; give a table with model = "PATH" and/or '
                "height = M and mass = KG",
                key=f"people.{name}",
                given=entry,
                valid="a table with model and/or height and mass",
            )
        for key, value in entry.items():
            if key not in PERSON_KEYS:
                raise SettingsError(
                    f"{source}: unknown setting [people.{name}] {key}; give {', '.join(PERSON_KEYS)}",
                    key=f"people.{name}.{key}",
                    given=key,
                    valid=list(PERSON_KEYS),
                )
            kind, rule = (str, None) if key == "model" else RULES["subject"][key]
            if not _valid(value, kind, rule) or value == "":
                raise SettingsError(
                    f"{source}: [people.{name}] {key} = {value!r} is not valid; give "
                    f"{'the path of a scaled .osim' if key == 'model' else _describe(kind, rule)}",
                    key=f"people.{name}.{key}",
                    given=value,
                    valid="the path of a scaled .osim" if key == "model" else _describe(kind, rule),
                )


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def override(config: dict, changes: dict, source: str = "the command line") -> dict[str, Any]:
    """A new config: ``changes`` (section -> key -> value) over ``config``, checked as a file's settings are.

    ``config`` itself is left as it was: a command-line flag or a caller's dict makes a new config, it never
    changes the one it was given (which another part of the program may still hold).
    """
    return _merge(config, validate(copy.deepcopy(changes), source))


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Return the settings: the package's default.toml, then the file at ``path`` over it."""
    config = copy.deepcopy(DEFAULTS)
    if path is None:
        return config
    path = Path(path)
    if not path.is_file():
        raise SettingsError(
            f"config file {path} does not exist; give a TOML file with the settings to change (every setting "
            f"and its default: configs/default.toml, or 'kinestream config')",
            given=path,
            valid="a TOML file",
        )
    try:
        with open(path, "rb") as fh:
            loaded = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}", given=path, valid="a TOML file") from None
    return _merge(config, validate(loaded, f"config file {path}"))


def setting(config: dict | None, section_name: str, key: str) -> Any:
    """``config[section_name][key]``, or default.toml's value where ``config`` leaves it out.

    A partial config (a caller's dict, the sections a batch task carries) reads the same defaults as a whole one:
    the fallback is default.toml's, never a second copy of it written in the code.
    """
    values = (config or {}).get(section_name) or {}
    return values[key] if key in values else DEFAULTS[section_name][key]


def _section(config: dict | None, name: str, settings_cls) -> dict[str, Any]:
    """The values for the settings dataclass ``settings_cls`` from ``config[name]``, missing ones from its defaults.

    Its field defaults are read from default.toml; a key the class does not know is a KinestreamError.

    ``config`` is a whole config (as :func:`load_config` returns) or None for the defaults.
    """
    import dataclasses

    given = (config or {}).get(name) or {}
    if not isinstance(given, dict):
        raise SettingsError(
            f"[{name}] must be a table of settings, not {given!r}", key=name, given=given, valid="a table of settings"
        )
    known = {f.name: f.default for f in dataclasses.fields(settings_cls)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise SettingsError(
            f"[{name}] has unknown setting(s) {', '.join(unknown)}; the settings are {', '.join(known)}",
            key=name,
            given=unknown,
            valid=list(known),
        )
    return {key: given.get(key, default) for key, default in known.items()}


class Section:
    """What every settings dataclass of one config section shares: how it is read from a config.

    A subclass is a frozen dataclass whose fields are the keys of its section ``SECTION``, their defaults
    default.toml's. :meth:`from_config` reads the section, fills what is missing from those defaults, refuses an
    unknown key and checks every value against the same rules a settings file meets (:func:`validate`: the key,
    the value given and what is valid in the error); lists become tuples (the dataclasses are frozen). A subclass
    with rules between its fields says them in :meth:`check`, which :meth:`from_config` calls last.
    """

    SECTION: ClassVar[str]

    @classmethod
    def from_config(cls, config: dict | None) -> Self:
        """The settings of ``config[SECTION]`` (``config`` a whole config, or None for the defaults)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in _section(config, cls.SECTION, cls).items()}
        validate({cls.SECTION: {k: v for k, v in values.items() if v is not None}}, "the settings")
        settings = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse, with a SettingsError, values :data:`RULES` cannot judge: ranges that depend on other fields."""
