#!/usr/bin/env python
"""Per-frame cost of the streaming stages, single thread, on a 20 s trial.

Sections (each a function returning a dict for the JSON line):

  augment   ms/frame of StreamingAugmenter, stateful vs 60-frame windowed,
            lower + upper body together, the whole step (keypoints in,
            43 markers out), onnxruntime on one thread
  rate      what the augmenter does with 120 Hz input: markers stepped on the
            60 Hz model clock (default) and at the input rate, against
            whole-trial inference of the 60 Hz trial
  ik        ms/frame (median, p99) of frame-wise IK on a synth squat with 5 mm
            noise at accuracies 1e-5, 1e-4, 1e-3, split into building the
            one-row marker reference, the solver and the assembly, against
            OpenSim's persistent solver tracking frame to frame (offline)

The trial is the recorded sit-to-stand from tests/data played there and
back to 20 s, or, when that is absent, generated squats. Prints one table per
section and one JSON line at the end.

    .venv/bin/python scripts/bench_stream.py [--frames N] [--no-rate]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

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
        from kinestream.ingest import complete_keypoints
        from kinestream.trc import read_trc

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
    return {"median_ms": round(float(np.median(ms)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4),
            "mean_ms": round(float(ms.mean()), 4), "max_ms": round(float(ms.max()), 4),
            "cpu_median_ms": round(float(np.median(cpu)) / 1e6, 4)}


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


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(f"\n{title}")
    print("  " + "  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  " + "  ".join(str(x).rjust(w) for x, w in zip(row, widths)))


# ---- sections


def augment_section(assets, names, xyz, t, window: int = 60) -> dict:
    from kinestream.augment import StreamingAugmenter

    results = {}
    for mode in ("stateful", "windowed"):
        stream = StreamingAugmenter.from_assets(assets, HEIGHT, MASS, threads=1, mode=mode, window=window,
                                                names=names)
        time_stream(stream, xyz[:window], t[:window])  # warm the sessions up
        stream.reset()
        # steady state: the first `window` frames (short windows) are not timed
        timing, out = time_stream(stream, xyz, t, warmup=min(window, len(t) - 1))
        key = mode if mode == "stateful" else f"windowed{window}"
        results[key] = {**stats_ms(timing), "runs_per_frame": round(stream.steps / stream.frames, 3)}
        results[key]["_out"] = out
    diff = np.linalg.norm(results["stateful"].pop("_out") - results[f"windowed{window}"].pop("_out"), axis=2)
    results["windowed_vs_stateful_mm"] = {"mean": round(float(np.nanmean(diff) * 1e3), 3),
                                          "max": round(float(np.nanmax(diff) * 1e3), 3)}
    rows = [[k, v["median_ms"], v["p99_ms"], v["mean_ms"], v["max_ms"], v["cpu_median_ms"], v["runs_per_frame"]]
            for k, v in results.items() if "median_ms" in v]
    print_table(f"augment: ms/frame (wall clock; cpu: thread CPU time), lower+upper, 1 thread, "
                f"{len(t) - min(window, len(t) - 1)} timed frames",
                ["mode", "median", "p99", "mean", "max", "cpu median", "ort runs/frame"], rows)
    d = results["windowed_vs_stateful_mm"]
    print(f"  windowed{window} vs stateful markers: mean {d['mean']} mm, max {d['max']} mm")
    return results


def rate_section(assets, names, xyz60, t60) -> dict:
    """120 Hz input: both clocks against whole-trial inference at 60 Hz."""
    from scipy.interpolate import CubicSpline

    from kinestream.augment import Augmenter, StreamingAugmenter
    from kinestream.trc import MarkerTable

    ref60 = Augmenter.from_assets(assets).predict(MarkerTable(names, xyz60, t60, RATE), HEIGHT, MASS)
    t120 = np.arange(2 * len(t60) - 1) / (2 * RATE)
    xyz120 = CubicSpline(t60, xyz60, axis=0)(t120)
    ref120 = CubicSpline(t60, ref60, axis=0)(t120)  # the 60 Hz result at the 120 Hz instants

    def err(a, b, t):
        d = np.linalg.norm(a - b, axis=2) * 1e3
        settled = d[t >= 1.0]  # after the first second (the models start from a zero state)
        return {"mean_mm": round(float(d.mean()), 3), "p95_mm": round(float(np.percentile(d, 95)), 3),
                "max_mm": round(float(d.max()), 3),
                "max_after_1s_mm": round(float(settled.max()), 3) if settled.size else None}

    results = {"frames": len(t120)}
    rows = []
    for clock in ("model", "input"):
        stream = StreamingAugmenter.from_assets(assets, HEIGHT, MASS, threads=1, clock=clock, names=names)
        timing, out = time_stream(stream, xyz120, t120)
        r = {"all": err(out, ref120, t120), "on_60hz": err(out[::2], ref60, t120[::2]),
             "between": err(out[1::2], ref120[1::2], t120[1::2]),
             "runs_per_frame": round(stream.steps / stream.frames, 3), **stats_ms(timing)}
        results[clock] = r
        for part in ("all", "on_60hz", "between"):
            rows.append([clock, part, r[part]["mean_mm"], r[part]["p95_mm"], r[part]["max_mm"],
                         r[part]["max_after_1s_mm"], r["runs_per_frame"], r["median_ms"]])
    print_table(f"rate: 120 Hz input ({len(t120)} frames) vs whole-trial inference of the 60 Hz trial "
                f"(marker distance, mm; between 60 Hz frames: its cubic interpolation)",
                ["clock", "frames", "mean", "p95", "max", "max>1s", "ort runs/frame", "ms/frame"], rows)
    return results


def ik_section(seconds: float, accuracies=(1e-5, 1e-4, 1e-3)) -> dict:
    """Frame-wise IK on a synth squat trial with 5 mm keypoint noise, augmented and scaled as in
    `kinestream process`: ms/frame of StreamingIK at several accuracies, what each part of a
    frame costs, OpenSim's persistent solver (track, the offline path) for comparison, and how
    far each accuracy lands from full accuracy."""
    import tempfile

    from kinestream import solve
    from kinestream.config import load_config
    from kinestream.pipeline import process
    from kinestream.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        syn = synthesize(Path(tmp) / "syn", seconds=seconds, noise_mm=5.0)
        result = process(syn.keypoints_trc, syn.mass, syn.height, Path(tmp) / "out", load_config(), plot=False,
                         log=lambda *_: None)
        from kinestream.assets import get_assets
        from kinestream.trc import read_trc

        assets = get_assets()
        markers = read_trc(result.augmented_trc)
        model_path = result.scaled_model
        setup = solve.read_ik_setup(assets.ik_setup)
        rows, out, reference_q = [], {}, None
        for acc in accuracies:
            setup.accuracy = acc
            model, _ = solve.load_model(model_path)
            ik = solve.StreamingIK(model, setup, markers.names)
            ik.profile = []
            wall, q = [], []
            for i in range(markers.n_frames):
                t0 = time.perf_counter()
                frame = ik.step(markers.xyz[i], markers.time[i])
                wall.append(time.perf_counter() - t0)
                q.append(frame.q)
            q = np.array(q)
            if reference_q is None:
                reference_q = q
            legs = [ik.coordinates.index(n) for n in ("hip_flexion_r", "knee_angle_r", "ankle_angle_r",
                                                     "hip_flexion_l", "knee_angle_l", "ankle_angle_l")]
            drift = float(np.sqrt(np.nanmean((q[:, legs] - reference_q[:, legs]) ** 2, axis=0)).max())
            prof = np.array(ik.profile) * 1000
            w = np.array(wall) * 1000
            entry = {"median_ms": round(float(np.median(w)), 2), "p99_ms": round(float(np.percentile(w, 99)), 2),
                     "reference_ms": round(float(np.median(prof[:, 0])), 2),
                     "solver_ms": round(float(np.median(prof[:, 1])), 2),
                     "assemble_ms": round(float(np.median(prof[:, 2])), 2),
                     "assemble_p99_ms": round(float(np.percentile(prof[:, 2], 99)), 2),
                     "leg_rms_vs_1e-5_deg": round(drift, 3)}
            out[f"{acc:g}"] = entry
            rows.append([f"{acc:g}", entry["median_ms"], entry["p99_ms"], entry["reference_ms"], entry["solver_ms"],
                         entry["assemble_ms"], entry["assemble_p99_ms"], entry["leg_rms_vs_1e-5_deg"]])
        # the offline path: one persistent solver that tracks frame to frame
        from kinestream.osim import opensim_module

        osim = opensim_module()
        setup.accuracy = accuracies[0]
        model, _ = solve.load_model(model_path)
        used = [n for n in setup.marker_weights if n in markers.names]
        ref = solve.markers_reference(markers, used, setup)
        solver = osim.InverseKinematicsSolver(model, ref, osim.SimTKArrayCoordinateReference(), float("inf"))
        solver.setAccuracy(accuracies[0])
        state = model.initSystem()
        track = []
        for i in range(markers.n_frames):
            state.setTime(float(markers.time[i]))
            t0 = time.perf_counter()
            solver.assemble(state) if i == 0 else solver.track(state)
            track.append(time.perf_counter() - t0)
        track = np.array(track[1:]) * 1000
        out["offline_track"] = {"median_ms": round(float(np.median(track)), 2),
                                "p99_ms": round(float(np.percentile(track, 99)), 2)}
        rows.append([f"{accuracies[0]:g} track", out["offline_track"]["median_ms"], out["offline_track"]["p99_ms"],
                     "-", "-", "-", "-", "-"])
    print_table(f"ik: ms/frame of frame-wise IK, {markers.n_frames} frames of a synth squat (5 mm noise, augmented, "
                f"scaled); target median <= 8, p99 <= 16",
                ["accuracy", "median", "p99", "reference", "solver", "assemble", "assemble p99", "leg drift deg"], rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1200, help="trial length at 60 Hz (default 1200: 20 s)")
    parser.add_argument("--window", type=int, default=60, help="window of the windowed mode (default 60)")
    parser.add_argument("--no-rate", action="store_true", help="skip the 120 Hz section")
    parser.add_argument("--no-ik", action="store_true", help="skip the IK section")
    parser.add_argument("--ik-seconds", type=float, default=20.0, help="length of the IK trial (default 20 s)")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2")

    from kinestream.assets import get_assets
    from kinestream.augment import Augmenter

    assets = get_assets(progress=lambda msg: print(msg, file=sys.stderr))
    names = Augmenter.from_assets(assets).keypoints
    trial, xyz, t = load_trial(names, args.frames)
    print(f"trial: {trial}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")

    results = {"trial": trial, "frames": args.frames, "loadavg": round(os.getloadavg()[0], 2)}
    results["augment"] = augment_section(assets, names, xyz, t, args.window)
    if not args.no_rate:
        results["rate"] = rate_section(assets, names, xyz, t)
    if not args.no_ik:
        results["ik"] = ik_section(args.ik_seconds)
    print()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
