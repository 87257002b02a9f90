"""Inverse kinematics: marker positions to model coordinates, frame by frame.

The objective is OpenSim's: its weighted marker least squares, with
clamped coordinate ranges and locked coordinates. Two solvers minimise it
(``ik.solver``): "fast" (:mod:`kinestream.fastik`, Newton's method on
OpenSim's own kinematics, the default) and "opensim" (the
InverseKinematicsSolver, driven as OpenSim's InverseKinematicsTool drives
it), the reference the fast one is held to. Either way the first frame starts
from the model's default pose and every later frame from the previous
solution. Marker weights and coordinate tasks come from an IK setup file,
accuracy 1e-5 and constraints enforced exactly by default.

Missing markers (NaN) are left out of a frame's fit. Results are degrees for
rotational coordinates and metres for translations, plus each frame's
weighted-free marker RMS error in millimetres.

- :mod:`~kinestream.solve.setup`: :class:`IKSetup`, :func:`read_ik_setup` (an IK setup file's marker weights
  and coordinate tasks; OpenCap's weights) and :func:`ik_setup` (read with the ``[ik]`` settings), the solver's
  name (:data:`SOLVERS`, :func:`check_solver`) and the fast solver for a model, or why not (:func:`make_fast`);
- :mod:`~kinestream.solve.model`: the model made ready for IK (:func:`load_model`, :func:`attach_markers`,
  :func:`register_joint_centres`, :func:`strip_for_ik`), its coordinates (:func:`coordinate_names`), the markers
  as OpenSim's tables, weights and references (:func:`vec3_table`, :func:`marker_weights`,
  :func:`markers_reference`, :func:`coordinate_references`) and a fit's marker error (:func:`marker_error_mm`);
- :mod:`~kinestream.solve.trial`: :func:`solve_trial`, IK on every frame of a trial (an :class:`IKResult`), and
  :func:`run_ik_tool`, OpenSim's own InverseKinematicsTool, the reference;
- :mod:`~kinestream.solve.stream`: :class:`StreamingIK`, frame-wise IK for a live stream (an :class:`IKFrame` a
  frame), and :func:`streaming_ik`, which builds it from the ``[ik]`` settings.
"""

from kinestream.osim import opensim_module as opensim_module  # solve.opensim_module, as before the split
from kinestream.solve.model import _pair as _pair
from kinestream.solve.model import _rotational as _rotational
from kinestream.solve.model import (
    attach_markers,
    coordinate_names,
    coordinate_references,
    load_model,
    marker_error_mm,
    marker_weights,
    markers_reference,
    register_joint_centres,
    strip_for_ik,
    vec3_table,
)
from kinestream.solve.setup import _IK as _IK
from kinestream.solve.setup import SOLVERS, IKSetup, check_solver, ik_setup, make_fast, read_ik_setup
from kinestream.solve.stream import IKFrame, StreamingIK, streaming_ik
from kinestream.solve.trial import IKResult, run_ik_tool, solve_trial
from kinestream.solve.trial import _solve_trial_fast as _solve_trial_fast
from kinestream.solve.trial import _solve_trial_opensim as _solve_trial_opensim

__all__ = [
    "SOLVERS",
    "IKFrame",
    "IKResult",
    "IKSetup",
    "StreamingIK",
    "attach_markers",
    "check_solver",
    "coordinate_names",
    "coordinate_references",
    "load_model",
    "ik_setup",
    "make_fast",
    "marker_error_mm",
    "marker_weights",
    "markers_reference",
    "read_ik_setup",
    "register_joint_centres",
    "run_ik_tool",
    "solve_trial",
    "streaming_ik",
    "strip_for_ik",
    "vec3_table",
]
