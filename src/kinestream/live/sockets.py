"""The live service's ZeroMQ sockets: the keypoint input and the output, opened, watched and closed.

One libzmq context holds both (and the CURVE authenticator when ``[access]`` turns it on). The input is a SUB
(connected to the keypoint source, or bound with ``service.bind_input``), the output an XPUB: a PUB that tells which
topics are subscribed, with its subscriber-side limits given by the service. Each socket's monitor reports refused
handshakes (a peer without an authorized CURVE key, a plain peer meeting CURVE, not ZeroMQ), counted in the
service's metrics and logged; the input's also reports its link coming and going, and a link ZeroMQ has given up on is
connected afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kinestream.live.metrics import Metrics, Throttled
from kinestream.live.transport import LINK_EVENTS, REFUSED_EVENTS, REFUSED_NAMES, open_input, open_output
from kinestream.settings import Settings

log = logging.getLogger("kinestream.live.service")

# Subscriptions are taken for 1 ms, then not for 10 ms when more wait: however fast subscribers send them, they
# get a tenth of the event loop at most (ZeroMQ holds the rest back, and the sender's queue fills).
SUBSCRIPTION_BUDGET_S = 0.001
SUBSCRIPTION_REST_S = 0.010


class Sockets:
    """The input (``sub``, awaited from the event loop) and the output (``pub``) of one service."""

    RECONNECT_S = 0.5  # after a lost input link, connect afresh this much later unless ZeroMQ is at it
    NAMES = ("input", "output")

    def __init__(
        self,
        settings: Settings,
        input_endpoint: str,
        output_endpoint: str,
        access,
        metrics: Metrics,
    ):
        self.settings = settings
        self.input_endpoint = input_endpoint
        self.output_endpoint = output_endpoint
        self.access = access  # kinestream.live.transport.Access, or None: no CURVE
        self.metrics = metrics  # refused handshakes are counted in its ``refused``, per socket
        self._log_every = Throttled(log)
        self._monitors: list = []
        self._reconnect: asyncio.TimerHandle | None = None  # a pending input reconnect
        self._link_lost = self._link_busy = 0.0  # when the input link was last lost / ZeroMQ last reconnected

    def open(
        self, *, send_queue: int, subscription_max_bytes: int, subscription_queue: int, output_connect: bool = False
    ) -> None:
        """Both sockets made, the output bound (KinestreamError when its endpoint is taken) and both watched.

        ``output_connect``: the output connects to a relay's endpoint instead (a worker of ``serve --workers``, behind
        its parent's output, which does the binding and the CURVE).
        """
        import zmq
        import zmq.asyncio

        self.sync_ctx = zmq.Context()
        self.ctx = zmq.asyncio.Context.shadow(self.sync_ctx)  # one libzmq context: one authenticator for both
        if self.access is not None:
            self.access.start(self.sync_ctx)
        self.sub = open_input(self.ctx, self.settings, self.input_endpoint, self.access)
        self.pub = open_output(
            self.sync_ctx,
            self.output_endpoint,
            None if output_connect else self.access,
            send_queue=send_queue,
            subscription_max_bytes=subscription_max_bytes,
            subscription_queue=subscription_queue,
            connect=output_connect,
        )
        self._monitors = [self._monitor(self.sub, "input"), self._monitor(self.pub, "output")]

    def close(self, attempt: Callable[..., None]) -> None:
        """Every socket, monitor, the authenticator and the context closed.

        Each is closed through ``attempt(what, fn, *args)``, which says what failed to close and goes on.
        """
        if self._reconnect is not None:
            self._reconnect.cancel()
        for sock, mon in zip((self.sub, self.pub), self._monitors, strict=False):
            attempt("a socket monitor", sock.disable_monitor)
            attempt("a socket monitor", mon.close, 0)
        attempt("the input socket", self.sub.close, 0)
        attempt("the output socket", self.pub.close)
        if self.access is not None:
            attempt("the CURVE authenticator", self.access.stop)
        attempt("the ZeroMQ context", self.sync_ctx.term)

    def _monitor(self, sock, name: str):
        """A PAIR socket that receives ``sock``'s refused handshakes (read by :meth:`watch`)."""
        import zmq

        address = f"inproc://kinestream.monitor.{name}.{id(self)}"
        # the input also reports its links coming and going: ZeroMQ does not reconnect after some losses
        sock.monitor(address, REFUSED_EVENTS | (LINK_EVENTS if name == "input" else 0))
        mon = self.ctx.socket(zmq.PAIR)
        mon.connect(address)
        return mon

    async def watch(self, name: str, stop: asyncio.Event) -> None:
        """Events of the ``name`` socket ("input" or "output") until ``stop``.

        Handshakes refused are counted and logged; a lost input link is connected afresh.
        """
        import zmq
        from zmq.utils.monitor import parse_monitor_message

        mon = self._monitors[self.NAMES.index(name)]
        while not stop.is_set():
            if not await mon.poll(100):
                continue
            event = parse_monitor_message(await mon.recv_multipart())
            kind = event["event"]
            if kind in REFUSED_NAMES:
                self._refused(name, event)
            if name != "input" or self.settings.service.bind_input:
                continue
            if kind in REFUSED_NAMES or kind == zmq.EVENT_DISCONNECTED:
                self._link_lost = time.monotonic()
                if self._reconnect is None:
                    self._reconnect = asyncio.get_running_loop().call_later(self.RECONNECT_S, self._reconnect_input)
            else:  # ZeroMQ is connecting again by itself
                self._link_busy = time.monotonic()

    def _refused(self, name: str, event: Mapping[str, Any]) -> None:
        """A handshake refused on the ``name`` socket: counted and logged (one line every 5 s at most)."""
        self.metrics.refused[name] = self.metrics.refused.get(name, 0) + 1
        self._log_every(
            f"refused-{name}",
            logging.WARNING,
            "refused a peer on the %s socket (%s, %s): no authorized key, or not kinestream's protocol; %d so far",
            name,
            getattr(event["endpoint"], "decode", str)(),
            REFUSED_NAMES.get(event["event"], event["event"]),
            self.metrics.refused[name],
        )

    async def subscriptions(self, on_message: Callable[[bytes], None], stop: asyncio.Event) -> None:
        r"""The output (XPUB) socket's subscription messages until ``stop``, each handed to ``on_message``.

        ZeroMQ tells an XPUB when a topic gets its first subscriber (``\x01`` + topic) and loses its last one
        (``\x00`` + topic).
        """
        import zmq
        import zmq.asyncio

        sock = zmq.asyncio.Socket.from_socket(self.pub)  # the same socket, awaited from the event loop
        budget_ns = int(SUBSCRIPTION_BUDGET_S * 1e9)
        while not stop.is_set():
            if not await sock.poll(100):
                continue
            deadline = time.perf_counter_ns() + budget_ns
            while True:
                try:
                    msg = self.pub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                on_message(msg)
                if time.perf_counter_ns() >= deadline:  # a subscriber that never stops waits on its queue
                    await asyncio.sleep(SUBSCRIPTION_REST_S)
                    break

    def _reconnect_input(self) -> None:
        """Connect the input afresh when ZeroMQ has given up on it.

        After a connection that broke the protocol (a plain source meeting CURVE, a message over the size limit) ZeroMQ
        does not reconnect, and the next source on that endpoint would never be heard; after an ordinary loss it
        reconnects by itself (and says so), and this leaves it alone: breaking a working link would lose frames.
        """
        import zmq

        self._reconnect = None
        if self.sub.closed or self._link_busy > self._link_lost:  # ZeroMQ took care of it
            return
        try:
            self.sub.disconnect(self.input_endpoint)
        except zmq.ZMQError:  # the connection was already dropped
            pass
        self.sub.connect(self.input_endpoint)
