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
  :class:`~kinestream.trc.MarkerTable`.

A "signal" is one column of the data once every axis after time is
flattened: for ``(frames, markers, 3)`` the columns are ``m0.x, m0.y, m0.z,
m1.x, ...``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import signal
from scipy.interpolate import PchipInterpolator, make_interp_spline

from .errors import KinestreamError
from .trc import MarkerTable

GAP_METHODS = ("pchip", "linear")
BTYPES = ("low", "high", "bandpass", "bandstop")


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not np.isfinite(rate) or rate <= 0:
        raise KinestreamError(f"frame rate {rate!r} Hz is not valid; it must be a positive number of frames per second")
    return rate


def _runs(mask: np.ndarray) -> np.ndarray:
    """Start (inclusive) and stop (exclusive) of each run of True, shape (runs, 2)."""
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


def fill_gaps(xyz: np.ndarray, rate: float, max_gap_s: float = 0.2,
              method: str = "pchip") -> tuple[np.ndarray, GapReport]:
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
    rate = _check_rate(rate)
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
        for start, stop in _runs(~present):
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
    rate = _check_rate(rate)
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
    runs = [_runs(finite[:, j]) for j in range(flat.shape[1])]
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


def residual_analysis(xyz: np.ndarray, rate: float, cutoffs: np.ndarray | None = None, order: int = 4,
                      fit_from_hz: float | None = None,
                      limits: tuple[float, float] = (2.0, 15.0)) -> ResidualResult:
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
    rate = _check_rate(rate)
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
    return ResidualResult(cutoffs, residuals, float(fit_from_hz), intercept, signal_cutoffs, median, suggested,
                          (float(limits[0]), float(limits[1])))


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


def clean_table(table: MarkerTable, cutoff_hz: float | str = 6.0, max_gap_s: float = 0.2,
                gap_method: str = "pchip", order: int = 4) -> tuple[MarkerTable, CleanReport]:
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
