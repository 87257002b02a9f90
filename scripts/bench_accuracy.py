#!/usr/bin/env python
"""Joint-angle accuracy against marker-based motion capture, as the field measures it.

Runs the real drop jump (tests/data/drop_vertical_jump.trc; 1.96 m, 78.2 kg)
through each path and compares its angles with the marker-based IK of the same
jump (OpenCap's lab validation, subject 2), as OpenCap's validation does (Uhlrich
et al. 2023): RMSE per DOF over 18 DOF, raw and with each DOF's mean offset
removed, the two clocks aligned by knee flexion (kinestream.accuracy).

Paths: ``offline`` (kinestream.offline.process: zero-lag filter, whole-trial
augmenter, IK; it scales the model), ``streaming`` (process --streaming: the
live cores frame by frame, on that scaled model) and ``live`` (`kinestream
serve --model <that model> --record` as its own process on loopback, fed in
real time by `kinestream replay` of the trial). Each ``--config FILE`` (a TOML
merged on top of the defaults) is one more set of rows; none: the defaults.

The truth is read from ../shared/data (beside the repository), never copied into
it: its source carries no licence. Without it the script says so in one line and
exits 0.

    .venv/bin/python scripts/bench_accuracy.py [--paths offline,streaming,live] [--config FILE ...]
        [--truth PATH] [--out DIR] [--plot PNG]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kinestream.accuracy import Comparison
    from kinestream.files.mot import Motion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

TRIAL = ROOT / "tests" / "data" / "drop_vertical_jump.trc"
TRUTH = ROOT.parent / "shared" / "data" / "drop_vertical_jump_mocap_ik.mot"
SOURCE = "stanfordnmbl/addbiomechanics-paper, Uhlrich2022OpenCap/Processed/subject2/osim_results/IK/DJ1_ik.mot"
MASS, HEIGHT = 78.2, 1.96  # the person of the drop jump (../shared/data/README.md)
PATHS = ("offline", "streaming", "live")
PLOTTED = (
    "pelvis_tilt",
    "hip_flexion_r",
    "hip_flexion_l",
    "knee_angle_r",
    "knee_angle_l",
    "ankle_angle_r",
    "ankle_angle_l",
    "subtalar_angle_r",
    "subtalar_angle_l",
    "lumbar_extension",
)
STYLES = {"offline": "-", "streaming": "-.", "live": ":"}  # the plot's line for each path
GROUP_COLUMNS = ("pelvis", "hip", "knee", "ankle", "subtalar", "lumbar")
START_S = 180.0  # the service up (OpenSim and onnxruntime loaded) within this
SETTLE_S = 120.0  # every frame answered this long after the replay ended, at most


def progress(msg: str) -> None:
    print(f"bench_accuracy: {msg}", file=sys.stderr, flush=True)


@dataclass
class Row:
    config: str
    path: str
    motion: Motion
    comparison: Comparison
    seconds: float
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.config} / {self.path}"


# --------------------------------------------------------------------------- the live path


def newest_status(sub, timeout: float, proc) -> dict | None:
    """The newest status the service has published within ``timeout`` s (None if none came); an error when
    the service has exited."""
    from kinestream.live.messages import decode_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kinestream serve exited with status {proc.returncode}")
        if sub.poll(200):
            latest = sub.recv_multipart()[1]
            while sub.poll(0):
                latest = sub.recv_multipart()[1]
            return decode_status(latest)
    return None


def wait_status(sub, proc, holds, what: str, timeout: float) -> dict:
    """The first status for which ``holds(status)``; an error saying ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status = newest_status(sub, max(0.2, deadline - time.monotonic()), proc)
        if status is not None:
            last = status
            if holds(status):
                return status
    raise RuntimeError(f"waited {timeout:g} s for {what}; the last status: {last}")


def run_live(config_file: Path | None, model: Path, work: Path):
    """`kinestream serve` (its own process) with the scaled ``model``, recording to a .mot, fed the trial in real
    time by `kinestream replay`; returns the recorded motion and a note (frames sent / out / skipped)."""
    import zmq

    from kinestream.files.mot import read_mot
    from kinestream.live.viewers import free_port

    work = work.resolve()  # serve and replay run in the repository's root
    work.mkdir(parents=True, exist_ok=True)
    record = work / "live.mot"
    src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    base = [sys.executable, "-m", "kinestream"] + (["--config", str(config_file.resolve())] if config_file else [])
    serve_cmd = [
        *base,
        "serve",
        "--input",
        src,
        "--output",
        out,
        "--model",
        str(Path(model).resolve()),
        "--mass",
        str(MASS),
        "--height",
        str(HEIGHT),
        "--record",
        str(record),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    serve_log = open(work / "serve.log", "w")
    serve = subprocess.Popen(
        serve_cmd, stdin=subprocess.DEVNULL, stdout=serve_log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
    )
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    sub.connect(out)
    try:
        progress("live: waiting for kinestream serve to start")
        if newest_status(sub, START_S, serve) is None:
            raise RuntimeError(f"kinestream serve published no status within {START_S:g} s")
        progress("live: serve is up; kinestream replay sends the trial in real time")
        replay = subprocess.run(
            [*base, "replay", str(TRIAL), "--endpoint", src, "--wait-subscriber", "60"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=300,
        )
        if replay.returncode != 0:
            raise RuntimeError(f"kinestream replay failed ({replay.returncode}): {replay.stderr[-2000:]}")
        sent = int(replay.stdout.split("sent ", 1)[1].split()[0])
        final = wait_status(
            sub,
            serve,
            lambda s: s["frames_in"] >= sent and s["frames_out"] + s["skipped"] >= s["frames_in"],
            f"all {sent} frames in and answered",
            SETTLE_S,
        )
        progress(f"live: {sent} frames sent, {final['frames_out']} out, {final['skipped']} skipped; stopping serve")
    except BaseException:
        serve.kill()
        serve.wait()
        serve_log.close()
        sys.stderr.write((work / "serve.log").read_text()[-3000:])
        raise
    finally:
        sub.close(0)
        ctx.term()
    serve.send_signal(signal.SIGINT)
    try:
        code = serve.wait(120)
    except subprocess.TimeoutExpired:
        serve.kill()
        serve.wait()
        code = None
    serve_log.close()
    if code != 0:
        raise RuntimeError(f"kinestream serve ended with {code}: {(work / 'serve.log').read_text()[-3000:]}")
    note = f"{sent} frames sent, {final['frames_out']} answered, {final['skipped']} skipped"
    return read_mot(record), note


# --------------------------------------------------------------------------- running the paths


def run_config(label: str, config_file: Path | None, paths: list[str], truth, work: Path) -> list[Row]:
    from kinestream.accuracy import compare
    from kinestream.offline import process
    from kinestream.settings import load_settings

    settings = load_settings(config_file)
    rows: list[Row] = []

    def offline_run(streaming: bool, model=None):
        return process(
            TRIAL,
            MASS,
            HEIGHT,
            work / ("streaming" if streaming else "offline"),
            settings,
            plot=False,
            streaming=streaming,
            model=model,
        )

    # the offline run scales the model the other paths use; it runs even when only they are asked for
    started = time.perf_counter()
    progress(f"{label}: offline (scales the model)")
    offline = offline_run(False)
    scaled = offline.scaled_model
    if "offline" in paths:
        rows.append(
            Row(label, "offline", offline.motion, compare(offline.motion, truth), time.perf_counter() - started)
        )
    if "streaming" in paths:
        started = time.perf_counter()
        progress(f"{label}: streaming (the live cores frame by frame, on the offline run's model)")
        motion = offline_run(True, scaled).motion
        rows.append(Row(label, "streaming", motion, compare(motion, truth), time.perf_counter() - started))
    if "live" in paths:
        started = time.perf_counter()
        progress(f"{label}: live (kinestream serve + kinestream replay on loopback, real time)")
        motion, note = run_live(config_file, scaled, work / "live")
        rows.append(Row(label, "live", motion, compare(motion, truth), time.perf_counter() - started, note))
    return rows


# --------------------------------------------------------------------------- printing


def fmt(x: float, width: int = 5) -> str:
    return f"{x:{width}.1f}" if np.isfinite(x) else "-".rjust(width)


def summary_table(rows: list[Row]) -> str:
    width = max(len(r.label) for r in rows) + 2
    head = (
        f"{'config / path'.ljust(width)}{'offset s':>9}{'18 DOF':>8}{'centred':>8}{'lower limb':>11}{'centred':>8}"
        + "".join(f"{g:>11}" for g in GROUP_COLUMNS)
    )
    lines = ["RMSE, deg: the mean over 18 DOF, over the 12 of the lower limb, and each group's (raw/centred)", head]
    for r in rows:
        c, row = r.comparison, r.comparison.row()
        lines.append(
            f"{r.label.ljust(width)}{c.offset_s:9.3f}{fmt(row['mean18'], 8)}{fmt(row['mean18_centred'], 8)}"
            f"{fmt(row['lower_limb'], 11)}{fmt(row['lower_limb_centred'], 8)}"
            + "".join(f"{fmt(c.group(g), 6)}/{fmt(c.group(g, True), 4)}" for g in GROUP_COLUMNS)
        )
    return "\n".join(lines)


def dof_table(rows: list[Row]) -> str:
    from kinestream.accuracy import DOFS

    width = max(12, max(len(r.label) for r in rows) + 2)
    lines = ["".ljust(18) + "".join(r.label.rjust(width) for r in rows)]
    lines.append("RMSE deg raw/cent".ljust(18) + "".join("raw / cent".rjust(width) for _ in rows))
    for dof in DOFS:
        cells = []
        for r in rows:
            c = r.comparison
            cells.append(
                (f"{c.rmse[dof]:.1f} / {c.rmse_centred[dof]:.1f}" if dof in c.rmse else "missing").rjust(width)
            )
        lines.append(dof.ljust(18) + "".join(cells))
    return "\n".join(lines)


def differences(rows: list[Row], truth: Motion) -> list[str]:
    """For each config, streaming and live against offline: the change in the 18-DOF mean RMSE (raw and
    centred), how far the curves lie from offline's (RMS per DOF on the same clock, mean over 18 DOF, the
    whole trial), how much later their clock offset was found (the causal filter's lag, which each row's own
    alignment takes out) and the 18-DOF mean at offline's offset (the lag counted as error); and live
    against streaming, which the service promises to equal."""
    from kinestream.accuracy import compare

    lines = []
    for config in dict.fromkeys(r.config for r in rows):
        mine = {r.path: r for r in rows if r.config == config}
        if "offline" not in mine:
            continue
        base = mine["offline"]
        for path in ("streaming", "live"):
            if path not in mine:
                continue
            r = mine[path]
            apart = compare(r.motion, base.motion, offset_s=0.0)
            worst = max(apart.rmse, key=lambda d: apart.rmse[d])
            d_raw = r.comparison.mean() - base.comparison.mean()
            d_cen = r.comparison.mean(centred=True) - base.comparison.mean(centred=True)
            # its own offset takes the causal filter's lag out; at offline's the lag counts as error
            lagged = compare(r.motion, truth, offset_s=base.comparison.offset_s)
            lag_ms = 1000 * (r.comparison.offset_s - base.comparison.offset_s)
            lines.append(
                f"{config}: {path} - offline: 18-DOF mean RMSE {d_raw:+.2f} deg raw, {d_cen:+.2f} centred; "
                f"curves apart {apart.mean():.2f} deg RMS (mean over 18 DOF, same clock, whole trial; "
                f"most {worst} {apart.rmse[worst]:.2f})"
            )
            lines.append(
                f"    offset found {lag_ms:+.0f} ms later (the causal filter's lag); at offline's offset, the lag "
                f"counted: 18-DOF mean {lagged.mean():.1f} raw, {lagged.mean(centred=True):.1f} centred"
            )
        if "streaming" in mine and "live" in mine:  # the service promises process --streaming's numbers
            live, streaming = mine["live"].motion, mine["streaming"].motion
            apart = compare(live, streaming, offset_s=0.0)
            lines.append(
                f"{config}: live - streaming: curves apart {max(apart.rmse.values()):.2g} deg RMS at most "
                f"(18 DOF, same clock, whole trial)"
            )
    return lines


def plot(rows: list[Row], truth, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kinestream.accuracy import column, degrees

    truth = degrees(truth)
    t0, t1 = float(truth.time[0]), float(truth.time[-1])
    fig, axes = plt.subplots(4, 3, figsize=(15, 14), sharex=True)
    colours = plt.get_cmap("tab10")
    for ax, dof in zip(axes.flat, PLOTTED, strict=False):
        ref = column(truth, dof)
        if ref is not None:
            ax.plot(truth.time, ref, "k--", lw=2, label="lab (marker-based IK)")
        for k, r in enumerate(rows):
            m = degrees(r.motion)
            est = column(m, dof)
            if est is None:
                continue
            t = np.asarray(m.time, dtype=float) - r.comparison.offset_s  # onto the lab's clock
            keep = (t >= t0 - 0.1) & (t <= t1 + 0.1)
            ax.plot(t[keep], est[keep], STYLES[r.path], color=colours(k % 10), lw=1.3, label=r.label)
        ax.set_title(dof)
        ax.set_ylabel("deg")
        ax.tick_params(labelbottom=True)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(PLOTTED) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[len(PLOTTED)].legend(handles, labels, loc="center")
    for ax in axes.flat[: len(PLOTTED)]:
        ax.set_xlabel("lab time (s)")
    fig.suptitle("drop vertical jump: kinestream against marker-based IK (lab clock)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)} (default: all three)"
    )
    parser.add_argument(
        "--config",
        action="extend",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="a TOML merged on top of the defaults; each one is a set of rows (default: the defaults only)",
    )
    parser.add_argument("--truth", type=Path, default=TRUTH, help=f"the marker-based IK .mot (default {TRUTH})")
    parser.add_argument("--out", type=Path, help="keep every run's files here (default: a temporary folder)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="the curves against the lab's, saved here")
    args = parser.parse_args(argv)
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        parser.error(f"--paths {args.paths!r}: give one or more of {', '.join(PATHS)}, comma-separated")
    for file in args.config:
        if not file.is_file():
            parser.error(f"--config {file} does not exist")

    if not args.truth.is_file():
        print(
            f"bench_accuracy: skipped: the marker-based truth {args.truth} is absent (it is read from "
            f"../shared/data, never kept in the repository: its source, {SOURCE.split(',')[0]}, carries no licence)"
        )
        return 0

    from kinestream.files.mot import read_mot

    truth = read_mot(args.truth)
    configs = [("default", None)] if not args.config else [(f.stem, f) for f in args.config]
    if len({label for label, _ in configs}) < len(configs):  # the same name twice: numbered, in order
        configs = [(f"{label}#{k + 1}", f) for k, (label, f) in enumerate(configs)]
    print(
        f"truth: {args.truth} (marker-based IK, 100 Hz, {truth.time[0]:.2f}-{truth.time[-1]:.2f} s, "
        f"{'degrees' if truth.in_degrees else 'radians'}; from {SOURCE}); read in place, never copied: it "
        f"carries no licence"
    )
    print(
        f"trial: {TRIAL.relative_to(ROOT)} ({HEIGHT} m, {MASS} kg); offset: estimate time = lab time + offset, "
        f"found by knee flexion; RMSE on the lab's time base, 18 DOF as OpenCap's validation"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        rows: list[Row] = []
        for label, file in configs:
            rows += run_config(label, file, paths, truth, out / label.replace("/", "_"))
        print()
        print(summary_table(rows))
        print()
        print(dof_table(rows))
        diffs = differences(rows, truth)
        if diffs:
            print()
            print("\n".join(diffs))
        notes = [f"{r.label}: {r.note}" for r in rows if r.note]
        missing = [f"{r.label}: no {', '.join(r.comparison.missing)}" for r in rows if r.comparison.missing]
        print()
        for line in notes + missing:
            print(line)
        print(
            "time: "
            + ", ".join(f"{r.label} {r.seconds:.1f} s" for r in rows)
            + f"; total {time.perf_counter() - started:.1f} s"
        )
        if args.plot:
            print(f"wrote {plot(rows, truth, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
