"""The live clean stage, :class:`StreamingCleaner`, and both stages built from the ``[clean]`` settings.

The live stage bridges gaps, holds outliers and low-passes causally. :func:`streaming_cleaner` builds it, and
:func:`clean_trial` runs the offline one, from :class:`~kinestream.settings.CleanSettings`.
"""

from __future__ import annotations

import numpy as np

from kinestream import checks
from kinestream.clean.filters import DESIGNS, OneEuro, StreamingLowpass, kalman_cv_sos
from kinestream.clean.gaps import StreamingGapFiller
from kinestream.clean.offline import CleanReport, clean_table
from kinestream.errors import SettingsError
from kinestream.files.trc import MarkerTable
from kinestream.settings import CleanSettings


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
            raise SettingsError(
                f"streaming filter {design!r} is not known; give one of {', '.join(DESIGNS)}",
                key="clean.streaming_filter",
                given=design,
                valid=list(DESIGNS),
            )
        self.design = design
        try:
            gap = float(max_gap_s)
        except (TypeError, ValueError):
            gap = np.nan
        if not np.isfinite(gap) or gap < 0:
            raise SettingsError(
                f"max_gap_s {max_gap_s!r} is not valid; give a duration in seconds >= 0",
                key="clean.max_gap_s",
                given=max_gap_s,
                valid="a duration in seconds >= 0",
            )
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
        """:meth:`push` with an opaque ``tag`` that comes back with its frame.

        See :meth:`StreamingGapFiller.push_tagged`.
        """
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


def clean_trial(table: MarkerTable, settings: CleanSettings) -> tuple[MarkerTable, CleanReport]:
    """Fill short gaps and low-pass with zero lag: :func:`clean_table` with the ``[clean]`` settings."""
    return clean_table(
        table,
        cutoff_hz=settings.cutoff_hz,
        max_gap_s=settings.max_gap_s,
        gap_method=settings.gap_method,
        order=int(settings.filter_order),
    )


def streaming_cleaner(settings: CleanSettings, n_markers: int, rate: float) -> StreamingCleaner:
    """The causal cleaner for ``n_markers`` keypoints at ``rate`` Hz with the ``[clean]`` settings.

    ``gap_method`` is the offline stage's only; a cutoff of "auto" needs the whole trial and is refused.
    """
    if isinstance(settings.cutoff_hz, str):
        raise SettingsError(
            f"cutoff {settings.cutoff_hz!r} is not valid for streaming: residual analysis needs the whole trial; "
            f"give a frequency in Hz, such as 6",
            key="clean.cutoff_hz",
            given=settings.cutoff_hz,
            valid="a frequency in Hz",
        )
    return StreamingCleaner(
        n_markers,
        rate,
        max_gap_s=settings.max_gap_s,
        lookahead=settings.lookahead_frames,
        hold_method=settings.hold_method,
        cutoff_hz=settings.cutoff_hz,
        order=settings.filter_order,
        max_jump=settings.max_jump_m,
        max_outlier_frames=settings.max_outlier_frames,
        reinit_after_frames=settings.reinit_after_frames,
        design=settings.streaming_filter,
        kalman_accel=settings.kalman_accel,
        kalman_noise_m=settings.kalman_noise_m,
        one_euro_min_cutoff_hz=settings.one_euro_min_cutoff_hz,
        one_euro_beta=settings.one_euro_beta,
    )
