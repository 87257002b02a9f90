"""Wire protocol version 1: keypoint frames in (joint angles and status out: :mod:`kinestream.live.messages`).

Every message is ZeroMQ multipart ``[topic, payload]`` with a msgpack map as
payload (docs/protocol.md is the reference). This module is pure:
bytes in, objects out, no sockets.

Keypoints (topic ``keypoints``)::

    v        int    1
    seq      int    the source's frame counter (>= 0)
    t        float  capture time, seconds, source clock (an int is accepted)
    layout   str    a key of ingest.LAYOUTS: "BODY_25" (OpenPose order), "BODY_25B",
                    "HALPE_26", "COCO_133" or "COCO_17" (refused: no feet) -- or --
    names    [str]  keypoint names; when present, ``layout`` is not read
    xyz      bin    float32 little-endian, N x 3, metres, Y up
    conf     bin    optional float32 N
    subject  str    optional session/subject id
    sent_ns  int    optional wall clock at send, ns (echoed in the angles)

A keypoint is missing when its position is all zero, holds NaN or inf, or its
confidence is 0, negative or NaN. Keys the decoder does not know are ignored,
so a source may add fields without breaking version 1 readers.

:class:`FrameDecoder` turns a payload into a :class:`KeypointFrame` or raises
:class:`Rejected` with one of :data:`REASONS` and counts it. It never raises
anything else, whatever the bytes: msgpack runs with tight limits on every
length, so a hostile payload cannot make it allocate more than a small
multiple of ``max_bytes``.

What the service sends back (angles, pose, reps, status) is
:mod:`kinestream.live.messages`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from kinestream.errors import ProtocolError
from kinestream.ingest import LAYOUTS, canonical, unusable_layout

VERSION = 1

MAX_COUNT = 2**63 - 1  # a count in the status stops here: msgpack (and every signed 64-bit reader) holds it
TOPIC_KEYPOINTS = b"keypoints"
TOPIC_ANGLES = b"angles"
TOPIC_STATUS = b"status"
TOPIC_REPS = b"reps"
TOPIC_POSE = b"pose"

#: Why a keypoint frame was rejected, in the order the decoder checks.
REASONS = {
    "oversize": "payload longer than max_bytes (checked before unpacking)",
    "not_msgpack": "not one msgpack object: invalid, truncated, trailing bytes, too deeply nested, "
    "a length over the limits, an extension type or a non-string map key",
    "not_a_map": "the msgpack object is not a map",
    "version": "'v' missing or not the integer 1",
    "missing_field": "'seq', 't' or 'xyz' missing, or neither 'layout' nor 'names' given",
    "bad_type": "a field of the wrong type or value: seq not an int >= 0, t not a finite number, "
    "xyz/conf not bin, layout not str, names not a list of non-empty str, subject not str, "
    "sent_ns not an int >= 0",
    "bad_shape": "xyz not a multiple of 12 bytes, no keypoints or more than max_keypoints, "
    "names or layout count != N, names repeated, conf not N float32",
    "unknown_layout": f"'layout' names no known layout (known: {', '.join(LAYOUTS)})",
    "unusable_layout": "'layout' names a known layout without keypoints the marker augmenter needs (COCO_17: no feet)",
    "all_missing": "no keypoint present (all zero, NaN, inf or zero confidence)",
    "time_backwards": "t not after the last accepted t of the same subject (repeats count too)",
    "time_implausible": "|t| over 1e10 s, where float seconds stop resolving a frame's time",
    "time_jump": "t more than max_jump_s after the last accepted t of the same subject (until the jump "
    "holds for restart_after frames: then a restarted source)",
    "internal": "a decoder bug: an unexpected exception, turned into a rejection (should stay 0)",
}

_NUMBER = (int, float)
_LAYOUT_NAMES = {name: [canonical(n) for n in names] for name, names in LAYOUTS.items()}  # Hip -> MidHip
_UNUSABLE = {name: unusable_layout(name) for name in LAYOUTS}  # why the augmenter cannot run on it, or None
MAX_TIME_S = 1e10  # seconds; float64 resolves 2 microseconds there (unix time in seconds is 1.8e9)


class Rejected(ProtocolError):
    """A payload that is not a valid protocol message: ``reason`` (a key of :data:`REASONS`) and ``detail``.

    ``detail`` is what was given. For ``time_backwards``, ``frame`` is the otherwise valid frame (to tell a restarted
    source from a late frame); otherwise None.
    """

    def __init__(self, reason: str, detail: str, frame: KeypointFrame | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.frame = frame


@dataclass(slots=True)
class KeypointFrame:
    """One decoded keypoint frame.

    ``names`` are canonical BODY_25 names where known (aliases folded);
    ``xyz`` is (N, 3) float64 metres with NaN rows for missing keypoints;
    ``conf`` (N,) float64 or None.
    """

    seq: int
    t: float
    names: list[str]
    xyz: np.ndarray
    conf: np.ndarray | None = None
    subject: str | None = None
    sent_ns: int | None = None
    restarted: bool = False  # the source's clock started over with this frame (see FrameDecoder)

    @property
    def present(self) -> np.ndarray:
        """Boolean (N,): which keypoints this frame holds."""
        return ~np.isnan(self.xyz[:, 0])


def brief(value) -> str:
    """A short, safe description of an untrusted value for an error detail."""
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, str):
        return repr(value[:40] + ("..." if len(value) > 40 else ""))
    if isinstance(value, (bytes, bytearray)):
        return f"bin of {len(value)} bytes"
    if isinstance(value, (list, dict)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def is_int(value) -> bool:
    """Whether an untrusted value is an integer (a bool is not one here)."""
    return type(value) is int


class FrameDecoder:
    """Validates and decodes keypoint payloads; counts every rejection.

    ``max_bytes`` bounds the payload, ``max_keypoints`` the keypoint count.
    Time must increase per subject (``None`` is a subject too). A source
    that restarts its clock is followed again: the ``restart_after``-th
    consecutive frame with time going backwards is accepted, the clock
    restarts from it and ``clock_resets`` counts it (the frames before it are
    rejected; 0 disables this: call :meth:`reset_clock`). With
    ``restart_back_s``, a frame whose time is that much earlier than the last
    one restarts the clock at once. Either way the frame comes back with
    ``restarted`` set, so the caller can start a new session. At most
    ``max_subjects`` clocks are kept; the least recently seen is forgotten
    first.

    Unpacking limits: strings up to 256 characters, maps up to 32 entries,
    arrays up to ``max_keypoints`` items, bin up to ``max_bytes``, nesting up
    to msgpack's own depth limit, no extension types; anything beyond is
    ``not_msgpack``.

    ``seq`` is not used to reject frames: ``t`` orders them, and a source may
    restart its counter. Forward jumps in ``seq`` are summed in ``missed``
    (frames the source numbered that never arrived), which stops at
    :data:`MAX_COUNT` so that the status can always carry it.
    """

    def __init__(
        self,
        max_bytes: int = 65536,
        max_keypoints: int = 200,
        *,
        restart_after: int = 30,
        restart_back_s: float | None = None,
        max_subjects: int = 64,
        max_jump_s: float | None = 3600.0,
    ):
        if max_bytes < 64 or max_keypoints < 1:
            raise ProtocolError(
                f"max_bytes {max_bytes} / max_keypoints {max_keypoints} are too small; "
                f"give max_bytes >= 64 and max_keypoints >= 1",
                key="max_bytes",
                given=(max_bytes, max_keypoints),
                valid="max_bytes >= 64 and max_keypoints >= 1",
            )
        self.max_bytes = int(max_bytes)
        self.max_keypoints = int(max_keypoints)
        self.restart_after = int(restart_after)
        self.restart_back_s = restart_back_s
        self.max_jump_s = max_jump_s
        self.max_subjects = int(max_subjects)
        self.counts: dict[str, int] = {reason: 0 for reason in REASONS}
        self.accepted = 0
        self.missed = 0
        self.clock_resets = 0
        # subject -> [last accepted t, last accepted seq, consecutive backwards frames, consecutive jumps ahead]
        self._clock: dict[str | None, list] = {}
        self._kept: set[str | None] = set()  # the subjects whose clocks are never forgotten (keep)
        self._names: dict[tuple, list[str]] = {}
        self._limits = dict(
            raw=False,
            strict_map_key=True,
            max_bin_len=self.max_bytes,
            max_str_len=256,
            max_array_len=self.max_keypoints,
            max_map_len=32,
            max_ext_len=0,
        )

    @property
    def rejected(self) -> int:
        """The messages rejected so far, over every reason."""
        return sum(self.counts.values())

    def reset_clock(self, subject: str | None = None) -> None:
        """Forget the last time of ``subject``, or of every subject (frames without one included) when None.

        The publisher restarted and its clock starts over.
        """
        if subject is None:
            self._clock.clear()
        else:
            self._clock.pop(subject, None)

    def decode(self, payload) -> KeypointFrame:
        """The frame in ``payload``, or :class:`Rejected` (counted in ``counts``)."""
        try:
            frame = self._decode(payload)
        except Rejected as exc:
            self.counts[exc.reason] += 1
            raise
        except Exception as exc:  # a bug here must cost one frame, not the service
            self.counts["internal"] += 1
            raise Rejected("internal", f"{type(exc).__name__} while decoding: {str(exc)[:200]}") from None
        self.accepted += 1
        return frame

    def subject_of(self, payload) -> str | None:
        """Only whose frame ``payload`` is: its ``subject`` (None: the default person), read with the decoder's limits.

        :class:`Rejected` when it is no map or names no string (not counted: the full decode will be).
        """
        msg = self._map(payload)
        subject = msg.get("subject")
        if subject is not None and type(subject) is not str:
            raise Rejected("bad_type", f"subject = {brief(subject)}; expected a string")
        return subject

    def _map(self, payload) -> dict:
        """The payload unpacked within the limits, as a map."""
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            try:
                payload = memoryview(payload)
            except TypeError:
                raise Rejected("not_msgpack", f"payload is a {type(payload).__name__}, not bytes") from None
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if size > self.max_bytes:
            raise Rejected("oversize", f"payload of {size} bytes; at most {self.max_bytes} are accepted")
        try:
            msg = msgpack.unpackb(payload, **self._limits)
        except Exception as exc:  # every unpacker failure, RecursionError and MemoryError included
            raise Rejected("not_msgpack", f"{type(exc).__name__}: {str(exc)[:120] or 'invalid msgpack'}") from None
        if type(msg) is not dict:
            raise Rejected("not_a_map", f"payload is a msgpack {brief(msg)}; expected a map")
        return msg

    def _decode(self, payload) -> KeypointFrame:
        msg = self._map(payload)
        v = msg.get("v")
        if not is_int(v) or v != VERSION:
            given = "no 'v'" if "v" not in msg else f"v = {brief(v)}"
            raise Rejected("version", f"{given}; this decoder reads protocol version {VERSION}")

        seq: Any = msg.get("seq")
        t: Any = msg.get("t")
        xyz: Any = msg.get("xyz")
        names: Any = msg.get("names")
        layout: Any = msg.get("layout")
        absent = [k for k, val in (("seq", seq), ("t", t), ("xyz", xyz)) if val is None]
        if names is None and layout is None:
            absent.append("layout or names")
        if absent:
            raise Rejected(
                "missing_field", f"no {', '.join(absent)}; a keypoint frame needs v, seq, t, xyz and layout or names"
            )
        if not is_int(seq) or seq < 0:
            raise Rejected("bad_type", f"seq = {brief(seq)}; expected an integer >= 0")
        if type(t) not in _NUMBER or not math.isfinite(t):
            raise Rejected("bad_type", f"t = {brief(t)}; expected a finite number of seconds")
        t = float(t)
        if abs(t) > MAX_TIME_S:
            raise Rejected(
                "time_implausible",
                f"t = {t:.6g} s; capture times must lie within +-{MAX_TIME_S:.0e} s "
                f"(beyond, seconds in float64 no longer resolve a frame)",
            )
        if type(xyz) is not bytes:
            raise Rejected("bad_type", f"xyz is a {brief(xyz)}; expected bin (float32 little-endian, N x 3)")
        if len(xyz) % 12:
            raise Rejected("bad_shape", f"xyz holds {len(xyz)} bytes; expected N x 3 float32, a multiple of 12")
        n = len(xyz) // 12
        if not 1 <= n <= self.max_keypoints:
            raise Rejected("bad_shape", f"xyz holds {n} keypoints; expected 1 to {self.max_keypoints}")

        if names is not None:
            names = self._canonical_names(names, n)
        else:
            if type(layout) is not str:
                raise Rejected("bad_type", f"layout = {brief(layout)}; expected a string such as 'BODY_25'")
            key = layout if layout in LAYOUTS else layout.upper()
            if key not in LAYOUTS:
                raise Rejected("unknown_layout", f"layout {brief(layout)}; known layouts are {list(LAYOUTS)}")
            if len(LAYOUTS[key]) != n:
                raise Rejected("bad_shape", f"xyz holds {n} keypoints; layout {key} has {len(LAYOUTS[key])}")
            unusable = _UNUSABLE[key]
            if unusable:  # known, but the marker augmenter could not run on it
                raise Rejected("unusable_layout", unusable)
            names = list(_LAYOUT_NAMES[key])

        conf = msg.get("conf")
        subject = msg.get("subject")
        sent_ns = msg.get("sent_ns")
        if conf is not None:
            if type(conf) is not bytes:
                raise Rejected("bad_type", f"conf is a {brief(conf)}; expected bin (float32 little-endian, N)")
            if len(conf) != 4 * n:
                raise Rejected("bad_shape", f"conf holds {len(conf)} bytes; expected {n} float32 = {4 * n} bytes")
        if subject is not None and type(subject) is not str:
            raise Rejected("bad_type", f"subject = {brief(subject)}; expected a string")
        if sent_ns is not None and (not is_int(sent_ns) or sent_ns < 0):
            raise Rejected("bad_type", f"sent_ns = {brief(sent_ns)}; expected an integer >= 0 (ns)")

        pos = np.frombuffer(xyz, dtype="<f4").reshape(n, 3).astype(np.float64)
        # |x|+|y|+|z| is 0 for an all-zero row and NaN or inf when any value is
        # (float32 values cannot overflow it in float64): one reduction finds both.
        extent = np.abs(pos).sum(axis=1)
        present = (extent > 0) & (extent < np.inf)
        if conf is not None:
            conf = np.frombuffer(conf, dtype="<f4").astype(np.float64)
            present &= conf > 0  # NaN compares False: missing
        missing = ~present
        if missing.any():
            if missing.all():
                raise Rejected(
                    "all_missing", f"none of the {n} keypoints is present (all zero, NaN, inf or zero confidence)"
                )
            pos[missing] = np.nan

        frame = KeypointFrame(seq, t, names, pos, conf, subject, sent_ns)
        self._advance_clock(frame)
        return frame

    def _canonical_names(self, names, n: int) -> list[str]:
        if type(names) is not list:
            raise Rejected("bad_type", f"names is a {brief(names)}; expected a list of strings")
        key = tuple(names)
        try:
            cached = self._names.get(key)
        except TypeError:  # an unhashable element: certainly not a string
            cached = None
        if cached is None:
            for name in names:
                if type(name) is not str or not name.strip():
                    raise Rejected("bad_type", f"names holds {brief(name)}; expected non-empty strings")
            cached = [canonical(name) for name in names]
            if len(set(cached)) != len(cached):
                repeated = sorted({name for name in cached if cached.count(name) > 1})
                raise Rejected("bad_shape", f"names repeat {[brief(r) for r in repeated[:5]]} (after folding aliases)")
            if len(self._names) >= 16:
                self._names.clear()
            self._names[key] = cached
        if len(cached) != n:
            raise Rejected("bad_shape", f"{len(cached)} names for {n} keypoints in xyz")
        return list(cached)

    def _advance_clock(self, frame: KeypointFrame) -> None:
        subject, t, seq = frame.subject, frame.t, frame.seq
        state = self._clock.get(subject)
        if state is not None:
            if t <= state[0]:
                state[2] += 1
                far_back = self.restart_back_s is not None and t < state[0] - self.restart_back_s
                if not (far_back or (self.restart_after > 0 and state[2] >= self.restart_after)):
                    raise Rejected(
                        "time_backwards",
                        f"t = {t:.6f} s is not after {state[0]:.6f} s, the last "
                        f"accepted time of subject {brief(subject)}",
                        frame,
                    )
                self.clock_resets += 1
                frame.restarted = True
            elif self.max_jump_s is not None and t > state[0] + self.max_jump_s:
                state[3] += 1  # one wild frame is refused; a clock that stays out there is a restarted source
                if not (self.restart_after > 0 and state[3] >= self.restart_after):
                    raise Rejected(
                        "time_jump",
                        f"t = {t:.6f} s is {t - state[0]:.6g} s after {state[0]:.6f} s, "
                        f"the last accepted time of subject {brief(subject)}; at most "
                        f"{self.max_jump_s:g} s ahead is taken",
                        frame,
                    )
                self.clock_resets += 1
                frame.restarted = True
            elif seq > state[1] + 1:  # saturates: a source's seq may jump by 2**64 - 1, again and again
                self.missed = min(self.missed + seq - state[1] - 1, MAX_COUNT)
            del self._clock[subject]  # re-inserted last: the dict keeps recency order
        elif len(self._clock) >= self.max_subjects:  # forget the least recently seen, never one kept
            del self._clock[next((k for k in self._clock if k not in self._kept), next(iter(self._clock)))]
        self._clock[subject] = [t, seq, 0, 0]

    def keep(self, subject: str | None) -> None:
        """Never forget ``subject``'s clock (a person being served), however many others come and go.

        Otherwise 64 throwaway subjects would make its next frame a first one, free of every time rule.
        """
        self._kept.add(subject)

    def release(self, subject: str | None) -> None:
        """``subject`` is no longer served: its clock may be forgotten like any other."""
        self._kept.discard(subject)


# --------------------------------------------------------------------------- encoding


def float32_bytes(values, shape_msg: str, expect: tuple) -> bytes:
    """``values`` as the wire's bin: float32 little-endian, refused (ProtocolError) unless of shape ``expect``."""
    arr = np.asarray(values, dtype="<f4")
    if arr.shape != expect:
        raise ProtocolError(
            f"{shape_msg} has shape {arr.shape}; expected {expect}", key=shape_msg, given=arr.shape, valid=expect
        )
    return arr.tobytes()


def encode_keypoints(
    seq: int,
    t: float,
    xyz,
    *,
    layout: str = "BODY_25",
    names: list[str] | None = None,
    conf=None,
    subject: str | None = None,
    sent_ns: int | None = None,
) -> bytes:
    """A keypoint frame payload.

    ``xyz`` (N, 3) metres, NaN or zeros for missing keypoints, in the order of ``layout`` (a key of
    :data:`~kinestream.ingest.LAYOUTS`, e.g. "HALPE_26"); ``names`` replaces ``layout`` when given. A COCO_17 frame is
    encoded, and the decoder refuses it (``unusable_layout``).
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ProtocolError(f"xyz has shape {xyz.shape}; expected (N, 3)", key="xyz", given=xyz.shape, valid="(N, 3)")
    n = xyz.shape[0]
    msg: dict[str, Any] = {"v": VERSION, "seq": int(seq), "t": float(t)}
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != n:
            raise ProtocolError(f"{len(names)} names for {n} keypoints", key="names", given=len(names), valid=n)
        msg["names"] = names
    else:
        if layout not in LAYOUTS:
            raise ProtocolError(
                f"layout {layout!r} is not known; known layouts are {list(LAYOUTS)}, or give names",
                key="layout",
                given=layout,
                valid=list(LAYOUTS),
            )
        if len(LAYOUTS[layout]) != n:
            raise ProtocolError(
                f"layout {layout} has {len(LAYOUTS[layout])} keypoints; xyz has {n}",
                key="layout",
                given=n,
                valid=len(LAYOUTS[layout]),
            )
        msg["layout"] = layout
    msg["xyz"] = float32_bytes(xyz, "xyz", (n, 3))
    if conf is not None:
        msg["conf"] = float32_bytes(conf, "conf", (n,))
    if subject is not None:
        msg["subject"] = str(subject)
    if sent_ns is not None:
        msg["sent_ns"] = int(sent_ns)
    return msgpack.packb(msg)
