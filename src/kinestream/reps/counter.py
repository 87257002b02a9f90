"""The streaming rep counter (:class:`RepCounter`): a frame in, the rep it ended (if any) out.

What a rep is. The signal is knee flexion, the mean of ``knee_angle_r`` and
``knee_angle_l`` (degrees). A squat rep is an excursion of it above
``knee_start_deg``: it **starts** when the knee flexion rises through
``knee_start_deg`` and **ends** when it falls back through ``knee_start_deg``
(both times interpolated between the two frames either side). Two hysteresis
rules keep noise near the threshold from making or breaking reps: the
excursion only counts once it has reached ``knee_start_deg + hysteresis_deg``,
and nothing starts until the knees have been seen below ``knee_start_deg``
(a stream that begins crouched, but not seated, waits until they stand). The
rep's event is returned by the very frame that ends it: there is no
look-ahead, so the live service can publish it one frame after the rep ends.

Seated. The athlete is seated when knee flexion is at least
``seated_knee_deg`` and hip flexion at least ``seated_hip_deg`` (when the
angles have it), held within ``seated_still_deg`` of the greatest knee flexion
for ``seated_hold_s`` -- or when the stream begins so (however long that was
seen). Standing up from seated is a **sit-to-stand** rep (``kind``
``"sit_to_stand"``), ended, like a squat, when the knees fall through
``knee_start_deg``. Its ``bottom`` is the seat-off (the last frame within
``seated_still_deg`` of the seated knee flexion before the rise),
``seated_s`` the time seated, ``descent_s`` the sit-down before it (None when
the stream began seated) and ``ascent_s`` the rise. A sit-to-stand set's
seated pauses are often short (half a second) and look like a squat's bottom
to the knees alone, so after a sit-to-stand rep, a rep that starts within
``sit_set_break_s`` is one too. The counter cannot see a chair: a squat held
at the bottom for ``seated_hold_s`` counts as sitting.

An excursion is then judged:

- shorter than ``min_rep_s`` (a sit-to-stand rise: shorter than
  ``MIN_RISE_S``) or longer than ``max_rep_s``: rejected (counted in the
  summary as ``too_short`` / ``too_long``; a squat passing ``max_rep_s`` is
  dropped at once and the counter waits for the knees to straighten; sitting
  has no time limit);
- knee flexion peaking below ``min_depth_deg``: a partial rep (a half squat),
  counted in the summary as ``partial``, no event;
- otherwise a rep: a :class:`RepEvent`.

The end of the stream. :meth:`RepCounter.finish` closes a rep in progress
(:func:`detect_reps` calls it at the end of a recording, the live service when
the stream stops or restarts): one whose knees are on their way up and within
``end_margin_deg`` of ``knee_start_deg`` is reported as a rep (its ``end`` the
last frame, its ``reason`` saying so); any other is reported as incomplete
(``complete`` false, not counted) with the ``reason``: seated, at the bottom,
on the way up or down. An athlete seated since the stream began is not a rep
in progress.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from kinestream.errors import InputError
from kinestream.reps.angles import HIPS, KNEES, MIN_RISE_S
from kinestream.reps.events import PartialRep, RepEvent, summarize
from kinestream.reps.measures import frame_measures
from kinestream.reps.rows import _HL, _HR, _KL, _KR, _T, rep_event, seat_off, smooth_rows
from kinestream.settings import CueSettings, RepSettings

_WAIT, _STANDING, _RISING, _IN_REP, _SEATED = "wait", "standing", "rising", "in_rep", "seated"


def _crossing(t0: float, k0: float, t1: float, k1: float, level: float) -> float:
    if k1 == k0:
        return t1
    return t0 + (level - k0) / (k1 - k0) * (t1 - t0)


def _mean_finite(a: float, b: float) -> float:
    """The mean of the finite ones of two values; NaN when neither is."""
    if math.isfinite(a) and math.isfinite(b):
        return 0.5 * (a + b)
    return a if math.isfinite(a) else b


class RepCounter:
    """Streaming rep detector: feed solved frames in time order; a :class:`RepEvent` comes back when a rep ends.

    ``coords``: the names of the values in each ``q`` (OpenSim coordinate
    names; degrees for rotations). It must hold ``knee_angle_r`` and
    ``knee_angle_l``; ``hip_flexion_r/l`` are used when present. ``cues``:
    the cue rules (default: the ``[cues]`` defaults). Call :meth:`finish` when
    the stream ends.
    """

    def __init__(self, settings: RepSettings | None, coords: list[str], cues: CueSettings | None = None):
        self.settings = settings or RepSettings()
        self.settings.check()
        self.cues = cues or CueSettings()
        coords = list(coords)
        missing = [k for k in KNEES if k not in coords]
        if missing:
            raise InputError(
                f"the joint angles have no {' or '.join(missing)}; the rep counter needs both "
                f"knee angles (columns: {', '.join(coords[:12])}{', ...' if len(coords) > 12 else ''})",
                given=coords,
                valid=list(KNEES),
            )
        self.coords = coords
        self._knees = [coords.index(k) for k in KNEES]
        self._hips = [coords.index(h) if h in coords else -1 for h in HIPS]
        self.reset()

    def reset(self) -> None:
        """Forget the session: counts, events and any rep under way."""
        self.events: list[RepEvent] = []
        self.partials: list[PartialRep] = []
        self.incomplete: list[RepEvent] = []  # reps the end of the stream cut short (not counted)
        self.counts = {"frames": 0, "skipped": 0, "too_short": 0, "too_long": 0}
        self._last_sit_to_stand = -math.inf  # end of the last sit-to-stand rep (its set goes on)
        self._restart()

    def _restart(self) -> None:
        """A new stream: nothing under way, and it may begin seated."""
        self._state = _WAIT
        self._fresh = True  # no frame used yet: a seated start is possible
        self._prev: tuple[float, float] | None = None  # (t, knee) of the last used frame
        self._rows: list[list[float]] = []
        self._start = math.nan
        self._peak = -math.inf  # greatest knee flexion of the excursion so far
        self._near_since: float | None = None  # since when the knees have stayed seated near that peak
        self._hold_start = math.nan  # seated: when the athlete reached the seat (or the stream began)
        self._sit_down_s: float | None = None  # seated: how long the sit-down took (None: not seen)

    @property
    def in_rep(self) -> bool:
        """True while an excursion that counts (past knee_start_deg + hysteresis_deg) is under way."""
        return self._state == _IN_REP

    @property
    def seated(self) -> bool:
        """True while the athlete is seated (see the module notes)."""
        return self._state == _SEATED

    def _seated_pose(self, knee: float, hip: float) -> bool:
        """Knee (and hip, when known) flexed as far as seated."""
        s = self.settings
        return knee >= s.seated_knee_deg and (not math.isfinite(hip) or hip >= s.seated_hip_deg)

    def step(self, t: float, q, centres: dict | None = None) -> RepEvent | None:
        """One frame: time (s), joint angles (degrees, in ``coords`` order), joint centres or None.

        Returns the rep this frame ended, else None. Never raises: frames whose
        knee angles are not finite, or whose time does not increase, are skipped.
        """
        self.counts["frames"] += 1
        try:
            t = float(t)
            q = np.asarray(q, dtype=float).reshape(-1)
            kr, kl = float(q[self._knees[0]]), float(q[self._knees[1]])
            hips = [float(q[i]) if i >= 0 else math.nan for i in self._hips]
        except (TypeError, ValueError, IndexError):
            self.counts["skipped"] += 1
            return None
        if not (math.isfinite(t) and math.isfinite(kr) and math.isfinite(kl)) or (
            self._prev is not None and t <= self._prev[0]
        ):
            self.counts["skipped"] += 1
            return None
        knee = 0.5 * (kr + kl)
        hip = _mean_finite(*hips)
        s = self.settings
        prev, self._prev = self._prev, (t, knee)
        fresh, self._fresh = self._fresh, False
        start_level = s.knee_start_deg

        if self._state == _WAIT:
            if fresh and self._seated_pose(knee, hip):  # the stream begins seated
                self._start = self._hold_start = t
                self._sit_down_s = None
                self._rows = [[t, kr, kl, *hips, *frame_measures(centres)]]
                self._state = _SEATED
            elif knee < start_level:
                self._state = _STANDING
            return None
        if self._state == _STANDING:
            if knee > start_level:
                self._start = _crossing(*prev, t, knee, start_level) if prev is not None else t
                self._rows = []
                self._peak, self._near_since = -math.inf, None
                self._state = _RISING
            else:
                return None
        if knee < start_level:  # an excursion, or a rise from seated, ends
            end = _crossing(*prev, t, knee, start_level) if prev is not None else t
            state, self._state = self._state, _STANDING
            if state == _SEATED:
                return self._finish_rise(end)
            return self._finish(end) if state == _IN_REP else None
        self._rows.append([t, kr, kl, *hips, *frame_measures(centres)])
        if self._state == _SEATED:
            if t - self._rows[0][_T] > 2 * s.max_rep_s:  # sitting has no time limit; its frames are kept to a bound
                self._rows = [row for row in self._rows if row[_T] >= t - s.max_rep_s]
            return None
        if self._state == _RISING and knee >= start_level + s.hysteresis_deg:
            self._state = _IN_REP
        self._track_seat(t, knee, hip)
        if self._state == _IN_REP and self._near_since is not None and t - self._near_since >= s.seated_hold_s:
            self._state = _SEATED  # sat down
            self._hold_start = self._near_since
            self._sit_down_s = self._near_since - self._start
            return None
        if t - self._start > s.max_rep_s:
            if self._state == _IN_REP:
                self.counts["too_long"] += 1
            self._rows = []
            self._state = _WAIT
        return None

    def _track_seat(self, t: float, knee: float, hip: float) -> None:
        """Follow since when the knees have stayed seated within seated_still_deg of the excursion's peak."""
        s = self.settings
        if knee > self._peak:
            self._peak = knee
            since = None  # a new peak: how far back the frames stay near it
            for row in reversed(self._rows):
                k = 0.5 * (row[_KR] + row[_KL])
                if k >= knee - s.seated_still_deg and self._seated_pose(k, _mean_finite(row[_HR], row[_HL])):
                    since = row[_T]
                else:
                    break
            self._near_since = since
        elif knee >= self._peak - s.seated_still_deg and self._seated_pose(knee, hip):
            if self._near_since is None:
                self._near_since = t
        else:
            self._near_since = None

    def _take_rows(self) -> np.ndarray:
        rows = np.array(self._rows, dtype=float)
        self._rows = []
        return rows

    def _finish(self, end: float) -> RepEvent | None:
        """An excursion from standing ended at ``end``: a squat, or a sit-to-stand rep of a set under way."""
        s = self.settings
        start = self._start
        rows = self._take_rows()
        if end - start < s.min_rep_s or len(rows) == 0:
            self.counts["too_short"] += 1
            return None
        rows = smooth_rows(rows, s.smooth_hz)
        knee = 0.5 * (rows[:, _KR] + rows[:, _KL])
        b = int(np.argmax(knee))
        if knee[b] < s.min_depth_deg:
            self.partials.append(PartialRep(start, float(rows[b, _T]), end, float(knee[b])))
            return None
        if start - self._last_sit_to_stand <= s.sit_set_break_s:  # the set of sit-to-stands goes on
            off, seat = seat_off(rows, knee, self.settings)
            return self._sit_to_stand(rows, knee, off, start, end, seat - start, float(rows[off, _T]) - seat)
        return self._event(rows, knee, b, start, end)

    def _finish_rise(self, end: float) -> RepEvent | None:
        """The athlete stood up from seated at ``end``: a sit-to-stand rep."""
        s = self.settings
        start = self._start
        rows = self._take_rows()
        if len(rows) == 0:
            self.counts["too_short"] += 1
            return None
        rows = smooth_rows(rows, s.smooth_hz)
        knee = 0.5 * (rows[:, _KR] + rows[:, _KL])
        off, _ = seat_off(rows, knee, self.settings)
        rise = end - float(rows[off, _T])
        if rise < MIN_RISE_S or end - start < s.min_rep_s:
            self.counts["too_short"] += 1
            return None
        if rise > s.max_rep_s:
            self.counts["too_long"] += 1
            return None
        if float(knee.max()) < s.min_depth_deg:
            self.partials.append(PartialRep(start, float(rows[off, _T]), end, float(knee.max())))
            return None
        seated = float(rows[off, _T]) - self._hold_start  # the frames of a long sit are not all kept: its start is
        return self._sit_to_stand(rows, knee, off, start, end, self._sit_down_s, seated)

    def _sit_to_stand(
        self, rows, knee, off: int, start: float, end: float, descent: float | None, seated: float
    ) -> RepEvent:
        event = self._event(rows, knee, off, start, end, kind="sit_to_stand", descent=descent, seated=seated)
        self._last_sit_to_stand = end
        return event

    def _event(self, rows: np.ndarray, knee: np.ndarray, b: int, start: float, end: float, **how: Any) -> RepEvent:
        """The event of a rep's (smoothed) frames with its bottom at frame ``b``, kept in events (or incomplete).

        :func:`rep_event` makes it, ``how`` its keywords.
        """
        event = rep_event(
            rows, knee, b, start, end, index=len(self.events) + 1, settings=self.settings, cues=self.cues, **how
        )
        (self.events if event.complete else self.incomplete).append(event)
        return event

    def finish(self) -> RepEvent | None:
        """The stream has ended: close the rep under way, if any; the counter then waits for a new stream.

        A rep on its way up and within end_margin_deg of knee_start_deg is a rep (returned, counted, its
        ``reason`` saying it was closed at the end of the stream, its ``end`` the last frame); any other rep
        under way is returned incomplete (``complete`` false, kept in ``incomplete``, not counted) with the
        ``reason``. Nothing under way (standing, an excursion short of the hysteresis, seated since the
        stream began): None.
        """
        try:
            return self._close()
        finally:
            self._restart()

    def _close(self) -> RepEvent | None:
        s = self.settings
        state = self._state
        if state not in (_IN_REP, _SEATED) or not self._rows:
            return None
        raw = np.array(self._rows, dtype=float)
        t, knee = raw[:, _T], 0.5 * (raw[:, _KR] + raw[:, _KL])
        now, peak, last = float(knee[-1]), float(knee.max()), float(t[-1])
        if now <= s.knee_start_deg + s.end_margin_deg and peak - now >= max(s.hysteresis_deg, s.seated_still_deg):
            event = self._finish_rise(last) if state == _SEATED else self._finish(last)
            if event is not None:
                event = replace(
                    event,
                    reason=f"closed at the end of the stream: knee flexion back to {now:.0f} deg, within "
                    f"end_margin_deg of knee_start_deg ({s.knee_start_deg:g})",
                )
                self.events[-1] = event
            return event
        still = now >= peak - s.seated_still_deg
        if state == _SEATED and self._sit_down_s is None and still:
            return None  # seated since the stream began: no rep was under way
        before = knee[t >= last - 0.1][0]
        if state == _SEATED:
            reason = f"the stream ended with the athlete seated (knee flexion {now:.0f} deg): no stand-up followed"
        elif still and now - before > 1.0:
            reason = f"the stream ended on the way down (knee flexion {now:.0f} deg)"
        elif still:
            reason = f"the stream ended at the bottom (knee flexion {now:.0f} deg)"
        else:
            reason = f"the stream ended on the way up (knee flexion {now:.0f} deg, from a peak of {peak:.0f})"
        rows = smooth_rows(raw, s.smooth_hz)
        smooth = 0.5 * (rows[:, _KR] + rows[:, _KL])
        seated = state == _SEATED or self._start - self._last_sit_to_stand <= s.sit_set_break_s
        return self._event(
            rows,
            smooth,
            int(np.argmax(smooth)),
            self._start,
            last,
            kind="sit_to_stand" if seated else "squat",
            descent=self._sit_down_s if state == _SEATED else math.nan,
            seated=last - self._hold_start if state == _SEATED else None,
            complete=False,
            reason=reason,
        )

    def summary(self) -> dict:
        """The set so far: counts, depth, tempo, form and cues, plus the partial and incomplete reps (JSON-ready)."""
        return summarize(
            self.events, self.partials, self.incomplete, self.counts, in_rep=self.in_rep, seated=self.seated
        )
