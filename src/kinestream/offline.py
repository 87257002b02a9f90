"""The offline recipe: recorded keypoints to a scaled model and joint angles.

    read .trc -> clean -> augment -> scale (static pose) -> IK -> .mot + plot

Each step calls the same stage cores the streaming service uses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream import checks, clean, scale, solve
from kinestream.assets import Assets, get_assets
from kinestream.augment import Augmenter, augment_table
from kinestream.errors import InputError, KinestreamError, SolverError
from kinestream.files.c3d import trc_to_c3d
from kinestream.files.mot import Motion, solved_rows, write_mot
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.ingest import complete_keypoints
from kinestream.pipeline import FrameProcessor, FrameSolver, Prepared, Taken
from kinestream.plots import peak, plot_angles, save_figure
from kinestream.progress import Task
from kinestream.settings import IngestSettings, Settings
from kinestream.static import StillPose, still_pose

AUGMENTED = "_study"  # the 43 augmented markers end so; a trial that has them (OpenCap's MarkerData) gets them anew


@functools.lru_cache(maxsize=4)
def _augmenter(assets: Assets) -> Augmenter:
    """One augmenter per set of assets in a process: its onnxruntime sessions are made once, not per trial.

    ``batch`` runs many trials in each worker.
    """
    return Augmenter.from_assets(assets)


_MODELS: dict[tuple, tuple] = {}  # (path, its mtime and size, marker set) -> (model, removed)


def _model(path: str | Path, marker_set: str | Path | None):
    """The model at ``path`` prepared for IK, loaded once per process while the file is unchanged.

    A subject's trials share it. Each solve starts from a fresh state of it (``initSystem``), so a loaded model gives
    the numbers a new one would.
    """
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, str(marker_set))
    if key not in _MODELS:
        while len(_MODELS) >= 8:  # the oldest goes: a batch moves from subject to subject
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = solve.load_model(path, marker_set)
    return _MODELS[key]


def load_keypoints(path: str | Path, ingest: IngestSettings | None = None) -> MarkerTable:
    """A recorded trial (.trc) as :func:`prepare_keypoints` makes it."""
    return prepare_keypoints(read_trc(path), ingest)


def prepare_keypoints(table: MarkerTable, ingest: IngestSettings | None = None) -> MarkerTable:
    """Keypoints with BODY_25 names, MidHip and Neck derived when absent, turned into the model's axes.

    ``ingest`` turns them (the ``[ingest]`` settings; None: as they are).

    Markers the augmenter predicts (``*_study``, as OpenCap's MarkerData .trc carry beside the keypoints) are
    left out, their names in ``meta["left_out"]``: they are predicted again from the keypoints.
    """
    keep = [n for n in table.names if not n.endswith(AUGMENTED)]
    left_out = [n for n in table.names if n.endswith(AUGMENTED)]
    if left_out:
        table = table.select(keep)
    if ingest is not None:
        table = ingest.apply(table)
    table = complete_keypoints(table)
    table.meta["left_out"] = left_out
    return table


def clean_and_augment(
    keypoints: MarkerTable,
    height: float,
    mass: float,
    assets: Assets,
    settings: Settings,
    streaming: bool = False,
    *,
    clean_first: bool = True,
    floor_offset: bool | None = None,
) -> tuple[MarkerTable, list[str]]:
    """The keypoints cleaned and augmented, and notes on what was done.

    The offline zero-lag cores, or the live ones frame by frame: the one recipe of ``process``, ``augment`` and
    :func:`kinestream.api.augment`.

    Offline, ``keypoints`` come turned by ``[ingest]`` (:func:`prepare_keypoints`); the live cores turn them
    themselves, so ``streaming`` takes them as recorded. ``clean_first`` False augments the keypoints as they
    are (offline only); ``floor_offset``: whether the augmented markers are moved up onto the floor (None: the
    ``[augment]`` setting).
    """
    if streaming:
        with Task(keypoints.n_frames, "clean + augment (frame-wise)") as task:
            return stream_augment(keypoints, height, mass, assets, settings, task.update)
    notes = []
    if clean_first:
        cleaned, creport = clean.clean_trial(keypoints, settings.clean)
        notes.append(describe_clean(creport, keypoints))
        keypoints = cleaned
    if floor_offset is None:
        floor_offset = settings.augment.floor_offset
    augmented, areport = augment_table(keypoints, _augmenter(assets), height, mass, apply_floor_offset=floor_offset)
    return augmented, [*notes, areport.describe()]


def read_notes(keypoints: MarkerTable, ingest: IngestSettings) -> list[str]:
    """What reading a trial did to it: keypoints turned, derived, markers left out."""
    turned = ingest.describe()
    notes = [turned] if turned else []
    if keypoints.meta.get("derived"):
        notes.append(f"derived {', '.join(keypoints.meta['derived'])} from the hips/shoulders")
    if keypoints.meta.get("left_out"):
        notes.append(
            f"left out the {len(keypoints.meta['left_out'])} augmented markers the trial already holds "
            f"({keypoints.meta['left_out'][0]}, ...): they are predicted again from its keypoints"
        )
    return notes


def static_markers(
    static_trial: str | Path,
    height: float,
    mass: float,
    assets: Assets,
    settings: Settings,
    out_path: str | Path,
    window: str | tuple[float, float] = "auto",
) -> tuple[MarkerTable, StillPose, list[str]]:
    """A separate static trial averaged into one still pose and augmented; returns the markers, the pose and notes.

    The trial is read and turned as the movement trial is, its frames (those in ``window``, a (start, end) range in
    seconds, or all of them) averaged into one still pose and augmented, written to ``out_path``; it returns the
    augmented markers, the still pose and notes. A static trial has no motion to filter, so any length from one frame up
    will do (:mod:`kinestream.static`); the offline and the streaming recipe share this one rule.
    """
    keypoints = load_keypoints(static_trial, settings.ingest)
    notes = read_notes(keypoints, settings.ingest)
    try:
        if not isinstance(window, str):
            t0, t1 = window
            inside = np.flatnonzero((keypoints.time >= t0 - 1e-9) & (keypoints.time <= t1 + 1e-9))
            if inside.size == 0:
                raise InputError(
                    f"static range {t0:g}-{t1:g} s holds none of its frames ({keypoints.time[0]:.3f}-"
                    f"{keypoints.time[-1]:.3f} s); give a range inside it, or 'auto' to average all of them",
                    key="static",
                    given=(t0, t1),
                    valid=(float(keypoints.time[0]), float(keypoints.time[-1])),
                )
            keypoints = keypoints.frames(int(inside[0]), int(inside[-1]) + 1)
        still = still_pose(keypoints)  # averaged, not filtered: a still pose has no motion to filter
        augmented, augmenting = clean_and_augment(still.table, height, mass, assets, settings, clean_first=False)
    except KinestreamError as exc:
        raise exc.reworded(f"static trial {static_trial}: {exc}") from None
    written = write_trc(out_path, augmented)
    notes = [f"static trial {static_trial}: " + "; ".join(notes + [still.describe(), *augmenting])]
    return augmented, still, notes + [f"wrote {written} (the static trial's still pose, augmented)"]


def _static_window(static, settings: Settings):
    """The still window asked for: ``static`` when given, else the settings' ``[scale] static``."""
    return static if static is not None else settings.scale.static


def scale_from_static(
    static_trial: str | Path,
    height: float,
    mass: float,
    out_dir: str | Path,
    settings: Settings,
    static=None,
    augmented_name: str | None = None,
) -> tuple[Path, list[str]]:
    """The model scaled from a separate static trial; returns its path and notes.

    The trial's frames are averaged into one still pose, augmented; the model is written to ``out_dir`` as
    ``STATIC_scaled.osim`` beside the static trial's augmented markers. ``static``: 'auto' (every frame) or a
    (start, end) range of the static trial's frames, in seconds; None: the settings' ``[scale] static``.
    ``process --static-trial`` and ``batch`` (once per subject) both scale so.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(static_trial).stem
    assets = get_assets(settings)
    markers, still, notes = static_markers(
        static_trial,
        height,
        mass,
        assets,
        settings,
        out_dir / (augmented_name or f"{stem}_augmented.trc"),
        scale.parse_static(_static_window(static, settings)),
    )
    try:
        result = scale.scale_model(
            markers, mass, height, out_dir / f"{stem}_scaled.osim", assets, settings.scale, static=still.scale_window
        )
    except KinestreamError as exc:
        raise exc.reworded(f"static trial {static_trial}: {exc}") from None
    return Path(result.model_path), notes + result.messages + [_scale_error(result)]


def _scale_error(result) -> str:
    return f"scaled model marker error: {result.rmse_mm:.1f} mm RMS (max {result.max_error_mm:.1f} mm)"


def describe_clean(report, table: MarkerTable) -> str:
    """The offline clean stage in one line: its low-pass and what was done to the gaps of ``table``."""
    cut = f"low-pass {report.cutoff_hz:.2f} Hz" + (" (Winter's residual analysis)" if report.auto else "")
    return f"{cut}, zero lag; " + report.gaps.describe(table.names, table.rate)


def write_angles(path: str | Path, motion: Motion) -> tuple[Motion, str | None]:
    """Write the solved frames of ``motion`` to a .mot; returns them and a note on any left out."""
    solved, dropped = solved_rows(motion)
    write_mot(path, solved)
    note = f"{dropped} unsolved frames left out of the .mot (OpenSim's GUI stops at a NaN)" if dropped else None
    return solved, note


def c3d_beside(trc: Path, messages: list[str]) -> Path | None:
    """The .c3d of ``trc`` beside it; a trial the format cannot hold gets a message instead, not an error."""
    try:
        path, note = trc_to_c3d(trc)
    except KinestreamError as exc:
        messages.append(f"no .c3d of {trc.name}: {exc}")
        return None
    messages += [note] if note else []
    return path


def run_ik(
    model_path: str | Path,
    markers: MarkerTable,
    ik_setup: str | Path,
    settings: Settings | None = None,
    marker_set: str | Path | None = None,
    desc: str = "IK",
) -> solve.IKResult:
    """IK on every frame, counted on ``kinestream.progress`` (``desc``).

    The solver, its accuracy and the constraint weight come from the settings' ``[ik]`` (default.toml's: None).
    """
    ik = (settings or Settings()).ik
    setup = solve.ik_setup(ik, ik_setup)
    model, removed = _model(model_path, marker_set)
    with Task(markers.n_frames, desc) as task:
        result = solve.solve_trial(
            model, markers, setup, progress=task.update, solver=ik.solver, tolerance=ik.tolerance
        )
    if removed:
        result.notes.insert(0, "removed before IK (not needed for kinematics): " + ", ".join(removed))
    return result


@dataclass
class ProcessResult:
    """What ``process`` made of one trial: the output files, the motion and notes on what was done.

    Attributes
    ----------
    augmented_trc : Path
        The cleaned keypoints and the augmented markers.
    scaled_model : Path
        The scaled model (given, with ``model_given``, or written).
    mot : Path
        The joint angles.
    plot : Path or None
        The angle plot, when one was made.
    motion : Motion
        The joint angles, as written to ``mot``.
    messages : list of str
        Notes on what was done.
    model_given : bool
        Whether ``scaled_model`` was given (``process --model``): read, not written.
    augmented_c3d : Path or None
        The augmented .trc as .c3d (``[output] c3d``).
    """

    augmented_trc: Path
    scaled_model: Path
    mot: Path
    plot: Path | None
    motion: Motion
    messages: list[str] = field(default_factory=list)
    model_given: bool = False  # scaled_model was given (process --model), read, not written
    augmented_c3d: Path | None = None  # the augmented .trc as .c3d ([output] c3d)

    def summary(self) -> str:
        """The trial in lines: the notes, the IK marker error and the peak flexions."""
        m = self.motion
        rmse = m.get("rmse_mm")
        lines = list(self.messages)
        lines.append(f"IK marker error: mean {np.nanmean(rmse):.1f} mm RMS, worst frame {np.nanmax(rmse):.1f} mm")
        lines.append(
            "peak flexion (deg): "
            + ", ".join(
                f"{n} {peak(m, n):.1f}" for n in ("hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l")
            )
        )
        written = (
            self.augmented_trc,
            self.augmented_c3d,
            None if self.model_given else self.scaled_model,
            self.mot,
            self.plot,
        )
        lines += [f"wrote {p}" for p in written if p]
        return "\n".join(lines)


def compare(
    motion: Motion,
    truth: Motion,
    names=("hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l", "ankle_angle_r", "ankle_angle_l"),
) -> dict[str, float]:
    """RMS difference (deg) per coordinate, on the frames both motions share (matched by time)."""
    t = np.intersect1d(np.round(motion.time, 6), np.round(truth.time, 6))
    a = np.isin(np.round(motion.time, 6), t)
    b = np.isin(np.round(truth.time, 6), t)
    return {
        n: float(np.sqrt(np.nanmean((motion.get(n)[a] - truth.get(n)[b]) ** 2)))
        for n in names
        if n in motion and n in truth
    }


def stream_augment(
    table: MarkerTable, height: float, mass: float, assets: Assets, settings: Settings, progress=None
) -> tuple[MarkerTable, list[str]]:
    """The pipeline's prepare stage (the live service's) fed one frame at a time from a recorded trial.

    Keypoints are rounded to float32 first, as the wire protocol carries
    them, so a trial gives the same numbers here as replayed into the
    service. Returns the cleaned keypoints plus the 43 augmented markers,
    frame for frame aligned with the input (each frame carries its index through the look-ahead),
    and notes on what the stages did.
    """
    processor = FrameProcessor(assets, settings, height, mass, table.rate)
    names = list(table.names)
    columns = processor.keypoints + processor.markers
    xyz = np.full((table.n_frames, len(columns), 3), np.nan)
    wire = table.xyz.astype(np.float32).astype(float)

    def take(taken: Taken[int]) -> None:
        out = taken.prepared
        if out is not None:
            xyz[out.tag] = np.vstack([out.keypoints, out.markers])  # the tag is the frame's index

    for i in range(table.n_frames):
        take(processor.step(names, wire[i], float(table.time[i]), tag=i))
        if progress is not None:
            progress(1)
    for taken in processor.flush():
        take(taken)
    notes = processor.describe()
    return MarkerTable(columns, xyz, table.time.copy(), table.rate, dict(table.meta)), notes


def stream_ik(
    model_path: str | Path,
    markers: MarkerTable,
    ik_setup: str | Path,
    settings: Settings | None = None,
    marker_set: str | Path | None = None,
    desc: str = "IK (frame-wise)",
) -> solve.IKResult:
    """The pipeline's solve stage (the live service's frame-wise IK) on every frame of a table."""
    ik = (settings or Settings()).ik
    setup = solve.ik_setup(ik, ik_setup)
    model, removed = solve.load_model(model_path, marker_set)
    solver = solve.streaming_ik(ik, model, setup, markers.names)
    stage = FrameSolver(solver, centres=False)  # no joint centres, no reps: the angles only
    none = np.empty((0, 3))
    n = markers.n_frames
    q = np.full((n, len(solver.coordinates)), np.nan)
    rmse = np.full(n, np.nan)
    emax = np.full(n, np.nan)
    notes = ["removed before IK (not needed for kinematics): " + ", ".join(removed)] if removed else []
    notes += solver.notes
    with Task(n, desc) as task:
        for i in range(n):
            frame = stage.solve(Prepared(float(markers.time[i]), none, markers.xyz[i], i))
            if frame.error is not None:
                raise SolverError(f"t={markers.time[i]:.3f} s: {frame.error}", given=float(markers.time[i]))
            q[i], rmse[i], emax[i] = frame.q, frame.rmse_mm, frame.max_error_mm
            if frame.event and len(notes) < 20:
                notes.append(f"t={markers.time[i]:.3f} s: {frame.event}")
            task.update()
    c = solver.counts
    notes.append(
        f"frame-wise IK: {c['solved']}/{c['frames']} frames solved, {c['outlier_markers']} outlier markers "
        f"left out, {c['reassembled']} re-assembled, {c['failed']} failed, {c['too_few_markers']} with too "
        f"few markers"
    )
    motion = Motion(markers.time.copy(), solver.coordinates + ["rmse_mm"], np.column_stack([q, rmse]))
    return solve.IKResult(motion, rmse, emax, solver.names, notes)


def process(
    trial: str | Path,
    mass: float,
    height: float,
    out_dir: str | Path,
    settings: Settings,
    static=None,
    plot: bool = True,
    truth: Motion | None = None,
    streaming: bool = False,
    model: str | Path | None = None,
    static_trial: str | Path | None = None,
) -> ProcessResult:
    """All four steps on a recorded trial; writes the augmented .trc, scaled .osim, .mot and a plot.

    ``streaming`` runs clean, augment and IK through the frame-by-frame cores
    of the live service instead of the zero-lag offline ones, so the two can
    be compared on any trial. ``model``: an already scaled model; the scale
    step is skipped. ``static_trial``: a separate static trial (a .trc of
    keypoints, as Pose2Sim projects keep one, of any length from one frame):
    its frames are averaged into one still pose, which is augmented and scaled
    from (``static`` is then a window of its frames; None, the default: the settings'
    ``[scale] static``). The keypoints of both
    are turned by the ``[ingest]`` settings. With ``truth`` (e.g. the
    coords.mot of ``kinestream synth``), the plot shows it dashed and the
    summary gives the RMS error per joint.
    """
    checks.subject(height, mass)
    static = scale.parse_static(_static_window(static, settings))
    if model is not None and static_trial is not None:
        raise InputError(
            f"a scaled model ({model}) and a static trial ({static_trial}) were both given; the model skips "
            f"scaling, so the static trial would go unused: give one of them",
            key="static_trial",
            given=(model, static_trial),
            valid="one of them",
        )
    if static_trial is not None and not Path(static_trial).is_file():
        raise InputError(
            f"static trial {static_trial} does not exist; give the .trc of its keypoints",
            key="static_trial",
            given=static_trial,
            valid="the .trc of its keypoints",
        )
    ingest = settings.ingest
    trial = Path(trial)
    out_dir = Path(out_dir)
    stem = trial.stem
    assets = get_assets(settings)
    messages: list[str] = ["streaming cores, frame by frame" if streaming else "offline cores, zero lag"]
    from time import perf_counter

    steps = Task(4, "process", unit="step", leave=True)  # the four steps, counted as the frames of each are
    clock = {"start": perf_counter()}
    with steps:
        keypoints = load_keypoints(trial, None if streaming else ingest)  # the live cores turn it themselves
        messages += read_notes(keypoints, ingest)
        steps.stage("clean + augment")
        augmented, notes = clean_and_augment(keypoints, height, mass, assets, settings, streaming)
        messages += notes
        steps.update(2)
        out_dir.mkdir(parents=True, exist_ok=True)
        augmented_trc = write_trc(out_dir / f"{stem}_augmented.trc", augmented)
        augmented_c3d = c3d_beside(augmented_trc, messages) if settings.output.c3d else None
        clock["augment"] = perf_counter()

        steps.stage("scale")
        if model is not None:
            scaled_model = Path(model)
            if not scaled_model.is_file():
                raise InputError(
                    f"model {scaled_model} does not exist; give a scaled .osim or leave --model "
                    f"out to scale from the trial's static pose",
                    key="model",
                    given=scaled_model,
                    valid="a scaled .osim",
                )
            messages.append(f"using the scaled model {scaled_model}")
        elif static_trial is not None:
            static_stem = Path(static_trial).stem
            written = f"{static_stem}_static" if static_stem == stem else static_stem
            scaled_model, notes = scale_from_static(
                static_trial, height, mass, out_dir, settings, static, f"{written}_augmented.trc"
            )
            messages += notes
        else:
            sresult = scale.scale_model(
                augmented, mass, height, out_dir / f"{stem}_scaled.osim", assets, settings.scale, static=static
            )
            messages += sresult.messages + [_scale_error(sresult)]
            scaled_model = Path(sresult.model_path)
        steps.update()
        clock["scale"] = perf_counter()

        steps.stage("IK")
        if streaming:
            ik = stream_ik(scaled_model, augmented, assets.ik_setup, settings, marker_set=assets.marker_set)
        else:
            ik = run_ik(scaled_model, augmented, assets.ik_setup, settings, marker_set=assets.marker_set)
        messages += ik.notes
        mot = out_dir / f"{stem}.mot"
        solved, note = write_angles(mot, ik.motion)
        messages += [note] if note else []
        steps.update()
        clock["IK"] = perf_counter()
    marks = list(clock.items())
    messages.append(
        "time: "
        + ", ".join(
            f"{'read + clean + augment' if name == 'augment' else name} {t - marks[i][1]:.1f} s"
            for i, (name, t) in enumerate(marks[1:])
        )
        + f" ({ik.motion.time.size} frames, IK solver {settings.ik.solver})"
    )
    png = save_figure(plot_angles(solved, title=stem, truth=truth), out_dir / f"{stem}_angles.png") if plot else None
    if truth is not None:
        messages.append(
            "RMS error vs truth (deg): " + ", ".join(f"{n} {e:.1f}" for n, e in compare(solved, truth).items())
        )
    return ProcessResult(
        augmented_trc,
        scaled_model,
        mot,
        png,
        solved,
        messages,
        model_given=model is not None,
        augmented_c3d=augmented_c3d,
    )
