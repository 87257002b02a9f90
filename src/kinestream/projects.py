"""Other tools' projects in a folder: their trials and what their files say of the subject.

Pose2Sim keeps a trial's triangulated keypoints in ``pose-3d/*.trc`` (Y up,
metres) and the subject in ``Config.toml``, ``[project]``:
``participant_height`` (m), ``participant_mass`` (kg) and ``frame_rate``, each
a number, a list (one per participant) or "auto". A project is one trial
folder; a session holds trial folders, each with its own Config.toml that
overrides the session's key by key (as Pose2Sim merges them). Pose2Sim writes
``*_filt_*.trc`` (filtered copies), ``*_LSTM.trc`` (augmented) beside the
triangulation.

A session downloaded from OpenCap keeps ``sessionMetadata.yaml`` (``height_m``,
``mass_kg`` among flat ``key: value`` lines) and ``MarkerData/**/*.trc``: the
keypoints, usually with OpenCap's 43 augmented markers beside them. OpenCap
calls its static trial "neutral".

:func:`find_project` says what a folder holds (a :class:`Project`);
:func:`subject_values` settles the height and mass from the command line, the
project's files and the settings, in that order, and says where each came
from. The functions read files and return values or raise KinestreamError.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kinestream import checks
from kinestream.config import DEFAULTS
from kinestream.errors import InputError, KinestreamError
from kinestream.settings import Settings

CONFIG_TOML = "Config.toml"  # Pose2Sim's
POSE_3D = "pose-3d"  # Pose2Sim's folder of triangulated keypoints
OPENCAP_METADATA = "sessionMetadata.yaml"
MARKER_DATA = "MarkerData"  # OpenCap's folder of .trc
AUGMENTED = ("_LSTM", "_augmented")  # in a file's name: already augmented (Pose2Sim's, OpenCap's, kinestream's)
SCALING = "_scaling"  # Pose2Sim's copies made for scaling
FILTERED = "_filt"  # Pose2Sim's filtered copies (kinestream filters the raw triangulation itself)
STATIC_PATTERN = "*static*"  # a trial whose path within its folder matches this is the static trial
OPENCAP_STATIC = "*neutral*"  # OpenCap's name for its static trial, matched beside STATIC_PATTERN


@dataclass(frozen=True)
class Value:
    """A number a project's file gives, and where: ``value`` is None when the file leaves it open ("auto", 0)."""

    value: float | None
    source: str  # the file and key, e.g. "proj/Config.toml [project] participant_height"
    note: str | None = None  # what was made of it (a list: the first taken; "auto": not estimated)


@dataclass
class Project:
    """What a Pose2Sim or OpenCap folder holds.

    ``trials`` are the .trc of keypoints to process, in order, without
    ``static``: the trial the model is scaled from for all of them (None:
    each trial scales from its own stillest upright window). ``height``,
    ``mass`` and ``rate`` are None when the files do not name them at all;
    ``where`` says where each is looked for. ``notes`` say what was chosen
    and left out, in sentences.
    """

    kind: str  # "Pose2Sim" or "OpenCap"
    folder: Path
    trials: list[Path]
    static: Path | None = None
    height: Value | None = None
    mass: Value | None = None
    rate: Value | None = None
    where: dict[str, str] = field(default_factory=dict)  # "height"/"mass" -> the file and key
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The project in one line: its kind, folder and trials (``notes`` say which is the static one)."""
        names = ", ".join(t.name for t in self.trials)
        return f"{self.kind} folder {self.folder}: {len(self.trials)} trial(s) to process ({names})"


def find_project(folder: str | Path) -> Project:
    """The Pose2Sim project or session, or the OpenCap session, in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"{folder} is not a folder; give a Pose2Sim or OpenCap folder, or a .trc",
            given=folder,
            valid="a Pose2Sim or OpenCap folder, or a .trc",
        )
    if (folder / OPENCAP_METADATA).is_file():
        return opencap_project(folder)
    if (folder / CONFIG_TOML).is_file() or _pose3d_dirs(folder):
        return pose2sim_project(folder)
    raise InputError(
        f"{folder} is neither a Pose2Sim project or session ({CONFIG_TOML}, {POSE_3D}/*.trc) nor an OpenCap "
        f"session ({OPENCAP_METADATA}, {MARKER_DATA}/*.trc); give one of those, or a .trc of keypoints",
        given=folder,
        valid="a Pose2Sim or OpenCap folder, or a .trc",
    )


# ------------------------------------------------------------------------------------------------ Pose2Sim --


def _natural(path: Path) -> list:
    """Sort key: numbers in names in numeric order (trial_2 before trial_10), as Pose2Sim sorts."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", str(path))]


def _pose3d_dirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.rglob(POSE_3D) if d.is_dir()), key=_natural)


def _pose3d_trials(folder: Path, pose3d: Path) -> tuple[list[Path], list[str]]:
    """The trials of one pose-3d folder and notes on the files left out."""
    files = sorted(pose3d.glob("*.trc"), key=_natural)
    done = [f for f in files if any(m in f.stem for m in AUGMENTED) or SCALING in f.stem]
    rest = [f for f in files if f not in done]
    raw = [f for f in rest if FILTERED not in f.stem]
    filtered = [f for f in rest if FILTERED in f.stem]
    notes = []
    if done:
        notes.append(
            f"left out {', '.join(f.name for f in done)} in {pose3d.relative_to(folder)}: already augmented or "
            f"made for Pose2Sim's scaling"
        )
    if raw and filtered:
        notes.append(
            f"left out Pose2Sim's filtered copies {', '.join(f.name for f in filtered)}: kinestream filters the "
            f"raw triangulation itself"
        )
    return raw or filtered, notes


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path} is not valid TOML: {exc}", given=path, valid="a TOML file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", given=path) from None


def _config_chain(folder: Path, trial_dir: Path) -> list[Path]:
    """The Config.toml files that apply to a trial folder, farthest first.

    The trial's own and those of the folders above it up to ``folder``, and the parent's when ``folder`` is the trial
    folder itself (Pose2Sim reads a trial's session Config.toml so).
    """
    inside = trial_dir.relative_to(folder)
    dirs = [folder, folder.parent] if trial_dir == folder else [trial_dir] + [folder / p for p in inside.parents]
    return [d / CONFIG_TOML for d in dirs if (d / CONFIG_TOML).is_file()][::-1]


def _project_keys(chain: list[Path]) -> dict[str, tuple[object, Path]]:
    """[project] key -> (value, the Config.toml that set it), the nearest file winning."""
    keys: dict[str, tuple[object, Path]] = {}
    for path in chain:
        section = _read_toml(path).get("project", {})
        if isinstance(section, dict):
            keys.update({k: (v, path) for k, v in section.items()})
    return keys


def _number(raw, source: str, unit: str, what: str) -> Value:
    """A Pose2Sim-style value: a number, a list of them (the first is taken) or "auto" (None)."""
    valid = f"give a number ({unit}), a list of them (one per participant) or 'auto'"
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return Value(None, source, f"{source} is 'auto' (Pose2Sim estimates the {what}; kinestream does not)")
    note = None
    if isinstance(raw, list):
        if not raw:
            raise InputError(f"{source} = [] is not valid; {valid}", key=source, given=raw, valid=valid)
        note = f"{source} lists {len(raw)} participants ({raw}); kinestream takes the first" if len(raw) > 1 else None
        raw = raw[0]
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw < 0:
        raise InputError(f"{source} = {raw!r} is not valid; {valid}", key=source, given=raw, valid=valid)
    if raw == 0:  # Pose2Sim's "not given": it takes its default
        return Value(None, source, f"{source} is 0 (not given)")
    return Value(float(raw), source, note)


def _same(values: dict[Path, Value], key: str, folder: Path) -> Value | None:
    """The one value the trials share; different values are different participants: a KinestreamError."""
    if len({v.value for v in values.values()}) > 1:
        listed = "; ".join(
            f"{t.name}: {'auto' if v.value is None else f'{v.value:g}'} from {v.source}" for t, v in values.items()
        )
        raise InputError(
            f"the trials in {folder} have different {key} ({listed}); they are different participants: "
            f"process each participant's folder on its own",
            key=key,
            given={t.name: v.value for t, v in values.items()},
            valid="one participant per folder",
        )
    return next(iter(values.values()), None)


def _trc_rate(path: Path) -> float | None:
    """The DataRate in a .trc's header, None when it cannot be read (reading the trial will say why)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [fh.readline() for _ in range(3)]
        header = dict(zip(lines[1].split("\t"), lines[2].split("\t"), strict=False))
        return float(header.get("DataRate", "").strip())
    except (OSError, ValueError):
        return None


def _excluded(folder: Path, trial: Path, keys: dict) -> str | None:
    """The Config.toml whose exclude_from_batch names this trial's folder, if any."""
    raw, path = keys.get("exclude_from_batch", ([], None))
    trial_dir = trial.parent.parent
    names = {trial_dir.name, trial_dir.relative_to(folder).as_posix()} if trial_dir != folder else set()
    if isinstance(raw, list) and names & {str(x).strip("/") for x in raw}:
        return str(path)
    return None


def pose2sim_project(
    folder: str | Path, top: str | Path | None = None, static_pattern: str = STATIC_PATTERN
) -> Project:
    """A Pose2Sim project (a trial folder) or session (trial folders under it).

    Every pose-3d/*.trc not yet augmented, the [project] values of the Config.toml files above each, a trial
    matching ``static_pattern`` (:func:`split_static`) as the static trial for the others. ``top``: the study
    folder above ``folder`` whose Config.toml files apply too (a batch reads a session's values for each of its
    participants).
    """
    folder = Path(folder)
    notes: list[str] = []
    trials: list[Path] = []
    for pose3d in _pose3d_dirs(folder):
        found, left = _pose3d_trials(folder, pose3d)
        trials += found
        notes += left
    above = Path(top) if top is not None else folder  # a study's own Config.toml applies to its participants
    keys = {t: _project_keys(_config_chain(above, t.parent.parent)) for t in trials}
    for trial in list(trials):
        if by := _excluded(folder, trial, keys[trial]):
            notes.append(f"left out {trial.relative_to(folder)}: exclude_from_batch in {by} names it")
            trials.remove(trial)
            del keys[trial]
    if not trials:
        raise InputError(
            f"{folder} holds no trial: no {POSE_3D}/*.trc of keypoints in it or its subfolders (files already "
            f"augmented, *_LSTM.trc or *_augmented.trc, are not trials)",
            given=folder,
            valid=f"{POSE_3D}/*.trc of keypoints",
        )
    height = _same(_values(keys, "participant_height", "metres", "height"), "participant_height", folder)
    mass = _same(_values(keys, "participant_mass", "kilograms", "mass"), "participant_mass", folder)
    rates = _values(keys, "frame_rate", "frames per second", "frame rate")
    rate = next(iter(rates.values())) if len({v.value for v in rates.values()}) == 1 else None
    if rate is None and rates:
        notes.append("the trials' Config.toml give different frame rates; each trial's .trc DataRate is used")
    top = folder / CONFIG_TOML
    where = {"height": f"{top} [project] participant_height", "mass": f"{top} [project] participant_mass"}
    static, trials, chosen = split_static(folder, trials, (static_pattern,))
    project = Project("Pose2Sim", folder, trials, static, height, mass, rate, where, notes + chosen)
    project.notes += _rate_notes(project)
    return project


def _values(keys: dict[Path, dict], key: str, unit: str, what: str) -> dict[Path, Value]:
    """Each trial's [project] ``key``, None for a trial no Config.toml names it for when others have it.

    Such a trial counts as open.
    """
    values = {t: _number(k[key][0], f"{k[key][1]} [project] {key}", unit, what) for t, k in keys.items() if key in k}
    if values:
        values.update({t: Value(None, f"no {CONFIG_TOML} above it") for t in keys if t not in values})
    return values


def _rate_notes(project: Project) -> list[str]:
    """The frame rate the files give, and the trials whose .trc says otherwise (their own times are used)."""
    rate = project.rate
    if rate is None:
        return []
    if rate.value is None:
        return [f"frame rate: {rate.source} is 'auto'; each trial's .trc DataRate is used"]
    notes = [f"frame rate {rate.value:g} Hz from {rate.source}"]
    for trial in project.trials + ([project.static] if project.static else []):
        got = _trc_rate(trial)
        if got is not None and abs(got - rate.value) > 0.01 * rate.value:
            notes.append(f"{trial.name} says DataRate {got:g} Hz, not {rate.value:g} Hz: its own times are used")
    return notes


def static_match(trial: Path, folder: Path, pattern: str) -> bool:
    """Whether the glob ``pattern`` matches ``trial``'s path within ``folder``, or one of its parts.

    Case is ignored: ``*static*`` matches ``S01/Static_1.trc`` and ``static/pose-3d/x.trc``.
    """
    rel = trial.relative_to(folder).as_posix().lower()
    pattern = pattern.lower()
    return fnmatch.fnmatch(rel, pattern) or any(fnmatch.fnmatch(part, pattern) for part in rel.split("/"))


def split_static(
    folder: Path, trials: list[Path], patterns: tuple[str, ...] = (STATIC_PATTERN,)
) -> tuple[Path | None, list[Path], list[str]]:
    """The one rule for a static trial: the first of ``trials`` whose path matches one of ``patterns``.

    Returns the static trial (None when no trial matches, or when the one trial there is matches: it is then
    processed, scaled from its own still pose), the trials to process, and notes saying what was chosen.
    Used by ``process FOLDER`` and ``batch`` alike, for every layout.
    """
    statics = [t for t in trials if any(static_match(t, folder, p) for p in patterns)]
    if not statics:
        return None, trials, []
    if len(statics) == len(trials) == 1:
        return None, trials, [f"{statics[0].name} is the only trial; it is scaled from its own still pose"]
    static = statics[0]
    others = [t for t in trials if t != static]
    notes = [
        f"static trial {static.relative_to(folder)} (its name says so): the model is scaled from it for the "
        f"other {len(others)} trial(s)"
    ]
    if len(statics) > 1:
        notes.append(f"{', '.join(t.name for t in statics[1:])} look static too; they are processed as trials")
    return static, others, notes


# ------------------------------------------------------------------------------------------------- OpenCap --


def read_flat_yaml(path: str | Path) -> dict[str, str]:
    """The top-level ``key: value`` lines of a simple YAML file, the values as text without quotes or comments.

    Indented lines (nested blocks), list items, comments and keys without a value are skipped: enough for
    OpenCap's sessionMetadata.yaml, whose subject lines (``height_m: 1.89``) are flat.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", given=path) from None
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line[0] in " \t-#" or ":" not in line:
            continue
        key, _, value = line.partition(":")
        value = re.sub(r"\s+#.*$", "", value).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].strip()
        if value and value not in ("~", "null"):
            values[key.strip()] = value
    return values


def _yaml_number(values: dict[str, str], key: str, source: str, unit: str) -> Value | None:
    if key not in values:
        return None
    try:
        number = float(values[key])
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise InputError(
            f"{source} = {values[key]!r} is not valid; give a number in {unit}",
            key=source,
            given=values[key],
            valid=f"a number in {unit}",
        )
    return Value(number, source) if number > 0 else Value(None, source, f"{source} is 0 (not given)")


def opencap_project(folder: str | Path, static_pattern: str = STATIC_PATTERN) -> Project:
    """A session folder downloaded from OpenCap.

    sessionMetadata.yaml's height_m and mass_kg, and every MarkerData/**/*.trc (the "neutral" trial, or one
    matching ``static_pattern``, as the static trial for the others: :func:`split_static`).
    """
    folder = Path(folder)
    meta = folder / OPENCAP_METADATA
    values = read_flat_yaml(meta)
    height = _yaml_number(values, "height_m", f"{meta} height_m", "metres")
    mass = _yaml_number(values, "mass_kg", f"{meta} mass_kg", "kilograms")
    files = sorted((folder / MARKER_DATA).rglob("*.trc"), key=_opencap_order)
    notes: list[str] = []
    plain = [f for f in files if not any(m in f.stem for m in AUGMENTED)]
    if not plain and files:
        notes.append(f"only augmented .trc in {MARKER_DATA} ({files[0].name}, ...): their keypoints are used")
    trials: list[Path] = []
    for f in plain or files:
        if any(t.stem == f.stem for t in trials):
            notes.append(f"left out {f.relative_to(folder)}: trial {f.stem} was found before it")
        else:
            trials.append(f)
    if not trials:
        raise InputError(
            f"{folder} holds no trial: no {MARKER_DATA}/*.trc in it (OpenCap keeps its trials so)",
            given=folder,
            valid=f"{MARKER_DATA}/*.trc",
        )
    where = {"height": f"{meta} height_m", "mass": f"{meta} mass_kg"}
    static, trials, chosen = split_static(folder, trials, (static_pattern, OPENCAP_STATIC))
    return Project("OpenCap", folder, trials, static, height, mass, None, where, notes + chosen)


def _opencap_order(path: Path) -> tuple[bool, list]:
    """OpenCap's keypoints before augmentation (PreAugmentation) before those after, then natural order."""
    return ("PreAugmentation" not in path.parts, _natural(path))


# ----------------------------------------------------------------------------------------- the subject --


def _settings_source(settings: Settings | None, key: str) -> tuple[float, str]:
    value = getattr((settings or Settings()).subject, key)
    which = "the default settings" if value == DEFAULTS["subject"][key] else "the settings"
    return float(value), f"{which} ([subject] {key})"


def _settle(
    key: str, flag: str, given: float | None, project: Project | None, settings: Settings | None, required: bool
) -> tuple[float, str, list[str]]:
    """One subject value, where it came from, and notes: the command line, else the project's file, else the settings.

    A project whose files do not name a ``required`` one is refused.
    """
    if given is not None:
        return float(given), f"the command line ({flag})", []
    found = getattr(project, key) if project is not None else None
    if found is not None and found.value is not None:
        return found.value, found.source, [found.note] if found.note else []
    if project is not None and found is None and required:
        raise InputError(
            f"{project.where[key]} is not set: the {project.kind} folder {project.folder} names no {key}; set it "
            f"there or give {flag}",
            key=key,
            given=project.folder,
            valid=flag,
        )
    value, source = _settings_source(settings, key)
    return value, source, [found.note] if found is not None and found.note else []


def subject_values(
    project: Project | None, height: float | None = None, mass: float | None = None, settings: Settings | None = None
) -> tuple[float, float, list[str]]:
    """The subject's height (m) and mass (kg), and notes ending with where each came from.

    ``height``/``mass`` from the command line win over the project's files,
    which win over ``settings``' ``[subject]`` (default.toml's: None). A project whose files do not
    name the height at all is refused (the augmenter divides every keypoint
    by it); one that says "auto" gets the settings' height, and a note.
    """
    h, h_from, notes = _settle("height", "--height", height, project, settings, required=True)
    m, m_from, more = _settle("mass", "--mass", mass, project, settings, required=False)
    try:
        checks.subject(h, m)
    except KinestreamError as exc:
        if project is None:
            raise
        raise exc.reworded(f"{exc} (height from {h_from}, mass from {m_from})") from None
    return h, m, notes + more + [f"height {h:g} m from {h_from}; mass {m:g} kg from {m_from}"]
