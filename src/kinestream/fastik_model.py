"""What the fast IK solver learns of its model, once per model and marker list, and OpenSim's kinematics on it.

:class:`ModelFacts` works out, on construction, where each coordinate sits in Simbody's q, its bounds, which
coordinates are locked, wrap around or place the whole body, the coordinate tasks' rows, each marker's station
and body, and which coordinate carries which along the chain; it refuses the models :mod:`kinestream.fastik`
cannot serve (enforced constraints, joints whose coordinates are not their speeds, a gimbal lock on a bound)
and checks whether its curvature term is the model's. Then, on any state of the model, it poses the model and
reads OpenSim's marker positions, their Jacobian and the coordinates' axes. It keeps no state of its own: every
:class:`kinestream.fastik.FastIK` on one model object and marker list (several people served on one model)
shares one.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from kinestream.errors import SolverError
from kinestream.osim import opensim_module


class ModelFacts:
    """What a fast IK solver knows of ``model`` and the markers ``names``, each with a weight in ``setup``.

    Worked out on ``state`` (a state of ``model``, whose system is built; it is left posed, at some q the checks
    chose: pose it before use), about 80 ms. ``refuse``: False builds it on a model it would refuse for a gimbal
    lock (to evaluate OpenSim's objective there, or to show why it refuses). Raises :class:`KinestreamError`,
    saying why, for a model whose IK needs OpenSim's solver. Per Simbody q (``nq`` of them): ``lower``, ``upper``
    (clamped coordinates' ranges, else infinite), ``locked``, ``wrappable`` (unbounded rotations), ``root``
    (coordinates of joints on ground), ``neutral`` (the default pose); ``qindex``: where each of the model's
    coordinates sits in q; ``task_*``: the coordinate tasks' rows sqrt(w) (q - value) of the objective;
    ``upstream``: the chain (see :meth:`curvature`); ``second_order``: whether :meth:`curvature` is this model's.
    """

    nq: int
    neutral: np.ndarray

    def __init__(self, model, setup, names: list[str], state, refuse: bool = True):
        osim = opensim_module()
        self.osim = osim
        self.model = model
        self.names = list(names)
        self._jacobian = osim.Matrix()  # for the checks here; each solver reads into its own
        self._frame_jacobian = osim.Matrix()
        s = state
        constraints = model.getConstraintSet()
        enforced = [
            constraints.get(i).getName() for i in range(constraints.getSize()) if constraints.get(i).isEnforced(s)
        ]
        if enforced and np.isinf(setup.constraint_weight):
            raise SolverError(
                f"the fast IK solver cannot enforce the model's constraints "
                f"({', '.join(enforced[:4])}{', ...' if len(enforced) > 4 else ''}); "
                f'use ik.solver = "opensim" for this model',
                key="ik.solver",
                given=enforced,
                valid="opensim",
            )
        markers = model.getMarkerSet()
        model.realizePosition(s)
        self.markers = []
        self.bodies = osim.SimTKArrayMobilizedBodyIndex()
        self.stations = osim.SimTKArrayVec3()
        for n in self.names:
            marker = markers.get(n)
            frame = marker.getParentFrame()
            base = frame.findBaseFrame()
            self.markers.append(marker)
            self.bodies.push_back(osim.PhysicalFrame.safeDownCast(base).getMobilizedBodyIndex())
            self.stations.push_back(frame.findStationLocationInAnotherFrame(s, marker.get_location(), base))
        self.weights = np.array([setup.marker_weights[n] for n in self.names], dtype=float)
        self.matter = model.getMatterSubsystem()

        # coordinates: where each sits in Simbody's q, its bounds, and whether it moves at all
        cs = model.getCoordinateSet()
        q_neutral = s.getQ().to_numpy().copy()
        self.nq = q_neutral.size
        if s.getNU() != self.nq:
            raise SolverError(
                f"the model has {self.nq} coordinates but {s.getNU()} speeds (quaternion "
                f'joints); use ik.solver = "opensim" for this model',
                key="ik.solver",
                given=s.getNU(),
                valid="opensim",
            )
        self.qindex = np.zeros(cs.getSize(), dtype=int)
        for i in range(cs.getSize()):
            coord = cs.get(i)
            locked = coord.getLocked(s)
            coord.setLocked(s, False)
            coord.setValue(s, coord.getValue(s) + 0.25, False)
            moved = np.flatnonzero(s.getQ().to_numpy() != q_neutral)
            s.setQ(osim.Vector(q_neutral.tolist()))
            coord.setLocked(s, locked)
            if moved.size != 1:
                raise SolverError(
                    f'coordinate {coord.getName()} is not one Simbody q; use ik.solver = "opensim" for this model',
                    key="ik.solver",
                    given=coord.getName(),
                    valid="opensim",
                )
            self.qindex[i] = moved[0]
        # per Simbody q: bounds (clamped coordinates), locked, rotational, and whether it places the whole body
        self.lower = np.full(self.nq, -np.inf)
        self.upper = np.full(self.nq, np.inf)
        self.locked = np.zeros(self.nq, dtype=bool)
        rotational = np.zeros(self.nq, dtype=bool)
        self.root = np.zeros(self.nq, dtype=bool)
        ground = model.getGround().getName()
        for i in range(cs.getSize()):
            coord, k = cs.get(i), self.qindex[i]
            if coord.getLocked(s):
                self.locked[k] = True
            elif coord.getClamped(s):
                self.lower[k], self.upper[k] = coord.getRangeMin(), coord.getRangeMax()
            rotational[k] = coord.getMotionType() == osim.Coordinate.Rotational
            self.root[k] = coord.getJoint().getParentFrame().findBaseFrame().getName() == ground
        self.wrappable = rotational & np.isinf(self.lower) & ~self.locked
        if refuse:
            _refuse_gimbal_lock(self, model, cs, s, q_neutral)
        # coordinate tasks (off by default): rows sqrt(w) (q - value) of the same objective
        tasks = [
            (self.qindex[cs.getIndex(name)], weight, cs.get(name).getDefaultValue() if value is None else value)
            for name, (weight, value) in setup.coordinate_tasks.items()
            if cs.contains(name)
        ]
        self.task_index = np.array([t[0] for t in tasks], dtype=int)
        self.task_sqrtw = np.sqrt(np.array([t[1] for t in tasks], dtype=float))
        self.task_value = np.array([t[2] for t in tasks], dtype=float)
        self.task_rows = np.zeros((len(tasks), self.nq))
        self.task_rows[np.arange(len(tasks)), self.task_index] = self.task_sqrtw
        self.neutral = q_neutral
        self._check_jacobian(s)
        self._tree(model, cs, s)
        self.second_order = self._check_second_order(s)

    # -- OpenSim's kinematics, on any state of the model

    def pose(self, state, q: np.ndarray) -> None:
        """Set ``state``'s q and realize it to position."""
        state.setQ(self.osim.Vector.createFromMat(np.ascontiguousarray(q, dtype=float)))
        self.model.realizePosition(state)

    def positions(self, state) -> np.ndarray:
        """Model marker positions (markers, 3) in ground at ``state``'s q (realized to position)."""
        return np.array([m.getLocationInGround(state).to_numpy() for m in self.markers])

    def jacobian(self, state, out) -> np.ndarray:
        """d(marker positions)/dq, (3 markers, nq), at ``state``'s q; ``out``: the OpenSim Matrix to read it into."""
        self.matter.calcStationJacobian(state, self.bodies, self.stations, out)
        return out.to_numpy()

    def frames(self, state, out) -> np.ndarray:
        """Simbody's frame Jacobian of each coordinate's body at ``state``'s realized q: (bodies, 6 (turn, shift), nq).

        ``out``: the OpenSim Matrix to read it into.
        """
        self.matter.calcFrameJacobian(state, self.axis_bodies, self.axis_origins, out)
        return out.to_numpy().reshape(-1, 6, self.nq)

    def axes(self, state, out) -> np.ndarray:
        """Each coordinate's axis of rotation in ground at ``state``'s realized q, (nq, 3); zero for translations."""
        return self.frames(state, out)[self.axis_row, :3, np.arange(self.nq)]

    def _check_jacobian(self, s) -> None:
        """Simbody's station Jacobian is with respect to speeds u; it is dx/dq only where qdot = u."""
        q = self._test_pose()
        self.pose(s, q)
        jac = self.jacobian(s, self._jacobian)
        worst = 0.0
        for k in np.flatnonzero(~self.locked):
            numeric = self._central(s, q, k, lambda: self.positions(s).ravel())
            worst = max(worst, float(np.max(np.abs(numeric - jac[:, k]))))
        if worst > 1e-4:
            raise SolverError(
                f"the model's marker Jacobian is not dx/dq (off by {worst:.2g}; joints whose "
                f'coordinates are not their speeds); use ik.solver = "opensim" for this model',
                key="ik.solver",
                given=worst,
                valid="opensim",
            )

    # -- the residuals' curvature: the part of the Hessian Gauss-Newton leaves out

    def _tree(self, model, cs, s) -> None:
        """Which coordinate moves which: the body each coordinate turns, and the order along the chain.

        ``upstream[a, b]``: moving coordinate a carries coordinate b's axis with it (a's body is an ancestor of
        b's, or both move one body and a comes first in its joint's sequence of axes).
        """
        osim = self.osim
        child = np.zeros(self.nq, dtype=int)
        parent: dict[int, int] = {}
        for i in range(cs.getSize()):
            joint = cs.get(i).getJoint()
            body = int(osim.PhysicalFrame.safeDownCast(joint.getChildFrame().findBaseFrame()).getMobilizedBodyIndex())
            base = joint.getParentFrame().findBaseFrame()
            parent[body] = int(osim.PhysicalFrame.safeDownCast(base).getMobilizedBodyIndex())
            child[self.qindex[i]] = body
        bodies = sorted(set(child.tolist()))
        self.axis_bodies = osim.SimTKArrayMobilizedBodyIndex()
        self.axis_origins = osim.SimTKArrayVec3()
        for b in bodies:
            self.axis_bodies.push_back(b)
            self.axis_origins.push_back(osim.Vec3(0, 0, 0))
        self.axis_row = np.array([bodies.index(b) for b in child])
        ancestors = {}
        for b in bodies:
            chain, c = set(), b
            while c in parent:
                c = parent[c]
                chain.add(c)
            ancestors[b] = chain
        up = np.array([[child[a] in ancestors[child[b]] for b in range(self.nq)] for a in range(self.nq)])
        # within one joint: a comes first when turning it turns b's axis (b's translation axis, for a translation)
        q = self._test_pose()
        self.pose(s, q)
        frames = partial(self.frames, s, self._frame_jacobian)
        axes = frames()
        for a in np.flatnonzero(~self.locked):
            together = np.flatnonzero((child == child[a]) & (np.arange(self.nq) != a))
            if not together.size:
                continue
            change = self._central(s, q, a, frames)
            for b in together:
                rotates = np.linalg.norm(axes[self.axis_row[b], :3, b]) > 0
                moved = change[self.axis_row[b], :3, b] if rotates else change[self.axis_row[b], 3:, b]
                up[a, b] = np.linalg.norm(moved) > 1e-6
        self.upstream = up
        self.pose(s, self.neutral)

    def _test_pose(self) -> np.ndarray:
        """A pose off any symmetry, for the construction-time checks: every free coordinate 0.1 from neutral."""
        return np.clip(self.neutral + np.where(self.locked, 0.0, 0.1), self.lower, self.upper)

    def _central(self, s, q: np.ndarray, k: np.integer | int, read) -> np.ndarray:
        """The derivative d read / dq_k at q by central differences (step 1e-6).

        ``read()`` is taken at each realized pose of ``s``.
        """
        plus, minus = q.copy(), q.copy()
        plus[k] += 1e-6
        minus[k] -= 1e-6
        self.pose(s, plus)
        ahead = read()
        self.pose(s, minus)
        return (ahead - read()) / 2e-6

    def curvature(self, jac: np.ndarray, r: np.ndarray, axes: np.ndarray) -> np.ndarray:
        """The residuals' own curvature, sum_i r_i d2 r_i / dq2, from the Jacobian and the coordinates' axes.

        A coordinate a that turns about axis w_a carries every column b below it in the chain along: the
        station's d2x / dq_a dq_b = w_a x dx/dq_b (translations carry nothing: w = 0). Summed against the
        residuals: S[a, b] = w_a . sum_m (dx_m/dq_b x r_m) for a above b, and symmetric. Exact for rotations
        and translations along fixed axes; a coordinate that also drives a curved path (the knee's
        translations) leaves out that path's own curvature.
        """
        jx, jy, jz = jac[0::3], jac[1::3], jac[2::3]  # marker rows (coordinate tasks, after them in r, are straight)
        m = jx.shape[0]
        rx, ry, rz = r[0 : 3 * m : 3], r[1 : 3 * m : 3], r[2 : 3 * m : 3]
        across = np.stack([rz @ jy - ry @ jz, rx @ jz - rz @ jx, ry @ jx - rx @ jy])  # sum_m dx_m/dq_b x r_m
        turns = axes @ across  # [a, b] = w_a . sum_m (dx_m/dq_b x r_m)
        above = np.where(self.upstream, turns, 0.0)
        return above + above.T + np.diag(turns.diagonal())

    def _check_second_order(self, s) -> bool:
        """Whether :meth:`curvature` is this model's: compared with finite differences of J^T r at a test pose.

        Where it is far off (joints it does not describe), the solver keeps to Gauss-Newton's curvature: slower
        to converge, the same minimum. A knee whose translations follow its angle is a little off (with random
        residuals, up to a tenth of the largest term; with a fit's residuals, a few thousandths): Newton's
        steps with it still gain two to three digits each.
        """
        q = self._test_pose()
        self.pose(s, q)
        jac = self.jacobian(s, self._jacobian)
        r = np.random.default_rng(0).normal(scale=0.01, size=(jac.shape[0],))
        analytic = self.curvature(jac, r, self.axes(s, self._frame_jacobian))
        worst = 0.0
        free = np.flatnonzero(~self.locked)
        for k in free:
            numeric = self._central(s, q, k, lambda: self.jacobian(s, self._jacobian).T @ r)
            worst = max(worst, float(np.max(np.abs(numeric[free] - analytic[free, k]))))
        scale = float(np.abs(analytic[np.ix_(free, free)]).max())
        return worst <= 0.25 * scale


def _refuse_gimbal_lock(facts: ModelFacts, model, cs, s, q: np.ndarray) -> None:
    """Refuse a joint whose rotations are degenerate where one of them rests on a bound.

    OpenCap's LaiArnoldModified2017 turns the humerus by plane of elevation, elevation and axial
    rotation (Y, X, Y). At elevation 0, its lower bound, the first and the last are one turn (their
    axes 2.4 deg apart), and the arm can leave that pose only into the half-plane the plane of elevation
    points to: elevation cannot go negative to reach the other. A local minimiser warm-started through a
    hanging arm keeps the half-plane it came with, rests on the bound or slides along the turn to the plane's
    own bound, and there is a false minimum (on a synthetic walk, whose arms hang twice a stride, its cost was
    up to 4.6 times OpenSim's, at 63% of frames at or below it). No local method tells the half-planes
    apart, so such models go to OpenSim's solver. Only bounds within 45 deg of the default pose count:
    the Euler singularities at +-90 deg of pelvic list or lumbar bending are bounds no motion reaches.
    """
    osim = facts.osim
    joints: dict[str, list[int]] = {}
    for i in range(cs.getSize()):
        coord = cs.get(i)
        if coord.getMotionType() == osim.Coordinate.Rotational and not coord.getLocked(s):
            joints.setdefault(coord.getJoint().getName(), []).append(int(facts.qindex[i]))
    jset = model.getJointSet()
    jac = osim.Matrix()
    for name, ks in joints.items():
        if len(ks) < 2:
            continue
        child = osim.PhysicalFrame.safeDownCast(jset.get(name).getChildFrame().findBaseFrame())
        bodies = osim.SimTKArrayMobilizedBodyIndex()
        stations = osim.SimTKArrayVec3()
        for v in ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)):
            bodies.push_back(child.getMobilizedBodyIndex())
            stations.push_back(osim.Vec3(*v))
        for k in ks:
            for bound in (facts.lower[k], facts.upper[k]):
                if not abs(bound - q[k]) < np.pi / 4:  # a bound the body reaches in ordinary poses
                    continue
                pose = q.copy()
                pose[k] = bound
                facts.pose(s, pose)
                facts.matter.calcStationJacobian(s, bodies, stations, jac)
                j = jac.to_numpy()[:, ks]
                turn = j[3:] - np.tile(j[:3], (3, 1))  # how the body's axes move: its rotation
                sv = np.linalg.svd(turn, compute_uv=False)
                if sv[-1] < 0.1 * sv[0]:  # two of its axes within about 6 deg of each other
                    coord = next(cs.get(i).getName() for i in range(cs.getSize()) if facts.qindex[i] == k)
                    raise SolverError(
                        f"joint {name}'s rotations are degenerate (gimbal lock) with {coord} on its bound "
                        f"({np.degrees(bound):.0f} deg), where the fast IK solver cannot tell which way "
                        f'the body leaves it; use ik.solver = "opensim" for this model',
                        key="ik.solver",
                        given=coord,
                        valid="opensim",
                    )
    facts.pose(s, q)
