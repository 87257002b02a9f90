#!/usr/bin/env python
"""End-to-end benchmark of the live service over loopback.

Starts `kinestream serve` as its own process (with its IK workers), replays a
synth squat trial made at the given rate into it with real timing, subscribes
to the angles, and prints one JSON line: input and output rate, frames
skipped, end-to-end latency p50/p95/p99 (the source's sent_ns to the
subscriber's receipt), the service's CPU use, the largest angle
difference between the live output and `process --streaming` on the same
trial and model (leg coordinates, and all), and the squat reps: how many rep
events came (against the trial's squats) and how late, measured two ways:
from the sending of the frame that completed the rep (the service's part),
and from the moment the rep truly ended (the true knee angle crossing the
rep threshold; this adds the causal filter's delay and the pipeline's knee
error near the threshold).

    .venv/bin/python scripts/bench_service.py --rate 60 --seconds 20 [--workers 2] [--no-arms]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    """User + system CPU of a process and its live children (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


async def run(args, trial, model, config_path) -> dict:
    import zmq
    import zmq.asyncio

    from kinestream.protocol import decode_angles, decode_reps, decode_status
    from kinestream.replay import replay
    from kinestream.trc import read_trc

    src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "kinestream", "--config", str(config_path), "serve", "--input", src, "--output", out,
           "--model", str(model), "--workers", str(args.workers), "--mass", str(args.mass), "--height",
           str(args.height)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    ctx = zmq.asyncio.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 100000)
    sub.connect(out)
    try:
        deadline = time.monotonic() + 120
        while True:  # the service is up once it publishes its status
            if await sub.poll(200) and (await sub.recv_multipart())[0] == b"status":
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the service did not start")
        received: list[tuple[int, dict]] = []
        statuses: list[dict] = []
        reps: list[tuple[int, dict]] = []

        async def collect():
            while True:
                topic, payload = await sub.recv_multipart()
                now = time.time_ns()
                if topic == b"angles":
                    received.append((now, decode_angles(payload)))
                elif topic == b"status":
                    statuses.append(decode_status(payload))
                elif topic == b"reps":
                    reps.append((now, decode_reps(payload)))

        collector = asyncio.create_task(collect())
        table = read_trc(trial)
        cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
        sent = await replay(table, src, rate=1.0, wait_subscriber=10.0)
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(proc.pid) - cpu0
        t_end = time.monotonic() + 10
        while time.monotonic() < t_end:
            await asyncio.sleep(0.2)
            if statuses and statuses[-1]["frames_out"] + statuses[-1]["skipped"] >= sent:
                break
        await asyncio.sleep(1.2)
        collector.cancel()
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        sub.close(0)
        ctx.term()
    lat = np.array([(now - msg["sent_ns"]) / 1e6 for now, msg in received if msg.get("sent_ns")])
    times = np.array([now for now, _ in received]) / 1e9
    final = statuses[-1] if statuses else {}
    return {"sent": sent, "received": received, "wall": wall, "cpu": cpu, "latency": lat, "times": times,
            "status": final, "reps": reps}


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
    return {"rep_events": len(live["reps"]), "true_reps": len(true_events),
            "rep_latency_ms_from_completing_frame": [round(x, 1) for x in service],
            "rep_latency_ms_from_true_end": [round(x, 1) for x in from_end]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=60.0, help="input frame rate, Hz (default 60)")
    parser.add_argument("--seconds", type=float, default=20.0, help="trial length (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="IK worker processes (default 2)")
    parser.add_argument("--no-arms", action="store_true", help="IK without the elbow and wrist markers")
    parser.add_argument("--no-offline", action="store_true", help="skip the comparison with process --streaming")
    args = parser.parse_args(argv)

    from kinestream.config import load_config
    from kinestream.pipeline import process
    from kinestream.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        syn = synthesize(tmp / "syn", fs=args.rate, seconds=args.seconds, noise_mm=5.0)
        args.mass, args.height = syn.mass, syn.height
        config = load_config()
        config["ik"]["arms"] = not args.no_arms
        config_path = tmp / "bench.toml"
        config_path.write_text(f"[ik]\narms = {'false' if args.no_arms else 'true'}\n")
        quiet = lambda *_: None  # noqa: E731
        # the subject's model, scaled from the trial's standing phase as calibrate would
        scaled = process(syn.keypoints_trc, syn.mass, syn.height, tmp / "offline", config, plot=False, log=quiet)
        live = asyncio.run(run(args, syn.keypoints_trc, scaled.scaled_model, config_path))
        result = {"rate_hz": args.rate, "seconds": args.seconds, "workers": args.workers, "arms": not args.no_arms,
                  "frames_sent": live["sent"], "frames_out": len(live["received"]),
                  "skipped": live["status"].get("skipped"), "rejected": sum(live["status"].get("rejected", {}).values()),
                  "input_rate_hz": round(live["sent"] / live["wall"], 1),
                  "output_rate_hz": round((len(live["times"]) - 1) / (live["times"][-1] - live["times"][0]), 1)
                  if len(live["times"]) > 1 else 0.0,
                  "latency_ms": {f"p{p}": round(float(np.percentile(live["latency"], p)), 2) for p in (50, 95, 99)},
                  "latency_max_ms": round(float(live["latency"].max()), 2),
                  "service_latency_ms": live["status"].get("latency_ms"),
                  "stages_ms": {k: live["status"].get(f"{k}_ms") for k in ("prepare", "wait", "ik", "ipc")},
                  "cpu_percent": round(100 * live["cpu"] / live["wall"], 1), "cores": os.cpu_count(),
                  "loadavg": round(os.getloadavg()[0], 2)}
        result.update(rep_timing(live, syn.motion))
        if not args.no_offline:
            offline = process(syn.keypoints_trc, syn.mass, syn.height, tmp / "streaming", config, plot=False,
                              log=quiet, streaming=True, model=scaled.scaled_model)
            m = offline.motion
            index = {round(float(t), 6): i for i, t in enumerate(m.time)}
            diffs = {}
            for _, msg in live["received"]:
                i = index.get(round(float(msg["t"]), 6))
                if i is None:
                    continue
                for k, name in enumerate(msg["coords"]):
                    if name in m and not name.startswith("pelvis_t"):
                        d = abs(float(msg["q"][k]) - m.values[i, m.names.index(name)])
                        if np.isfinite(d):
                            diffs[name] = max(diffs.get(name, 0.0), d)
            result["max_diff_vs_process_streaming_deg"] = {
                "legs": round(max(diffs.get(n, 0.0) for n in LEGS), 4), "all": round(max(diffs.values()), 4),
                "worst": max(diffs, key=diffs.get)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
