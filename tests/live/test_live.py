"""kinestream.live's signal rules: the service takes Ctrl-C and SIGTERM while it runs, and gives them back as they
were, so that a process winding down after a stop is not ended by the next signal."""

import asyncio
import signal

from kinestream.live import STOP_SIGNALS, release_signals, stop_on_signals


def test_the_signals_are_given_back_to_the_handlers_they_had():
    noted = []

    def note(sig, frame):
        noted.append(sig)

    before = {sig: signal.signal(sig, note) for sig in STOP_SIGNALS}
    try:

        async def run():
            stop = asyncio.Event()
            taken = stop_on_signals(stop)
            assert [sig for sig, _ in taken] == list(STOP_SIGNALS)
            signal.raise_signal(signal.SIGTERM)  # while taken: the stop event, not the handler
            await asyncio.wait_for(stop.wait(), 10.0)
            release_signals(taken)

        asyncio.run(run())
        assert noted == []
        assert all(signal.getsignal(sig) is note for sig in STOP_SIGNALS)  # not the default, which would end us
        signal.raise_signal(signal.SIGTERM)
        assert noted == [signal.SIGTERM]
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
