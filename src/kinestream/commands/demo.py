"""The live service on embedded data: no external service, no data of the user's.

1. ``synth`` makes a squat session (5 mm keypoint noise, short gaps) with its
   true joint angles;
2. its standing phase is replayed over ZeroMQ while ``calibrate`` waits for
   the still, upright pose and scales the model;
3. the service starts on that model, recording, and the whole session is
   replayed into it in real time; the terminal shows the live status line;
4. at the end: the recorded .mot, an angle plot with the truth dashed, and
   the figures (frames, skipped, latency, error against the truth).

With ``view`` ("native", "web" or a FILE.rrd), ``kinestream view`` runs as its
own process on the service's output, and the session replays once it listens.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

from kinestream.centres import joint_centres
from kinestream.commands.common import log_to_stderr
from kinestream.commands.live import recording_c3d
from kinestream.commands.terminal import show, status_printer
from kinestream.files.mot import read_mot
from kinestream.files.trc import read_trc
from kinestream.plots import plot_angles, plot_reps
from kinestream.reps import detect_reps
from kinestream.settings import Settings


def run_demo(settings: Settings, out: Path, seconds: float = 12.0, rate: float = 1.0, view: str | None = None) -> dict:
    from kinestream.synth import synthesize

    out.mkdir(parents=True, exist_ok=True)
    syn = synthesize(out / "synth", seconds=seconds, noise_mm=5.0, gaps=6)
    print(
        f"synthetic squat session: {seconds:g} s, {len(syn.squats)} squats, subject {syn.height:.2f} m, "
        f"{syn.mass:.1f} kg -> {syn.keypoints_trc}",
        file=sys.stderr,
    )
    return asyncio.run(_demo(settings, out, syn, rate, view))


def _start_viewer(settings: Settings, view: str, log: Path):
    """``kinestream view`` on the demo's service, as its own process; what it says goes to ``log``."""
    import subprocess

    args = [sys.executable, "-m", "kinestream", "view", "--endpoint", settings.service.output]
    if view == "web":
        args.append("--web")
    elif view != "native":
        args += ["--save", view]
    with open(log, "w") as fh:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)


async def _viewer_in(service, viewer, log: Path, say) -> None:
    """Wait (up to a minute) until the viewer's subscription has reached the service, so that it sees the whole session.

    A viewer that could not start is said, and the demo goes on without it.
    """
    for _ in range(600):
        if service.status()["pose"]["subscribed"]:
            for line in log.read_text().splitlines():
                if line.startswith("the web viewer: "):
                    say(f"{line} (open it in a browser)")
            return
        if viewer.poll() is not None:
            said = log.read_text().strip().splitlines()
            say(f"the viewer did not start ({said[-1] if said else 'no message'}); the demo goes on without it")
            return
        await asyncio.sleep(0.1)
    say(f"the viewer has not subscribed after a minute (see {log}); the demo goes on")


def _stop_viewer(viewer, view: str) -> None:
    import signal

    if viewer.poll() is None and view == "web":
        print("the web viewer keeps the session until Ctrl-C", file=sys.stderr, flush=True)
        try:
            viewer.wait()
        except KeyboardInterrupt:  # the terminal's Ctrl-C reached the viewer too
            pass
    if viewer.poll() is None:
        viewer.send_signal(signal.SIGINT)  # it finishes its recording; a native window stays open
    viewer.wait(60)


async def _demo(settings: Settings, out: Path, syn, rate: float, view: str | None = None) -> dict:
    from kinestream.live.calibrate import calibrate
    from kinestream.live.replay import replay
    from kinestream.live.service import Service
    from kinestream.offline import compare

    endpoint = settings.service.input
    table = read_trc(syn.keypoints_trc)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    # calibration on the standing phase, replayed until the pose is found
    standing = table.frames(0, int(syn.standing[1] * table.rate))
    stop_replay = asyncio.Event()
    feeder = asyncio.create_task(replay(standing, endpoint, rate=rate, loop=True, stop_event=stop_replay))
    try:
        model = await calibrate(
            settings,
            input_endpoint=endpoint,
            mass=syn.mass,
            height=syn.height,
            out_model=out / "calibration" / "scaled.osim",
            timeout_s=60,
        )
    finally:
        stop_replay.set()
        await feeder

    # the session, live
    record = out / "session.mot"
    service = Service(
        settings,
        input_endpoint=endpoint,
        output_endpoint=settings.service.output,
        record=record,
        model=model,
        status_out=status_printer(),
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    view_log = out / "view.log"
    viewer = _start_viewer(settings, view, view_log) if view else None
    serving = asyncio.create_task(service.run(stop, ready))
    await ready.wait()
    if viewer is not None:
        await _viewer_in(service, viewer, view_log, say)
    say(f"replaying the session into the service at {rate:g}x real time ...")
    sent = await replay(table, endpoint, rate=rate, wait_subscriber=2.0)
    for _ in range(100):  # let the last frames through
        m = service.metrics
        if m.frames_out + m.skipped >= m.frames_in >= sent:
            break
        await asyncio.sleep(0.05)
    stop.set()
    final = await serving
    print(file=sys.stderr)
    if viewer is not None:
        _stop_viewer(viewer, view or "")

    motion = read_mot(record)
    png = out / "session_angles.png"
    plot_angles(motion, png, title="live session", truth=syn.motion)
    errors = compare(motion, syn.motion)
    lat = final["latency_ms"]
    print(
        f"frames sent {sent}, in {final['frames_in']}, out {final['frames_out']}, skipped {final['skipped']}, "
        f"rejected {sum(final['rejected'].values())}, IK failures {final['ik_failures']}"
    )
    print(
        f"service latency p50/p95/p99: {lat['p50']}/{lat['p95']}/{lat['p99']} ms; filter delay "
        f"{final['filter_delay_ms']} ms (moving at 0.5 m/s)"
    )
    print(
        "RMS error vs truth (deg, live, including the filter delay): "
        + ", ".join(f"{n} {e:.1f}" for n, e in errors.items())
    )
    peak = {n: float(np.nanmax(motion.get(n))) for n in ("knee_angle_r", "hip_flexion_r") if n in motion}
    print("peak flexion (deg): " + ", ".join(f"{n} {v:.1f}" for n, v in peak.items()))

    events, summary = detect_reps(motion, joint_centres(model, motion), settings.reps)
    reps_png = out / "session_reps.png"
    plot_reps(motion, events, reps_png, settings=settings.reps, partials=summary["partials"], title="live session")
    print(
        f"squat reps: {summary['reps']} of the {len(syn.squats)} performed, depth "
        + ", ".join(f"{e.knee_peak:.0f}" for e in events)
        + " deg (knee; true "
        + ", ".join(f"{(q.knee_angle_r + q.knee_angle_l) / 2:.0f}" for q in syn.squats)
        + ")"
    )
    knee = 0.5 * (motion.get("knee_angle_r") + motion.get("knee_angle_l"))
    live = service.rep_events()
    recorded = [float(np.nanmax(knee[(motion.time >= e.start) & (motion.time <= e.end)])) for e in live]
    print(
        "live rep events, depth " + ", ".join(f"{e.knee_peak:.1f}" for e in live) + " deg; the recorded "
        "curve's peaks " + ", ".join(f"{p:.1f}" for p in recorded) + " deg"
    )
    print(f"wrote {record}, {record.with_name(record.stem + '_markers.trc')}, {png}, {reps_png}")
    recording_c3d(record, settings)
    final["live_reps"] = [e.to_dict() for e in live]  # what the subscribers were sent, for the caller
    final["recorded_peaks"] = recorded
    return final


def cmd_demo(args, settings: Settings) -> None:

    log_to_stderr()
    for quiet in ("kinestream.synth", "kinestream.live.replay"):  # the demo says itself what it makes and replays
        show(quiet, None)
    run_demo(settings, Path(args.out), seconds=args.seconds, rate=args.rate, view=getattr(args, "view", None))
