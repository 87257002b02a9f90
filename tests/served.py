"""`python -m kinestream serve` as its own process on free loopback ports, for tests that signal,
kill or measure it."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import zmq

from broker import DEADLINE_S, free_port, wait_until
from kinestream.live.replay import replay

ROOT = Path(__file__).resolve().parents[1]


class Served:
    """`python -m kinestream serve` on free loopback ports, its status read from the output socket."""

    def __init__(self, tmp: Path, *extra: str):
        self.src, self.out = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
        self.log = open(tmp / "serve.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kinestream", "serve", "--input", self.src, "--output", self.out, *extra],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )  # its own process group, as under systemd
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"status")
        self.sub.connect(self.out)

    def log_text(self, tail: int = 3000) -> str:
        """The end of what the service has logged (stderr)."""
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()[-tail:]

    def status(self, timeout: float = 90.0) -> dict:
        """The newest status the service has published (waiting for one if none is queued)."""
        from kinestream.live.messages import decode_status

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, Path(self.log.name).read_text()[-2000:]
            if self.sub.poll(200):
                latest = self.sub.recv_multipart()[1]
                while self.sub.poll(0):  # the newest status, not one queued earlier
                    latest = self.sub.recv_multipart()[1]
                return decode_status(latest)
        raise AssertionError("no status from the service")

    def status_when(self, holds, what: str, timeout: float = 2 * DEADLINE_S) -> dict:
        """The first status for which ``holds(status)`` is true; after ``timeout`` s an AssertionError
        saying ``what`` was awaited, with the last status seen."""
        seen = {}

        def check() -> bool:
            seen["status"] = self.status()
            return holds(seen["status"])

        wait_until(check, lambda: f"{what}; the last status: {seen.get('status')}", timeout)
        return seen["status"]

    def settled(self, timeout: float = 2 * DEADLINE_S) -> dict:
        """A status once the service is idle: every frame in answered (solved or skipped), and no frame
        arrived since the status before (one status interval). Frames still in flight from a source that
        was just killed have arrived by then."""
        last = {"status": self.status()}

        def idle(status: dict) -> bool:
            before, last["status"] = last["status"], status
            return (
                status["frames_in"] == before["frames_in"]
                and status["frames_out"] + status["skipped"] == status["frames_in"]
            )

        return self.status_when(idle, "the service to settle (no new frame, every frame answered)", timeout)

    def rss_mb(self) -> float:
        """Resident memory of the service process, MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS in /proc")

    def fds(self) -> int:
        """Open file descriptors of the service process."""
        return len(list(Path(f"/proc/{self.proc.pid}/fd").iterdir()))

    def stop(self, sig=signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig`` to the service's whole process group (as systemd stops a unit); the exit code and what
        the service printed on stdout."""
        os.killpg(self.proc.pid, sig)
        out, _ = self.proc.communicate(timeout=30)
        self.sub.close(0)
        self.log.close()
        return self.proc.returncode, out


def feed(table, endpoint, seconds=None) -> int:
    """Replay ``table`` (its first ``seconds``) into the service in real time once it subscribes;
    the number of frames sent."""
    frames = table if seconds is None else table.frames(0, int(seconds * table.rate))
    return asyncio.run(replay(frames, endpoint, wait_subscriber=DEADLINE_S))
