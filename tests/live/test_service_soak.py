"""A short soak of `kinestream serve`: a minute at 60 Hz, memory and file descriptors flat.

`scripts/soak.py --minutes 10` is the full version (docs/manual/promises.md, "What kinestream
promises"); this is the same code, shorter.
"""

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import soak  # noqa: E402  (scripts/soak.py)

pytestmark = pytest.mark.slow  # tens of seconds: scripts/test --fast leaves it out

# The bound on memory growth after the 20 s warm-up. Keeping one frame's data
# (keypoints, markers and angles, ~2 kB) for every frame would add 60 Hz x 40 s
# x 2 kB = 4.8 MB in the 40 s measured; the bounded queues and caches are full
# by the end of the warm-up. Measured here: 0.2 MB. The bound catches a leak of
# a fifth of a frame's data (it was 3 MB, which such a leak of 60% passed).
MAX_GROWTH_MB = 1.0


def test_a_minute_at_60_hz_holds_memory_and_descriptors_flat():
    result = asyncio.run(soak.soak(minutes=1.0, every=5.0, say=lambda *_: None))
    verdict = result.verdict(warmup_s=20.0, max_growth_mb=MAX_GROWTH_MB, max_fd_change=2)
    print("\nsoak, 1 minute:", verdict)
    assert result.alive and len(result.samples) >= 10
    assert verdict["rss_growth_mb"] < MAX_GROWTH_MB
    assert verdict["fds"][1] - verdict["fds"][0] <= 2
    # Nothing lost: every frame sent came in and was answered, solved (its angles received) or, by latest wins on a
    # machine whose cores are busy with other work, skipped and counted. On a quiet machine none is skipped; with
    # other test suites and benchmarks running beside it, 43 of 3597 were (1.2%).
    assert verdict["frames_in"] == verdict["sent"] == verdict["answered"] > 3000
    assert verdict["received"] == verdict["solved"]
    assert verdict["skipped"] <= 0.02 * verdict["sent"]
    assert verdict["rejected"] == 0


def test_a_minute_under_attack_answers_every_frame_and_keeps_publishing_status():
    """The output socket attacked all along (``scripts/soak.py --attacks``: 20,000 subscriptions toggled every
    second, a 1 MB subscription twice a second, a peer that speaks no ZeroMQ): every frame still answered, memory
    flat, the status still published about every second. Latest wins may skip a frame on a busy machine; none is
    lost."""
    result = asyncio.run(soak.soak(minutes=1.0, every=5.0, say=lambda *_: None, attacks=True))
    verdict = result.verdict(warmup_s=20.0, max_growth_mb=MAX_GROWTH_MB, max_fd_change=2)
    print("\nsoak under attack, 1 minute:", verdict)
    assert result.alive and len(result.samples) >= 10
    assert verdict["rss_growth_mb"] < MAX_GROWTH_MB
    assert verdict["frames_in"] == verdict["sent"] == verdict["answered"] > 3000
    assert verdict["rejected"] == 0
    assert verdict["longest_status_gap_s"] < 3.0
    assert verdict["attacks"]["toggles"] >= 10 and verdict["attacks"]["oversized_hung_up"] >= 20
