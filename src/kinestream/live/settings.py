"""The live service's settings: the ``[service]`` section of the config, its defaults read from default.toml.

default.toml documents each setting, so that no number is written twice. The replay's endpoint and speed are here
too: ``kinestream replay`` reads them before any socket is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from kinestream.config import DEFAULTS, Section
from kinestream.errors import SettingsError

_SERVICE = DEFAULTS["service"]


@dataclass(frozen=True)
class ServiceSettings(Section):
    """``[service]``: where the service listens and publishes, and the limits it keeps."""

    SECTION: ClassVar[str] = "service"

    input: str = _SERVICE["input"]
    output: str = _SERVICE["output"]
    bind_input: bool = _SERVICE["bind_input"]
    allow_plain_input: bool = _SERVICE["allow_plain_input"]
    allow_remote: bool = _SERVICE["allow_remote"]
    latest_wins: bool = _SERVICE["latest_wins"]
    max_lag_ms: float = _SERVICE["max_lag_ms"]
    max_time_jump_s: float = _SERVICE["max_time_jump_s"]
    max_message_bytes: int = _SERVICE["max_message_bytes"]
    receive_queue: int = _SERVICE["receive_queue"]
    send_queue: int = _SERVICE["send_queue"]
    pose_every: int = _SERVICE["pose_every"]
    max_people: int = _SERVICE["max_people"]
    person_timeout_s: float = _SERVICE["person_timeout_s"]
    max_rate_hz: float = _SERVICE["max_rate_hz"]
    people: str = _SERVICE["people"]


#: Where ``kinestream replay`` binds by default: where the service's input connects ([service] input).
REPLAY_ENDPOINT: str = _SERVICE["input"]


def parse_rate(value) -> float:
    """A replay speed factor: a positive number, or "max" (returned as inf)."""
    if isinstance(value, str) and value.strip().lower() in ("max", "inf"):
        return math.inf
    try:
        rate = float(value)
    except (TypeError, ValueError):
        rate = math.nan
    if not rate > 0:
        raise SettingsError(
            f"rate {value!r} is not valid; give a positive speed factor (1 = the trial's "
            f"own frame rate, 2 = twice as fast) or 'max'",
            key="rate",
            given=value,
            valid="a positive speed factor or 'max'",
        )
    return rate
