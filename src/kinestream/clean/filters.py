"""Low-pass filters: Butterworth offline and live, the settled constant-velocity Kalman filter, and the One Euro filter.

Butterworth second-order sections (:func:`butter_sos`) are applied zero-lag offline (:func:`lowpass`) and causally live
(:class:`StreamingLowpass`, also the settled constant-velocity Kalman filter of :func:`kalman_cv_sos`); the One Euro
filter (:class:`OneEuro`) has a cutoff that rises with speed.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import signal

from kinestream import checks
from kinestream.clean.frames import NEVER, check_count, frame_shape, runs_of
from kinestream.errors import InputError, SettingsError

BTYPES = ("low", "high", "bandpass", "bandstop")


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
        raise SettingsError(
            f"filter type {btype!r} is not valid; use one of {list(BTYPES)}",
            key="btype",
            given=btype,
            valid=list(BTYPES),
        )
    if isinstance(order, bool) or int(order) != order or order < 1:
        raise SettingsError(
            f"filter order {order!r} is not valid; give a positive integer such as 2 or 4",
            key="clean.filter_order",
            given=order,
            valid="a positive integer",
        )
    cutoffs = np.atleast_1d(np.asarray(cutoff_hz, dtype=float))
    wanted = 2 if btype in ("bandpass", "bandstop") else 1
    if cutoffs.shape != (wanted,):
        raise SettingsError(
            f"a {btype} filter takes {wanted} cutoff frequency(ies); {cutoff_hz!r} was given",
            key="clean.cutoff_hz",
            given=cutoff_hz,
            valid=f"{wanted} cutoff frequency(ies)",
        )
    nyquist = rate / 2
    for fc in cutoffs:
        if not (0 < fc < nyquist):
            raise SettingsError(
                f"cutoff {fc:g} Hz is not valid at {rate:g} Hz sampling; it must be above 0 and below "
                f"the Nyquist frequency {nyquist:g} Hz",
                key="clean.cutoff_hz",
                given=float(fc),
                valid=(0.0, nyquist),
            )
    if wanted == 2 and not cutoffs[0] < cutoffs[1]:
        raise SettingsError(
            f"band edges {cutoff_hz!r} must be given low first, then high",
            key="clean.cutoff_hz",
            given=cutoff_hz,
            valid="low first, then high",
        )
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
        raise InputError(
            f"the trial is too short to filter: the longest stretch of frames with data is {longest} frames "
            f"(of {data.shape[0]} given); an order-{order} Butterworth filter needs at least {pad + 1}",
            given=longest,
            valid=pad + 1,
        )
    whole = finite.all(axis=0)
    if whole.any():
        flat[:, whole] = signal.sosfiltfilt(sos, flat[:, whole], axis=0, padlen=pad)
    for j in np.flatnonzero(~whole):
        for start, stop in runs[j]:
            flat[start:stop, j] = signal.sosfiltfilt(sos, flat[start:stop, j], padlen=min(pad, stop - start - 1))
    return data


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
        raise SettingsError(
            f"Kalman accel {accel!r} m/s^2 and noise {noise_m!r} m are not valid; give both > 0, "
            f"e.g. accel 50 and noise 0.005",
            key="clean.kalman_accel",
            given=(accel, noise_m),
            valid="both > 0",
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
        self.shape = frame_shape(shape)
        self.rate = checks.rate(rate)
        for name, value in (("min_cutoff_hz", min_cutoff_hz), ("d_cutoff_hz", d_cutoff_hz)):
            if not (np.isfinite(value) and 0 < value < self.rate / 2):
                raise SettingsError(
                    f"One Euro {name} {value!r} is not valid; give a frequency above 0 and "
                    f"below the Nyquist frequency {self.rate / 2:g} Hz",
                    key=f"clean.one_euro_{name}",
                    given=value,
                    valid=(0.0, self.rate / 2),
                )
        if not (np.isfinite(beta) and beta >= 0):
            raise SettingsError(
                f"One Euro beta {beta!r} is not valid; give a number >= 0 (s/m)",
                key="clean.one_euro_beta",
                given=beta,
                valid="a number >= 0 (s/m)",
            )
        self.min_cutoff_hz, self.beta, self.d_cutoff_hz = float(min_cutoff_hz), float(beta), float(d_cutoff_hz)
        self.reinit_after_frames = (
            int(round(0.1 * self.rate))
            if reinit_after_frames is None
            else check_count("reinit_after_frames", reinit_after_frames, "a number of frames")
        )
        self._alpha_d = self._alpha(self.d_cutoff_hz)
        self.reset()

    def _alpha(self, cutoff):
        return 1.0 / (1.0 + self.rate / (2.0 * np.pi * cutoff))

    def reset(self) -> None:
        """Forget every point's state: the next frame starts afresh."""
        points = self.shape[0]
        self._x = np.full(self.shape, np.nan)
        self._dx = np.zeros(self.shape)
        self._seen = np.full(points, NEVER, dtype=np.int64)
        self.frame = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """The filtered frame of ``x``, a ``(points, dim)`` frame (NaN points come out as NaN).

        Parameters
        ----------
        x : numpy.ndarray
            The frame's points, ``(points, dim)``.

        Returns
        -------
        numpy.ndarray
            The filtered points, the same shape.
        """
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
        self.shape = frame_shape(shape)
        self.rate = checks.rate(rate)
        # another linear design (kalman_cv_sos) may replace the Butterworth one; it must pass 0 Hz unchanged
        self.sos = butter_sos(order, cutoff_hz, self.rate) if sos is None else np.atleast_2d(np.asarray(sos, float))
        self.cutoff_hz = float(cutoff_hz)
        self.order = int(order)
        if max_jump is not None:
            max_jump = float(max_jump)
            if not (np.isfinite(max_jump) and max_jump > 0):
                raise SettingsError(
                    f"max_jump {max_jump!r} is not valid; give the largest displacement per frame (> 0, "
                    f"e.g. 0.5 m), or None to accept every sample",
                    key="clean.max_jump_m",
                    given=max_jump,
                    valid="a distance per frame > 0, or None",
                )
        self.max_jump = max_jump
        self.max_outlier_frames = check_count("max_outlier_frames", max_outlier_frames, "a number of frames")
        if reinit_after_frames is None:
            reinit_after_frames = int(round(0.1 * self.rate))
        self.reinit_after_frames = check_count("reinit_after_frames", reinit_after_frames, "a number of frames")
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
        self._ref_frame = np.full(self._points, NEVER, dtype=np.int64)
        self._seen_frame = np.full(self._points, NEVER, dtype=np.int64)  # last finite sample
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
            raise SettingsError(
                f"frequency {freq_hz!r} Hz is not valid for the delay; give one from 0 up to below the "
                f"Nyquist frequency {self.rate / 2:g} Hz",
                key="freq_hz",
                given=freq_hz,
                valid=(0.0, self.rate / 2),
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
            raise InputError(
                f"frame has shape {x.shape}; this filter takes frames of shape {self.shape}",
                given=x.shape,
                valid=self.shape,
            )
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
            self.n_reinits += int(np.count_nonzero(fresh & (self._seen_frame != NEVER)))
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
