"""Settings: configs/default.toml merged with a user's file and command-line flags."""

from __future__ import annotations

import copy
import difflib
import math
import tomllib
from pathlib import Path
from typing import Any

from kinestream.errors import KinestreamError

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.toml"

# Built-in defaults, used when configs/default.toml is not beside the package
# (an installed wheel). Keep in step with configs/default.toml.
DEFAULTS: dict[str, Any] = {
    "subject": {"name": "subject", "mass": 70.0, "height": 1.75},
    "clean": {
        "max_gap_s": 0.2,
        "gap_method": "pchip",
        "cutoff_hz": 6.0,
        "filter_order": 4,
        "hold_method": "hold",
        "lookahead_frames": 0,
        "max_jump_m": 0.5,
        "max_outlier_frames": 5,
        "streaming_filter": "one_euro",
        "kalman_accel": 1.0,
        "kalman_noise_m": 0.005,
        "one_euro_min_cutoff_hz": 1.0,
        "one_euro_beta": 20.0,
    },
    "augment": {
        "lower_model": "",
        "upper_model": "",
        "floor_offset": False,
        "reset_after_frames": 10,
    },
    "model": {
        "generic_model": "",
        "marker_set": "",
        "scale_setup": "",
        "ik_setup": "",
    },
    "scale": {
        "static": "auto",
        "still_threshold_mm": [3.0, 15.0],
        "still_window_s": [1.0, 0.1],
    },
    "ik": {
        "solver": "fast",
        "accuracy": 1e-5,
        "constraint_weight": "inf",
        "coordinate_tasks": False,
        "arms": True,
        "min_markers": 6,
        "outlier_mm": 150.0,
        "reassemble_mm": 80.0,
    },
    "output": {"plot": True},
    "service": {
        "input": "tcp://127.0.0.1:5555",
        "output": "tcp://127.0.0.1:5556",
        "bind_input": False,
        "allow_remote": False,
        "latest_wins": True,
        "max_lag_ms": 50.0,
        "max_time_jump_s": 3600.0,
        "max_message_bytes": 65536,
        "receive_queue": 1000,
        "send_queue": 1000,
    },
    "mqtt": {
        "broker": "",
        "qos": 0,
        "username": "",
        "password": "",
        "tls": False,
        "ca_file": "",
        "allow_plaintext_password": False,
    },
    "reps": {
        "knee_start_deg": 25.0,
        "hysteresis_deg": 5.0,
        "min_depth_deg": 60.0,
        "deep_knee_deg": 90.0,
        "min_rep_s": 0.5,
        "max_rep_s": 10.0,
        "smooth_hz": 6.0,
    },
    "curve": {"enabled": False, "secret_key": "", "authorized": "", "server_key": ""},
}


# What each setting may be: a type, and for numbers a range (low, high; None: open) or for strings the
# choices. Checked on every file read, so that a typo or a wrong value is one clear line, not ignored.
NUMBER = (int, float)
_POSITIVE = (0.0, None)
SCHEMA: dict[str, dict[str, tuple]] = {
    "subject": {"name": (str, None), "mass": (NUMBER, (10.0, 300.0)), "height": (NUMBER, (0.5, 2.5))},
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
        "reinit_after_frames": (int, (1, 100000)),
    },  # optional: a tenth of a second of frames if unset
    "augment": {
        "lower_model": (str, None),
        "upper_model": (str, None),
        "floor_offset": (bool, None),
        "reset_after_frames": (int, (1, 10000)),
    },
    "model": {
        "generic_model": (str, None),
        "marker_set": (str, None),
        "scale_setup": (str, None),
        "ik_setup": (str, None),
    },
    "scale": {
        "static": (str, None),
        "still_threshold_mm": (list, (NUMBER, 1, 10)),
        "still_window_s": (list, (NUMBER, 1, 10)),
    },
    "ik": {
        "solver": (str, ("fast", "opensim")),
        "accuracy": (NUMBER, (1e-12, 1.0)),
        "constraint_weight": ((*NUMBER, str), ("inf", (0.0, None))),
        "coordinate_tasks": (bool, None),
        "arms": (bool, None),
        "min_markers": (int, (3, 1000)),
        "outlier_mm": (NUMBER, (1.0, None)),
        "reassemble_mm": (NUMBER, (1.0, None)),
    },
    "output": {"plot": (bool, None)},
    "service": {
        "input": (str, None),
        "output": (str, None),
        "bind_input": (bool, None),
        "allow_remote": (bool, None),
        "latest_wins": (bool, None),
        "max_lag_ms": (NUMBER, (1.0, 60000.0)),
        "max_time_jump_s": (NUMBER, (1.0, None)),
        "max_message_bytes": (int, (64, 1 << 24)),
        "receive_queue": (int, (1, 1_000_000)),
        "send_queue": (int, (1, 1_000_000)),
    },
    "mqtt": {
        "broker": (str, None),
        "qos": (int, (0, 2)),
        "username": (str, None),
        "password": (str, None),
        "tls": (bool, None),
        "ca_file": (str, None),
        "allow_plaintext_password": (bool, None),
    },
    "reps": {
        "knee_start_deg": (NUMBER, None),
        "hysteresis_deg": (NUMBER, None),
        "min_depth_deg": (NUMBER, None),
        "deep_knee_deg": (NUMBER, None),
        "min_rep_s": (NUMBER, None),
        "max_rep_s": (NUMBER, None),
        "smooth_hz": (NUMBER, None),
    },  # their ranges: reps.RepSettings.check
    "curve": {"enabled": (bool, None), "secret_key": (str, None), "authorized": (str, None), "server_key": (str, None)},
}


def _describe(kind, rule) -> str:
    if kind is bool:
        return "true or false"
    if kind is list:
        item, low, high = rule
        return f"a list of {low} to {high} numbers"
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
            and all(type(v) in item and math.isfinite(v) for v in value)
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
    """``config`` when every section and key is known and every value valid; else KinestreamError naming the key,
    what was given and what is valid."""
    for section, values in config.items():
        if section not in SCHEMA:
            raise KinestreamError(
                f"{source}: unknown section [{section}]; the sections are {', '.join(f'[{k}]' for k in SCHEMA)}"
            )
        if not isinstance(values, dict):
            raise KinestreamError(f"{source}: [{section}] must be a table of settings, not {values!r}")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                close = difflib.get_close_matches(key, SCHEMA[section], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise KinestreamError(
                    f"{source}: unknown setting [{section}] {key}{hint}; [{section}] has {', '.join(SCHEMA[section])}"
                )
            kind, rule = SCHEMA[section][key]
            if not _valid(value, kind, rule):
                raise KinestreamError(
                    f"{source}: [{section}] {key} = {value!r} is not valid; give {_describe(kind, rule)}"
                )
    return config


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None) -> dict[str, Any]:
    """Return the settings: built-in defaults, then default.toml, then ``path``."""
    config = copy.deepcopy(DEFAULTS)
    files = [DEFAULT_CONFIG] if DEFAULT_CONFIG.is_file() else []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise KinestreamError(f"config file {path} does not exist; give a TOML file such as configs/default.toml")
        files.append(path)
    for file in files:
        try:
            with open(file, "rb") as fh:
                loaded = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise KinestreamError(f"config file {file} is not valid TOML: {exc}") from None
        config = _merge(config, validate(loaded, f"config file {file}"))
    return config
