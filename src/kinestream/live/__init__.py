"""The live path: the keypoint stream in, angles out (the asyncio shell and its sockets)."""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    """Set ``stop`` on Ctrl-C or SIGTERM in the running loop; returns the signals taken, for :func:`release_signals`.

    None are taken where the loop cannot take them (Windows, a thread).
    """
    loop = asyncio.get_running_loop()
    taken = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        taken.append(sig)
    return taken


def release_signals(taken: list[signal.Signals]) -> None:
    """Give back the signals :func:`stop_on_signals` took."""
    loop = asyncio.get_running_loop()
    for sig in taken:
        loop.remove_signal_handler(sig)
