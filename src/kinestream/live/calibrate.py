"""Calibration from the live stream: wait for a still, upright pose, then scale the model.

    kinestream calibrate --mass KG --height M --out scaled.osim

listens to the keypoint stream, cleans and augments it as the service does,
keeps the last few seconds, and looks for the stillest upright window (the
rule of ``kinestream scale``). It tells the person on the terminal what to do
until one is found, then scales the generic model from that window and writes
the model and, beside it (``scaled.json``), the subject's mass, height and the
floor offset, which ``serve --model scaled.osim`` reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinestream import checks
from kinestream.assets import get_assets
from kinestream.augment import floor_offset
from kinestream.errors import InputError, SolverError
from kinestream.files.trc import MarkerTable
from kinestream.live.source import Heard, KeypointSource
from kinestream.live.transport import Access, open_input
from kinestream.pipeline import FrameProcessor
from kinestream.scale import find_static_window, scale_model
from kinestream.settings import ScaleSettings, Settings

log = logging.getLogger(__name__)  # the live service's calibration of each person
#: What :func:`calibrate` tells the person being calibrated (to stand still, what was found), at INFO.
prompts = logging.getLogger(f"{__name__}.prompts")


class StaticCollector:
    """The last ``seconds`` of cleaned keypoints and augmented markers, and the static-pose check."""

    def __init__(self, names: list[str], rate: float, seconds: float = 6.0):
        self.names = list(names)
        self.rate = rate
        self.frames: deque[tuple[float, np.ndarray]] = deque(maxlen=max(int(seconds * rate), 2))

    def add(self, t: float, xyz: np.ndarray) -> None:
        """Keep the frame at ``t``: its keypoints and markers ``xyz`` in :attr:`names` order."""
        self.frames.append((float(t), np.asarray(xyz, dtype=float)))

    def table(self) -> MarkerTable:
        """The frames kept, as a :class:`~kinestream.files.trc.MarkerTable`."""
        t = np.array([f[0] for f in self.frames])
        xyz = np.stack([f[1] for f in self.frames])
        return MarkerTable(self.names, xyz, t, self.rate)

    def check(self, thresholds_mm=(3.0, 15.0), windows_s=(1.0, 1.0)):
        """A still, upright window of the buffered frames, or None."""
        if len(self.frames) < int(min(windows_s) * self.rate) + 1:
            return None
        return find_static_window(self.table(), thresholds_mm=thresholds_mm, windows_s=windows_s)

    def motion_mm(self, seconds: float = 1.0) -> float:
        """How far markers moved relative to MidHip over the last ``seconds`` (peak to peak, mm)."""
        n = int(seconds * self.rate)
        if len(self.frames) < n or n < 2:
            return float("nan")
        xyz = np.stack([f[1] for f in list(self.frames)[-n:]])
        rel = xyz - xyz[:, [self.names.index("MidHip")]]
        return float(np.nanmax(np.nanmax(rel, axis=0) - np.nanmin(rel, axis=0)) * 1000)


class StillWatch:
    """One person's frames cleaned and augmented as the service does, and the look for a still, upright window.

    Their last seconds are kept (:class:`StaticCollector`); the look is the rule of ``kinestream scale``, with its
    longest window (a live calibration can wait for a full one). :func:`calibrate` and :class:`Calibration` both watch
    so; when to look is theirs. ``settings``: the stages' settings and the look's (``settings.scale``).
    """

    def __init__(self, assets, settings: Settings, height: float, mass: float, rate: float):

        self.rate = rate
        self.processor = FrameProcessor(assets, settings, height, mass, rate)
        self.still = settings.scale
        self.collector = StaticCollector(self.processor.keypoints + self.processor.markers, rate)

    def restart(self) -> None:
        """The source started over: so does the look for a still window."""
        self.processor.reset()
        self.collector = StaticCollector(self.processor.keypoints + self.processor.markers, self.rate)

    def add(self, frame) -> float | None:
        """A frame in: the time of the frame the stages gave back, kept; None when they gave none usable.

        Raises what the stages raise.
        """
        out = self.processor.step(frame.names, frame.xyz, frame.t, None).prepared
        if out is None or not np.isfinite(out.markers).all():
            return None
        self.collector.add(out.t, np.vstack([out.keypoints, out.markers]))
        return out.t

    def window(self):
        """A still, upright window of the frames kept, or None."""
        seconds = self.still.still_window_s[0]
        return self.collector.check(self.still.still_threshold_mm, (seconds, seconds))


def subject_file(model: str | Path) -> Path:
    """The JSON beside a scaled model that holds the subject's mass, height and floor offset."""
    model = Path(model)
    return model.with_suffix(".json")


def load_subject(model: str | Path | None) -> dict:
    """The subject file beside ``model`` (:func:`subject_file`) as a dict.

    Empty when ``model`` is None or has no subject file; KinestreamError when the file is not valid JSON.
    """
    if model is None:
        return {}
    path = subject_file(model)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{path} is not valid JSON ({exc}); delete it or run 'kinestream calibrate' again",
            given=path,
            valid="delete it or run 'kinestream calibrate' again",
        ) from None


@dataclass(frozen=True)
class Subject:
    """Who is served: the model (a scaled .osim, or the generic one), mass (kg), height (m) and floor offset (m)."""

    model: Path
    mass: float
    height: float
    floor_offset: float = 0.0


def served_subject(
    settings: Settings, assets, model: str | Path | None, mass: float | None = None, height: float | None = None
) -> Subject:
    """The subject ``serve`` serves: ``model`` with its subject file's values, those given, the settings for the rest.

    ``model`` (None: the generic model, unscaled) comes with the mass, height and floor offset of the subject file
    beside it, ``mass`` and ``height`` when given, the ``[subject]`` settings (``settings.subject``) for the rest.
    KinestreamError for a model that is not there or a subject out of range.
    """
    subject = load_subject(model) if model else {}
    mass = float(mass if mass is not None else subject.get("mass", settings.subject.mass))
    height = float(height if height is not None else subject.get("height", settings.subject.height))
    checks.subject(height, mass)
    if model is not None and not Path(model).is_file():
        raise InputError(
            f"model {model} does not exist; give a scaled .osim (kinestream "
            f"calibrate writes one) or leave --model out for the generic model",
            key="--model",
            given=model,
            valid="a scaled .osim",
        )
    path = Path(model) if model is not None else Path(assets.generic_model)
    return Subject(path, mass, height, float(subject.get("floor_offset_m", 0.0)))


def write_subject(
    model_path: Path, mass: float, height: float, floor_offset_m: float, window: str, subject: str | None = None
) -> Path:
    """The subject file beside a scaled model.

    It holds mass, height, floor offset, the still window it came from and whose frames they were (``subject``: None for
    frames without one).
    """
    path = subject_file(model_path)
    path.write_text(
        json.dumps(
            {
                "mass": mass,
                "height": height,
                "floor_offset_m": round(floor_offset_m, 5),
                "static_window": window,
                "subject": subject,
                "model": Path(model_path).name,
                "calibrated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
        + "\n"
    )
    return path


async def calibrate(
    settings: Settings,
    *,
    input_endpoint: str,
    mass: float,
    height: float,
    out_model: str | Path,
    timeout_s: float = 120.0,
    rate: float = 60.0,
) -> Path:
    """Listen until the person stands still and upright, then scale; returns the scaled model's path.

    ``settings``: the stages', the keypoint input's (``[service]``) and CURVE's (``[curve]``). What the person is told
    (stand still, hold still, got it) is logged at INFO on :data:`prompts`.
    """
    import zmq
    import zmq.asyncio

    checks.subject(height, mass)
    out_model = Path(out_model)
    out_model.parent.mkdir(parents=True, exist_ok=True)
    assets = get_assets(settings)
    watch = StillWatch(assets, settings, height, mass, rate)
    source = KeypointSource(settings.service)  # the service's: the same frames heard, refused and restarted on
    subject = _UNSET = object()  # the person being calibrated: the first one heard
    access = Access.from_settings(settings.curve)
    ctx = zmq.Context()
    if access is not None:
        access.start(ctx)
    sub = open_input(zmq.asyncio.Context.shadow(ctx), settings, input_endpoint, access)
    prompts.info(
        "calibrating: listening to %s. Stand still and upright, feet flat, arms relaxed by your sides, for a "
        "second or two.",
        input_endpoint,
    )
    deadline = time.monotonic() + timeout_s
    last_prompt = 0.0
    last_check = 0.0
    window = None
    try:
        while window is None:
            if time.monotonic() > deadline:
                raise SolverError(
                    f"no still, upright pose in {timeout_s:.0f} s of stream from {input_endpoint}; "
                    f"is the keypoint source running? Stand still and try again",
                    given=input_endpoint,
                    valid="stand still and try again",
                )
            if not await sub.poll(200):
                if time.monotonic() - last_prompt > 5:
                    prompts.info("  waiting for keypoints ...")
                    last_prompt = time.monotonic()
                continue
            heard = source.take(await sub.recv_multipart(), time.time_ns())
            if not isinstance(heard, Heard):
                continue
            frame = heard.frame
            if subject is _UNSET:
                subject = frame.subject
                source.keep(subject)
            elif frame.subject != subject:  # the first subject heard is the one calibrated
                continue
            if heard.restart is not None:  # the source started over: so does the search for a still pose
                watch.restart()
            try:
                added = watch.add(frame)
            except Exception as exc:  # a frame the stages cannot take costs that frame, not the calibration
                prompts.info("  skipped a frame the stages refused (%s: %s)", type(exc).__name__, str(exc)[:120])
                continue
            if added is None:
                continue
            now = time.monotonic()
            if now - last_check > 0.25:
                last_check = now
                window = watch.window()
                if window is None and now - last_prompt > 1.5:
                    moved = watch.collector.motion_mm()
                    prompts.info(
                        f"  hold still ... (moving {moved:.0f} mm)" if np.isfinite(moved) else "  hold still ..."
                    )
                    last_prompt = now
    finally:
        sub.close(0)
        if access is not None:
            access.stop()
        ctx.term()
    table = watch.collector.table()
    static = table.frames(window.start, window.stop)
    prompts.info("got it: %s. Scaling the model ...", window.description)
    path, rmse = await asyncio.get_running_loop().run_in_executor(
        None, _scale, table, mass, height, out_model, assets, (window.t0, window.t1), watch.still
    )
    offset = floor_offset(static.xyz)
    whose = subject if isinstance(subject, str) else None
    written = write_subject(Path(path), mass, height, offset, f"{window.t0:.3f}-{window.t1:.3f} s", whose)
    prompts.info("scaled model: %s (marker error %.1f mm RMS); subject: %s", path, rmse, written)
    return Path(path)


def _scale(
    table: MarkerTable, mass: float, height: float, out_model: Path, assets, static, settings: ScaleSettings
) -> tuple:
    """The scale step, in a process of its own (:class:`Calibration`): the scaled model's path and marker error.

    The still window ``static`` was found already, by the ``[scale]`` ``settings`` the model is scaled with.
    """
    result = scale_model(table, mass, height, out_model, assets, settings, static=static)
    return str(result.model_path), float(result.rmse_mm)


class Calibration:
    """One person calibrated inside the live service (``serve --calibrate``, a subject without a ``[people]`` model).

    Their frames are cleaned and augmented as the service does until a still, upright window (the rule of
    :func:`calibrate`), then the generic model is scaled from it to ``out_model`` in ``pool`` (another process: the
    scale step takes a second or two, and nobody else's frames wait for it). Until then their frames are counted, not
    answered; :meth:`done` gives the :class:`Subject` to serve them as once the model is written. ``settings``: the
    stages' and the look's, as :class:`StillWatch` reads them.
    """

    def __init__(self, name: str, settings: Settings, assets, who: Subject, out_model: Path, rate: float, pool):
        self.subject, self.who, self.out_model, self.assets, self.pool = name, who, Path(out_model), assets, pool
        self.watch = StillWatch(assets, settings, who.height, who.mass, rate)
        self.frames_in = 0
        self.future = None  # the scale step, once a still window is found
        self._checked = -np.inf  # the frame time of the last look for a still window

    def prepare(self, frame, recv_ns: int) -> None:
        """A frame of theirs: into the look for a still window (nothing more while the model is scaled)."""
        self.frames_in += 1
        if self.future is not None:
            return
        try:
            t = self.watch.add(frame)
        except Exception:  # noqa: BLE001 - a frame the stages refuse costs that frame, not the calibration
            return
        if t is None or t - self._checked < 0.25:
            return
        self._checked = t
        window = self.watch.window()
        if window is None:
            return

        table = self.watch.collector.table()
        self.window = f"{window.t0:.3f}-{window.t1:.3f} s"
        self.floor_offset = floor_offset(table.frames(window.start, window.stop).xyz)
        self.out_model.parent.mkdir(parents=True, exist_ok=True)
        log.info("%s stood still (%s): scaling their model to %s", self.subject, window.description, self.out_model)
        static = (window.t0, window.t1)
        self.future = self.pool.submit(
            _scale, table, self.who.mass, self.who.height, self.out_model, self.assets, static, self.watch.still
        )

    def restart(self, t: float) -> None:
        """Their source started over: the look for a still window too (a scale under way goes on)."""
        if self.future is None:
            self.watch.restart()
            self._checked = -np.inf

    def done(self) -> Subject | None:
        """Their model once scaled (its subject file written beside it); None until then.

        Raises what the scale step raised.
        """
        if self.future is None or not self.future.done():
            return None
        path, rmse = self.future.result()
        write_subject(Path(path), self.who.mass, self.who.height, self.floor_offset, self.window, self.subject)
        log.info("%s calibrated: %s (marker error %.1f mm RMS)", self.subject, path, rmse)
        return Subject(Path(path), self.who.mass, self.who.height, self.floor_offset)

    def cancel(self) -> None:
        """Cancel the scale step when it has not started yet."""
        if self.future is not None:
            self.future.cancel()

    def status(self) -> dict:
        """Their line of the status while calibrating."""
        return {"calibrating": "scaling" if self.future is not None else "waiting for a still pose",
                "frames_in": self.frames_in, "frames_out": 0, "skipped": 0}  # fmt: skip
