"""Ground truth: a squatting OpenSim model seen by cameras and by a marker lab.

:func:`synthesize` drives the generic model (uniformly scaled) through a
standing phase and a series of bodyweight squats by forward kinematics, and
writes what two measurement systems would have recorded:

- ``keypoints.trc``: the BODY_25 joint-centre keypoints a camera system
  reports (Markers_Body25.xml, ``CHip`` named ``MidHip``, no face points but
  the nose), optionally with seeded Gaussian noise and gaps (NaN);
- ``markers.trc``: the 43 anatomical ``_study`` markers of Markers_LSTM.xml,
  noise-free: what the marker augmenter should output;
- ``coords.mot``: all 40 coordinates (degrees / metres), the joint angles the
  pipeline should recover.

The parts:

- :mod:`~kinestream.synth.model`: :func:`truth_model` (the generic model, scaled uniformly, with both marker
  sets) and :func:`generic_height` (its standing height, sole to top of head, from the meshes);
- :mod:`~kinestream.synth.squat`: the timeline and the squat design (standing posture, squat shapes, depths,
  sway: :func:`squat_starts`, :func:`max_squats`), :class:`Squat`, and the form, designed, checked and measured
  (:func:`trunk_lean`, :func:`knee_valgus`);
- :mod:`~kinestream.synth.kinematics`: the model posed by coordinate values, the feet kept planted;
- :mod:`~kinestream.synth.trial`: :func:`synthesize`, its :class:`SynthResult` and the keypoints' :class:`Gap`;
- :mod:`~kinestream.synth.study`: :func:`synthesize_study`, a small study in ``batch``'s plain layout;
- :mod:`~kinestream.synth.moves`: :func:`drive_model`, walking, squatting and jumping (``MOVES``) on any model.
"""

from kinestream.synth.model import generic_height, truth_model
from kinestream.synth.moves import MOVES, drive_model
from kinestream.synth.squat import (
    ARM_DEPTH_MAX,
    DEPTHS,
    DESCENT_S,
    HALF_SQUAT_DEG,
    LEFT_ARM,
    LEFT_LEG,
    MAX_ASYMMETRY_DEG,
    MAX_DEPTH_DEG,
    MAX_STANCE_TURN_DEG,
    MAX_SWAY_DEG,
    MIN_DEPTH_DEG,
    MIN_DESCENT_S,
    MIN_SECONDS,
    PAUSE_S,
    SQUAT_S,
    STAND_S,
    SWAY_RAMP_S,
    TRUNK_LEAN_DEG,
    VALGUS_CM,
    Squat,
    knee_valgus,
    max_squats,
    squat_starts,
    trunk_lean,
)
from kinestream.synth.study import synthesize_study
from kinestream.synth.trial import FOOT_CLEARANCE, MAX_FS, MIN_FS, Gap, SynthResult, synthesize

__all__ = [
    "ARM_DEPTH_MAX",
    "DEPTHS",
    "DESCENT_S",
    "FOOT_CLEARANCE",
    "HALF_SQUAT_DEG",
    "LEFT_ARM",
    "LEFT_LEG",
    "MAX_ASYMMETRY_DEG",
    "MAX_DEPTH_DEG",
    "MAX_FS",
    "MAX_STANCE_TURN_DEG",
    "MAX_SWAY_DEG",
    "MIN_DEPTH_DEG",
    "MIN_DESCENT_S",
    "MIN_FS",
    "MIN_SECONDS",
    "MOVES",
    "PAUSE_S",
    "SQUAT_S",
    "STAND_S",
    "SWAY_RAMP_S",
    "TRUNK_LEAN_DEG",
    "VALGUS_CM",
    "Gap",
    "Squat",
    "SynthResult",
    "drive_model",
    "generic_height",
    "knee_valgus",
    "max_squats",
    "squat_starts",
    "synthesize",
    "synthesize_study",
    "trunk_lean",
    "truth_model",
]
