"""The model posed by coordinate values (:class:`_Kinematics`), and the feet kept planted (:class:`_FootClosure`).

Feet stay planted. A designed pose does not in general keep both feet where
they stood (the legs form a closed chain through the floor), so each frame is
the pose closest to the design, in a weighted sense, that keeps the calcaneus,
first-toe and fifth-metatarsal markers of both feet exactly at their standing
positions. Knees, hip flexion and pelvic tilt are weighted heavily (they follow
the design to within about a degree); the pelvis translations, pelvic
list and rotation, hip ad/abduction and rotation, ankles and subtalar joints
absorb the closure. The pose is found by Gauss-Newton steps with analytic
station Jacobians from the multibody system.
"""

from __future__ import annotations

import numpy as np

from kinestream.errors import SolverError
from kinestream.osim import opensim_module

# Coordinates the foot closure may move, with the weight (per radian, per
# metre for translations) of a departure from the design.
_FREE = {
    "pelvis_tilt": 20.0,
    "pelvis_list": 10.0,
    "pelvis_rotation": 10.0,
    "pelvis_tx": 0.01,
    "pelvis_ty": 0.01,
    "pelvis_tz": 0.01,
    **{
        f"{c}_{s}": w
        for s in "rl"
        for c, w in (
            ("hip_flexion", 20.0),
            ("hip_adduction", 2.0),
            ("hip_rotation", 2.0),
            ("knee_angle", 50.0),
            ("ankle_angle", 5.0),
            ("subtalar_angle", 2.0),
        )
    },
}
# Markers held at their standing positions (all fixed to the calcaneus bodies).
_PLANTED = ["r_calc_study", "r_toe_study", "r_5meta_study", "L_calc_study", "L_toe_study", "L_5meta_study"]


class _Kinematics:
    """One model and one state, posed by coordinate values in model units."""

    def __init__(self, model, state):
        self.model, self.state = model, state
        coords = model.getCoordinateSet()
        self.coords = [coords.get(i) for i in range(coords.getSize())]
        self.names = [c.getName() for c in self.coords]
        self.rotational = np.array([c.getMotionType() == 1 for c in self.coords])
        self.ranges = np.array([[c.getRangeMin(), c.getRangeMax()] for c in self.coords])
        # Position of each coordinate in the state's Q. Every joint of this model
        # has qdot = u, so it is also the column of the velocity Jacobians.
        if state.getNQ() != state.getNU():
            raise SolverError(
                "the model has joints whose speeds are not coordinate rates; "
                "the squat generator needs a model without ball or free joints",
                valid="a model without ball or free joints",
            )
        self.qindex = np.empty(len(self.coords), dtype=int)
        for j, c in enumerate(self.coords):
            before = state.getQ().to_numpy().copy()
            value = c.getValue(state)
            c.setValue(state, value + 0.5, False)
            self.qindex[j] = int(np.flatnonzero(state.getQ().to_numpy() != before)[0])
            c.setValue(state, value, False)
        self.matter = model.getMatterSubsystem()

    def to_model_units(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rotational, np.radians(values), values)

    def to_file_units(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.rotational, np.degrees(values), values)

    def pose(self, q: np.ndarray, which=None) -> None:
        for j in range(len(self.coords)) if which is None else which:
            self.coords[j].setValue(self.state, float(q[j]), False)
        self.model.realizePosition(self.state)

    def locations(self, markers) -> np.ndarray:
        return np.array([m.getLocationInGround(self.state).to_numpy() for m in markers])


class _FootClosure:
    """Nearest pose to a design that keeps both feet at their standing placement."""

    def __init__(self, kin: _Kinematics, q_stand: np.ndarray):
        osim = opensim_module()
        self.kin = kin
        marker_set = kin.model.getMarkerSet()
        self.markers = [marker_set.get(n) for n in _PLANTED]
        self.stations = []
        for m in self.markers:
            body = kin.model.getBodySet().get(m.getParentFrame().getName())
            self.stations.append((body.getMobilizedBodyIndex(), osim.Vec3(m.get_location())))
        self.free = np.array([kin.names.index(n) for n in _FREE])
        self.weight = np.array(list(_FREE.values()))
        self.columns = kin.qindex[self.free]
        self._jac = osim.Matrix()
        kin.pose(q_stand)
        self.target = kin.locations(self.markers).ravel()

    def _jacobian(self) -> np.ndarray:
        rows = []
        for mobod, station in self.stations:
            self.kin.matter.calcStationJacobian(self.kin.state, mobod, station, self._jac)
            rows.append(self._jac.to_numpy()[:, self.columns])
        return np.vstack(rows)

    def solve(self, q_design: np.ndarray, q_start: np.ndarray, tol: float = 1e-7, max_iter: int = 50) -> np.ndarray:
        kin = self.kin
        q = q_design.copy()
        q[self.free] = q_start[self.free]
        kin.pose(q)
        w = self.weight
        for _ in range(max_iter):
            residual = self.target - kin.locations(self.markers).ravel()
            # Step to the point of the linearised constraint set nearest the design,
            # in the metric of the weights: y = W dq, A y = r, minimise |y - c|.
            a = self._jacobian() / w
            c = -w * (q[self.free] - q_design[self.free])
            y = c + np.linalg.lstsq(a, residual - a @ c, rcond=1e-10)[0]
            step = y / w
            q[self.free] += step
            # Newton steps converge quadratically: after a step this small the
            # remaining error is of the order of its square.
            if np.abs(step).max() < tol:
                return q
            kin.pose(q, self.free)
        raise RuntimeError("the foot closure did not converge")  # a defect of the design, not of the input
