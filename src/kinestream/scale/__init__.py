"""The generic model scaled to the subject, from a static pose.

Two steps, as OpenCap does them:

1. :func:`find_static_window` looks for the part of the trial where the
   person stood still and upright. Every marker, expressed relative to the
   pelvis centre, must stay inside a box of ``threshold`` mm (per axis, peak to
   peak) for a whole window. The threshold is tried from strict to loose (3 to
   15 mm in 1 mm steps) and, for each threshold, the window from long to short
   (1 s to 0.1 s in 0.1 s steps); the first combination that succeeds wins and,
   within it, the stillest window. The pose must also be upright in every
   frame of the window: knees within 20 degrees of extension (angle between
   thigh and shank, from the hip, knee and ankle centres), hips within 25
   degrees (angle between thigh and the shoulder-to-pelvis line) and the trunk
   within 25 degrees of vertical (+Y is up, as in the model).

2. :func:`scale_model` runs OpenSim's ScaleTool with the measurement-based
   scaling setup (pairs of markers whose distance, measured on the subject
   and on the generic model in its default pose, gives each body's scale
   factor), averaging the static window, preserving the mass distribution and
   setting the subject's mass. Bodies the setup names but the model lacks, and
   marker pairs the trial cannot supply, are left out, so any model works.

   Before any distance is measured, the generic model's markers that define
   a joint centre are put on it (:func:`kinestream.solve.register_joint_centres`): in the
   lab protocol the augmenter learned, the two malleolus markers straddle
   the ankle joint, so their midpoint is the ankle joint centre. The marker
   set Pose2Sim ships puts that midpoint 47 mm above the model's ankle
   joint; left there, it makes the shank 14% too long (1.27 where the thigh
   scales 1.15) and IK rolls the foot against the 60-weight heel marker until
   the subtalar joint sits at its range limit.

   When the person never stood still and upright, the scale factors come from
   segment lengths instead (as Pose2Sim does): over the trial's least-flexed
   frames (hips and knees within 45 degrees of extension), each marker-pair
   distance is a trimmed mean (the 25 % extremes on each side dropped); the
   ratio to the same distance on the generic model gives each measurement's
   factor, which the ScaleTool then applies as a manual scale.

Either way the scaled model is posed by inverse kinematics (the IK setup's
marker weights) on the frames used, and its marker error is reported.
"""

from kinestream.scale.tool import ScaleResult, scale_model
from kinestream.scale.window import StaticWindow, find_static_window, parse_static, pelvis_centre, posture

__all__ = [
    "ScaleResult",
    "StaticWindow",
    "find_static_window",
    "parse_static",
    "pelvis_centre",
    "posture",
    "scale_model",
]
