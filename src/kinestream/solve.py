"""Inverse kinematics: marker positions to model coordinates, frame by frame.

The objective is OpenSim's: its weighted marker least squares, with
clamped coordinate ranges and locked coordinates. Two solvers minimise it
(``ik.solver``): "fast" (:mod:`kinestream.fastik`, Newton's method on
OpenSim's own kinematics, the default) and "opensim" (the
InverseKinematicsSolver, driven as OpenSim's InverseKinematicsTool drives
it), the reference the fast one is held to. Either way the first frame starts
from the model's default pose and every later frame from the previous
solution. Marker weights and coordinate tasks come from an IK setup file
(OpenCap's: calcaneus 60; knee, ankle, toe and 5th metatarsal 30; ASIS,
PSIS and hip joint centres 25; upper body 5; thigh and shank clusters 4),
accuracy 1e-5 and constraints enforced exactly by default.

Missing markers (NaN) are left out of a frame's fit. Results are degrees for
rotational coordinates and metres for translations, plus each frame's
weighted-free marker RMS error in millimetres.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream.config import DEFAULTS, section
from kinestream.errors import KinestreamError
from kinestream.files.mot import Motion
from kinestream.files.trc import MarkerTable
from kinestream.osim import opensim_module

_IK = DEFAULTS["ik"]


@dataclass(frozen=True)
class IKSettings:
    """How IK runs; the ``[ik]`` section of the config (default.toml documents each setting).

    :meth:`setup` reads an IK setup file with these settings applied, and
    :meth:`streaming` builds the frame-wise core, so that the live service
    and the offline recipe build IK the same way.
    """

    solver: str = _IK["solver"]
    accuracy: float = _IK["accuracy"]
    tolerance: float = _IK["tolerance"]  # the fast solver stops when a step would gain less than this share of F
    constraint_weight: float | str = _IK["constraint_weight"]  # a weight, or "inf": enforced exactly
    coordinate_tasks: bool = _IK["coordinate_tasks"]
    arms: bool = _IK["arms"]
    min_markers: int = _IK["min_markers"]
    outlier_mm: float = _IK["outlier_mm"]
    reassemble_mm: float = _IK["reassemble_mm"]

    @classmethod
    def from_config(cls, config: dict | None) -> IKSettings:
        """Settings from ``config["ik"]``, missing keys from the defaults."""
        return cls(**section(config, "ik", cls))

    def setup(self, ik_setup: str | Path) -> IKSetup:
        """The IK setup file's marker weights (no arm markers when ``arms`` is off), with this accuracy and
        constraint weight."""
        setup = read_ik_setup(ik_setup, coordinate_tasks=bool(self.coordinate_tasks))
        setup.accuracy = float(self.accuracy)
        cw = self.constraint_weight
        setup.constraint_weight = math.inf if str(cw).lower() == "inf" else float(cw)
        if not self.arms:
            from kinestream.augment import UPPER_MARKERS

            setup.marker_weights = {k: v for k, v in setup.marker_weights.items() if k not in UPPER_MARKERS}
        return setup

    def streaming(self, model, setup: IKSetup, names: list[str], like: StreamingIK | None = None) -> StreamingIK:
        """The frame-wise IK core for markers ``names`` with these settings (``like``: see :class:`StreamingIK`)."""
        return StreamingIK(
            model,
            setup,
            names,
            like=like,
            min_markers=int(self.min_markers),
            reassemble_mm=float(self.reassemble_mm),
            outlier_mm=float(self.outlier_mm),
            solver=str(self.solver),
            tolerance=float(self.tolerance),
        )


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
        raise KinestreamError(f"IK setup file {path} does not exist; give an OpenSim InverseKinematicsTool setup file")
    try:
        tool = osim.InverseKinematicsTool(str(path), False)
    except Exception as exc:
        raise KinestreamError(f"{path} is not an OpenSim IK setup file: {exc}") from None
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


def attach_markers(
    model, marker_set: str | Path, joint_centre_markers=tuple(DEFAULTS["scale"]["joint_centre_markers"])
) -> None:
    """Add the markers of an OpenSim MarkerSet file to ``model`` (replacing same-named ones), the pairs of
    ``joint_centre_markers`` put on the joint centres they define (:func:`register_joint_centres`), as scaling
    puts them, so that a generic model and a scaled one hold the same anatomy."""
    osim = opensim_module()
    marker_set = Path(marker_set)
    if not marker_set.is_file():
        raise KinestreamError(f"marker set {marker_set} does not exist; give an OpenSim MarkerSet .xml file")
    markers = osim.MarkerSet(str(marker_set))
    existing = model.updMarkerSet()
    for i in range(markers.getSize()):
        marker = markers.get(i)
        parent = marker.getSocket("parent_frame").getConnecteePath()
        body = parent.rsplit("/", 1)[-1]
        if not model.getBodySet().contains(body) and body != "ground":
            continue
        idx = existing.getIndex(marker.getName())
        if idx >= 0:
            existing.remove(idx)
        model.addMarker(marker.clone())
    model.finalizeConnections()
    register_joint_centres(model, model.initSystem(), joint_centre_markers)


def _pair(spec: str) -> tuple[str, str]:
    names = str(spec).split()
    if len(names) != 2:
        raise KinestreamError(
            f"joint_centre_markers entry {spec!r} is not valid; give two marker names separated by a space, "
            f'e.g. "r_ankle_study r_mankle_study"'
        )
    return names[0], names[1]


def register_joint_centres(model, state, pairs) -> list[str]:
    """Put each pair of markers that straddles a joint onto that joint's centre; returns what was moved.

    ``pairs`` are "A B" marker names on one body of ``model`` (the lateral and medial malleolus on the tibia,
    say). Both markers move by the same offset, so that their midpoint lands on the nearest centre of a joint
    to a body distal to theirs (the ankle, for the tibia); their separation is kept. Lab protocols define the
    ankle and knee joint centres so, as midpoints of the malleoli and epicondyles, and the augmenter predicts
    its markers where such protocols put them. Pairs the model lacks are passed over. ``state`` is the model's
    default pose (``initSystem``); the markers are changed in place and the system must be initialised again.
    """
    osim = opensim_module()
    markers = model.updMarkerSet()
    notes: list[str] = []
    joints = model.getJointSet()
    for spec in pairs:
        a, b = _pair(spec)
        if not (markers.contains(a) and markers.contains(b)):
            continue
        ma, mb = markers.get(a), markers.get(b)
        body = ma.getParentFrame().findBaseFrame()
        if mb.getParentFrame().findBaseFrame().getAbsolutePathString() != body.getAbsolutePathString():
            raise KinestreamError(
                f"joint_centre_markers {a} and {b} sit on different bodies "
                f"({ma.getParentFrameName()}, {mb.getParentFrameName()}); a pair must straddle one joint of one body"
            )
        mid = (ma.findLocationInFrame(state, body).to_numpy() + mb.findLocationInFrame(state, body).to_numpy()) / 2
        centres = []
        for i in range(joints.getSize()):
            joint = joints.get(i)
            parent = joint.getParentFrame()
            if parent.findBaseFrame().getAbsolutePathString() == body.getAbsolutePathString():
                centre = parent.findStationLocationInAnotherFrame(state, osim.Vec3(0.0, 0.0, 0.0), body).to_numpy()
                centres.append((float(np.linalg.norm(centre - mid)), joint.getName(), centre))
        if not centres:
            raise KinestreamError(
                f"joint_centre_markers {a} and {b} sit on {body.getName()}, which no joint leaves; "
                f"name a pair that straddles a joint to a distal body"
            )
        distance, joint_name, centre = min(centres, key=lambda c: c[0])
        shift = centre - mid
        for marker in (ma, mb):  # a marker's frame may be an offset frame of the body: move it in its axes
            offset = body.expressVectorInAnotherFrame(state, osim.Vec3(*shift), marker.getParentFrame()).to_numpy()
            marker.set_location(osim.Vec3(*(marker.get_location().to_numpy() + offset)))
        notes.append(f"{a} and {b} onto the centre of {joint_name} ({distance * 1000:.0f} mm)")
    return notes


def strip_for_ik(model) -> list[str]:
    """Remove what IK does not need and what slows it down; returns what was removed.

    Forces (muscles, ligaments) play no part in IK. Patellae that OpenCap's
    models (LaiUhlrich2022, LaiArnoldModified2017) couple to the knee angle by
    constraints make every IK frame an order of magnitude slower; as OpenCap
    does before IK, their bodies, joints and constraints go, and the knee
    angle is unchanged.
    """
    osim = opensim_module()
    removed: list[str] = []
    forces = model.updForceSet()
    if forces.getSize():
        removed.append(f"{forces.getSize()} forces")
        forces.clearAndDestroy()
    bodies = model.updBodySet()
    patellae = [
        bodies.get(i).getName() for i in range(bodies.getSize()) if "patella" in bodies.get(i).getName().lower()
    ]
    if patellae:
        joints = model.updJointSet()
        dropped_coords = set()
        for i in reversed(range(joints.getSize())):
            joint = joints.get(i)
            child = joint.getChildFrame().findBaseFrame().getName()
            if child in patellae:
                for c in range(joint.numCoordinates()):
                    dropped_coords.add(joint.get_coordinates(c).getName())
                removed.append(f"joint {joint.getName()}")
                joints.remove(i)
        constraints = model.updConstraintSet()
        for i in reversed(range(constraints.getSize())):
            con = constraints.get(i)
            coupled = set()
            coupler = osim.CoordinateCouplerConstraint.safeDownCast(con)
            if coupler is not None:
                independent = coupler.getIndependentCoordinateNames()
                coupled = {coupler.getDependentCoordinateName()}
                coupled |= {independent.get(k) for k in range(independent.getSize())}
            if "patell" in con.getName().lower() or coupled & dropped_coords:
                removed.append(f"constraint {con.getName()}")
                constraints.remove(i)
        markers = model.updMarkerSet()
        for i in reversed(range(markers.getSize())):
            if markers.get(i).getParentFrameName().rsplit("/", 1)[-1] in patellae:
                markers.remove(i)
        for name in patellae:
            bodies.remove(bodies.getIndex(name))
            removed.append(f"body {name}")
    model.finalizeConnections()
    return removed


def load_model(path: str | Path, marker_set: str | Path | None = None):
    """An OpenSim model ready for IK, and a list of what was stripped from it.

    ``marker_set`` is attached only when the model carries no markers of its own.
    """
    from kinestream.osim import read_model

    model = read_model(path)
    if marker_set is not None and model.getMarkerSet().getSize() == 0:
        attach_markers(model, marker_set)
    removed = strip_for_ik(model)
    model.initSystem()
    return model, removed


def coordinate_names(model) -> list[str]:
    cs = model.getCoordinateSet()
    return [cs.get(i).getName() for i in range(cs.getSize())]


def _rotational(model) -> np.ndarray:
    osim = opensim_module()
    cs = model.getCoordinateSet()
    return np.array([cs.get(i).getMotionType() == osim.Coordinate.Rotational for i in range(cs.getSize())])


def vec3_table(names: list[str], times, xyz: np.ndarray):
    """An OpenSim TimeSeriesTableVec3 in metres; ``xyz`` is (frames, len(names), 3), NaN where missing."""
    osim = opensim_module()
    out = osim.TimeSeriesTableVec3()
    # A list, not an osim.StdVectorString: once ezc3d (also SWIG) has made a std::vector<std::string>, the
    # SWIG runtime both share takes OpenSim's proxy of that type for ezc3d's, and the call is refused.
    out.setColumnLabels(list(names))
    for t, frame in zip(times, np.asarray(xyz, dtype=float).tolist(), strict=False):
        row = osim.RowVectorVec3(len(names))
        for j, (x, y, z) in enumerate(frame):
            row[j] = osim.Vec3(x, y, z)
        out.appendRow(float(t), row)
    out.addTableMetaDataString("Units", "m")
    return out


def marker_weights(setup: IKSetup, names: list[str]):
    """OpenSim's weight set for the named markers, weighted as in ``setup``."""
    osim = opensim_module()
    weights = osim.SetMarkerWeights()
    for n in names:
        weights.cloneAndAppend(osim.MarkerWeight(n, setup.marker_weights[n]))
    return weights


def markers_reference(table: MarkerTable, names: list[str], setup: IKSetup):
    """A MarkersReference of the named markers of ``table``, weighted as in ``setup``."""
    osim = opensim_module()
    xyz = table.xyz[:, [table.index(n) for n in names]]
    return osim.MarkersReference(vec3_table(names, table.time, xyz), marker_weights(setup, names))


def coordinate_references(model, setup: IKSetup):
    """The setup's coordinate tasks as OpenSim CoordinateReferences (constant targets)."""
    osim = opensim_module()
    refs = osim.SimTKArrayCoordinateReference()
    cs = model.getCoordinateSet()
    for name, (weight, value) in setup.coordinate_tasks.items():
        if cs.contains(name):
            target = cs.get(name).getDefaultValue() if value is None else value
            ref = osim.CoordinateReference(name, osim.Constant(target))
            ref.setWeight(weight)
            refs.push_back(ref)
    return refs


@dataclass
class IKResult:
    motion: Motion  # coordinates (degrees / metres) and an rmse_mm column
    rmse_mm: np.ndarray
    max_error_mm: np.ndarray
    markers_used: list[str]
    notes: list[str] = field(default_factory=list)


SOLVERS = ("fast", "opensim")


def check_solver(solver: str) -> str:
    """The IK solver's name, or a clear error naming the valid ones."""
    if solver not in SOLVERS:
        raise KinestreamError(
            f"IK solver {solver!r} is not known; give one of {', '.join(SOLVERS)} (ik.solver, --solver)"
        )
    return solver


def make_fast(model, setup: IKSetup, names: list[str], state=None, tolerance: float = _IK["tolerance"], like=None):
    """The fast solver for this model (stopping at ``tolerance``, ``[ik] tolerance``; ``like``: a fast solver on the
    same model whose knowledge of it this one shares), or (None, why) when the model needs OpenSim's own."""
    from kinestream.fastik import FastIK

    try:
        return FastIK(model, setup, names, state=state, ftol=float(tolerance), like=like), None
    except KinestreamError as exc:
        return None, f"OpenSim's IK solver instead of the fast one: {exc}"


def marker_error_mm(errors: np.ndarray) -> tuple[float, float]:
    """RMS and largest of per-marker distances (m, NaN for markers not fitted), in mm; NaN when none was fitted."""
    e = np.asarray(errors, dtype=float)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("nan"), float("nan")
    return math.sqrt(float(np.mean(e**2))) * 1000, float(e.max()) * 1000


def solve_trial(
    model,
    table: MarkerTable,
    setup: IKSetup,
    progress: Callable[[int], None] | None = None,
    solver: str = "fast",
    tolerance: float = _IK["tolerance"],
) -> IKResult:
    """IK for every frame of ``table``: the first from the default pose, every later one from the one before.

    ``solver``: "fast" (:class:`kinestream.fastik.FastIK`: the same objective,
    minimised to a cost at least as low) or "opensim" (InverseKinematicsSolver,
    assemble then track, as OpenSim's InverseKinematicsTool runs it). A model
    the fast solver cannot take falls back to OpenSim's, with a note.
    """
    model_markers = model.getMarkerSet()
    used = [n for n in setup.marker_weights if n in table and model_markers.contains(n)]
    if len(used) < 3:
        raise KinestreamError(
            f"only {len(used)} of the IK setup's markers are both in the model and the trial ({used}); the trial "
            f"needs the augmented markers ({', '.join(list(setup.marker_weights)[:5])}, ...): "
            f"run 'kinestream augment' first"
        )
    if check_solver(solver) == "fast":
        fast, why = make_fast(model, setup, used, tolerance=tolerance)
        if fast is not None:
            return _solve_trial_fast(fast, model, table, used, progress)
        result = _solve_trial_opensim(model, table, setup, used, progress)
        result.notes.insert(0, why)
        return result
    return _solve_trial_opensim(model, table, setup, used, progress)


def _solve_trial_fast(fast, model, table: MarkerTable, used: list[str], progress) -> IKResult:
    names = coordinate_names(model)
    rot = _rotational(model)
    xyz = table.xyz[:, [table.index(n) for n in used]]
    n = table.n_frames
    q = np.full((n, len(names)), np.nan)
    rmse = np.full(n, np.nan)
    emax = np.full(n, np.nan)
    notes: list[str] = []
    warm = None
    for i in range(n):
        try:
            fit = fast.solve(xyz[i], warm)
        except ValueError as exc:  # no marker in this frame
            notes.append(f"frame {i}: IK not solved ({exc}); the next frame starts from the default pose")
            warm = None
            continue
        warm = fit.q
        q[i] = fit.q[fast.qindex]
        rmse[i], emax[i] = marker_error_mm(fit.errors)
        if progress is not None:
            progress(1)
    q[:, rot] = np.degrees(q[:, rot])
    motion = Motion(table.time.copy(), names + ["rmse_mm"], np.column_stack([q, rmse]), in_degrees=True)
    return IKResult(motion, rmse, emax, used, notes)


def _solve_trial_opensim(model, table: MarkerTable, setup: IKSetup, used: list[str], progress) -> IKResult:
    osim = opensim_module()
    markers_ref = markers_reference(table, used, setup)
    solver = osim.InverseKinematicsSolver(
        model, markers_ref, coordinate_references(model, setup), setup.constraint_weight
    )
    cs = model.getCoordinateSet()
    solver.setAccuracy(setup.accuracy)
    state = model.initSystem()
    names = coordinate_names(model)
    rot = _rotational(model)
    n = table.n_frames
    q = np.full((n, len(names)), np.nan)
    rmse = np.full(n, np.nan)
    emax = np.full(n, np.nan)
    notes: list[str] = []
    errors = osim.SimTKArrayDouble()
    assembled = False
    for i in range(n):
        state.setTime(float(table.time[i]))
        try:
            if not assembled:
                solver.assemble(state)
                assembled = True
            else:
                solver.track(state)
        except Exception as exc:  # assembly can fail on a frame of wild markers
            notes.append(f"frame {i}: IK failed ({str(exc).splitlines()[0][:120]}); re-assembling next frame")
            assembled = False
            continue
        q[i] = [cs.get(j).getValue(state) for j in range(len(names))]
        solver.computeCurrentMarkerErrors(errors)
        rmse[i], emax[i] = marker_error_mm(np.array([errors.getElt(k) for k in range(errors.size())]))
        if progress is not None:
            progress(1)
    q[:, rot] = np.degrees(q[:, rot])
    values = np.column_stack([q, rmse])
    motion = Motion(table.time.copy(), names + ["rmse_mm"], values, in_degrees=True)
    return IKResult(motion, rmse, emax, used, notes)


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
            raise KinestreamError(
                f"only {len(self.names)} of the incoming markers have an IK weight and a model "
                f"marker ({self.names}); the stream needs the augmented markers"
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
                raise KinestreamError("an IK core shares another's model only on the same model and markers")
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


def run_ik_tool(
    model_path: str | Path,
    marker_file: str | Path,
    ik_setup: str | Path,
    out_mot: str | Path,
    accuracy: float = 1e-5,
    coordinate_tasks: bool = False,
    marker_set: str | Path | None = None,
) -> Path:
    """OpenSim's own InverseKinematicsTool on a .trc: the reference the frame-wise solvers are checked against."""
    osim = opensim_module()
    model, _ = load_model(model_path, marker_set)
    tool = osim.InverseKinematicsTool(str(ik_setup))
    tasks = tool.getIKTaskSet()
    for i in range(tasks.getSize()):
        if tasks.get(i).getConcreteClassName() == "IKCoordinateTask" and not coordinate_tasks:
            tasks.get(i).setApply(False)
    tool.setModel(model)
    tool.set_marker_file(str(marker_file))
    markers = osim.TimeSeriesTableVec3(str(marker_file))
    times = markers.getIndependentColumn()
    tool.setStartTime(times[0])
    tool.setEndTime(times[len(times) - 1])
    tool.set_accuracy(accuracy)
    tool.set_report_errors(False)
    tool.setResultsDir(str(Path(out_mot).parent))
    tool.setOutputMotionFileName(str(out_mot))
    try:
        ok = tool.run()
    except RuntimeError as exc:
        ok, why = False, str(exc).strip()[:200]
    else:
        why = "it returned False"
    if not ok:
        raise KinestreamError(f"OpenSim's InverseKinematicsTool failed on {marker_file}: {why}")
    return Path(out_mot)
