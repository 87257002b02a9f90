"""The streaming augmenter's input side (see :class:`kinestream.augment.StreamingAugmenter`).

One frame's keypoints, a dict by name or an array in a given row order, put in the order the models read (MidHip and
Neck derived when absent), which of them are usable, and each body part's normalised model input (:class:`StreamInput`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kinestream.errors import InputError
from kinestream.ingest import DERIVED, canonical
from kinestream.normalise import BodyPart, normalise


class StreamInput:
    """From one frame's keypoints to the model inputs of each body part in ``parts``.

    ``keypoints``: the keypoints the models read, in their order (MidHip first); ``names``: the row order of array
    input (None: ``keypoints``); ``height``, ``mass``: the subject's; ``reach`` (m): a keypoint further than this
    from MidHip along any axis is taken as a wrong detection.
    """

    def __init__(
        self,
        keypoints: list[str],
        parts: list[BodyPart],
        names: Sequence[str] | None,
        height: float,
        mass: float,
        reach: float,
    ):
        self.keypoints, self.parts = keypoints, parts
        self.height, self.mass, self.reach = height, mass, reach
        self.index = [np.array([keypoints.index(f) for f in part.features]) for part in parts]  # rows per part
        self.names = list(names) if names is not None else list(keypoints)
        given = [canonical(n) for n in self.names]
        self._take = np.array([given.index(k) if k in given else -1 for k in keypoints])
        self._derive = [
            (keypoints.index(k), given.index(a), given.index(b))
            for k, (a, b) in DERIVED.items()
            if k in keypoints and k not in given and a in given and b in given
        ]
        self._identity = given == list(keypoints)

    def as_array(self, keypoints: Mapping[str, Sequence[float]] | np.ndarray) -> np.ndarray:
        """Keypoints (dict name -> xyz, or an array in :attr:`names` order) as (len(keypoints), 3).

        Absent keypoints are NaN; MidHip and Neck, when absent, are the midpoints
        of the hips and of the shoulders.
        """
        if not isinstance(keypoints, np.ndarray) and isinstance(keypoints, Mapping):
            rows = {canonical(k): v for k, v in keypoints.items()}
            for name, (p, q) in DERIVED.items():
                if name not in rows and p in rows and q in rows:
                    try:
                        rows[name] = 0.5 * (np.asarray(rows[p], float) + np.asarray(rows[q], float))
                    except (TypeError, ValueError):
                        pass
            a = np.full((len(self.keypoints), 3), np.nan)
            for k, name in enumerate(self.keypoints):
                v = rows.get(name)
                if v is not None:
                    try:
                        a[k] = v
                    except (TypeError, ValueError):  # not an xyz triple: missing
                        a[k] = np.nan
            return a
        arr = np.asarray(keypoints, dtype=np.float64)
        if arr.shape != (len(self.names), 3):
            raise InputError(
                f"keypoint array has shape {arr.shape}; expected ({len(self.names)}, 3) in the order {self.names}",
                given=arr.shape,
                valid=(len(self.names), 3),
            )
        if self._identity:
            return arr
        a = arr[self._take]
        a[self._take < 0] = np.nan
        for i, left, right in self._derive:
            a[i] = 0.5 * (arr[left] + arr[right])
        return a

    def usable(self, kp: np.ndarray) -> np.ndarray:
        """Per keypoint: present, and within reach of MidHip (which must be present)."""
        return np.abs(kp - kp[:1]).max(axis=1) <= self.reach  # NaN fails the comparison

    def model_input(self, k: int, kp: np.ndarray, usable: np.ndarray) -> np.ndarray | None:
        """Normalised model input (1, n) of part ``k``, or None when missing or implausible."""
        index, part = self.index[k], self.parts[k]
        if not usable[index].all():
            return None
        return normalise(kp[index][None], kp[:1], self.height, self.mass, part.mean, part.std)
