"""The settings as one typed tree: :class:`Settings`, a frozen dataclass per section of default.toml.

:func:`load_settings` reads the package's default.toml and a user's file over it; :meth:`Settings.from_config`
builds the tree from a dict of sections (a caller's, or a file's), and :meth:`Settings.override` makes a new tree
with some values changed (a command-line flag). Each checks what it is given once, against
:func:`kinestream.config.validate`'s rules: an error names the key, the value given and what is valid. Nothing
changes a tree once built; every stage reads the section it needs (``settings.clean``, ``settings.ik``).

This module imports no stage: every command builds its settings before it loads scipy, OpenSim or ZeroMQ.
"""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kinestream.config import DEFAULTS, merge, validate
from kinestream.errors import SettingsError
from kinestream.files.trc import MarkerTable
from kinestream.ingest import describe_orientation, orient, orientation


class Section:
    """What the dataclass of every section shares: its name in the settings file, and a check between fields.

    A subclass is a frozen dataclass whose fields are the keys of its section ``SECTION``, their defaults
    default.toml's (lists become tuples). :func:`kinestream.config.validate` judges each value on its own; a
    section with rules between its fields says them in :meth:`check`, which :meth:`Settings.from_config` calls.
    """

    SECTION: ClassVar[str]

    def check(self) -> None:
        """Refuse, with a SettingsError, values the rules of single keys cannot judge."""

    def to_table(self) -> dict[str, Any]:
        """The section as the settings file writes it: lists for tuples, unset values left out."""
        return {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if (v := getattr(self, f.name)) is not None
        }


_SUBJECT = DEFAULTS["subject"]


@dataclass(frozen=True)
class SubjectSettings(Section):
    """``[subject]``: the session's id and the subject's mass (kg) and height (m), when no flag gives them."""

    SECTION: ClassVar[str] = "subject"

    name: str = _SUBJECT["name"]
    mass: float = _SUBJECT["mass"]
    height: float = _SUBJECT["height"]


_INGEST = DEFAULTS["ingest"]


@dataclass(frozen=True)
class IngestSettings(Section):
    """How incoming keypoints are turned into the model's axes; the ``[ingest]`` section.

    up      "y" (the keypoints are Y-up, as OpenSim wants) or "z" (Z-up, as many camera systems)
    rotate  further turns about the model's axes after that, "AXIS:DEG[,AXIS:DEG]" in order (e.g. "y:90"); "": none

    The offline commands turn a trial's keypoints as they read it, the live service each frame as it comes.
    """

    SECTION: ClassVar[str] = "ingest"

    up: str = _INGEST["up"]
    rotate: str = _INGEST["rotate"]

    def check(self) -> None:
        """Refuse an ``up``/``rotate`` pair that gives no orientation (:func:`kinestream.ingest.orientation`)."""
        self.matrix()

    def matrix(self) -> np.ndarray | None:
        """The turn into the model's axes: None when the keypoints are in them already."""
        return orientation(self.up, self.rotate)

    def apply(self, table: MarkerTable) -> MarkerTable:
        """``table`` turned into the model's axes."""
        return orient(table, self.matrix())

    def describe(self) -> str | None:
        """What these settings do to the keypoints, in words; None when nothing."""
        return describe_orientation(self.up, self.rotate)


_CLEAN = DEFAULTS["clean"]


@dataclass(frozen=True)
class CleanSettings(Section):
    """How keypoints are cleaned; the ``[clean]`` section (default.toml documents each setting).

    :func:`kinestream.clean.clean_trial` runs the zero-lag recipe on a whole trial with them, and
    :func:`kinestream.clean.streaming_cleaner` builds the causal cleaner the live service runs frame by frame.
    """

    SECTION: ClassVar[str] = "clean"

    max_gap_s: float = _CLEAN["max_gap_s"]
    gap_method: str = _CLEAN["gap_method"]
    cutoff_hz: float | str = _CLEAN["cutoff_hz"]  # "auto": Winter's residual analysis (offline only)
    filter_order: int = _CLEAN["filter_order"]
    hold_method: str = _CLEAN["hold_method"]
    lookahead_frames: int = _CLEAN["lookahead_frames"]
    max_jump_m: float = _CLEAN["max_jump_m"]
    max_outlier_frames: int = _CLEAN["max_outlier_frames"]
    streaming_filter: str = _CLEAN["streaming_filter"]
    one_euro_min_cutoff_hz: float = _CLEAN["one_euro_min_cutoff_hz"]
    one_euro_beta: float = _CLEAN["one_euro_beta"]
    kalman_accel: float = _CLEAN["kalman_accel"]
    kalman_noise_m: float = _CLEAN["kalman_noise_m"]
    reinit_after_frames: int | None = None  # unset: a tenth of a second of frames


_AUGMENT = DEFAULTS["augment"]


@dataclass(frozen=True)
class AugmentSettings(Section):
    """``[augment]``: the augmenter's models, the floor offset, and when the streaming augmenter starts afresh.

    The models: empty for OpenCap's LSTM from the pose2sim wheel (see :mod:`kinestream.assets`).
    """

    SECTION: ClassVar[str] = "augment"

    lower_model: str = _AUGMENT["lower_model"]
    upper_model: str = _AUGMENT["upper_model"]
    floor_offset: bool = _AUGMENT["floor_offset"]
    reset_after_frames: int = _AUGMENT["reset_after_frames"]


_MODEL = DEFAULTS["model"]


@dataclass(frozen=True)
class ModelSettings(Section):
    """``[model]``: the generic model, its marker set and setup files.

    Empty for Pose2Sim's, from the pose2sim wheel (:mod:`kinestream.assets`).
    """

    SECTION: ClassVar[str] = "model"

    generic_model: str = _MODEL["generic_model"]
    marker_set: str = _MODEL["marker_set"]
    scale_setup: str = _MODEL["scale_setup"]
    ik_setup: str = _MODEL["ik_setup"]


_SCALE = DEFAULTS["scale"]


@dataclass(frozen=True)
class ScaleSettings(Section):
    """How the static pose is found and the model scaled; the ``[scale]`` section.

    static              "auto" (the stillest upright window) or "START:END" in seconds
    still_threshold_mm  (strictest, loosest) motion threshold, tried from strict to loose
    still_window_s      (longest, shortest) window, tried from long to short. The live
                        calibration waits for the longest: it can wait, a recording cannot.
    joint_centre_markers  pairs of markers ("A B") whose midpoint is a joint centre; the generic
                        model's pair is moved onto its joint before scaling
                        (:func:`kinestream.solve.register_joint_centres`)
    """

    SECTION: ClassVar[str] = "scale"

    static: str = _SCALE["static"]
    still_threshold_mm: tuple[float, ...] = tuple(_SCALE["still_threshold_mm"])
    still_window_s: tuple[float, ...] = tuple(_SCALE["still_window_s"])
    joint_centre_markers: tuple[str, ...] = tuple(_SCALE["joint_centre_markers"])


_IK = DEFAULTS["ik"]


@dataclass(frozen=True)
class IKSettings(Section):
    """How IK runs; the ``[ik]`` section (default.toml documents each setting).

    :func:`kinestream.solve.ik_setup` reads an IK setup file with them applied and
    :func:`kinestream.solve.streaming_ik` builds the frame-wise core, so that the live service
    and the offline recipe build IK the same way.
    """

    SECTION: ClassVar[str] = "ik"

    solver: str = _IK["solver"]
    accuracy: float = _IK["accuracy"]
    tolerance: float = _IK["tolerance"]  # the fast solver stops when a step would gain less than this share of F
    constraint_weight: float | str = _IK["constraint_weight"]  # a weight, or "inf": enforced exactly
    coordinate_tasks: bool = _IK["coordinate_tasks"]
    arms: bool = _IK["arms"]
    min_markers: int = _IK["min_markers"]
    outlier_mm: float = _IK["outlier_mm"]
    reassemble_mm: float = _IK["reassemble_mm"]


_OUTPUT = DEFAULTS["output"]


@dataclass(frozen=True)
class OutputSettings(Section):
    """``[output]``: whether ``process`` plots the angles, and writes .c3d files beside the .trc ones."""

    SECTION: ClassVar[str] = "output"

    plot: bool = _OUTPUT["plot"]
    c3d: bool = _OUTPUT["c3d"]


_SERVICE = DEFAULTS["service"]


@dataclass(frozen=True)
class ServiceSettings(Section):
    """``[service]``: where the live service listens and publishes, and the limits it keeps."""

    SECTION: ClassVar[str] = "service"

    input: str = _SERVICE["input"]
    output: str = _SERVICE["output"]
    bind_input: bool = _SERVICE["bind_input"]
    allow_plain_input: bool = _SERVICE["allow_plain_input"]
    allow_remote: bool = _SERVICE["allow_remote"]
    latest_wins: bool = _SERVICE["latest_wins"]
    max_lag_ms: float = _SERVICE["max_lag_ms"]
    max_time_jump_s: float = _SERVICE["max_time_jump_s"]
    max_message_bytes: int = _SERVICE["max_message_bytes"]
    receive_queue: int = _SERVICE["receive_queue"]
    send_queue: int = _SERVICE["send_queue"]
    pose_every: int = _SERVICE["pose_every"]
    max_people: int = _SERVICE["max_people"]
    person_timeout_s: float = _SERVICE["person_timeout_s"]
    max_rate_hz: float = _SERVICE["max_rate_hz"]
    people: str = _SERVICE["people"]


@dataclass(frozen=True)
class PersonSettings(Section):
    """One subject's table in ``[people]``: a scaled model, and/or their height (m) and mass (kg)."""

    SECTION: ClassVar[str] = "people"

    model: str | None = None
    height: float | None = None
    mass: float | None = None


_MQTT = DEFAULTS["mqtt"]


@dataclass(frozen=True)
class MqttSettings(Section):
    """``[mqtt]``: the broker angles go to for XR clients ("": none), and how to log in to it."""

    SECTION: ClassVar[str] = "mqtt"

    broker: str = _MQTT["broker"]
    qos: int = _MQTT["qos"]
    username: str = _MQTT["username"]
    password: str = _MQTT["password"]
    tls: bool = _MQTT["tls"]
    ca_file: str = _MQTT["ca_file"]
    allow_plaintext_password: bool = _MQTT["allow_plaintext_password"]


_REPS = DEFAULTS["reps"]


@dataclass(frozen=True)
class RepSettings(Section):
    """How reps are found and judged; the ``[reps]`` section.

    knee_start_deg   knee flexion (mean of both knees, deg) through which a rep
                     starts (rising) and ends (falling)
    hysteresis_deg   an excursion above knee_start_deg counts only once it
                     reaches knee_start_deg + hysteresis_deg
    min_depth_deg    peak knee flexion a rep needs; shallower: a partial rep
    deep_knee_deg    peak knee flexion that is deep enough (``deep_enough``)
    min_rep_s        shorter excursions are rejected (noise, a stumble)
    max_rep_s        longer ones are rejected (resting crouched); not sitting
    smooth_hz        zero-lag low-pass of the rep's frames before peaks and
                     bottom are taken; 0: off
    seated_knee_deg  seated: knee flexion at least this...
    seated_hip_deg   ...and hip flexion at least this (when known)...
    seated_still_deg ...within this of the greatest knee flexion...
    seated_hold_s    ...held this long (or from the stream's start)
    sit_set_break_s  after a sit-to-stand rep, a rep starting within this is
                     a sit-to-stand rep too
    end_margin_deg   at the stream's end, a rep on its way up within this of
                     knee_start_deg is reported complete
    """

    SECTION: ClassVar[str] = "reps"

    knee_start_deg: float = _REPS["knee_start_deg"]
    hysteresis_deg: float = _REPS["hysteresis_deg"]
    min_depth_deg: float = _REPS["min_depth_deg"]
    deep_knee_deg: float = _REPS["deep_knee_deg"]
    min_rep_s: float = _REPS["min_rep_s"]
    max_rep_s: float = _REPS["max_rep_s"]
    smooth_hz: float = _REPS["smooth_hz"]
    seated_knee_deg: float = _REPS["seated_knee_deg"]
    seated_hip_deg: float = _REPS["seated_hip_deg"]
    seated_still_deg: float = _REPS["seated_still_deg"]
    seated_hold_s: float = _REPS["seated_hold_s"]
    sit_set_break_s: float = _REPS["sit_set_break_s"]
    end_margin_deg: float = _REPS["end_margin_deg"]

    def check(self) -> None:
        """Raise a SettingsError unless the values are usable: each in its range, and in the ranges they set."""

        def bad(name: str, rule: str):
            shown = getattr(self, name)
            raise SettingsError(
                f"[reps] {name}={shown!r} is not valid; it must be {rule}", key=f"reps.{name}", given=shown, valid=rule
            )

        if not 5.0 <= self.knee_start_deg <= 60.0:
            bad("knee_start_deg", "from 5 to 60 degrees of knee flexion")
        if not 0.0 <= self.hysteresis_deg <= 30.0:
            bad("hysteresis_deg", "from 0 to 30 degrees")
        if not self.knee_start_deg + self.hysteresis_deg < self.min_depth_deg <= 160.0:
            bad(
                "min_depth_deg",
                f"above knee_start_deg + hysteresis_deg "
                f"({self.knee_start_deg + self.hysteresis_deg:g}) and at most 160 degrees",
            )
        if not self.min_depth_deg <= self.deep_knee_deg <= 160.0:
            bad("deep_knee_deg", f"from min_depth_deg ({self.min_depth_deg:g}) to 160 degrees")
        if not 0.0 < self.max_rep_s <= 600.0:
            bad("max_rep_s", "above 0 and at most 600 seconds")
        if not 0.0 <= self.min_rep_s < self.max_rep_s:
            bad("min_rep_s", f"from 0 to below max_rep_s ({self.max_rep_s:g}) seconds")
        if not (self.smooth_hz == 0.0 or 1.0 <= self.smooth_hz <= 30.0):
            bad("smooth_hz", "0 (off) or from 1 to 30 Hz")
        if not self.knee_start_deg + self.hysteresis_deg < self.seated_knee_deg <= 160.0:
            bad(
                "seated_knee_deg",
                f"above knee_start_deg + hysteresis_deg ({self.knee_start_deg + self.hysteresis_deg:g}) "
                f"and at most 160 degrees",
            )
        if not 0.0 <= self.seated_hip_deg <= 160.0:
            bad("seated_hip_deg", "from 0 to 160 degrees of hip flexion")
        if not 0.5 <= self.seated_still_deg <= 30.0:
            bad("seated_still_deg", "from 0.5 to 30 degrees")
        if not 0.1 <= self.seated_hold_s <= 60.0:
            bad("seated_hold_s", "from 0.1 to 60 seconds")
        if not 0.0 <= self.sit_set_break_s <= 600.0:
            bad("sit_set_break_s", "from 0 (no sets) to 600 seconds")
        if not 0.0 <= self.end_margin_deg <= self.seated_knee_deg - self.knee_start_deg:
            bad(
                "end_margin_deg",
                f"from 0 to seated_knee_deg - knee_start_deg ({self.seated_knee_deg - self.knee_start_deg:g}) degrees",
            )


_CUES = DEFAULTS["cues"]


@dataclass(frozen=True)
class CueSettings(Section):
    """The cue rules; the ``[cues]`` section (see :mod:`kinestream.reps.events` and default.toml)."""

    SECTION: ClassVar[str] = "cues"

    enabled: bool = _CUES["enabled"]
    max_per_rep: int = _CUES["max_per_rep"]
    knees_out: bool = _CUES["knees_out"]
    knees_out_cm: float = _CUES["knees_out_cm"]
    chest_up: bool = _CUES["chest_up"]
    chest_up_deg: float = _CUES["chest_up_deg"]
    go_deeper: bool = _CUES["go_deeper"]
    go_deeper_deg: float = _CUES["go_deeper_deg"]
    control_the_descent: bool = _CUES["control_the_descent"]
    control_the_descent_s: float = _CUES["control_the_descent_s"]
    even_it_out: bool = _CUES["even_it_out"]
    even_it_out_deg: float = _CUES["even_it_out_deg"]


_CURVE = DEFAULTS["curve"]


@dataclass(frozen=True)
class CurveSettings(Section):
    """``[curve]``: ZeroMQ CURVE on every link, and the key files (docs/manual/service.md, "Access")."""

    SECTION: ClassVar[str] = "curve"

    enabled: bool = _CURVE["enabled"]
    secret_key: str = _CURVE["secret_key"]
    authorized: str = _CURVE["authorized"]
    server_key: str = _CURVE["server_key"]


#: The sections only the live service reads: its sockets and limits, whom it serves, MQTT's (a password) and CURVE's
#: (key paths). They change no trial's outputs, and a batch task does not carry them to a worker.
LIVE_ONLY = ("service", "people", "mqtt", "curve")


@dataclass(frozen=True)
class Settings:
    """Every setting, one frozen section per table of default.toml; ``Settings()`` is default.toml's.

    Build one with :func:`load_settings` (default.toml and a file over it) or :meth:`from_config` (a dict of
    sections), change one with :meth:`override`; read a section as an attribute (``settings.clean.cutoff_hz``).
    """

    subject: SubjectSettings = field(default_factory=SubjectSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    clean: CleanSettings = field(default_factory=CleanSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    scale: ScaleSettings = field(default_factory=ScaleSettings)
    ik: IKSettings = field(default_factory=IKSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    people: dict[str, PersonSettings] = field(default_factory=dict)  # one subject's model, height and mass
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    reps: RepSettings = field(default_factory=RepSettings)
    cues: CueSettings = field(default_factory=CueSettings)
    curve: CurveSettings = field(default_factory=CurveSettings)

    __hash__ = None  # type: ignore[assignment]  # [people] is a dict: equal trees compare equal, none is hashed

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, source: str = "the settings") -> Settings:
        """The tree of ``config`` (section -> key -> value; what it leaves out is default.toml's), checked once.

        A SettingsError names the first key that is unknown or not valid, with the value given and what is valid.
        """
        given = validate(copy.deepcopy(dict(config or {})), source)
        tables = merge(DEFAULTS, given)
        defaults = cls()
        sections: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            table = tables.get(f.name) or {}
            if f.name == "people":
                sections[f.name] = {name: PersonSettings(**entry) for name, entry in table.items()}
                continue
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
            section = dataclasses.replace(getattr(defaults, f.name), **values)
            try:
                section.check()
            except SettingsError as exc:  # a rule between fields: said with where the values came from
                raise exc.reworded(f"{source}: {exc}") from None
            sections[f.name] = section
        return cls(**sections)

    def override(self, changes: Mapping[str, Any], source: str = "the command line") -> Settings:
        """A new tree: ``changes`` (section -> key -> value) over this one, checked as a file's settings are.

        This tree is left as it was: a command-line flag or a caller's dict makes new settings, never changes
        the ones it was given (which another part of the program may still hold).
        """
        return Settings.from_config(merge(self.to_config(), dict(changes)), source)

    def to_config(self) -> dict[str, Any]:
        """The tree as a dict of sections, as the settings file writes it (for TOML, JSON, a hash)."""
        config: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "people":
                config[f.name] = {name: person.to_table() for name, person in value.items()}
            else:
                config[f.name] = value.to_table()
        return config

    def for_workers(self) -> Settings:
        """These settings with the live sections (:data:`LIVE_ONLY`) at their defaults: what a batch worker gets."""
        defaults = Settings()
        return dataclasses.replace(self, **{name: getattr(defaults, name) for name in LIVE_ONLY})


def load_settings(path: str | Path | None = None) -> Settings:
    """The settings: the package's default.toml, then the TOML file at ``path`` (when given) over it."""
    if path is None:
        return Settings()
    path = Path(path)
    if not path.is_file():
        raise SettingsError(
            f"config file {path} does not exist; give a TOML file with the settings to change (every setting "
            f"and its default: configs/default.toml, or 'kinestream config')",
            given=path,
            valid="a TOML file",
        )
    try:
        with open(path, "rb") as fh:
            loaded = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}", given=path, valid="a TOML file") from None
    return Settings.from_config(loaded, f"config file {path}")
