#!/usr/bin/env python
"""Per-frame cost of the streaming stages, single thread.

Sections (each a function returning a dict for the JSON line):

  augment   ms/frame of StreamingAugmenter, stateful vs 60-frame windowed,
            lower + upper body together, the whole step (keypoints in,
            43 markers out), onnxruntime on one thread
  rate      what the augmenter does with 120 Hz input: markers stepped on the
            60 Hz model clock (default) and at the input rate, against
            whole-trial inference of the 60 Hz trial
  ik        the two IK solvers side by side on the same frames (StreamingIK,
            solver "fast" and "opensim", arm markers included): ms/frame
            (median, p99, max; the first frame, a cold start from the default
            pose, reported apart and left out of them), the fast solver's
            Gauss-Newton steps per frame, and the final cost of each (OpenSim's
            IK objective, FastIK.cost, per frame): medians, the ratio
            fast/opensim (median, worst) and the share of frames where the
            fast one is as low or lower. Trials: a synth squat with 5 mm
            keypoint noise and the recorded sit-to-stand from tests/data, each
            cleaned and augmented frame by frame as the live service does and
            solved on a model scaled from its standing phase

The augment trial is the recorded sit-to-stand from tests/data played there
and back to --frames, or, when that is absent, generated squats. BLAS and
OpenMP are held to one thread. Prints one table per section and one JSON line
at the end.

    .venv/bin/python scripts/bench_stream.py [--frames N] [--ik-seconds S] [--no-augment] [--no-rate] [--no-ik]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # single thread, before numpy loads
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRIAL = ROOT / "tests" / "data" / "sit_to_stand.trc"
HEIGHT, MASS = 1.7, 70.0
RATE = 60.0


# ---- the trial


def generated_squats(names: list[str], frames: int, rate: float = RATE) -> np.ndarray:
    """Keypoints of a `kinestream synth` squat trial, (frames, len(names), 3)."""
    import tempfile

    from kinestream.ingest import complete_keypoints
    from kinestream.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        syn = synthesize(tmp, fs=rate, seconds=max(frames / rate, 5.0))
    return complete_keypoints(syn.keypoints).select(names).xyz[:frames]


def load_trial(names: list[str], frames: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(description, keypoints (frames, len(names), 3) at 60 Hz, times)."""
    t = np.arange(frames) / RATE
    if SHARED_TRIAL.is_file():
        from kinestream.files.trc import read_trc
        from kinestream.ingest import complete_keypoints

        table = complete_keypoints(read_trc(SHARED_TRIAL))
        n = table.n_frames
        there_and_back = np.r_[np.arange(n), np.arange(n - 2, 0, -1)]
        idx = np.resize(there_and_back, frames)
        xyz = np.stack([table.get(k) for k in names], axis=1)[idx]
        return f"{SHARED_TRIAL.name} there and back, {frames} frames at 60 Hz", xyz, t
    return f"generated squats, {frames} frames at 60 Hz", generated_squats(names, frames), t


# ---- helpers


def stats_ms(timing: tuple[list[int], list[int]]) -> dict:
    """Wall-clock statistics of per-frame times (ns), and the median CPU time of the thread."""
    wall, cpu = timing
    ms = np.asarray(wall, dtype=float) / 1e6
    return {
        "median_ms": round(float(np.median(ms)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "max_ms": round(float(ms.max()), 4),
        "cpu_median_ms": round(float(np.median(cpu)) / 1e6, 4),
    }


def time_stream(stream, xyz: np.ndarray, t: np.ndarray, warmup: int = 0):
    """Per-frame wall and thread-CPU times (ns) of stream.step, and its outputs; the first ``warmup``
    frames are not timed."""
    out = np.empty((len(t), len(stream.markers), 3))
    wall, cpu = [], []
    for i in range(len(t)):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        out[i] = stream.step(xyz[i], t[i])
        wall.append(time.perf_counter_ns() - w0)
        cpu.append(time.thread_time_ns() - c0)
    return (wall[warmup:], cpu[warmup:]), out


def format_table(title: str, header: list[str], rows: list[list]) -> str:
    """A title line and right-aligned columns, as printed."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["", title, "  " + "  ".join(str(h).rjust(w) for h, w in zip(header, widths, strict=False))]
    lines += ["  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(lines)


# ---- sections


def augment_section(assets, names, xyz, t, window: int = 60) -> dict:
    """ms/frame of the streaming augmenter, stateful and windowed, after the first ``window`` frames."""
    from kinestream.augment import StreamingAugmenter

    results = {"timed_frames": len(t) - min(window, len(t) - 1), "window": window}
    for mode in ("stateful", "windowed"):
        stream = StreamingAugmenter.from_assets(assets, HEIGHT, MASS, threads=1, mode=mode, window=window, names=names)
        time_stream(stream, xyz[:window], t[:window])  # warm the sessions up
        stream.reset()
        # steady state: the first `window` frames (short windows) are not timed
        timing, out = time_stream(stream, xyz, t, warmup=min(window, len(t) - 1))
        key = mode if mode == "stateful" else f"windowed{window}"
        results[key] = {**stats_ms(timing), "runs_per_frame": round(stream.steps / stream.frames, 3)}
        results[key]["_out"] = out
    diff = np.linalg.norm(results["stateful"].pop("_out") - results[f"windowed{window}"].pop("_out"), axis=2)
    results["windowed_vs_stateful_mm"] = {
        "mean": round(float(np.nanmean(diff) * 1e3), 3),
        "max": round(float(np.nanmax(diff) * 1e3), 3),
    }
    return results


def augment_report(results: dict) -> str:
    rows = [
        [k, v["median_ms"], v["p99_ms"], v["mean_ms"], v["max_ms"], v["cpu_median_ms"], v["runs_per_frame"]]
        for k, v in results.items()
        if isinstance(v, dict) and "median_ms" in v
    ]
    d = results["windowed_vs_stateful_mm"]
    return (
        format_table(
            f"augment: ms/frame (wall clock; cpu: thread CPU time), lower+upper, 1 thread, "
            f"{results['timed_frames']} timed frames",
            ["mode", "median", "p99", "mean", "max", "cpu median", "ort runs/frame"],
            rows,
        )
        + f"\n  windowed{results['window']} vs stateful markers: mean {d['mean']} mm, max {d['max']} mm"
    )


def rate_section(assets, names, xyz60, t60) -> dict:
    """120 Hz input: both clocks against whole-trial inference at 60 Hz."""
    from scipy.interpolate import CubicSpline

    from kinestream.augment import Augmenter, StreamingAugmenter
    from kinestream.files.trc import MarkerTable

    ref60 = Augmenter.from_assets(assets).predict(MarkerTable(names, xyz60, t60, RATE), HEIGHT, MASS)
    t120 = np.arange(2 * len(t60) - 1) / (2 * RATE)
    xyz120 = CubicSpline(t60, xyz60, axis=0)(t120)
    ref120 = CubicSpline(t60, ref60, axis=0)(t120)  # the 60 Hz result at the 120 Hz instants

    def err(a, b, t):
        d = np.linalg.norm(a - b, axis=2) * 1e3
        settled = d[t >= 1.0]  # after the first second (the models start from a zero state)
        return {
            "mean_mm": round(float(d.mean()), 3),
            "p95_mm": round(float(np.percentile(d, 95)), 3),
            "max_mm": round(float(d.max()), 3),
            "max_after_1s_mm": round(float(settled.max()), 3) if settled.size else None,
        }

    results = {"frames": len(t120)}
    for clock in ("model", "input"):
        stream = StreamingAugmenter.from_assets(assets, HEIGHT, MASS, threads=1, clock=clock, names=names)
        timing, out = time_stream(stream, xyz120, t120)
        r = {
            "all": err(out, ref120, t120),
            "on_60hz": err(out[::2], ref60, t120[::2]),
            "between": err(out[1::2], ref120[1::2], t120[1::2]),
            "runs_per_frame": round(stream.steps / stream.frames, 3),
            **stats_ms(timing),
        }
        results[clock] = r
    return results


def rate_report(results: dict) -> str:
    rows = [
        [
            clock,
            part,
            r[part]["mean_mm"],
            r[part]["p95_mm"],
            r[part]["max_mm"],
            r[part]["max_after_1s_mm"],
            r["runs_per_frame"],
            r["median_ms"],
        ]
        for clock, r in ((c, results[c]) for c in ("model", "input"))
        for part in ("all", "on_60hz", "between")
    ]
    return format_table(
        f"rate: 120 Hz input ({results['frames']} frames) vs whole-trial inference of the 60 Hz "
        f"trial (marker distance, mm; between 60 Hz frames: its cubic interpolation)",
        ["clock", "frames", "mean", "p95", "max", "max>1s", "ort runs/frame", "ms/frame"],
        rows,
    )


def ik_trials(tmp: Path, seconds: float, settings) -> list[tuple[str, object, Path]]:
    """(description, markers, scaled model) of each IK trial, as the live service sees it: keypoints
    cleaned and augmented frame by frame (`process --streaming`, float32 as on the wire), the model
    scaled from the trial's own standing phase. The synth squat (5 mm keypoint noise), and the recorded
    sit-to-stand of tests/data (1.85 m, 75 kg as in the tests) when it is there."""
    from kinestream.files.trc import read_trc
    from kinestream.offline import process
    from kinestream.synth import synthesize

    syn = synthesize(tmp / "syn", seconds=seconds, noise_mm=5.0)
    sources = [(f"synth {seconds:g} s 5 mm", syn.keypoints_trc, syn.mass, syn.height)]
    if SHARED_TRIAL.is_file():
        sources.append((SHARED_TRIAL.stem, SHARED_TRIAL, 75.0, 1.85))
    trials = []
    for k, (desc, path, mass, height) in enumerate(sources):
        result = process(path, mass, height, tmp / f"trial{k}", settings, plot=False, streaming=True)
        trials.append((desc, read_trc(result.augmented_trc), result.scaled_model))
    return trials


def run_solver(model_path: Path, setup, markers, solver: str) -> dict:
    """StreamingIK with ``solver`` over every frame, as the service runs it (each frame warm-started from
    the last): wall-clock ns of each step, the fast solver's Gauss-Newton steps (Jacobian evaluations) of
    each frame's last fit (0 for OpenSim's), and each solution in Simbody's q order (None: not solved)."""
    from kinestream import solve

    model, _ = solve.load_model(model_path)
    ik = solve.StreamingIK(model, setup, markers.names, solver=solver)
    wall, steps, q = [], [], []
    for i in range(markers.n_frames):
        t0 = time.perf_counter_ns()
        frame = ik.step(markers.xyz[i], markers.time[i])
        wall.append(time.perf_counter_ns() - t0)
        steps.append(ik.iterations)
        q.append(frame.warm if frame.ok else None)
    return {
        "solver": ik.solver,
        "names": list(ik.names),
        "wall_ns": np.array(wall, dtype=float),
        "steps": np.array(steps),
        "q": q,
        "counts": dict(ik.counts),
    }


def frame_costs(model_path: Path, setup, names: list[str], markers, solutions: list) -> np.ndarray:
    """OpenSim's IK objective F(q) (FastIK.cost: weighted marker least squares, m^2) of each frame's
    solution against that frame's markers (all of them, also any the solver left out as outliers);
    NaN where the frame was not solved. Evaluated on a model of its own, after the timing."""
    from kinestream import solve
    from kinestream.fastik import FastIK

    model, _ = solve.load_model(model_path)
    judge = FastIK(model, setup, names)
    xyz = markers.xyz[:, [markers.index(n) for n in names]]
    return np.array([np.nan if q is None else judge.cost(q, xyz[i]) for i, q in enumerate(solutions)])


def timing_stats(wall_ns: np.ndarray, steps: np.ndarray) -> dict:
    """Per-frame wall-clock ms and Gauss-Newton steps. Frame 0 is the cold start (assembled from the
    model's default pose, first calls into the solver) and is reported apart as first_ms / first_steps;
    median, p99 and max are over the frames after it."""
    ms = wall_ns / 1e6
    rest = ms[1:]
    return {
        "first_ms": round(float(ms[0]), 2),
        "median_ms": round(float(np.median(rest)), 3),
        "p99_ms": round(float(np.percentile(rest, 99)), 3),
        "max_ms": round(float(rest.max()), 3),
        "first_steps": int(steps[0]),
        "steps_median": float(np.median(steps[1:])),
        "steps_max": int(steps[1:].max()),
    }


def cost_comparison(fast: np.ndarray, opensim: np.ndarray) -> dict:
    """The final cost of the two solvers on the same frames (all frames both solved, frame 0 included):
    median F of each (mm^2: m^2 x 1e6), the per-frame ratio fast/opensim (median and worst, i.e. largest;
    below 1: the fast solver got lower), and the share of frames where fast <= opensim."""
    both = np.isfinite(fast) & np.isfinite(opensim) & (opensim > 0)
    ratio = fast[both] / opensim[both]
    return {
        "frames": int(both.sum()),
        "fast_median_mm2": round(float(np.median(fast[both])) * 1e6, 4),
        "opensim_median_mm2": round(float(np.median(opensim[both])) * 1e6, 4),
        "ratio_median": round(float(np.median(ratio)), 6),
        "ratio_worst": round(float(ratio.max()), 6),
        "share_fast_le_opensim": round(float(np.mean(fast[both] <= opensim[both])), 4),
    }


def compare_solvers(model_path: Path, setup, markers) -> dict:
    """Both solvers, one after the other, on the same frames: timing of each and their costs compared."""
    runs = {s: run_solver(model_path, setup, markers, s) for s in ("fast", "opensim")}
    names = runs["fast"]["names"]
    assert runs["opensim"]["names"] == names, "the two solvers fit different markers"
    costs = {s: frame_costs(model_path, setup, names, markers, r["q"]) for s, r in runs.items()}
    out = {
        s: {"solver_used": r["solver"], **timing_stats(r["wall_ns"], r["steps"]), "counts": r["counts"]}
        for s, r in runs.items()
    }
    out["cost"] = cost_comparison(costs["fast"], costs["opensim"])
    out["frames"] = markers.n_frames
    out["markers"] = len(names)
    return out


def ik_section(seconds: float) -> dict:
    """The fast IK solver against OpenSim's (StreamingIK, solver="fast" / "opensim") on the same frames,
    single thread: ms/frame, Gauss-Newton steps, and the final cost of each (see the helpers above).
    Arm markers (elbows, wrists) included, as `ik.arms = true`."""
    import tempfile

    from kinestream.assets import get_assets
    from kinestream.settings import Settings
    from kinestream.solve import ik_setup

    settings = Settings().override({"ik": {"arms": True}})
    setup = ik_setup(settings.ik, get_assets().ik_setup)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for desc, markers, model_path in ik_trials(Path(tmp), seconds, settings):
            out[desc] = compare_solvers(model_path, setup, markers)
    return out


def ik_report(out: dict) -> str:
    time_rows, cost_rows = [], []
    for desc, r in out.items():
        for s in ("fast", "opensim"):
            e = r[s]
            fast = s == "fast"
            time_rows.append(
                [
                    desc,
                    e["solver_used"],
                    r["frames"],
                    e["first_ms"],
                    e["median_ms"],
                    e["p99_ms"],
                    e["max_ms"],
                    e["steps_median"] if fast else "-",
                    e["steps_max"] if fast else "-",
                    e["first_steps"] if fast else "-",
                ]
            )
        c = r["cost"]
        cost_rows.append(
            [
                desc,
                c["frames"],
                c["fast_median_mm2"],
                c["opensim_median_mm2"],
                c["ratio_median"],
                c["ratio_worst"],
                c["share_fast_le_opensim"],
            ]
        )
    return format_table(
        "ik: StreamingIK ms/frame, same frames for both solvers, 1 thread; median/p99/max over "
        "frames 1.., frame 0 (cold start from the default pose) apart as 'first'; GN: the fast "
        "solver's Gauss-Newton steps per frame",
        ["trial", "solver", "frames", "first ms", "median", "p99", "max", "GN median", "GN max", "GN first"],
        time_rows,
    ) + format_table(
        "ik: final cost F (OpenSim's IK objective, FastIK.cost, mm^2) of each solver's solution "
        "per frame, frame 0 included; ratio fast/opensim per frame",
        ["trial", "frames", "fast median", "opensim median", "ratio median", "ratio worst", "share fast<=opensim"],
        cost_rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1200, help="augment trial length at 60 Hz (default 1200: 20 s)")
    parser.add_argument("--window", type=int, default=60, help="window of the windowed mode (default 60)")
    parser.add_argument("--no-augment", action="store_true", help="skip the augment section")
    parser.add_argument("--no-rate", action="store_true", help="skip the 120 Hz section")
    parser.add_argument("--no-ik", action="store_true", help="skip the IK section")
    parser.add_argument("--ik-seconds", type=float, default=20.0, help="length of the synth IK trial (default 20 s)")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2")

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    results = {"loadavg": round(os.getloadavg()[0], 2)}
    if not (args.no_augment and args.no_rate):
        from kinestream.assets import get_assets
        from kinestream.augment import Augmenter

        assets = get_assets()
        names = Augmenter.from_assets(assets).keypoints
        trial, xyz, t = load_trial(names, args.frames)
        print(f"augment trial: {trial}")
        results.update(trial=trial, frames=args.frames)
        if not args.no_augment:
            results["augment"] = augment_section(assets, names, xyz, t, args.window)
            print(augment_report(results["augment"]))
        if not args.no_rate:
            results["rate"] = rate_section(assets, names, xyz, t)
            print(rate_report(results["rate"]))
    if not args.no_ik:
        results["ik"] = ik_section(args.ik_seconds)
        print(ik_report(results["ik"]))
    print()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
