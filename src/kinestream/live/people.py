"""The people a live service serves: one :class:`~kinestream.live.person.Person` each.

Each is made on their first frame, solved in turns, closed out after a silence.

    a frame of subject S -> People.admit -> S's Person (made when S is new: their model from [people], else serve's;
                                            their recording SESSION_<S>.mot)
                                          | Refusal: unsafe_subject (not one file name and one MQTT topic level),
                                            too_many_people (service.max_people served already),
                                            over_rate (frames faster than service.max_rate_hz)
    each turn of the receive loop: People.solve_turn -> one IK solve of each person with frames waiting, in turn,
                                                        until none waits or the turn's time is spent
    People.close_silent(now) -> everyone silent for service.person_timeout_s closed out: their frames drained,
                                their last rep finished, their recording closed, their Person dropped

Frames without a subject, or naming ``[subject] name``, are the session's one person as before: named after
``[subject] name``, recorded to the ``--record`` file itself (SESSION.mot), made when the service starts and never
closed out for silence. A person closed out who comes back starts afresh, recording under the same name: their
earlier recording is set aside as ``SESSION_<S>.1.mot`` (.2, ...: the first number free), as serve sets aside
any earlier recording at its path.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinestream import checks
from kinestream.errors import KinestreamError, SettingsError
from kinestream.live.calibrate import Calibration, Subject, served_subject
from kinestream.live.metrics import Metrics
from kinestream.live.person import Person
from kinestream.live.sinks import RecorderSink, Sink
from kinestream.live.source import Arrival
from kinestream.pipeline import Pipeline
from kinestream.settings import Settings

log = logging.getLogger("kinestream.live.service")

SHOWN = ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l")  # each person's, on the status line


@dataclass(frozen=True)
class Refusal:
    """Why a subject's frame is refused: a reason counted in the status, and what was given."""

    reason: str
    detail: str


def roster(settings: Settings, assets, default: Subject) -> dict[str, Subject]:
    """The ``[people]`` table (``settings.people``) resolved: each subject's model, mass, height and floor offset.

    An entry with a ``model`` takes its mass and height from the entry, else from the subject file beside the model,
    else from ``[subject]``; an entry without one gets the generic model, unscaled, with its own height and mass
    (``default``'s where not given). KinestreamError for a model that is not there.
    """
    people = {}
    for name, entry in settings.people.items():
        if entry.model:
            people[name] = served_subject(settings, assets, entry.model, entry.mass, entry.height)
        else:
            mass = entry.mass if entry.mass is not None else default.mass
            height = entry.height if entry.height is not None else default.height
            people[name] = served_subject(settings, assets, None, mass, height)
    return people


def bucket(name: str, n: int) -> int:
    """Which of ``n`` shares ``name`` falls in: its BLAKE2b hash modulo n, the same in every process and run.

    (A CRC-32 would not do: it is linear in the name's bits, so p0, p1, p2 and p3 all fall in one share of two.)
    """
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") % n


def share(spec: str) -> Callable[[str], bool]:
    """Whom a service serves, from ``service.people`` (serve --people).

    "" everyone, "ana,ben" those names, "K/N" the names whose hash (:func:`bucket`) is K modulo N. Raises
    KinestreamError saying what was given and what is valid.
    """
    text = str(spec).strip()
    if not text:
        return lambda name: True
    if "/" in text:
        k, _, n = text.partition("/")
        if k.strip().isdigit() and n.strip().isdigit() and int(k) < int(n):
            mine, of = int(k), int(n)
            return lambda name: bucket(name, of) == mine
    else:
        names = {part.strip() for part in text.split(",")}
        if all(names):
            return lambda name: name in names
    raise SettingsError(
        f"people {spec!r} (service.people, serve --people) is not valid; give '' (everyone), subject ids separated "
        f"by commas ('ana,ben'), or a share 'K/N' with 0 <= K < N ('0/2' and '1/2' split everyone between two)",
        key="service.people",
        given=spec,
        valid="'', subject ids separated by commas, or a share 'K/N'",
    )


class RateCap:
    """At most ``hz`` frames a second from each subject, by arrival, with a second's worth that may come at once.

    By arrival, since a sender's own clock can say anything; a second's worth may come at once after a stall. A person
    who floods costs the others the frames' cleaning and augmenting at that rate at most.
    """

    def __init__(self, hz: float):
        self.hz = hz
        self._allowance: dict[str, tuple[float, int]] = {}  # name -> (frames they may still send now, when)

    def admits(self, name: str, now_ns: int) -> bool:
        """Whether a frame of ``name`` arriving at ``now_ns`` keeps them within the cap (counted if so)."""
        allowance, since = self._allowance.get(name, (self.hz, now_ns))
        allowance = min(self.hz, allowance + (now_ns - since) * 1e-9 * self.hz)
        if allowance < 1.0:
            self._allowance[name] = (allowance, now_ns)
            return False
        self._allowance[name] = (allowance - 1.0, now_ns)
        return True

    def forget(self, name: str) -> None:
        """Forget ``name``'s allowance (they were closed out)."""
        self._allowance.pop(name, None)


def recording_path(record: Path, name: str, default: str) -> Path:
    """Where ``name``'s recording goes: ``record`` itself for the default person, else ``<stem>_<name>.mot``."""
    return record if name == default else record.with_name(f"{record.stem}_{name}{record.suffix}")


class People:
    """The table of people served, at most ``service.max_people``, keyed by name.

    A name is a frame's subject; the default person's is ``default_name``. ``default`` is the default person's model,
    their pipeline made now (a single-person session starts as it always has); everyone else's pipeline is made on their
    first frame (in milliseconds on a model already loaded; see :meth:`_person`). ``default_person`` False: frames
    without a subject are another service's (a worker of ``serve --workers`` other than the first), nor is that person
    recorded here. ``calibrate``: a folder; everyone new without a ``[people]`` model (their height and mass from there,
    else serve's) is first calibrated from their own still, upright window
    (:class:`~kinestream.live.calibrate.Calibration`, their model in ``calibrate/<subject>/scaled.osim``), then served
    on it. ``report(reason, detail)`` counts and logs what went wrong (the service's); ``metrics`` are the service's
    totals. ``settings``: the limits (``[service]``), ``[people]`` and every person's stages.
    """

    def __init__(
        self,
        settings: Settings,
        assets,
        default: Subject,
        default_name: str,
        metrics: Metrics,
        report: Callable[[str, str], None],
        *,
        record: Path | None = None,
        rate: float = 60.0,
        shown: tuple[str, ...] = SHOWN,
        default_person: bool = True,
        calibrate: Path | None = None,
    ):
        svc = settings.service
        self.settings, self.assets, self.rate, self.record = settings, assets, rate, record
        self.default_name = default_name
        self.max_people = int(svc.max_people)
        self.share = str(svc.people)
        chosen = share(self.share)
        # name -> whether this service serves them; without default_person, frames without a subject are another's
        self.serves = chosen if default_person else (lambda name: name != default_name and chosen(name))
        self.timeout_ns = int(float(svc.person_timeout_s) * 1e9)
        self.rate_cap = RateCap(float(svc.max_rate_hz))
        self.metrics, self.report, self.shown = metrics, report, shown
        self.latest_wins = bool(svc.latest_wins)
        self.max_lag_ns = int(float(svc.max_lag_ms) * 1e6)
        self.default_subject = default
        self.roster = roster(settings, assets, default)
        self._templates: dict[str, Pipeline[Arrival]] = {}  # model file -> the first pipeline made on it
        self.default = self._person(default_name, default)
        self._people: dict[str, Person] = {}  # the people served now, in the order they came
        self._heard: dict[str, int] = {}  # name -> when their last frame arrived (wall clock, ns)
        self._failed: dict[str, int] = {}  # name -> when making their pipeline failed: not tried again for a while
        self._sinks: list[Sink] = []
        self.calibrate = Path(calibrate) if calibrate is not None else None  # where newcomers' models go
        self._calibrating: dict[str, Calibration] = {}
        self._pool: Any = None  # the process that scales newcomers' models, made for the first one
        self.recordings: list[tuple[Path, Path]] = []  # every recording made: (.mot, _markers.trc), in order
        self.closed_out = 0  # people closed out for silence
        self._rows_gone = 0  # rows left out of the recordings of the people closed out
        self._turn = 0

    # -- who is served

    def open(self, sinks: list[Sink]) -> None:
        """The service's sinks (every person's frames go to them) and the default person's recording made."""
        pipeline = self.default.pipeline
        if pipeline.removed:
            log.info("removed before IK: %s", ", ".join(pipeline.removed))
        for note in pipeline.notes:
            log.warning(note)
        self._sinks = list(sinks)
        # a service whose share (service.people) leaves the default person to another does not record them
        own = self._recording(self.default_name, self.default.pipeline) if self.serves(self.default_name) else []
        self.default.attach(self._sinks, own)

    def _recording(self, name: str, pipeline: Pipeline[Arrival]) -> list[Sink]:
        if self.record is None:
            return []
        sink = RecorderSink(
            recording_path(self.record, name, self.default_name),
            pipeline.coordinates,
            pipeline.keypoints + pipeline.markers,
            self.rate,
        )
        for old, new in sink.moved:  # an earlier recording of this service set aside: listed under its new name
            self.recordings = [(new, m) if p == old else (p, new) if m == old else (p, m) for p, m in self.recordings]
        self.recordings.append((sink.path, sink.markers))
        return [sink]

    def name(self, subject: str | None) -> str:
        """The name of ``subject``: itself, or the default person's name for frames without one."""
        return self.default_name if subject is None else subject

    def admit(self, subject: str | None, recv_ns: int) -> Person | Calibration | Refusal | None:
        """The person a frame of ``subject`` goes to, why the frame is refused, or None when another service has them.

        The person is made when they are new (their calibration first, with ``calibrate``); another service serves them
        by ``service.people``.
        """
        name = self.name(subject)
        if not self.serves(name):
            return None
        if not self.rate_cap.admits(name, recv_ns):
            return Refusal("over_rate", f"subject {name!r}: faster than service.max_rate_hz ({self.rate_cap.hz:g})")
        known = self.default if name == self.default_name else self._people.get(name)
        if known is None and name in self._calibrating:
            self._heard[name] = recv_ns
            return self._calibrating[name]
        person = known if known is not None else self._make(name, recv_ns)
        if isinstance(person, Refusal):
            return person
        self._heard[name] = recv_ns
        if isinstance(person, Calibration):
            self._calibrating[name] = person
            return person
        self._people[name] = person
        return person

    def _make(self, name: str, recv_ns: int) -> Person | Calibration | Refusal:
        try:
            checks.subject_id("subject", name)
        except KinestreamError as exc:
            return Refusal("unsafe_subject", str(exc))
        if len(self._people) + len(self._calibrating) >= self.max_people:
            return Refusal(
                "too_many_people", f"subject {name!r}: {len(self._people)} served already (service.max_people)"
            )
        if recv_ns - self._failed.get(name, -self.timeout_ns) < self.timeout_ns:
            return Refusal("stage_error", f"subject {name!r}: their pipeline could not be made a moment ago")
        who = self.roster.get(name, self.default_subject)
        if self.calibrate is not None and not ((entry := self.settings.people.get(name)) and entry.model):
            return self._calibration(name, who)
        return self._admitted(name, who, recv_ns)

    def _calibration(self, name: str, who: Subject) -> Calibration:
        """``name``'s calibration, with ``who``'s height and mass (their ``[people]`` entry's, or serve's)."""
        if self._pool is None:
            import concurrent.futures
            import multiprocessing

            spawn = multiprocessing.get_context("spawn")  # OpenSim starts clean in it
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn)
        assert self.calibrate is not None
        out = self.calibrate / name / "scaled.osim"
        log.info("calibrating %s: stand still and upright, feet flat, arms by your sides, for a second or two", name)
        return Calibration(name, self.settings, self.assets, who, out, self.rate, self._pool)

    def _admitted(self, name: str, who: Subject, recv_ns: int) -> Person | Refusal:
        """``name``'s person on ``who``'s model, their recording made; a Refusal when their pipeline cannot be."""
        try:
            person = self._person(name, who)
        except Exception as exc:  # a person the stages cannot take costs their frames, not the service
            self._failed[name] = recv_ns
            return Refusal("stage_error", f"subject {name!r}: {type(exc).__name__}: {exc}")
        try:
            own = self._recording(name, person.pipeline)
        except Exception as exc:  # served, not recorded: said and counted
            self.report("record_error", f"{name}'s recording: {type(exc).__name__}: {exc}")
            own = []
        person.attach(self._sinks, own)
        log.info("serving %s (%d people now); model %s", name, len(self._people) + 1, who.model)
        return person

    def _person(self, name: str, who: Subject) -> Person:
        """``name``'s person on ``who``'s model: their pipeline made.

        The first person on a model loads it and sets the solver up (about half a second); everyone after shares that
        (milliseconds: a newcomer does not hold the others' frames back).
        """
        key = str(who.model)
        pipeline: Pipeline[Arrival] = Pipeline(
            self.assets,
            self.settings,
            height=who.height,
            mass=who.mass,
            model=who.model,
            rate=self.rate,
            floor_offset=who.floor_offset,
            template=self._templates.get(key),
        )
        self._templates.setdefault(key, pipeline)
        return Person(
            name,
            pipeline,
            self.metrics,
            self.report,
            shown=self.shown,
            latest_wins=self.latest_wins,
            max_lag_ns=self.max_lag_ns,
        )

    # -- turns

    def waiting(self) -> bool:
        """Whether someone's frames wait for IK."""
        return any(p.waiting for p in self._people.values())

    def _calibrated(self) -> None:
        """Everyone whose model is scaled now served on it (their calibration failed: said, and tried afresh)."""
        for name, calibration in list(self._calibrating.items()):
            try:
                who = calibration.done()
            except Exception as exc:  # a scale that failed costs that person a new calibration, not the service
                self.report("stage_error", f"{name}'s calibration: {type(exc).__name__}: {exc}")
                self._calibrating[name] = self._calibration(name, calibration.who)
                continue
            if who is None:
                continue
            del self._calibrating[name]
            person = self._admitted(name, who, self._heard.get(name, 0))
            if isinstance(person, Person):
                self._people[name] = person
            else:
                self.report(person.reason, person.detail)

    def solve_turn(self, budget_s: float) -> None:
        """One IK solve of each person with frames waiting, in turn, again until none waits or ``budget_s`` is spent.

        Latest wins within each person's own frames: no person's backlog holds another's frames back by more than one
        solve each. Whoever went first last turn goes last this one.
        """
        if self._calibrating:
            self._calibrated()
        people = list(self._people.values())
        if not people:
            return
        deadline = time.perf_counter_ns() + int(budget_s * 1e9)
        while True:
            self._turn = (self._turn + 1) % len(people)
            order = people[self._turn :] + people[: self._turn]
            solved = [p.solve_next() for p in order]
            if not any(solved) or time.perf_counter_ns() >= deadline:
                return

    def close_silent(self, now_ns: int) -> list[str]:
        """Everyone (but the default person) silent for ``service.person_timeout_s`` closed out; their names."""
        gone = [n for n, heard in self._heard.items() if n != self.default_name and now_ns - heard > self.timeout_ns]
        for name in gone:
            self._close_out(name, f"{name} silent for {(now_ns - self._heard[name]) / 1e9:.1f} s")
        return gone

    def _close_out(self, name: str, why: str) -> None:
        del self._heard[name]
        if name in self._calibrating:  # silent before they were calibrated: nothing to finish
            self._calibrating.pop(name).cancel()
            log.info("%s left before they were calibrated: %s", name, why)
            return
        person = self._people.pop(name)
        self.rate_cap.forget(name)
        person.drain(why)
        person.close()
        self._rows_gone += person.rows_not_recorded()
        self.closed_out += 1
        log.info("closed out %s: %s; their recording is complete", name, why)

    def drain(self, why: str) -> None:
        """The stream ended: every person's frames solved, none skipped, and their reps closed out."""
        for person in self.everyone():
            person.drain(why)

    def close(self) -> None:
        """Every person's recording closed; a calibration under way given up."""
        for person in self.everyone():
            person.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def everyone(self) -> list[Person]:
        """The default person, then everyone served now."""
        return [self.default] + [p for p in self._people.values() if p is not self.default]

    def rows_not_recorded(self) -> int:
        """Solved frames left out of every recording of the session (unsolved ones)."""
        return self._rows_gone + sum(p.rows_not_recorded() for p in self.everyone())

    def status(self) -> dict:
        """Each person's line of the status, by name (the default person's once they have sent a frame)."""
        lines = {p.subject: p.status() for p in self._people.values()}
        lines.update({name: c.status() for name, c in self._calibrating.items()})
        return lines
