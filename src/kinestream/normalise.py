"""The augmenter models' normalisation, as they were trained (see :mod:`kinestream.augment`).

Each trained model with its training statistics and its names (:class:`BodyPart`), model inputs from keypoints
(:func:`normalise`) and marker positions from model outputs (:func:`denormalise`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinestream.errors import AssetError


@dataclass
class BodyPart:
    """One trained model with its normalisation and its marker names."""

    name: str
    onnx_path: Path
    features: list[str]
    markers: list[str]
    mean: np.ndarray = field(repr=False)
    std: np.ndarray = field(repr=False)

    @classmethod
    def load(cls, name: str, onnx_path: str | Path, features: list[str], markers: list[str]) -> BodyPart:
        """The body part ``name``: its model at ``onnx_path`` and its training statistics beside it.

        Parameters
        ----------
        name : str
            The part's name.
        onnx_path : str or Path
            The trained model; ``mean.npy`` and ``std.npy`` are read from its folder.
        features : list of str
            The keypoints the model reads, in its order.
        markers : list of str
            The markers the model gives, in its order.

        Returns
        -------
        BodyPart
            The part; KinestreamError when a statistics file is missing or of the wrong size.
        """
        onnx_path = Path(onnx_path)
        stats = {}
        for stat in ("mean", "std"):
            path = onnx_path.parent / f"{stat}.npy"
            if not path.is_file():
                raise AssetError(
                    f"{name} augmenter: {path} is missing; mean.npy and std.npy must sit beside {onnx_path.name}",
                    given=path,
                    valid=f"mean.npy and std.npy beside {onnx_path.name}",
                )
            stats[stat] = np.load(path, allow_pickle=False).astype(np.float64).ravel()
        n_in = 3 * len(features) + 2
        for stat, arr in stats.items():
            if arr.shape != (n_in,):
                raise AssetError(
                    f"{name} augmenter: {stat}.npy has {arr.shape[0]} values; the model reads "
                    f"{n_in} features ({len(features)} keypoints x 3 + height + mass)",
                    key=f"{stat}.npy",
                    given=arr.shape[0],
                    valid=n_in,
                )
        return cls(name, onnx_path, features, markers, stats["mean"], stats["std"])

    @property
    def n_inputs(self) -> int:
        """The size of the model's input: three coordinates per feature, then height and mass."""
        return 3 * len(self.features) + 2


def normalise(
    features: np.ndarray, reference: np.ndarray, height: float, mass: float, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Model inputs from keypoints.

    Parameters
    ----------
    features : (frames, k, 3) keypoint positions in metres.
    reference : (frames, 3) position of the reference keypoint (MidHip).
    height, mass : subject height (m) and mass (kg).
    mean, std : (3k + 2,) training statistics.

    Returns
    -------
    (frames, 3k + 2) float32 array.
    """
    features = np.asarray(features, dtype=np.float64)
    rel = (features - np.asarray(reference, dtype=np.float64)[:, None, :]) / height
    n = rel.shape[0]
    x = np.concatenate([rel.reshape(n, -1), np.full((n, 1), height), np.full((n, 1), mass)], axis=1)
    return ((x - mean) / std).astype(np.float32)


def denormalise(outputs: np.ndarray, reference: np.ndarray, height: float) -> np.ndarray:
    """Marker positions (frames, m, 3) from model outputs (frames, 3m)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    n = outputs.shape[0]
    return outputs.reshape(n, -1, 3) * height + np.asarray(reference, dtype=np.float64)[:, None, :]
