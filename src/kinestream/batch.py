"""Whole studies: every subject scaled once, every trial processed as ``process`` would, on Dask.

A study is a folder in one of three layouts (:func:`find_study`):

- **Pose2Sim**: session / participant / trial folders, each trial with its
  ``pose-3d/*.trc``, and an optional ``Config.toml`` at any level whose
  ``[project]`` values (``participant_height``, ``participant_mass``,
  ``frame_rate``) override those of the level above;
- **OpenCap**: session folders downloaded from OpenCap, each with its
  ``sessionMetadata.yaml`` and ``MarkerData/*.trc``; one subject each;
- **plain**: .trc files with a ``subjects.toml`` giving each subject's height
  and mass by file pattern::

      [[subject]]
      name = "p01"
      pattern = "p01_*.trc"     # matched against the path within the study
      height = 1.72
      mass = 68.0

A subject's static trial is the trial whose path matches ``static_pattern``
(``*static*``; OpenCap's ``neutral`` too). The model is scaled from it once, a
task the subject's trials depend on; a subject without one has each trial
scaled from its own stillest upright window, as ``process`` does.

Each trial is :func:`kinestream.offline.process` with the subject's model:
the same files, bit for bit, in ``OUT/<subject>/<trial>/``. A manifest
(``OUT/manifest.json``) holds a hash of each trial's inputs and settings, so
a trial already done with the same inputs is skipped. A trial that fails is a
row with its one-line reason; the others go on.

Everything here returns values or raises KinestreamError; ``kinestream
batch`` (commands/batch.py) prints.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import logging
import math
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kinestream import __version__, checks
from kinestream.assets import get_assets
from kinestream.errors import InputError, KinestreamError
from kinestream.offline import process, scale_from_static
from kinestream.plots import plot_study
from kinestream.progress import Task
from kinestream.projects import (
    AUGMENTED,
    OPENCAP_METADATA,
    POSE_3D,
    STATIC_PATTERN,
    opencap_project,
    pose2sim_project,
    split_static,
    subject_values,
)
from kinestream.reps import detect_reps
from kinestream.settings import Settings

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_PNG = "summary.png"
SUBJECTS_TOML = "subjects.toml"
MANIFEST_VERSION = 1
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet cell starting so is a formula

#: The columns of summary.csv, in order.
COLUMNS = (
    "subject",
    "trial",
    "status",
    "reason",
    "duration_s",
    "frames",
    "ik_rms_mm",
    "peak_knee_flexion_deg",
    "peak_hip_flexion_deg",
    "reps",
    "seconds",
    "output",
)


@dataclass(frozen=True)
class Subject:
    """One subject of a study.

    Where its trials are, its static trial (or a model already scaled), and its height and mass.
    """

    name: str  # its folder within the study (or the subjects.toml name): its outputs go to OUT/<name>/
    static: Path | None
    trials: tuple[Path, ...]
    height: float
    mass: float
    notes: tuple[str, ...] = ()
    model: Path | None = None  # a model already scaled (process FOLDER --model): used as it is, no static trial


@dataclass
class Study:
    """What :func:`find_study` found: the layout, the subjects, and notes on what was chosen or left out.

    ``unplanned``: trials that cannot be processed as found (a subject without height), with the reason;
    they become failed rows.
    """

    root: Path
    kind: str  # "Pose2Sim", "OpenCap" or "plain"
    subjects: list[Subject]
    notes: list[str] = field(default_factory=list)
    unplanned: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, trial, reason)

    @property
    def n_trials(self) -> int:
        """The number of trials in the study: every subject's, and those of no subject."""
        return sum(len(s.trials) for s in self.subjects) + len(self.unplanned)


# ------------------------------------------------------------------------------------------- the study --


def find_study(
    root: str | Path,
    settings: Settings | None = None,
    static_pattern: str = STATIC_PATTERN,
    height: float | None = None,
    mass: float | None = None,
) -> Study:
    """The subjects and trials of the study in ``root`` (see the module's docstring for the layouts).

    ``height`` and ``mass``, when given (``process FOLDER --height``), are every subject's, over what the
    study's files say (:func:`kinestream.projects.subject_values`); the static trial is found by
    :func:`kinestream.projects.split_static`, in every layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"{root} is not a folder; give the study's folder (Pose2Sim, OpenCap or .trc files)",
            given=root,
            valid="a folder of Pose2Sim, OpenCap or .trc files",
        )
    given = (height, mass)
    if (root / SUBJECTS_TOML).is_file():
        return _plain_study(root, static_pattern, given)
    sessions = sorted(p.parent for p in root.rglob(OPENCAP_METADATA))
    if sessions:
        return _opencap_study(root, sessions, settings, static_pattern, given)
    if any(d.is_dir() for d in root.rglob(POSE_3D)):
        return _pose2sim_study(root, settings, static_pattern, given)
    raise InputError(
        f"{root} holds no study kinestream knows: no {SUBJECTS_TOML} beside .trc files, no OpenCap "
        f"{OPENCAP_METADATA}, no Pose2Sim {POSE_3D}/ folders; see 'kinestream batch --help' for the layouts",
        given=root,
        valid=[SUBJECTS_TOML, OPENCAP_METADATA, POSE_3D],
    )


def _plain_study(root: Path, static_pattern: str, given: tuple[float | None, float | None]) -> Study:
    path = root / SUBJECTS_TOML
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("subject", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}", given=path, valid="a TOML file") from None
    if not isinstance(entries, list) or not entries:
        raise InputError(
            f"{path} lists no subject; give one [[subject]] table per subject, with name, pattern, height and mass",
            given=path,
            valid="one [[subject]] table per subject",
        )
    files = sorted(p for p in root.rglob("*.trc") if not _is_output(p, root))
    taken: set[Path] = set()
    study = Study(root, "plain", [])
    for k, entry in enumerate(entries):
        where = f"{path} [[subject]] #{k + 1}"
        missing = [key for key in ("name", "pattern", "height", "mass") if key not in entry]
        if missing:
            raise InputError(
                f"{where} lacks {', '.join(missing)}; each subject needs name, pattern, height, mass",
                key=where,
                given=missing,
                valid=["name", "pattern", "height", "mass"],
            )
        name = checks.path_segment(f"{where} name", str(entry["name"]))  # OUT/<name>/: never outside OUT
        pattern = str(entry["pattern"])
        mine = [f for f in files if f not in taken and fnmatch.fnmatch(f.relative_to(root).as_posix(), pattern)]
        taken |= set(mine)
        if not mine:
            study.notes.append(f"{where} ({name}): no .trc matches {pattern!r}")
            continue
        try:
            h, m = given  # the command line's, over subjects.toml's
            height, mass = checks.subject(entry["height"] if h is None else h, entry["mass"] if m is None else m)
            static, trials, notes = split_static(root, mine, (static_pattern,))
            subject = Subject(name, static, tuple(trials), height, mass, tuple(notes))
        except KinestreamError as exc:
            study.unplanned += [(name, f.relative_to(root).as_posix(), f"{where}: {exc}") for f in mine]
            continue
        study.subjects.append(subject)
    left = [f.relative_to(root).as_posix() for f in files if f not in taken]
    if left:
        study.notes.append(f"no subject's pattern matches {', '.join(left)}: left out")
    return study


def _opencap_study(root: Path, sessions: list[Path], settings, static_pattern: str, given) -> Study:
    study = Study(root, "OpenCap", [])
    for folder in sessions:
        name = folder.relative_to(root).as_posix() if folder != root else folder.resolve().name
        try:
            project = opencap_project(folder, static_pattern)
            height, mass, notes = subject_values(project, given[0], given[1], settings)
            study.subjects.append(
                Subject(name, project.static, tuple(project.trials), height, mass, tuple(project.notes + notes))
            )
        except KinestreamError as exc:
            study.unplanned.append((name, "-", str(exc)))
    return study


def _pose2sim_study(root: Path, settings, static_pattern: str, given) -> Study:
    """The subjects of a Pose2Sim study.

    Participants are the folders that hold trial folders (a trial folder holds pose-3d/); a trial folder
    directly in the study is a participant of its own.
    """
    participants: dict[Path, None] = {}
    for pose3d in sorted(d for d in root.rglob(POSE_3D) if d.is_dir()):
        trial_dir = pose3d.parent
        participants[trial_dir.parent if trial_dir != root else root] = None
    study = Study(root, "Pose2Sim", [])
    for folder in participants:
        name = folder.relative_to(root).as_posix() if folder != root else root.resolve().name
        try:
            project = pose2sim_project(folder, top=root, static_pattern=static_pattern)
            height, mass, notes = subject_values(project, given[0], given[1], settings)
            study.subjects.append(
                Subject(name, project.static, tuple(project.trials), height, mass, tuple(project.notes + notes))
            )
        except KinestreamError as exc:
            study.unplanned.append((name, "-", str(exc)))
    return study


def _is_output(path: Path, root: Path) -> bool:
    """A file kinestream wrote (an augmented .trc) or Pose2Sim's, not a trial of keypoints."""
    return any(m in path.stem for m in AUGMENTED)


# ---------------------------------------------------------------------------------------- the manifest --


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def settings_digest(settings: Settings) -> str:
    """What of the settings changes a trial's outputs (everything but the live service's), as a hash."""
    used = {k: v for k, v in settings.to_config().items() if k not in ("service", "mqtt", "curve")}
    return _digest(__version__.encode(), json.dumps(used, sort_keys=True, default=str).encode())


def trial_key(trial: Path, subject: Subject, settings: Settings, streaming: bool = False) -> str:
    """A hash of everything a trial's outputs depend on.

    Its keypoints, the subject's static trial (or model), height and mass, the settings, and whether the
    streaming cores made them.
    """
    static = subject.static.read_bytes() if subject.static is not None else b""
    parts = [trial.read_bytes(), static, f"{subject.height!r} {subject.mass!r}".encode()]
    parts.append(settings_digest(settings).encode())
    if subject.model is not None:
        parts += [b"model", subject.model.read_bytes()]
    return _digest(*parts, *([b"streaming"] if streaming else []))


def read_manifest(out: Path) -> dict[str, Any]:
    """The batch's manifest in ``out``: each trial's key (:func:`trial_key`) and outcome.

    A manifest that is missing, unreadable or of another version reads as empty, so every trial is done again.

    Parameters
    ----------
    out : Path
        The batch's output folder.

    Returns
    -------
    dict
        ``{"version": MANIFEST_VERSION, "trials": {...}}``.
    """
    path = out / MANIFEST
    if not path.is_file():
        return {"version": MANIFEST_VERSION, "trials": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {"version": MANIFEST_VERSION, "trials": {}}  # unreadable: everything is done again
    if manifest.get("version") != MANIFEST_VERSION:
        return {"version": MANIFEST_VERSION, "trials": {}}
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    """Write ``manifest`` to ``out`` whole or not at all (a temporary file, then renamed over the old one)."""
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(out / MANIFEST)


# ------------------------------------------------------------------------------------------- the tasks --


@dataclass(frozen=True)
class Scaled:
    """A subject's scaled model (None: each trial scales from its own still pose) and notes."""

    model: Path | None
    notes: tuple[str, ...] = ()
    seconds: float = 0.0


def scale_subject(subject: Subject, out_dir: Path, settings: Settings) -> Scaled:
    """Scale the subject's model from its static trial, as ``process --static-trial`` does (a Dask task)."""
    if subject.model is not None:
        return Scaled(subject.model, (f"the scaled model {subject.model} is used as it is",))
    if subject.static is None:
        return Scaled(None, ("no static trial: each trial is scaled from its own still pose",))

    start = time.perf_counter()
    model, notes = scale_from_static(subject.static, subject.height, subject.mass, out_dir, settings)
    for note in notes:  # what the static trial gave (frames averaged, refused), said where the batch runs
        log.info("%s: %s", subject.name, note)
    return Scaled(model, tuple(notes), time.perf_counter() - start)


def process_trial(
    trial: Path, subject: Subject, scaled: Scaled, out_dir: Path, settings: Settings, streaming: bool = False
) -> dict[str, Any]:
    """One trial through ``process`` with the subject's model (a Dask task); its summary row.

    Without a model (a subject without a static trial), the trial is scaled from its own still window,
    ``[scale] static``; ``streaming``: the live service's cores, as ``process --streaming``. The plot is drawn on a
    matplotlib Figure of its own, which needs no backend (a worker runs its tasks in threads, shows nothing).
    """
    start = time.perf_counter()
    result = process(
        trial,
        subject.mass,
        subject.height,
        out_dir,
        settings,
        plot=settings.output.plot,
        streaming=streaming,
        model=scaled.model,
    )
    motion = result.motion
    _, reps = detect_reps(motion, None, settings.reps)
    return {
        "status": "done",
        "reason": "",
        "duration_s": round(float(motion.time[-1] - motion.time[0]), 3) if len(motion.time) else 0.0,
        "frames": int(len(motion.time)),
        "ik_rms_mm": _round(_nanmean(motion.get("rmse_mm")), 2),
        "peak_knee_flexion_deg": _round(_peak(motion, "knee_angle_r", "knee_angle_l"), 1),
        "peak_hip_flexion_deg": _round(_peak(motion, "hip_flexion_r", "hip_flexion_l"), 1),
        "reps": int(reps["reps"]),
        "seconds": round(time.perf_counter() - start, 2),
        "output": str(out_dir),
    }


def _nanmean(values) -> float:
    import numpy as np

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else math.nan


def _peak(motion, *names: str) -> float:
    import numpy as np

    values = [np.asarray(motion.get(n), dtype=float) for n in names if n in motion]
    finite = [v[np.isfinite(v)] for v in values]
    return max((float(v.max()) for v in finite if v.size), default=math.nan)


def _round(value: float, digits: int) -> float | str:
    return round(value, digits) if math.isfinite(value) else ""


# ------------------------------------------------------------------------------------------- the batch --


class Progress(Task):
    """Counts while a batch runs, on ``kinestream.progress``.

    A :class:`~kinestream.progress.Task` of the study's trials (a bar on the command line), with how many are done,
    failed and skipped, in words, as its stage.
    """

    def __init__(self, total: int):
        super().__init__(total, "batch", unit="trial", leave=True)
        self.counts = dict.fromkeys(("done", "failed", "skipped"), 0)

    def count(self, status: str) -> None:
        """One trial more ``status`` ("done", "failed" or "skipped")."""
        self.counts[status] += 1
        said = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        self.update(stage=f"{said}, remaining {self.total - sum(self.counts.values())}")


class InProcess:
    """The batch without Dask: each task runs in this process, in the order the tasks were sent.

    A task runs when its result is first asked for. ``process FOLDER`` is :func:`run_batch` on one of these.

    It takes the two calls :func:`run_batch` makes of a Dask client (``submit``, and ``as_completed`` on what
    it gave). A task that raises is not tried again: here it would fail the same way.
    """

    def submit(self, fn: Callable, *args: Any, **options: Any) -> _Task:
        """A task for ``fn(*args)``; ``options`` (Dask's ``pure``, ``retries``, ``key``) do not apply here."""
        return _Task(fn, args)

    @staticmethod
    def as_completed(tasks: list[_Task]) -> Iterable[_Task]:
        """The tasks in the order they were sent; each runs when its result is asked for."""
        return iter(tasks)


class _Task:
    """One call, run once, its value or exception kept; a task among its arguments is run first."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args
        self.ran = False
        self.value: Any = None
        self.error: Exception | None = None

    def result(self) -> Any:
        if not self.ran:
            self.ran = True
            try:
                self.value = self.fn(*(a.result() if isinstance(a, _Task) else a for a in self.args))
            except Exception as exc:  # kept, and raised again to each task that needs this one's value
                self.error = exc
        if self.error is not None:
            raise self.error
        return self.value


def _as_completed(client) -> Callable[[list], Iterable]:
    """How :func:`run_batch` waits for its tasks: in the order sent here, as they finish on a Dask cluster."""
    if isinstance(client, InProcess):
        return client.as_completed
    from distributed import as_completed

    return as_completed


def one_line(exc: BaseException) -> str:
    """An exception as the one line a summary row holds."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, KinestreamError) else f"{type(exc).__name__}: {text}".rstrip(": ")


def run_batch(
    study: Study,
    out: str | Path,
    settings: Settings,
    client=None,
    *,
    force: bool = False,
    retries: int = 2,
    streaming: bool = False,
) -> list[dict[str, Any]]:
    """Process the study on the Dask ``client``; one row per trial (:data:`COLUMNS`), in study order.

    ``client`` None runs the batch in this process (:class:`InProcess`).

    Scaling a subject is a task its trials depend on. A task that raises is
    tried again ``retries`` times on any worker (a worker that dies takes its
    tasks to the others by Dask's own rules) and then becomes a failed row. The
    manifest is written as each trial finishes, so an interrupted batch resumes
    where it stopped. ``streaming``: every trial through the live service's
    cores (``process --streaming``). How far it has come is counted on
    ``kinestream.progress`` (:class:`Progress`); a trial that fails is logged
    (WARNING) with its reason as it fails.
    """
    if client is None:
        client = InProcess()
    as_completed = _as_completed(client)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    done = manifest["trials"]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []
    with Progress(study.n_trials) as progress:
        for name, trial_name, reason in study.unplanned:
            order.append((name, trial_name))
            rows[(name, trial_name)] = _row(name, trial_name, {"status": "failed", "reason": reason})
            progress.count("failed")
        futures: dict[Any, tuple[Subject, str, str, Path]] = {}
        sent = settings.for_workers()  # what the tasks carry: no password, no key paths
        for subject in study.subjects:
            subject_out = out / subject.name
            pending = []
            for trial in subject.trials:
                label = _label(trial, subject, study.root)
                if refused := _outside(subject.name, label, trial):  # OUT/<subject>/<label>/ must stay inside OUT
                    order.append((subject.name, label))
                    rows[(subject.name, label)] = _row(subject.name, label, {"status": "failed", "reason": refused})
                    progress.count("failed")
                    continue
                key = trial_key(trial, subject, settings, streaming)
                order.append((subject.name, label))
                record = done.get(f"{subject.name}/{label}")
                trial_out = subject_out / label
                if not force and record and record.get("key") == key and record.get("status") == "done":
                    if all(Path(p).is_file() for p in record.get("files", [])):
                        rows[(subject.name, label)] = _row(subject.name, label, {**record["row"], "status": "skipped"})
                        progress.count("skipped")
                        continue
                pending.append((trial, label, key, trial_out))
            if not pending:
                continue
            if not futures:  # the assets, fetched here once: workers on a fresh cache would each fetch them at once
                get_assets(settings)
            scaled = client.submit(
                scale_subject, subject, subject_out / "_static", sent, pure=False, retries=retries,
                key=f"scale-{_safe(subject.name)}-{time.time_ns()}",
            )  # fmt: skip
            for trial, label, key, trial_out in pending:
                future = client.submit(
                    process_trial, trial, subject, scaled, trial_out, sent, streaming, pure=False, retries=retries,
                    key=f"trial-{_safe(subject.name)}-{_safe(label)}-{time.time_ns()}",
                )  # fmt: skip
                futures[future] = (subject, label, key, trial_out)
        for future in as_completed(list(futures)):
            subject, label, key, trial_out = futures[future]
            try:
                got = future.result()
            except Exception as exc:  # the trial's (or its subject's scaling) one-line reason; the batch goes on
                row = _row(subject.name, label, {"status": "failed", "reason": one_line(exc)})
                log.warning("failed: %s/%s: %s", subject.name, label, row["reason"])
                progress.count("failed")
                done.pop(f"{subject.name}/{label}", None)
            else:
                row = _row(subject.name, label, got)
                progress.count("done")
                files = sorted(str(p) for p in trial_out.iterdir() if p.is_file())
                done[f"{subject.name}/{label}"] = {"key": key, "status": "done", "row": row, "files": files}
                write_manifest(out, manifest)
            rows[(subject.name, label)] = row
    write_manifest(out, manifest)
    return [rows[k] for k in order]


def _label(trial: Path, subject: Subject, root: Path) -> str:
    """The trial's output folder name.

    Its stem, or (in Pose2Sim's layout) its trial folder's name when the .trc names repeat across trials.
    """
    siblings = [t.stem for t in subject.trials]
    if siblings.count(trial.stem) == 1:
        return trial.stem
    return f"{trial.parent.parent.name}_{trial.stem}" if trial.parent.name == "pose-3d" else trial.stem


def _outside(subject: str, label: str, trial: Path) -> str | None:
    """Why the outputs of ``trial`` would not stay inside the batch's folder (a name that is '..', a path or empty).

    Or None when OUT/<subject>/<label>/ is a folder inside it.
    """
    try:
        checks.relative_folder("subject name", subject)
        checks.path_segment(f"trial {trial.name}: its output folder name", label)
    except KinestreamError as exc:
        return f"{exc}; rename it"
    return None


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _row(subject: str, trial: str, values: dict[str, Any]) -> dict[str, Any]:
    row = {column: "" for column in COLUMNS}
    row.update({k: v for k, v in values.items() if k in row})
    row["subject"], row["trial"] = subject, trial
    return row


def write_summary(out: str | Path, rows: list[dict[str, Any]], plot: bool = True) -> tuple[Path, Path | None]:
    """``summary.csv`` (one row per trial) and ``summary.png`` (peak knee flexion per subject)."""
    out = Path(out)
    csv_path = out / SUMMARY_CSV
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    png = None
    if plot:
        png = out / SUMMARY_PNG
        plot_study(rows, png)
    return csv_path, png


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula with a single quote before it, so that it is shown as text.

    A cell runs as a formula when it starts with = + - @, a tab or a carriage return (a subject's name, a failure's
    reason).
    """
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


def describe(study: Study) -> list[str]:
    """The study in lines: layout, subjects with their static trial, height and mass."""
    lines = [f"{study.kind} study {study.root}: {len(study.subjects)} subject(s), {study.n_trials} trial(s)"]
    for s in study.subjects:
        if s.model is not None:
            static = f"none (the scaled model {s.model})"
        else:
            static = s.static.name if s.static else "none (each trial from its own still pose)"
        lines.append(f"  {s.name}: {len(s.trials)} trial(s), static {static}, {s.height:g} m, {s.mass:g} kg")
        lines += [f"    {note}" for note in s.notes]  # what was chosen: where the height came from, the static
    return lines + study.notes
