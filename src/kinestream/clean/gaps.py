"""Gaps in marker trajectories: found (:func:`runs_of`), filled offline (:func:`fill_gaps`) and bridged live.

Offline, PCHIP or linear; live (:class:`StreamingGapFiller`), hold, extrapolate, or interpolate with a few frames of
look-ahead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import PchipInterpolator, make_interp_spline

from kinestream import checks
from kinestream.clean.frames import NEVER, check_count, frame_shape, runs_of
from kinestream.errors import InputError, SettingsError

GAP_METHODS = ("pchip", "linear")
HOLD_METHODS = ("hold", "extrapolate")


@dataclass
class GapReport:
    """What :func:`fill_gaps` did.

    Attributes
    ----------
    method
        Interpolation used for the filled gaps.
    max_gap_frames
        Longest gap (in missing frames) that was filled.
    n_frames
        Number of frames in the trial.
    filled
        Number of gaps filled.
    filled_frames
        Total number of marker-frames filled.
    open
        Gaps left missing, as ``(marker index, start frame, number of frames)``.
    """

    method: str
    max_gap_frames: int
    n_frames: int
    filled: int = 0
    filled_frames: int = 0
    open: list[tuple[int, int, int]] = field(default_factory=list)

    def describe(self, names: list[str] | None = None, rate: float | None = None) -> str:
        """Describe the gaps in words, one line per gap left open.

        Parameters
        ----------
        names
            Marker names, indexed like the markers of the data. Default: the
            marker index.
        rate
            Frame rate in Hz, to also state durations and times in seconds.

        Returns
        -------
        str
            A summary line followed by one line per open gap.
        """
        lines = [
            f"filled {self.filled} gap(s) ({self.filled_frames} marker-frames) by {self.method} interpolation; "
            f"{len(self.open)} gap(s) left missing"
        ]
        for marker, start, length in self.open:
            name = names[marker] if names is not None else f"marker {marker}"
            where = f"frames {start}-{start + length - 1}"
            span = f"{length} frames"
            if rate:
                where += f" ({start / rate:.3f}-{(start + length) / rate:.3f} s)"
                span += f" ({length / rate:.3f} s)"
            if start == 0 or start + length == self.n_frames:
                why = "at the start of the trial" if start == 0 else "at the end of the trial"
                if length == self.n_frames:
                    why = "missing throughout"
            else:
                limit = f"{self.max_gap_frames} frames" + (f" ({self.max_gap_frames / rate:.3f} s)" if rate else "")
                why = f"longer than the {limit} that are filled"
            lines.append(f"  {name}: {span} missing, {where}, {why}")
        return "\n".join(lines)


def fill_gaps(
    xyz: np.ndarray, rate: float, max_gap_s: float = 0.2, method: str = "pchip"
) -> tuple[np.ndarray, GapReport]:
    """Fill short interior gaps of marker trajectories by interpolation.

    A marker is missing in a frame when any of its coordinates is NaN. An
    interior gap of ``n`` missing frames (finite frames on both sides) lasts
    ``n / rate`` seconds; it is filled when that is at most ``max_gap_s``.
    The interpolant runs through every finite frame of the marker (scipy's
    shape-preserving :class:`~scipy.interpolate.PchipInterpolator`, or
    straight lines). Longer gaps, and gaps at the start or end of the trial,
    are left missing (all coordinates set to NaN) and listed in the report.

    Parameters
    ----------
    xyz
        Positions, ``(frames, markers, 3)``, or ``(frames, k)`` where each
        column is treated as a one-coordinate marker.
    rate
        Frame rate in Hz.
    max_gap_s
        Longest gap, in seconds, to fill.
    method
        ``"pchip"`` or ``"linear"``.

    Returns
    -------
    tuple[np.ndarray, GapReport]
        The filled copy of ``xyz`` (same shape) and a report of the gaps.

    Raises
    ------
    KinestreamError
        If ``method``, ``rate``, ``max_gap_s`` or the shape of ``xyz`` is not valid.
    """
    if method not in GAP_METHODS:
        raise SettingsError(
            f"gap filling method {method!r} is not valid; use one of {list(GAP_METHODS)}",
            key="clean.gap_method",
            given=method,
            valid=list(GAP_METHODS),
        )
    rate = checks.rate(rate)
    if not np.isfinite(max_gap_s) or max_gap_s < 0:
        raise SettingsError(
            f"max_gap_s {max_gap_s!r} is not valid; give a duration in seconds >= 0",
            key="clean.max_gap_s",
            given=max_gap_s,
            valid="a duration in seconds >= 0",
        )
    data = np.array(xyz, dtype=float)
    if data.ndim not in (2, 3):
        raise InputError(
            f"positions have shape {data.shape}; expected (frames, markers, 3) or (frames, k)",
            given=data.shape,
            valid="(frames, markers, 3) or (frames, k)",
        )
    work = data.reshape(data.shape[0], data.shape[1], -1)  # a view: (frames, markers, coordinates)
    n_frames = work.shape[0]
    max_frames = int(np.floor(max_gap_s * rate + 1e-9))
    report = GapReport(method, max_frames, n_frames)
    frames = np.arange(n_frames)

    present_all = np.isfinite(work).all(axis=2)
    for marker in np.flatnonzero(~present_all.all(axis=0)):
        present = present_all[:, marker]
        todo = []
        for start, stop in runs_of(~present):
            length = int(stop - start)
            if start > 0 and stop < n_frames and length <= max_frames:
                todo.append(np.arange(start, stop))
            else:
                report.open.append((int(marker), int(start), length))
        work[~present, marker] = np.nan
        if todo:
            at = np.concatenate(todo)
            known = frames[present]
            if method == "pchip":
                curve = PchipInterpolator(known, work[present, marker], axis=0)
            else:
                curve = make_interp_spline(known, work[present, marker], k=1, axis=0)
            work[at, marker] = curve(at)
            report.filled += len(todo)
            report.filled_frames += len(at)
    return data, report


class StreamingGapFiller:
    """Bridges short gaps of markers, one frame at a time.

    A marker is missing in a frame when any of its coordinates is NaN. A
    missing marker is bridged for at most ``max_hold_frames`` frames after
    its last measured frame, by one of:

    - ``"hold"``: its last measured position;
    - ``"extrapolate"``: the straight line through its last two measured
      positions (the last one held when it has only one);
    - with ``lookahead`` L > 0, a gap of at most L frames (and at most
      ``max_hold_frames``) is filled by linear interpolation between the
      measured frames on either side. Every frame is output L frames late,
      which adds ``L / rate`` of delay.

    Beyond ``max_hold_frames`` the marker is output as NaN (missing) until it
    is measured again. Extrapolation and interpolation count frames, so they
    assume frames at the nominal rate.

    Parameters
    ----------
    n_markers
        Markers per frame; frames are ``(n_markers, 3)``.
    rate
        Frame rate in Hz.
    max_hold_frames
        Most frames a missing marker is bridged.
    lookahead
        Frames of look-ahead (and of delay) for interpolation; 0 for none.
    method
        ``"hold"`` or ``"extrapolate"``, for gaps not interpolated.

    Attributes
    ----------
    n_bridged
        Marker-frames bridged (held, extrapolated or interpolated).
    n_missing
        Marker-frames output as missing.
    n_lost
        Times a marker was marked missing: its gap outlasted the bridge, or
        it was missing from the start.

    Raises
    ------
    KinestreamError
        If an argument is not valid; the message says what is.
    """

    def __init__(
        self, n_markers: int, rate: float, max_hold_frames: int, lookahead: int = 0, method: str = "hold"
    ) -> None:
        if method not in HOLD_METHODS:
            raise SettingsError(
                f"gap bridging method {method!r} is not valid; use one of {list(HOLD_METHODS)}",
                key="clean.hold_method",
                given=method,
                valid=list(HOLD_METHODS),
            )
        self.shape = frame_shape((n_markers, 3))
        self.n_markers = self.shape[0]
        self.rate = checks.rate(rate)
        self.max_hold_frames = check_count("max_hold_frames", max_hold_frames, "a number of frames")
        self.lookahead = check_count("lookahead", lookahead, "a number of frames")
        self.method = method
        self.reset()

    def reset(self) -> None:
        """Forget every marker and drop the frames waiting in the look-ahead buffer."""
        n = self.n_markers
        self._buf = np.full((self.lookahead + 1, n, 3), np.nan)
        self._buf_t = np.zeros(self.lookahead + 1)
        self._buf_tag: list[object] = []  # the tags of the frames in the buffer, oldest first
        self._count = 0  # frames in the buffer
        # last two measured positions; before any, zeros long ago, so that a marker measured only
        # once extrapolates with a slope of about x / 2**62, which holds its position
        self._last = np.zeros((n, 3))
        self._last_frame = np.full(n, NEVER, dtype=np.int64)
        self._prev = np.zeros((n, 3))
        self._prev_frame = np.full(n, NEVER - 1, dtype=np.int64)
        self._was_missing = np.zeros(n, dtype=bool)  # in the previous output
        self._ones3 = np.ones(3)
        self._ones = np.ones(3 * n)  # a dot product with it is NaN when any coordinate is
        self._markers = np.arange(n)
        self.frame = 0  # frames output so far
        self.n_bridged = 0
        self.n_missing = 0
        self.n_lost = 0

    def delay_ms(self, freq_hz: float | None = None) -> float:
        """Delay added by the look-ahead, in ms (the same at every frequency ``freq_hz``)."""
        return 1000.0 * self.lookahead / self.rate

    def counts(self) -> dict[str, int]:
        """The counters, by name."""
        return {"bridged": self.n_bridged, "missing": self.n_missing, "lost": self.n_lost}

    def push(self, xyz: np.ndarray, t: float) -> tuple[np.ndarray, float] | None:
        """Take one frame; give back the frame ``lookahead`` frames older, bridged.

        Parameters
        ----------
        xyz
            Marker positions, ``(n_markers, 3)``, NaN where missing.
        t
            Time of the frame, passed through with it.

        Returns
        -------
        tuple[np.ndarray, float] or None
            The bridged frame (a new array) and its time, or None while the
            look-ahead buffer fills.

        Raises
        ------
        KinestreamError
            If the frame does not have the shape ``(n_markers, 3)``.
        """
        got = self.push_tagged(xyz, t, None)
        return None if got is None else got[:2]

    def push_tagged(self, xyz: np.ndarray, t: float, tag: object) -> tuple[np.ndarray, float, object] | None:
        """:meth:`push` with an opaque ``tag`` that comes back with its frame.

        The tag is a live frame's sequence number and arrival time, say, so that a caller needs no record of its own of
        what the look-ahead holds.
        """
        x = np.asarray(xyz, dtype=float)
        if x.shape != self.shape:
            raise InputError(
                f"frame has shape {x.shape}; this gap filler takes frames of shape {self.shape}",
                given=x.shape,
                valid=self.shape,
            )
        if self.lookahead == 0:
            return self._emit(x.copy(), None), float(t), tag
        self._buf[self._count] = x
        self._buf_t[self._count] = t
        self._buf_tag.append(tag)
        self._count += 1
        if self._count <= self.lookahead:
            return None
        return self._pop()

    def flush(self) -> list[tuple[np.ndarray, float]]:
        """Give back the frames still in the look-ahead buffer, bridged with the look-ahead there is."""
        return [got[:2] for got in self.flush_tagged()]

    def flush_tagged(self) -> list[tuple[np.ndarray, float, object]]:
        """:meth:`flush`, each frame with its tag."""
        out = []
        while self._count:
            out.append(self._pop())
        return out

    def _pop(self) -> tuple[np.ndarray, float, object]:
        frame = self._emit(self._buf[0].copy(), self._buf[1 : self._count])
        t = float(self._buf_t[0])
        self._buf[:-1] = self._buf[1:]
        self._buf_t[:-1] = self._buf_t[1:]
        self._count -= 1
        return frame, t, self._buf_tag.pop(0)

    def _emit(self, x: np.ndarray, ahead: np.ndarray | None) -> np.ndarray:
        """Bridge the frame ``x`` (a copy, changed and returned); ``ahead`` holds the frames after it."""
        k = self.frame
        self.frame = k + 1
        if math.isfinite(self._ones @ x.reshape(-1)):  # every marker measured
            self._prev, self._last = self._last, self._prev
            self._prev_frame, self._last_frame = self._last_frame, self._prev_frame
            np.copyto(self._last, x)
            self._last_frame[:] = k
            self._was_missing[:] = False
            return x
        measured = np.isfinite(x @ self._ones3)
        missing = np.flatnonzero(~measured)
        if len(missing) <= self.few_missing:
            n_bridged, lost = self._bridge_each(x, missing.tolist(), ahead, k)
        else:
            n_bridged, lost = self._bridge_all(x, measured, ahead, k)
        self.n_bridged += n_bridged
        self.n_missing += int(np.count_nonzero(lost))
        self.n_lost += int(np.count_nonzero(lost & ~self._was_missing))
        self._was_missing = lost
        np.copyto(self._prev, self._last, where=measured[:, None])
        np.copyto(self._prev_frame, self._last_frame, where=measured)
        np.copyto(self._last, x, where=measured[:, None])
        np.copyto(self._last_frame, k, where=measured)
        return x

    #: Up to this many missing markers in a frame are bridged one by one; more, with whole-array steps.
    #: Both give the same numbers; each is the cheaper on its side of the threshold.
    few_missing = 8

    def _bridge_each(
        self, x: np.ndarray, missing: list[int], ahead: np.ndarray | None, k: int
    ) -> tuple[int, np.ndarray]:
        """Bridge the ``missing`` markers of frame ``k`` in ``x`` one at a time; return (bridged, lost mask)."""
        hold = self.max_hold_frames
        short = min(self.lookahead, hold)  # longest gap to interpolate
        seen = None
        bridged = 0
        lost = np.zeros(self.n_markers, dtype=bool)
        for i in missing:
            last_frame = int(self._last_frame[i])
            since = k - last_frame
            if since > hold:
                lost[i] = True
                continue
            bridged += 1
            last = self._last[i]
            if ahead is not None and len(ahead) and since <= short:
                if seen is None:
                    seen = np.isfinite(ahead @ self._ones3).T.tolist()  # per marker, per frame ahead
                if True in seen[i]:
                    offset = seen[i].index(True) + 1
                    if since + offset - 1 <= short:
                        x[i] = last + (since / (since + offset)) * (ahead[offset - 1, i] - last)
                        continue
            if self.method == "extrapolate":
                x[i] = last + (last - self._prev[i]) * (since / (last_frame - int(self._prev_frame[i])))
            else:
                x[i] = last
        if len(missing) > bridged:
            x[lost] = np.nan
        return bridged, lost

    def _bridge_all(
        self, x: np.ndarray, measured: np.ndarray, ahead: np.ndarray | None, k: int
    ) -> tuple[int, np.ndarray]:
        """Bridge every missing marker of frame ``k`` in ``x`` with whole-array steps; return (bridged, lost mask)."""
        last = self._last
        since = k - self._last_frame  # frames since the last measurement (huge if never)
        bridge = since <= self.max_hold_frames
        bridge &= ~measured
        n_bridged = int(np.count_nonzero(bridge))
        if n_bridged and self.method == "extrapolate":
            guess = last + (last - self._prev) * (since / (self._last_frame - self._prev_frame))[:, None]
        else:
            guess = last
        if n_bridged and ahead is not None and len(ahead):
            offset = np.isfinite(ahead @ self._ones3).argmax(axis=0)  # first measured frame ahead (0 if none)
            after = ahead[offset, self._markers]
            offset += 1
            interp = np.isfinite(after @ self._ones3)
            interp &= bridge
            interp &= since + offset - 1 <= min(self.lookahead, self.max_hold_frames)  # the whole gap is short
            if np.count_nonzero(interp):
                frac = (since / (since + offset))[:, None]
                guess = np.where(interp[:, None], last + frac * (after - last), guess)
        lost = ~measured
        lost &= ~bridge
        if n_bridged:
            np.copyto(x, guess, where=bridge[:, None])
        np.copyto(x, np.nan, where=lost[:, None])
        return n_bridged, lost
