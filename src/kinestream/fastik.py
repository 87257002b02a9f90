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

from kinestream.errors import SolverError
from kinestream.fastik_model import ModelFacts
from kinestream.osim import opensim_module

__all__ = ["NEWTON_DONE", "FastFit", "FastIK", "ModelFacts", "converged_minimum"]

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
    state of its own: this one shares that one's ``facts``, what it learned
    of the model (where each coordinate sits, its bounds, the chain, the
    checks' outcome: :class:`kinestream.fastik_model.ModelFacts`) instead of
    working it out again, about 80 ms. Several people served on one model
    share it so.
    """

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
        self.state = state if state is not None else model.initSystem()
        self.xtol, self.ftol, self.max_iterations = xtol, ftol, max_iterations
        self._jacobian = osim.Matrix()
        self._frame_jacobian = osim.Matrix()
        self._at: list[Any] | None = None  # q, marker positions and Jacobian (None until asked) of the realized state
        self._lam = 1e-6
        self._axes_at: np.ndarray | None = None  # where the coordinates' axes (below) were found
        if like is not None and (like.model is not model or like.names != list(names) or like.state is self.state):
            raise SolverError(
                "a solver shares what another learned only on its model, markers, own state",
                valid="the same model and markers, its own state",
            )
        self.facts: ModelFacts = like.facts if like is not None else ModelFacts(model, setup, names, self.state, refuse)
        self._axes_now = np.zeros((self.nq, 3))
        self._set(self.neutral)

    # -- what is learned of the model: its facts', shared by the solvers on one model

    @property
    def model(self):
        """The OpenSim model."""
        return self.facts.model

    @property
    def names(self) -> list[str]:
        """The markers fitted, in the order of ``solve``'s rows."""
        return self.facts.names

    @property
    def weights(self) -> np.ndarray:
        """Each marker's weight in the IK setup."""
        return self.facts.weights

    @property
    def nq(self) -> int:
        """How many Simbody q the model has."""
        return self.facts.nq

    @property
    def qindex(self) -> np.ndarray:
        """Where each of the model's coordinates (in its coordinate set's order) sits in Simbody's q."""
        return self.facts.qindex

    @property
    def lower(self) -> np.ndarray:
        """Per Simbody q: the lower bound (clamped coordinates; else -inf)."""
        return self.facts.lower

    @property
    def upper(self) -> np.ndarray:
        """Per Simbody q: the upper bound (clamped coordinates; else inf)."""
        return self.facts.upper

    @property
    def neutral(self) -> np.ndarray:
        """The model's default pose, in Simbody's q."""
        return self.facts.neutral

    @property
    def second_order(self) -> bool:
        """Whether the Hessian has the residuals' own curvature (:meth:`_curvature` is this model's)."""
        return self.facts.second_order

    @property
    def _locked(self) -> np.ndarray:
        return self.facts.locked

    @property
    def _upstream(self) -> np.ndarray:
        return self.facts.upstream

    # -- OpenSim's kinematics, on this solver's state

    def _set(self, q: np.ndarray) -> None:
        self.facts.pose(self.state, q)
        self._at = None

    def positions(self) -> np.ndarray:
        """Model marker positions (markers, 3) in ground at the state's q (realized to position)."""
        return self.facts.positions(self.state)

    def jacobian(self) -> np.ndarray:
        """d(marker positions)/dq, (3 markers, nq), at the state's q."""
        return self.facts.jacobian(self.state, self._jacobian)

    def _frames(self) -> np.ndarray:
        """Simbody's frame Jacobian of each coordinate's body at the realized state's q: (bodies, 6, nq)."""
        return self.facts.frames(self.state, self._frame_jacobian)

    def _axes(self) -> np.ndarray:
        """Each coordinate's axis of rotation in ground at the realized state's q, (nq, 3); zero for translations."""
        return self.facts.axes(self.state, self._frame_jacobian)

    def _curvature(self, jac: np.ndarray, r: np.ndarray, axes: np.ndarray) -> np.ndarray:
        """The residuals' own curvature, sum_i r_i d2 r_i / dq2 (:meth:`ModelFacts.curvature`)."""
        return self.facts.curvature(jac, r, axes)

    # -- the objective

    def _residual(self, q: np.ndarray, obs: np.ndarray, sqrtw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stacked residual at q (and the per-marker error vectors), leaving the state at q."""
        at = self._at
        if at is None or not np.array_equal(q, at[0]):
            self._set(q)
            at = self._at = [q.copy(), self.positions(), None]
        diff = at[1] - obs
        r = (diff * sqrtw[:, None]).ravel()
        if self.facts.task_index.size:
            r = np.concatenate([r, self.facts.task_sqrtw * (q[self.facts.task_index] - self.facts.task_value)])
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
        k = self.facts.wrappable & (np.abs(q) > np.pi)
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
        n_tasks = self.facts.task_index.size
        n = self.nq
        while iterations < self.max_iterations and not converged:
            iterations += 1
            jac = self._jacobian_at() * rows
            if self.second_order:
                if self._axes_at is None or np.abs(q - self._axes_at).max() > 0.05:  # they turn little in 3 deg
                    self._axes_at, self._axes_now = q, self._axes()
                curvature = self._curvature(jac, r, self._axes_now)
            if n_tasks:
                jac = np.vstack([jac, self.facts.task_rows])
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
            q, _, _, _, iterations, _ = self._minimise(q, obs, sqrtw, rows, self._locked | ~self.facts.root)
        q, r, diff, cost, more, converged = self._minimise(q, obs, sqrtw, rows, self._locked)
        iterations += more
        q = self.wrap(q)  # a whole turn less: the same marker positions, so the same cost
        self._residual(q, obs, sqrtw)  # the state ends at the solution (at once when it is there already)
        errors = np.where(present, np.linalg.norm(diff, axis=1), np.nan)
        return FastFit(q, cost, errors, iterations, converged)


def converged_minimum(ik: FastIK, xyz: np.ndarray, q0: np.ndarray) -> np.ndarray:
    """The objective's minimum next to ``q0``, found by another method: the reference a solver is held to.

    SciPy's trust-region reflective least squares on the same residuals and bounds, run to machine tolerance.

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
        if ik.facts.task_index.size:
            j = np.vstack([j, ik.facts.task_rows])
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
