"""serve --workers N: the people of one stream served by N worker processes behind one input and one output.

    keypoint source --SUB (as serve's: CURVE, bind_input)--> Router: each subject pinned to one worker, a newcomer
                                                            to the worker serving fewest people
        --PUB, a private ipc endpoint each--> worker k: a Service serving whoever the router sends it
        --PUB, connected--> Relay (XSUB, a private ipc endpoint) --XPUB, bound where --output says--> subscribers

The parent holds the input and the output; the workers hold the people. A worker's people get exactly the frames,
and so the angles, that one process serving them alone would give. The router reads only whose each frame is (the
decoder's limits, not its checks: a frame it cannot place goes to the first worker, which refuses and counts it);
frames without a subject are the default person's, always the first worker's. The relay is ZeroMQ's own proxy (a
thread of C, no Python per message) between the workers' outputs and the subscribers, and passes the subscribers'
subscriptions up to every worker (the pose topic is made only while someone subscribes). :class:`Workers` starts
the processes and starts again one that ends before it is told to stop: a crashed worker costs only its people,
for the second or two it takes to start again.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kinestream.errors import SettingsError
from kinestream.live.messages import decode_status
from kinestream.live.people import share
from kinestream.live.protocol import FrameDecoder, Rejected
from kinestream.live.service import SUBSCRIPTION_MAX_BYTES, SUBSCRIPTION_QUEUE
from kinestream.live.transport import Access, check_bind, open_input, open_output
from kinestream.settings import Settings

log = logging.getLogger("kinestream.live.workers")

MAX_WORKERS = 64


def check_workers(n: int) -> int:
    """The number of workers, or KinestreamError saying what is valid."""
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_WORKERS:
        raise SettingsError(
            f"workers {n!r} (serve --workers) is not valid; give a whole number from 1 to 64",
            key="--workers",
            given=n,
            valid=(1, MAX_WORKERS),
        )
    return n


class Relay:
    """The parent's output: an XPUB bound on ``endpoint`` and an XSUB that the workers' outputs connect to.

    The XPUB has ``access``'s CURVE when given, and the service's send queue and subscription size limit; the XSUB is on
    a private ipc endpoint (:attr:`inner`), with ZeroMQ's proxy between them in a thread. Every status a worker
    publishes is kept too (:meth:`take_statuses`).
    """

    def __init__(self, endpoint: str, directory: Path, access=None, *, send_queue: int = 1000):
        self.endpoint, self.access, self.send_queue = endpoint, access, send_queue
        self.inner = f"ipc://{directory / 'out'}"
        self._thread: threading.Thread | None = None
        self.statuses: dict[str, dict] = {}  # a worker ("k/N") -> its last status

    def open(self, ctx) -> None:
        """The sockets bound (KinestreamError when the output's endpoint is taken) and the proxy started."""
        import zmq

        self.outer = open_output(
            ctx,
            self.endpoint,
            self.access,
            send_queue=self.send_queue,
            subscription_max_bytes=SUBSCRIPTION_MAX_BYTES,
            subscription_queue=SUBSCRIPTION_QUEUE,
        )
        self.workers_side = ctx.socket(zmq.XSUB)
        self.workers_side.setsockopt(zmq.RCVHWM, self.send_queue)
        self.workers_side.bind(self.inner)
        tag = f"kinestream.relay.{id(self)}"
        self.capture = ctx.socket(zmq.PUB)  # a copy of all that passes, for the statuses
        self.capture.bind(f"inproc://{tag}.capture")
        self.status_in = ctx.socket(zmq.SUB)
        self.status_in.setsockopt(zmq.SUBSCRIBE, b"status")
        self.status_in.connect(f"inproc://{tag}.capture")
        self.control = ctx.socket(zmq.PAIR)
        self.control.bind(f"inproc://{tag}.control")
        steer = ctx.socket(zmq.PAIR)
        steer.connect(f"inproc://{tag}.control")

        def proxy() -> None:
            try:
                zmq.proxy_steerable(self.outer, self.workers_side, self.capture, steer)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.ETERM:
                    log.error("the output relay stopped: %s", exc)
            finally:
                steer.close(0)

        self._thread = threading.Thread(target=proxy, name="kinestream-relay", daemon=True)
        self._thread.start()

    def take_statuses(self) -> None:
        """The statuses the workers published since the last call, each kept as its worker's last."""
        import zmq

        while True:
            try:
                parts = self.status_in.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                status = decode_status(parts[-1])
            except Exception:  # noqa: BLE001 - a status that cannot be read costs that status only
                continue
            self.statuses[str(status.get("worker", ""))] = status

    def close(self) -> None:
        """The proxy stopped and every socket closed."""
        import zmq

        if self._thread is not None:
            try:
                self.control.send(b"TERMINATE", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            self._thread.join(5.0)
            self._thread = None
        for name in ("control", "status_in", "capture", "workers_side", "outer"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close(500 if name == "outer" else 0)


class Front:
    """The parent's sockets on one ZeroMQ context: the :class:`Router` (input) and the :class:`Relay` (output).

    Their private ipc endpoints are in a directory only this user can enter (mode 0700), with the CURVE authenticator
    when ``[curve]`` is on (``settings.curve``). :meth:`pump` is one turn of the parent.
    """

    def __init__(self, settings: Settings, input_endpoint: str, output_endpoint: str, n: int):

        check_bind(output_endpoint, settings, "angles output")
        self.access = Access.from_settings(settings.curve)
        self._dir = Path(tempfile.mkdtemp(prefix="kinestream-workers-"))
        self.router = Router(settings, input_endpoint, n, self._dir, self.access)
        self.relay = Relay(output_endpoint, self._dir, self.access, send_queue=int(settings.service.send_queue))
        self.ctx: Any = None

    def open(self) -> None:
        """Open the context, the authenticator, the router and the relay; on a failure, close them and raise."""
        import zmq

        ctx = self.ctx = zmq.Context()
        try:
            if self.access is not None:
                self.access.start(ctx)
            self.router.open(self.ctx)
            self.relay.open(self.ctx)
        except BaseException:
            self.close()
            raise
        self._poller = zmq.Poller()
        self._poller.register(self.router.sub, zmq.POLLIN)
        self._poller.register(self.relay.status_in, zmq.POLLIN)

    def pump(self, timeout_s: float) -> None:
        """Up to ``timeout_s`` waiting for frames or statuses; what came routed to the workers or kept."""
        ready = dict(self._poller.poll(int(timeout_s * 1000)))
        if self.router.sub in ready:
            self.router.pump()
        if self.relay.status_in in ready:
            self.relay.take_statuses()

    def close(self) -> None:
        """Every socket, the authenticator and the context closed; the private directory removed."""
        self.router.close()
        self.relay.close()
        if self.ctx is not None:
            if self.access is not None:
                self.access.stop()
            self.ctx.term()
            self.ctx = None
        shutil.rmtree(self._dir, ignore_errors=True)


class Router:
    """The parent's input: the keypoint SUB socket as serve opens it, and a PUB per worker on a private ipc endpoint.

    The SUB has ``settings``' queue, size limit, CURVE and bind_input; the workers' endpoints are :attr:`inner`, k's at
    ``inner[k]``.

    :meth:`pump` moves what has arrived to the workers: each subject to the worker they were given on their first
    frame (the one serving fewest people then), until they are silent for ``service.person_timeout_s``; at most
    ``service.max_people`` at once, a frame of one more refused and counted (:attr:`refused`). Whoever
    ``service.people`` leaves to another service is counted in :attr:`others` and sent nowhere.
    """

    def __init__(self, settings: Settings, endpoint: str, n: int, directory: Path, access=None):

        svc = settings.service
        self.settings, self.endpoint, self.n, self.access = settings, endpoint, n, access
        self.inner = [f"ipc://{directory / f'in{k}'}" for k in range(n)]
        self.max_people = int(svc.max_people)
        self.timeout_ns = int(float(svc.person_timeout_s) * 1e9)
        self.serves = share(svc.people)
        self.default_name = str(settings.subject.name)
        self._peek = FrameDecoder(max_bytes=int(svc.max_message_bytes))
        self.assigned: dict[str, int] = {}  # subject -> their worker
        self._heard: dict[str, int] = {}  # subject -> when their last frame arrived (ns)
        self.routed = [0] * n  # messages sent to each worker
        self.refused = 0  # frames of one person more than max_people
        self.others = 0  # frames of people service.people leaves to another service

    def open(self, ctx) -> None:
        """Open the keypoint input on ``ctx`` and a PUB per worker on its private endpoint."""
        import zmq

        self.sub = open_input(ctx, self.settings, self.endpoint, self.access)
        self.outs = []
        for address in self.inner:
            pub = ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.SNDHWM, int(self.settings.service.receive_queue))
            pub.setsockopt(zmq.LINGER, 0)
            pub.bind(address)
            self.outs.append(pub)

    def worker_of(self, parts: list, now_ns: int) -> int | None:
        """The worker a message goes to (None: to none, counted)."""
        try:
            subject = self._peek.subject_of(parts[1]) if len(parts) == 2 else None
        except Rejected:
            return 0  # the first worker refuses it and counts why
        name = self.default_name if subject is None else subject
        if name == self.default_name:
            return 0 if self.serves(name) else None
        if not self.serves(name):
            self.others += 1
            return None
        k = self.assigned.get(name)
        if k is None:
            self._forget_silent(now_ns)
            if len(self.assigned) >= self.max_people:
                self.refused += 1
                return None
            load = [0] * self.n
            for w in self.assigned.values():
                load[w] += 1
            k = self.assigned[name] = load.index(min(load))
        self._heard[name] = now_ns
        return k

    def _forget_silent(self, now_ns: int) -> None:
        for name in [n for n, heard in self._heard.items() if now_ns - heard > self.timeout_ns]:
            del self._heard[name]
            del self.assigned[name]

    def pump(self, limit: int = 1000) -> int:
        """What has arrived (at most ``limit`` messages) sent on to the workers; the number taken."""
        import zmq

        taken = 0
        while taken < limit:
            try:
                parts = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            taken += 1
            k = self.worker_of(parts, time.time_ns())
            if k is not None:
                try:
                    self.outs[k].send_multipart(parts, zmq.NOBLOCK)
                    self.routed[k] += 1
                except zmq.Again:  # that worker's queue is full (it is down): its frames wait for nobody
                    pass
        return taken

    def status(self) -> dict:
        """The router's part of the status: who goes to which worker, messages routed, frames refused and others'."""
        return {"people": dict(self.assigned), "routed": list(self.routed), "refused": self.refused,
                "others": self.others}  # fmt: skip

    def close(self) -> None:
        """Close every socket of the router."""
        for sock in [getattr(self, "sub", None), *getattr(self, "outs", [])]:
            if sock is not None:
                sock.close(0)


class Workers:
    """N worker processes, worker k running ``target(k, n, *args)``.

    ``target`` is a module-level function: each process is spawned, not forked, so OpenSim and onnxruntime start clean
    in it.

    :meth:`check` starts again a worker that ended while it was not told to stop (after RESTART_DELAY_S, at most
    RESTARTS times each; past that :attr:`healthy` is False and it stays down). :meth:`stop` tells every worker
    to stop (SIGTERM: a worker drains its frames and closes its recordings) and waits for them.
    """

    RESTARTS = 5
    RESTART_DELAY_S = 0.5

    def __init__(self, n: int, target: Callable[..., Any], args: tuple = ()):
        self.n = check_workers(n)
        self.target, self.args = target, args
        self._mp = multiprocessing.get_context("spawn")
        self.procs: list[Any] = [None] * n
        self.restarts = [0] * n
        self.healthy = True
        self._down_since: list[float | None] = [None] * n

    def start(self) -> None:
        """Start every worker process."""
        for k in range(self.n):
            self._start(k)

    def _start(self, k: int) -> None:
        proc = self._mp.Process(target=self.target, args=(k, self.n, *self.args), name=f"kinestream-worker-{k}")
        proc.start()
        self.procs[k] = proc
        self._down_since[k] = None
        log.info("worker %d/%d started (pid %d)", k, self.n, proc.pid)

    def check(self) -> list[str]:
        """Workers that ended found and started again; what happened, a line each."""
        said = []
        now = time.monotonic()
        for k, proc in enumerate(self.procs):
            if proc is None or proc.is_alive():
                continue
            if self._down_since[k] is None:
                self._down_since[k] = now
                said.append(f"worker {k}/{self.n} (pid {proc.pid}) ended (exit status {proc.exitcode}): its people "
                            f"wait until it is started again")  # fmt: skip
                proc.join(0)
            if now - (self._down_since[k] or now) < self.RESTART_DELAY_S:
                continue
            if self.restarts[k] >= self.RESTARTS:
                if self.healthy:
                    said.append(f"worker {k}/{self.n} ended {self.RESTARTS + 1} times: not started again")
                self.healthy = False
                self.procs[k] = None
                continue
            self.restarts[k] += 1
            self._start(k)
            said.append(f"worker {k}/{self.n} started again (pid {self.procs[k].pid}; {self.restarts[k]} restarts)")
        return said

    def stop(self, timeout_s: float = 30.0) -> list[int | None]:
        """Every worker told to stop (SIGTERM) and waited for; their exit statuses.

        Up to ``timeout_s`` in all; killed after that.
        """
        for proc in self.procs:
            if proc is not None and proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        codes: list[int | None] = []
        for proc in self.procs:
            if proc is None:
                codes.append(None)
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop within %.0f s: killed", proc.name, timeout_s)
                proc.kill()
                proc.join()
            codes.append(proc.exitcode)
        return codes
