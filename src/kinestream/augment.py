"""Marker augmentation: OpenCap's LSTM predicts 43 anatomical markers from keypoints.

Two trained models (OpenCap LSTM v0.3): the lower-body model reads 15
keypoints and predicts 35 markers (pelvis, legs, feet, shoulders, C7, thigh
and shank clusters, hip joint centres); the upper-body model reads 7 keypoints
and predicts 8 elbow and wrist markers.

The inputs are normalised as the models were trained:

1. every keypoint minus the reference keypoint (MidHip), per frame;
2. divided by the subject's height (m);
3. two more features appended: height (m) and mass (kg);
4. standardised with the training mean and standard deviation shipped with
   each model (``mean.npy``, ``std.npy``, used as they are).

The outputs are multiplied by the height and added to MidHip again. The
models are causal stacks of LSTM layers, so frames with a missing input
keypoint split the trial into segments that are each run from a fresh state;
markers in those frames are missing (NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import KinestreamError
from .trc import MarkerTable

REFERENCE = "MidHip"

LOWER_FEATURES = [
    "Neck", "RShoulder", "LShoulder", "RHip", "LHip", "RKnee", "LKnee", "RAnkle", "LAnkle",
    "RHeel", "LHeel", "RSmallToe", "LSmallToe", "RBigToe", "LBigToe",
]
LOWER_MARKERS = [
    "r.ASIS_study", "L.ASIS_study", "r.PSIS_study", "L.PSIS_study", "r_knee_study", "r_mknee_study",
    "r_ankle_study", "r_mankle_study", "r_toe_study", "r_5meta_study", "r_calc_study", "L_knee_study",
    "L_mknee_study", "L_ankle_study", "L_mankle_study", "L_toe_study", "L_calc_study", "L_5meta_study",
    "r_shoulder_study", "L_shoulder_study", "C7_study", "r_thigh1_study", "r_thigh2_study",
    "r_thigh3_study", "L_thigh1_study", "L_thigh2_study", "L_thigh3_study", "r_sh1_study", "r_sh2_study",
    "r_sh3_study", "L_sh1_study", "L_sh2_study", "L_sh3_study", "RHJC_study", "LHJC_study",
]
UPPER_FEATURES = ["Neck", "RShoulder", "LShoulder", "RElbow", "LElbow", "RWrist", "LWrist"]
UPPER_MARKERS = [
    "r_lelbow_study", "r_melbow_study", "r_lwrist_study", "r_mwrist_study",
    "L_lelbow_study", "L_melbow_study", "L_lwrist_study", "L_mwrist_study",
]
AUGMENTED_MARKERS = LOWER_MARKERS + UPPER_MARKERS
FLOOR_CLEARANCE_M = 0.01


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
    def load(cls, name: str, onnx_path: str | Path, features: list[str], markers: list[str]) -> "BodyPart":
        onnx_path = Path(onnx_path)
        stats = {}
        for stat in ("mean", "std"):
            path = onnx_path.parent / f"{stat}.npy"
            if not path.is_file():
                raise KinestreamError(f"{name} augmenter: {path} is missing; mean.npy and std.npy must sit "
                                      f"beside {onnx_path.name}")
            stats[stat] = np.load(path, allow_pickle=False).astype(np.float64).ravel()
        n_in = 3 * len(features) + 2
        for stat, arr in stats.items():
            if arr.shape != (n_in,):
                raise KinestreamError(f"{name} augmenter: {stat}.npy has {arr.shape[0]} values; the model reads "
                                      f"{n_in} features ({len(features)} keypoints x 3 + height + mass)")
        return cls(name, onnx_path, features, markers, stats["mean"], stats["std"])

    @property
    def n_inputs(self) -> int:
        return 3 * len(self.features) + 2


def normalise(features: np.ndarray, reference: np.ndarray, height: float, mass: float,
              mean: np.ndarray, std: np.ndarray) -> np.ndarray:
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


def check_subject(height: float, mass: float) -> None:
    if not (np.isfinite(height) and 0.5 <= height <= 2.5):
        raise KinestreamError(f"height {height} m is not valid; give the subject's height in metres (0.5 to 2.5)")
    if not (np.isfinite(mass) and 10 <= mass <= 300):
        raise KinestreamError(f"mass {mass} kg is not valid; give the subject's mass in kilograms (10 to 300)")


def finite_segments(ok: np.ndarray) -> list[tuple[int, int]]:
    """Start/stop indices of the runs of True in a boolean vector."""
    edges = np.diff(np.concatenate([[0], ok.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


class Augmenter:
    """The lower- and upper-body augmenter models, run with onnxruntime.

    Whole-trial inference (offline). Keypoint names are BODY_25's.
    """

    def __init__(self, lower_model: str | Path, upper_model: str | Path, threads: int = 1):
        self.parts = [
            BodyPart.load("lower-body", lower_model, LOWER_FEATURES, LOWER_MARKERS),
            BodyPart.load("upper-body", upper_model, UPPER_FEATURES, UPPER_MARKERS),
        ]
        self.threads = threads
        self._sessions: dict[str, object] = {}

    @classmethod
    def from_assets(cls, assets, threads: int = 1) -> "Augmenter":
        return cls(assets.lower_model, assets.upper_model, threads)

    @property
    def markers(self) -> list[str]:
        return [m for part in self.parts for m in part.markers]

    @property
    def keypoints(self) -> list[str]:
        names = [REFERENCE]
        for part in self.parts:
            names += [f for f in part.features if f not in names]
        return names

    def session(self, part: BodyPart):
        if part.name not in self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            try:
                self._sessions[part.name] = ort.InferenceSession(str(part.onnx_path), opts,
                                                                 providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise KinestreamError(f"{part.name} augmenter {part.onnx_path} could not be loaded: {exc}") from None
        return self._sessions[part.name]

    def run_part(self, part: BodyPart, inputs: np.ndarray) -> np.ndarray:
        """Whole-sequence inference: (frames, n_inputs) float32 -> (frames, 3m)."""
        sess = self.session(part)
        name = sess.get_inputs()[0].name
        return sess.run(None, {name: inputs[None]})[0][0]

    def predict(self, table: MarkerTable, height: float, mass: float) -> np.ndarray:
        """Augmented markers (frames, 43, 3) for a keypoint table; NaN where inputs are missing."""
        check_subject(height, mass)
        ref = table.get(REFERENCE)
        out = []
        for part in self.parts:
            feats = np.stack([table.get(n) for n in part.features], axis=1)
            ok = np.isfinite(feats).all(axis=(1, 2)) & np.isfinite(ref).all(axis=1)
            markers = np.full((table.n_frames, len(part.markers), 3), np.nan)
            for start, stop in finite_segments(ok):
                x = normalise(feats[start:stop], ref[start:stop], height, mass, part.mean, part.std)
                y = self.run_part(part, x)
                markers[start:stop] = denormalise(y, ref[start:stop], height)
            out.append(markers)
        return np.concatenate(out, axis=1)


@dataclass
class AugmentReport:
    frames: int
    frames_missing: int
    segments: int
    floor_offset_m: float | None

    def describe(self) -> str:
        text = f"augmented {self.frames - self.frames_missing}/{self.frames} frames"
        if self.segments > 1:
            text += f" in {self.segments} segments (missing keypoints split the trial)"
        if self.floor_offset_m is not None:
            text += f"; floor offset: shifted up by {self.floor_offset_m * 1000:.1f} mm"
        return text


def floor_offset(xyz: np.ndarray, clearance: float = FLOOR_CLEARANCE_M) -> float:
    """Vertical shift (m) that puts the lowest marker at ``clearance`` above y = 0."""
    lowest = np.nanmin(xyz[..., 1])
    return float(clearance - lowest)


def augment_table(table: MarkerTable, augmenter: Augmenter, height: float, mass: float,
                  apply_floor_offset: bool = False) -> tuple[MarkerTable, AugmentReport]:
    """The keypoints plus the 43 augmented markers, as one table."""
    markers = augmenter.predict(table, height, mass)
    out = table.with_markers(augmenter.markers, markers)
    missing = ~np.isfinite(markers).all(axis=(1, 2))
    offset = None
    if apply_floor_offset:
        offset = floor_offset(out.xyz)
        out.xyz[..., 1] += offset
    segs = len(finite_segments(~missing))
    return out, AugmentReport(table.n_frames, int(missing.sum()), segs, offset)
