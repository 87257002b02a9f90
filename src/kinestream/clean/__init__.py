"""Cleaning marker trajectories: gaps filled or bridged, then a low-pass filter; offline (zero lag) and live.

Arrays have time on their first axis. A "signal" is one column of the data once every axis after time is
flattened: for ``(frames, markers, 3)`` the columns are ``m0.x, m0.y, m0.z, m1.x, ...``.

- :mod:`~kinestream.clean.gaps`: :func:`runs_of`, :func:`fill_gaps` (short interior gaps, PCHIP or linear)
  and :class:`StreamingGapFiller` (hold, extrapolate, or interpolate with a few frames of look-ahead);
- :mod:`~kinestream.clean.filters`: :func:`butter_sos` (a Butterworth filter as second-order sections, shared
  by both stages), :func:`lowpass` (zero-lag, forward-backward, on every contiguous stretch of finite
  samples), :class:`StreamingLowpass` (causal sections, the Butterworth filter or the settled constant-velocity
  Kalman filter of :func:`kalman_cv_sos`, with outlier rejection and re-initialisation after long gaps) and
  :class:`OneEuro` (whose cutoff rises with speed);
- :mod:`~kinestream.clean.offline`: :func:`clean_table`, gap filling then the low-pass on a
  :class:`~kinestream.files.trc.MarkerTable`, and :func:`residual_analysis` (Winter's) to suggest its cutoff;
- :mod:`~kinestream.clean.cleaner`: :class:`StreamingCleaner`, the live stage for ``(markers, 3)`` frames, and
  both stages from the ``[clean]`` settings: :func:`streaming_cleaner` builds the live one, :func:`clean_trial`
  runs the offline one.
"""

from kinestream.clean.cleaner import StreamingCleaner, clean_trial, streaming_cleaner
from kinestream.clean.filters import (
    BTYPES,
    DESIGNS,
    OneEuro,
    StreamingLowpass,
    butter_sos,
    kalman_cv_sos,
    lowpass,
    min_frames,
)
from kinestream.clean.gaps import GAP_METHODS, HOLD_METHODS, GapReport, StreamingGapFiller, fill_gaps, runs_of
from kinestream.clean.offline import CleanReport, ResidualResult, clean_table, residual_analysis

__all__ = [
    "BTYPES",
    "DESIGNS",
    "GAP_METHODS",
    "HOLD_METHODS",
    "CleanReport",
    "GapReport",
    "OneEuro",
    "ResidualResult",
    "StreamingCleaner",
    "StreamingGapFiller",
    "StreamingLowpass",
    "butter_sos",
    "clean_table",
    "clean_trial",
    "fill_gaps",
    "kalman_cv_sos",
    "lowpass",
    "min_frames",
    "residual_analysis",
    "runs_of",
    "streaming_cleaner",
]
