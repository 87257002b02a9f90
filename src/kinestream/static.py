"""A static trial: the person standing still, averaged into one pose.

A static trial has no motion to filter: its frames are the same pose seen
again and again, with the pose estimator's noise on each. So it is not cleaned
as a movement trial is (a Butterworth filter needs a few dozen frames, and a
static trial may have one); its frames are averaged instead.

- Each keypoint's median position over the frames is the robust estimate of
  where it stood. An observation farther than ``outlier_mm`` from it (a
  keypoint that jumped to the other leg, a hand that waved) is refused; the
  others are averaged. One frame is enough.
- The augmenter is an LSTM: it predicts markers from a sequence, and its first
  second carries the start-up of its state (36 mm at the first frame,
  about 3 mm after 1 s, under 0.5 mm after 2 s on a standing adult). The still
  pose is therefore held for ``hold_s`` seconds at the augmenter's own rate,
  and the model is scaled from the last second (:data:`SCALE_WINDOW_S`),
  where the augmented markers have settled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from kinestream.augment import MODEL_RATE
from kinestream.errors import InputError, SettingsError
from kinestream.files.trc import MarkerTable

OUTLIER_MM = 30.0  # far beyond a standing person's sway and the keypoints' noise (a few mm), well inside a limb swap
HOLD_S = 3.0  # the still pose fed to the augmenter for this long
SCALE_WINDOW_S = 1.0  # and scaled from the last this-long of it


@dataclass
class StillPose:
    """A static trial's frames averaged into one pose, held on the augmenter's time grid.

    ``table``: the pose repeated for ``hold_s`` at :data:`~kinestream.augment.MODEL_RATE`, from the trial's first
    time. ``frames``: the frames averaged; ``observations``/``refused``: keypoint observations with data, and those
    refused as outliers.
    """

    table: MarkerTable
    frames: int
    observations: int
    refused: int
    outlier_mm: float

    @property
    def scale_window(self) -> tuple[float, float]:
        """The (start, end) times, in seconds, to scale from: the last :data:`SCALE_WINDOW_S` of the hold."""
        end = float(self.table.time[-1])
        return end - SCALE_WINDOW_S, end

    def describe(self) -> str:
        """The still pose in one line: the frames averaged and the observations refused as outliers."""
        text = f"{self.frames} frame{'s' if self.frames != 1 else ''} averaged into one still pose"
        if self.refused:
            text += (
                f" ({self.refused} of {self.observations} keypoint observations farther than {self.outlier_mm:g} mm "
                f"from the median pose refused)"
            )
        hold = self.table.time[-1] - self.table.time[0] + 1.0 / self.table.rate
        return text + f", held {hold:g} s for the augmenter; scaled from its last {SCALE_WINDOW_S:g} s"


def still_pose(table: MarkerTable, outlier_mm: float = OUTLIER_MM, hold_s: float = HOLD_S) -> StillPose:
    """The frames of ``table`` (keypoints of a person standing still) averaged into one pose.

    Raises :class:`KinestreamError` when the table has no frames, when no keypoint has data, or when the
    arguments are out of range.
    """
    if not (np.isfinite(outlier_mm) and outlier_mm > 0):
        raise SettingsError(
            f"outlier_mm {outlier_mm!r} is not valid; give a distance in millimetres above 0",
            key="outlier_mm",
            given=outlier_mm,
            valid="a distance in millimetres above 0",
        )
    if not (np.isfinite(hold_s) and hold_s >= 2 * SCALE_WINDOW_S):
        raise SettingsError(
            f"hold_s {hold_s!r} is not valid; give at least {2 * SCALE_WINDOW_S:g} s",
            key="hold_s",
            given=hold_s,
            valid=f"at least {2 * SCALE_WINDOW_S:g} s",
        )
    if table.n_frames == 0:
        raise InputError(
            "the static trial has no frames; it needs at least one", given=table.n_frames, valid="at least one frame"
        )
    xyz = np.asarray(table.xyz, dtype=float)
    seen = np.isfinite(xyz).all(axis=2)  # frames x keypoints
    if not seen.any():
        raise InputError(
            f"no keypoint has data in any of the static trial's {table.n_frames} frames; give a trial with the person "
            f"in view",
            given=table.n_frames,
            valid="a trial with the person in view",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a keypoint never seen has no median: it stays NaN
        median = np.nanmedian(np.where(seen[..., None], xyz, np.nan), axis=0)
    distance = np.linalg.norm(xyz - median, axis=2)
    keep = seen & (distance <= outlier_mm / 1000.0)
    count = keep.sum(axis=0)
    total = np.where(keep[..., None], xyz, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pose = np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], np.nan)
    n = int(round(hold_s * MODEL_RATE))
    time = float(table.time[0]) + np.arange(n) / MODEL_RATE
    held = MarkerTable(list(table.names), np.repeat(pose[None], n, axis=0), time, MODEL_RATE, dict(table.meta))
    return StillPose(held, table.n_frames, int(seen.sum()), int(seen.sum() - keep.sum()), float(outlier_mm))
