"""The offline clean stage: gaps filled then a zero-lag low-pass (:func:`clean_table`).

Winter's residual analysis chooses its cutoff (:func:`residual_analysis`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kinestream import checks
from kinestream.clean.filters import lowpass
from kinestream.clean.gaps import GapReport, fill_gaps
from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable


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
        raise SettingsError(
            f"residual analysis needs at least 4 increasing candidate cutoffs; got {cutoffs.tolist()} "
            f"(at {rate:g} Hz the default runs from 1 Hz to {0.4 * rate:g} Hz)",
            key="cutoffs",
            given=cutoffs.tolist(),
            valid="at least 4 increasing cutoffs",
        )
    if fit_from_hz is None:
        fit_from_hz = 0.5 * (cutoffs[0] + cutoffs[-1])
    fit = cutoffs >= fit_from_hz
    if fit.sum() < 2:
        raise SettingsError(
            f"fit_from_hz {fit_from_hz:g} Hz leaves {int(fit.sum())} candidate(s) for the noise line; "
            f"give a value at or below {cutoffs[-2]:g} Hz",
            key="fit_from_hz",
            given=fit_from_hz,
            valid=f"at most {cutoffs[-2]:g} Hz",
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
        raise InputError(
            "residual analysis found no signal with data that varies; nothing to suggest a cutoff from",
            valid="a trial whose keypoints move",
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
        raise SettingsError(
            f"cutoff {cutoff_hz!r} is not valid; give a frequency in Hz or 'auto'",
            key="clean.cutoff_hz",
            given=cutoff_hz,
            valid="a frequency in Hz or 'auto'",
        )
    filled, gaps = fill_gaps(table.xyz, table.rate, max_gap_s, gap_method)
    residual = None
    if cutoff_hz == "auto":
        residual = residual_analysis(filled, table.rate, order=order)
        cutoff_hz = residual.suggested_hz
    smooth = lowpass(filled, table.rate, float(cutoff_hz), order)
    out = MarkerTable(table.names, smooth, table.time.copy(), table.rate, dict(table.meta))
    return out, CleanReport(float(cutoff_hz), residual is not None, int(order), gaps, residual)
