"""The live keypoint source (kinestream.live.source): what serve and calibrate hear, refuse and restart on."""

from __future__ import annotations

import numpy as np

from kinestream.live.protocol import TOPIC_KEYPOINTS, encode_keypoints
from kinestream.live.source import Heard, KeypointSource, Refused
from kinestream.settings import ServiceSettings

BODY = np.random.default_rng(4).normal([0.0, 1.0, 0.0], 0.3, (25, 3))


def message(t: float, seq: int = 0, subject: str | None = None) -> list[bytes]:
    return [TOPIC_KEYPOINTS, encode_keypoints(seq, t, BODY, subject=subject)]


def test_refusals_come_back_as_values_and_are_counted():
    source = KeypointSource(ServiceSettings())
    got = [
        source.take([b"keypoints"], 1),
        source.take([b"angles", b"x"], 2),
        source.take([TOPIC_KEYPOINTS, b"\xc1"], 3),
        source.take(message(1.0), 4),
        source.take(message(0.99), 5),  # not after the last time: a late frame, not a restart
    ]
    assert [type(g) for g in got] == [Refused, Refused, Refused, Heard, Refused]
    assert [g.reason for g in got if isinstance(g, Refused)] == [
        "bad_envelope",
        "bad_envelope",
        "not_msgpack",
        "time_backwards",
    ]
    heard = got[3]
    assert isinstance(heard, Heard) and heard.recv_ns == 4 and heard.restart is None and heard.frame.t == 1.0
    status = source.status()
    assert status["rejected"]["bad_envelope"] == 2 and status["rejected"]["not_msgpack"] == 1
    assert status["rejected"]["time_backwards"] == 1 and status["clock_resets"] == 0


def test_time_rules_and_restarts_are_per_subject():
    """Each subject has its own clock: ana going back more than a second is ana's restart, said with her times;
    ben's frames in between neither restart nor refuse hers. A subject silent more than two seconds by its own
    clock comes back with how long."""
    source = KeypointSource(ServiceSettings())
    for k in range(10):
        assert isinstance(source.take(message(5.0 + k / 60, k, "ana"), k), Heard)
        assert isinstance(source.take(message(100.0 + k / 60, k, "ben"), k), Heard)
    back = source.take(message(1.0, 10, "ana"), 10)
    assert isinstance(back, Heard) and back.restart == "time went back from 5.15 s to 1.00 s"
    on = source.take(message(100.2, 10, "ben"), 11)
    assert isinstance(on, Heard) and on.restart is None and on.silence_s is None
    later = source.take(message(4.5, 11, "ana"), 12)
    assert isinstance(later, Heard) and later.restart is None and abs(later.silence_s - 3.5) < 1e-9
    assert source.status()["clock_resets"] == 1


def test_a_subject_among_many_is_never_forgotten_when_kept():
    """Seventy throwaway subjects do not make the kept subject's next frame a first one, free of the time rules."""
    source = KeypointSource(ServiceSettings())
    source.take(message(50.0, 0, "ana"), 0)
    source.keep("ana")
    for k in range(70):
        source.take(message(10.0, 0, f"throwaway{k}"), k)
    late = source.take(message(49.5, 1, "ana"), 100)
    assert isinstance(late, Refused) and late.reason == "time_backwards"
