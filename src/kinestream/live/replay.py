"""Replay a recorded trial as a live keypoint source.

    kinestream replay TRIAL.trc [--rate 1.0|max] [--loop] [--endpoint tcp://127.0.0.1:5555]
                                [--subject NAME] [--wait-subscriber S] [--send-names]

The trial's frames go out as protocol version 1 keypoint messages
(``[b"keypoints", payload]``) on a ZeroMQ publisher that binds the endpoint:
the keypoint source binds, the service connects. Keypoint names are folded to
BODY_25 names; a trial whose keypoints are all BODY_25 ones is sent as layout
``BODY_25`` with the keypoints it lacks zero-filled (as OpenPose does),
anything else with ``names``. Missing values go out as zeros.

Timing follows the trial's own time column divided by ``rate`` on an absolute
schedule (frame k leaves at start + (t_k - t_0) / rate), so sleeping late on
one frame does not delay the next ones. A frame that falls behind schedule is
sent at once; none is skipped. ``rate`` "max" sends back to back, yielding to
the event loop between frames; ZeroMQ then drops what a slow subscriber cannot
take beyond its high-water mark (1000 messages), which is what a stress test of
the receiver wants to see.

``t`` is the trial's time; with ``loop`` each pass adds the trial's length plus
one frame period, so time keeps increasing. ``seq`` counts from 0 and never
restarts. ``sent_ns`` is the wall clock (time.time_ns) at send.

ZeroMQ drops what a publisher sends before a subscriber's subscription has
arrived ("slow joiner"). The publisher is an XPUB socket, which hands the
subscriptions it receives to the application: the replay waits (up to
``wait_subscriber`` seconds) until a subscription that matches ``keypoints``
is in effect, then starts the clock, so no frame is lost to a subscriber that
is already connecting.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path

import numpy as np
import zmq
import zmq.asyncio

from kinestream.errors import InputError, ProtocolError, SettingsError
from kinestream.files.trc import MarkerTable, read_trc
from kinestream.ingest import BODY_25, canonical
from kinestream.live.protocol import TOPIC_KEYPOINTS, encode_keypoints
from kinestream.live.settings import REPLAY_ENDPOINT, parse_rate
from kinestream.live.transport import check_bind, secure_client
from kinestream.settings import Settings

log = logging.getLogger(__name__)
LINGER_MS = 1000  # how long closing the socket may take to deliver queued frames
_SLEEP_SLICE = 0.1  # the longest single sleep, so a stop request is seen within it


def wire_frames(table: MarkerTable, send_names: bool = False) -> tuple[list[str] | None, np.ndarray]:
    """What replay sends for ``table``: the names and the keypoints.

    The names are None for layout BODY_25; the keypoints are (frames, N, 3) float32 with zeros where missing.
    """
    names = [canonical(n) for n in table.names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(
            f"the trial names keypoints {repeated} more than once (after folding aliases "
            f"such as Hip/midHip -> MidHip); it has {table.names}",
            given=repeated,
            valid="each keypoint named once",
        )
    xyz = np.nan_to_num(table.xyz, nan=0.0, posinf=0.0, neginf=0.0).astype("<f4")
    if send_names or not set(names) <= set(BODY_25):
        return names, xyz
    full = np.zeros((table.n_frames, len(BODY_25), 3), dtype="<f4")
    full[:, [BODY_25.index(n) for n in names]] = xyz
    return None, full


def _check_timing(table: MarkerTable) -> np.ndarray:
    """The trial's times relative to its first frame; raises when unusable."""
    if not (math.isfinite(table.rate) and table.rate > 0):
        raise InputError(
            f"the trial's frame rate {table.rate} is not a positive number",
            key="rate",
            given=table.rate,
            valid="a positive number",
        )
    time_s = np.asarray(table.time, dtype=float)
    if table.n_frames == 0:
        raise InputError("the trial holds no frames", given=table.n_frames, valid="at least one frame")
    if not np.isfinite(time_s).all():
        raise InputError(
            "the trial's Time column has blank or non-numeric cells", key="Time", valid="a number in every frame"
        )
    steps = np.diff(time_s)
    if (steps <= 0).any():
        k = int(np.argmax(steps <= 0)) + 1
        raise InputError(
            f"the trial's time does not increase: frame {k + 1} has t = {time_s[k]:.6f} s after {time_s[k - 1]:.6f} s",
            key="Time",
            given=float(time_s[k]),
            valid="times that increase",
        )
    return time_s - time_s[0]


async def _watch_subscriptions(sock, joined: asyncio.Event, started: float) -> None:
    """Reads the subscriptions an XPUB socket receives.

    Sets ``joined`` once a subscriber takes keypoints.
    """
    while True:
        msg = await sock.recv()
        if not msg or not TOPIC_KEYPOINTS.startswith(msg[1:]):
            continue
        if msg[0] == 1:
            if not joined.is_set():
                log.info(f"replay: a subscriber joined after {time.perf_counter() - started:.2f} s")
            joined.set()
        elif msg[0] == 0:
            log.info("replay: the last keypoint subscriber left")


async def _sleep_until(target: float, stop_event: asyncio.Event | None) -> None:
    while True:
        delay = target - time.perf_counter()
        if delay <= 0 or (stop_event is not None and stop_event.is_set()):
            return
        await asyncio.sleep(min(delay, _SLEEP_SLICE))


async def replay(
    table: MarkerTable | str | Path,
    endpoint: str = REPLAY_ENDPOINT,
    rate: float | str = 1.0,
    loop: bool = False,
    subject: str | list[str] | None = None,
    wait_subscriber: float = 1.0,
    stop_event: asyncio.Event | None = None,
    send_names: bool = False,
    settings: Settings | None = None,
) -> int:
    """Publish ``table`` (or the .trc at that path) on ``endpoint``.

    Returns the number of frames sent.

    ``rate`` is a speed factor or "max"; ``loop`` repeats until
    ``stop_event`` is set (or the task is cancelled). ``wait_subscriber``
    seconds (0: no wait, inf: until one comes) bound the wait for a
    subscriber before the first frame. What it does is logged at INFO.
    ``settings`` (its ``[curve]`` section; None: the defaults) makes the
    socket a CURVE client of the service, so only the service holding that
    key gets the frames; its ``[service]`` allow_remote lets it bind beyond
    this machine.
    ``subject``: the subject id the frames carry (None: none); a list of ids
    sends every frame once for each, one after another: several people in one
    stream, each with their own sequence numbers.
    """
    subjects = [subject] if subject is None or isinstance(subject, str) else list(subject)
    settings = settings if settings is not None else Settings()
    if not isinstance(table, MarkerTable):
        table = read_trc(table)
    rate = parse_rate(rate)
    if not (wait_subscriber >= 0):
        raise SettingsError(
            f"wait_subscriber {wait_subscriber} is not valid; give seconds >= 0 (inf: no limit)",
            key="wait_subscriber",
            given=wait_subscriber,
            valid="seconds >= 0",
        )
    rel = _check_timing(table)
    names, xyz = wire_frames(table, send_names)
    lap = rel[-1] + 1.0 / table.rate  # a pass lasts the trial plus one frame period
    source = table.meta.get("source", "trial")
    what = f"names ({len(names)} keypoints)" if names else "layout BODY_25"
    speed = "as fast as possible" if math.isinf(rate) else f"x{rate:g} ({table.rate * rate:g} Hz)"

    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    watcher = None
    sent = 0
    try:
        curve = secure_client(sock, settings.curve)  # inside: a key file it cannot read still closes the socket
        check_bind(endpoint, settings, "keypoint source")  # loopback unless service.allow_remote, as serve
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise ProtocolError(
                f"cannot bind {endpoint}: {exc.strerror}. Give a free endpoint such as "
                f"tcp://127.0.0.1:5556 (the replay binds; the service connects)",
                key="endpoint",
                given=endpoint,
                valid="a free endpoint",
            ) from None
        bound = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info(
            f"replay: {source}: {table.n_frames} frames at {table.rate:g} Hz, sent as {what}, {speed}, "
            f"on {bound}{' (looping)' if loop else ''}{', CURVE' if curve else ''}"
        )

        started = time.perf_counter()
        joined = asyncio.Event()
        watcher = asyncio.create_task(_watch_subscriptions(sock, joined, started))
        if wait_subscriber > 0:
            log.info(f"replay: waiting up to {wait_subscriber:g} s for a subscriber")
            waiter = asyncio.create_task(joined.wait())
            stopper = asyncio.create_task(stop_event.wait()) if stop_event is not None else None
            await asyncio.wait(
                [t for t in (waiter, stopper) if t],
                timeout=None if math.isinf(wait_subscriber) else wait_subscriber,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in (waiter, stopper):
                if task is not None:
                    task.cancel()
            if not joined.is_set() and not (stop_event is not None and stop_event.is_set()):
                log.info(
                    f"replay: no subscriber after {wait_subscriber:g} s; sending anyway (frames go nowhere "
                    f"until one subscribes)"
                )

        late_max = 0.0
        start = time.perf_counter()
        passes = 0
        while not (stop_event is not None and stop_event.is_set()):
            offset = passes * lap
            if passes:
                log.info(f"replay: pass {passes + 1} begins (t from {table.time[0] + offset:.3f} s)")
            for k in range(table.n_frames):
                if stop_event is not None and stop_event.is_set():
                    break
                if math.isinf(rate):
                    await asyncio.sleep(0)
                else:
                    target = start + (offset + rel[k]) / rate
                    await _sleep_until(target, stop_event)
                    if stop_event is not None and stop_event.is_set():
                        break
                    late_max = max(late_max, time.perf_counter() - target)
                for who in subjects:
                    payload = encode_keypoints(
                        passes * table.n_frames + k,
                        table.time[k] + offset,
                        xyz[k],
                        names=names,
                        subject=who,
                        sent_ns=time.time_ns(),
                    )
                    await sock.send_multipart([TOPIC_KEYPOINTS, payload])
                    sent += 1
            passes += 1
            if not loop:
                break
        elapsed = time.perf_counter() - start
        lateness = "" if math.isinf(rate) else f", at most {late_max * 1e3:.1f} ms behind schedule"
        log.info(f"replay: sent {sent} frames in {elapsed:.2f} s{lateness}")
        return sent
    finally:
        if watcher is not None:
            watcher.cancel()
            try:
                await watcher
            except (asyncio.CancelledError, Exception):
                pass
        sock.close()
        ctx.term()
