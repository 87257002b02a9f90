"""Wire protocol version 1, what the service sends: joint angles, pose, reps and status.

Every message is ZeroMQ multipart ``[topic, payload]`` with a msgpack map as payload (docs/protocol.md is the
reference; the keypoint frames that come in are :mod:`kinestream.live.protocol`'s). This module is pure: objects in,
bytes out and back, no sockets.

Angles (topic ``angles``) carry the coordinate names in every message rather
than in a separate schema message: a subscriber that joins late (ZeroMQ drops
what a PUB sends before a SUB connects) can read any message on its own, and
the names cost about 0.6 kB per frame, nothing on loopback or a LAN.

Pose (topic ``pose``, optional) carries what the service computed in 3D for a
frame: the cleaned keypoints, the augmented markers and the model's joint
centres, each as names and float32 N x 3 (:func:`encode_pose`); the service
publishes it only while someone subscribes to it, every ``service.pose_every``
frames.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack
import numpy as np

from kinestream.errors import ProtocolError
from kinestream.files.mot import is_translation
from kinestream.live.protocol import VERSION, Rejected, brief, float32_bytes, is_int

_ANGLE_KEYS = {"v", "seq", "t", "coords", "q", "rmse_mm", "latency_ms", "sent_ns", "subject"}


def encode_angles(
    seq: int,
    t: float,
    coords: list[str],
    q,
    *,
    rmse_mm: float,
    latency_ms: float,
    sent_ns: int | None = None,
    subject: str | None = None,
    extra: dict | None = None,
) -> bytes:
    """An angles payload: ``q`` in degrees (rotations) and metres (translations), one value per name in ``coords``.

    ``sent_ns`` is the keypoint frame's, echoed. ``extra`` adds fields (not the standard ones).
    """
    coords = [str(c) for c in coords]
    msg = {
        "v": VERSION,
        "seq": int(seq),
        "t": float(t),
        "coords": coords,
        "q": float32_bytes(q, "q", (len(coords),)),
        "rmse_mm": float(rmse_mm),
        "latency_ms": float(latency_ms),
    }
    if sent_ns is not None:
        msg["sent_ns"] = int(sent_ns)
    if subject is not None:
        msg["subject"] = str(subject)
    if extra:
        clash = sorted(_ANGLE_KEYS & set(extra))
        if clash:
            raise ProtocolError(
                f"extra fields {clash} would overwrite standard angle fields {sorted(_ANGLE_KEYS)}; rename them",
                key="extra",
                given=clash,
                valid=f"names other than {sorted(_ANGLE_KEYS)}",
            )
        msg.update(extra)
    return msgpack.packb(msg, default=_plain)


def decode_angles(payload: bytes, max_bytes: int = 1 << 20) -> dict:
    """An angles payload as a dict, ``q`` as a float64 array.

    Raises :class:`Rejected` when it is not a version 1 angles message.
    """
    if len(payload) > max_bytes:
        raise Rejected("oversize", f"payload of {len(payload)} bytes; at most {max_bytes} are accepted")
    try:
        msg = msgpack.unpackb(
            payload,
            raw=False,
            max_bin_len=max_bytes,
            max_str_len=1024,
            max_array_len=4096,
            max_map_len=256,
            max_ext_len=0,
        )
    except Exception as exc:
        raise Rejected("not_msgpack", f"{type(exc).__name__}: {str(exc)[:120] or 'invalid msgpack'}") from None
    if type(msg) is not dict:
        raise Rejected("not_a_map", f"payload is a msgpack {brief(msg)}; expected a map")
    if msg.get("v") != VERSION or not is_int(msg.get("v")):
        raise Rejected("version", f"v = {brief(msg.get('v'))}; expected {VERSION}")
    coords, q = msg.get("coords"), msg.get("q")
    if coords is None or q is None:
        raise Rejected("missing_field", "an angles message needs coords and q")
    if type(coords) is not list or not all(type(c) is str for c in coords) or type(q) is not bytes:
        raise Rejected("bad_type", f"coords is a {brief(coords)}, q a {brief(q)}; expected a list of str and bin")
    if len(q) != 4 * len(coords):
        raise Rejected("bad_shape", f"q holds {len(q)} bytes for {len(coords)} coords; expected {4 * len(coords)}")
    msg["q"] = np.frombuffer(q, dtype="<f4").astype(np.float64)
    return msg


POSE_PARTS = ("keypoints", "markers", "centres", "bodies")  # the parts of a pose message, each names + xyz


def encode_pose(seq: int, t: float, parts: dict, *, subject: str | None = None) -> bytes:
    """A pose payload: for each of :data:`POSE_PARTS` in ``parts``, ``(names, xyz)``.

    ``xyz`` is (N, 3) in metres, Y up, NaN where unknown (joint centres of a frame IK could not solve). Sent as
    ``<part>`` (the names) and ``<part>_xyz`` (float32 little-endian, N x 3). ``bodies`` gives (N, 7) instead: each
    body's position and its orientation in ground as a unit quaternion (w, x, y, z), the quaternions sent as
    ``bodies_quat`` (float32 little-endian, N x 4).
    """
    msg: dict[str, Any] = {"v": VERSION, "seq": int(seq), "t": float(t)}
    for part, (names, xyz) in parts.items():
        if part not in POSE_PARTS:
            raise ProtocolError(
                f"pose part {part!r} is not known; the parts are {list(POSE_PARTS)}",
                key="parts",
                given=part,
                valid=list(POSE_PARTS),
            )
        names = [str(n) for n in names]
        msg[part] = names
        if part == "bodies":
            poses = np.asarray(xyz, dtype=float)
            if poses.shape != (len(names), 7):
                raise ProtocolError(
                    f"pose bodies has shape {poses.shape}; expected {(len(names), 7)}",
                    key="bodies",
                    given=poses.shape,
                    valid=(len(names), 7),
                )
            xyz = poses[:, :3]
            msg["bodies_quat"] = float32_bytes(poses[:, 3:], "pose bodies' quaternions", (len(names), 4))
        msg[f"{part}_xyz"] = float32_bytes(xyz, f"pose {part}", (len(names), 3))
    if subject is not None:
        msg["subject"] = str(subject)
    return msgpack.packb(msg)


def decode_pose(payload: bytes, max_bytes: int = 1 << 20) -> dict:
    """A pose payload as a dict, each ``<part>_xyz`` a float32 (N, 3) array beside its names.

    ``bodies_quat`` (N, 4) is beside ``bodies``. Raises :class:`Rejected` when it is not a version 1 pose message.
    """
    msg = decode_status(payload, max_bytes)
    if msg.get("v") != VERSION or not is_int(msg.get("v")):
        raise Rejected("version", f"v = {brief(msg.get('v'))}; expected {VERSION}")
    if not any(part in msg for part in POSE_PARTS):
        raise Rejected("missing_field", f"a pose message needs at least one of {list(POSE_PARTS)}")
    for part in POSE_PARTS:
        if part not in msg:
            continue
        names, xyz = msg[part], msg.get(f"{part}_xyz")
        if type(names) is not list or not all(type(n) is str for n in names) or type(xyz) is not bytes:
            raise Rejected(
                "bad_type",
                f"{part} is a {brief(names)}, {part}_xyz a {brief(xyz)}; expected a list of str and bin",
            )
        if len(xyz) != 12 * len(names):
            raise Rejected(
                "bad_shape", f"{part}_xyz holds {len(xyz)} bytes for {len(names)} names; expected {12 * len(names)}"
            )
        msg[f"{part}_xyz"] = np.frombuffer(xyz, dtype="<f4").reshape(len(names), 3)
    if "bodies" in msg:
        quat = msg.get("bodies_quat")
        if type(quat) is not bytes or len(quat) != 16 * len(msg["bodies"]):
            raise Rejected(
                "bad_shape",
                f"bodies_quat is a {brief(quat)}; expected {16 * len(msg['bodies'])} bytes (N x 4 float32)",
            )
        msg["bodies_quat"] = np.frombuffer(quat, dtype="<f4").reshape(len(msg["bodies"]), 4)
    return msg


def angles_json(seq: int, t: float, coords: list[str], q, subject: str | None = None) -> str:
    """The MQTT form: ``{"t":…, "seq":…, "angles":{name: value}}``, and ``"subject"`` when given.

    Rotations (degrees) are rounded to 0.01 deg; translations (names ending
    ``_tx``, ``_ty``, ``_tz``; metres) to 0.1 mm; NaN becomes null; ``t`` is
    rounded to the microsecond.
    """
    q = np.asarray(q, dtype=float).ravel()
    if q.shape != (len(coords),):
        raise ProtocolError(f"{q.size} values for {len(coords)} coordinates", key="q", given=q.size, valid=len(coords))
    angles: dict[str, float | None] = {}
    for name, value in zip(coords, q.tolist(), strict=False):
        if not math.isfinite(value):
            angles[name] = None
        else:
            angles[name] = round(value, 4 if is_translation(name) else 2) + 0.0  # + 0.0: no "-0.0"
    msg: dict[str, Any] = {"t": round(float(t), 6), "seq": int(seq), "angles": angles}
    if subject is not None:
        msg["subject"] = str(subject)
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def _plain(value):
    """The msgpack fallback for numpy values and paths in status messages."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} in a message; use numbers, strings, lists and dicts")


def reps_message(rep: dict, summary: dict, *, subject: str | None, sent_ns: int | None, latency_ms: float) -> dict:
    """The ``reps`` message: one repetition and the set so far.

    ``rep``: the rep's kind, measures and cues (``RepEvent.to_dict()``;
    ``complete`` false when the end of the stream cut it short); ``set``: the running
    summary; ``sent_ns``: the source's send time of the frame that completed
    the rep (echoed, so a client can time the event); ``latency_ms``: from
    that frame's arrival to this message. ZeroMQ carries it as msgpack
    (:func:`encode_reps`), MQTT as JSON (``kinestream/<subject>/reps``).
    """
    msg = {
        "v": VERSION,
        "subject": subject,
        "rep": dict(rep),
        "set": dict(summary),
        "latency_ms": round(float(latency_ms), 2),
    }
    if sent_ns is not None:
        msg["sent_ns"] = int(sent_ns)
    return msg


def encode_reps(message: dict) -> bytes:
    """A :func:`reps_message` as a msgpack payload."""
    return msgpack.packb(message, default=_plain)


def decode_reps(payload: bytes, max_bytes: int = 1 << 20) -> dict:
    """A reps payload as a dict; raises :class:`Rejected` when it is not one."""
    msg = decode_status(payload, max_bytes)
    if type(msg.get("rep")) is not dict or type(msg.get("set")) is not dict:
        raise Rejected("missing_field", "a reps message needs the maps 'rep' and 'set'")
    return msg


def encode_status(status: dict) -> bytes:
    """A status payload: the map ``status`` with ``v`` added.

    Values may be numbers, strings, lists, dicts, numpy scalars or arrays.
    """
    if not isinstance(status, dict):
        raise ProtocolError(
            f"status is a {type(status).__name__}; expected a dict",
            key="status",
            given=type(status).__name__,
            valid="a dict",
        )
    try:
        return msgpack.packb({"v": VERSION, **status}, default=_plain)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"status cannot be encoded: {exc}", key="status", given=status) from None


def decode_status(payload: bytes, max_bytes: int = 1 << 20) -> dict:
    """A status payload as a dict; raises :class:`Rejected` when it is not one."""
    if len(payload) > max_bytes:
        raise Rejected("oversize", f"payload of {len(payload)} bytes; at most {max_bytes} are accepted")
    try:
        msg = msgpack.unpackb(payload, raw=False, max_ext_len=0)
    except Exception as exc:
        raise Rejected("not_msgpack", f"{type(exc).__name__}: {str(exc)[:120] or 'invalid msgpack'}") from None
    if type(msg) is not dict:
        raise Rejected("not_a_map", f"payload is a msgpack {brief(msg)}; expected a map")
    return msg
