"""What a running service counts and times: frames in and out, skips, rejections, latency percentiles."""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Metrics:
    """Counters and latency of a running service (printed and published on `status`)."""

    started: float = field(default_factory=time.monotonic)
    frames_in: int = 0
    others: int = 0  # frames of subjects another service serves (service.people)
    frames_out: int = 0
    skipped: int = 0
    ik_failures: int = 0
    resets: int = 0
    rejected: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)  # handshakes refused per socket (CURVE, not ZeroMQ)
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    ik_ms: deque = field(default_factory=lambda: deque(maxlen=2000))
    prepare_ms: deque = field(default_factory=lambda: deque(maxlen=2000))  # decode, clean, augment
    wait_ms: deque = field(default_factory=lambda: deque(maxlen=2000))  # prepared, waiting for IK
    out_times: deque = field(default_factory=lambda: deque(maxlen=600))
    last_angles: dict = field(default_factory=dict)
    reps: int = 0
    last_rep: dict | None = None

    def __post_init__(self) -> None:
        """Start the throttled logger of rejected frames."""
        self._log_every = Throttled(logging.getLogger("kinestream.live.service"))

    def reject(self, reason: str, detail: str = "", counted_by: dict | None = None) -> None:
        """A rejected frame counted under ``reason`` and logged (a line per reason every 5 s at most).

        A flood must not flood the log. ``counted_by``: the counts of who counted it already (the decoder's).
        """
        if counted_by is None:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1
        so_far = (counted_by or self.rejected).get(reason, 0)
        what = f"{reason}: {detail}" if detail else reason
        self._log_every(reason, logging.WARNING, "rejected a frame (%s); %d so far", what, so_far)

    def percentiles(self, values) -> dict:
        """The nearest-rank 50th, 95th and 99th percentiles of ``values``, rounded to 0.01; None each when empty."""
        if not values:
            return {"p50": None, "p95": None, "p99": None}
        arr = np.fromiter(values, float, len(values))
        k = np.clip(np.ceil(np.array([0.50, 0.95, 0.99]) * arr.size).astype(int) - 1, 0, arr.size - 1)
        p = np.partition(arr, k)[k]  # nearest-rank percentiles: one partial sort, a fifth of np.percentile's time
        return {"p50": round(float(p[0]), 2), "p95": round(float(p[1]), 2), "p99": round(float(p[2]), 2)}

    def out_rate(self) -> float:
        """The rate of frames out (Hz), over the times kept in :attr:`out_times`; 0.0 until two are kept."""
        if len(self.out_times) < 2:
            return 0.0
        span = self.out_times[-1] - self.out_times[0]
        return (len(self.out_times) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict:
        """The service's totals as the status publishes them."""
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "frames_in": self.frames_in,
            "others": self.others,
            "frames_out": self.frames_out,
            "skipped": self.skipped,
            "ik_failures": self.ik_failures,
            "resets": self.resets,
            "rejected": dict(self.rejected),
            "refused": dict(self.refused),
            "rate_hz": round(self.out_rate(), 1),
            "latency_ms": self.percentiles(self.latency_ms),
            "ik_ms": self.percentiles(self.ik_ms),
            "prepare_ms": self.percentiles(self.prepare_ms),
            "wait_ms": self.percentiles(self.wait_ms),
            "reps": self.reps,
            "last_rep_depth_deg": self.last_rep["knee_peak"] if self.last_rep else None,
            "last_rep_cues": list(self.last_rep.get("cues", [])) if self.last_rep else [],
        }

    def line(self, status: dict) -> str:
        """The terminal status line, from a :meth:`Service.status` snapshot.

        When people other than the default one are served, the totals and then one line per person (their frames, angles
        and reps).
        """
        lat = status["latency_ms"]
        people = status.get("people") or {}
        several = len(people) > 1 or any(name != status.get("subject") for name in people)
        lag = f" + filter {status['filter_delay_ms']:.0f}" if status.get("filter_delay_ms") is not None else ""
        head = (
            f"{status['rate_hz']:5.1f} Hz  in {status['frames_in']} out {status['frames_out']} skipped "
            f"{status['skipped']} rejected {sum(status['rejected'].values())}  latency p50/p95/p99 "
            f"{lat['p50']}/{lat['p95']}/{lat['p99']}{lag} ms"
        )
        if not several:
            return f"{head}  {_angles(self.last_angles)}{_reps(status)}"
        lines = [f"{head}  {len(people)} people"]
        for name, person in people.items():
            lines.append(
                f"  {name}: in {person['frames_in']} out {person['frames_out']} skipped {person['skipped']}  "
                f"{_angles(person['angles'])}{_reps(person)}"
            )
        return "\n".join(lines)


def _angles(angles: dict) -> str:
    return " ".join(f"{k.replace('_angle', '').replace('_flexion', '')} {v:5.1f}" for k, v in angles.items())


def _reps(status: dict) -> str:
    reps = ""
    if status.get("reps"):
        reps = f"  reps {status['reps']}, last {status['last_rep_depth_deg']} deg"
        if status.get("last_rep_cues"):
            reps += ": " + ", ".join(status["last_rep_cues"])
    return reps


class Throttled:
    """A logger that says one line per key every ``every_s`` seconds at most.

    A flood of bad frames must not flood the log.
    """

    def __init__(self, logger: logging.Logger, every_s: float = 5.0):
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, level: int, msg: str, *args) -> None:
        """Log ``msg % args`` at ``level`` unless a line of ``key`` was logged less than ``every_s`` seconds ago."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) > self.every_s:
            self._last[key] = now
            self.logger.log(level, msg, *args)
