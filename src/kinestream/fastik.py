"""The fast IK solver: OpenSim's IK objective, minimised by Newton's method on OpenSim's kinematics.

OpenSim's InverseKinematicsSolver minimises, over the model's generalized
coordinates q, the weighted marker cost of Simbody's Markers assembly goal

    F(q) = sum_m w_m |x_m(q) - o_m|^2 / (2 sum_m w_m)  [+ sum_c w_c (q_c - v_c)^2 / 2]

(markers m with a finite observation o_m; coordinate tasks c when the setup
has them), keeping clamped coordinates inside their ranges and locked ones
fixed. This module minimises the same F on the same model: marker positions
x_m(q) and their Jacobian come from OpenSim/Simbody themselves
(``Marker.getLocationInGround``, ``SimbodyMatterSubsystem.calcStationJacobian``
for all stations at once, and ``calcFrameJacobian`` for the axes); only the
40x40 Newton system is numpy's.

The method is Newton's, safeguarded as Levenberg-Marquardt, on the stacked
residual, warm-started from the previous frame. Its Hessian is Gauss-Newton's
J^T J plus the residuals' own curvature, sum_m r_m d2x_m/dq2, built from the
same Jacobian and each coordinate's axis of rotation in ground (Simbody's
frame Jacobian): a coordinate turning about w_a carries every joint below it
along, so d2x/dq_a dq_b = w_a x dx/dq_b. Markers never fit exactly (augmented
markers sit a centimetre or so off the model's), and without that term the
steps converge only linearly: 6-8 a frame, and up to 60 where the valley is
flat (a straight elbow, whose arm and forearm rotations nearly coincide).
With it they converge quadratically: 3 a frame on augmented markers of a
synth squat at 120 Hz, at most 7. Bounds are kept by projection with an
active set (a coordinate on its bound whose gradient pushes outward stays
there). It stops when even the undamped model's best step would lower F by
less than ``ftol`` (1e-12) of itself, when a step moves no coordinate by
more than ``xtol`` (1e-10 rad or m), or once it has taken a whole Newton step
(undamped, exact Hessian, no bound in the way) of at most ``NEWTON_DONE``
(1e-4 rad or m): the step before the minimum, which quadratic convergence
makes a hundred times shorter again (1e-6 rad, 0.0001 deg, from it). A step
size says nothing where the Hessian is wrong: with Gauss-Newton's alone,
short steps crept along flat valleys degrees from the minimum, and so did a
looser ``ftol`` (1e-10 of F left a frame 1.9 deg from it).

What it does not do: models whose enforced constraints (coordinate couplers,
welds between bodies) are part of IK, joints whose coordinates are not their
own speeds (OpenSim's Euler-angle BallJoint and FreeJoint), and joints whose
rotations are in gimbal lock where one of them rests on a bound near the
default pose (LaiArnoldModified2017's shoulder at 0 elevation). For those
:class:`FastIK` raises :class:`KinestreamError` on construction saying why,
and callers fall back to OpenSim's solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg.lapack import dposv

from kinestream.errors import KinestreamError
from kinestream.osim import opensim_module

NEWTON_DONE = 1e-4  # rad or m: a whole Newton step on the exact Hessian this short ends the solve (see _minimise)


@dataclass
class FastFit:
    """The result of :meth:`FastIK.solve`."""

    q: np.ndarray  # Simbody's q order (as ``state.getQ()``)
    cost: float  # F(q), OpenSim's goal
    errors: np.ndarray  # per-marker distance (m), NaN for markers not fitted
    iterations: int  # Jacobian evaluations (Newton steps)
    converged: bool


class FastIK:
    """Weighted marker least squares on an OpenSim model, one frame at a time.

    ``names``: the markers fitted, each with a weight in ``setup`` and a
    marker of that name in ``model`` (whose system is built). ``state``: the
    model state to work in (its Q ends at each solution); a new one if None.
    ``refuse``: False builds it on a model it would refuse for a gimbal lock
    (to evaluate OpenSim's objective there, or to show why it refuses).
    ``like``: a solver on the same model object and markers, each with a
    state of its own: this one takes what that one learned of the model
    (where each coordinate sits, its bounds, the chain, the checks' outcome)
    instead of working it out again, about 80 ms. Several people served on
    one model share it so.
    """

    # what a solver learns of its model and markers at construction: the same for every solver on that model
    LEARNED = (
        "_markers", "_bodies", "_stations", "weights", "_matter", "nq", "qindex", "lower", "upper", "_locked",
        "_wrappable", "_root", "_task_index", "_task_sqrtw", "_task_value", "_task_rows", "neutral", "_upstream",
        "_axis_bodies", "_axis_origins", "_axis_row", "second_order",
    )  # fmt: skip
    nq: int
    neutral: np.ndarray

    def __init__(
        self,
        model,
        setup,
        names: list[str],
        state=None,
        xtol: float = 1e-10,
        ftol: float = 1e-12,
        max_iterations: int = 60,
        refuse: bool = True,
        like: FastIK | None = None,
    ):
        osim = opensim_module()
        self.osim = osim
        self.model = model
        self.state = state if state is not None else model.initSystem()
        self.names = list(names)
        self.xtol, self.ftol, self.max_iterations = xtol, ftol, max_iterations
        self._jacobian = osim.Matrix()
        self._frame_jacobian = osim.Matrix()
        self._at: list[Any] | None = None  # q, marker positions and Jacobian (None until asked) of the realized state
        self._lam = 1e-6
        self._axes_at: np.ndarray | None = None  # where the coordinates' axes (below) were found
        if like is not None:
            if like.model is not model or like.names != self.names or like.state is self.state:
                raise KinestreamError("a solver shares what another learned only on its model, markers, own state")
            for name in self.LEARNED:
                setattr(self, name, getattr(like, name))
            self._axes_now = np.zeros((self.nq, 3))
            self._set(self.neutral)
            return
        s = self.state
        constraints = model.getConstraintSet()
        enforced = [
            constraints.get(i).getName() for i in range(constraints.getSize()) if constraints.get(i).isEnforced(s)
        ]
        if enforced and np.isinf(setup.constraint_weight):
            raise KinestreamError(
                f"the fast IK solver cannot enforce the model's constraints "
                f"({', '.join(enforced[:4])}{', ...' if len(enforced) > 4 else ''}); "
                f'use ik.solver = "opensim" for this model'
            )
        markers = model.getMarkerSet()
        model.realizePosition(s)
        self._markers = []
        self._bodies = osim.SimTKArrayMobilizedBodyIndex()
        self._stations = osim.SimTKArrayVec3()
        for n in self.names:
            marker = markers.get(n)
            frame = marker.getParentFrame()
            base = frame.findBaseFrame()
            self._markers.append(marker)
            self._bodies.push_back(osim.PhysicalFrame.safeDownCast(base).getMobilizedBodyIndex())
            self._stations.push_back(frame.findStationLocationInAnotherFrame(s, marker.get_location(), base))
        self.weights = np.array([setup.marker_weights[n] for n in self.names], dtype=float)
        self._matter = model.getMatterSubsystem()

        # coordinates: where each sits in Simbody's q, its bounds, and whether it moves at all
        cs = model.getCoordinateSet()
        q_neutral = s.getQ().to_numpy().copy()
        self.nq = q_neutral.size
        if s.getNU() != self.nq:
            raise KinestreamError(
                f"the model has {self.nq} coordinates but {s.getNU()} speeds (quaternion "
                f'joints); use ik.solver = "opensim" for this model'
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
                raise KinestreamError(
                    f'coordinate {coord.getName()} is not one Simbody q; use ik.solver = "opensim" for this model'
                )
            self.qindex[i] = moved[0]
        # per Simbody q: bounds (clamped coordinates), locked, rotational, and whether it places the whole body
        self.lower = np.full(self.nq, -np.inf)
        self.upper = np.full(self.nq, np.inf)
        self._locked = np.zeros(self.nq, dtype=bool)
        rotational = np.zeros(self.nq, dtype=bool)
        self._root = np.zeros(self.nq, dtype=bool)
        ground = model.getGround().getName()
        for i in range(cs.getSize()):
            coord, k = cs.get(i), self.qindex[i]
            if coord.getLocked(s):
                self._locked[k] = True
            elif coord.getClamped(s):
                self.lower[k], self.upper[k] = coord.getRangeMin(), coord.getRangeMax()
            rotational[k] = coord.getMotionType() == osim.Coordinate.Rotational
            self._root[k] = coord.getJoint().getParentFrame().findBaseFrame().getName() == ground
        self._wrappable = rotational & np.isinf(self.lower) & ~self._locked
        if refuse:
            self._refuse_gimbal_lock(model, cs, q_neutral)
        # coordinate tasks (off by default): rows sqrt(w) (q - value) of the same objective
        tasks = [
            (self.qindex[cs.getIndex(name)], weight, cs.get(name).getDefaultValue() if value is None else value)
            for name, (weight, value) in setup.coordinate_tasks.items()
            if cs.contains(name)
        ]
        self._task_index = np.array([t[0] for t in tasks], dtype=int)
        self._task_sqrtw = np.sqrt(np.array([t[1] for t in tasks], dtype=float))
        self._task_value = np.array([t[2] for t in tasks], dtype=float)
        self._task_rows = np.zeros((len(tasks), self.nq))
        self._task_rows[np.arange(len(tasks)), self._task_index] = self._task_sqrtw
        self.neutral = q_neutral
        self._axes_now = np.zeros((self.nq, 3))
        self._check_jacobian()
        self._tree(model, cs)
        self.second_order = self._check_second_order()
        self._set(q_neutral)

    def _refuse_gimbal_lock(self, model, cs, q: np.ndarray) -> None:
        """Refuse a joint whose rotations are degenerate where one of them rests on a bound.

        OpenCap's LaiArnoldModified2017 turns the humerus by plane of elevation, elevation and axial
        rotation (Y, X, Y). At elevation 0, its lower bound, the first and the last are one turn (their
        axes 2.4 deg apart), and the
        arm can leave that pose only into the half-plane the plane of elevation points to: elevation cannot
        go negative to reach the other. A local minimiser warm-started through a hanging arm keeps the
        half-plane it came with, rests on the bound or slides along the turn to the plane's own bound, and
        there is a false minimum (on a synthetic walk, whose arms hang twice a stride, its cost was up to
        4.6 times OpenSim's, at 63% of frames at or below it). No local method tells the half-planes
        apart, so such models go to OpenSim's solver. Only bounds within 45 deg of the default pose count:
        the Euler singularities at +-90 deg of pelvic list or lumbar bending are bounds no motion reaches.
        """
        osim = self.osim
        s = self.state
        joints: dict[str, list[int]] = {}
        for i in range(cs.getSize()):
            coord = cs.get(i)
            if coord.getMotionType() == osim.Coordinate.Rotational and not coord.getLocked(s):
                joints.setdefault(coord.getJoint().getName(), []).append(int(self.qindex[i]))
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
                for bound in (self.lower[k], self.upper[k]):
                    if not abs(bound - q[k]) < np.pi / 4:  # a bound the body reaches in ordinary poses
                        continue
                    pose = q.copy()
                    pose[k] = bound
                    self._set(pose)
                    self._matter.calcStationJacobian(s, bodies, stations, jac)
                    j = jac.to_numpy()[:, ks]
                    turn = j[3:] - np.tile(j[:3], (3, 1))  # how the body's axes move: its rotation
                    sv = np.linalg.svd(turn, compute_uv=False)
                    if sv[-1] < 0.1 * sv[0]:  # two of its axes within about 6 deg of each other
                        coord = next(cs.get(i).getName() for i in range(cs.getSize()) if self.qindex[i] == k)
                        raise KinestreamError(
                            f"joint {name}'s rotations are degenerate (gimbal lock) with {coord} on its bound "
                            f"({np.degrees(bound):.0f} deg), where the fast IK solver cannot tell which way "
                            f'the body leaves it; use ik.solver = "opensim" for this model'
                        )
        self._set(q)

    # -- OpenSim's kinematics

    def _set(self, q: np.ndarray) -> None:
        self.state.setQ(self.osim.Vector.createFromMat(np.ascontiguousarray(q, dtype=float)))
        self.model.realizePosition(self.state)
        self._at = None

    def positions(self) -> np.ndarray:
        """Model marker positions (markers, 3) in ground at the state's q (realized to position)."""
        s = self.state
        return np.array([m.getLocationInGround(s).to_numpy() for m in self._markers])

    def jacobian(self) -> np.ndarray:
        """d(marker positions)/dq, (3 markers, nq), at the state's q."""
        self._matter.calcStationJacobian(self.state, self._bodies, self._stations, self._jacobian)
        return self._jacobian.to_numpy()

    def _check_jacobian(self) -> None:
        """Simbody's station Jacobian is with respect to speeds u; it is dx/dq only where qdot = u."""
        q = self._test_pose()
        self._set(q)
        jac = self.jacobian()
        worst = 0.0
        for k in np.flatnonzero(~self._locked):
            numeric = self._central(q, k, lambda: self.positions().ravel())
            worst = max(worst, float(np.max(np.abs(numeric - jac[:, k]))))
        if worst > 1e-4:
            raise KinestreamError(
                f"the model's marker Jacobian is not dx/dq (off by {worst:.2g}; joints whose "
                f'coordinates are not their speeds); use ik.solver = "opensim" for this model'
            )

    # -- the residuals' curvature: the part of the Hessian Gauss-Newton leaves out

    def _tree(self, model, cs) -> None:
        """Which coordinate moves which: the body each coordinate turns, and the order along the chain.

        ``_upstream[a, b]``: moving coordinate a carries coordinate b's axis with it (a's body is an ancestor of
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
        self._axis_bodies = osim.SimTKArrayMobilizedBodyIndex()
        self._axis_origins = osim.SimTKArrayVec3()
        for b in bodies:
            self._axis_bodies.push_back(b)
            self._axis_origins.push_back(osim.Vec3(0, 0, 0))
        self._axis_row = np.array([bodies.index(b) for b in child])
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
        self._set(q)
        axes = self._frames()
        for a in np.flatnonzero(~self._locked):
            together = np.flatnonzero((child == child[a]) & (np.arange(self.nq) != a))
            if not together.size:
                continue
            change = self._central(q, a, self._frames)
            for b in together:
                rotates = np.linalg.norm(axes[self._axis_row[b], :3, b]) > 0
                moved = change[self._axis_row[b], :3, b] if rotates else change[self._axis_row[b], 3:, b]
                up[a, b] = np.linalg.norm(moved) > 1e-6
        self._upstream = up
        self._set(self.neutral)

    def _frames(self) -> np.ndarray:
        """Simbody's frame Jacobian of each coordinate's body at the realized state's q: (bodies, 6 (turn,
        shift), nq)."""
        self._matter.calcFrameJacobian(self.state, self._axis_bodies, self._axis_origins, self._frame_jacobian)
        return self._frame_jacobian.to_numpy().reshape(-1, 6, self.nq)

    def _axes(self) -> np.ndarray:
        """Each coordinate's axis of rotation in ground at the realized state's q, (nq, 3); zero for translations."""
        return self._frames()[self._axis_row, :3, np.arange(self.nq)]

    def _test_pose(self) -> np.ndarray:
        """A pose off any symmetry, for the construction-time checks: every free coordinate 0.1 from neutral."""
        return np.clip(self.neutral + np.where(self._locked, 0.0, 0.1), self.lower, self.upper)

    def _central(self, q: np.ndarray, k: np.integer | int, read) -> np.ndarray:
        """d read / dq_k at q by central differences (step 1e-6), ``read()`` taken at each realized pose."""
        plus, minus = q.copy(), q.copy()
        plus[k] += 1e-6
        minus[k] -= 1e-6
        self._set(plus)
        ahead = read()
        self._set(minus)
        return (ahead - read()) / 2e-6

    def _curvature(self, jac: np.ndarray, r: np.ndarray, axes: np.ndarray) -> np.ndarray:
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
        above = np.where(self._upstream, turns, 0.0)
        return above + above.T + np.diag(turns.diagonal())

    def _check_second_order(self) -> bool:
        """Whether :meth:`_curvature` is this model's: compared with finite differences of J^T r at a test pose.

        Where it is far off (joints it does not describe), the solver keeps to Gauss-Newton's curvature: slower
        to converge, the same minimum. A knee whose translations follow its angle is a little off (with random
        residuals, up to a tenth of the largest term; with a fit's residuals, a few thousandths): Newton's
        steps with it still gain two to three digits each.
        """
        q = self._test_pose()
        self._set(q)
        jac = self.jacobian()
        r = np.random.default_rng(0).normal(scale=0.01, size=(jac.shape[0],))
        analytic = self._curvature(jac, r, self._axes())
        worst = 0.0
        free = np.flatnonzero(~self._locked)
        for k in free:
            numeric = self._central(q, k, lambda: self.jacobian().T @ r)
            worst = max(worst, float(np.max(np.abs(numeric[free] - analytic[free, k]))))
        scale = float(np.abs(analytic[np.ix_(free, free)]).max())
        return worst <= 0.25 * scale

    # -- the objective

    def _residual(self, q: np.ndarray, obs: np.ndarray, sqrtw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stacked residual at q (and the per-marker error vectors), leaving the state at q."""
        at = self._at
        if at is None or not np.array_equal(q, at[0]):
            self._set(q)
            at = self._at = [q.copy(), self.positions(), None]
        diff = at[1] - obs
        r = (diff * sqrtw[:, None]).ravel()
        if self._task_index.size:
            r = np.concatenate([r, self._task_sqrtw * (q[self._task_index] - self._task_value)])
        return r, diff

    def _jacobian_at(self) -> np.ndarray:
        """The Jacobian at the realized state's q, computed once per q."""
        at = self._at
        assert at is not None, "the residual comes first: it sets the state"
        if at[2] is None:
            at[2] = self.jacobian()
        return at[2]

    def _observations(self, xyz) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(markers present, observations with zeros for the absent, sqrt of each marker's share of the weight)."""
        xyz = np.asarray(xyz, dtype=float)
        present = np.isfinite(xyz).all(axis=1)
        if not present.any():
            raise ValueError("no marker is present")
        sqrtw = np.sqrt(np.where(present, self.weights, 0.0) / self.weights[present].sum())
        return present, np.where(present[:, None], xyz, 0.0), sqrtw

    def cost(self, q: np.ndarray, xyz: np.ndarray) -> float:
        """OpenSim's IK goal F(q) for observations ``xyz`` (markers, 3; NaN rows left out)."""
        _, obs, sqrtw = self._observations(xyz)
        r, _ = self._residual(np.asarray(q, dtype=float), obs, sqrtw)
        return 0.5 * float(r @ r)

    def forget(self) -> None:
        """Drop what was kept from earlier frames (damping, axes): the next solve is a first one."""
        self._lam = 1e-6
        self._axes_at = None

    def wrap(self, q: np.ndarray) -> np.ndarray:
        """Unbounded rotational coordinates brought into (-pi, pi]: a whole turn is the same pose."""
        k = self._wrappable & (np.abs(q) > np.pi)
        if k.any():
            q = q.copy()
            q[k] = np.pi - (np.pi - q[k]) % (2 * np.pi)
        return q

    def _minimise(self, q: np.ndarray, obs: np.ndarray, sqrtw: np.ndarray, rows: np.ndarray, fixed: np.ndarray):
        """Newton steps (damped as Levenberg-Marquardt) from q, ``fixed`` held; (q, r, diff, cost, steps, converged)."""
        r, diff = self._residual(q, obs, sqrtw)
        cost = 0.5 * float(r @ r)
        lam, nu = self._lam, 2.0
        iterations = 0
        converged = False
        n_tasks = self._task_index.size
        n = self.nq
        while iterations < self.max_iterations and not converged:
            iterations += 1
            jac = self._jacobian_at() * rows
            if self.second_order:
                if self._axes_at is None or np.abs(q - self._axes_at).max() > 0.05:  # they turn little in 3 deg
                    self._axes_at, self._axes_now = q, self._axes()
                curvature = self._curvature(jac, r, self._axes_now)
            if n_tasks:
                jac = np.vstack([jac, self._task_rows])
            grad = jac.T @ r
            normal = jac.T @ jac
            diag = normal.diagonal().copy()
            # held: locked, on a bound and pushed outward, or moving no present marker (a neck without
            # head markers, a toe without toe markers): such a coordinate keeps its value, as in OpenSim
            held = ((q <= self.lower) & (grad > 0)) | ((q >= self.upper) & (grad < 0)) | fixed
            held |= diag <= 1e-20
            hessian = normal + curvature if self.second_order else normal.copy()
            if held.any():
                if held.all():
                    break
                hessian[held] = 0.0
                hessian[:, held] = 0.0
                diag[held] = 1.0
                grad = np.where(held, 0.0, grad)
            # converged when even the undamped model's best step would gain too little (Newton decrement)
            undamped = hessian.copy()
            undamped.flat[:: n + 1] += 1e-9 * diag
            undamped[held, held] = 1.0
            _, decrement, info = dposv(undamped, grad)
            exact = self.second_order  # the step below is Newton's on the objective's own Hessian
            if info != 0:  # not convex here (far from the minimum, large residuals): Gauss-Newton's curvature
                exact = False
                hessian = np.where(held[:, None] | held[None, :], 0.0, normal)
                undamped = hessian.copy()
                undamped.flat[:: n + 1] += 1e-9 * diag
                undamped[held, held] = 1.0
                _, decrement, info = dposv(undamped, grad)
            if info == 0 and 0.5 * float(grad @ decrement) <= self.ftol * cost:
                converged = True
                break
            undamped_step = decrement if info == 0 and lam <= 1e-4 else None  # lightly damped: the same step
            while True:
                newton = exact and undamped_step is not None
                if undamped_step is not None:
                    step, undamped_step = undamped_step, None
                else:
                    system = hessian.copy()
                    system.flat[:: n + 1] += lam * diag
                    system[held, held] = 1.0
                    _, step, info = dposv(system, grad)
                if info == 0:  # positive definite: a step downhill
                    trial = np.clip(q - step, self.lower, self.upper)
                    taken = trial - q  # the step, shortened where a bound stops it
                    predicted = -float(grad @ taken) - 0.5 * float(taken @ hessian @ taken)  # the model's decrease
                    if predicted <= 0.0 and np.any(taken != -step):
                        # cut off by the bounds it is no longer downhill: go along it as far as they allow
                        with np.errstate(divide="ignore", invalid="ignore"):
                            room = np.where(step < 0, (self.upper - q) / -step, (self.lower - q) / -step)
                        taken = -min(1.0, float(np.nanmin(np.where(step != 0, room, np.inf)))) * step
                        trial = np.clip(q + taken, self.lower, self.upper)
                        taken = trial - q
                        predicted = -float(grad @ taken) - 0.5 * float(taken @ hessian @ taken)
                if info == 0 and predicted > 0.0:
                    if lam < 1e-3 and (np.abs(taken).max() < self.xtol or predicted <= 0.01 * self.ftol * cost):
                        converged = True  # a step that changes nothing that matters: q is the minimum
                        break
                    r_new, diff_new = self._residual(trial, obs, sqrtw)
                    cost_new = 0.5 * float(r_new @ r_new)
                    rho = (cost - cost_new) / predicted
                    if rho > 1e-3:  # a real decrease, as the model foresaw it: take the step
                        converged = cost - cost_new <= 0.01 * self.ftol * cost
                        if newton and np.abs(step).max() <= NEWTON_DONE and np.array_equal(trial, q - step):
                            converged = True  # Newton's own step, this short: the next would be ~1e-6 or less
                        q, r, diff, cost = trial, r_new, diff_new, cost_new
                        lam, nu = max(lam * max(1 / 3, 1 - (2 * rho - 1) ** 3), 1e-12), 2.0
                        break
                # not convex here, or the model promised more than the objective gave: damp harder
                lam, nu = max(lam * nu, 1e-4), nu * 2
                if lam > 1e10:
                    converged = True
                    break
        self._lam = min(max(lam, 1e-6), 1.0)  # the next frame starts with this frame's damping
        return q, r, diff, cost, iterations, converged

    def solve(self, xyz: np.ndarray, q0: np.ndarray | None = None) -> FastFit:
        """Minimise F from ``q0`` (None: the model's default pose); leaves the state at the solution.

        ``xyz``: observed marker positions (markers, 3) in the order of ``names``,
        NaN rows for missing markers. Raises ValueError when no marker is present.
        """
        present, obs, sqrtw = self._observations(xyz)
        rows = np.repeat(sqrtw, 3)[:, None]
        q = np.clip(self.neutral if q0 is None else np.asarray(q0, dtype=float), self.lower, self.upper)
        q = np.where(self._locked, self.neutral, q)
        iterations = 0
        if q0 is None:  # from the default pose: place the whole body first, then bend it
            self.forget()
            q, _, _, _, iterations, _ = self._minimise(q, obs, sqrtw, rows, self._locked | ~self._root)
        q, r, diff, cost, more, converged = self._minimise(q, obs, sqrtw, rows, self._locked)
        iterations += more
        q = self.wrap(q)  # a whole turn less: the same marker positions, so the same cost
        self._residual(q, obs, sqrtw)  # the state ends at the solution (at once when it is there already)
        errors = np.where(present, np.linalg.norm(diff, axis=1), np.nan)
        return FastFit(q, cost, errors, iterations, converged)


def converged_minimum(ik: FastIK, xyz: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """The objective's minimum next to ``q0``, found by another method: SciPy's trust-region reflective least
    squares on the same residuals and bounds, run to machine tolerance. The reference a solver is held to.

    Locked coordinates, and those that move no marker present (the cost does not depend on them), keep
    q0's values. Returns q in Simbody's order (leaves ik's state there).
    """
    from scipy.optimize import least_squares

    _, obs, sqrtw = ik._observations(xyz)
    rows = np.repeat(sqrtw, 3)[:, None]
    q0 = np.clip(np.asarray(q0, dtype=float), ik.lower, ik.upper)
    ik._residual(q0, obs, sqrtw)
    free = ~ik._locked & (np.abs(ik._jacobian_at() * rows).sum(axis=0) > 1e-12)

    def full(x: np.ndarray) -> np.ndarray:
        q = q0.copy()
        q[free] = x
        return q

    def fun(x: np.ndarray) -> np.ndarray:
        return ik._residual(full(x), obs, sqrtw)[0]

    def jac(x: np.ndarray) -> np.ndarray:
        ik._residual(full(x), obs, sqrtw)
        j = ik._jacobian_at() * rows
        if ik._task_index.size:
            j = np.vstack([j, ik._task_rows])
        return j[:, free]

    fit = least_squares(
        fun,
        q0[free],
        jac=jac,
        bounds=(ik.lower[free], ik.upper[free]),
        method="trf",
        x_scale="jac",
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
        max_nfev=1000,
    )
    q = full(fit.x)
    ik._residual(q, obs, sqrtw)
    return q
