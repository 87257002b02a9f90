"""Tests of the clean stage: gap filling, zero-lag low-pass, residual analysis."""

import numpy as np
import pytest
from scipy import signal

from conftest import DATA  # the real recorded trials (tests/data/NOTICE)
from kinestream.clean import (
    butter_sos,
    clean_table,
    fill_gaps,
    lowpass,
    min_frames,
    residual_analysis,
)
from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable, read_trc


def _sine_markers(n_frames=180, rate=60.0, n_markers=2):
    t = np.arange(n_frames) / rate
    xyz = np.empty((n_frames, n_markers, 3))
    for m in range(n_markers):
        for c in range(3):
            xyz[:, m, c] = 0.1 * np.sin(2 * np.pi * t + m + c) + 0.5 * c
    return t, xyz


# ------------------------------------------------------------------ gap filling


def test_linear_fill_is_exact_on_a_straight_trajectory():
    rate = 60.0
    t = np.arange(120) / rate
    truth = np.stack([0.3 + 1.2 * t, -0.1 + 0.4 * t, 2.0 - 0.7 * t], axis=1)[:, None, :]
    truth = np.concatenate([truth, truth + 1.0], axis=1)  # two markers
    gappy = truth.copy()
    gappy[40:48, 1] = np.nan  # 8 frames = 0.133 s
    gappy[70, 1, 2] = np.nan  # one coordinate missing makes the marker missing

    filled, report = fill_gaps(gappy, rate, max_gap_s=0.2, method="linear")

    np.testing.assert_allclose(filled, truth, rtol=0, atol=1e-12)
    assert report.filled == 2 and report.filled_frames == 9
    assert report.open == []
    assert np.isnan(gappy[40, 1, 0])  # the input is left untouched


def test_pchip_fills_a_short_gap_in_a_sine_closely():
    rate = 60.0
    t = np.arange(180) / rate
    truth = 0.1 * np.sin(2 * np.pi * t)  # 1 Hz, 0.1 m amplitude
    gappy = truth.copy()
    gappy[27:33] = np.nan  # 0.1 s across the zero crossing at 0.5 s

    pchip, _ = fill_gaps(gappy[:, None], rate, method="pchip")  # (frames, k) input
    linear, _ = fill_gaps(gappy[:, None], rate, method="linear")

    err_pchip = np.abs(pchip[:, 0] - truth).max()
    err_linear = np.abs(linear[:, 0] - truth).max()
    assert err_pchip < 0.6e-3  # below 0.6 mm on a 100 mm sine (measured 0.44 mm)
    assert err_linear > 3 * err_pchip  # the chord cuts the curve (measured 1.8 mm)
    assert pchip.shape == (180, 1)


def test_long_and_edge_gaps_stay_missing_and_are_reported():
    rate = 60.0
    _, truth = _sine_markers(rate=rate)
    gappy = truth.copy()
    gappy[50:80, 0] = np.nan  # 30 frames = 0.5 s > 0.2 s
    gappy[100:105, 0] = np.nan  # 5 frames: filled
    gappy[:4, 1] = np.nan  # at the start: no frame before it
    gappy[175:, 1, 0] = np.nan  # at the end

    filled, report = fill_gaps(gappy, rate, max_gap_s=0.2)

    assert np.isnan(filled[50:80, 0]).all() and np.isfinite(filled[49, 0]).all() and np.isfinite(filled[80, 0]).all()
    assert np.isnan(filled[:4, 1]).all()
    assert np.isnan(filled[175:, 1]).all()  # the whole marker is missing there, not only x
    assert np.isfinite(np.delete(filled, np.s_[50:80], axis=0)[:, 0]).all()
    assert report.filled == 1
    assert report.max_gap_frames == 12
    assert sorted(report.open) == [(0, 50, 30), (1, 0, 4), (1, 175, 5)]

    text = report.describe(["RKnee", "LHeel"], rate)
    assert "RKnee: 30 frames (0.500 s) missing, frames 50-79" in text
    assert "longer than the 12 frames (0.200 s)" in text
    assert "LHeel: 4 frames" in text and "at the start of the trial" in text
    assert "at the end of the trial" in text


def test_fill_gaps_rejects_unknown_method():
    with pytest.raises(SettingsError) as info:
        fill_gaps(np.zeros((10, 1, 3)), 60.0, method="cubic")
    assert (info.value.key, info.value.given, info.value.valid) == ("clean.gap_method", "cubic", ["pchip", "linear"])


# ------------------------------------------------------------------- filtering


def test_lowpass_has_no_lag_and_removes_noise():
    rate = 100.0
    t = np.arange(1000) / rate
    clean = 0.1 * np.sin(2 * np.pi * t)  # 1 Hz
    sigma = 0.005
    noisy = clean + np.random.default_rng(1).normal(0, sigma, t.size)

    smooth = lowpass(noisy, rate, 6.0)
    causal = signal.sosfilt(butter_sos(4, 6.0, rate), noisy)

    def lag(y):
        corr = signal.correlate(y - y.mean(), clean, mode="full")
        return signal.correlation_lags(len(y), len(clean), mode="full")[np.argmax(corr)]

    assert lag(smooth) == 0
    assert lag(causal) > 3  # the measure does see the lag of a one-way filter (7 frames)
    inner = slice(100, -100)
    basis = np.column_stack([np.sin(2 * np.pi * t), np.cos(2 * np.pi * t)])[inner]
    in_phase, quadrature = np.linalg.lstsq(basis, smooth[inner], rcond=None)[0]
    assert abs(in_phase - 0.1) < 0.001  # amplitude within 1 %
    assert abs(quadrature) < 0.001  # no phase shift
    residual_noise = np.std(smooth[inner] - clean[inner])
    assert residual_noise < 0.4 * sigma  # white noise above 6 Hz of a 50 Hz band is gone (measured 0.33)


def test_lowpass_filters_each_finite_run_on_its_own():
    rate = 60.0
    _, xyz = _sine_markers(n_frames=200, rate=rate)
    xyz += np.random.default_rng(2).normal(0, 0.003, xyz.shape)
    xyz[80:120, 0] = np.nan
    xyz[150:155, 0] = np.nan  # leaves a 30-frame run between two gaps
    xyz[195:, 1, 2] = np.nan

    out = lowpass(xyz, rate, 6.0)

    np.testing.assert_array_equal(np.isnan(out), np.isnan(xyz))
    sos = butter_sos(4, 6.0, rate)
    np.testing.assert_allclose(out[:80, 0], signal.sosfiltfilt(sos, xyz[:80, 0], axis=0), atol=1e-12)
    np.testing.assert_allclose(out[:, 1, :2], signal.sosfiltfilt(sos, xyz[:, 1, :2], axis=0), atol=1e-12)
    # a run shorter than the padding (15 frames) is filtered with a shorter one
    short = xyz.copy()
    short[130:200, 0] = np.nan  # run 120..129 is 10 frames
    assert np.isfinite(lowpass(short, rate, 6.0)[120:130, 0]).all()


@pytest.mark.parametrize("cutoff", [0.0, -2.0, 30.0, 45.0])
def test_cutoff_outside_zero_to_nyquist_is_refused(cutoff):
    for refuse in (lambda: butter_sos(4, cutoff, 60.0), lambda: lowpass(np.zeros((100, 3)), 60.0, cutoff)):
        with pytest.raises(SettingsError) as info:
            refuse()
        assert (info.value.key, info.value.given, info.value.valid) == ("clean.cutoff_hz", cutoff, (0.0, 30.0))


def test_butter_sos_matches_scipy_and_rejects_bad_order():
    sos = butter_sos(4, 6.0, 60.0)
    assert sos.shape == (2, 6)
    w, h = signal.sosfreqz(sos, worN=[6.0], fs=60.0)
    assert abs(abs(h[0]) - 2**-0.5) < 1e-9  # -3 dB at the cutoff for one pass
    with pytest.raises(SettingsError) as info:
        butter_sos(0, 6.0, 60.0)
    assert (info.value.key, info.value.given) == ("clean.filter_order", 0)


def test_too_short_trial_is_refused_with_counts():
    assert min_frames(4) == 16
    with pytest.raises(InputError) as info:
        lowpass(np.zeros((10, 2, 3)), 60.0, 6.0)
    assert (info.value.given, info.value.valid) == (10, 16)  # the longest run of frames, the fewest the filter takes
    gappy = np.zeros((40, 1, 3))
    gappy[12:28] = np.nan  # two 12-frame runs
    with pytest.raises(InputError) as info:
        lowpass(gappy, 60.0, 6.0)
    assert (info.value.given, info.value.valid) == (12, 16)


# ------------------------------------------------------------ residual analysis


def _band_limited_trial(sigma, rate=60.0, seconds=10.0, n_signals=6, seed=3):
    t = np.arange(int(seconds * rate)) / rate
    content = (
        0.1 * np.sin(2 * np.pi * 0.5 * t)
        + 0.05 * np.sin(2 * np.pi * 1.3 * t + 1)
        + 0.03 * np.sin(2 * np.pi * 2.7 * t + 2)
    )  # nothing above 2.7 Hz
    rng = np.random.default_rng(seed)
    return np.stack([content + rng.normal(0, sigma, t.size) for _ in range(n_signals)], axis=1)


def test_residual_analysis_finds_the_band_edge_and_the_noise_level():
    sigma = 0.005
    result = residual_analysis(_band_limited_trial(sigma), 60.0)

    # content stops at 2.7 Hz: the suggestion sits just above it (measured 3.5 Hz)
    assert 2.7 < result.suggested_hz < 5.0
    assert np.all((result.signal_cutoffs > 2.7) & (result.signal_cutoffs < 5.0))
    # the intercept estimates the noise RMS (measured 1.0-1.2 sigma)
    assert np.all((result.noise_rms > 0.9 * sigma) & (result.noise_rms < 1.3 * sigma))
    np.testing.assert_allclose(result.cutoffs[[0, -1]], [1.0, 24.0])
    assert result.residuals.shape == (47, 6)
    assert np.all(np.diff(result.residuals, axis=0) < 1e-12)  # residual falls as the cutoff rises


def test_residual_analysis_median_ignores_empty_constant_and_odd_signals():
    trial = _band_limited_trial(0.005, n_signals=3)
    t = np.arange(len(trial)) / 60.0
    fast = 0.05 * np.sin(2 * np.pi * 9.0 * t) + np.random.default_rng(5).normal(0, 0.005, t.size)
    trial = np.column_stack([trial, fast, np.full(len(trial), 0.7), np.full(len(trial), np.nan)])
    result = residual_analysis(trial, 60.0)
    assert result.signal_cutoffs[3] > 9.0  # the fast signal wants a high cutoff
    assert np.isnan(result.signal_cutoffs[4:]).all()
    assert 2.7 < result.suggested_hz < 5.0  # the median follows the majority


@pytest.mark.parametrize("trial", ["sit_to_stand", "drop_vertical_jump"])
def test_residual_analysis_on_real_trials(trial):
    table = read_trc(DATA / f"{trial}.trc")
    result = residual_analysis(table.xyz, table.rate)
    print(
        f"{trial}: suggested cutoff {result.median_hz:.2f} Hz, noise {1000 * np.nanmedian(result.noise_rms):.1f} mm RMS"
    )
    # measured: sit_to_stand 4.95 Hz, drop_vertical_jump 6.22 Hz (unclipped median)
    assert 2.0 < result.median_hz < 15.0
    assert result.suggested_hz == result.median_hz


# ------------------------------------------------------------------ whole stage


def test_clean_table_fills_then_filters():
    rate = 60.0
    t, xyz = _sine_markers(n_frames=300, rate=rate)
    noisy = xyz + np.random.default_rng(4).normal(0, 0.004, xyz.shape)
    noisy[100:106, 1] = np.nan
    table = MarkerTable(["A", "B"], noisy, t + 2.0, rate, {"source": "synthetic"})

    fixed, report = clean_table(table, cutoff_hz=6.0)
    assert report.cutoff_hz == 6.0 and not report.auto and report.residual is None
    assert report.gaps.filled == 1 and report.gaps.open == []
    assert fixed.names == ["A", "B"] and np.array_equal(fixed.time, table.time) and fixed.meta == table.meta
    assert np.isfinite(fixed.xyz).all()
    assert np.std(fixed.xyz[20:-20] - xyz[20:-20]) < 0.5 * 0.004

    auto, report = clean_table(table, cutoff_hz="auto")
    assert report.auto and report.cutoff_hz == report.residual.suggested_hz
    assert 2.0 <= report.cutoff_hz <= 15.0
    np.testing.assert_allclose(auto.xyz, lowpass(fill_gaps(noisy, rate)[0], rate, report.cutoff_hz))

    with pytest.raises(SettingsError) as info:
        clean_table(table, cutoff_hz="fast")
    assert (info.value.key, info.value.given) == ("clean.cutoff_hz", "fast") and "'auto'" in info.value.valid
