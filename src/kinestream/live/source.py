"""The keypoint stream as frames for the pipelines: messages decoded, their time kept per subject, restarts told.

    [b"keypoints", payload] -> KeypointSource.take -> Heard (a frame, and whether its subject's source started a
                                                      new session with it) | Refused (why, counted)

One source serves ``serve`` and ``calibrate``: both hear the same frames, refuse the same ones and start a new
session on the same frames. Who is admitted (up to ``service.max_people``) is the caller's to decide.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from kinestream.live.protocol import TOPIC_KEYPOINTS, FrameDecoder, KeypointFrame, Rejected
from kinestream.settings import ServiceSettings

RESTART_BACK_S = 1.0  # time going back further than this is a restarted source, not a glitch
SILENCE_S = 2.0  # a subject's frames resuming after this long (by its own clock) is said to the caller


@dataclass(frozen=True)
class Arrival:
    """How a frame came: the source's number for it, when it arrived and when the source sent it.

    It is the tag the frame carries through the pipeline.
    """

    seq: int
    recv_ns: int
    sent_ns: int | None


@dataclass(frozen=True)
class Heard:
    """A frame the source accepts, with when it arrived.

    ``restart``: why its subject's source started a new session with it (its clock went back or jumped ahead and stayed
    there); ``silence_s``: how long (by its clock) its subject had been silent, when more than SILENCE_S.
    """

    frame: KeypointFrame
    recv_ns: int
    restart: str | None = None
    silence_s: float | None = None


@dataclass(frozen=True)
class Refused:
    """A message the source refuses: a reason of :data:`kinestream.live.protocol.REASONS` or ``bad_envelope``.

    It carries what was given. The source has counted it (:attr:`KeypointSource.counts`).
    """

    reason: str
    detail: str = ""


class KeypointSource:
    """Keypoint messages in, :class:`Heard` frames or :class:`Refused` messages out (never raises).

    The time rules are the decoder's, per subject (``None``, frames without one, is a subject too): time goes
    forward; a clock that goes back more than RESTART_BACK_S, or keeps going back or far ahead, is a restarted
    source. Of the ``[service]`` section ``service``, ``max_message_bytes`` bounds a message and ``max_time_jump_s`` a
    step ahead.
    """

    MAX_SUBJECTS = 64  # the last times kept; the least recently heard subject is forgotten first

    def __init__(self, service: ServiceSettings, restart_back_s: float = RESTART_BACK_S):
        self.decoder = FrameDecoder(
            max_bytes=int(service.max_message_bytes),
            restart_back_s=restart_back_s,
            max_jump_s=float(service.max_time_jump_s),
        )
        self.envelopes = 0  # messages that were not [b"keypoints", payload]
        self._last: OrderedDict[str | None, float] = OrderedDict()  # subject -> its last time heard

    def take(self, parts: list, recv_ns: int) -> Heard | Refused:
        """One multipart message of the keypoint socket: ``[b"keypoints", payload]``."""
        if len(parts) != 2 or parts[0] != TOPIC_KEYPOINTS:
            self.envelopes += 1
            return Refused("bad_envelope", f"{len(parts)} parts")
        return self.decode(parts[1], recv_ns)

    def decode(self, payload, recv_ns: int) -> Heard | Refused:
        """One keypoint payload."""
        try:
            frame = self.decoder.decode(payload)
        except Rejected as rej:
            return Refused(rej.reason, rej.detail)
        last = self._last.pop(frame.subject, None)
        if len(self._last) >= self.MAX_SUBJECTS:
            self._last.popitem(last=False)
        self._last[frame.subject] = frame.t
        restart = silence = None
        if frame.restarted:
            restart = (
                f"time went back from {last:.2f} s to {frame.t:.2f} s"
                if last is not None and frame.t <= last
                else f"time jumped from {last:.2f} s to {frame.t:.2f} s"
                if last is not None
                else "its clock started over"
            )
        elif last is not None and frame.t - last > SILENCE_S:
            silence = frame.t - last
        return Heard(frame, recv_ns, restart, silence)

    def keep(self, subject: str | None) -> None:
        """Never forget ``subject``'s clock (a person being served), however many others come and go."""
        self.decoder.keep(subject)

    def forget(self, subject: str) -> None:
        """``subject`` was closed out: their clock is forgotten (back later, their first frame starts afresh)."""
        self.decoder.release(subject)
        self.decoder.reset_clock(subject)
        self._last.pop(subject, None)

    @property
    def counts(self) -> dict[str, int]:
        """Messages refused, by reason."""
        counts = dict(self.decoder.counts)
        if self.envelopes:
            counts["bad_envelope"] = self.envelopes
        return counts

    def status(self) -> dict:
        """What the source has refused and missed, for the service's status."""
        return {
            "rejected": self.counts,
            "missed_frames": self.decoder.missed,  # numbered by the source, never received (seq gaps)
            "clock_resets": self.decoder.clock_resets,
        }
