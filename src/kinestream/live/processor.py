"""The live path's stage cores for one frame: keypoints in the augmenter's order, cleaned, augmented.

No I/O: the service (and ``process --streaming``) feed it frames and take what it releases.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

import numpy as np

from kinestream.augment import AugmentSettings, StreamingAugmenter
from kinestream.clean import CleanSettings
from kinestream.errors import KinestreamError
from kinestream.ingest import DERIVED, IngestSettings

RATE_CHECK_FRAMES = 64  # the stream's rate is checked again every this many frames, on the latest ones


class Prepared(NamedTuple):
    """A frame out of clean + augment: its time, the cleaned keypoints (20, 3), the 43 markers (43, 3), and
    the tag it went in with."""

    t: float
    keypoints: np.ndarray
    markers: np.ndarray
    tag: object


class FrameProcessor:
    """Clean and augment one keypoint frame at a time (the streaming cores, no I/O).

    Incoming keypoints are turned into the model's axes (``[ingest]`` up and
    rotate: a Z-up source gives what its Y-up twin gives), put in the augmenter's keypoint order (MidHip and
    Neck derived from the hips and shoulders when absent), cleaned (gap
    bridging, causal low-pass, outlier holding) and augmented into the 43
    anatomical markers.
    """

    def __init__(self, assets, config: dict, height: float, mass: float, rate: float = 60.0):
        self.rate = rate
        self.orientation = IngestSettings.from_config(config).matrix()  # None: the keypoints are Y-up already
        self.augmenter = StreamingAugmenter.from_assets(
            assets, height, mass, reset_after=int(AugmentSettings.from_config(config).reset_after_frames)
        )
        self.keypoints = list(self.augmenter.keypoints)
        self.clean = CleanSettings.from_config(config)
        self.cleaner = self.clean.streaming(len(self.keypoints), rate)
        self.markers = list(self.augmenter.markers)
        self._columns: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.floor_offset = 0.0
        index = self.keypoints.index
        self._derived = [(index(name), index(a), index(b)) for name, (a, b) in DERIVED.items()]
        self._times: list[float] = []
        self._first: tuple[np.ndarray, float, object] | None = None  # the session's first frame, for a redesign
        self._recent: deque[float] = deque(maxlen=RATE_CHECK_FRAMES)  # the latest frame times, to check the rate again
        self._since_check = 0
        self.notes: list[str] = []
        self.dropped = 0  # frames the cleaner released and the augmenter refused (time not after the last)
        # The first frame is kept for a seamless redesign at the second one (see _check_rate).

    def _check_rate(self, t: float) -> None:
        """Redesign the filter when the stream's frame rate is not the one assumed (more than 10% off).

        The first check comes with the second frame. The cleaner's first
        output is its input whatever the design (the filter starts in the
        steady state of the first frame), so a cleaner built then at the
        measured rate and given the first frame again is exactly the cleaner
        that rate would have had from the start: a live 120 Hz stream gives
        the numbers ``process --streaming`` gives on its recording. The
        median of the first 16 intervals is checked again, and after that the
        median of the latest 64 every 64 frames, so that a burst of frames at
        900 Hz at the start cannot leave a 60 Hz stream filtered at a tenth of
        its cutoff. Rates are taken to 0.1 Hz, so that time stamps written to
        a few decimals read as the camera's rate.
        """
        self._recent.append(t)
        if len(self._times) >= 16:
            self._since_check += 1
            if self._since_check < RATE_CHECK_FRAMES:
                return
            self._since_check = 0  # and every 64 frames after: a burst at the start must not set it for good
            times = list(self._recent)
        else:
            self._times.append(t)
            if len(self._times) not in (2, 16):
                return
            times = self._times
        measured = round(1.0 / float(np.median(np.diff(times))), 1)
        if not 10.0 <= measured <= 1000.0:  # not a camera rate (a pause, a burst): keep the design
            if len(self._times) == 16:
                self.notes.append(f"the stream's frames come at {measured:.3g} Hz; kept {self.rate:g} Hz")
            return
        if abs(measured - self.rate) <= 0.1 * self.rate:
            return
        first = len(self._times) == 2
        if first and self.cleaner.filler.lookahead:  # frame 1 is still in the look-ahead: wait for 16 frames
            return
        try:
            cleaner = self.clean.streaming(len(self.keypoints), measured)
        except KinestreamError as exc:  # e.g. the cutoff above that rate's Nyquist frequency
            self.notes.append(
                f"the stream runs at {measured:g} Hz, but the filter cannot be designed for it "
                f"({exc}); kept {self.rate:g} Hz"
            )
            return
        self.notes.append(f"the stream runs at {measured:g} Hz, not {self.rate:g} Hz: filter redesigned")
        self.rate = measured
        self.cleaner = cleaner
        if first and self._first is not None:
            self.cleaner.push_tagged(*self._first)  # its output is the frame already released

    def _arrange(self, names: list[str], xyz: np.ndarray) -> np.ndarray:
        key = tuple(names)
        if key not in self._columns:
            if len(self._columns) >= 16:  # a source that changes its names every frame must not grow this
                self._columns.clear()
            pos = {n: i for i, n in enumerate(names)}
            src = np.array([pos.get(n, -1) for n in self.keypoints])
            self._columns[key] = (src, src >= 0)
        src, have = self._columns[key]
        out = np.full((len(self.keypoints), 3), np.nan)
        out[have] = xyz[src[have]]
        for i, a, b in self._derived:
            if not np.isfinite(out[i]).all():
                out[i] = 0.5 * (out[a] + out[b])
        return out

    def step(self, names: list[str], xyz: np.ndarray, t: float, tag: object = None) -> Prepared | None:
        """The frame the cleaner releases, cleaned and augmented, or None (the look-ahead fills, or the
        augmenter refused it: counted in ``dropped``). ``tag`` comes back with its own frame."""
        self._check_rate(t)
        if self.orientation is not None:
            xyz = np.asarray(xyz, dtype=float) @ self.orientation.T
        arranged = self._arrange(names, xyz)
        if len(self._times) == 1:  # the session's first frame (_check_rate has counted it)
            self._first = (arranged, t, tag)
        got = self.cleaner.push_tagged(arranged, t, tag)
        return None if got is None else self._augment(*got)

    def flush(self) -> list[Prepared]:
        """The frames still in the cleaner's look-ahead, cleaned and augmented (end of a stream)."""
        done = (self._augment(*got) for got in self.cleaner.flush_tagged())
        return [out for out in done if out is not None]

    def _augment(self, clean: np.ndarray, t: float, tag: object) -> Prepared | None:
        markers = self.augmenter.step(clean, t)
        if markers is None:
            self.dropped += 1
            return None
        if self.floor_offset:
            markers = markers + np.array([0.0, self.floor_offset, 0.0])
        return Prepared(t, clean, markers, tag)

    def reset(self) -> None:
        """Forget the stream (a new session from the source)."""
        self.cleaner.reset()
        self.augmenter.reset()
        self._times = []
        self._recent.clear()
        self._since_check = 0

    def delay_ms(self) -> float:
        return self.cleaner.delay_ms()
