"""A seeded generator of hostile and malformed keypoint messages, each labelled with what the service must do.

    for parts, expect in hostile_messages(seed=1, n=100_000, pose=xyz, t0=1000.0, tally=tally):
        ...  # parts: the ZeroMQ multipart message; expect: a rejection reason, "accepted" or "restart"

The labels come from the protocol's rules as docs/protocol.md states them, not from
running the decoder: a message is built to break one rule, so the reason it
must be rejected for is known when it is made. The rules of time are kept by
:class:`Clock`, a model of the served subject's clock written from those
rules (never from the decoder's code): it labels every frame of the stream's
own subject (frames without a subject), and each time attack is built to land
on one side of one threshold, which the clock confirms as it is made (a
disagreement is a bug of this generator and raises at once).

The rules the clock keeps, for the stream's own subject:

- ``|t| > 1e10`` s is ``time_implausible``, whatever else (floats such as
  2**48, 2**52 and 1e300, and msgpack integers up to 2**64 - 1 and down to
  -2**63, compared as their float value); exactly 1e10 is valid.
- ``t`` not after the last accepted time is ``time_backwards``; more than
  1 s earlier (the service's ``restart_back_s``) restarts the source at once,
  exactly 1 s earlier does not; the 30th backward frame in a row restarts too.
- ``t`` more than ``max_jump_s`` (the service's ``max_time_jump_s``, 3600 s)
  after the last accepted time is ``time_jump``, exactly ``max_jump_s`` is
  not; the 30th jump in a row restarts the source.
- "In a row" counts the subject's frames that reach the clock: an accepted
  frame ends a run; a frame refused for another reason (malformed, an
  implausible time, another subject) neither extends nor ends it. No run here
  mixes frames that go back with frames that jump ahead (the rules leave open
  whether one ends the other): every run starts after an accepted frame.
- A restart is labelled ``restart``: the frame is accepted and the service
  counts one reset (a new session).

A frame of another subject is valid to the decoder but refused by a service
that serves one person (``service.max_people = 1``: ``too_many_people``) while
the stream's own subject is served, and such refused frames change nothing for
the served subject: after 64 throwaway
subjects (as many as the decoder keeps clocks for) the served subject's time
rules hold as before. At most three backward frames come in a row outside the
runs built to reach 30.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import msgpack
import numpy as np

ACCEPTED = "accepted"
RESTART = "restart"  # accepted, and the source's clock starts over: the service counts a reset
MAX_BYTES = 65536  # the service's default max_message_bytes
TRANSPORT_LIMIT = 4 * MAX_BYTES  # larger messages are refused inside ZeroMQ, never counted
MAX_TIME_S = 1e10  # |t| beyond this is time_implausible
RESTART_BACK_S = 1.0  # the service's restart_back_s: further back restarts the source at once
MAX_JUMP_S = 3600.0  # the service's default max_time_jump_s
RESTART_AFTER = 30  # the 30th frame in a row back (or ahead) restarts the source
MAX_SUBJECTS = 64  # subject clocks the decoder keeps: the number of throwaway subjects that would flush them
TOPIC = b"keypoints"

# times no clock may hold: floats far out, the first floats past the bound, integers near 2**63
FAR_FLOATS = (
    2.0**48,
    2.0**48 + 0.0625,
    2.0**52,
    2.0**52 + 1.0,
    1e300,
    -1e300,
    -(2.0**48),
    -(2.0**52),
    sys.float_info.max,
    -sys.float_info.max,
    1e11,
    1.8e18,
)
FAR_INTS = (2**63 - 1, 2**63 - 2, 2**63, 2**63 + 1, 2**64 - 1, -(2**63), -(2**63) + 1, 2**62, -(2**62), 2**53 + 1)
JUST_OVER = (
    float(np.nextafter(MAX_TIME_S, math.inf)),
    -float(np.nextafter(MAX_TIME_S, math.inf)),
    MAX_TIME_S + 1e-3,
    -MAX_TIME_S - 1e-3,
    10**10 + 1,
    -(10**10) - 1,
)


def implausible(t) -> bool:
    return abs(float(t)) > MAX_TIME_S  # an integer is read as its float value


@dataclass
class Tally:
    """What the generated messages must add up to at the service."""

    expected: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    clock: Clock | None = None  # the served subject's clock after the last message (set by hostile_messages)

    def add(self, label: str) -> None:
        if label == RESTART:  # accepted, and a reset
            self.restarts += 1
            label = ACCEPTED
        self.expected[label] = self.expected.get(label, 0) + 1

    def rejected(self) -> dict[str, int]:
        return {k: v for k, v in self.expected.items() if k != ACCEPTED and v}


class Clock:
    """The served subject's clock by the protocol's rules (see the module's docstring): :meth:`offer` labels a
    frame's time and moves the clock as the service must."""

    def __init__(self, t: float, max_jump_s: float = MAX_JUMP_S):
        self.t = float(t)  # the last accepted time
        self.max_jump_s = float(max_jump_s)
        self.back = 0  # frames back in a row since the last accepted one
        self.ahead = 0  # frames too far ahead in a row since the last accepted one

    def offer(self, t) -> str:
        if implausible(t):
            return "time_implausible"
        t = float(t)
        if t <= self.t:
            self.back += 1
            if t < self.t - RESTART_BACK_S or self.back >= RESTART_AFTER:
                return self._take(t, RESTART)
            return "time_backwards"
        if t > self.t + self.max_jump_s:
            self.ahead += 1
            if self.ahead >= RESTART_AFTER:
                return self._take(t, RESTART)
            return "time_jump"
        return self._take(t, ACCEPTED)

    def _take(self, t: float, label: str) -> str:
        self.t, self.back, self.ahead = t, 0, 0
        return label


def _frame(seq, t, xyz, **extra) -> dict:
    msg = {"v": 1, "seq": seq, "t": t, "layout": "BODY_25", "xyz": np.asarray(xyz, "<f4").tobytes()}
    msg.update(extra)
    return msg


def _pack(msg) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)  # a Python int goes out as a msgpack integer, a float as float64


class Hostile:
    """The message makers. Each returns ``(parts, label)``; the episodes (time attacks of several frames) are
    generators of them. Frames of the stream's own subject are labelled by :attr:`clock`."""

    def __init__(self, seed: int, pose: np.ndarray, t0: float, max_jump_s: float = MAX_JUMP_S):
        self.rng = np.random.default_rng(seed)
        self.pose = np.asarray(pose, dtype=np.float32).reshape(25, 3)
        self.clock = Clock(t0, max_jump_s)
        self.seq = 0
        self.visitors = 0
        self.throwaways = 0

    # -- frames of the stream's own subject, labelled by the clock

    def frame_at(self, t, want: str | None = None, **extra) -> tuple[dict, str]:
        """A valid frame at ``t`` (an int stays an int on the wire) and its label; ``want``: what it was built
        to be."""
        rng = self.rng
        self.seq += 1
        label = self.clock.offer(t)
        if want is not None and label != want:
            raise AssertionError(
                f"hostile generator bug: t = {t!r} was built to be {want} but is {label} (clock at {self.clock.t!r})"
            )
        xyz = self.pose + rng.normal(0, 0.005, self.pose.shape).astype(np.float32)
        return _frame(self.seq, t, xyz, **extra), label

    def at(self, t, want: str | None = None) -> tuple[list[bytes], str]:
        msg, label = self.frame_at(t, want)
        return [TOPIC, _pack(msg)], label

    def valid(self) -> tuple[list[bytes], str]:
        return self.at(self.clock.t + 1 / 60, ACCEPTED)

    def backwards(self) -> tuple[list[bytes], str]:
        if self.clock.back >= 3:  # a run that long is built on purpose (back_run), not by chance
            return self.valid()
        rng = self.rng
        return self.at(self.clock.t - float(rng.choice([0.0, rng.uniform(0, 0.9)])), "time_backwards")

    def restart(self) -> tuple[list[bytes], str]:  # the source's clock starts over, far back
        return self.at(self.clock.t - 5.0 - float(self.rng.uniform(0, 10)), RESTART)

    def other(self, subject: str) -> tuple[list[bytes], str]:
        """A valid frame of another subject: refused (max_people = 1) while the stream's own subject is served."""
        self.seq += 1
        return [
            TOPIC,
            _pack(_frame(self.seq, float(self.rng.uniform(0, 1e4)), self.pose, subject=subject)),
        ], "too_many_people"

    def visitor(self) -> tuple[list[bytes], str]:
        self.visitors += 1
        return self.other(f"visitor{self.visitors}")

    def odd_but_valid(self) -> tuple[list[bytes], str]:
        rng = self.rng
        choice = int(rng.integers(6))
        if choice == 4:  # a visitor: another subject, while the stream's own one is active
            return self.visitor()
        msg, label = self.frame_at(self.clock.t + 1 / 60, ACCEPTED)
        if choice == 0:  # some keypoints NaN, inf or zero: missing, the rest fine
            xyz = np.frombuffer(msg["xyz"], "<f4").reshape(25, 3).copy()
            xyz[rng.choice(25, 5, replace=False)] = [np.nan, np.inf, 0.0][int(rng.integers(3))]
            msg["xyz"] = xyz.tobytes()
        elif choice == 1:  # absurd but finite coordinates
            msg["xyz"] = (np.frombuffer(msg["xyz"], "<f4") * np.float32(1e30)).tobytes()
        elif choice == 2:  # fields a newer source might add, nested deep but within limits
            nested = "x"
            for _ in range(int(rng.integers(1, 400))):
                nested = {"n": nested}
            msg.update(extra=nested, note="from the future")
        elif choice == 3:  # names instead of layout, with aliases
            del msg["layout"]
            msg["names"] = [
                "Nose",
                "Neck",
                "RShoulder",
                "RElbow",
                "RWrist",
                "LShoulder",
                "LElbow",
                "LWrist",
                "Hip",
                "RHip",
                "RKnee",
                "RAnkle",
                "LHip",
                "LKnee",
                "LAnkle",
                "REye",
                "LEye",
                "REar",
                "LEar",
                "LBigToe",
                "LSmallToe",
                "LHeel",
                "RBigToe",
                "RSmallToe",
                "RHeel",
            ]
        else:  # custom names the model does not use, a new list every time
            del msg["layout"]
            msg["names"] = [f"custom{int(rng.integers(1 << 30))}_{i}" for i in range(25)]
        return [TOPIC, _pack(msg)], label

    # -- messages that never reach the clock

    def any_frame(self):  # a well-formed frame that does not touch the clock (for corrupting)
        return _frame(int(self.rng.integers(0, 1 << 31)), float(self.rng.uniform(0, 1e4)), self.pose)

    def huge_time(self) -> tuple[list[bytes], str]:
        """An otherwise valid frame whose time no clock may hold: refused before its subject is looked at."""
        rng = self.rng
        values = (FAR_FLOATS, FAR_INTS, JUST_OVER)[int(rng.integers(3))]
        t = values[int(rng.integers(len(values)))]
        assert implausible(t)
        msg = self.any_frame()
        msg["t"] = t
        if rng.random() < 0.2:
            msg["subject"] = "visitor0"
        return [TOPIC, _pack(msg)], "time_implausible"

    def garbage(self):
        return b"\xc1" + self.rng.bytes(int(self.rng.integers(0, 300)))  # 0xc1 is never valid msgpack

    def truncated(self):
        payload = _pack(self.any_frame())
        return payload[: int(self.rng.integers(1, len(payload)))]

    def deep(self):
        rng = self.rng
        depth = int(rng.integers(1100, 20000))
        return (b"\x81\xa1a" * depth + b"\xc0") if rng.random() < 0.5 else (b"\x91" * depth + b"\x00")

    def huge_length(self):
        heads = [
            b"\xc6\xff\xff\xff\xff",
            b"\xdb\xff\xff\xff\xff",
            b"\xdd\xff\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff",
            b"\xc5\xff\xff",
            b"\xde\xff\xff",
            b"\xdc\x01\x00",
        ]  # bin, str, array, map 32 and 16 bit
        return heads[int(self.rng.integers(len(heads)))] + self.rng.bytes(int(self.rng.integers(0, 64)))

    def forbidden(self):  # an extension type, a non-string map key, a map over 32 entries
        choice = int(self.rng.integers(3))
        if choice == 0:
            return b"\xc7\x05\x01" + self.rng.bytes(5)
        if choice == 1:
            return _pack({1: 2, "v": 1})
        return _pack({f"k{i}": i for i in range(40)})

    def not_a_map(self):
        values = [int(self.rng.integers(-1 << 40, 1 << 40)), "keypoints", [1, 2, 3], None, True, 3.5, b"\x00" * 12]
        return _pack(values[int(self.rng.integers(len(values)))])

    def bad_version(self):
        msg = self.any_frame()
        choice = int(self.rng.integers(5))
        if choice == 0:
            del msg["v"]
        else:
            msg["v"] = [2, "1", 1.0, True][choice - 1]
        return _pack(msg)

    def missing(self):
        msg = self.any_frame()
        key = ["seq", "t", "xyz", "layout"][int(self.rng.integers(4))]
        if self.rng.random() < 0.5:
            del msg[key]
        else:
            msg[key] = None  # nil is as good as absent
        return _pack(msg)

    def bad_type(self):
        msg = self.any_frame()
        bad = [
            ("seq", -1),
            ("seq", "3"),
            ("seq", 1.5),
            ("seq", True),
            ("t", "now"),
            ("t", math.nan),
            ("t", math.inf),
            ("t", [1.0]),
            ("t", True),
            ("t", -math.inf),
            ("xyz", [0.1] * 75),
            ("xyz", "abc"),
            ("layout", 25),
            ("subject", 7),
            ("sent_ns", -5),
            ("sent_ns", 1.5),
            ("conf", [1.0] * 25),
            ("names", "Nose"),
            ("names", ["Nose"] * 24 + [3]),
        ]
        key, value = bad[int(self.rng.integers(len(bad)))]
        msg[key] = value
        return _pack(msg)

    def bad_shape(self):
        rng = self.rng
        msg = self.any_frame()
        choice = int(rng.integers(7))
        if choice == 0:
            msg["xyz"] = msg["xyz"][:-1]  # not a multiple of 12 bytes
        elif choice == 1:
            msg["xyz"] = msg["xyz"][:-12]  # 24 keypoints for BODY_25
        elif choice == 2:
            msg["xyz"] = b""
        elif choice == 3:
            msg["xyz"] = rng.bytes(12 * 201)  # more than max_keypoints
        elif choice == 4:
            msg["conf"] = b"\x00\x00\x80\x3f" * 24
        elif choice == 5:
            del msg["layout"]
            msg["names"] = [f"kp{i}" for i in range(24)]
        else:
            del msg["layout"]
            msg["names"] = ["Nose"] * 25
        return _pack(msg)

    def unknown_layout(self):
        msg = self.any_frame()
        msg["layout"] = ["COCO_18", "BODY_135", "", "body25x"][int(self.rng.integers(4))]
        return _pack(msg)

    def all_missing(self):
        rng = self.rng
        msg = self.any_frame()
        choice = int(rng.integers(3))
        if choice == 0:
            msg["xyz"] = np.zeros((25, 3), "<f4").tobytes()
        elif choice == 1:
            msg["xyz"] = np.full((25, 3), [np.nan, np.inf, -np.inf][int(rng.integers(3))], "<f4").tobytes()
        else:
            msg["conf"] = np.zeros(25, "<f4").tobytes()
        return _pack(msg)

    def oversize(self):
        return self.rng.bytes(int(self.rng.integers(MAX_BYTES + 1, TRANSPORT_LIMIT)))

    def envelope(self):
        frame = _pack(self.any_frame())
        return [[TOPIC], [TOPIC, frame, b"more"], [b"keypointsX", frame]][int(self.rng.integers(3))]

    # -- time attacks: episodes of frames of the stream's own subject, each straddling a threshold

    def edge_ahead(self):
        """The source's clock jumps to just under 1e10 s (a run of 30: 29 refused, the 30th a restart), steps
        to 1e10 exactly and past it, then goes back home (far back: a restart at once)."""
        rng = self.rng
        yield self.valid()
        home = self.clock.t
        base = MAX_TIME_S - float(rng.uniform(1.0, 30.0))
        for k in range(RESTART_AFTER):
            yield self.at(base + k / 60, "time_jump" if k < RESTART_AFTER - 1 else RESTART)
        yield self.at(float(np.nextafter(MAX_TIME_S, 0.0)), ACCEPTED)  # the last float under the bound
        yield self.at(MAX_TIME_S if rng.random() < 0.5 else 10**10, ACCEPTED)  # the bound itself, float or int
        for i in rng.permutation([0, 2, 4]):  # the first values past it, float and int
            yield self.at(JUST_OVER[i], "time_implausible")
        yield self.at(10**10 if rng.random() < 0.5 else MAX_TIME_S, "time_backwards")  # the bound again
        yield self.at(home + 1 / 60, RESTART)

    def edge_behind(self):
        """The source's clock goes back to -1e10 s (or the first float above it): far back, a restart at once;
        the first values past it are refused; then home again, 1e10 s ahead: 29 jumps refused, the 30th a
        restart."""
        rng = self.rng
        yield self.valid()
        home = self.clock.t
        yield self.at(-MAX_TIME_S if rng.random() < 0.5 else -float(np.nextafter(MAX_TIME_S, 0.0)), RESTART)
        for i in rng.permutation([1, 3, 5]):
            yield self.at(JUST_OVER[i], "time_implausible")
        yield self.at(-(10**10), "time_backwards")  # the bound as an integer: not after the clock
        for _ in range(int(rng.integers(1, 5))):
            yield self.valid()
        for k in range(RESTART_AFTER):
            yield self.at(home + (k + 1) / 60, "time_jump" if k < RESTART_AFTER - 1 else RESTART)

    def jump_edge(self):
        """Just over ``max_jump_s`` ahead is refused (the next float up, a millisecond, a second over);
        exactly ``max_jump_s`` ahead, or just under, is taken as it is, no restart."""
        rng = self.rng
        yield self.valid()
        bound = self.clock.t + self.clock.max_jump_s  # as the decoder adds them
        over = [float(np.nextafter(bound, math.inf)), bound + 1e-3, bound + 1.0]
        for i in rng.permutation(3)[: int(rng.integers(1, 4))]:
            yield self.at(over[i], "time_jump")
        yield self.at(bound if rng.random() < 0.6 else float(np.nextafter(bound, -math.inf)), ACCEPTED)
        yield self.valid()

    def back_edge(self):
        """Back by 1 s or less (exactly 1 s, the next float under it, 0.999 s, a repeat) is ``time_backwards``;
        back by just over 1 s (the next float over, 1.001 s, 1.5 s) restarts the source at once."""
        rng = self.rng
        yield self.valid()
        last = self.clock.t
        edge = last - RESTART_BACK_S  # as the decoder subtracts them
        under = [edge, float(np.nextafter(edge, math.inf)), last - 0.999, last]
        for i in rng.permutation(4)[: int(rng.integers(1, 4))]:
            yield self.at(under[i], "time_backwards")
        over = [float(np.nextafter(edge, -math.inf)), last - 1.001, last - 1.5]
        yield self.at(over[int(rng.integers(3))], RESTART)
        yield self.valid()

    def back_run(self, restart: bool | None = None):
        """29 frames in a row back by less than 1 s are refused; the 30th restarts the source. Or a frame on
        time after the 29th ends the run, and 29 more are refused again."""
        rng = self.rng
        restart = bool(rng.random() < 0.5) if restart is None else restart

        def back():
            return self.clock.t - (float(rng.uniform(0, 0.99)) if rng.random() < 0.8 else 0.0)

        yield self.valid()
        for _ in range(RESTART_AFTER - 1):
            yield self.at(back(), "time_backwards")
        if restart:
            yield self.at(back(), RESTART)
        else:
            yield self.valid()
            for _ in range(RESTART_AFTER - 1):
                yield self.at(back(), "time_backwards")
        yield self.valid()

    def jump_run(self, restart: bool | None = None):
        """29 frames in a row more than ``max_jump_s`` ahead (a clock of their own) are refused; the 30th
        restarts the source there. Or a frame on time after the 29th ends the run, and 29 more are refused."""
        rng = self.rng
        restart = bool(rng.random() < 0.5) if restart is None else restart
        ahead = self.clock.t + self.clock.max_jump_s + float(rng.uniform(0.1, 1e5))
        yield self.valid()
        for k in range(RESTART_AFTER - 1):
            yield self.at(ahead + k / 60, "time_jump")
        if restart:
            yield self.at(ahead + (RESTART_AFTER - 1) / 60, RESTART)
        else:
            yield self.valid()
            for k in range(RESTART_AFTER - 1):
                yield self.at(ahead + (RESTART_AFTER - 1 + k) / 60, "time_jump")
        yield self.valid()

    def throwaway_subjects(self, count: int | None = None, then: str | None = None):
        """63 or 64 throwaway subjects, each a frame the service refuses (``too_many_people``), then a frame of
        the stream's own subject: on time, back by under 1 s (refused), back by more (a restart), or more than
        ``max_jump_s`` ahead (refused): the refused subjects change nothing. ``then`` "none" ends the episode
        after the subjects."""
        rng = self.rng
        count = MAX_SUBJECTS - int(rng.integers(2)) if count is None else count
        then = ("valid", "back", "restart", "jump")[int(rng.integers(4))] if then is None else then
        yield self.valid()
        for _ in range(count):
            self.throwaways += 1
            yield self.other(f"throwaway{self.throwaways}")
        if then == "none":
            return
        if then == "back":
            yield self.at(self.clock.t - float(rng.uniform(0.01, 0.99)), "time_backwards")
        elif then == "restart":
            yield self.at(self.clock.t - float(rng.uniform(1.01, 10.0)), RESTART)
        elif then == "jump":
            yield self.at(self.clock.t + self.clock.max_jump_s + float(rng.uniform(0.1, 1e3)), "time_jump")
        yield self.valid()

    def burst(self, session_start: bool | None = None, then: int | None = None):
        """16 frames at 900 Hz (at a session's start, or in the middle of one), then ``then`` at 60 Hz."""
        rng = self.rng
        session_start = bool(rng.random() < 0.5) if session_start is None else session_start
        if session_start:
            yield self.at(self.clock.t - float(rng.uniform(2.0, 10.0)), RESTART)
        for _ in range(16 - session_start):
            yield self.at(self.clock.t + 1 / 900, ACCEPTED)
        for _ in range(int(rng.integers(4, 80)) if then is None else then):
            yield self.valid()

    def of(self, subject: str | None, t: float, label: str) -> tuple[list[bytes], str]:
        """A valid frame of ``subject`` at ``t`` that the clock does not see, labelled by the caller: whether
        the service takes it is the caller's to say."""
        self.seq += 1
        return [TOPIC, _pack(_frame(self.seq, t, self.pose, subject=subject))], label


def hostile_messages(
    seed: int,
    n: int,
    pose: np.ndarray,
    t0: float,
    tally: Tally,
    max_jump_s: float = MAX_JUMP_S,
    interleave: float = 0.25,
    quiet_end: int = 2000,
):
    """``n`` messages (``[topic, payload]`` lists, or other part counts) with their expected outcome.

    ``t0``: the clock of frames without a subject before the first message (the caller makes sure the
    service's is no later, and at most ``max_jump_s`` earlier). Time attacks come as episodes, a frame of
    another kind slipped in after each of their frames with probability ``interleave``; none starts in the
    last ``quiet_end`` messages, so the stream ends on its own clock (``tally.clock``).
    """
    h = Hostile(seed, pose, t0, max_jump_s)
    tally.clock = h.clock
    rng = h.rng

    def payload(make, expect):
        return lambda: ([TOPIC, make()], expect)

    others = [  # (weight, make): messages that never reach the served subject's clock
        (14, payload(h.garbage, "not_msgpack")),
        (10, payload(h.truncated, "not_msgpack")),
        (4, payload(h.deep, "not_msgpack")),
        (6, payload(h.huge_length, "not_msgpack")),
        (4, payload(h.forbidden, "not_msgpack")),
        (5, payload(h.not_a_map, "not_a_map")),
        (8, payload(h.bad_version, "version")),
        (8, payload(h.missing, "missing_field")),
        (12, payload(h.bad_type, "bad_type")),
        (10, payload(h.bad_shape, "bad_shape")),
        (4, payload(h.unknown_layout, "unknown_layout")),
        (6, payload(h.all_missing, "all_missing")),
        (0.3, payload(h.oversize, "oversize")),
        (2, lambda: (h.envelope(), "bad_envelope")),
        (1.5, h.huge_time),
    ]
    singles = [(0.6, h.backwards), (0.02, h.restart), (0.6, h.odd_but_valid), (0.4, h.valid)]
    episodes = [
        (0.03, h.edge_ahead),
        (0.03, h.edge_behind),
        (0.04, h.jump_edge),
        (0.04, h.back_edge),
        (0.03, h.back_run),
        (0.03, h.jump_run),
        (0.03, h.throwaway_subjects),
        (0.03, h.burst),
    ]
    kinds = [(w, make, False) for w, make in others + singles] + [(w, make, True) for w, make in episodes]
    weights = np.array([k[0] for k in kinds], float)
    weights /= weights.sum()
    other_weights = np.array([w for w, _ in others], float)
    other_weights /= other_weights.sum()
    sent = 0

    def draw():
        while True:
            yield from rng.choice(len(kinds), size=4096, p=weights)

    picks = draw()

    def emit(item):
        parts, expect = item
        tally.add(expect)
        return parts, expect

    yield emit(h.valid())  # a valid frame first: the stream's subject (none) is the one served
    sent += 1
    while sent < n:
        _, make, episode = kinds[next(picks)]
        if not episode:
            yield emit(make())
            sent += 1
            continue
        if n - sent <= quiet_end:
            continue
        for item in make():
            yield emit(item)
            sent += 1
            if sent < n and rng.random() < interleave:
                yield emit(others[int(rng.choice(len(others), p=other_weights))][1]())
                sent += 1
