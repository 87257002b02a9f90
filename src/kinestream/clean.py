"""Gap filling and low-pass filtering of marker trajectories (offline stage).

Pure functions on arrays whose first axis is time:

- :func:`fill_gaps` interpolates short interior gaps (PCHIP or linear);
- :func:`butter_sos` designs a Butterworth filter as second-order sections,
  shared by the zero-lag offline filter and the causal streaming filter;
- :func:`lowpass` applies a zero-lag (forward-backward) Butterworth filter to
  every contiguous stretch of finite samples;
- :func:`residual_analysis` suggests a cutoff frequency with Winter's residual
  analysis;
- :func:`clean_table` runs gap filling then low-pass filtering on a
  :class:`~kinestream.files.trc.MarkerTable`.

Streaming stage (one frame at a time, causal, state carried between frames):

- :class:`StreamingLowpass` is a causal linear filter as second-order
  sections (the Butterworth filter, or the settled constant-velocity Kalman
  filter of :func:`kalman_cv_sos`) with outlier rejection and
  re-initialisation after long gaps;
- :class:`OneEuro` is the One Euro filter, whose cutoff rises with speed;
- :class:`StreamingGapFiller` bridges short gaps by holding, extrapolating,
  or (with a few frames of look-ahead) interpolating;
- :class:`StreamingCleaner` chains them for ``(markers, 3)`` frames
  (``design``: "one_euro", "kalman" or "butterworth").

A "signal" is one column of the data once every axis after time is
flattened: for ``(frames, markers, 3)`` the columns are ``m0.x, m0.y, m0.z,
m1.x, ...``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import signal
from scipy.interpolate import PchipInterpolator, make_interp_spline

from kinestream import checks
from kinestream.config import DEFAULTS, section
from kinestream.errors import KinestreamError
from kinestream.files.trc import MarkerTable

GAP_METHODS = ("pchip", "linear")
BTYPES = ("low", "high", "bandpass", "bandstop")


def runs_of(mask: np.ndarray) -> np.ndarray:
    """Start (inclusive) and stop (exclusive) of each run of True in a boolean vector, shape (runs, 2)."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return np.column_stack((np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


# --------------------------------------------------------------------------- gaps


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
        raise KinestreamError(f"gap filling method {method!r} is not valid; use one of {list(GAP_METHODS)}")
    rate = checks.rate(rate)
    if not np.isfinite(max_gap_s) or max_gap_s < 0:
        raise KinestreamError(f"max_gap_s {max_gap_s!r} is not valid; give a duration in seconds >= 0")
    data = np.array(xyz, dtype=float)
    if data.ndim not in (2, 3):
        raise KinestreamError(f"positions have shape {data.shape}; expected (frames, markers, 3) or (frames, k)")
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


# ------------------------------------------------------------------------ filters


def butter_sos(order: int, cutoff_hz: float | tuple[float, float], rate: float, btype: str = "low") -> np.ndarray:
    """Design a digital Butterworth filter as second-order sections.

    The same sections serve the offline zero-lag filter
    (:func:`scipy.signal.sosfiltfilt`) and a causal streaming filter
    (:func:`scipy.signal.sosfilt` with state carried from frame to frame,
    starting from :func:`scipy.signal.sosfilt_zi`).

    Parameters
    ----------
    order
        Filter order (positive integer) of a single pass.
    cutoff_hz
        Cutoff frequency in Hz (-3 dB point of a single pass); a pair
        ``(low, high)`` for ``"bandpass"`` and ``"bandstop"``.
    rate
        Sampling rate in Hz.
    btype
        ``"low"``, ``"high"``, ``"bandpass"`` or ``"bandstop"``.

    Returns
    -------
    np.ndarray
        Second-order sections, shape ``(sections, 6)``.

    Raises
    ------
    KinestreamError
        If a cutoff is not strictly between 0 and the Nyquist frequency
        ``rate / 2``, or if ``order``, ``rate`` or ``btype`` is not valid.
    """
    rate = checks.rate(rate)
    if btype not in BTYPES:
        raise KinestreamError(f"filter type {btype!r} is not valid; use one of {list(BTYPES)}")
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise KinestreamError(f"filter order {order!r} is not valid; give a positive integer such as 2 or 4")
    cutoffs = np.atleast_1d(np.asarray(cutoff_hz, dtype=float))
    wanted = 2 if btype in ("bandpass", "bandstop") else 1
    if cutoffs.shape != (wanted,):
        raise KinestreamError(f"a {btype} filter takes {wanted} cutoff frequency(ies); {cutoff_hz!r} was given")
    nyquist = rate / 2
    for fc in cutoffs:
        if not (0 < fc < nyquist):
            raise KinestreamError(
                f"cutoff {fc:g} Hz is not valid at {rate:g} Hz sampling; it must be above 0 and below "
                f"the Nyquist frequency {nyquist:g} Hz"
            )
    if wanted == 2 and not cutoffs[0] < cutoffs[1]:
        raise KinestreamError(f"band edges {cutoff_hz!r} must be given low first, then high")
    return signal.butter(int(order), cutoffs if wanted == 2 else cutoffs[0], btype=btype, fs=rate, output="sos")


def _padlen(sos: np.ndarray) -> int:
    """Samples of odd extension at each end: three filter lengths, as sosfiltfilt uses by default."""
    return 3 * (2 * len(sos) + 1)


def min_frames(order: int = 4) -> int:
    """Fewest consecutive finite frames :func:`lowpass` filters with full edge padding."""
    return _padlen(np.empty(((int(order) + 1) // 2, 6))) + 1


def lowpass(xyz: np.ndarray, rate: float, cutoff_hz: float, order: int = 4) -> np.ndarray:
    """Zero-lag low-pass Butterworth filter that steps over missing samples.

    The filter runs forward then backward (:func:`scipy.signal.sosfiltfilt`),
    so it adds no phase lag, but the passes multiply: the effective order is
    twice ``order`` and the gain at ``cutoff_hz`` is 1/2 (-6 dB) instead of
    the single-pass 1/sqrt(2) (-3 dB). Each contiguous run of finite samples
    of each signal is filtered on its own and NaN stays NaN. Runs shorter
    than the edge padding (``3 * (2 * sections + 1)`` samples) are filtered
    with a shorter padding, so their ends carry start-up transients.

    Parameters
    ----------
    xyz
        Data with time along the first axis, e.g. ``(frames, markers, 3)``.
    rate
        Sampling rate in Hz.
    cutoff_hz
        Cutoff frequency in Hz of a single pass.
    order
        Order of a single pass.

    Returns
    -------
    np.ndarray
        Filtered copy, same shape as ``xyz``.

    Raises
    ------
    KinestreamError
        If the cutoff is not valid (see :func:`butter_sos`), or if no signal
        has enough consecutive finite frames for the filter.
    """
    sos = butter_sos(order, cutoff_hz, rate)
    data = np.array(xyz, dtype=float)
    flat = data.reshape(data.shape[0], -1)  # a view: (frames, signals)
    finite = np.isfinite(flat)
    pad = _padlen(sos)
    runs = [runs_of(finite[:, j]) for j in range(flat.shape[1])]
    longest = max((int((r[:, 1] - r[:, 0]).max()) for r in runs if len(r)), default=0)
    if longest <= pad:
        raise KinestreamError(
            f"the trial is too short to filter: the longest stretch of frames with data is {longest} frames "
            f"(of {data.shape[0]} given); an order-{order} Butterworth filter needs at least {pad + 1}"
        )
    whole = finite.all(axis=0)
    if whole.any():
        flat[:, whole] = signal.sosfiltfilt(sos, flat[:, whole], axis=0, padlen=pad)
    for j in np.flatnonzero(~whole):
        for start, stop in runs[j]:
            flat[start:stop, j] = signal.sosfiltfilt(sos, flat[start:stop, j], padlen=min(pad, stop - start - 1))
    return data


# ----------------------------------------------------------------- residual analysis


@dataclass
class ResidualResult:
    """Outcome of :func:`residual_analysis`.

    Attributes
    ----------
    cutoffs
        Candidate cutoff frequencies in Hz, shape ``(n,)``.
    residuals
        RMS of data minus filtered data, shape ``(n, signals)``.
    fit_from_hz
        Lowest candidate used in the straight-line fit.
    noise_rms
        Intercept of the line at 0 Hz for each signal: the noise RMS estimate.
    signal_cutoffs
        Suggested cutoff of each signal in Hz (NaN for signals without data
        or without variation).
    median_hz
        Median of the finite ``signal_cutoffs``.
    suggested_hz
        ``median_hz`` clipped to ``limits``: the cutoff for the trial.
    limits
        Range the trial suggestion is clipped to, in Hz.
    """

    cutoffs: np.ndarray
    residuals: np.ndarray
    fit_from_hz: float
    noise_rms: np.ndarray
    signal_cutoffs: np.ndarray
    median_hz: float
    suggested_hz: float
    limits: tuple[float, float]


def residual_analysis(
    xyz: np.ndarray,
    rate: float,
    cutoffs: np.ndarray | None = None,
    order: int = 4,
    fit_from_hz: float | None = None,
    limits: tuple[float, float] = (2.0, 15.0),
) -> ResidualResult:
    """Suggest a low-pass cutoff with Winter's residual analysis.

    For every signal and candidate cutoff ``fc`` the residual is
    ``R(fc) = RMS(x - lowpass(x, fc))`` over the finite frames. Above the
    frequencies the movement occupies, the residual is filtered-out noise
    only and falls along a straight line; a least-squares line through the
    candidates at or above ``fit_from_hz`` is extended to 0 Hz, where its
    intercept estimates the noise RMS. A signal's cutoff is the frequency at
    which ``R(fc)`` first falls to that intercept (linear interpolation
    between candidates), so that the signal distortion let through equals
    the noise removed (Winter, *Biomechanics and Motor Control of Human
    Movement*, residual analysis).

    The trial-level suggestion is the median over all signals (every
    coordinate of every marker) of their cutoffs, which resists a few
    markers that are noisier or faster than the rest, clipped to ``limits``.

    Parameters
    ----------
    xyz
        Data with time along the first axis, e.g. ``(frames, markers, 3)``.
    rate
        Sampling rate in Hz.
    cutoffs
        Candidate cutoffs in Hz, increasing. Default: 1 Hz to ``0.4 * rate``
        in 0.5 Hz steps.
    order
        Order of a single pass of the filter (see :func:`lowpass`).
    fit_from_hz
        Lowest candidate in the noise line fit. Default: the middle of the
        candidate range (half-way between the first and last candidates).
    limits
        ``(low, high)`` range in Hz the trial suggestion is clipped to.

    Returns
    -------
    ResidualResult
        Residual curves, noise estimates and suggested cutoffs.

    Raises
    ------
    KinestreamError
        If there are fewer than 4 candidates, fewer than 2 in the fit, a
        candidate is invalid for ``rate``, or the data are too short to filter.
    """
    rate = checks.rate(rate)
    if cutoffs is None:
        cutoffs = np.arange(1.0, 0.4 * rate + 1e-9, 0.5)
    cutoffs = np.asarray(cutoffs, dtype=float)
    if cutoffs.ndim != 1 or len(cutoffs) < 4 or np.any(np.diff(cutoffs) <= 0):
        raise KinestreamError(
            f"residual analysis needs at least 4 increasing candidate cutoffs; got {cutoffs.tolist()} "
            f"(at {rate:g} Hz the default runs from 1 Hz to {0.4 * rate:g} Hz)"
        )
    if fit_from_hz is None:
        fit_from_hz = 0.5 * (cutoffs[0] + cutoffs[-1])
    fit = cutoffs >= fit_from_hz
    if fit.sum() < 2:
        raise KinestreamError(
            f"fit_from_hz {fit_from_hz:g} Hz leaves {int(fit.sum())} candidate(s) for the noise line; "
            f"give a value at or below {cutoffs[-2]:g} Hz"
        )

    data = np.asarray(xyz, dtype=float)
    flat = data.reshape(data.shape[0], -1)
    residuals = np.empty((len(cutoffs), flat.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-NaN signal: NaN is the wanted answer
        for i, fc in enumerate(cutoffs):
            diff = flat - lowpass(flat, rate, fc, order)
            residuals[i] = np.sqrt(np.nanmean(diff**2, axis=0))
        scale = np.nanmax(np.abs(flat), axis=0)
    # a signal without data, or constant (residual at rounding level), suggests nothing
    usable = np.isfinite(residuals[0]) & (residuals[0] > 1e-9 * scale)
    if not usable.any():
        raise KinestreamError(
            "residual analysis found no signal with data that varies; nothing to suggest a cutoff from"
        )

    _, intercept = np.polyfit(cutoffs[fit], np.nan_to_num(residuals[fit]), 1)
    signal_cutoffs = np.full(flat.shape[1], np.nan)
    for j in np.flatnonzero(usable):
        below = np.flatnonzero(residuals[:, j] <= intercept[j])
        if len(below) == 0:
            signal_cutoffs[j] = cutoffs[-1]
        elif below[0] == 0:
            signal_cutoffs[j] = cutoffs[0]
        else:
            k = below[0]  # R crosses the intercept between candidates k-1 and k
            r0, r1 = residuals[k - 1, j], residuals[k, j]
            signal_cutoffs[j] = cutoffs[k - 1] + (r0 - intercept[j]) / (r0 - r1) * (cutoffs[k] - cutoffs[k - 1])
    intercept[~usable] = np.nan
    median = float(np.median(signal_cutoffs[usable]))
    suggested = float(np.clip(median, *limits))
    return ResidualResult(
        cutoffs,
        residuals,
        float(fit_from_hz),
        intercept,
        signal_cutoffs,
        median,
        suggested,
        (float(limits[0]), float(limits[1])),
    )


# ------------------------------------------------------------------------- stage


@dataclass
class CleanReport:
    """What :func:`clean_table` did.

    Attributes
    ----------
    cutoff_hz
        Low-pass cutoff used, in Hz.
    auto
        True when the cutoff came from :func:`residual_analysis`.
    order
        Order of a single filter pass (the zero-lag filter doubles it).
    gaps
        Report of :func:`fill_gaps`.
    residual
        The residual analysis, when ``auto``.
    """

    cutoff_hz: float
    auto: bool
    order: int
    gaps: GapReport
    residual: ResidualResult | None = None


def clean_table(
    table: MarkerTable, cutoff_hz: float | str = 6.0, max_gap_s: float = 0.2, gap_method: str = "pchip", order: int = 4
) -> tuple[MarkerTable, CleanReport]:
    """Fill short gaps, then low-pass filter every marker with zero lag.

    Parameters
    ----------
    table
        Marker trajectories.
    cutoff_hz
        Cutoff in Hz, or ``"auto"`` to take the trial suggestion of
        :func:`residual_analysis` on the gap-filled data.
    max_gap_s
        Longest gap to fill, in seconds (see :func:`fill_gaps`).
    gap_method
        ``"pchip"`` or ``"linear"``.
    order
        Order of a single filter pass.

    Returns
    -------
    tuple[MarkerTable, CleanReport]
        The cleaned table (same markers and times) and what was done.

    Raises
    ------
    KinestreamError
        If an argument is not valid or the trial is too short to filter.
    """
    if isinstance(cutoff_hz, str) and cutoff_hz != "auto":
        raise KinestreamError(f"cutoff {cutoff_hz!r} is not valid; give a frequency in Hz or 'auto'")
    filled, gaps = fill_gaps(table.xyz, table.rate, max_gap_s, gap_method)
    residual = None
    if cutoff_hz == "auto":
        residual = residual_analysis(filled, table.rate, order=order)
        cutoff_hz = residual.suggested_hz
    smooth = lowpass(filled, table.rate, float(cutoff_hz), order)
    out = MarkerTable(table.names, smooth, table.time.copy(), table.rate, dict(table.meta))
    return out, CleanReport(float(cutoff_hz), residual is not None, int(order), gaps, residual)


# ------------------------------------------------------------------ streaming stage

HOLD_METHODS = ("hold", "extrapolate")
_NEVER = -(2**62)  # frame index of a sample that never came: any gap since then is "too long"


def _check_count(name: str, value, what: str) -> int:
    """A whole number >= 0, or a KinestreamError that says what was given."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise KinestreamError(f"{name} {value!r} is not valid; give {what} (a whole number >= 0)")
    return int(value)


def _frame_shape(shape) -> tuple[int, ...]:
    """Frame shape from a number of signals or a shape tuple."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool) else tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise KinestreamError(
            f"frame shape {shape!r} is not valid; give a number of signals such as 60, or a shape such as (20, 3)"
        )
    return tuple(int(d) for d in dims)


def _sos_step_matrix(sos: np.ndarray) -> np.ndarray:
    """One sample of a cascade of second-order sections, as a single matrix.

    Each section is a transposed direct-form II biquad with state ``(z0, z1)``,
    the form and state :func:`scipy.signal.sosfilt` uses. The whole cascade is
    linear in ``v = [z0 and z1 of every section, x]``, so one step is ``M @ v
    = [next z0 and z1 of every section, y]``: a single small matrix product
    for all signals at once.
    """
    n_sec = len(sos)
    size = 2 * n_sec + 1
    step = np.zeros((size, size))
    unit = np.eye(size)
    u = unit[-1]  # input of the current section, as coefficients over v
    for s, (b0, b1, b2, a0, a1, a2) in enumerate(sos):
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        y = b0 * u + unit[2 * s]
        step[2 * s] = b1 * u - a1 * y + unit[2 * s + 1]
        step[2 * s + 1] = b2 * u - a2 * y
        u = y
    step[-1] = u
    return step


def kalman_cv_sos(rate: float, accel: float, noise_m: float) -> np.ndarray:
    """The steady-state constant-velocity Kalman filter of a position, as second-order sections.

    Model: each coordinate moves at a velocity that changes by white
    acceleration of standard deviation ``accel`` (m/s^2, the discrete white
    noise acceleration model), and is measured with white noise of standard
    deviation ``noise_m`` (m). Its Kalman gain settles within a few frames;
    with the settled gain the filter is linear and time-invariant, so it runs
    on the same machinery as the Butterworth filter (steady-state start,
    missing points, outliers) and needs no per-point covariance. Unlike a
    low-pass filter it follows a constant velocity without lag; the price is
    less smoothing of noise at a given responsiveness.

    Returns the sections of the transfer function from a measured position to
    the filtered one (unit gain at 0 Hz).
    """
    from scipy.linalg import solve_discrete_are

    rate = checks.rate(rate)
    if not (np.isfinite(accel) and accel > 0 and np.isfinite(noise_m) and noise_m > 0):
        raise KinestreamError(
            f"Kalman accel {accel!r} m/s^2 and noise {noise_m!r} m are not valid; give both > 0, "
            f"e.g. accel 50 and noise 0.005"
        )
    dt = 1.0 / rate
    f = np.array([[1.0, dt], [0.0, 1.0]])
    h = np.array([[1.0, 0.0]])
    g = np.array([[0.5 * dt * dt], [dt]])
    q = accel**2 * (g @ g.T)
    r = np.array([[noise_m**2]])
    p = solve_discrete_are(f.T, h.T, q, r)  # the settled prior covariance
    k = p @ h.T / (h @ p @ h.T + r)[0, 0]
    a = (np.eye(2) - k @ h) @ f  # state after frame n from state after frame n-1 ...
    b = k  # ... and measurement n
    num, den = signal.ss2tf(a, b, h @ a, h @ b)  # output: the filtered position
    return signal.tf2sos(np.atleast_1d(np.squeeze(num)), den)


class OneEuro:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) for points, one frame at a time.

    A first-order low-pass whose cutoff rises with speed: ``min_cutoff_hz +
    beta * speed`` (speed in m/s, the point's 3D speed low-passed at
    ``d_cutoff_hz``). Still, it smooths hard (jitter); moving, it opens up
    (little lag). NaN points are output as NaN and their state is held; a
    point back after more than ``reinit_after_frames`` starts afresh at its
    new sample. Frames are ``(points, dim)``.
    """

    def __init__(
        self,
        shape,
        rate: float,
        min_cutoff_hz: float = 1.0,
        beta: float = 1.0,
        d_cutoff_hz: float = 1.0,
        reinit_after_frames: int | None = None,
    ) -> None:
        self.shape = _frame_shape(shape)
        self.rate = checks.rate(rate)
        for name, value in (("min_cutoff_hz", min_cutoff_hz), ("d_cutoff_hz", d_cutoff_hz)):
            if not (np.isfinite(value) and 0 < value < self.rate / 2):
                raise KinestreamError(
                    f"One Euro {name} {value!r} is not valid; give a frequency above 0 and "
                    f"below the Nyquist frequency {self.rate / 2:g} Hz"
                )
        if not (np.isfinite(beta) and beta >= 0):
            raise KinestreamError(f"One Euro beta {beta!r} is not valid; give a number >= 0 (s/m)")
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = float(min_cutoff_hz), float(beta), float(d_cutoff_hz)
        self.reinit_after_frames = (
            int(round(0.1 * self.rate))
            if reinit_after_frames is None
            else _check_count("reinit_after_frames", reinit_after_frames, "a number of frames")
        )
        self._alpha_d = self._alpha(self.d_cutoff_hz)
        self.reset()

    def _alpha(self, cutoff):
        return 1.0 / (1.0 + self.rate / (2.0 * np.pi * cutoff))

    def reset(self) -> None:
        points = self.shape[0]
        self._x = np.full(self.shape, np.nan)
        self._dx = np.zeros(self.shape)
        self._seen = np.full(points, _NEVER, dtype=np.int64)
        self.frame = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float).reshape(self.shape)
        k = self.frame
        self.frame += 1
        finite = np.isfinite(x).all(axis=1)
        fresh = finite & (k - self._seen > self.reinit_after_frames + 1)
        self._x[fresh] = x[fresh]
        self._dx[fresh] = 0.0
        go = finite & ~fresh
        if go.any():
            dx = (x[go] - self._x[go]) * self.rate
            self._dx[go] += self._alpha_d * (dx - self._dx[go])
            speed = np.linalg.norm(self._dx[go], axis=1)
            alpha = self._alpha(self.min_cutoff_hz + self.beta * speed)[:, None]
            self._x[go] += alpha * (x[go] - self._x[go])
        self._seen[finite] = k
        out = self._x.copy()
        out[~finite] = np.nan
        return out

    def delay_ms(self, speed: float = 0.5) -> float:
        """The delay (ms) of a point moving at ``speed`` m/s: a first-order filter's at the cutoff that speed opens.

        0.5 m/s is a keypoint's pace in a squat; still (speed 0) the delay is
        the most, at ``min_cutoff_hz``, where there is no movement to lag.
        """
        alpha = self._alpha(self.min_cutoff_hz + self.beta * float(speed))
        return float(1000.0 * (1.0 - alpha) / alpha / self.rate)


DESIGNS = ("butterworth", "kalman", "one_euro")  # the streaming filter's designs ([clean] streaming_filter)


class StreamingLowpass:
    """Causal low-pass Butterworth filter fed one frame at a time.

    The filter is :func:`butter_sos` run forward only, as second-order
    sections whose state is carried from frame to frame, for all signals at
    once. On finite data the output equals :func:`scipy.signal.sosfilt` over
    the whole recording with the same initial state. A causal filter delays
    the movement; :meth:`delay_ms` says by how much.

    The data are organised in points: a point is one row of the last axis of
    the frame (a marker's x, y, z for a ``(markers, 3)`` frame), or one
    signal when the frame is one-dimensional. For each point:

    - **Start.** The state starts at the steady state of the step response to
      the point's first finite sample (:func:`scipy.signal.sosfilt_zi` scaled
      by it), so a point at rest is output unchanged from its first frame,
      without a start-up transient.
    - **Missing.** A point with any NaN coordinate is output as NaN and its
      state is held. When it comes back after more than
      ``reinit_after_frames`` missing frames, the state starts again from the
      new sample, as at the start, instead of ringing from a stale state.
    - **Outliers.** A point that lands farther than ``max_jump`` from its
      last accepted sample (``max_jump`` per frame in between, counting
      missing frames but not rejected ones) is taken for a mis-triangulated
      or swapped keypoint: it is output as NaN for that frame and kept out
      of the state. When the jumps persist at a consistent new position
      (each within ``max_jump`` per frame of the previous rejected one) for
      more than ``max_outlier_frames`` frames, the new position is accepted
      and the state starts again from it: the subject truly moved or was
      re-identified.

    Parameters
    ----------
    shape
        Number of signals, or the shape of one frame such as ``(markers, 3)``.
    rate
        Frame rate in Hz.
    cutoff_hz
        Cutoff frequency in Hz (-3 dB).
    order
        Filter order.
    max_jump
        Largest accepted displacement of a point per frame, in the units of
        the data (metres for markers; 0.5 m per frame is 30 m/s at 60 Hz, far
        above any body segment). ``None`` turns outlier rejection off, as it
        should be for signals that are not positions in metres.
    max_outlier_frames
        Most consecutive frames a point is rejected as an outlier; the next
        one that stays at the new position is accepted.
    reinit_after_frames
        Longest run of missing frames across which a point's state is held;
        after a longer run it starts again from the new sample. Default: a
        tenth of a second of frames.

    Attributes
    ----------
    sos
        The second-order sections.
    frame
        Number of frames pushed so far.
    n_missing
        Point-frames that arrived missing (output NaN).
    n_outliers
        Point-frames rejected as outliers (output NaN).
    n_reinits
        Times a point's state started again after a long gap or at an
        accepted new position (the first start is not counted).

    Raises
    ------
    KinestreamError
        If an argument is not valid; the message says what is.
    """

    def __init__(
        self,
        shape,
        rate: float,
        cutoff_hz: float,
        order: int = 4,
        *,
        max_jump: float | None = 0.5,
        max_outlier_frames: int = 5,
        reinit_after_frames: int | None = None,
        sos: np.ndarray | None = None,
    ) -> None:
        self.shape = _frame_shape(shape)
        self.rate = checks.rate(rate)
        # another linear design (kalman_cv_sos) may replace the Butterworth one; it must pass 0 Hz unchanged
        self.sos = butter_sos(order, cutoff_hz, self.rate) if sos is None else np.atleast_2d(np.asarray(sos, float))
        self.cutoff_hz = float(cutoff_hz)
        self.order = int(order)
        if max_jump is not None:
            max_jump = float(max_jump)
            if not (np.isfinite(max_jump) and max_jump > 0):
                raise KinestreamError(
                    f"max_jump {max_jump!r} is not valid; give the largest displacement per frame (> 0, "
                    f"e.g. 0.5 m), or None to accept every sample"
                )
        self.max_jump = max_jump
        self.max_outlier_frames = _check_count("max_outlier_frames", max_outlier_frames, "a number of frames")
        if reinit_after_frames is None:
            reinit_after_frames = int(round(0.1 * self.rate))
        self.reinit_after_frames = _check_count("reinit_after_frames", reinit_after_frames, "a number of frames")
        self._points = int(np.prod(self.shape[:-1])) if len(self.shape) > 1 else self.shape[0]
        self._dim = self.shape[-1] if len(self.shape) > 1 else 1
        self._step = _sos_step_matrix(self.sos)
        self._zi = signal.sosfilt_zi(self.sos).reshape(-1)  # state for a unit step, same order as _step
        self._ones = np.ones(int(np.prod(self.shape)))  # a dot product with it is NaN when any sample is
        self._ones_dim = np.ones(self._dim)  # the same for each point
        self._max_jump2 = np.inf if max_jump is None else max_jump**2
        self.reset()

    def reset(self) -> None:
        """Forget every point: the next frame starts the filter again."""
        size = len(self._step)
        self._v = np.zeros((size, self._points, self._dim))  # state rows, then the input row
        self._w = np.empty_like(self._v)
        self._v2 = self._v.reshape(size, -1)  # views for the matrix product
        self._w2 = self._w.reshape(size, -1)
        self._ref = np.zeros((self._points, self._dim))  # last accepted sample
        # frame of the last accepted sample, moved one frame later for each rejected frame since, so that
        # the allowance grows with missing frames only
        self._ref_frame = np.full(self._points, _NEVER, dtype=np.int64)
        self._seen_frame = np.full(self._points, _NEVER, dtype=np.int64)  # last finite sample
        self._streak = np.zeros(self._points, dtype=np.int64)  # consecutive rejected frames
        self._streaking = False  # some point is in an outlier streak
        self._cand = np.zeros((self._points, self._dim))  # last rejected sample
        self._cand_frame = np.zeros(self._points, dtype=np.int64)
        self._steady = False  # every point accepted in the previous frame, none in an outlier streak
        self.frame = 0
        self.n_missing = 0
        self.n_outliers = 0
        self.n_reinits = 0

    @property
    def state(self) -> np.ndarray:
        """Filter state in the layout of ``zi`` of ``scipy.signal.sosfilt(..., axis=0)``: (sections, 2, *shape)."""
        return self._v[:-1].reshape(len(self.sos), 2, *self.shape).copy()

    def counts(self) -> dict[str, int]:
        """The counters, by name."""
        return {"frames": self.frame, "missing": self.n_missing, "outliers": self.n_outliers, "reinits": self.n_reinits}

    def delay_ms(self, freq_hz: float | None = None) -> float:
        """Group delay of the filter in milliseconds.

        Parameters
        ----------
        freq_hz
            Frequency at which to evaluate it. Default: 0 Hz, the limit for
            slow movement (at 0.5-1 Hz it is within a few tenths of a
            millisecond of that; it grows towards the cutoff).

        Returns
        -------
        float
            The delay in ms.
        """
        f = 0.0 if freq_hz is None else float(freq_hz)
        if not (0 <= f < self.rate / 2):
            raise KinestreamError(
                f"frequency {freq_hz!r} Hz is not valid for the delay; give one from 0 up to below the "
                f"Nyquist frequency {self.rate / 2:g} Hz"
            )
        samples = sum(signal.group_delay((s[:3], s[3:]), w=[f], fs=self.rate)[1][0] for s in self.sos)
        return float(1000.0 * samples / self.rate)

    def push(self, x: np.ndarray) -> np.ndarray:
        """Filter one frame.

        Parameters
        ----------
        x
            One frame of the shape given at construction; NaN where missing.

        Returns
        -------
        np.ndarray
            The filtered frame (a new array), NaN for points missing or
            rejected in this frame.

        Raises
        ------
        KinestreamError
            If the frame does not have the shape given at construction.
        """
        x = np.asarray(x, dtype=float)
        if x.shape != self.shape:
            raise KinestreamError(f"frame has shape {x.shape}; this filter takes frames of shape {self.shape}")
        xp = x.reshape(self._points, self._dim)
        k = self.frame
        if self._steady and math.isfinite(self._ones @ x.reshape(-1)):
            # the usual frame: every point present, each moved at most max_jump since the last frame
            step = (xp - self._ref).reshape(-1)
            if (
                step @ step <= self._max_jump2
                or np.square(step).reshape(-1, self._dim).sum(axis=1).max() <= self._max_jump2
            ):
                self._v[-1] = xp
                np.matmul(self._step, self._v2, out=self._w2)
                self._v[:-1] = self._w[:-1]
                self._ref[:] = xp
                self._ref_frame[:] = k
                self._seen_frame[:] = k
                self.frame = k + 1
                return self._w[-1].reshape(self.shape).copy()
        # any other frame: missing points, points to start again, possible outliers
        finite = np.isfinite(xp @ self._ones_dim)
        ok = finite.copy()
        fresh = k - self._seen_frame > self.reinit_after_frames + 1  # never seen, or back after a long gap
        fresh &= finite
        if self.max_jump is not None:
            step = xp - self._ref
            jump = np.sqrt(np.square(step) @ self._ones_dim) > self.max_jump * (k - self._ref_frame)
            jump &= finite
            jump &= ~fresh
            if np.count_nonzero(jump):
                self._judge_jumps(np.flatnonzero(jump), xp, ok, fresh, k)
            if self._streaking:
                np.copyto(self._streak, 0, where=ok)
                self._streaking = bool(np.count_nonzero(self._streak))
        if np.count_nonzero(fresh):
            self.n_reinits += int(np.count_nonzero(fresh & (self._seen_frame != _NEVER)))
            self._v[:-1, fresh] = self._zi[:, None, None] * xp[fresh][None]
        self._v[-1] = xp
        np.matmul(self._step, self._v2, out=self._w2)  # NaN stays within its own signal's column
        y = self._w[-1].copy()
        np.copyto(self._v[:-1], self._w[:-1], where=(ok & ~fresh)[None, :, None])
        if np.count_nonzero(fresh):  # a signal starting in its steady state stays there: exactly x, not x + eps,
            y[fresh] = xp[fresh]  # so a filter of any design gives the same first frame (a redesign is seamless)
        np.copyto(self._ref, xp, where=ok[:, None])
        np.copyto(self._ref_frame, k, where=ok)
        np.copyto(self._seen_frame, k, where=finite)
        n_ok = np.count_nonzero(ok)
        self.n_missing += self._points - int(np.count_nonzero(finite))
        if n_ok < self._points:
            np.copyto(y, np.nan, where=~ok[:, None])
        self._steady = n_ok == self._points and not self._streaking
        self.frame = k + 1
        return y.reshape(self.shape)

    def _judge_jumps(self, idx: np.ndarray, xp: np.ndarray, ok: np.ndarray, fresh: np.ndarray, k: int) -> None:
        """Reject the jumping points ``idx``, or accept those that settled at a new position."""
        since = k - self._cand_frame[idx]
        near = np.square(xp[idx] - self._cand[idx]).sum(axis=1) <= np.square(self.max_jump * since)
        streak = np.where((self._streak[idx] > 0) & near, self._streak[idx] + 1, 1)
        accept = streak > self.max_outlier_frames
        take, drop = idx[accept], idx[~accept]
        fresh[take] = True
        ok[drop] = False
        self._streak[drop] = streak[~accept]
        self._ref_frame[drop] += 1
        self._cand[drop] = xp[drop]
        self._cand_frame[drop] = k
        self._streaking = self._streaking or len(drop) > 0
        self.n_outliers += len(drop)


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
            raise KinestreamError(f"gap bridging method {method!r} is not valid; use one of {list(HOLD_METHODS)}")
        self.shape = _frame_shape((n_markers, 3))
        self.n_markers = self.shape[0]
        self.rate = checks.rate(rate)
        self.max_hold_frames = _check_count("max_hold_frames", max_hold_frames, "a number of frames")
        self.lookahead = _check_count("lookahead", lookahead, "a number of frames")
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
        self._last_frame = np.full(n, _NEVER, dtype=np.int64)
        self._prev = np.zeros((n, 3))
        self._prev_frame = np.full(n, _NEVER - 1, dtype=np.int64)
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
        """:meth:`push` with an opaque ``tag`` that comes back with its frame (a live frame's sequence number
        and arrival time, say), so that a caller needs no record of its own of what the look-ahead holds."""
        x = np.asarray(xyz, dtype=float)
        if x.shape != self.shape:
            raise KinestreamError(f"frame has shape {x.shape}; this gap filler takes frames of shape {self.shape}")
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


class StreamingCleaner:
    """The streaming clean stage: gap bridging, then the low-lag filter (``design``).

    Frames of ``(n_markers, 3)`` go through :class:`StreamingGapFiller`
    then :class:`StreamingLowpass`; a marker the filter rejects as an
    outlier holds its last output for that frame. The output lags the input by
    :meth:`delay_ms`: the look-ahead frames plus the filter's group delay.

    Parameters
    ----------
    n_markers
        Markers per frame.
    rate
        Frame rate in Hz.
    max_gap_s
        Longest time a missing marker is bridged, in seconds (whole frames:
        ``floor(max_gap_s * rate)``), as ``max_gap_s`` of :func:`fill_gaps`.
    lookahead
        Frames of look-ahead for interpolating short gaps (adds delay).
    hold_method
        ``"hold"`` or ``"extrapolate"`` (see :class:`StreamingGapFiller`).
    cutoff_hz
        Low-pass cutoff in Hz.
    order
        Filter order.
    max_jump
        Largest accepted displacement per frame, in metres; None for no
        outlier rejection (see :class:`StreamingLowpass`).
    max_outlier_frames
        Most consecutive frames a marker is rejected as an outlier.
    reinit_after_frames
        Missing frames after which the filter starts a marker again.

    Raises
    ------
    KinestreamError
        If an argument is not valid; the message says what is.
    """

    def __init__(
        self,
        n_markers: int,
        rate: float,
        *,
        max_gap_s: float = 0.2,
        lookahead: int = 0,
        hold_method: str = "hold",
        cutoff_hz: float = 6.0,
        order: int = 4,
        max_jump: float | None = 0.5,
        max_outlier_frames: int = 5,
        reinit_after_frames: int | None = None,
        design: str = "butterworth",
        kalman_accel: float = 50.0,
        kalman_noise_m: float = 0.005,
        one_euro_min_cutoff_hz: float = 1.0,
        one_euro_beta: float = 1.0,
    ) -> None:
        rate = checks.rate(rate)
        if design not in DESIGNS:
            raise KinestreamError(f"streaming filter {design!r} is not known; give one of {', '.join(DESIGNS)}")
        self.design = design
        try:
            gap = float(max_gap_s)
        except (TypeError, ValueError):
            gap = np.nan
        if not np.isfinite(gap) or gap < 0:
            raise KinestreamError(f"max_gap_s {max_gap_s!r} is not valid; give a duration in seconds >= 0")
        self.filler = StreamingGapFiller(n_markers, rate, int(np.floor(gap * rate + 1e-9)), lookahead, hold_method)
        sos = {
            "kalman": lambda: kalman_cv_sos(rate, kalman_accel, kalman_noise_m),
            "one_euro": lambda: np.array([[1.0, 0, 0, 1.0, 0, 0]]),  # outliers and gaps only; One Euro after
        }.get(design, lambda: None)()
        self.lowpass = StreamingLowpass(
            (self.filler.n_markers, 3),
            rate,
            cutoff_hz,
            order,
            max_jump=max_jump,
            max_outlier_frames=max_outlier_frames,
            reinit_after_frames=reinit_after_frames,
            sos=sos,
        )
        self.smoother = (
            OneEuro(
                (self.filler.n_markers, 3),
                rate,
                one_euro_min_cutoff_hz,
                one_euro_beta,
                reinit_after_frames=reinit_after_frames,
            )
            if design == "one_euro"
            else None
        )
        self.rate = rate
        self._last = np.full((self.filler.n_markers, 3), np.nan)
        self.n_outliers_bridged = 0

    @classmethod
    def from_config(cls, clean: dict, n_markers: int, rate: float) -> StreamingCleaner:
        """Build from the ``[clean]`` settings (a dict; missing keys from the defaults): see
        :meth:`CleanSettings.streaming`."""
        return CleanSettings.from_config({"clean": clean}).streaming(n_markers, rate)

    def delay_ms(self, freq_hz: float | None = 1.0) -> float:
        """Total delay in ms: look-ahead plus the filter's group delay at ``freq_hz``.

        The default, 1 Hz, is the pace of a squat or a stride: a Kalman filter
        has no delay at 0 Hz (nor on any steady movement), so 0 Hz would say
        nothing. The One Euro filter's is that of a keypoint moving at 0.5 m/s.
        """
        delay = self.filler.delay_ms() + self.lowpass.delay_ms(freq_hz)
        return delay + (self.smoother.delay_ms() if self.smoother is not None else 0.0)

    def describe(self) -> str:
        """The filter in words, for notes and logs."""
        if self.design == "kalman":
            return "constant-velocity Kalman filter"
        if self.smoother is not None:
            return f"One Euro filter ({self.smoother.min_cutoff_hz:g} Hz, beta {self.smoother.beta:g})"
        return f"causal Butterworth low-pass {self.lowpass.cutoff_hz:g} Hz, order {self.lowpass.order}"

    def counts(self) -> dict[str, int]:
        """The counters of both steps, by name."""
        f, p = self.filler, self.lowpass
        return {
            "frames": p.frame,
            "bridged": f.n_bridged,
            "lost": f.n_lost,
            "missing": f.n_missing,
            "outliers": p.n_outliers,
            "outliers_bridged": self.n_outliers_bridged,
            "reinits": p.n_reinits,
        }

    def reset(self) -> None:
        """Forget every marker, the buffered frames and the counters."""
        self.filler.reset()
        self.lowpass.reset()
        if self.smoother is not None:
            self.smoother.reset()
        self._last[:] = np.nan
        self.n_outliers_bridged = 0

    def _bridge(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Hold the last output for a marker the filter rejected as an outlier (present, but NaN out).

        A mis-triangulated keypoint is then bridged like a one-frame gap
        instead of reaching the augmenter as a missing one.
        """
        rejected = np.isnan(y).any(axis=1) & np.isfinite(x).all(axis=1)
        if rejected.any():
            held = rejected & np.isfinite(self._last).all(axis=1)
            y[held] = self._last[held]
            self.n_outliers_bridged += int(held.sum())
        present = np.isfinite(y).all(axis=1)
        self._last[present] = y[present]
        return y

    def push(self, xyz: np.ndarray, t: float) -> tuple[np.ndarray, float] | None:
        """Clean one frame; see :meth:`StreamingGapFiller.push` for what comes back."""
        got = self.push_tagged(xyz, t, None)
        return None if got is None else got[:2]

    def push_tagged(self, xyz: np.ndarray, t: float, tag: object) -> tuple[np.ndarray, float, object] | None:
        """:meth:`push` with an opaque ``tag`` that comes back with its frame (see
        :meth:`StreamingGapFiller.push_tagged`)."""
        got = self.filler.push_tagged(xyz, t, tag)
        if got is None:
            return None
        return self._bridge(got[0], self._filter(got[0])), got[1], got[2]

    def _filter(self, x: np.ndarray) -> np.ndarray:
        y = self.lowpass.push(x)
        return y if self.smoother is None else self.smoother.push(y)

    def flush(self) -> list[tuple[np.ndarray, float]]:
        """Clean and give back the frames still in the look-ahead buffer."""
        return [got[:2] for got in self.flush_tagged()]

    def flush_tagged(self) -> list[tuple[np.ndarray, float, object]]:
        """:meth:`flush`, each frame with its tag."""
        return [(self._bridge(x, self._filter(x)), t, tag) for x, t, tag in self.filler.flush_tagged()]


_CLEAN = DEFAULTS["clean"]


@dataclass(frozen=True)
class CleanSettings:
    """How keypoints are cleaned; the ``[clean]`` section of the config (default.toml documents each).

    :meth:`offline` runs the zero-lag recipe on a whole trial; :meth:`streaming`
    builds the causal cleaner the live service runs frame by frame.
    """

    max_gap_s: float = _CLEAN["max_gap_s"]
    gap_method: str = _CLEAN["gap_method"]
    cutoff_hz: float | str = _CLEAN["cutoff_hz"]  # "auto": Winter's residual analysis (offline only)
    filter_order: int = _CLEAN["filter_order"]
    hold_method: str = _CLEAN["hold_method"]
    lookahead_frames: int = _CLEAN["lookahead_frames"]
    max_jump_m: float | None = _CLEAN["max_jump_m"]
    max_outlier_frames: int = _CLEAN["max_outlier_frames"]
    streaming_filter: str = _CLEAN["streaming_filter"]
    one_euro_min_cutoff_hz: float = _CLEAN["one_euro_min_cutoff_hz"]
    one_euro_beta: float = _CLEAN["one_euro_beta"]
    kalman_accel: float = _CLEAN["kalman_accel"]
    kalman_noise_m: float = _CLEAN["kalman_noise_m"]
    reinit_after_frames: int | None = None  # unset: a tenth of a second of frames

    @classmethod
    def from_config(cls, config: dict | None) -> CleanSettings:
        """Settings from ``config["clean"]``, missing keys from the defaults."""
        return cls(**section(config, "clean", cls))

    def offline(self, table: MarkerTable) -> tuple[MarkerTable, CleanReport]:
        """Fill short gaps and low-pass with zero lag: :func:`clean_table` with these settings."""
        return clean_table(
            table,
            cutoff_hz=self.cutoff_hz,
            max_gap_s=self.max_gap_s,
            gap_method=self.gap_method,
            order=int(self.filter_order),
        )

    def streaming(self, n_markers: int, rate: float) -> StreamingCleaner:
        """The causal cleaner for ``n_markers`` keypoints at ``rate`` Hz (``gap_method`` is offline only)."""
        if isinstance(self.cutoff_hz, str):
            raise KinestreamError(
                f"cutoff {self.cutoff_hz!r} is not valid for streaming: residual analysis needs the whole trial; "
                f"give a frequency in Hz, such as 6"
            )
        return StreamingCleaner(
            n_markers,
            rate,
            max_gap_s=self.max_gap_s,
            lookahead=self.lookahead_frames,
            hold_method=self.hold_method,
            cutoff_hz=self.cutoff_hz,
            order=self.filter_order,
            max_jump=self.max_jump_m,
            max_outlier_frames=self.max_outlier_frames,
            reinit_after_frames=self.reinit_after_frames,
            design=self.streaming_filter,
            kalman_accel=self.kalman_accel,
            kalman_noise_m=self.kalman_noise_m,
            one_euro_min_cutoff_hz=self.one_euro_min_cutoff_hz,
            one_euro_beta=self.one_euro_beta,
        )
