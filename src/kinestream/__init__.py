"""kinestream: 3D body keypoints to OpenSim joint angles, live and offline.

The data path, one module a stage:

    ingest   keypoints and .trc in, named marker arrays out
    clean    gap filling and low-pass filtering
    augment  OpenCap LSTM marker augmenter (onnxruntime)
    scale    generic model to the subject (OpenSim ScaleTool)
    solve    inverse kinematics, frame by frame: OpenSim's objective minimised by the fast solver
             (kinestream.fastik, Newton's method damped as Levenberg-Marquardt, on OpenSim's own
             kinematics) or by OpenSim's InverseKinematicsSolver, the reference
    reps     squat repetitions, measures and cues from the joint angles
    files    .trc, .mot and .c3d readers and writers, and crash-safe live recordings

``pipeline`` chains clean, augment, solve and reps for one person's frames; ``offline`` runs the
recipe on a whole trial, ``batch`` on a study, ``live`` as a service on a keypoint stream.

From Python, ``import kinestream.api as ks`` (see :mod:`kinestream.api`):
``ks.process``, ``ks.augment``, ``ks.scale``, ``ks.ik``, ``ks.synth``, the
tables, readers and stage classes. This package re-exports those of its
names that are not also the name of a stage module (``process``, ``ik``,
``read_trc``, ``StreamingIK``, ...), each imported when first used, so that
``import kinestream`` stays quick; ``kinestream.augment``, ``kinestream.scale``
and ``kinestream.synth`` are always the modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # at run time these come from __getattr__, when first used
    from kinestream import api
    from kinestream.api import (
        FrameProcessor,
        MarkerTable,
        Motion,
        Pipeline,
        ProcessResult,
        RepCounter,
        ScaleResult,
        Settings,
        StreamingAugmenter,
        StreamingCleaner,
        StreamingIK,
        SynthResult,
        detect_reps,
        ik,
        load_settings,
        plot_angles,
        plot_reps,
        process,
        read_c3d,
        read_mot,
        read_trc,
        write_c3d,
        write_mot,
        write_trc,
    )

__version__ = "0.1.0"

#: kinestream.api's names that name no module of the package (augment, scale and synth do), and api itself.
__all__ = [
    "api",
    "process",
    "ik",
    "MarkerTable",
    "Motion",
    "read_trc",
    "write_trc",
    "read_mot",
    "write_mot",
    "read_c3d",
    "write_c3d",
    "Settings",
    "load_settings",
    "ProcessResult",
    "ScaleResult",
    "SynthResult",
    "StreamingCleaner",
    "StreamingAugmenter",
    "StreamingIK",
    "FrameProcessor",
    "Pipeline",
    "RepCounter",
    "detect_reps",
    "plot_angles",
    "plot_reps",
]


def __getattr__(name: str) -> Any:
    # Only names that are not submodules: `from kinestream import scale` must find the module kinestream.scale.
    if name in __all__:
        api = importlib.import_module("kinestream.api")
        value = api if name == "api" else getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kinestream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
