#!/usr/bin/env python
"""End-to-end benchmark of the live service over loopback.

Starts `kinestream serve` as its own process (one process: IK runs in its
event loop) with the chosen IK solver, replays a synth squat trial made at the
given rate (synthesized at that frame rate, 5 mm keypoint noise) into it with
real timing, subscribes to the angles, and prints a summary table and one
JSON line: input and output rate, frames skipped, end-to-end latency
p50/p95/p99/max (the source's sent_ns to the subscriber's receipt), the
service's own stage timings, the CPU the service process used while the
trial played (utime + stime from /proc, % of one core), the largest angle
difference between the live output and `process --streaming` on the same
trial and model (leg coordinates, and all), and the squat reps: how many rep
events came (against the trial's squats) and how late, measured two ways:
from the sending of the frame that completed the rep (the service's part),
and from the moment the rep truly ended (the true knee angle crossing the
rep threshold; this adds the causal filter's delay and the pipeline's knee
error near the threshold).

``--load N`` keeps N busy processes (pure-Python spinning loops) running from
just before the replay until the last answer is in, and always ends them: the
service then shares the cores with them, as on a loaded machine.

``--runs N`` plays the session N times: each run's figures are printed as a
row, and the end-to-end latency of every run pooled as a histogram against the
frame period (a frame answered within its period keeps up with the source).

``--viewer`` measures what a viewer costs the service: the session runs again
(``--repeat`` times each, alternating) with ``kinestream view --save`` attached
(its own process, subscribed to everything, ``pose`` included), and the latency
percentiles with and without it are printed side by side. The bench's own
subscriber holds ``angles``, ``reps`` and ``status`` only, so that without a
viewer nobody asks for ``pose``.

    .venv/bin/python scripts/bench_service.py --rate 60 --seconds 20 [--solver fast|opensim] [--load N] [--no-arms]
    .venv/bin/python scripts/bench_service.py --rate 120 --runs 3 --no-offline
    .venv/bin/python scripts/bench_service.py --viewer [--repeat 3] [--no-offline]
    .venv/bin/python scripts/bench_service.py --people 4 [--runs 3] [--shards 2]

``--people N`` sends the trial as N people in one stream (subjects p0 ... p(N-1), each frame once for each), as a
multi-person pose estimator does; the figures are over everyone's frames. ``--shards K`` starts K services on the
one source, each serving its share (``serve --people k/K``) on its own output; CPU is theirs together.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEGS = ("hip_flexion_r", "hip_flexion_l", "knee_angle_r", "knee_angle_l", "ankle_angle_r", "ankle_angle_l")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (utime + stime of /proc/<pid>/stat, all its
    threads); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(procs) -> list[int]:
    """The processes' ids and their children's (serve --workers' workers), to sum their CPU."""
    pids = []
    for p in procs:
        pids.append(p.pid)
        try:
            pids += [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
        except OSError:
            pass
    return pids


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> None:
    """Up to ``timeout`` seconds for a process told to stop to end; killed after that."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def busy_load(n: int):
    """N processes spinning a pure-Python loop for the duration of the block; yields their pids.
    They are killed and reaped on the way out, whatever happens in the block."""
    procs = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


async def run(args, trial, model, config_path, viewer: Path | None = None) -> dict:
    """One live session; with ``viewer`` (a .rrd path), ``kinestream view --save`` is attached throughout."""
    import zmq
    import zmq.asyncio

    from kinestream.files.trc import read_trc
    from kinestream.live.messages import decode_angles, decode_reps, decode_status
    from kinestream.live.replay import replay

    shards = max(1, args.shards)
    src = f"tcp://127.0.0.1:{free_port()}"
    outs = [f"tcp://127.0.0.1:{free_port()}" for _ in range(shards)]
    out = outs[0]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs = []
    for k, each in enumerate(outs):  # --shards K: K services on the one source, each serving its share of people
        cmd = [
            sys.executable,
            "-m",
            "kinestream",
            "--config",
            str(config_path),
            "serve",
            "--input",
            src,
            "--output",
            each,
            "--model",
            str(model),
            "--solver",
            args.solver,
            "--mass",
            str(args.mass),
            "--height",
            str(args.height),
            *(["--people", f"{k}/{shards}"] if shards > 1 else []),
            *(["--workers", str(args.workers)] if args.workers > 1 else []),
        ]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT))
    ctx = zmq.asyncio.Context()
    subs = []
    for each in outs:
        one = ctx.socket(zmq.SUB)
        for topic in (b"angles", b"reps", b"status"):  # not pose: only a viewer asks for it
            one.setsockopt(zmq.SUBSCRIBE, topic)
        one.setsockopt(zmq.RCVHWM, 100000)
        one.connect(each)
        subs.append(one)
    sub = subs[0]
    view = None
    try:
        deadline = time.monotonic() + 120
        for one, each_proc in zip(subs, procs, strict=True):
            up: set[str] = set()
            while len(up) < max(1, args.workers):  # a service (each worker) is up once it publishes its status
                if await one.poll(200):
                    topic, payload = await one.recv_multipart()
                    if topic == b"status":
                        up.add(decode_status(payload).get("worker", ""))
                if time.monotonic() > deadline or each_proc.poll() is not None:
                    raise SystemExit("the service did not start")
        if viewer is not None:
            view = subprocess.Popen(
                [sys.executable, "-m", "kinestream", "view", "--endpoint", out, "--save", str(viewer)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=ROOT,
            )
            while True:  # until the service has seen the viewer's pose subscription
                if await sub.poll(200):
                    topic, payload = await sub.recv_multipart()
                    if topic == b"status" and decode_status(payload)["pose"]["subscribed"]:
                        break
                if time.monotonic() > deadline or view.poll() is not None:
                    raise SystemExit("the viewer did not subscribe")
        received: list[tuple[int, dict]] = []
        shard_statuses: dict[tuple[int, str], list[dict]] = {}  # (output, share) -> that service's statuses
        reps: list[tuple[int, dict]] = []

        async def collect(k: int, one):
            while True:
                topic, payload = await one.recv_multipart()
                now = time.time_ns()
                if topic == b"angles":
                    received.append((now, decode_angles(payload)))
                elif topic == b"status":
                    status = decode_status(payload)
                    shard_statuses.setdefault((k, status.get("worker", "")), []).append(status)
                elif topic == b"reps":
                    reps.append((now, decode_reps(payload)))

        def answered() -> int:
            return sum(m[-1]["frames_out"] + m[-1]["skipped"] for m in shard_statuses.values() if m)

        collectors = [asyncio.create_task(collect(k, one)) for k, one in enumerate(subs)]
        table = read_trc(trial)
        with busy_load(args.load) as loaders:
            cpu0, wall0 = sum(cpu_seconds(pid) for pid in family(procs)), time.monotonic()
            view_cpu0 = cpu_seconds(view.pid) if view is not None else 0.0
            load0 = [cpu_seconds(p) for p in loaders]
            people = [f"p{k}" for k in range(args.people)] if args.people > 1 else None
            sent = await replay(table, src, rate=1.0, wait_subscriber=10.0, subject=people)
            wall = time.monotonic() - wall0
            cpu = sum(cpu_seconds(pid) for pid in family(procs)) - cpu0
            view_cpu = cpu_seconds(view.pid) - view_cpu0 if view is not None else 0.0
            load_cpu = [cpu_seconds(p) - c for p, c in zip(loaders, load0, strict=False)]
            t_end = time.monotonic() + 10
            while time.monotonic() < t_end:  # the last answers, still under load
                await asyncio.sleep(0.2)
                if answered() >= sent:
                    break
        await asyncio.sleep(1.2)
        for collector in collectors:
            collector.cancel()
    finally:
        if view is not None:
            view.send_signal(signal.SIGINT)
            wait_or_kill(view, 60)
        for each_proc in procs:  # all told first, so that they stop together
            each_proc.send_signal(signal.SIGINT)
        for each_proc in procs:
            wait_or_kill(each_proc, 15)
        for one in subs:
            one.close(0)
        ctx.term()
    lat = np.array([(now - msg["sent_ns"]) / 1e6 for now, msg in received if msg.get("sent_ns")])
    times = np.array([now for now, _ in received]) / 1e9
    ordered = [shard_statuses[key] for key in sorted(shard_statuses)]
    final = dict(ordered[0][-1]) if ordered else {}
    if len(ordered) > 1:  # the counts are every service's together; the stage percentiles the first's
        lasts = [m[-1] for m in ordered if m]
        final["skipped"] = sum(m.get("skipped", 0) for m in lasts)
        final["rejected"] = {"all": sum(sum(m.get("rejected", {}).values()) for m in lasts)}
    return {
        "sent": sent,
        "received": received,
        "wall": wall,
        "cpu": cpu,
        "load_cpu": load_cpu,
        "latency": lat,
        "times": times,
        "status": final,
        "reps": reps,
        "viewer_cpu": view_cpu,
    }


def rep_timing(live: dict, truth) -> dict:
    """Rep events against the trial's true reps: count, and latency from the completing frame's sending and
    from the true end of each rep (the wall clock at which the source sent the trial time of that end)."""
    from kinestream.reps import detect_reps

    true_events, _ = detect_reps(truth)
    sent = sorted((msg["t"], msg["sent_ns"]) for _, msg in live["received"] if msg.get("sent_ns"))
    t_frames = np.array([t for t, _ in sent])
    ns_frames = np.array([ns for _, ns in sent], dtype=float)
    service, from_end = [], []
    for now, msg in live["reps"]:
        service.append((now - msg["sent_ns"]) / 1e6)
        end = min(true_events, key=lambda e: abs(e.end - msg["rep"]["end"])).end
        from_end.append((now - np.interp(end, t_frames, ns_frames)) / 1e6)
    return {
        "rep_events": len(live["reps"]),
        "true_reps": len(true_events),
        "rep_latency_ms_from_completing_frame": [round(x, 1) for x in service],
        "rep_latency_ms_from_true_end": [round(x, 1) for x in from_end],
    }


def summary(args, live: dict) -> dict:
    """What the live run measured. latency_ms / latency_max_ms: end to end, the source's sent_ns to the
    subscriber's receipt, over every answered frame; service_latency_ms and stages_ms: the service's own
    status (receipt to publication, and its stages); skipped: frames latest-wins dropped;
    service_cpu_percent: CPU the service process used while the trial was sent, % of one core (100 = one
    core busy); load_cpu_percent: the same for each --load process."""
    status, lat, times = live["status"], live["latency"], live["times"]
    return {
        "rate_hz": args.rate,
        "seconds": args.seconds,
        "solver": args.solver,
        "load": args.load,
        "people": args.people,
        "workers": args.workers,
        "shards": args.shards,
        "arms": not args.no_arms,
        "frames_sent": live["sent"],
        "frames_out": len(live["received"]),
        "skipped": status.get("skipped"),
        "rejected": sum(status.get("rejected", {}).values()),
        "input_rate_hz": round(live["sent"] / live["wall"], 1),
        "output_rate_hz": round((len(times) - 1) / (times[-1] - times[0]), 1) if len(times) > 1 else 0.0,
        "latency_ms": {f"p{p}": round(float(np.percentile(lat, p)), 2) for p in (50, 95, 99)} if lat.size else {},
        "latency_max_ms": round(float(lat.max()), 2) if lat.size else None,
        "service_latency_ms": status.get("latency_ms"),
        "stages_ms": {k: status.get(f"{k}_ms") for k in ("prepare", "wait", "ik")},
        "service_cpu_percent": round(100 * live["cpu"] / live["wall"], 1),
        "load_cpu_percent": [round(100 * c / live["wall"], 1) for c in live["load_cpu"]],
        "cores": os.cpu_count(),
        "loadavg": round(os.getloadavg()[0], 2),
    }


def offline_difference(live: dict, offline) -> dict:
    """Largest difference (deg) between the live angles and `process --streaming` on the same trial, model
    and solver, frame by frame (matched by time): over the leg coordinates, over all but the pelvis
    translations, which coordinate that is, and the trial time (s) of the largest leg difference."""
    m = offline.motion
    index = {round(float(t), 6): i for i, t in enumerate(m.time)}
    diffs, leg_at = {}, (0.0, None)
    for _, msg in live["received"]:
        i = index.get(round(float(msg["t"]), 6))
        if i is None:
            continue
        for k, name in enumerate(msg["coords"]):
            if name in m and not name.startswith("pelvis_t"):
                d = abs(float(msg["q"][k]) - m.values[i, m.names.index(name)])
                if np.isfinite(d):
                    diffs[name] = max(diffs.get(name, 0.0), d)
                    if name in LEGS and d > leg_at[0]:
                        leg_at = (d, float(msg["t"]))
    if not diffs:
        return {}
    return {
        "legs": round(max(diffs.get(n, 0.0) for n in LEGS), 4),
        "all": round(max(diffs.values()), 4),
        "worst": max(diffs, key=diffs.get),
        "legs_at_s": leg_at[1],
    }


def report(result: dict) -> str:
    """The main figures as a table (the JSON line has them all)."""
    lat, st = result["latency_ms"], result["stages_ms"]

    def pcts(d):
        return "/".join(str(d.get(k, "-")) for k in ("p50", "p95", "p99")) if d else "-"

    rows = [
        (
            "rate, solver, load, people, processes",
            f"{result['rate_hz']:g} Hz, {result['solver']}, {result['load']} busy processes, "
            f"{result.get('people', 1)} {'person' if result.get('people', 1) == 1 else 'people'}, "
            f"{result.get('workers', 1)} workers x {result.get('shards', 1)} serve",
        ),
        (
            "frames sent / out / skipped / rejected",
            f"{result['frames_sent']} / {result['frames_out']} / {result['skipped']} / {result['rejected']}",
        ),
        ("input / output rate Hz", f"{result['input_rate_hz']} / {result['output_rate_hz']}"),
        ("end-to-end latency ms p50/p95/p99, max", f"{pcts(lat)}, {result['latency_max_ms']}"),
        ("service latency ms p50/p95/p99", pcts(result["service_latency_ms"])),
        ("ik / prepare / wait ms p50/p95/p99", f"{pcts(st['ik'])} | {pcts(st['prepare'])} | {pcts(st['wait'])}"),
        (
            "service CPU % of one core",
            f"{result['service_cpu_percent']}"
            + (f" (load processes: {', '.join(map(str, result['load_cpu_percent']))})" if result["load"] else ""),
        ),
        ("reps: events / true", f"{result['rep_events']} / {result['true_reps']}"),
    ]
    if "max_diff_vs_process_streaming_deg" in result:
        d = result["max_diff_vs_process_streaming_deg"]
        rows.append(
            (
                "max |live - process --streaming| deg",
                f"legs {d.get('legs')} (at t = {d.get('legs_at_s')} s), all {d.get('all')} ({d.get('worst')})",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


HISTOGRAM_MS = (1.0, 2.0, 4.0, 8.3, 16.7, 33.3)  # ms: the frame periods of 120, 60 and 30 Hz among the edges


def histogram(latency_ms: np.ndarray) -> list[dict]:
    """End-to-end latencies counted in bins (ms), with each bin's share of the frames."""
    edges = np.array((0.0, *HISTOGRAM_MS, np.inf))
    counts, _ = np.histogram(latency_ms, edges)
    total = max(int(latency_ms.size), 1)
    return [
        {"from_ms": float(lo), "to_ms": None if np.isinf(hi) else float(hi), "frames": int(c), "share": c / total}
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


def histogram_report(bins: list[dict], period_ms: float) -> str:
    width = 50
    rows = []
    for b in bins:
        span = f"{b['from_ms']:g}-{b['to_ms']:g}" if b["to_ms"] is not None else f"> {b['from_ms']:g}"
        late = "" if b["to_ms"] is not None and b["to_ms"] <= period_ms + 1e-9 else "  (beyond the frame period)"
        bar = "#" * max(int(round(b["share"] * width)), 1 if b["frames"] else 0)
        rows.append(f"  {span.rjust(10)} ms  {b['frames']:6d}  {100 * b['share']:6.2f}%  {bar}{late}")
    return "\n".join(rows)


def runs_report(rows: list[dict]) -> str:
    lines = ["  run  out/sent  skipped  e2e p50/p95/p99 ms  max ms  service p99  ik p99"]
    for i, r in enumerate(rows, 1):
        lat = r["latency_ms"]
        lines.append(
            f"  {i:3d}  {r['frames_out']}/{r['frames_sent']}  {r['skipped']!s:>7}  "
            f"{lat.get('p50')}/{lat.get('p95')}/{lat.get('p99')}  {r['latency_max_ms']}  "
            f"{(r['service_latency_ms'] or {}).get('p99')}  {(r['stages_ms']['ik'] or {}).get('p99')}"
        )
    return "\n".join(lines)


def percentiles(values: np.ndarray) -> dict:
    return {f"p{p}": round(float(np.percentile(values, p)), 3) for p in (50, 95, 99)} if values.size else {}


def viewer_cost(runs: dict[str, list[dict]]) -> dict:
    """Latency without and with a viewer attached: end to end (pooled over the repeats' frames) and the
    service's own (receipt to publication, from each run's final status: its last 2000 frames), and the
    differences of the p99s, ms."""
    out: dict = {}
    for label, lives in runs.items():
        pooled = np.concatenate([live["latency"] for live in lives])
        out[label] = {
            "end_to_end_ms": percentiles(pooled),
            "end_to_end_p99_each_run_ms": [round(float(np.percentile(live["latency"], 99)), 3) for live in lives],
            "service_p99_each_run_ms": [live["status"].get("latency_ms", {}).get("p99") for live in lives],
            "skipped": [live["status"].get("skipped") for live in lives],
            "pose_sent": [live["status"].get("pose", {}).get("sent") for live in lives],
            "viewer_cpu_percent": [round(100 * live["viewer_cpu"] / live["wall"], 1) for live in lives],
        }
    without, with_ = out["without viewer"], out["with viewer"]
    out["p99_difference_ms"] = {
        "end_to_end": round(with_["end_to_end_ms"]["p99"] - without["end_to_end_ms"]["p99"], 3),
        "service_median_of_runs": round(
            float(np.median(with_["service_p99_each_run_ms"]) - np.median(without["service_p99_each_run_ms"])), 3
        ),
    }
    return out


def viewer_report(cost: dict) -> str:
    rows = []
    for label in ("without viewer", "with viewer"):
        c = cost[label]
        e = c["end_to_end_ms"]
        rows.append(
            (
                label,
                f"end to end p50/p95/p99 {e['p50']}/{e['p95']}/{e['p99']} ms (p99 each run "
                f"{c['end_to_end_p99_each_run_ms']}); service p99 each run {c['service_p99_each_run_ms']} ms; "
                f"skipped {c['skipped']}; poses sent {c['pose_sent']}"
                + (f"; viewer CPU {c['viewer_cpu_percent']} % of a core" if label == "with viewer" else ""),
            )
        )
    d = cost["p99_difference_ms"]
    rows.append(
        ("p99 with - without", f"end to end {d['end_to_end']:+} ms; service {d['service_median_of_runs']:+} ms")
    )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="input frame rate, Hz (default 60)")
    parser.add_argument("--seconds", type=float, default=20.0, help="trial length (default 20)")
    parser.add_argument(
        "--solver",
        choices=("fast", "opensim"),
        default="fast",
        help="IK solver, passed to `kinestream serve --solver` (default fast)",
    )
    parser.add_argument(
        "--load", type=int, default=0, metavar="N", help="busy processes spinning while the trial plays (default 0)"
    )
    parser.add_argument("--no-arms", action="store_true", help="IK without the elbow and wrist markers")
    parser.add_argument(
        "--people",
        type=int,
        default=1,
        metavar="N",
        help="N people in one stream (subjects p0 ... p(N-1)), each sending the trial at --rate (default 1: one, "
        "without a subject id)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="one serve process with --workers N: N worker processes behind one output (default 1: no workers)",
    )
    parser.add_argument(
        "--shards",
        type=int,
        default=1,
        metavar="K",
        help="K serve processes on the one source, each with --people k/K and its own output (default 1)",
    )
    parser.add_argument("--no-offline", action="store_true", help="skip the comparison with process --streaming")
    parser.add_argument(
        "--runs", type=int, default=1, metavar="N", help="play the session N times; a row each (default 1)"
    )
    parser.add_argument(
        "--viewer",
        action="store_true",
        help="run the session again with `kinestream view --save` attached and compare the latency",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="--viewer: sessions with and without it, each (default 1)"
    )
    args = parser.parse_args(argv)
    if args.load < 0:
        parser.error("--load must be 0 or more")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if args.people < 1:
        parser.error("--people must be 1 or more")
    if args.shards < 1:
        parser.error("--shards must be 1 or more")

    from kinestream.offline import process
    from kinestream.settings import Settings
    from kinestream.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        syn = synthesize(tmp / "syn", fs=args.rate, seconds=args.seconds, noise_mm=5.0)
        args.mass, args.height = syn.mass, syn.height
        settings = Settings().override({"ik": {"arms": not args.no_arms, "solver": args.solver}})
        config_path = tmp / "bench.toml"
        config_path.write_text(f"[ik]\narms = {'false' if args.no_arms else 'true'}\n")
        # the subject's model, scaled from the trial's standing phase as calibrate would
        scaled = process(syn.keypoints_trc, syn.mass, syn.height, tmp / "offline", settings, plot=False)
        lives = [asyncio.run(run(args, syn.keypoints_trc, scaled.scaled_model, config_path)) for _ in range(args.runs)]
        live = lives[0]
        runs: dict[str, list[dict]] = {"without viewer": [live], "with viewer": []}
        if args.viewer:
            for i in range(args.repeat):  # alternating, so that a drift of the machine touches both
                rrd = tmp / f"view{i}.rrd"
                runs["with viewer"].append(
                    asyncio.run(run(args, syn.keypoints_trc, scaled.scaled_model, config_path, rrd))
                )
                if i + 1 < args.repeat:
                    runs["without viewer"].append(
                        asyncio.run(run(args, syn.keypoints_trc, scaled.scaled_model, config_path))
                    )
        result = summary(args, live)
        result.update(rep_timing(live, syn.motion))
        if not args.no_offline and args.people == 1:  # several people: each one's angles are the same trial's
            offline = process(
                syn.keypoints_trc,
                syn.mass,
                syn.height,
                tmp / "streaming",
                settings,
                plot=False,
                streaming=True,
                model=scaled.scaled_model,
            )
            result["max_diff_vs_process_streaming_deg"] = offline_difference(live, offline)
        result["runs"] = [summary(args, each) for each in lives]
        result["histogram"] = histogram(np.concatenate([each["latency"] for each in lives]))
    print(report(result))
    if args.runs > 1:
        print(f"each of the {args.runs} runs:")
        print(runs_report(result["runs"]))
    print(f"end-to-end latency, {'all runs' if args.runs > 1 else 'the run'} (frame period {1000 / args.rate:.1f} ms):")
    print(histogram_report(result["histogram"], 1000 / args.rate))
    if args.viewer:
        result["viewer"] = viewer_cost(runs)
        print("a viewer attached (kinestream view --save, its own process):")
        print(viewer_report(result["viewer"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
