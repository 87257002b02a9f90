"""Settings: configs/default.toml merged with a user's file and command-line flags."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from .errors import KinestreamError

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
    "ik": {"solver": "fast", "accuracy": 1e-5, "constraint_weight": "inf", "coordinate_tasks": False, "arms": True, "min_markers": 6,
           "outlier_mm": 150.0, "reassemble_mm": 80.0},
    "output": {"plot": True},
    "service": {
        "input": "tcp://127.0.0.1:5555",
        "output": "tcp://127.0.0.1:5556",
        "bind_input": False,
        "allow_remote": False,
        "latest_wins": True,
        "max_lag_ms": 50.0,
        "max_message_bytes": 65536,
        "receive_queue": 1000,
        "send_queue": 1000,
    },
    "mqtt": {"broker": "", "qos": 0, "username": "", "password": "", "tls": False, "ca_file": ""},
    "reps": {"knee_start_deg": 25.0, "hysteresis_deg": 5.0, "min_depth_deg": 60.0, "deep_knee_deg": 90.0,
             "min_rep_s": 0.5, "max_rep_s": 10.0, "smooth_hz": 6.0},
    "curve": {"enabled": False, "secret_key": "", "authorized": "", "server_key": ""},
}


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
                config = _merge(config, tomllib.load(fh))
        except tomllib.TOMLDecodeError as exc:
            raise KinestreamError(f"config file {file} is not valid TOML: {exc}") from None
    return config
