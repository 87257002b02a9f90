"""The ``[reps]`` and ``[cues]`` sections of the config (:class:`RepSettings`, :class:`CueSettings`).

And the joint angles the counter reads (:data:`KNEES`, :data:`HIPS`). See :mod:`kinestream.reps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kinestream.config import DEFAULTS, Section
from kinestream.errors import SettingsError

KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")
KINDS = ("squat", "sit_to_stand")
MIN_RISE_S = 0.15  # a rise from seated faster than this is a tracking jump, not a person standing up

_REPS = DEFAULTS["reps"]
_CUES = DEFAULTS["cues"]


@dataclass(frozen=True)
class RepSettings(Section):
    """How reps are found and judged; the ``[reps]`` section of the config.

    knee_start_deg   knee flexion (mean of both knees, deg) through which a rep
                     starts (rising) and ends (falling)
    hysteresis_deg   an excursion above knee_start_deg counts only once it
                     reaches knee_start_deg + hysteresis_deg
    min_depth_deg    peak knee flexion a rep needs; shallower: a partial rep
    deep_knee_deg    peak knee flexion that is deep enough (``deep_enough``)
    min_rep_s        shorter excursions are rejected (noise, a stumble)
    max_rep_s        longer ones are rejected (resting crouched); not sitting
    smooth_hz        zero-lag low-pass of the rep's frames before peaks and
                     bottom are taken; 0: off
    seated_knee_deg  seated: knee flexion at least this...
    seated_hip_deg   ...and hip flexion at least this (when known)...
    seated_still_deg ...within this of the greatest knee flexion...
    seated_hold_s    ...held this long (or from the stream's start)
    sit_set_break_s  after a sit-to-stand rep, a rep starting within this is
                     a sit-to-stand rep too
    end_margin_deg   at the stream's end, a rep on its way up within this of
                     knee_start_deg is reported complete
    """

    SECTION: ClassVar[str] = "reps"

    knee_start_deg: float = _REPS["knee_start_deg"]
    hysteresis_deg: float = _REPS["hysteresis_deg"]
    min_depth_deg: float = _REPS["min_depth_deg"]
    deep_knee_deg: float = _REPS["deep_knee_deg"]
    min_rep_s: float = _REPS["min_rep_s"]
    max_rep_s: float = _REPS["max_rep_s"]
    smooth_hz: float = _REPS["smooth_hz"]
    seated_knee_deg: float = _REPS["seated_knee_deg"]
    seated_hip_deg: float = _REPS["seated_hip_deg"]
    seated_still_deg: float = _REPS["seated_still_deg"]
    seated_hold_s: float = _REPS["seated_hold_s"]
    sit_set_break_s: float = _REPS["sit_set_break_s"]
    end_margin_deg: float = _REPS["end_margin_deg"]

    def check(self) -> None:
        """Raise a SettingsError unless the values are usable: each in its range, and in the ranges they set."""

        def bad(name: str, rule: str):
            shown = getattr(self, name)
            raise SettingsError(
                f"[reps] {name}={shown!r} is not valid; it must be {rule}", key=f"reps.{name}", given=shown, valid=rule
            )

        if not 5.0 <= self.knee_start_deg <= 60.0:
            bad("knee_start_deg", "from 5 to 60 degrees of knee flexion")
        if not 0.0 <= self.hysteresis_deg <= 30.0:
            bad("hysteresis_deg", "from 0 to 30 degrees")
        if not self.knee_start_deg + self.hysteresis_deg < self.min_depth_deg <= 160.0:
            bad(
                "min_depth_deg",
                f"above knee_start_deg + hysteresis_deg "
                f"({self.knee_start_deg + self.hysteresis_deg:g}) and at most 160 degrees",
            )
        if not self.min_depth_deg <= self.deep_knee_deg <= 160.0:
            bad("deep_knee_deg", f"from min_depth_deg ({self.min_depth_deg:g}) to 160 degrees")
        if not 0.0 < self.max_rep_s <= 600.0:
            bad("max_rep_s", "above 0 and at most 600 seconds")
        if not 0.0 <= self.min_rep_s < self.max_rep_s:
            bad("min_rep_s", f"from 0 to below max_rep_s ({self.max_rep_s:g}) seconds")
        if not (self.smooth_hz == 0.0 or 1.0 <= self.smooth_hz <= 30.0):
            bad("smooth_hz", "0 (off) or from 1 to 30 Hz")
        if not self.knee_start_deg + self.hysteresis_deg < self.seated_knee_deg <= 160.0:
            bad(
                "seated_knee_deg",
                f"above knee_start_deg + hysteresis_deg ({self.knee_start_deg + self.hysteresis_deg:g}) "
                f"and at most 160 degrees",
            )
        if not 0.0 <= self.seated_hip_deg <= 160.0:
            bad("seated_hip_deg", "from 0 to 160 degrees of hip flexion")
        if not 0.5 <= self.seated_still_deg <= 30.0:
            bad("seated_still_deg", "from 0.5 to 30 degrees")
        if not 0.1 <= self.seated_hold_s <= 60.0:
            bad("seated_hold_s", "from 0.1 to 60 seconds")
        if not 0.0 <= self.sit_set_break_s <= 600.0:
            bad("sit_set_break_s", "from 0 (no sets) to 600 seconds")
        if not 0.0 <= self.end_margin_deg <= self.seated_knee_deg - self.knee_start_deg:
            bad(
                "end_margin_deg",
                f"from 0 to seated_knee_deg - knee_start_deg ({self.seated_knee_deg - self.knee_start_deg:g}) degrees",
            )


@dataclass(frozen=True)
class CueSettings(Section):
    """The cue rules; the ``[cues]`` section of the config (see :mod:`kinestream.reps.events` and default.toml)."""

    SECTION: ClassVar[str] = "cues"

    enabled: bool = _CUES["enabled"]
    max_per_rep: int = _CUES["max_per_rep"]
    knees_out: bool = _CUES["knees_out"]
    knees_out_cm: float = _CUES["knees_out_cm"]
    chest_up: bool = _CUES["chest_up"]
    chest_up_deg: float = _CUES["chest_up_deg"]
    go_deeper: bool = _CUES["go_deeper"]
    go_deeper_deg: float = _CUES["go_deeper_deg"]
    control_the_descent: bool = _CUES["control_the_descent"]
    control_the_descent_s: float = _CUES["control_the_descent_s"]
    even_it_out: bool = _CUES["even_it_out"]
    even_it_out_deg: float = _CUES["even_it_out_deg"]
