"""The joint angles the rep counter reads (:data:`KNEES`, :data:`HIPS`), the kinds of rep, and a rise's limit.

Its settings are :class:`~kinestream.settings.RepSettings` and :class:`~kinestream.settings.CueSettings`, the
``[reps]`` and ``[cues]`` sections. See :mod:`kinestream.reps`.
"""

from __future__ import annotations

KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")
KINDS = ("squat", "sit_to_stand")
MIN_RISE_S = 0.15  # a rise from seated faster than this is a tracking jump, not a person standing up
