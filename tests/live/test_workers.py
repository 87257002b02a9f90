"""`kinestream serve --workers N` as its own process, over real sockets with real OpenSim and onnxruntime: the
people of one stream served by worker processes behind one input and one output, each person by one worker, as one
process serving them alone would; a worker killed costs only its own people until it is started again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import numpy as np
import pytest
import zmq
import zmq.asyncio
from test_people import Source

from broker import until, wait_until
from kinestream.files.mot import read_mot
from kinestream.live.messages import decode_angles, decode_status
from kinestream.live.protocol import TOPIC_KEYPOINTS, encode_keypoints
from kinestream.live.replay import wire_frames
from served import Served
from streamed import rotational_worst, streaming_motion

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out

NAMES = ("ana", "ben", "cy", "dan")


def _config(tmp_path, people: dict) -> str:
    """A settings file: every frame solved (the counts are exact) and each person's height and mass."""
    lines = ["[service]", "latest_wins = false", ""]
    for name, (height, mass) in people.items():
        lines += [f"[people.{name}]", f"height = {height}", f"mass = {mass}", ""]
    path = tmp_path / "workers.toml"
    path.write_text("\n".join(lines))
    return str(path)


class Heard:
    """What the service's output says: angles by subject, each worker's last status."""

    def __init__(self, out: str):
        self.out = out
        self.angles: dict[str, list[dict]] = {}
        self.workers: dict[str, dict] = {}

    async def run(self) -> None:
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, 0)
        for topic in (b"angles", b"status"):
            sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(self.out)
        try:
            while True:
                topic, payload = await sub.recv_multipart()
                if topic == b"angles":
                    msg = decode_angles(payload)
                    self.angles.setdefault(msg["subject"], []).append(msg)
                else:
                    status = decode_status(payload)
                    self.workers[status["worker"]] = status
        finally:
            sub.close(0)
            ctx.term()

    def seqs(self, name: str) -> list[int]:
        return [m["seq"] for m in self.angles.get(name, [])]

    def worker_of(self, name: str) -> str | None:
        return next((w for w, s in self.workers.items() if name in s.get("people", {})), None)


async def _play(source, tables: dict, k0: int, until_done, what: str, rate: float = 60.0, timeout: float = 120.0):
    """Frame k of each person's table (cycled: a stream as long as it takes) at ``rate``, k from ``k0``, until
    ``until_done()`` (``what``: an AssertionError saying so after ``timeout`` s); the next k."""
    wired = {name: wire_frames(table) for name, table in tables.items()}
    began, k = time.perf_counter(), k0
    while not until_done():
        assert time.perf_counter() - began < timeout, f"{what}: not within {timeout:.0f} s"
        delay = began + (k - k0) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the camera's pace, not a wait for a condition
        for name, (names, xyz) in wired.items():
            payload = encode_keypoints(k, k / rate, xyz[k % len(xyz)], names=names, subject=name)
            await source.pub.send_multipart([TOPIC_KEYPOINTS, payload])
        k += 1
    return k


def test_workers_serve_each_person_as_one_process_serving_them_alone(athletes, tmp_path, assets):
    """serve --workers 2 with four people in one stream at 60 Hz: the router gives each worker two (the one
    serving fewest takes a newcomer); every frame of every person is answered once, on the one output; each
    person's recording (SESSION_<name>.mot, written by their worker) equals process --streaming on their trial
    within 1e-6 deg; SIGTERM stops the parent and its workers with exit status 0 and no restart."""
    trials = {name: athletes[k % 3] for k, name in enumerate(NAMES)}
    config = _config(tmp_path, {name: (syn.height, syn.mass) for name, (syn, _) in trials.items()})
    record = tmp_path / "live" / "SESSION.mot"
    record.parent.mkdir()
    served = Served(tmp_path, "--config", config, "--workers", "2", "--record", str(record))
    heard = Heard(served.out)

    async def session() -> int:
        listening = asyncio.create_task(heard.run())
        await until(lambda: len(heard.workers) == 2, lambda: f"both workers' status; {served.log_text()}", 120.0)
        async with Source(served.src) as source:
            sent = await source.play({name: table for name, (_, table) in trials.items()})
        await until(
            lambda: all(len(heard.seqs(n)) == sent // len(NAMES) for n in NAMES),
            lambda: f"every frame answered: {[len(heard.seqs(n)) for n in NAMES]} of {sent // len(NAMES)} each",
            180.0,
        )
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        return sent

    sent = asyncio.run(session())
    frames = sent // len(NAMES)
    assignment = {name: heard.worker_of(name) for name in NAMES}
    assert sorted(assignment.values()) == ["0/2", "0/2", "1/2", "1/2"], assignment
    for name in NAMES:
        assert heard.seqs(name) == list(range(frames)), name  # each frame once, in order
    code, out = served.stop(signal.SIGTERM)
    assert code == 0, served.log_text()
    final = json.loads([ln for ln in out.splitlines() if ln.startswith('{"workers"')][-1])
    assert final["restarts"] == [0, 0] and final["healthy"] and final["refused"] == 0
    for name, (syn, _) in trials.items():
        # serve's: the generic model, unscaled, with each person's height and mass
        offline = streaming_motion(syn.keypoints_trc, syn.mass, syn.height, tmp_path / "offline" / name)
        recorded = read_mot(record.with_name(f"SESSION_{name}.mot"))
        assert recorded.values.shape == offline.values.shape, name
        worst = rotational_worst(recorded, offline)
        print(f"{name}: serve --workers 2 vs process --streaming, worst coordinate differs by {worst:.2e} deg")
        assert worst < 1e-6, name


def test_a_killed_worker_costs_only_its_own_people_until_it_is_started_again(athletes, tmp_path):
    """Four people on two workers; one worker is killed (SIGKILL) mid-stream. The other worker's two people have
    every frame answered, before, during and after; the killed worker's people are answered again once the
    parent has started it again (a new process), and the parent says so (one restart)."""
    trials = {name: athletes[k % 3] for k, name in enumerate(NAMES)}
    config = _config(tmp_path, {name: (syn.height, syn.mass) for name, (syn, _) in trials.items()})
    served = Served(tmp_path, "--config", config, "--workers", "2")
    heard = Heard(served.out)
    tables = {name: table for name, (_, table) in trials.items()}

    async def session() -> tuple[int, str, list[str], int]:
        listening = asyncio.create_task(heard.run())
        await until(lambda: len(heard.workers) == 2, lambda: f"both workers' status; {served.log_text()}", 120.0)
        async with Source(served.src) as source:
            k = await _play(  # until everyone is answered, and in a worker's status (once a second)
                source,
                tables,
                0,
                lambda: all(len(heard.seqs(n)) >= 30 and heard.worker_of(n) for n in NAMES),
                "everyone answered 30 times",
            )
            victim = heard.worker_of(NAMES[0])
            assert victim is not None, heard.workers
            theirs = [n for n in NAMES if heard.worker_of(n) == victim]
            pid = heard.workers[victim]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed_at = k
            k = await _play(
                source,
                tables,
                k,
                lambda: heard.workers[victim]["pid"] != pid and all(max(heard.seqs(n)) > killed_at for n in theirs),
                "the killed worker started again and its people answered again",
            )
        await until(
            lambda: all(heard.seqs(n)[-1:] == [k - 1] for n in NAMES if n not in theirs),
            lambda: f"the others' last frame {k - 1} answered: {[heard.seqs(n)[-1:] for n in NAMES]}",
            120.0,
        )
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        return k, victim, theirs, killed_at

    sent, victim, theirs, killed_at = asyncio.run(session())
    others = [n for n in NAMES if n not in theirs]
    assert len(theirs) == 2 and len(others) == 2
    for name in others:  # every frame answered once, in order, the kill notwithstanding
        assert heard.seqs(name) == list(range(sent)), name
    for name in theirs:  # answered before the kill and again after the restart
        seqs = heard.seqs(name)
        assert seqs[:30] == list(range(30)) and seqs[-1] > killed_at, name
        assert np.all(np.diff(seqs) > 0), name
    code, out = served.stop(signal.SIGTERM)
    assert code == 0, served.log_text()
    final = json.loads([ln for ln in out.splitlines() if ln.startswith('{"workers"')][-1])
    assert final["restarts"] == [1 if w == victim else 0 for w in ("0/2", "1/2")], final
    assert "started again" in served.log_text()


def test_a_stop_while_the_workers_start_ends_them_cleanly(tmp_path):
    """SIGTERM to the process group (as systemd stops a unit) while a worker is still starting: the worker gets it
    twice (from the group, then from the parent). Still starting, it ends by the signal or, once it has taken it
    (loading OpenSim), as asked (0); either way it served no one, and serve ends cleanly (exit status 0)."""
    served = Served(tmp_path, "--workers", "1")
    wait_until(lambda: "worker 0/1 started" in served.log_text(), lambda: f"the worker started: {served.log_text()}")
    code, out = served.stop(signal.SIGTERM)
    assert code == 0, served.log_text()
    assert json.loads(out.strip().splitlines()[-1])["exit_status"] in ([0], [-signal.SIGTERM])


def test_a_stop_while_the_workers_serve_ends_each_with_status_0(tmp_path):
    """Serving, a worker takes the group's SIGTERM as a request to stop and drains; the parent's SIGTERM after it,
    which may come as the worker winds down, only notes it again: every worker ends with status 0."""
    served = Served(tmp_path, "--workers", "2")
    wait_until(lambda: served.log_text().count("serving: keypoints from") == 2, lambda: served.log_text(), 120.0)
    code, out = served.stop(signal.SIGTERM)
    assert code == 0, served.log_text()
    assert json.loads(out.strip().splitlines()[-1])["exit_status"] == [0, 0]
