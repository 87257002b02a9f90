"""The low-lag streaming filters against closed-form and textbook references: a steady-state constant-velocity
Kalman filter and the One Euro filter, next to the Butterworth filter they may replace."""

import numpy as np
import pytest
from scipy import signal
from scipy.linalg import solve_discrete_are

from kinestream.clean import OneEuro, StreamingCleaner, StreamingLowpass, butter_sos, kalman_cv_sos, streaming_cleaner
from kinestream.errors import SettingsError
from kinestream.settings import Settings

RATE = 60.0


def textbook_kalman(z: np.ndarray, rate: float, accel: float, noise: float) -> np.ndarray:
    """The constant-velocity Kalman filter written out (predict, update), started at the first sample at rest with
    the settled covariance: what kalman_cv_sos must reproduce exactly."""
    dt = 1 / rate
    f = np.array([[1, dt], [0, 1]])
    h = np.array([[1.0, 0.0]])
    g = np.array([[dt * dt / 2], [dt]])
    q, r = accel**2 * g @ g.T, np.array([[noise**2]])
    prior = solve_discrete_are(f.T, h.T, q, r)
    x = np.array([z[0], 0.0])
    out = []
    for k, zk in enumerate(z):
        if k:
            x = f @ x
        gain = prior @ h.T / (h @ prior @ h.T + r)[0, 0]
        x = x + (gain * (zk - h @ x)).ravel()
        out.append(x[0])
    return np.array(out)


def test_the_kalman_design_is_the_textbook_filter():
    rng = np.random.default_rng(0)
    t = np.arange(600) / RATE
    z = 0.3 * np.sin(2 * np.pi * 0.8 * t) + rng.normal(0, 0.005, t.size)
    lowpass = StreamingLowpass(1, RATE, 6.0, sos=kalman_cv_sos(RATE, 2.0, 0.005), max_jump=None)
    got = np.array([lowpass.push(np.array([v]))[0] for v in z])
    np.testing.assert_allclose(got, textbook_kalman(z, RATE, 2.0, 0.005), atol=1e-12)


def test_the_kalman_filter_follows_a_steady_movement_without_lag():
    """A constant velocity is what the model expects: once settled, the output is the input itself (a low-pass
    filter trails it by its group delay: 67 ms for the 6 Hz Butterworth)."""
    ramp = np.arange(300) * 0.01  # 0.6 m/s at 60 Hz
    kalman = StreamingLowpass(1, RATE, 6.0, sos=kalman_cv_sos(RATE, 0.7, 0.005), max_jump=None)
    butter = StreamingLowpass(1, RATE, 6.0, 4, max_jump=None)
    k = np.array([kalman.push(np.array([v]))[0] for v in ramp])
    b = np.array([butter.push(np.array([v]))[0] for v in ramp])
    assert np.abs(k - ramp)[-60:].max() < 1e-6
    lag_frames = np.mean((ramp - b)[-60:]) / 0.01
    assert 1000 * lag_frames / RATE == pytest.approx(butter.delay_ms(), rel=0.01)  # 67 ms, closed form


@pytest.mark.parametrize("accel", [0.7, 5.0, 50.0])
def test_the_kalman_noise_response_is_its_impulse_response_energy(accel):
    sos = kalman_cv_sos(RATE, accel, 0.005)
    impulse = np.zeros(2000)
    impulse[0] = 1.0
    gain = np.sqrt(np.sum(signal.sosfilt(sos, impulse) ** 2))  # closed form for white noise
    noise = np.random.default_rng(1).normal(0, 1.0, 200_000)
    assert np.std(signal.sosfilt(sos, noise)[1000:]) == pytest.approx(gain, rel=0.02)
    assert signal.sosfreqz(sos, worN=[0.0], fs=RATE)[1][0] == pytest.approx(1.0)  # a still point stays put
    low, high = (0.4, 0.5) if accel == 0.7 else (0.6, 1.0)
    assert low < gain < high  # the 6 Hz Butterworth's is 0.45; a higher accel lets more noise through


def test_one_euro_without_beta_is_a_first_order_low_pass():
    """beta = 0: a fixed cutoff, alpha = 1 / (1 + rate / (2 pi fc)), i.e. scipy's lfilter([a], [1, a - 1]) started
    at the first sample; its delay at 0 Hz is (1 - alpha) / alpha frames."""
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(0, 0.01, (400, 3)), axis=0)
    f = OneEuro((1, 3), RATE, min_cutoff_hz=2.0, beta=0.0)
    got = np.array([f.push(x[i : i + 1])[0] for i in range(len(x))])
    alpha = 1 / (1 + RATE / (2 * np.pi * 2.0))
    ref = signal.lfilter([alpha], [1, alpha - 1], x, axis=0, zi=(1 - alpha) * x[:1])[0]
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert f.delay_ms(speed=0.0) == pytest.approx(1000 * (1 - alpha) / alpha / RATE)
    assert OneEuro((1, 3), RATE, 1.0, 20.0).delay_ms() < OneEuro((1, 3), RATE, 1.0, 20.0).delay_ms(speed=0.0)


def test_one_euro_opens_up_with_speed():
    """The same step: with beta the cutoff rises with the speed, so the output catches up sooner; still, both
    smooth alike."""
    step = np.zeros((120, 1, 3))
    step[30:, 0, 0] = 0.2
    slow, fast = OneEuro((1, 3), RATE, 1.0, 0.0), OneEuro((1, 3), RATE, 1.0, 20.0)
    a = np.array([slow.push(s)[0, 0] for s in step])
    b = np.array([fast.push(s)[0, 0] for s in step])
    assert np.argmax(b > 0.18) < np.argmax(a > 0.18)
    assert np.all(b[:30] == 0) and np.all(a[:30] == 0)
    noise = np.random.default_rng(3).normal(0, 0.005, (600, 1, 3))
    for f in (OneEuro((1, 3), RATE, 1.0, 0.0), OneEuro((1, 3), RATE, 1.0, 20.0)):
        out = np.array([f.push(s) for s in noise])
        assert np.std(out[100:]) < 0.5 * np.std(noise)


def test_one_euro_holds_missing_points_and_starts_again_after_a_long_gap():
    f = OneEuro((2, 3), RATE, 1.0, 1.0, reinit_after_frames=3)
    f.push(np.zeros((2, 3)))
    frame = np.array([[0.1, 0, 0], [np.nan, np.nan, np.nan]])
    out = f.push(frame)
    assert np.isnan(out[1]).all() and 0 < out[0, 0] < 0.1
    for _ in range(5):
        f.push(np.full((2, 3), np.nan))
    again = f.push(np.ones((2, 3)))
    np.testing.assert_allclose(again, 1.0)  # back after more than 3 frames: starts at its new sample


def test_designs_are_chosen_by_name_and_refused_clearly():
    for design in ("butterworth", "kalman", "one_euro"):
        cleaner = streaming_cleaner(Settings().override({"clean": {"streaming_filter": design}}).clean, 3, RATE)
        assert cleaner.design == design
    for refuse in (  # by the settings, and by the stage given it directly
        lambda: Settings().override({"clean": {"streaming_filter": "median"}}),
        lambda: StreamingCleaner(3, RATE, design="median"),
    ):
        with pytest.raises(SettingsError) as info:
            refuse()
        assert (info.value.key, info.value.given, info.value.valid) == (
            "clean.streaming_filter",
            "median",
            ["butterworth", "kalman", "one_euro"],
        )
    with pytest.raises(SettingsError) as info:
        kalman_cv_sos(RATE, 0.0, 0.005)
    assert (info.value.key, info.value.given) == ("clean.kalman_accel", (0.0, 0.005))
    assert butter_sos(4, 6.0, RATE).shape == (2, 6)
