"""kinestream from Python (a notebook, a script): tables in, objects out.

The recipe, one function a step, each taking what the one before returns::

    import kinestream.api as ks

    trial = ks.synth("out/sq", seconds=6, noise_mm=5)          # or your own keypoints .trc
    markers = ks.augment(trial.keypoints_trc, height=trial.height, mass=trial.mass)
    scaled = ks.scale(markers, "out/sq/scaled.osim", height=trial.height, mass=trial.mass)
    motion = ks.ik(markers, scaled)
    ks.plot_angles(motion, truth=trial.motion)                  # a matplotlib Figure

``process`` runs all four steps and writes what ``kinestream process`` writes.
Tables are :class:`MarkerTable` (``xyz`` frames x markers x 3 in metres,
``names``, ``time``, ``rate``) and :class:`Motion` (``values`` frames x
columns, ``names``, ``time``; degrees and metres); both have ``to_dict()``,
ready for JSON. Settings come from the package's default.toml, as for the
commands; ``config`` takes the path of a TOML file of yours, a dict of the
sections to change, e.g. ``{"ik": {"solver": "opensim"}}``, or a :class:`Settings`
(from :func:`load_settings`). Height (m) and mass (kg) default to the settings'
``[subject]``. What the stages have to say goes to the ``kinestream`` loggers
(INFO; ``logging.basicConfig(level="INFO")`` shows it); how far a long step has come, to ``kinestream.progress``
(:mod:`kinestream.progress`, DEBUG); nothing is printed.

The streaming stage classes (``StreamingCleaner``, ``StreamingAugmenter``,
``StreamingIK``, ``FrameProcessor``, ``Pipeline``, ``RepCounter``) are here too,
imported when first used, so ``import kinestream.api`` stays quick. ``augment``,
``scale`` and ``synth`` are functions here; in the package ``kinestream`` those
names are the stage modules (``kinestream.scale``), so import them from
``kinestream.api``.

A table and its JSON form, no OpenSim needed:

>>> import numpy as np
>>> import kinestream.api as ks
>>> motion = ks.Motion(np.array([0.0, 0.5]), ["knee_angle_r", "rmse_mm"], np.array([[12.5, 8.0], [np.nan, 9.0]]))
>>> motion.to_dict()
{'time': [0.0, 0.5], 'coordinates': {'knee_angle_r': [12.5, None], 'rmse_mm': [8.0, 9.0]}, 'in_degrees': True}
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> hips = ks.MarkerTable(["RHip", "LHip"], np.full((3, 2, 3), 0.9), np.arange(3) / 60, rate=60.0)
>>> table = ks.read_trc(ks.write_trc(folder / "hips.trc", hips))
>>> table.names, table.n_frames, table.rate
(['RHip', 'LHip'], 3, 60.0)
>>> table.get("LHip")[0].tolist()
[0.9, 0.9, 0.9]
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kinestream.assets import get_assets
from kinestream.errors import InputError, SettingsError
from kinestream.files.c3d import read_c3d, write_c3d
from kinestream.files.mot import Motion, read_mot, write_mot
from kinestream.files.trc import MarkerTable, read_trc, write_trc
from kinestream.projects import subject_values
from kinestream.settings import Settings, load_settings

if TYPE_CHECKING:  # at run time these come from __getattr__, when first used
    from kinestream.augment import StreamingAugmenter
    from kinestream.clean import StreamingCleaner
    from kinestream.offline import ProcessResult
    from kinestream.pipeline import FrameProcessor, Pipeline
    from kinestream.plots import plot_angles, plot_reps
    from kinestream.reps import RepCounter, detect_reps
    from kinestream.scale import ScaleResult
    from kinestream.solve import StreamingIK
    from kinestream.synth import SynthResult

__all__ = [
    # the recipe
    "process",
    "augment",
    "scale",
    "ik",
    "synth",
    # tables and files
    "MarkerTable",
    "Motion",
    "read_trc",
    "write_trc",
    "read_mot",
    "write_mot",
    "read_c3d",
    "write_c3d",
    # the settings
    "Settings",
    "load_settings",
    # what the recipe returns
    "ProcessResult",
    "ScaleResult",
    "SynthResult",
    # the streaming stages, frame by frame
    "StreamingCleaner",
    "StreamingAugmenter",
    "StreamingIK",
    "FrameProcessor",
    "Pipeline",
    "RepCounter",
    "detect_reps",
    # pictures
    "plot_angles",
    "plot_reps",
]

#: Names imported from their modules when first used (they bring in SciPy, OpenSim, onnxruntime or matplotlib).
_LAZY = {
    "ProcessResult": "kinestream.offline",
    "ScaleResult": "kinestream.scale",
    "SynthResult": "kinestream.synth",
    "StreamingCleaner": "kinestream.clean",
    "StreamingAugmenter": "kinestream.augment",
    "StreamingIK": "kinestream.solve",
    "FrameProcessor": "kinestream.pipeline",
    "Pipeline": "kinestream.pipeline",
    "RepCounter": "kinestream.reps",
    "detect_reps": "kinestream.reps",
    "plot_angles": "kinestream.plots",
    "plot_reps": "kinestream.plots",
}

log = logging.getLogger(__name__)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kinestream.api' has no attribute {name!r}; it has {', '.join(__all__)}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


Config = Settings | dict | str | Path | None  # what the functions' ``config`` may be


def _settings(config: Config) -> Settings:
    """The settings: the defaults, with a TOML file (a path) or a dict of sections over them, checked; or as given."""
    if isinstance(config, Settings):
        return config
    if config is None or isinstance(config, (str, Path)):
        return load_settings(config)
    if not isinstance(config, dict):
        raise SettingsError(
            f"config {config!r} is not valid; give None (the defaults), the path of a TOML file, a dict of "
            'sections, e.g. {"ik": {"solver": "opensim"}}, or a Settings',
            key="config",
            given=config,
            valid="None, the path of a TOML file, a dict of sections, or a Settings",
        )
    return Settings.from_config(config, "the config given")


def _subject(settings: Settings, height: float | None, mass: float | None) -> tuple[float, float]:
    height, mass, _ = subject_values(None, height, mass, settings)
    return height, mass


def _table(markers: MarkerTable | str | Path, what: str) -> MarkerTable:
    if isinstance(markers, MarkerTable):
        return markers
    if isinstance(markers, (str, Path)):
        return read_trc(markers)
    raise InputError(
        f"{what} {markers!r} is not valid; give a MarkerTable or the path of a .trc file",
        key=what,
        given=markers,
        valid="a MarkerTable or the path of a .trc file",
    )


def process(
    trial: str | Path,
    out_dir: str | Path,
    *,
    height: float | None = None,
    mass: float | None = None,
    config: Config = None,
    static: str | tuple[float, float] | None = None,
    streaming: bool = False,
    model: str | Path | None = None,
    static_trial: str | Path | None = None,
    truth: Motion | None = None,
) -> ProcessResult:
    """``kinestream process`` on the keypoints .trc ``trial``: clean, augment, scale, IK, files in ``out_dir``.

    Writes what the command writes (TRIAL_augmented.trc and .c3d, TRIAL_scaled.osim, TRIAL.mot, the plot, as
    ``[output]`` says) and returns them with the angles (``.motion``) and what each step said (``.messages``).
    ``static``: the still window, "auto" or (start, end) in seconds (default: the config's ``[scale] static``);
    ``streaming``: the live service's frame-by-frame cores instead of the offline ones; ``model``: an already
    scaled .osim (the scale step is skipped); ``static_trial``: a separate static trial (a .trc of keypoints)
    the model is scaled from, ``static`` then a window of its frames (``process --static-trial``); ``truth``:
    the true angles (``synth(...).motion``), plotted dashed, with the RMS error per joint in the messages.
    """
    from kinestream.offline import process as run

    settings = _settings(config)
    height, mass = _subject(settings, height, mass)
    result = run(
        trial,
        mass,
        height,
        out_dir,
        settings,
        static=static,
        plot=settings.output.plot,
        truth=truth,
        streaming=streaming,
        model=model,
        static_trial=static_trial,
    )
    for message in result.messages:
        log.info("%s", message)
    return result


def augment(
    keypoints: MarkerTable | str | Path,
    *,
    height: float | None = None,
    mass: float | None = None,
    config: Config = None,
    clean: bool = True,
) -> MarkerTable:
    """The keypoints (a MarkerTable or a .trc path) plus the 43 anatomical markers the augmenter predicts.

    The recipe of ``process``: the keypoints turned by ``[ingest]`` into the model's axes, MidHip and Neck
    derived when absent; with ``clean`` (the default) gaps are filled and the keypoints low-pass filtered first
    (``[clean]``). What was done is in ``meta["notes"]`` of the table returned.
    """
    from kinestream.offline import clean_and_augment, prepare_keypoints, read_notes

    settings = _settings(config)
    height, mass = _subject(settings, height, mass)
    table = prepare_keypoints(_table(keypoints, "keypoints"), settings.ingest)
    notes = read_notes(table, settings.ingest)
    out, more = clean_and_augment(table, height, mass, get_assets(settings), settings, clean_first=clean)
    notes += more
    for note in notes:
        log.info("%s", note)
    out.meta["notes"] = notes
    return out


def scale(
    markers: MarkerTable | str | Path,
    out_model: str | Path,
    *,
    height: float | None = None,
    mass: float | None = None,
    config: Config = None,
    static: str | tuple[float, float] | None = None,
) -> ScaleResult:
    """Scale the generic model to the subject of ``markers`` and write it to ``out_model`` (.osim).

    ``markers`` are augmented: as :func:`augment` returns them, or a .trc.

    ``static``: the still window, "auto" (the stillest upright one; default: the config's ``[scale] static``)
    or (start, end) in seconds. Returns the model's path, the scale factors, the window used, the marker
    error and what was done (``.messages``).
    """
    from kinestream.scale import scale_model

    settings = _settings(config)
    height, mass = _subject(settings, height, mass)
    assets = get_assets(settings)
    table = _table(markers, "markers")
    result = scale_model(table, mass, height, out_model, assets, settings.scale, static=static)
    for message in result.messages:
        log.info("%s", message)
    return result


def ik(
    markers: MarkerTable | str | Path,
    model: ScaleResult | str | Path,
    *,
    config: Config = None,
    setup: str | Path | None = None,
) -> Motion:
    """Joint angles of every frame of ``markers`` on ``model``.

    ``markers`` are augmented (a MarkerTable or a .trc); ``model`` is a scaled .osim, or what :func:`scale` returns.

    The solver and its settings are the config's ``[ik]``; ``setup``: an IK setup .xml with the marker weights
    (default: OpenCap's). The Motion holds every coordinate (degrees; translations in metres) and ``rmse_mm``,
    each frame's marker error; a frame IK could not solve is NaN.
    """
    from kinestream.offline import run_ik

    settings = _settings(config)
    path = getattr(model, "model_path", model)
    if not isinstance(path, (str, Path)):
        raise InputError(
            f"model {model!r} is not valid; give the path of a scaled .osim, or what scale returns",
            key="model",
            given=model,
            valid="the path of a scaled .osim, or what scale returns",
        )
    if not Path(path).is_file():
        raise InputError(
            f"model {path} does not exist; give the path of a scaled .osim, or what scale returns",
            key="model",
            given=path,
            valid="the path of a scaled .osim, or what scale returns",
        )
    assets = get_assets(settings)
    result = run_ik(path, _table(markers, "markers"), setup or assets.ik_setup, settings, marker_set=assets.marker_set)
    for note in result.notes:
        log.info("%s", note)
    return result.motion


def synth(out_dir: str | Path, **kwargs: Any) -> SynthResult:
    """A ground-truth squat trial by forward kinematics, written to ``out_dir``: ``kinestream.synth.synthesize``.

    Keywords as ``synthesize`` takes them (``seconds`` at least 5, ``fs``, ``noise_mm``, ``gaps``, ``scale``,
    ``seed``, ``depths``, ...). The result has the files (``keypoints_trc``), the tables (``keypoints``,
    ``markers``), the true angles (``motion``) and the subject's ``height`` and ``mass``.
    """
    from kinestream.synth import synthesize

    return synthesize(out_dir, **kwargs)
