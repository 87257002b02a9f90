"""The live path: the keypoint stream in, angles out (the asyncio shell and its sockets)."""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(stop: asyncio.Event) -> list[tuple[signal.Signals, object]]:
    """Set ``stop`` on Ctrl-C or SIGTERM in the running loop; returns the signals taken, for :func:`release_signals`.

    Each with the handler it had, which :func:`release_signals` puts back. None are taken where the loop cannot
    take them (Windows, a thread).
    """
    loop = asyncio.get_running_loop()
    taken: list[tuple[signal.Signals, object]] = []
    for sig in STOP_SIGNALS:
        before = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        taken.append((sig, before))
    return taken


def release_signals(taken: list[tuple[signal.Signals, object]]) -> None:
    """Give back the signals :func:`stop_on_signals` took, each to the handler it had before.

    (The loop alone would leave the default, and a second SIGTERM while a process winds down would end it at once.)
    """
    loop = asyncio.get_running_loop()
    masking = bool(taken) and hasattr(signal, "pthread_sigmask")
    # held while the loop's default gives way to the old handler; one that came meanwhile reaches the old handler
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [sig for sig, _ in taken]) if masking else None
    try:
        for sig, before in taken:
            loop.remove_signal_handler(sig)
            if before is not None:
                signal.signal(sig, before)  # type: ignore[arg-type]
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
