"""The rules of the settings file: every section and key default.toml has, and what each may be.

:data:`DEFAULTS` is default.toml read; :func:`validate` judges a dict of sections against it and :data:`RULES`.
The typed tree the program passes around is :class:`kinestream.settings.Settings`, built with these.
"""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from collections.abc import Mapping
from importlib import resources
from typing import Any

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


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``over`` over ``base``, tables merged key by key (neither is changed)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
