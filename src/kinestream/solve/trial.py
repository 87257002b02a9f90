"""IK on a whole trial (:func:`solve_trial`, :class:`IKResult`), and OpenSim's own InverseKinematicsTool.

The first frame is solved from the default pose and every later one from the one before, by the fast solver or
OpenSim's. OpenSim's InverseKinematicsTool (:func:`run_ik_tool`) is the reference the frame-wise solvers are checked
against. See :mod:`kinestream.solve`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream.errors import InputError, SolverError
from kinestream.files.mot import Motion
from kinestream.files.trc import MarkerTable
from kinestream.osim import opensim_module
from kinestream.solve.model import (
    _rotational,
    coordinate_names,
    coordinate_references,
    load_model,
    marker_error_mm,
    markers_reference,
)
from kinestream.solve.setup import _IK, IKSetup, check_solver, make_fast


@dataclass
class IKResult:
    """IK on a whole trial: the motion and how well each frame fits.

    Attributes
    ----------
    motion : Motion
        The coordinates (degrees / metres) and an ``rmse_mm`` column.
    rmse_mm : numpy.ndarray
        Each frame's RMS marker error (mm).
    max_error_mm : numpy.ndarray
        Each frame's largest marker error (mm).
    markers_used : list of str
        The markers IK fitted.
    notes : list of str
        Notes on what was done.
    """

    motion: Motion  # coordinates (degrees / metres) and an rmse_mm column
    rmse_mm: np.ndarray
    max_error_mm: np.ndarray
    markers_used: list[str]
    notes: list[str] = field(default_factory=list)


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
        raise InputError(
            f"only {len(used)} of the IK setup's markers are both in the model and the trial ({used}); the trial "
            f"needs the augmented markers ({', '.join(list(setup.marker_weights)[:5])}, ...): "
            f"run 'kinestream augment' first",
            given=used,
            valid=list(setup.marker_weights),
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
        raise SolverError(f"OpenSim's InverseKinematicsTool failed on {marker_file}: {why}", given=marker_file)
    return Path(out_mot)
