"""What ``kinestream replay`` reads before any socket is made: its default endpoint and its speed.

The live service's own settings are ``[service]`` of :class:`kinestream.settings.Settings`
(:class:`kinestream.settings.ServiceSettings`); this module holds no ZeroMQ, so that the command line can read these
without loading the live path.
"""

from __future__ import annotations

import math

from kinestream.errors import SettingsError
from kinestream.settings import ServiceSettings

#: Where ``kinestream replay`` binds by default: where the service's input connects ([service] input).
REPLAY_ENDPOINT: str = ServiceSettings().input


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
