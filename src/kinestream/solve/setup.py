"""The IK setup: marker weights and coordinate tasks, the ``[ik]`` defaults, and the solver.

An OpenSim IK setup file's marker weights and coordinate tasks (:class:`IKSetup`, :func:`read_ik_setup`), the ``[ik]``
defaults, and the solver: its name checked (:func:`check_solver`), and the fast one built for a model, or why not
(:func:`make_fast`). See :mod:`kinestream.solve`.

Marker weights and coordinate tasks come from an IK setup file (OpenCap's: calcaneus 60; knee, ankle, toe and 5th
metatarsal 30; ASIS, PSIS and hip joint centres 25; upper body 5; thigh and shank clusters 4), accuracy 1e-5 and
constraints enforced exactly by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kinestream.augment import UPPER_MARKERS
from kinestream.config import DEFAULTS, SOLVERS
from kinestream.errors import AssetError, KinestreamError, SettingsError
from kinestream.fastik import FastIK
from kinestream.osim import opensim_module
from kinestream.settings import IKSettings

_IK = DEFAULTS["ik"]


@dataclass
class IKSetup:
    """Marker weights and coordinate tasks from an OpenSim IK setup file."""

    marker_weights: dict[str, float]
    coordinate_tasks: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # name -> (weight, value)
    accuracy: float = 1e-5
    constraint_weight: float = math.inf


def read_ik_setup(path: str | Path, coordinate_tasks: bool = False) -> IKSetup:
    """Marker weights (and, if asked, coordinate tasks) of an InverseKinematicsTool setup file.

    Coordinate tasks are left out by default: Pose2Sim's setup pulls
    L5_S1_Flex_Ext towards 0, which in a squat with 20 deg of lumbar flexion
    tilts the pelvis and biases hip flexion by up to 14 deg.
    """
    osim = opensim_module()
    path = Path(path)
    if not path.is_file():
        raise AssetError(
            f"IK setup file {path} does not exist; give an OpenSim InverseKinematicsTool setup file",
            given=path,
            valid="an OpenSim InverseKinematicsTool setup file",
        )
    try:
        tool = osim.InverseKinematicsTool(str(path), False)
    except Exception as exc:
        raise AssetError(
            f"{path} is not an OpenSim IK setup file: {exc}",
            given=path,
            valid="an OpenSim InverseKinematicsTool setup file",
        ) from None
    tasks = tool.getIKTaskSet()
    weights: dict[str, float] = {}
    coords: dict[str, tuple[float, float | None]] = {}
    for i in range(tasks.getSize()):
        task = tasks.get(i)
        if not task.getApply():
            continue
        if task.getConcreteClassName() == "IKMarkerTask":
            weights[task.getName()] = task.getWeight()
        elif task.getConcreteClassName() == "IKCoordinateTask":
            ctask = osim.IKCoordinateTask.safeDownCast(task)
            value = ctask.getValue() if ctask.getValueType() == ctask.ManualValue else None
            coords[task.getName()] = (task.getWeight(), value)
    return IKSetup(weights, coords if coordinate_tasks else {}, tool.get_accuracy(), tool.get_constraint_weight())


def check_solver(solver: str) -> str:
    """The IK solver's name, or a clear error naming the valid ones."""
    if solver not in SOLVERS:
        raise SettingsError(
            f"IK solver {solver!r} is not known; give one of {', '.join(SOLVERS)} (ik.solver, --solver)",
            key="ik.solver",
            given=solver,
            valid=list(SOLVERS),
        )
    return solver


def make_fast(model, setup: IKSetup, names: list[str], state=None, tolerance: float = _IK["tolerance"], like=None):
    """The fast solver for this model, or (None, why) when the model needs OpenSim's own.

    It stops at ``tolerance`` (``[ik] tolerance``); ``like``: a fast solver on the same model whose knowledge of it this
    one shares.
    """
    try:
        return FastIK(model, setup, names, state=state, ftol=float(tolerance), like=like), None
    except KinestreamError as exc:
        return None, f"OpenSim's IK solver instead of the fast one: {exc}"


def ik_setup(settings: IKSettings, path: str | Path) -> IKSetup:
    """The IK setup file at ``path`` read with the ``[ik]`` settings applied.

    Its coordinate tasks only when ``coordinate_tasks`` is on, no arm markers when ``arms`` is off, and the
    settings' accuracy and constraint weight ("inf": the constraints enforced exactly).
    """
    setup = read_ik_setup(path, coordinate_tasks=bool(settings.coordinate_tasks))
    setup.accuracy = float(settings.accuracy)
    cw = settings.constraint_weight
    setup.constraint_weight = math.inf if str(cw).lower() == "inf" else float(cw)
    if not settings.arms:
        setup.marker_weights = {k: v for k, v in setup.marker_weights.items() if k not in UPPER_MARKERS}
    return setup
