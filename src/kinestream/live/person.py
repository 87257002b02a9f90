"""One person served live: their pipeline, their frames waiting for IK, their reps and the sinks their frames go to.

The service admits a frame and hands it to its person (:meth:`Person.prepare`): cleaned and augmented at once (the
filters and the LSTM need every frame), its markers to the sinks, then waiting for IK. :meth:`Person.solve_next`
solves the oldest waiting frame (the service takes one of each person's in turn); when frames have waited too
long, latest wins: the older ones are skipped while a newer one waits. A solved frame goes to every sink, and a
rep that ended with it. Each person counts their own frames and reps (:meth:`Person.status`) as well as the
service's totals.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kinestream.live.messages import reps_message
from kinestream.live.metrics import Metrics, Throttled
from kinestream.live.sinks import Sink, Solved
from kinestream.live.source import Arrival
from kinestream.pipeline import Pipeline, Prepared, RepNews, Result, Taken

if TYPE_CHECKING:
    from kinestream.live.protocol import KeypointFrame
    from kinestream.reps import RepEvent

log = logging.getLogger("kinestream.live.service")


@dataclass(frozen=True)
class _Waiting:
    """A prepared frame waiting for IK, and when it was ready."""

    prepared: Prepared[Arrival]
    ready_ns: int


@dataclass
class Tally:
    """One person's counts, for their line of the status."""

    frames_in: int = 0
    frames_out: int = 0
    skipped: int = 0
    reps: int = 0
    last_rep: dict | None = None
    angles: dict = field(default_factory=dict)  # the shown coordinates' last values

    def status(self) -> dict:
        """The person's counts as their line of the status shows them."""
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "skipped": self.skipped,
            "reps": self.reps,
            "last_rep_depth_deg": self.last_rep["knee_peak"] if self.last_rep else None,
            "last_rep_cues": list(self.last_rep.get("cues", [])) if self.last_rep else [],
            "angles": dict(self.angles),
        }


class Person:
    """``subject``'s frames through their ``pipeline`` to the sinks (:meth:`attach`), counted.

    Counted in ``metrics`` (the service's totals) and in their own :class:`Tally`.

    ``report(reason, detail)`` counts and logs what went wrong with a frame (the service's). ``latest_wins`` and
    ``max_lag_ns``: frames that waited longer than that since they arrived are skipped while a newer one waits.
    ``shown``: the coordinates (name, column) whose last value the status line shows.
    """

    def __init__(
        self,
        subject: str,
        pipeline: Pipeline[Arrival],
        metrics: Metrics,
        report: Callable[[str, str], None],
        *,
        latest_wins: bool = True,
        max_lag_ns: int = 50_000_000,
        shown: tuple[str, ...] = (),
    ):
        self.subject = subject
        self.pipeline = pipeline
        self.coords = pipeline.coordinates
        self.body_names = tuple(pipeline.bodies)  # the rows of a result's body poses
        self.metrics = metrics
        self.report = report
        self.latest_wins = latest_wins
        self.max_lag_ns = max_lag_ns
        self._shown = [(n, self.coords.index(n)) for n in shown if n in self.coords]
        self._sinks: list[Sink] = []
        self._own: list[Sink] = []  # sinks that are this person's alone (their recording): closed with them
        self.tally = Tally()
        self._closed = False
        self._waiting: deque[_Waiting] = deque()  # prepared frames not solved yet
        self._last_counted: tuple[int | None, int] = (None, 0)  # (sent_ns, recv_ns) of the last frame counted
        self._log_every = Throttled(log)

    def attach(self, sinks: list[Sink], own: list[Sink] | tuple[Sink, ...] = ()) -> None:
        """The sinks this person's frames go to from now on.

        The service's (``sinks``, once it has opened them) and ``own``, this person's alone (their recording), closed by
        :meth:`close`.
        """
        self._own = list(own)
        self._sinks = list(sinks) + self._own

    def _to_sinks(self, method: str, *args) -> None:
        """Every sink's ``method`` (``on_frame``, say) with ``args``.

        One that raises is counted under its failure reason and costs no other sink its turn (a full socket, a full disk
        must not stop the service).
        """
        for sink in self._sinks:
            try:
                getattr(sink, method)(*args)
            except Exception as exc:
                self.report(sink.failure, f"{sink.name}: {type(exc).__name__}: {exc}")

    # -- frames in

    def prepare(self, frame: KeypointFrame, recv_ns: int) -> None:
        """An admitted frame cleaned and augmented; what the cleaner releases waits for IK. Never raises."""
        self.tally.frames_in += 1
        try:
            taken = self.pipeline.prepare(frame.names, frame.xyz, frame.t, Arrival(frame.seq, recv_ns, frame.sent_ns))
        except Exception as exc:  # a stage must not take the service down; say what happened
            self.report("stage_error", f"{type(exc).__name__}: {exc}")
            return
        self._forward(taken)

    def _forward(self, taken: Taken[Arrival]) -> None:
        """What the prepare stage gave: its notes logged, its drops counted.

        A frame out of clean + augment has its markers recorded and waits for IK.
        """
        for note in taken.notes:
            log.info(note)
        for _ in range(taken.dropped):  # released by the cleaner, refused by the augmenter
            self.report("stage_dropped", "the augmenter refused a frame (time not after the last one)")
        out = taken.prepared
        if out is None:
            return
        self._to_sinks("on_prepared", out)
        self._waiting.append(_Waiting(out, time.time_ns()))

    # -- IK

    @property
    def waiting(self) -> int:
        """Frames prepared and waiting for IK."""
        return len(self._waiting)

    def solve_waiting(self) -> None:
        """IK for every waiting frame, oldest first (latest wins, as :meth:`solve_next`)."""
        while self.solve_next():
            pass

    def solve_next(self) -> bool:
        """IK for the oldest waiting frame; False when none waits.

        Latest wins: a frame that has waited longer than ``max_lag_ns`` since it arrived is skipped (counted, logged)
        while a newer one waits, and the next is taken, until one is solved.
        """
        while self._waiting:
            waiting = self._waiting.popleft()
            arrival = waiting.prepared.tag
            if self.latest_wins and self._waiting and time.time_ns() - arrival.recv_ns > self.max_lag_ns:
                self.metrics.skipped += 1
                self.tally.skipped += 1
                self._log_every(
                    "skip",
                    logging.WARNING,
                    "IK could not keep up: skipped frame %d of %s (latest wins); %d skipped so far",
                    arrival.seq,
                    self.subject,
                    self.tally.skipped,
                )
                continue
            self._solve(waiting)
            return True
        return False

    def _solve(self, waiting: _Waiting) -> None:
        self.metrics.wait_ms.append((time.time_ns() - waiting.ready_ns) / 1e6)
        start = time.perf_counter_ns()
        bodies = any(sink.wants_bodies(self.subject) for sink in self._sinks)  # only for a pose that goes out
        result = self.pipeline.solve(waiting.prepared, bodies=bodies)
        if result.error is not None:  # the solver raised: the frame goes out unsolved
            self.report("stage_error", result.error)
        self.metrics.ik_ms.append((time.perf_counter_ns() - start) / 1e6)
        self.metrics.prepare_ms.append((waiting.ready_ns - waiting.prepared.tag.recv_ns) / 1e6)
        self._publish(result)

    def _publish(self, result: Result[Arrival]) -> None:
        arrival, q = result.tag, result.q
        if not result.ok:
            self.metrics.ik_failures += 1
        if result.event:
            self._log_every("ik", logging.INFO, "IK at t=%.3f s: %s", result.t, result.event)
        latency_ms = (time.time_ns() - arrival.recv_ns) / 1e6
        solved = Solved(result, self.coords, self.subject, latency_ms, self.body_names)
        self.metrics.frames_out += 1
        self.tally.frames_out += 1
        self._to_sinks("on_frame", solved)
        self.metrics.out_times.append(time.monotonic())
        self.metrics.latency_ms.append(latency_ms)
        for name, k in self._shown:
            self.metrics.last_angles[name] = self.tally.angles[name] = float(q[k])
        self._last_counted = (arrival.sent_ns, arrival.recv_ns)
        self._rep_news(result.rep, *self._last_counted)

    # -- sessions

    def restart(self, t: float) -> None:
        """The source started a new session with a frame at ``t``: the last one's frames solved, then every stage reset.

        Every stage forgets the last session: the next frame is solved from the default pose and a new set begins; the
        rep under way is closed out, and a recording goes on in time from its own last row.
        """
        self.solve_waiting()
        self._rep_news(self.pipeline.restart(), *self._last_counted, why="the source restarted")
        self._to_sinks("on_restart", t)

    def drain(self, why: str) -> None:
        """The stream ended (``why``): the cleaner's look-ahead and every waiting frame solved, none skipped.

        A rep under way is closed out.
        """
        for taken in self.pipeline.flush():
            self._forward(taken)
        while self._waiting:
            self._solve(self._waiting.popleft())
        self._rep_news(self.pipeline.finish(), *self._last_counted, why=why)

    def close(self) -> None:
        """Close this person's own sinks (their recording complete and readable), each on its own, then tell all.

        Every sink is told they left. Call :meth:`drain` first.
        """
        if self._closed:
            return
        self._closed = True
        for sink in self._own:
            try:
                sink.close()
            except Exception as exc:
                self.report(sink.failure, f"{sink.name}: closing: {type(exc).__name__}: {exc}")
        self._to_sinks("on_leave", self.subject)

    def rows_not_recorded(self) -> int:
        """Solved frames left out of this person's recording (unsolved ones)."""
        return sum(int(sink.status().get("rows_not_recorded", 0)) for sink in self._own)

    # -- reps

    def _rep_news(self, news: RepNews, sent_ns: int | None, recv_ns: int, why: str | None = None) -> None:
        """What the rep counter said: a rep that ended goes to the sinks; a counter that failed is counted.

        ``why``: the stream ended so, and a rep under way was closed out.
        """
        if news.error is not None:
            self.report("reps_error", news.error)
        if news.event is None:
            return
        if why:
            log.info("%s during rep %d: closing it out", why, news.event.index)
        self._publish_rep(news.event, news.summary or {}, sent_ns, recv_ns)

    def _publish_rep(self, event: RepEvent, summary: dict, sent_ns: int | None, recv_ns: int) -> None:
        """A rep event to the sinks, with the set so far (``summary``); logged."""
        msg = reps_message(
            event.to_dict(),
            summary,
            subject=self.subject,
            sent_ns=sent_ns,
            latency_ms=(time.time_ns() - recv_ns) / 1e6,
        )
        self._to_sinks("on_rep", msg)
        self.metrics.reps = self.tally.reps = summary["reps"]
        if not event.complete:
            log.info("rep %d incomplete (not counted): %s", event.index, event.reason)
            return
        self.metrics.last_rep = self.tally.last_rep = msg["rep"]
        log.info(
            "rep %d of %s (%s): depth %.0f deg (knee), %s, up %.1f s%s",
            event.index,
            self.subject,
            event.kind.replace("_", "-"),
            event.knee_peak,
            "deep enough" if event.deep_enough else "not deep enough",
            event.ascent_s,
            f"; {', '.join(event.cues)}" if event.cues else "",
        )

    def rep_events(self) -> list[RepEvent]:
        """The complete reps of the session so far."""
        return self.pipeline.rep_events()

    def delay_ms(self) -> float:
        """The filter's delay, for the status."""
        return self.pipeline.delay_ms()

    def status(self) -> dict:
        """The person's line of the status: their counts, reps, shown angles and filter delay.

        With what their own sinks add (their recording's rows left out).
        """
        out = self.tally.status()
        out["filter_delay_ms"] = round(self.delay_ms(), 1)
        for sink in self._own:
            out.update(sink.status())
        return out
