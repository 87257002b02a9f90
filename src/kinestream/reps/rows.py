"""A rep's frames as the counter keeps them, and what is taken from them when the rep is over.

One row a frame: time, knee and hip angles, the frame's measures. Taken when the rep is over: the zero-lag low-pass
(:func:`smooth_rows`), the seat-off (:func:`seat_off`) and the rep's event (:func:`rep_event`).

The bottom is the frame of greatest knee flexion (sit-to-stand: the seat-off).
With ``smooth_hz`` > 0 the rep's frames are low-passed (zero lag: the rep is
over when it is measured) before the peaks and the bottom are taken, so
single-frame noise does not inflate the depth.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from kinestream.reps.events import RepEvent, cues_for
from kinestream.settings import CueSettings, RepSettings

# Columns of a rep's frame buffer.
_T, _KR, _KL, _HR, _HL, _HEIGHT, _VR, _VL, _LEAN, _TORSO = range(10)


def smooth_rows(rows: np.ndarray, cutoff_hz: float) -> np.ndarray:
    """Zero-lag 2nd-order Butterworth low-pass of every finite column (time column kept).

    The filter runs on the time stamps, not the frame count: frames the
    service skipped (latest wins) leave holes, so the rows are put on an even
    grid at the usual frame interval first and brought back to their own
    times after.
    """
    if cutoff_hz <= 0 or len(rows) < 16:
        return rows
    t = rows[:, _T]
    dt = np.diff(t)
    step = float(np.median(dt))
    rate = 1.0 / step
    if not (math.isfinite(rate) and cutoff_hz < 0.45 * rate) or np.any(dt <= 0):
        return rows
    even = bool(np.all(np.abs(dt - step) <= 0.01 * step))
    grid = t if even else np.arange(t[0], t[-1] + 0.5 * step, step)
    from scipy.signal import butter, filtfilt  # here, not at import: the command line starts faster

    try:
        b, a = butter(2, cutoff_hz / (0.5 * rate))
        out = rows.copy()
        for col in range(1, rows.shape[1]):
            if np.isfinite(rows[:, col]).all():
                values = rows[:, col] if even else np.interp(grid, t, rows[:, col])
                smooth = filtfilt(b, a, values, padtype="odd", padlen=min(len(grid) - 1, 15))
                out[:, col] = smooth if even else np.interp(t, grid, smooth)
    except ValueError:  # a rep too odd to filter (it cannot raise into the stream): measured unsmoothed
        return rows
    return out


def seat_off(rows: np.ndarray, knee: np.ndarray, settings: RepSettings) -> tuple[int, float]:
    """(frame of the seat-off, time the athlete reached the seat) of a rep's smoothed frames.

    The seated level is the greatest knee flexion in the last seated_hold_s before the knees last left
    seated_knee_deg; the seat-off is the last frame within seated_still_deg of it, and the seat was reached
    where the frames before it leave that band.
    """
    s = settings
    t = rows[:, _T]
    high = np.flatnonzero(knee >= s.seated_knee_deg)
    last = int(high[-1]) if len(high) else int(np.argmax(knee))
    window = (t >= t[last] - s.seated_hold_s) & (np.arange(len(t)) <= last)
    band = knee >= float(knee[window].max()) - s.seated_still_deg
    off = int(np.flatnonzero(band)[-1])
    first = off
    while first > 0 and band[first - 1]:
        first -= 1
    return off, float(t[first])


def rep_event(
    rows: np.ndarray,
    knee: np.ndarray,
    b: int,
    start: float,
    end: float,
    *,
    index: int,
    settings: RepSettings,
    cues: CueSettings,
    kind: str = "squat",
    descent: float | None = math.nan,
    seated: float | None = None,
    complete: bool = True,
    reason: str | None = None,
) -> RepEvent:
    """The event, numbered ``index`` and with its cues, of a rep's (smoothed) frames with its bottom at frame ``b``.

    ``descent``: NaN for bottom minus start.
    """

    def peak_of(col):
        v = rows[:, col]
        return float(np.nanmax(v)) if np.isfinite(v).any() else None

    def at_bottom(col):
        v = float(rows[b, col])
        return v if math.isfinite(v) else None

    bottom = float(rows[b, _T])
    height = rows[:, _HEIGHT]
    lowest = float(np.nanmin(height)) if np.isfinite(height).any() else None
    peak = float(knee.max())
    event = RepEvent(
        index=index,
        start=start,
        bottom=bottom,
        end=end,
        descent_s=bottom - start if descent is not None and math.isnan(descent) else descent,
        ascent_s=end - bottom,
        knee_peak=peak,
        knee_peak_r=float(np.max(rows[:, _KR])),
        knee_peak_l=float(np.max(rows[:, _KL])),
        hip_peak_r=peak_of(_HR),
        hip_peak_l=peak_of(_HL),
        deep_enough=bool(peak >= settings.deep_knee_deg),
        knee_asymmetry_deg=float(rows[b, _KR] - rows[b, _KL]),
        below_parallel=None if lowest is None else bool(lowest < 0.0),
        hip_above_knee_cm=lowest,
        knee_valgus_cm_r=at_bottom(_VR),
        knee_valgus_cm_l=at_bottom(_VL),
        trunk_lean_deg=at_bottom(_LEAN),
        kind=kind,
        complete=complete,
        reason=reason,
        seated_s=seated,
        torso_frame_lean_deg=at_bottom(_TORSO),
    )
    return replace(event, cues=cues_for(event, cues))
