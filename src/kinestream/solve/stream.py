"""Frame-wise IK for a live stream (:class:`StreamingIK`, an :class:`IKFrame` a frame).

Each frame is warm-started from the one before, outlying markers left out, re-assembled from the neutral pose when the
fit fails, never raising. See :mod:`kinestream.solve`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from kinestream.errors import InputError, SolverError
from kinestream.osim import opensim_module
from kinestream.settings import IKSettings
from kinestream.solve.model import (
    _rotational,
    coordinate_names,
    coordinate_references,
    marker_error_mm,
    marker_weights,
    vec3_table,
)
from kinestream.solve.setup import _IK, IKSetup, check_solver, make_fast


@dataclass
class IKFrame:
    """One solved frame: coordinates (degrees / metres, NaN when unsolved) and marker error."""

    q: np.ndarray
    rmse_mm: float
    max_error_mm: float
    ok: bool
    event: str | None = None
    warm: np.ndarray | None = None  # the solver's state (Simbody's q order), to warm-start another solver


class StreamingIK:
    """Frame-wise IK for a live stream: one frame of marker positions in, coordinates out.

    Each frame starts from the previous frame's solution (``predict`` moves
    it on by the previous frame's velocity; off by default). ``solver``:

    - "fast": :class:`kinestream.fastik.FastIK`, OpenSim's IK objective
      minimised by Newton's method on OpenSim's kinematics (2-3 ms a
      frame);
    - "opensim": OpenSim's InverseKinematicsSolver. It reads marker positions
      from a MarkersReference fixed at construction, and the Python bindings
      offer no buffered reference, so each frame gets a one-row reference and
      a fresh solver that assembles from the warm start (5-20 ms a frame).

    A model the fast solver cannot take (enforced constraints, quaternion
    joints, a joint in gimbal lock on a bound such as LaiArnoldModified2017's
    shoulder) gets OpenSim's, and :attr:`notes` says why. The model, its state
    and the marker weights persist.

    A frame with fewer than ``min_markers`` markers is not solved. While the
    worst marker is more than ``outlier_mm`` from where the fitted body puts
    it, it is left out and the frame fitted again (at most ``max_outliers``
    times). When assembly fails or the fit stays poor
    (``reassemble_mm`` RMS), the frame is solved again from the model's
    default (neutral) pose and the better fit kept; if both fail the frame
    reports NaN and the next one starts from neutral. Nothing raises
    into the caller: every such event is counted and described in
    :attr:`IKFrame.event`.

    ``like``: a core on the same model object, markers and settings. This
    one solves in a state of its own, copied from that core's first one, and
    shares the model and what its fast solver learned of it: several people
    on one model cost one model load and one solver set-up, and each gives
    the numbers a core of their own would.
    """

    def __init__(
        self,
        model,
        setup: IKSetup,
        marker_names: list[str],
        min_markers: int = 6,
        reassemble_mm: float = 80.0,
        outlier_mm: float = 150.0,
        max_outliers: int = 3,
        predict: bool = False,
        solver: str = "fast",
        tolerance: float = _IK["tolerance"],
        like: StreamingIK | None = None,
    ):
        osim = opensim_module()
        self.osim = osim
        self.model = model
        self.setup = setup
        model_markers = model.getMarkerSet()
        self.names = [n for n in marker_names if n in setup.marker_weights and model_markers.contains(n)]
        if len(self.names) < 3:
            raise InputError(
                f"only {len(self.names)} of the incoming markers have an IK weight and a model "
                f"marker ({self.names}); the stream needs the augmented markers",
                given=self.names,
                valid="at least 3 augmented markers",
            )
        self._index = np.array([marker_names.index(n) for n in self.names])
        self._position = {n: k for k, n in enumerate(self.names)}
        self._weights = marker_weights(setup, self.names)
        self._coord_refs = coordinate_references(model, setup)
        cs = model.getCoordinateSet()
        if like is None:
            self.state = model.initSystem()
            self.initial = osim.State(self.state)  # as it was made, for a core that shares this model (like)
        else:
            if like.model is not model or like.names != self.names:
                raise SolverError(
                    "an IK core shares another's model only on the same model and markers",
                    valid="the same model and markers",
                )
            self.state, self.initial = osim.State(like.initial), like.initial
        self._neutral = self.state.getQ().to_numpy().copy()
        self.coordinates = coordinate_names(model)
        self._rot = _rotational(model)
        self._coords = [cs.get(i) for i in range(cs.getSize())]
        self.min_markers = min_markers
        self.reassemble_mm = reassemble_mm
        self.outlier_mm = outlier_mm
        self.max_outliers = max_outliers
        self.predict = predict
        self._errors = osim.SimTKArrayDouble()
        self._q_prev: np.ndarray | None = None
        self._q_prev2: np.ndarray | None = None
        self.counts = {
            "frames": 0,
            "solved": 0,
            "too_few_markers": 0,
            "outlier_markers": 0,
            "reassembled": 0,
            "failed": 0,
        }
        self.notes: list[str] = []  # e.g. why the fast solver is not used for this model
        self.solver = check_solver(solver)
        self._fast = None
        if like is not None and like.solver != "fast" and solver == "fast":  # the model needs OpenSim's solver
            self.solver = like.solver
            self.notes.extend(like.notes)
        elif solver == "fast":
            shared = like._fast if like is not None else None
            self._fast, why = make_fast(model, setup, self.names, self.state, tolerance, like=shared)
            if self._fast is None:
                self.solver = "opensim"
                self.notes.append(why)
        self.iterations = 0  # the fast solver's Newton steps on the last frame
        self.profile: list[tuple[float, float, float]] | None = None  # set to [] to time each assembly:
        # (seconds building the one-row reference, building the solver, assembling)

    def reset(self) -> None:
        """Forget the warm start: the next frame assembles from the neutral pose."""
        self.state.setQ(self.osim.Vector(self._neutral.tolist()))
        self._q_prev = self._q_prev2 = None
        if self._fast is not None:
            self._fast.forget()

    def _reference(self, xyz: np.ndarray, t: float):
        return self.osim.MarkersReference(vec3_table(self.names, [t], xyz[None]), self._weights)

    def _assemble(self, xyz: np.ndarray, t: float, q0: np.ndarray | None) -> tuple[float, float, np.ndarray]:
        """Solve from ``q0`` (None: neutral); returns RMS and max error (mm) and per-marker errors (m)."""
        if self._fast is not None:
            self.state.setTime(t)
            fit = self._fast.solve(xyz, q0)
            self.iterations = fit.iterations
            return (*marker_error_mm(fit.errors), fit.errors)
        osim = self.osim
        t0 = time.perf_counter()
        self.state.setQ(osim.Vector((self._neutral if q0 is None else q0).tolist()))
        self.state.setTime(t)
        reference = self._reference(xyz, t)
        t1 = time.perf_counter()
        solver = osim.InverseKinematicsSolver(self.model, reference, self._coord_refs, self.setup.constraint_weight)
        solver.setAccuracy(self.setup.accuracy)
        t2 = time.perf_counter()
        solver.assemble(self.state)
        if self.profile is not None:
            self.profile.append((t1 - t0, t2 - t1, time.perf_counter() - t2))
        solver.computeCurrentMarkerErrors(self._errors)
        per_marker = np.full(len(self.names), np.nan)
        for k in range(self._errors.size()):
            per_marker[self._position[solver.getMarkerNameForIndex(k)]] = self._errors.getElt(k)
        if not np.isfinite(per_marker).any():
            raise RuntimeError("no marker was fitted")
        return (*marker_error_mm(per_marker), per_marker)

    def _q(self) -> np.ndarray:
        return self.state.getQ().to_numpy().copy()

    def _try(self, xyz, t, q0):
        try:
            return self._assemble(xyz, t, q0), None
        except Exception as exc:  # OpenSim raises RuntimeError on a failed assembly
            return None, str(exc).splitlines()[0][:100]

    def step(self, xyz: np.ndarray, t: float, warm: np.ndarray | None = None) -> IKFrame:
        """Solve one frame; ``xyz`` is (markers, 3) in the order of ``marker_names``. Never raises.

        ``warm``: start from this solution (an :attr:`IKFrame.warm` of a solver
        of the same model, e.g. a later frame solved in another process)
        instead of this solver's own last one.
        """
        self.counts["frames"] += 1
        nan = np.full(len(self.coordinates), np.nan)
        try:
            xyz = np.array(np.asarray(xyz, dtype=float)[self._index])
            t = float(t)
        except (IndexError, ValueError, TypeError):
            self.counts["failed"] += 1
            return IKFrame(nan, float("nan"), float("nan"), False, "frame has the wrong shape")
        finite = np.isfinite(xyz).all(axis=1)
        if finite.sum() < self.min_markers:
            self.counts["too_few_markers"] += 1
            return IKFrame(
                nan,
                float("nan"),
                float("nan"),
                False,
                f"{int(finite.sum())} markers present, {self.min_markers} needed: frame not solved",
            )
        xyz[~finite] = np.nan
        if warm is not None and np.shape(warm) == self._neutral.shape and np.isfinite(warm).all():
            self._q_prev, self._q_prev2 = np.asarray(warm, dtype=float), None
        q0 = self._q_prev
        if self.predict and q0 is not None and self._q_prev2 is not None:
            q0 = 2 * q0 - self._q_prev2
        events = []
        fit, err = self._try(xyz, t, q0)
        dropped: list[str] = []
        while fit is not None and fit[1] > self.outlier_mm and len(dropped) < self.max_outliers:
            # the marker farthest from where the rest of the body puts it: leave it out and fit again
            worst = int(np.nanargmax(fit[2]))
            if np.count_nonzero(np.isfinite(xyz).all(axis=1)) <= self.min_markers:
                break
            xyz[worst] = np.nan
            dropped.append(self.names[worst])
            fit, err = self._try(xyz, t, q0)
        if dropped:
            self.counts["outlier_markers"] += len(dropped)
            events.append(f"left out {', '.join(dropped)} (more than {self.outlier_mm:g} mm off)")
        if q0 is not None and (fit is None or fit[0] > self.reassemble_mm):
            self.counts["reassembled"] += 1
            events.append("re-assembled from the neutral pose" + (f" after: {err}" if err else " (poor fit)"))
            first = fit
            fit, err = self._try(xyz, t, None)
            if first is not None and (fit is None or first[0] <= fit[0]):
                fit = first
                self._assemble(xyz, t, q0)  # put the better solution back in the state
        if fit is None:
            self.counts["failed"] += 1
            self.reset()
            events.append(f"IK failed ({err}); the next frame starts from the neutral pose")
            return IKFrame(nan, float("nan"), float("nan"), False, "; ".join(events))
        if self._fast is not None:  # it keeps whole turns out itself
            q = self._q()  # Simbody's order, for the warm start
            out = q[self._fast.qindex]  # the model's coordinate order
        else:
            out = np.array([c.getValue(self.state) for c in self._coords])  # the model's coordinate order
            turned = self._rot & (np.abs(out) > np.pi)
            if turned.any():  # a whole turn is the same pose: keep angles in (-180, 180]
                for k in np.flatnonzero(turned):
                    out[k] = np.pi - (np.pi - out[k]) % (2 * np.pi)
                    self._coords[k].setValue(self.state, out[k], False)
            q = self._q()  # Simbody's order, for the warm start
        self._q_prev2, self._q_prev = self._q_prev, q
        self.counts["solved"] += 1
        out[self._rot] = np.degrees(out[self._rot])
        return IKFrame(out, fit[0], fit[1], True, "; ".join(events) or None, q)


def streaming_ik(
    settings: IKSettings, model, setup: IKSetup, names: list[str], like: StreamingIK | None = None
) -> StreamingIK:
    """The frame-wise IK core for markers ``names`` with the ``[ik]`` settings (``like``: see :class:`StreamingIK`).

    The live service and ``process --streaming`` build it here, so that both solve alike.
    """
    return StreamingIK(
        model,
        setup,
        names,
        like=like,
        min_markers=int(settings.min_markers),
        reassemble_mm=float(settings.reassemble_mm),
        outlier_mm=float(settings.outlier_mm),
        solver=str(settings.solver),
        tolerance=float(settings.tolerance),
    )
