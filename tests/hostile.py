"""A seeded generator of hostile and malformed keypoint messages, each labelled with what the service must do.

    for parts, expect in hostile_messages(seed=1, n=100_000, pose=xyz):
        ...  # parts: the ZeroMQ multipart message; expect: a rejection reason, or "accepted"

The labels come from the protocol's rules as DESIGN.md states them, not from
running the decoder: a message is built to break one rule, so the reason it
must be rejected for is known when it is made. Time is modelled for frames
without a subject the way the protocol orders them: accepted frames move the
clock forward, a frame at or before the last accepted time is
``time_backwards``, one more than a second earlier restarts the source
(accepted, counted in ``restarts``). A frame of another subject is valid to
the decoder but refused by the service (``other_subject``) while the
stream's own subject is active. At most three backward frames come in a
row, far from the 30 that would also restart the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgpack
import numpy as np

ACCEPTED = "accepted"
MAX_BYTES = 65536  # the service's default max_message_bytes
TRANSPORT_LIMIT = 4 * MAX_BYTES  # larger messages are refused inside ZeroMQ, never counted


@dataclass
class Tally:
    """What the generated messages must add up to at the service."""

    expected: dict[str, int] = field(default_factory=dict)
    restarts: int = 0

    def add(self, reason: str) -> None:
        self.expected[reason] = self.expected.get(reason, 0) + 1


def _frame(seq, t, xyz, **extra) -> dict:
    msg = {"v": 1, "seq": seq, "t": t, "layout": "BODY_25", "xyz": np.asarray(xyz, "<f4").tobytes()}
    msg.update(extra)
    return msg


def _pack(msg) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def hostile_messages(seed: int, n: int, pose: np.ndarray, t0: float, tally: Tally):
    """``n`` messages (``[topic, payload]`` lists, or other part counts) with their expected outcome."""
    rng = np.random.default_rng(seed)
    pose = np.asarray(pose, dtype=np.float32).reshape(25, 3)
    state = {"t": t0, "seq": 0, "backwards": 0, "visitor": 0}

    def next_t():
        state["t"] += 1 / 60
        state["seq"] += 1
        return state["seq"], state["t"]

    def valid(**extra):
        seq, t = next_t()
        state["backwards"] = 0
        xyz = pose + rng.normal(0, 0.005, pose.shape).astype(np.float32)
        return _frame(seq, t, xyz, **extra)

    def any_frame():  # a well-formed frame that does not touch the clock (for corrupting)
        return _frame(int(rng.integers(0, 1 << 31)), float(rng.uniform(0, 1e4)), pose)

    def garbage():
        return b"\xc1" + rng.bytes(int(rng.integers(0, 300)))  # 0xc1 is never valid msgpack

    def truncated():
        payload = _pack(any_frame())
        return payload[:int(rng.integers(1, len(payload)))]

    def deep():
        depth = int(rng.integers(1100, 20000))
        return (b"\x81\xa1a" * depth + b"\xc0") if rng.random() < 0.5 else (b"\x91" * depth + b"\x00")

    def huge_length():
        heads = [b"\xc6\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                 b"\xc5\xff\xff", b"\xde\xff\xff", b"\xdc\x01\x00"]  # bin, str, array, map 32 and 16 bit
        return heads[int(rng.integers(len(heads)))] + rng.bytes(int(rng.integers(0, 64)))

    def forbidden():  # an extension type, a non-string map key, a map over 32 entries
        choice = int(rng.integers(3))
        if choice == 0:
            return b"\xc7\x05\x01" + rng.bytes(5)
        if choice == 1:
            return _pack({1: 2, "v": 1})
        return _pack({f"k{i}": i for i in range(40)})

    def not_a_map():
        values = [int(rng.integers(-1 << 40, 1 << 40)), "keypoints", [1, 2, 3], None, True, 3.5, b"\x00" * 12]
        return _pack(values[int(rng.integers(len(values)))])

    def bad_version():
        msg = any_frame()
        choice = int(rng.integers(5))
        if choice == 0:
            del msg["v"]
        else:
            msg["v"] = [2, "1", 1.0, True][choice - 1]
        return _pack(msg)

    def missing():
        msg = any_frame()
        key = ["seq", "t", "xyz", "layout"][int(rng.integers(4))]
        if rng.random() < 0.5:
            del msg[key]
        else:
            msg[key] = None  # nil is as good as absent
        return _pack(msg)

    def bad_type():
        msg = any_frame()
        key, value = [("seq", -1), ("seq", "3"), ("seq", 1.5), ("seq", True), ("t", "now"), ("t", math.nan),
                      ("t", math.inf), ("t", [1.0]), ("xyz", [0.1] * 75), ("xyz", "abc"), ("layout", 25),
                      ("subject", 7), ("sent_ns", -5), ("sent_ns", 1.5), ("conf", [1.0] * 25),
                      ("names", "Nose"), ("names", ["Nose"] * 24 + [3])][int(rng.integers(17))]
        msg[key] = value
        return _pack(msg)

    def bad_shape():
        msg = any_frame()
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

    def unknown_layout():
        msg = any_frame()
        msg["layout"] = ["COCO_18", "BODY_135", "", "body25x"][int(rng.integers(4))]
        return _pack(msg)

    def all_missing():
        msg = any_frame()
        choice = int(rng.integers(3))
        if choice == 0:
            msg["xyz"] = np.zeros((25, 3), "<f4").tobytes()
        elif choice == 1:
            msg["xyz"] = np.full((25, 3), [np.nan, np.inf, -np.inf][int(rng.integers(3))], "<f4").tobytes()
        else:
            msg["conf"] = np.zeros(25, "<f4").tobytes()
        return _pack(msg)

    def oversize():
        return rng.bytes(int(rng.integers(MAX_BYTES + 1, TRANSPORT_LIMIT)))

    def backwards():
        msg = _frame(state["seq"] + 1, state["t"] - float(rng.choice([0.0, rng.uniform(0, 0.9)])), pose)
        state["seq"] += 1
        state["backwards"] += 1
        return _pack(msg)

    def restart():  # the source's clock starts over, far back
        state["t"] -= 5.0 + float(rng.uniform(0, 10))
        tally.restarts += 1
        return _pack(valid())

    def odd_but_valid():
        choice = int(rng.integers(6))
        if choice == 0:  # some keypoints NaN, inf or zero: missing, the rest fine
            msg = valid()
            xyz = np.frombuffer(msg["xyz"], "<f4").reshape(25, 3).copy()
            xyz[rng.choice(25, 5, replace=False)] = [np.nan, np.inf, 0.0][int(rng.integers(3))]
            msg["xyz"] = xyz.tobytes()
        elif choice == 1:  # absurd but finite coordinates
            msg = valid()
            msg["xyz"] = (np.frombuffer(msg["xyz"], "<f4") * np.float32(1e30)).tobytes()
        elif choice == 2:  # fields a newer source might add, nested deep but within limits
            nested = "x"
            for _ in range(int(rng.integers(1, 400))):
                nested = {"n": nested}
            msg = valid(extra=nested, note="from the future")
        elif choice == 3:  # names instead of layout, with aliases
            msg = valid()
            del msg["layout"]
            names = ["Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "Hip",
                     "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                     "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"]
            msg["names"] = names
        elif choice == 4:  # a visitor: another subject, while the stream's own one is active
            state["visitor"] += 1
            state["expect"] = "other_subject"
            msg = _frame(0, float(rng.uniform(0, 1e4)), pose, subject=f"visitor{state['visitor']}")
            return _pack(msg)
        else:  # custom names the model does not use, a new list every time
            msg = valid()
            del msg["layout"]
            msg["names"] = [f"custom{int(rng.integers(1 << 30))}_{i}" for i in range(25)]
        return _pack(msg)

    kinds = [  # (weight, make, expected)
        (14, garbage, "not_msgpack"), (10, truncated, "not_msgpack"), (4, deep, "not_msgpack"),
        (6, huge_length, "not_msgpack"), (4, forbidden, "not_msgpack"), (5, not_a_map, "not_a_map"),
        (8, bad_version, "version"), (8, missing, "missing_field"), (12, bad_type, "bad_type"),
        (10, bad_shape, "bad_shape"), (4, unknown_layout, "unknown_layout"), (6, all_missing, "all_missing"),
        (0.3, oversize, "oversize"), (0.6, backwards, "time_backwards"), (0.02, restart, ACCEPTED),
        (0.6, odd_but_valid, ACCEPTED), (2, "envelope", "bad_envelope"), (0.4, None, ACCEPTED),
    ]
    weights = np.array([k[0] for k in kinds], float)
    weights /= weights.sum()
    picks = rng.choice(len(kinds), size=n, p=weights)
    picks[0] = len(kinds) - 1  # a valid frame first: the stream's subject (none) is the one served
    for pick in picks:
        _, make, expect = kinds[pick]
        if make is backwards and state["backwards"] >= 3:
            make, expect = None, ACCEPTED
        if make is None:
            payload = _pack(valid())
        elif make == "envelope":
            choice = int(rng.integers(3))
            frame = _pack(any_frame())
            parts = [[b"keypoints"], [b"keypoints", frame, b"more"], [b"keypointsX", frame]][choice]
            tally.add(expect)
            yield parts, expect
            continue
        else:
            payload = make()
            expect = state.pop("expect", expect)
        tally.add(expect)
        yield [b"keypoints", payload], expect
