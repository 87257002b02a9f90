#!/usr/bin/env python
"""Soak the live service: a looping 60 Hz session for minutes, memory and file descriptors sampled.

Starts `kinestream serve` as its own process on free loopback ports,
replays a synth squat trial into it in a loop at its real rate, reads the
angles and status, and every --every seconds prints one line: RSS of the
service (MB), its open file descriptors and threads, frames in / out /
skipped / rejected, angles received, p99 latency. At the end a verdict:
RSS growth after the warm-up and its fitted slope, the range of file
descriptor (and thread) counts, and the frame accounting. Exit status 0 when
the bounds hold, 1 otherwise.

    .venv/bin/python scripts/soak.py [--minutes 10] [--every 30] [--rate 60] [--attacks] [--json FILE]

``--attacks`` runs the output socket's attackers alongside, for the whole
session: a subscriber that holds 20,000 topics and toggles half of them again
and again, a raw ZMTP peer that subscribes with a 1 MB topic (hung up on, it
connects again), and a peer that speaks no ZeroMQ at all (ZeroMQ holds it
until its handshake interval, 30 s, ends: counted as kept after 10 s). The
verdict is the same: every frame answered, memory and descriptors flat, the
status published.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_usage(pid: int) -> tuple[float, int, int]:
    """(RSS MB, open fds, threads) of one process."""
    rss, threads = 0.0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


@dataclass
class Sample:
    elapsed_s: float
    rss_mb: float
    fds: int
    threads: int
    frames_in: int
    frames_out: int
    skipped: int
    rejected: int
    received: int
    p99_ms: float | None


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    sent: int = 0
    final: dict = field(default_factory=dict)
    received: int = 0
    alive: bool = True
    attacks: dict = field(default_factory=dict)  # rounds of each attack (--attacks)
    statuses: list = field(default_factory=list)  # arrival times of the status messages

    def verdict(self, warmup_s: float, max_growth_mb: float, max_fd_change: int) -> dict:
        after = [s for s in self.samples if s.elapsed_s >= warmup_s] or self.samples[-1:]
        t = np.array([s.elapsed_s for s in after])
        rss = np.array([s.rss_mb for s in after])
        slope = float(np.polyfit(t, rss, 1)[0]) * 600 if len(after) >= 3 else float("nan")
        fds = [s.fds for s in after]
        f = self.final
        answered = f.get("frames_out", 0) + f.get("skipped", 0)
        out = {
            "rss_growth_mb": round(float(rss[-1] - rss[0]), 2),
            "rss_slope_mb_per_10min": round(slope, 2),
            "fds": [min(fds), max(fds)],
            "threads": [min(s.threads for s in after), max(s.threads for s in after)],
            "sent": self.sent,
            "frames_in": f.get("frames_in"),
            "answered": answered,
            "solved": f.get("frames_out", 0),
            "skipped": f.get("skipped", 0),
            "rejected": sum(f.get("rejected", {}).values()),
            "received": self.received,
            "alive": self.alive,
            "attacks": dict(self.attacks),
            "longest_status_gap_s": round(float(np.max(np.diff(self.statuses))), 2) if len(self.statuses) > 1 else None,
        }
        # every frame solved and published: a skipped frame is accounted for, not answered
        out["ok"] = bool(
            self.alive
            and out["rss_growth_mb"] < max_growth_mb
            and max(fds) - min(fds) <= max_fd_change
            and f.get("frames_in") == self.sent
            and out["solved"] == self.sent
            and out["rejected"] == 0
        )
        return out


ZMTP_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
_READY = bytes([5]) + b"READY" + bytes([11]) + b"Socket-Type" + (3).to_bytes(4, "big") + b"SUB"
ZMTP_READY_SUB = bytes([0x04, len(_READY)]) + _READY


async def attack(out: str, stop: asyncio.Event, tally: dict) -> None:
    """The output socket's attackers (see ``--attacks``), until ``stop``; ``tally`` counts their rounds."""
    import zmq
    import zmq.asyncio

    host, port = out[len("tcp://") :].rsplit(":", 1)
    ctx = zmq.asyncio.Context()
    flood = ctx.socket(zmq.SUB)
    flood.setsockopt(zmq.SNDHWM, 0)  # every subscription sent
    flood.connect(out)
    for k in range(20_000):
        flood.setsockopt(zmq.SUBSCRIBE, f"topic-{k}".encode())

    async def toggle():
        while not stop.is_set():
            for k in range(0, 20_000, 2):
                flood.setsockopt(zmq.UNSUBSCRIBE, f"topic-{k}".encode())
            for k in range(0, 20_000, 2):
                flood.setsockopt(zmq.SUBSCRIBE, f"topic-{k}".encode())
            tally["toggles"] = tally.get("toggles", 0) + 1
            await asyncio.sleep(1.0)

    async def raw(payload: bytes, key: str):
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                writer.write(payload)
                await writer.drain()
                await asyncio.wait_for(reader.read(), 10.0)  # until the service hangs up
                tally[key] = tally.get(key, 0) + 1
            except ConnectionError:  # hung up while we were still writing
                tally[key] = tally.get(key, 0) + 1
            except TimeoutError:
                tally[key + "_kept"] = tally.get(key + "_kept", 0) + 1
            finally:
                writer.close()
            await asyncio.sleep(0.5)

    big = ZMTP_GREETING + ZMTP_READY_SUB + bytes([0x02]) + (1_000_001).to_bytes(8, "big") + b"\x01" + b"s" * 1_000_000
    tasks = [
        asyncio.create_task(toggle()),
        asyncio.create_task(raw(big, "oversized_hung_up")),
        asyncio.create_task(raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 100, "not_zmtp_hung_up")),
    ]
    try:
        await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        flood.close(0)
        ctx.term()


async def soak(minutes: float, every: float, rate: float = 60.0, say=print, attacks: bool = False) -> SoakResult:
    import zmq
    import zmq.asyncio

    from kinestream.files.trc import read_trc
    from kinestream.live.messages import decode_status
    from kinestream.live.replay import replay
    from kinestream.synth import synthesize

    result = SoakResult()
    with tempfile.TemporaryDirectory() as tmp:
        trial = synthesize(Path(tmp) / "trial", fs=rate, seconds=12.0, noise_mm=5.0, gaps=4)
        src, out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        log = open(Path(tmp) / "serve.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kinestream",
                "serve",
                "--input",
                src,
                "--output",
                out,
                "--mass",
                str(trial.mass),
                "--height",
                str(trial.height),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
        )
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(out)
        status: dict = {}
        statuses: list[float] = []  # when each status arrived
        stop = asyncio.Event()

        async def collect():
            nonlocal status
            while True:
                topic, payload = await sub.recv_multipart()
                if topic == b"angles":
                    result.received += 1
                elif topic == b"status":
                    status = decode_status(payload)
                    statuses.append(time.monotonic())

        collector = asyncio.create_task(collect())
        try:
            deadline = time.monotonic() + 120
            while not status:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the service did not start:\n{(Path(tmp) / 'serve.log').read_text()[-2000:]}")
                await asyncio.sleep(0.2)
            source = asyncio.create_task(
                replay(read_trc(trial.keypoints_trc), src, loop=True, stop_event=stop, wait_subscriber=10.0)
            )
            attackers = asyncio.create_task(attack(out, stop, result.attacks)) if attacks else None
            start = time.monotonic()
            say(
                f"{'s':>6} {'RSS MB':>7} {'fds':>4} {'thr':>4} {'in':>7} {'out':>7} {'skip':>5} {'rej':>4} "
                f"{'recv':>7} {'p99 ms':>7}"
            )
            while True:
                await asyncio.sleep(min(every, max(0.0, start + minutes * 60 - time.monotonic())))
                if proc.poll() is not None:
                    result.alive = False
                    break
                rss, fds, threads = proc_usage(proc.pid)
                s = Sample(
                    round(time.monotonic() - start, 1),
                    round(rss, 1),
                    fds,
                    threads,
                    status.get("frames_in", 0),
                    status.get("frames_out", 0),
                    status.get("skipped", 0),
                    sum(status.get("rejected", {}).values()),
                    result.received,
                    status.get("latency_ms", {}).get("p99"),
                )
                result.samples.append(s)
                say(
                    f"{s.elapsed_s:6.0f} {s.rss_mb:7.1f} {s.fds:4d} {s.threads:4d} {s.frames_in:7d} "
                    f"{s.frames_out:7d} {s.skipped:5d} {s.rejected:4d} {s.received:7d} {s.p99_ms!s:>7}"
                )
                if time.monotonic() - start >= minutes * 60:
                    break
            stop.set()
            result.sent = await source
            if attackers is not None:
                await attackers
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # the last frames answered and counted in a status
                await asyncio.sleep(0.5)
                if (
                    status.get("frames_in") == result.sent
                    and status.get("frames_out", 0) + status.get("skipped", 0) == result.sent
                ):
                    break
            result.final = status
            result.statuses = statuses
        finally:
            collector.cancel()
            await asyncio.gather(collector, return_exceptions=True)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            sub.close(0)
            ctx.term()
            log.close()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples (default 30)")
    parser.add_argument("--rate", type=float, default=60.0, help="frame rate, Hz (default 60)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before growth is measured (default: 60, or a fifth of a shorter run)",
    )
    parser.add_argument("--max-growth-mb", type=float, default=30.0, help="RSS growth allowed after the warm-up")
    parser.add_argument("--max-fd-change", type=int, default=2, help="file descriptor change allowed")
    parser.add_argument("--attacks", action="store_true", help="attack the output socket all along (see above)")
    parser.add_argument("--json", help="write the samples and the verdict to this file")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(soak(args.minutes, args.every, args.rate, attacks=args.attacks))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    warmup = args.warmup if args.warmup is not None else min(60.0, args.minutes * 12)
    verdict = result.verdict(warmup, args.max_growth_mb, args.max_fd_change)
    print(json.dumps(verdict))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"samples": [asdict(s) for s in result.samples], "verdict": verdict}, indent=1)
        )
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
