"""The streaming filters judged end to end, on the angles: lag, accuracy, standing jitter, rep-event timing.

Every filter runs in the live cores (``process --streaming``: clean, augment,
frame-wise IK) on the same trials, with the model the offline run scaled:

- synth squats at 60 and 120 Hz with 0, 3 and 5 mm keypoint noise, judged
  against their true angles;
- the two real trials (tests/data), judged against the offline zero-lag path.

Columns (knee: mean of both knees; hip: mean of both hips):

- lag ms: delay of the angle behind the reference, from the peak of the
  cross-correlation of the two curves' derivatives (sub-frame, parabolic);
- rms deg: RMS difference from the reference, lag included; the offline
  zero-lag path's own RMS against truth is printed as the row "offline";
- jitter deg: RMS of the knee angle's second difference while standing still
  (synth only: the standing phase before the first squat);
- rep ms: from the true end of each rep (the true knee angle falling through
  the rep counter's start level) to the rep event (synth only).

    .venv/bin/python scripts/bench_filters.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

FILTERS = {  # name -> [clean] settings over the defaults (the default: one euro 1 Hz, beta 20)
    "butterworth 6 Hz o4": {"streaming_filter": "butterworth", "filter_order": 4},
    "butterworth 6 Hz o2": {"streaming_filter": "butterworth", "filter_order": 2},
    "kalman cv a=0.7": {"streaming_filter": "kalman", "kalman_accel": 0.7},
    "kalman cv a=1": {"streaming_filter": "kalman", "kalman_accel": 1.0},
    "one euro 1 Hz b=20": {"streaming_filter": "one_euro", "one_euro_min_cutoff_hz": 1.0, "one_euro_beta": 20.0},
    "one euro 1 Hz b=40": {"streaming_filter": "one_euro", "one_euro_min_cutoff_hz": 1.0, "one_euro_beta": 40.0},
}
KNEES = ("knee_angle_r", "knee_angle_l")
HIPS = ("hip_flexion_r", "hip_flexion_l")


def mean_of(motion, names) -> np.ndarray:
    return np.mean([motion.get(n) for n in names], axis=0)


def lag_ms(signal: np.ndarray, reference: np.ndarray, rate: float, max_ms: float = 300.0) -> float:
    """How far ``signal`` trails ``reference`` (ms), by cross-correlating their derivatives."""
    a, b = np.diff(signal), np.diff(reference)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = np.where(ok, a - a[ok].mean(), 0.0), np.where(ok, b - b[ok].mean(), 0.0)
    span = int(max_ms / 1000 * rate)
    lags = np.arange(-span, span + 1)
    corr = np.array([np.dot(a[max(k, 0) : len(a) + min(k, 0)], b[max(-k, 0) : len(b) + min(-k, 0)]) for k in lags])
    i = int(np.argmax(corr))
    shift = 0.0
    if 0 < i < len(corr) - 1:  # a parabola through the peak and its neighbours
        den = corr[i - 1] - 2 * corr[i] + corr[i + 1]
        shift = 0.5 * (corr[i - 1] - corr[i + 1]) / den if den else 0.0
    return 1000.0 * (lags[i] + shift) / rate


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((a - b) ** 2)))


def on_time(motion, reference):
    """``reference`` sampled at ``motion``'s times (frames matched by time)."""
    index = {round(float(t), 6): i for i, t in enumerate(reference.time)}
    rows = [index.get(round(float(t), 6)) for t in motion.time]
    keep = np.array([r is not None for r in rows])
    return keep, np.array([r for r in rows if r is not None])


def rep_delays_ms(motion, truth, settings) -> list[float]:
    """From each true rep end to the rep event the counter raises on ``motion`` (frame by frame, no look-ahead)."""
    from kinestream.reps import RepCounter

    reps = settings.reps
    counter = RepCounter(reps, motion.names)
    events = []
    for i, t in enumerate(motion.time):
        if counter.step(float(t), motion.values[i], None) is not None:
            events.append(float(t))
    knee, t = mean_of(truth, KNEES), truth.time
    level = reps.knee_start_deg
    ends = [
        t[i - 1] + (level - knee[i - 1]) / (knee[i] - knee[i - 1]) * (t[i] - t[i - 1])
        for i in range(1, len(knee))
        if knee[i - 1] >= level > knee[i]
    ]
    out = []
    for end in ends:
        later = [e for e in events if e >= end - 0.5]
        if later:
            out.append(1000.0 * (later[0] - end))
    return out


def judge(name, motion, reference, rate, truth=None, standing=None, settings=None) -> dict:
    keep, rows = on_time(motion, reference)
    k, h = mean_of(motion, KNEES)[keep], mean_of(motion, HIPS)[keep]
    rk, rh = mean_of(reference, KNEES)[rows], mean_of(reference, HIPS)[rows]
    row = {
        "filter": name,
        "knee lag ms": lag_ms(k, rk, rate),
        "hip lag ms": lag_ms(h, rh, rate),
        "knee rms deg": rms(k, rk),
        "hip rms deg": rms(h, rh),
    }
    if standing is not None:
        still = (motion.time >= standing[0] + 0.5) & (motion.time <= standing[1] - 0.2)
        row["jitter deg"] = float(np.sqrt(np.nanmean(np.diff(mean_of(motion, KNEES)[still], 2) ** 2)))
    if truth is not None:
        delays = rep_delays_ms(motion, truth, settings)
        row["rep ms"] = float(np.mean(delays)) if delays else float("nan")
    return row


def trials(tmp: Path, quick: bool):
    from kinestream.synth import synthesize

    for fs in (60.0, 120.0):
        for noise in (5.0,) if quick else (0.0, 3.0, 5.0):
            syn = synthesize(tmp / f"synth_{fs:g}_{noise:g}", fs=fs, seconds=12.0, noise_mm=noise, gaps=4, seed=7)
            yield f"synth {fs:g} Hz {noise:g} mm", syn.keypoints_trc, syn.mass, syn.height, fs, syn
    if not quick:
        for name in ("sit_to_stand", "drop_vertical_jump"):
            yield name, ROOT / "tests" / "data" / f"{name}.trc", 75.0, 1.85, 60.0, None


def run(quick: bool = False, say=print) -> list[dict]:
    from kinestream.offline import process
    from kinestream.settings import Settings

    base = Settings()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, path, mass, height, rate, syn in trials(tmp, quick):
            say(f"{label} ...")
            offline = process(path, mass, height, tmp / label / "offline", base, plot=False)
            reference = syn.motion if syn is not None else offline.motion
            standing = syn.standing if syn is not None else None
            if syn is not None:
                rows.append(
                    {
                        "trial": label,
                        **judge("offline (zero lag)", offline.motion, reference, rate, syn.motion, standing, base),
                    }
                )
            for name, changes in FILTERS.items():
                chosen = base.override({"clean": changes})
                got = process(
                    path,
                    mass,
                    height,
                    tmp / label / name.replace(" ", "_"),
                    chosen,
                    plot=False,
                    streaming=True,
                    model=offline.scaled_model,
                )
                rows.append(
                    {
                        "trial": label,
                        **judge(
                            name, got.motion, reference, rate, syn.motion if syn is not None else None, standing, chosen
                        ),
                    }
                )
    return rows


def table(rows: list[dict]) -> str:
    cols = ["trial", "filter", "knee lag ms", "hip lag ms", "knee rms deg", "hip rms deg", "jitter deg", "rep ms"]
    lines = ["  ".join(f"{c:>22}" if i < 2 else f"{c:>12}" for i, c in enumerate(cols))]
    for r in rows:
        cells = []
        for i, c in enumerate(cols):
            v = r.get(c, "")
            digits = 3 if c == "jitter deg" else 2
            cells.append(f"{v:>22}" if i < 2 else (f"{v:12.{digits}f}" if isinstance(v, float) else f"{v!s:>12}"))
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the 5 mm synth trials at 60 and 120 Hz")
    args = parser.parse_args(argv)
    rows = run(args.quick, say=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(rows))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
