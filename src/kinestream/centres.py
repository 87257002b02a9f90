"""Joint centres of the model in ground, by OpenSim's own kinematics (metres, Y up).

The rep counter's positional measures (below parallel, knee valgus, trunk lean)
read them: hips, knees and ankles are the origins of the femur, tibia and talus
bodies, shoulders the origins of the humerus bodies (the shoulder joint
centres; a model without arms has no shoulders: NaN). They are read live
from the IK solver's posed state (:func:`centres_array`), offline by posing
the model from a recorded .mot (:func:`joint_centres`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kinestream.assets import get_assets
from kinestream.errors import SolverError
from kinestream.files.mot import Motion
from kinestream.osim import opensim_module, read_model

# Joint centres: name -> body whose origin it is. The torso's long axis rides along as "torso_axis".
CENTRE_BODIES = {
    "pelvis": "pelvis",
    "hip_r": "femur_r",
    "hip_l": "femur_l",
    "knee_r": "tibia_r",
    "knee_l": "tibia_l",
    "ankle_r": "talus_r",
    "ankle_l": "talus_l",
    "torso": "torso",
    "shoulder_r": "humerus_r",
    "shoulder_l": "humerus_l",
}
OPTIONAL_BODIES = ("humerus_r", "humerus_l")  # a model without arms: its shoulder centres are NaN


TORSO_AXIS = "torso_axis"  # unit vector (not a point): the torso frame's Y axis in ground


def _load_model(model):
    """An OpenSim model and a fresh state from a path (or a model as it is)."""
    if isinstance(model, (str, Path)):
        model = read_model(model)
    state = model.initSystem()
    return model, state


def _bodies(model) -> dict:
    """Name -> body of each joint centre; None for an optional body the model lacks."""
    bodies = model.getBodySet()
    needed = [b for b in CENTRE_BODIES.values() if b not in OPTIONAL_BODIES]
    missing = [b for b in needed if not bodies.contains(b)]
    if missing:
        raise SolverError(
            f"the model {model.getName()!r} has no body {', '.join(missing)}; the joint centres "
            f"need the bodies {', '.join(needed)} (OpenSim's gait models, "
            f"Pose2Sim's and OpenCap's have them)",
            given=missing,
            valid=needed,
        )
    return {name: bodies.get(body) if bodies.contains(body) else None for name, body in CENTRE_BODIES.items()}


def _centres(bodies: dict, state, vec_y) -> dict[str, np.ndarray]:
    out = {
        name: body.getPositionInGround(state).to_numpy().copy() if body is not None else np.full(3, np.nan)
        for name, body in bodies.items()
    }
    out[TORSO_AXIS] = bodies["torso"].expressVectorInGround(state, vec_y).to_numpy().copy()
    return out


CENTRE_KEYS = (*CENTRE_BODIES, TORSO_AXIS)  # the rows of centres_array


def centres_array(model, state) -> np.ndarray:
    """:func:`centres_from_state` as one (len(CENTRE_KEYS), 3) array: what an IK process sends back."""
    model.realizePosition(state)  # returns at once when already realized
    return StateCentres(model).of(state)


class StateCentres:
    """:func:`centres_array` frame after frame on one model, its bodies looked up once.

    ``of(state)`` takes a state realized to Position.
    """

    def __init__(self, model):

        self._bodies = _bodies(model)
        self._y = opensim_module().Vec3(0.0, 1.0, 0.0)

    def of(self, state) -> np.ndarray:
        """The joint centres at ``state``, a state realized to Position: (len(CENTRE_KEYS), 3), metres."""
        centres = _centres(self._bodies, state, self._y)
        return np.stack([centres[k] for k in CENTRE_KEYS])


def centres_dict(rows: np.ndarray | None) -> dict[str, np.ndarray] | None:
    """The dict form of a :func:`centres_array` (None stays None)."""
    if rows is None:
        return None
    return {k: rows[i] for i, k in enumerate(CENTRE_KEYS)}


def centres_from_state(model, state) -> dict[str, np.ndarray]:
    """Joint centres of a posed model, in ground (metres, Y up), from a state realized to Position.

    Keys: ``hip_r``/``hip_l`` (femur origins), ``knee_r``/``knee_l`` (tibia
    origins), ``ankle_r``/``ankle_l`` (talus origins), ``shoulder_r``/``shoulder_l``
    (humerus origins; NaN without arms), ``pelvis`` and ``torso`` (body
    origins), and ``torso_axis``: the torso frame's Y axis, a unit vector.
    For many frames, :class:`CentresFromModel` avoids looking the bodies up
    each time.
    """
    model.realizePosition(state)  # returns at once when already realized
    return _centres(_bodies(model), state, opensim_module().Vec3(0.0, 1.0, 0.0))


class CentresFromModel:
    """Joint centres frame by frame from one model: pose it from coordinate values, read the centres.

    ``model``: a path to an .osim file or an OpenSim model (a state of its
    own is made either way). ``frame(coords, q)`` poses the model from values
    in degrees (rotations) and metres; names the model lacks are ignored.
    A state posed elsewhere (by an IK solver) is read by :func:`centres_from_state`.
    """

    def __init__(self, model):

        osim = opensim_module()
        self.model, self.state = _load_model(model)
        self._bodies = _bodies(self.model)
        self._y = osim.Vec3(0.0, 1.0, 0.0)
        cs = self.model.getCoordinateSet()
        self._coords = {cs.get(i).getName(): cs.get(i) for i in range(cs.getSize())}
        self._rotational = {n: c.getMotionType() == osim.Coordinate.Rotational for n, c in self._coords.items()}
        self._plan: tuple[tuple[str, ...], list] | None = None

    def frame(self, coords: list[str], q, in_degrees: bool = True) -> dict[str, np.ndarray]:
        """Centres with the model posed at ``q`` (ordered as ``coords``); all NaN if a used value is not finite."""
        key = tuple(coords)
        if self._plan is None or self._plan[0] != key:
            plan = [
                (j, self._coords[n], self._rotational[n] and in_degrees)
                for j, n in enumerate(coords)
                if n in self._coords
            ]
            self._plan = (key, plan)
        q = np.asarray(q, dtype=float)
        values = [(c, math.radians(q[j]) if deg else float(q[j])) for j, c, deg in self._plan[1]]
        if not all(math.isfinite(v) for _, v in values):
            return {name: np.full(3, np.nan) for name in (*CENTRE_BODIES, TORSO_AXIS)}
        for c, v in values:
            c.setValue(self.state, v, False)
        self.model.realizePosition(self.state)
        return _centres(self._bodies, self.state, self._y)


def joint_centres(model_path, motion: Motion) -> dict[str, np.ndarray]:
    """Joint centres (frames, 3) for every frame of a motion, by forward kinematics of ``model_path``.

    ``model_path``: a .osim path, or None for the generic model. Frames with a
    non-finite coordinate give NaN. Keys as :func:`centres_from_state`.
    """
    if model_path is None:
        model_path = get_assets().generic_model
    fk = CentresFromModel(model_path)
    names = (*CENTRE_BODIES, TORSO_AXIS)
    out = {name: np.full((len(motion.time), 3), np.nan) for name in names}
    for i in range(len(motion.time)):
        frame = fk.frame(motion.names, motion.values[i], motion.in_degrees)
        for name in names:
            out[name][i] = frame[name]
    return out


class BodyPoses:
    """Every body of a model posed in ground, what an avatar needs: position and orientation of each body frame.

    ``names``: the bodies, in the model's order. :meth:`of` reads them from a state realized to Position (an IK
    solver's): an (N, 7) array of position (metres, Y up) and unit quaternion (w, x, y, z), body frame to ground.
    """

    def __init__(self, model):
        bodies = model.getBodySet()
        self._bodies = [bodies.get(i) for i in range(bodies.getSize())]
        self.names = [b.getName() for b in self._bodies]

    def of(self, state) -> np.ndarray:
        """Every body's pose in ground at ``state``: (bodies, 7), position then unit quaternion, as the class says."""
        from scipy.spatial.transform import Rotation

        position = np.empty((len(self._bodies), 3))
        angles = np.empty((len(self._bodies), 3))
        for k, body in enumerate(self._bodies):
            pose = body.getTransformInGround(state)
            position[k] = pose.p().to_numpy()
            angles[k] = pose.R().convertRotationToBodyFixedXYZ().to_numpy()  # one call, not nine
        quaternion = Rotation.from_euler("XYZ", angles).as_quat()[:, [3, 0, 1, 2]]  # SciPy gives x, y, z, w
        quaternion *= np.where(quaternion[:, :1] < 0, -1.0, 1.0)  # one of the two signs: w >= 0
        return np.hstack([position, quaternion])
