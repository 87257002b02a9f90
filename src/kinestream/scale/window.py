"""Where the person stood still and upright.

The posture of each frame and the stillest upright window (:func:`find_static_window`), or a given one
(:func:`parse_static`). See :mod:`kinestream.scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d

from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable

# Upright: how far from extension the joints may be, in degrees.
UPRIGHT_KNEE_DEG = 20.0
UPRIGHT_HIP_DEG = 25.0
UPRIGHT_TRUNK_DEG = 25.0

THRESHOLD_STEP_MM = 1.0
WINDOW_STEP_S = 0.1

# Joint centres from the augmented markers, else from the keypoints.
_HIP = {"r": [("RHJC_study",), ("RHip",)], "l": [("LHJC_study",), ("LHip",)]}
_KNEE = {
    "r": [("r_knee_study", "r_mknee_study"), ("r_knee_study",), ("RKnee",)],
    "l": [("L_knee_study", "L_mknee_study"), ("L_knee_study",), ("LKnee",)],
}
_ANKLE = {
    "r": [("r_ankle_study", "r_mankle_study"), ("r_ankle_study",), ("RAnkle",)],
    "l": [("L_ankle_study", "L_mankle_study"), ("L_ankle_study",), ("LAnkle",)],
}
_PELVIS = [
    ("MidHip",),
    ("midHip",),
    ("RHJC_study", "LHJC_study"),
    ("r.ASIS_study", "L.ASIS_study", "r.PSIS_study", "L.PSIS_study"),
    ("RHip", "LHip"),
]
_SHOULDERS = [("r_shoulder_study", "L_shoulder_study"), ("RShoulder", "LShoulder"), ("Neck",), ("C7_study",)]
_UP = np.array([0.0, 1.0, 0.0])


@dataclass
class StaticWindow:
    """A stretch of the trial where the person stood still and upright.

    ``start``/``stop`` are frame indices (``stop`` exclusive); ``t0``/``t1`` the
    times of the first and last frame. ``threshold_mm`` is the stillness
    threshold that found it (None when the range was given), ``motion_mm`` the
    largest peak-to-peak excursion of any marker relative to the pelvis in it.
    """

    start: int
    stop: int
    t0: float
    t1: float
    threshold_mm: float | None
    window_s: float
    motion_mm: float
    description: str

    @property
    def n_frames(self) -> int:
        """The number of frames of the window."""
        return self.stop - self.start

    def __str__(self) -> str:
        """The window in words, for notes and logs."""
        return self.description


# ---------------------------------------------------------------- posture --


def _centre(table: MarkerTable, groups) -> np.ndarray:
    """Mean of the first group of markers the table has, frame by frame; later groups fill its gaps."""
    out = np.full((table.n_frames, 3), np.nan)
    for group in groups:
        if all(n in table for n in group):
            pts = np.stack([table.get(n) for n in group])
            with np.errstate(invalid="ignore"):
                value = pts.mean(axis=0)  # NaN when any member is missing
            out = np.where(np.isnan(out), value, out)
    return out


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors a and b, row by row, in degrees (NaN where undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@dataclass
class Posture:
    """Per-frame flexion from the markers, degrees; NaN where the markers are missing."""

    knee: np.ndarray  # the more flexed knee
    hip: np.ndarray  # the more flexed (or extended) hip
    trunk: np.ndarray  # trunk tilt from vertical

    @property
    def flexion(self) -> np.ndarray:
        """The larger of hip and knee flexion, for ranking frames from straight to bent."""
        with np.errstate(invalid="ignore"):
            return np.fmax(self.knee, self.hip)

    def upright(self) -> np.ndarray:
        """Frames near standing; a criterion the markers cannot measure at all is not applied."""
        ok = np.ones(self.knee.shape, dtype=bool)
        for values, limit in (
            (self.knee, UPRIGHT_KNEE_DEG),
            (self.hip, UPRIGHT_HIP_DEG),
            (self.trunk, UPRIGHT_TRUNK_DEG),
        ):
            if np.isfinite(values).any():
                with np.errstate(invalid="ignore"):
                    ok &= values <= limit
        return ok


def posture(table: MarkerTable) -> Posture:
    """Knee and hip flexion and trunk tilt of every frame, from joint-centre markers."""
    pelvis = _centre(table, _PELVIS)
    shoulders = _centre(table, _SHOULDERS)
    trunk_down = pelvis - shoulders
    knees, hips = [], []
    for side in ("r", "l"):
        hip = _centre(table, _HIP[side])
        knee = _centre(table, _KNEE[side])
        ankle = _centre(table, _ANKLE[side])
        thigh = knee - hip
        knees.append(_angle_deg(thigh, ankle - knee))
        hips.append(_angle_deg(thigh, trunk_down))
    with np.errstate(invalid="ignore"):
        return Posture(np.fmax(*knees), np.fmax(*hips), _angle_deg(-trunk_down, _UP[None, :]))


def pelvis_centre(table: MarkerTable) -> np.ndarray:
    """MidHip (or midHip), else the mean of the hip joint centres, else of the ASIS/PSIS, else of RHip/LHip."""
    if not any(all(n in table for n in group) for group in _PELVIS):
        raise InputError(
            f"the marker table has no pelvis markers to measure stillness against; it needs MidHip, or "
            f"RHJC_study and LHJC_study, or the four ASIS/PSIS _study markers, or RHip and LHip "
            f"(it has {table.names[:12]}{' ...' if len(table.names) > 12 else ''})",
            given=table.names,
            valid=[list(group) for group in _PELVIS],
        )
    return _centre(table, _PELVIS)


# ---------------------------------------------------------- static window --


def _steps(span, step: float, what: str, unit: str) -> list[float]:
    """Values from span[0] to span[1] in steps of ``step`` (up or down), both ends included."""
    try:
        first, last = (float(v) for v in span)
    except (TypeError, ValueError):
        raise SettingsError(
            f"{what} {span!r} is not a pair of numbers; give (first, last) in {unit}",
            key=what,
            given=span,
            valid=f"(first, last) in {unit}",
        ) from None
    if not (math.isfinite(first) and math.isfinite(last) and first > 0 and last > 0):
        raise SettingsError(
            f"{what} {span!r} must be two positive numbers in {unit}",
            key=what,
            given=span,
            valid=f"two positive numbers in {unit}",
        )
    n = int(math.floor(abs(last - first) / step + 1e-9))
    sign = 1.0 if last >= first else -1.0
    values = [round(first + sign * k * step, 9) for k in range(n + 1)]
    if abs(values[-1] - last) > 1e-9:
        values.append(last)
    return values


def _rate(table: MarkerTable) -> float:
    if table.rate and math.isfinite(table.rate) and table.rate > 0:
        return float(table.rate)
    if table.n_frames > 1:
        dt = np.median(np.diff(table.time))
        if dt > 0:
            return 1.0 / float(dt)
    raise InputError(
        f"the marker table's frame rate {table.rate!r} is not usable; give a positive rate",
        key="rate",
        given=table.rate,
        valid="a positive rate",
    )


def _default_still_markers(table: MarkerTable) -> list[str]:
    study = [n for n in table.names if n.endswith("_study")]
    return study or list(table.names)


def _window_motion(rel: np.ndarray, n: int) -> np.ndarray:
    """For every window of n frames (by first frame): the largest per-axis peak-to-peak of any marker."""
    half = n // 2
    count = rel.shape[0] - n + 1
    hi = maximum_filter1d(rel, size=n, axis=0, mode="nearest")[half : half + count]
    lo = minimum_filter1d(rel, size=n, axis=0, mode="nearest")[half : half + count]
    return (hi - lo).max(axis=(1, 2))


def _describe_posture(post: Posture, sl: slice) -> str:
    parts = []
    for label, values in (("knees", post.knee), ("hips", post.hip)):
        v = values[sl]
        if np.isfinite(v).any():
            parts.append(f"{label} within {np.nanmax(v):.0f} deg of extension")
    v = post.trunk[sl]
    if np.isfinite(v).any():
        parts.append(f"trunk {np.nanmax(v):.0f} deg from vertical")
    return ", ".join(parts) if parts else "posture not measurable from these markers"


def parse_static(spec) -> str | tuple[float, float]:
    """'auto' or 'START:END' (seconds) -> 'auto' or (start, end)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return "auto"
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        start, end = spec
    else:
        try:
            start, end = (float(x) for x in str(spec).split(":"))
        except ValueError:
            raise SettingsError(
                f"static range {spec!r} is not valid; give START:END in seconds, e.g. 0.5:1.5, or 'auto'",
                key="scale.static",
                given=spec,
                valid="START:END in seconds, or 'auto'",
            ) from None
    if not end > start:
        raise SettingsError(
            f"static range {start}:{end} is empty; END must be after START",
            key="scale.static",
            given=(start, end),
            valid="END after START",
        )
    return float(start), float(end)


def find_static_window(
    table: MarkerTable, thresholds_mm=(3.0, 15.0), windows_s=(1.0, 0.1), *, markers: list[str] | None = None
) -> StaticWindow | None:
    """The stillest upright window by OpenCap's rule, or None when the person never stood still.

    ``thresholds_mm`` is (strictest, loosest), tried in 1 mm steps;
    ``windows_s`` is (longest, shortest), tried in 0.1 s steps; for each
    window length every threshold is tried before a shorter window.
    ``markers`` are those whose stillness counts (default: every
    ``_study`` marker, or every marker when there are none); markers missing
    in most of the trial are ignored, and a frame where any counted marker is
    missing cannot be part of a window.
    """
    thresholds = sorted(_steps(thresholds_mm, THRESHOLD_STEP_MM, "thresholds_mm", "millimetres"))
    windows = sorted(_steps(windows_s, WINDOW_STEP_S, "windows_s", "seconds"), reverse=True)
    if table.n_frames == 0:
        return None
    rate = _rate(table)
    centre = pelvis_centre(table)
    names = [n for n in (markers if markers is not None else _default_still_markers(table)) if n in table]
    finite_share = {n: np.isfinite(table.get(n)).all(axis=1).mean() for n in names}
    names = [n for n in names if finite_share[n] >= 0.5]
    if not names:
        return None
    rel = (table.xyz[:, [table.index(n) for n in names]] - centre[:, None, :]) * 1000.0  # mm
    usable = np.isfinite(rel).all(axis=(1, 2))
    post = posture(table)
    usable &= post.upright()
    rel = np.where(np.isfinite(rel), rel, 0.0)
    bad = np.concatenate([[0], np.cumsum(~usable)])

    motion: dict[float, tuple[int, np.ndarray, np.ndarray]] = {}
    for w in windows:
        n = int(round(w * rate)) + 1
        if n > table.n_frames or n < 2:
            continue
        starts_ok = (bad[n:] - bad[:-n]) == 0
        motion[w] = (n, _window_motion(rel, n), starts_ok)

    # A long window at a looser threshold beats a brief pause at a strict one:
    # a 0.1 s lull at the top of a squat is no static pose.
    for w in windows:
        if w not in motion:
            continue
        n, m, ok = motion[w]
        for thr in thresholds:
            candidates = np.flatnonzero(ok & (m < thr))
            if candidates.size == 0:
                continue
            start = int(candidates[np.argmin(m[candidates])])  # stillest; earliest on ties
            stop = start + n
            t0, t1 = float(table.time[start]), float(table.time[stop - 1])
            moved = float(m[start])
            text = (
                f"static pose: frames {start}-{stop - 1} ({t0:.2f}-{t1:.2f} s, {t1 - t0:.2f} s), the "
                f"stillest window where every marker stayed within {thr:g} mm relative to the pelvis "
                f"(at most {moved:.1f} mm); {_describe_posture(post, slice(start, stop))}"
            )
            return StaticWindow(start, stop, t0, t1, thr, round((n - 1) / rate, 6), moved, text)
    return None


def _given_window(table: MarkerTable, static, markers: list[str], loosest_mm: float = 15.0) -> StaticWindow:
    """The window of a given (start, end) range in seconds, checked against the trial."""
    try:
        t0, t1 = (float(v) for v in static)
    except (TypeError, ValueError):
        raise SettingsError(
            f"static {static!r} is not valid; give 'auto' or (start, end) in seconds",
            key="scale.static",
            given=static,
            valid="'auto' or (start, end) in seconds",
        ) from None
    first, last = float(table.time[0]), float(table.time[-1])
    tol = 0.5 / _rate(table)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 < t0:
        raise SettingsError(
            f"static range {t0}-{t1} s is not valid; give start < end in seconds, or 'auto'",
            key="scale.static",
            given=(t0, t1),
            valid="start < end in seconds, or 'auto'",
        )
    if t0 < first - tol or t1 > last + tol:
        raise SettingsError(
            f"static range {t0:g}-{t1:g} s is outside the trial, which spans {first:.3f}-"
            f"{last:.3f} s; give a range inside it, or 'auto' to find the still pose",
            key="scale.static",
            given=(t0, t1),
            valid=(first, last),
        )
    idx = np.flatnonzero((table.time >= t0 - 1e-9) & (table.time <= t1 + 1e-9))
    if idx.size == 0:
        raise SettingsError(
            f"static range {t0:g}-{t1:g} s holds no frame (frames are {1 / _rate(table):.4f} s apart); widen it",
            key="scale.static",
            given=(t0, t1),
            valid="a range that holds a frame",
        )
    start, stop = int(idx[0]), int(idx[-1]) + 1
    sub = table.frames(start, stop)
    names = [n for n in markers if n in table and np.isfinite(sub.get(n)).all()]
    moved = float("nan")
    if names and stop - start > 1:
        rel = sub.xyz[:, [sub.index(n) for n in names]] - pelvis_centre(sub)[:, None, :]
        if np.isfinite(rel).all():
            moved = float(np.ptp(rel, axis=0).max() * 1000.0)
    elif stop - start == 1:
        moved = 0.0
    post = posture(sub)
    text = (
        f"static pose: frames {start}-{stop - 1} ({table.time[start]:.2f}-{table.time[stop - 1]:.2f} s) as "
        f"given; markers moved up to {moved:.1f} mm relative to the pelvis; "
        f"{_describe_posture(post, slice(None))}"
    )
    if not post.upright().all():
        text += (
            "; warning: the pose is not upright in every frame of this range (knees, hips or trunk far from "
            "standing), so the scale factors may be off"
        )
    if moved > loosest_mm:
        text += f"; warning: markers move more than {loosest_mm:g} mm in this range, so the scale factors may be off"
    return StaticWindow(
        start,
        stop,
        float(table.time[start]),
        float(table.time[stop - 1]),
        None,
        float(table.time[stop - 1] - table.time[start]),
        moved,
        text,
    )


def static_window(
    markers: MarkerTable, static, thresholds_mm, windows_s, still_markers: list[str]
) -> StaticWindow | None:
    """The window to scale from: the stillest upright one, or the range given, checked for stillness.

    The stillest upright one for ``static`` "auto" (:func:`find_static_window`; None when the person never stood still),
    or the (start, end) range in seconds given, checked for stillness against the loosest threshold. ``still_markers``:
    the markers whose stillness counts.
    """
    if isinstance(static, str):
        if static.strip().lower() != "auto":
            raise SettingsError(
                f"static {static!r} is not valid; give 'auto' or a (start, end) range in seconds",
                key="scale.static",
                given=static,
                valid="'auto' or (start, end) in seconds",
            )
        return find_static_window(markers, thresholds_mm, windows_s, markers=still_markers)
    if hasattr(static, "__len__") and len(static) == 2:
        loosest = max(_steps(thresholds_mm, THRESHOLD_STEP_MM, "thresholds_mm", "millimetres"))
        return _given_window(markers, static, still_markers, loosest)
    raise SettingsError(
        f"static {static!r} is not valid; give 'auto' or a (start, end) range in seconds",
        key="scale.static",
        given=static,
        valid="'auto' or (start, end) in seconds",
    )
